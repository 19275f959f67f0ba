//! Prometheus text metrics: requests and errors by action and status, bytes in and out, request latency
//! histograms by action; per-tenant usage and store health are added at scrape time by the API.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Latency histogram bucket bounds, seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    bytes_in: BTreeMap<String, u64>,
    bytes_out: BTreeMap<String, u64>,
    latency: BTreeMap<String, Histogram>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn observe(&self, action: &str, status: u16, bytes_in: u64, bytes_out: u64, seconds: f64) {
        let mut m = self.inner.lock().expect("metrics");
        *m.requests.entry((action.to_string(), status)).or_default() += 1;
        *m.bytes_in.entry(action.to_string()).or_default() += bytes_in;
        *m.bytes_out.entry(action.to_string()).or_default() += bytes_out;
        let h = m.latency.entry(action.to_string()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// Bytes received in request bodies of one action so far (tests read it to measure dedup).
    pub fn bytes_in(&self, action: &str) -> u64 {
        self.inner.lock().expect("metrics").bytes_in.get(action).copied().unwrap_or(0)
    }

    pub fn render(&self, out: &mut String) {
        let m = self.inner.lock().expect("metrics");
        out.push_str("# HELP mvault_http_requests_total Requests by action and HTTP status.\n");
        out.push_str("# TYPE mvault_http_requests_total counter\n");
        for ((a, s), n) in &m.requests {
            let _ = writeln!(out, "mvault_http_requests_total{{action=\"{a}\",status=\"{s}\"}} {n}");
        }
        out.push_str("# HELP mvault_http_errors_total Requests answered with a 5xx status.\n");
        out.push_str("# TYPE mvault_http_errors_total counter\n");
        let errors: u64 = m.requests.iter().filter(|((_, s), _)| *s >= 500).map(|(_, n)| n).sum();
        let _ = writeln!(out, "mvault_http_errors_total {errors}");
        for (name, map, help) in [
            ("mvault_http_request_bytes_total", &m.bytes_in, "Request body bytes received, by action."),
            ("mvault_http_response_bytes_total", &m.bytes_out, "Response body bytes sent, by action."),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (a, n) in map {
                let _ = writeln!(out, "{name}{{action=\"{a}\"}} {n}");
            }
        }
        out.push_str("# HELP mvault_http_request_duration_seconds Request latency by action.\n");
        out.push_str("# TYPE mvault_http_request_duration_seconds histogram\n");
        for (a, h) in &m.latency {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "mvault_http_request_duration_seconds_bucket{{action=\"{a}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ =
                writeln!(out, "mvault_http_request_duration_seconds_bucket{{action=\"{a}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "mvault_http_request_duration_seconds_sum{{action=\"{a}\"}} {}", h.sum);
            let _ = writeln!(out, "mvault_http_request_duration_seconds_count{{action=\"{a}\"}} {}", h.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_show_up_in_the_text() {
        let m = Metrics::default();
        m.observe("upload", 200, 1000, 10, 0.02);
        m.observe("upload", 507, 5, 10, 2.0);
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains("mvault_http_requests_total{action=\"upload\",status=\"200\"} 1"), "{s}");
        assert!(s.contains("mvault_http_errors_total 1"), "{s}");
        assert!(s.contains("mvault_http_request_bytes_total{action=\"upload\"} 1005"), "{s}");
        assert!(s.contains("mvault_http_request_duration_seconds_bucket{action=\"upload\",le=\"0.025\"} 1"), "{s}");
        assert!(s.contains("mvault_http_request_duration_seconds_count{action=\"upload\"} 2"), "{s}");
        assert_eq!(m.bytes_in("upload"), 1005);
    }
}
