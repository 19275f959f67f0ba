//! How a body is cut: part 1 of a multipart upload tells the later parts where the model file's tensors lie.

use crate::Tenant;
use std::sync::Arc;
use std::time::Duration;

/// How long a later part waits for part 1's header, before it is cut by content instead.
pub(super) const FIRST_PART_WAIT: Duration = Duration::from_secs(10);

/// What part 1 of a multipart upload told about the file: its layout (None: not a model file) and the part
/// size, from which a later part's offset follows (clients upload equal parts but for the last).
pub type PartModel = Option<(Arc<mvault_core::model::Layout>, u64)>;

/// How a body is cut: a whole object, part 1 (which tells the others), or a later part of a model file.
pub(super) enum PartPlan {
    Object,
    Plain,
    First(tokio::sync::watch::Sender<Option<PartModel>>),
    Part(Arc<mvault_core::model::Layout>, u64),
}

/// The plan for part `number` of `upload`: part 1 reads the header; a later part waits (briefly) for it.
pub(super) async fn part_plan(tenant: &Tenant, upload: &str, number: u32) -> PartPlan {
    let told = tenant.s3_models.lock().expect("part models").entry(upload.to_string()).or_default().clone();
    plan_from(told, number, FIRST_PART_WAIT).await
}

/// The plan for part `number`, given the channel part 1 tells on: a later part of a model file starts
/// where `number - 1` equal parts end; anything part 1 did not tell within `wait` is cut by content.
async fn plan_from(told: tokio::sync::watch::Sender<Option<PartModel>>, number: u32, wait: Duration) -> PartPlan {
    if number == 1 {
        return PartPlan::First(told);
    }
    let mut rx = told.subscribe();
    let known = tokio::time::timeout(wait, rx.wait_for(|v| v.is_some())).await;
    match known.ok().and_then(|r| r.ok()).and_then(|v| v.clone()).flatten() {
        Some((layout, part_size)) => PartPlan::Part(layout, (number as u64 - 1) * part_size),
        None => PartPlan::Plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvault_core::model::{Format, Layout};

    fn layout() -> Arc<Layout> {
        Arc::new(Layout { format: Format::Safetensors, file_len: 64 << 20, tensors: Vec::new() })
    }

    fn channel() -> tokio::sync::watch::Sender<Option<PartModel>> {
        tokio::sync::watch::Sender::new(None)
    }

    #[tokio::test]
    async fn part_one_is_told_to_read_the_header() {
        assert!(matches!(plan_from(channel(), 1, Duration::ZERO).await, PartPlan::First(_)));
    }

    #[tokio::test]
    async fn a_later_part_of_a_model_file_starts_after_the_equal_parts_before_it() {
        let told = channel();
        told.send_replace(Some(Some((layout(), 8 << 20))));
        match plan_from(told, 4, Duration::ZERO).await {
            PartPlan::Part(_, offset) => assert_eq!(offset, 3 * (8 << 20)),
            _ => panic!("part 4 of a model file must be cut by its layout"),
        }
    }

    #[tokio::test]
    async fn a_later_part_waits_for_part_one_to_tell() {
        let told = channel();
        let teller = told.clone();
        let plan = tokio::spawn(plan_from(told, 2, Duration::from_secs(600)));
        tokio::task::yield_now().await;
        teller.send_replace(Some(Some((layout(), 5 << 20))));
        assert!(matches!(plan.await.unwrap(), PartPlan::Part(_, offset) if offset == 5 << 20));
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_model_or_a_silent_part_one_is_cut_by_content() {
        let told = channel();
        told.send_replace(Some(None));
        assert!(matches!(plan_from(told, 2, Duration::ZERO).await, PartPlan::Plain));
        assert!(matches!(plan_from(channel(), 3, Duration::ZERO).await, PartPlan::Plain));
    }
}
