//! Which snapshots a retention policy keeps, and why (the rules restic users know).
//!
//! Snapshots are grouped (by default by host and paths); within a group, newest first:
//! - `last N` keeps the N newest;
//! - `hourly/daily/weekly/monthly/yearly N` keep the newest snapshot of each of the N newest hours, days, ISO
//!   weeks, months or years that have one (calendar in UTC);
//! - `within D` keeps every snapshot taken within D of the group's newest snapshot;
//! - `tag T` keeps every snapshot carrying tag T.
//!
//! A snapshot locked until a time after "now" is always kept, whatever the policy says.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub last: usize,
    pub hourly: usize,
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
    pub yearly: usize,
    pub within: Option<Duration>,
    pub tags: Vec<String>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.last + self.hourly + self.daily + self.weekly + self.monthly + self.yearly == 0
            && self.within.is_none()
            && self.tags.is_empty()
    }
}

/// What the policy needs to know of a snapshot.
#[derive(Clone, Debug)]
pub struct Item {
    pub id: String,
    pub time: SystemTime,
    pub group: String,
    pub tags: Vec<String>,
    pub locked_until: Option<SystemTime>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Decision {
    pub id: String,
    pub group: String,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// ISO 8601 (year, week) of a day count.
pub fn iso_week(days: i64) -> (i64, u32) {
    // 1970-01-01 was a Thursday; ISO weeks start on Monday and belong to the year of their Thursday.
    let weekday = (days + 3).rem_euclid(7); // 0 = Monday
    let thursday = days - weekday + 3;
    let (y, _, _) = civil_from_days(thursday);
    let jan1 = days_from_civil(y, 1, 1);
    (y, ((thursday - jan1) / 7 + 1) as u32)
}

pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = month as i64;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn secs(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// The calendar buckets of a time: hour, day, ISO week, month, year.
fn buckets(time: SystemTime) -> [String; 5] {
    let s = secs(time);
    let days = s.div_euclid(86_400);
    let hour = s.rem_euclid(86_400) / 3600;
    let (y, m, d) = civil_from_days(days);
    let (wy, w) = iso_week(days);
    [
        format!("{y}-{m:02}-{d:02}T{hour:02}"),
        format!("{y}-{m:02}-{d:02}"),
        format!("{wy}-W{w:02}"),
        format!("{y}-{m:02}"),
        format!("{y}"),
    ]
}

/// Decide for every snapshot. `now` is only used for locks.
pub fn apply(policy: &Policy, items: &[Item], now: SystemTime) -> Vec<Decision> {
    let mut groups: BTreeMap<&str, Vec<&Item>> = BTreeMap::new();
    for it in items {
        groups.entry(it.group.as_str()).or_default().push(it);
    }
    let mut out = Vec::new();
    for (group, mut snaps) in groups {
        snaps.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
        let newest = snaps[0].time;
        let counts = [policy.hourly, policy.daily, policy.weekly, policy.monthly, policy.yearly];
        let names = ["hourly", "daily", "weekly", "monthly", "yearly"];
        let mut last_bucket: [Option<String>; 5] = Default::default();
        let mut used = [0usize; 5];
        for (i, s) in snaps.iter().enumerate() {
            let mut reasons = Vec::new();
            if i < policy.last {
                reasons.push(format!("last {}", policy.last));
            }
            let b = buckets(s.time);
            for k in 0..5 {
                // The newest snapshot of a bucket is the first one seen in it (newest first order).
                if counts[k] > 0 && last_bucket[k].as_deref() != Some(b[k].as_str()) {
                    last_bucket[k] = Some(b[k].clone());
                    if used[k] < counts[k] {
                        used[k] += 1;
                        reasons.push(format!("{} {} ({})", names[k], counts[k], b[k]));
                    }
                }
            }
            if let Some(w) = policy.within {
                if newest.duration_since(s.time).unwrap_or_default() <= w {
                    reasons.push(format!("within {}", humantime::format_duration(w)));
                }
            }
            for t in &policy.tags {
                if s.tags.contains(t) {
                    reasons.push(format!("tag {t}"));
                }
            }
            if let Some(l) = s.locked_until {
                if l > now {
                    reasons.push(format!("locked until {}", humantime::format_rfc3339_seconds(l)));
                }
            }
            out.push(Decision { id: s.id.clone(), group: group.to_string(), keep: !reasons.is_empty(), reasons });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(year: i64, month: u32, day: u32, hour: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(days_from_civil(year, month, day) as u64 * 86_400 + hour * 3600)
    }

    fn item(id: &str, time: SystemTime) -> Item {
        Item { id: id.into(), time, group: "g".into(), tags: vec![], locked_until: None }
    }

    #[test]
    fn calendar_round_trips_and_iso_weeks() {
        for d in -1000..100_000 {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2021-01-03 is in ISO week 2020-W53; 2021-01-04 starts 2021-W01
        assert_eq!(iso_week(days_from_civil(2021, 1, 3)), (2020, 53));
        assert_eq!(iso_week(days_from_civil(2021, 1, 4)), (2021, 1));
        assert_eq!(iso_week(days_from_civil(2026, 11, 25)), (2026, 48));
    }

    #[test]
    fn a_year_of_daily_and_hourly_snapshots() {
        // One snapshot per hour for the last 3 days and one per day (noon) for a year before.
        let mut items = Vec::new();
        for d in 0..365 {
            let day = days_from_civil(2025, 11, 1) + d;
            items.push(item(&format!("d{d}"), UNIX_EPOCH + Duration::from_secs(day as u64 * 86_400 + 12 * 3600)));
        }
        for h in 0..72 {
            items.push(item(&format!("h{h}"), at(2026, 11, 1, 0) + Duration::from_secs(h * 3600)));
        }
        let p = Policy { hourly: 24, daily: 7, weekly: 4, monthly: 12, ..Default::default() };
        let d = apply(&p, &items, at(2026, 11, 4, 0));
        let kept: Vec<&str> = d.iter().filter(|x| x.keep).map(|x| x.id.as_str()).collect();
        // 24 newest hours are h48..h71; the 7 newest days: Nov 3,2,1 (hourly) and Oct 31,30,29,28 (daily at noon)
        for h in 48..72 {
            assert!(kept.contains(&format!("h{h}").as_str()), "h{h}");
        }
        assert!(kept.contains(&"h23") && kept.contains(&"h47"), "newest of Nov 1 and Nov 2");
        let months: std::collections::BTreeSet<String> =
            d.iter().filter(|x| x.reasons.iter().any(|r| r.starts_with("monthly"))).map(|x| x.id.clone()).collect();
        assert_eq!(months.len(), 12);
        assert!(kept.len() < 24 + 7 + 4 + 12 + 1, "buckets overlap: {}", kept.len());
        assert!(!kept.contains(&"d0"), "the oldest daily is not kept by any rule");
    }

    #[test]
    fn locked_snapshots_are_always_kept() {
        let now = at(2026, 1, 1, 0);
        let mut a = item("a", at(2020, 1, 1, 0));
        a.locked_until = Some(at(2027, 1, 1, 0));
        let mut b = item("b", at(2020, 1, 2, 0));
        b.locked_until = Some(at(2025, 1, 1, 0)); // expired
        let c = item("c", at(2025, 6, 1, 0));
        let d = apply(&Policy { last: 1, ..Default::default() }, &[a, b, c], now);
        let keep: BTreeMap<&str, bool> = d.iter().map(|x| (x.id.as_str(), x.keep)).collect();
        assert_eq!(keep, BTreeMap::from([("a", true), ("b", false), ("c", true)]));
    }

    #[test]
    fn within_and_tags_and_groups() {
        let mut items =
            vec![item("new", at(2026, 1, 10, 0)), item("mid", at(2026, 1, 5, 0)), item("old", at(2025, 1, 1, 0))];
        items[2].tags = vec!["release".into()];
        let mut other = item("other", at(2020, 1, 1, 0));
        other.group = "h2".into();
        items.push(other);
        let p = Policy {
            within: Some(Duration::from_secs(7 * 86_400)),
            tags: vec!["release".into()],
            ..Default::default()
        };
        let d = apply(&p, &items, at(2026, 2, 1, 0));
        let keep: BTreeMap<&str, bool> = d.iter().map(|x| (x.id.as_str(), x.keep)).collect();
        // "within" is relative to each group's newest snapshot
        assert_eq!(keep, BTreeMap::from([("new", true), ("mid", true), ("old", true), ("other", true)]));
    }
}
