//! reminder-cron's own metrics, beside the shared ones of [`service_kit::metrics`].
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `reminder_scans_total` | counter | | scans run (a skipped tick is not one) |
//! | `reminders_claimed_total` | counter | | reminder keys this process claimed (the atomic first-write it won) |
//! | `reminders_published_total` | counter | | reminders this process published |
//! | `reminders_skipped_total` | counter | `reason`: `already_sent`, `withdrawn` | reminders found due but not sent by this process |
//! | `reminders_failed_total` | counter | | reminders left for the next tick because a call failed |

use std::sync::LazyLock;

use service_kit::metrics::{
    counter, counter_vec,
    prometheus::{IntCounter, IntCounterVec},
};

use super::ScanReport;

static SCANS: LazyLock<IntCounter> =
    LazyLock::new(|| counter("reminder_scans_total", "Reminder scans run."));
pub(crate) static CLAIMED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "reminders_claimed_total",
        "Reminder keys this process claimed (the first-write it won).",
    )
});
static PUBLISHED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "reminders_published_total",
        "Reminders this process published.",
    )
});
static FAILED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "reminders_failed_total",
        "Reminders left for the next tick because a call failed.",
    )
});
static SKIPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "reminders_skipped_total",
        "Reminders found due but not sent by this process, by reason.",
        &["reason"],
    )
});

/// Adds one scan's report to the counters.
pub(crate) fn count(report: &ScanReport) {
    SCANS.inc();
    PUBLISHED.inc_by(report.published);
    FAILED.inc_by(report.failed);
    SKIPPED
        .with_label_values(&["already_sent"])
        .inc_by(report.already_sent);
    SKIPPED
        .with_label_values(&["withdrawn"])
        .inc_by(report.withdrawn);
    LazyLock::force(&CLAIMED);
}
