//! Kafka outage: how long the relay takes to catch up after the broker comes back.
//!
//! Paced writes (open loop) run throughout. After a steady start the broker is stopped for
//! [`OUTAGE`], then started again on the same data; the writes go on until every event
//! committed before the broker was back is on Kafka, and a little longer so the lag can be
//! seen to return to its steady level. Catch-up is measured twice: live, from the relay's
//! status (its oldest pending event was committed after the restart), and afterwards from
//! Kafka itself (the last append time of an event that occurred before the restart).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;

use crate::{
    kafka_events::{SeenEvents, user_group},
    load::{Op, Sample, Schedule, Worker, run_worker},
    services::relay_status,
    stats::{Quantiles, met, ms},
};

/// Users of the outage scenario: `o-w<worker>-u<n>`.
pub(super) const PREFIX: &str = "o-";
pub(super) const WORKERS: usize = 8;
/// Writes per second, spread evenly over the workers.
pub(super) const RATE: u32 = 400;
const BEFORE: Duration = Duration::from_secs(5);
pub(super) const OUTAGE: Duration = Duration::from_secs(30);
/// Writes go on for this long after the catch-up.
const AFTER: Duration = Duration::from_secs(5);
/// The catch-up must happen within this long after the broker is back.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(180);

pub(super) struct Outage {
    /// Requests sent while the broker was down (stopping and starting included), their
    /// failures and latency (from when each was due).
    during_requests: usize,
    during_errors: usize,
    during_latency: Quantiles,
    during_max_ms: f64,
    /// All requests of the scenario, and how many succeeded (each must have its event).
    requests: usize,
    ok_total: usize,
    /// The relay's backlog just before the broker was started again.
    backlog: u64,
    /// How long the broker took to stop, and to start until it served again.
    stop_took: Duration,
    start_took: Duration,
    /// From the broker serving again until the relay's oldest pending event was committed
    /// after that (or nothing was pending), polled every 100 ms.
    caught_up_live: Duration,
    /// Wall-clock marks for the read-back.
    down_at: DateTime<Utc>,
    back_at: DateTime<Utc>,
    /// The whole scenario, from the first write to the last.
    total: Duration,
    kafka: Option<OutageKafka>,
}

pub(super) struct OutageKafka {
    /// Records of the scenario's events, and their distinct event ids.
    records: usize,
    distinct: usize,
    /// Events that occurred before the broker was back.
    backlog_events: usize,
    /// From the broker serving again until the last of those was appended.
    caught_up: Duration,
    /// Publish lag of the events that occurred before the outage, and of those that
    /// occurred after the catch-up.
    lag_before: Quantiles,
    lag_after: Quantiles,
}

/// Runs the scenario against chat-api at `api_base`; `stack` is the benchmark's stack,
/// whose broker it stops and starts.
pub(super) async fn run(
    stack: &mut devstack::Stack,
    client: &reqwest::Client,
    api_base: &str,
    workers: Vec<Worker>,
) -> Result<Outage> {
    let interval = Duration::from_secs(1) * u32::try_from(workers.len()).unwrap_or(1) / RATE;
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let handles: Vec<JoinHandle<(Worker, Vec<Sample>, bool)>> = workers
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let schedule = Schedule {
                t0,
                end: t0 + BEFORE + OUTAGE + CATCH_UP_LIMIT + AFTER,
                interval,
                offset: interval * u32::try_from(i).unwrap_or(0)
                    / u32::try_from(WORKERS).unwrap_or(1),
                stop: Some(stop.clone()),
            };
            tokio::spawn(run_worker(w, client.clone(), Op::Create, schedule))
        })
        .collect();
    let stopper = StopOnDrop(stop.clone());

    tokio::time::sleep(BEFORE).await;
    let down = Instant::now();
    let down_at = Utc::now();
    stack.stop_kafka().await?;
    let stop_took = down.elapsed();
    println!(
        "    broker stopped ({:.1} s); writes go on for {} s",
        stop_took.as_secs_f64(),
        OUTAGE.as_secs()
    );
    tokio::time::sleep_until((down + OUTAGE).into()).await;
    let backlog = relay_status(client, api_base).await?.0;
    let restarting = Instant::now();
    stack.start_kafka().await?;
    let back = Instant::now();
    let back_at = Utc::now();
    let start_took = back - restarting;
    println!(
        "    backlog {backlog} events; broker serving again after {:.1} s",
        start_took.as_secs_f64()
    );

    let caught_up_live = loop {
        let (pending, oldest_age) = relay_status(client, api_base).await?;
        let since_back = back.elapsed();
        if pending == 0 || oldest_age < since_back {
            break since_back;
        }
        if since_back > CATCH_UP_LIMIT {
            bail!(
                "the relay had not caught up {CATCH_UP_LIMIT:?} after the broker came back: {pending} pending, the oldest {oldest_age:?} old"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "    caught up {:.1} s after the broker was back",
        caught_up_live.as_secs_f64()
    );
    tokio::time::sleep(AFTER).await;
    drop(stopper);

    let mut samples = Vec::new();
    for h in handles {
        let (_, s, _) = h.await.context("a load worker panicked")?;
        samples.extend(s);
    }
    let total = t0.elapsed();
    let (from, to) = (down - t0, back - t0);
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start >= from && s.start < to)
        .collect();
    let latencies: Vec<f64> = during.iter().map(|s| ms(s.latency)).collect();
    Ok(Outage {
        during_requests: during.len(),
        during_errors: during.iter().filter(|s| !s.ok).count(),
        during_max_ms: latencies.iter().copied().fold(0.0, f64::max),
        during_latency: Quantiles::of(latencies),
        requests: samples.len(),
        ok_total: samples.iter().filter(|s| s.ok).count(),
        backlog,
        stop_took,
        start_took,
        caught_up_live,
        down_at,
        back_at,
        total,
        kafka: None,
    })
}

