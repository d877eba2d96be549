//! Latency figures (nearest-rank percentiles in milliseconds) and how a goal is reported.

use std::time::Duration;

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Quantiles {
    pub(super) n: usize,
    pub(super) p50: f64,
    pub(super) p95: f64,
    pub(super) p99: f64,
}

impl Quantiles {
    /// Nearest-rank percentiles of `values` (milliseconds).
    pub(super) fn of(values: Vec<f64>) -> Quantiles {
        if values.is_empty() {
            return Quantiles::default();
        }
        let at = |p: f64| e2e::percentile(&values, p).unwrap_or_default();
        Quantiles {
            n: values.len(),
            p50: at(50.0),
            p95: at(95.0),
            p99: at(99.0),
        }
    }
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A goal in the report: met, or not (in bold).
pub(super) fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}