/// Sets the stop flag however the scenario ends, so no load worker outlives it.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl SeenEvents {
    pub(super) fn outage_stats(&self, outage: Outage) -> Outage {
        let Some((events, ids)) = self
            .by_group
            .get(&(user_group(PREFIX).to_owned(), Op::Create))
        else {
            return outage;
        };
        let (down, back) = (
            outage.down_at.timestamp_millis(),
            outage.back_at.timestamp_millis(),
        );
        let backlog: Vec<_> = events.iter().filter(|e| e.occurred_ms < back).collect();
        let last_backlog_append = backlog.iter().map(|e| e.append_ms).max().unwrap_or(back);
        let caught_up =
            Duration::from_millis(u64::try_from(last_backlog_append - back).unwrap_or(0));
        let steady_again = back + i64::try_from(caught_up.as_millis()).unwrap_or(i64::MAX);
        let lag = |keep: &dyn Fn(i64) -> bool| {
            Quantiles::of(
                events
                    .iter()
                    .filter(|e| keep(e.occurred_ms))
                    .map(|e| (e.append_ms - e.occurred_ms) as f64)
                    .collect(),
            )
        };
        let kafka = OutageKafka {
            records: events.len(),
            distinct: ids.len(),
            backlog_events: backlog.len(),
            caught_up,
            lag_before: lag(&|t| t < down),
            lag_after: lag(&|t| t >= steady_again),
        };
        Outage {
            kafka: Some(kafka),
            ..outage
        }
    }
}

impl Outage {
    /// The targets table's row: no write fails while the broker is down, and every event
    /// reaches Kafka afterwards. The catch-up time has no target; it is reported.
    pub(super) fn render_target(&self, s: &mut String) {
        use std::fmt::Write as _;
        let delivered = self
            .kafka
            .as_ref()
            .is_some_and(|k| k.distinct >= self.ok_total);
        let caught_up = self
            .kafka
            .as_ref()
            .map_or(self.caught_up_live, |k| k.caught_up);
        let _ = writeln!(
            s,
            "| {} s Kafka outage: every write succeeds, every event reaches Kafka | {} of {} writes failed during the outage (p95 {:.1} ms); every event on Kafka: {}; caught up {:.1} s after the broker was back | {} |",
            OUTAGE.as_secs(),
            self.during_errors,
            self.during_requests,
            self.during_latency.p95,
            if delivered { "yes" } else { "**no**" },
            caught_up.as_secs_f64(),
            met(delivered && self.during_errors == 0 && self.during_requests > 0)
        );
    }

    pub(super) fn render(&self, s: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            s,
            "\n### Kafka outage: catch-up after {} s without a broker\n",
            OUTAGE.as_secs()
        );
        let _ = writeln!(
            s,
            "{RATE} creates/s paced (open loop, {WORKERS} workers) throughout; after {} s the broker was stopped (took {:.1} s), {} s later started again on the same data (serving after {:.1} s). The writes went on until the relay had caught up, then {} s more ({} s in all).\n",
            BEFORE.as_secs(),
            self.stop_took.as_secs_f64(),
            OUTAGE.as_secs(),
            self.start_took.as_secs_f64(),
            AFTER.as_secs(),
            self.total.as_secs(),
        );
        let _ = writeln!(s, "| figure | value |");
        let _ = writeln!(s, "|---|---:|");
        let _ = writeln!(
            s,
            "| requests while the broker was down (stop to serving again) | {} |",
            self.during_requests
        );
        let _ = writeln!(
            s,
            "| of them failed (transport error or not 201) | {} |",
            self.during_errors
        );
        let _ = writeln!(
            s,
            "| their latency p50 / p95 / p99 / max ms | {:.1} / {:.1} / {:.1} / {:.1} |",
            self.during_latency.p50,
            self.during_latency.p95,
            self.during_latency.p99,
            self.during_max_ms
        );
        let _ = writeln!(
            s,
            "| relay backlog just before the restart (`/relay/status`) | {} |",
            self.backlog
        );
        let _ = writeln!(
            s,
            "| caught up after the broker was back, live (`/relay/status` every 100 ms) | {:.1} s |",
            self.caught_up_live.as_secs_f64()
        );
        match &self.kafka {
            Some(k) => {
                let _ = writeln!(
                    s,
                    "| events that occurred before the broker was back | {} |",
                    k.backlog_events
                );
                let _ = writeln!(
                    s,
                    "| **caught up after the broker was back** (last of those appended) | **{:.1} s** |",
                    k.caught_up.as_secs_f64()
                );
                let _ = writeln!(
                    s,
                    "| events on Kafka / successful writes | {} / {}{} |",
                    k.distinct,
                    self.ok_total,
                    if k.distinct >= self.ok_total {
                        " ✓"
                    } else {
                        " **missing**"
                    }
                );
                let _ = writeln!(
                    s,
                    "| records on Kafka for them (a redelivery repeats an event id) | {} |",
                    k.records
                );
                let _ = writeln!(
                    s,
                    "| publish lag p50 / p95 ms before the outage | {:.0} / {:.0} |",
                    k.lag_before.p50, k.lag_before.p95
                );
                let _ = writeln!(
                    s,
                    "| publish lag p50 / p95 ms after the catch-up | {:.0} / {:.0} |",
                    k.lag_after.p50, k.lag_after.p95
                );
            }
            None => {
                let _ = writeln!(s, "| events on Kafka | not read back |");
            }
        }
        let _ = writeln!(
            s,
            "| requests in all / succeeded | {} / {} |",
            self.requests, self.ok_total
        );
    }
}
