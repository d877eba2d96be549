//! The relay under what clients, crashes and large accounts do:
//!
//! - **Head-of-line**: one user deletes an account of [`HEAVY_TASKS`] tasks while ten other
//!   writers create tasks at a paced rate; their publish lag while the deletion's events are
//!   published, against the same writers' lag just before it (same run).
//! - **Abort storm**: paced writes, first alone, then with a quarter of all requests sent by
//!   clients that give up mid-request (raw TCP, closed 0-4 ms after sending); every
//!   committed write must reach Kafka and nothing may stay pending.
//! - **Crash failover**: chat-api SIGKILLed and started again at once; the time from the
//!   kill, and from the new process answering, to its first new event on Kafka.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use e2e::Service;
use sea_orm::DatabaseConnection;
use serde_json::json;
use tokio::{io::AsyncWriteExt as _, task::JoinHandle};

use crate::{
    ctx::Ctx,
    kafka_events::{SeenEvents, user_group},
    load::{Op, Schedule, Worker, make_workers, run_worker},
    recurring::scalar_i64,
    services::{delete_account, relay_drained, user_drained},
    stats::{Quantiles, met},
};

pub(super) const HEAVY_USER: &str = "x-heavy";
pub(super) const HEAVY_TASKS: usize = 20_000;
const HEAVY_CONCURRENCY: usize = 32;
/// The steady writers of the head-of-line scenario (`h-w<n>-u<m>`), and their rate.
pub(super) const STEADY_PREFIX: &str = "h-";
const STEADY_WORKERS: usize = 10;
const STEADY_RATE: u32 = 200;
/// How long the steady writers run before the deletion (the baseline window).
const BEFORE_DELETE: Duration = Duration::from_secs(5);

/// Paced writers of the abort storm, first alone (`n-`), then beside the storm (`a-`).
pub(super) const CALM_PREFIX: &str = "n-";
pub(super) const STORM_PREFIX: &str = "a-";
pub(super) const STORM_USER: &str = "s-storm";
const STORM_WORKERS: usize = 8;
const STORM_RATE: u32 = 300;
const STORM_WINDOW: Duration = Duration::from_secs(10);

pub(super) const FAILOVER_USER: &str = "f-failover";

pub(super) struct HeadOfLine {
    /// The deletion: its answer time, and how long its events took to publish afterwards.
    delete_took: Duration,
    deleted_drained: Duration,
    steady_requests: usize,
    /// Publish lag of the steady writers' events before the deletion, and while its events
    /// were being published.
    before: Quantiles,
    during: Quantiles,
    delete_sent: DateTime<Utc>,
    delete_drained_at: DateTime<Utc>,
    before_from: DateTime<Utc>,
}

pub(super) struct AbortStorm {
    calm_requests: usize,
    storm_requests: usize,
    aborted: usize,
    /// Tasks of the aborted requests that committed (the database), and their events on Kafka.
    aborted_committed: i64,
    aborted_on_kafka: usize,
    /// Events still pending after the relay settled.
    stuck: i64,
    calm: Quantiles,
    stormy: Quantiles,
    calm_window: (DateTime<Utc>, DateTime<Utc>),
    storm_window: (DateTime<Utc>, DateTime<Utc>),
}

pub(super) struct Failover {
    killed_at: DateTime<Utc>,
    answering_at: DateTime<Utc>,
    restart_took: Duration,
    /// Filled from the read-back: the first new event's Kafka append time.
    first_append_ms: Option<i64>,
}

pub(super) struct RelayFaults {
    pub(super) head_of_line: HeadOfLine,
    pub(super) storm: AbortStorm,
    pub(super) failover: Failover,
}

/// Paced creates by `workers` at `rate` per second in all, until `stop` is set.
pub(super) fn paced(
    ctx: &Ctx<'_>,
    workers: Vec<Worker>,
    rate: u32,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<usize>> {
    let n = u32::try_from(workers.len()).unwrap_or(1).max(1);
    let interval = Duration::from_secs(1) * n / rate.max(1);
    let t0 = Instant::now();
    workers
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let schedule = Schedule {
                t0,
                end: t0 + Duration::from_secs(600),
                interval,
                offset: interval * u32::try_from(i).unwrap_or(0) / n,
                stop: Some(stop.clone()),
            };
            let client = ctx.client.clone();
            tokio::spawn(async move { run_worker(w, client, Op::Create, schedule).await.1.len() })
        })
        .collect()
}

pub(super) async fn stop_all(stop: &AtomicBool, handles: Vec<JoinHandle<usize>>) -> usize {
    stop.store(true, Ordering::SeqCst);
    let mut sent = 0;
    for h in handles {
        sent += h.await.unwrap_or(0);
    }
    sent
}

pub(super) async fn run(
    ctx: &Ctx<'_>,
    api: &mut Service,
    db: &DatabaseConnection,
) -> Result<RelayFaults> {
    let head_of_line = head_of_line(ctx).await?;
    println!(
        "    head-of-line: {HEAVY_TASKS} deletions published {:.1} s after the delete answered",
        head_of_line.deleted_drained.as_secs_f64()
    );
    let storm = abort_storm(ctx, db).await?;
    println!(
        "    abort storm: {} of {} requests aborted, {} of them committed",
        storm.aborted,
        storm.storm_requests + storm.aborted,
        storm.aborted_committed
    );
    let failover = failover(ctx, api).await?;
    println!(
        "    crash failover: restarted and answering {:.2} s after the SIGKILL",
        failover.restart_took.as_secs_f64()
    );
    Ok(RelayFaults {
        head_of_line,
        storm,
        failover,
    })
}

async fn head_of_line(ctx: &Ctx<'_>) -> Result<HeadOfLine> {
    let token = ctx.env.token(HEAVY_USER)?;
    let url = format!("{}/api/{HEAVY_USER}/tasks", ctx.api_base);
    let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let creators: Vec<JoinHandle<Result<()>>> = (0..HEAVY_CONCURRENCY)
        .map(|_| {
            let (client, url, token, made) =
                (ctx.client.clone(), url.clone(), token.clone(), made.clone());
            tokio::spawn(async move {
                while made.fetch_add(1, Ordering::SeqCst) < HEAVY_TASKS {
                    let r = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"title": "to be deleted"}))
                        .send()
                        .await?;
                    if r.status().as_u16() != 201 {
                        bail!("creating the heavy account's tasks: {}", r.status());
                    }
                }
                Ok(())
            })
        })
        .collect();
    for c in creators {
        c.await??;
    }
    relay_drained(ctx).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let workers = make_workers(ctx, STEADY_PREFIX, STEADY_WORKERS, &ctx.api_base)?;
    let before_from = Utc::now();
    let writers = paced(ctx, workers, STEADY_RATE, &stop);
    tokio::time::sleep(BEFORE_DELETE).await;
    let delete_sent = Utc::now();
    let delete_took = delete_account(ctx, HEAVY_USER, Some(Duration::from_secs(120))).await?;
    // The heavy user's own events, not the whole outbox: the writers' events of the last
    // few milliseconds are pending at most polls, so waiting for an empty outbox measured
    // the odds of a poll between two of their commits (over 120 s in two runs, where the
    // relay's log showed the deletion's events published in about 32 s).
    let deleted_drained = user_drained(ctx, HEAVY_USER).await?;
    let delete_drained_at = Utc::now();
    let steady_requests = stop_all(&stop, writers).await;
    relay_drained(ctx).await?;
    Ok(HeadOfLine {
        delete_took,
        deleted_drained,
        steady_requests,
        before: Quantiles::default(),
        during: Quantiles::default(),
        delete_sent,
        delete_drained_at,
        before_from,
    })
}

/// Sends `count` creates for `user` that are abandoned after being written (see the module
/// docs), `concurrency` at a time; one in four sends only half its body.
async fn aborting_clients(ctx: &Ctx<'_>, user: &str, stop: Arc<AtomicBool>) -> Result<usize> {
    let addr = ctx.api_base.trim_start_matches("http://").to_owned();
    let token = ctx.env.token(user)?;
    let user = user.to_owned();
    // A quarter of all requests: one aborted for every three paced ones.
    let interval = Duration::from_secs(3) / STORM_RATE;
    let mut sent = 0usize;
    let mut tick = tokio::time::interval(interval);
    let mut inflight = tokio::task::JoinSet::new();
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let (addr, token, user) = (addr.clone(), token.clone(), user.clone());
        let n = sent;
        inflight.spawn(async move {
            let body = json!({"title": format!("aborted {n}")}).to_string();
            let head = format!(
                "POST /api/{user}/tasks HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await else {
                return;
            };
            let cut = if n.is_multiple_of(4) { body.len() / 2 } else { body.len() };
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body.as_bytes()[..cut]).await;
            tokio::time::sleep(Duration::from_micros((n as u64 * 397) % 4_000)).await;
        });
        sent += 1;
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
    Ok(sent)
}

async fn abort_storm(ctx: &Ctx<'_>, db: &DatabaseConnection) -> Result<AbortStorm> {
    let stop = Arc::new(AtomicBool::new(false));
    let calm_from = Utc::now();
    let writers = paced(
        ctx,
        make_workers(ctx, CALM_PREFIX, STORM_WORKERS, &ctx.api_base)?,
        STORM_RATE,
        &stop,
    );
    tokio::time::sleep(STORM_WINDOW).await;
    let calm_requests = stop_all(&stop, writers).await;
    let calm_to = Utc::now();
    relay_drained(ctx).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let storm_from = Utc::now();
    let writers = paced(
        ctx,
        make_workers(ctx, STORM_PREFIX, STORM_WORKERS, &ctx.api_base)?,
        STORM_RATE,
        &stop,
    );
    let aborting = aborting_clients(ctx, STORM_USER, stop.clone());
    let (aborted, ()) = tokio::join!(aborting, async {
        tokio::time::sleep(STORM_WINDOW).await;
        stop.store(true, Ordering::SeqCst);
    });
    let aborted = aborted?;
    let storm_requests = stop_all(&stop, writers).await;
    let storm_to = Utc::now();
    relay_drained(ctx).await?;
    let aborted_committed = scalar_i64(
        db,
        &format!("SELECT count(*) FROM tasks WHERE user_id = '{STORM_USER}'"),
    )
    .await?;
    let stuck = scalar_i64(db, "SELECT count(*) FROM outbox WHERE published_at IS NULL").await?;
    Ok(AbortStorm {
        calm_requests,
        storm_requests,
        aborted,
        aborted_committed,
        aborted_on_kafka: 0,
        stuck,
        calm: Quantiles::default(),
        stormy: Quantiles::default(),
        calm_window: (calm_from, calm_to),
        storm_window: (storm_from, storm_to),
    })
}

async fn failover(ctx: &Ctx<'_>, api: &mut Service) -> Result<Failover> {
    let killed_at = Utc::now();
    let killed = Instant::now();
    api.process.kill9();
    api.restart_process(&ctx.env.dir.path().join("logs"))
        .await
        .context("restarting chat-api after the SIGKILL")?;
    let restart_took = killed.elapsed();
    let answering_at = Utc::now();
    let r = ctx
        .client
        .post(format!("{}/api/{FAILOVER_USER}/tasks", ctx.api_base))
        .bearer_auth(ctx.env.token(FAILOVER_USER)?)
        .json(&json!({"title": "after the crash"}))
        .send()
        .await?;
    if r.status().as_u16() != 201 {
        bail!("the first write after the restart: {}", r.status());
    }
    relay_drained(ctx).await?;
    Ok(Failover {
        killed_at,
        answering_at,
        restart_took,
        first_append_ms: None,
    })
}

fn lag_between(
    seen: &SeenEvents,
    prefix: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Quantiles {
    let (from, to) = (from.timestamp_millis(), to.timestamp_millis());
    let lags = seen
        .by_group
        .get(&(user_group(prefix).to_owned(), Op::Create))
        .map(|(events, _)| {
            events
                .iter()
                .filter(|e| e.occurred_ms >= from && e.occurred_ms < to)
                .map(|e| (e.append_ms - e.occurred_ms) as f64)
                .collect()
        })
        .unwrap_or_default();
    Quantiles::of(lags)
}

impl RelayFaults {
    /// Fills in what comes from the read-back of `task-events`.
    pub(super) fn with_kafka(mut self, seen: &SeenEvents) -> Self {
        let h = &mut self.head_of_line;
        h.before = lag_between(seen, STEADY_PREFIX, h.before_from, h.delete_sent);
        h.during = lag_between(seen, STEADY_PREFIX, h.delete_sent, h.delete_drained_at);
        let s = &mut self.storm;
        s.calm = lag_between(seen, CALM_PREFIX, s.calm_window.0, s.calm_window.1);
        s.stormy = lag_between(seen, STORM_PREFIX, s.storm_window.0, s.storm_window.1);
        s.aborted_on_kafka = seen
            .by_group
            .get(&(user_group(STORM_USER).to_owned(), Op::Create))
            .map_or(0, |(_, ids)| ids.len());
        self.failover.first_append_ms = seen
            .by_group
            .get(&(user_group(FAILOVER_USER).to_owned(), Op::Create))
            .and_then(|(events, _)| events.iter().map(|e| e.append_ms).min());
        self
    }

    /// SIGKILL → the first new event on Kafka, and the part of it after the new process
    /// answered, in milliseconds.
    pub(super) fn failover_ms(&self) -> Option<(f64, f64)> {
        let f = &self.failover;
        f.first_append_ms.map(|t| {
            (
                (t - f.killed_at.timestamp_millis()) as f64,
                (t - f.answering_at.timestamp_millis()) as f64,
            )
        })
    }

    pub(super) fn render(&self, s: &mut String) {
        use std::fmt::Write as _;
        let h = &self.head_of_line;
        let _ = writeln!(s, "\n### Relay under faults\n");
        let _ = writeln!(
            s,
            "- **Head-of-line**: {HEAVY_TASKS} tasks of one user deleted (`DELETE /api/{{user}}` answered in {:.1} s; its events all published {:.1} s later) while {STEADY_WORKERS} writers created {STEADY_RATE} tasks/s for other users ({} requests). Their publish lag p50 / p95 / p99: {:.0} / {:.0} / {:.0} ms before the deletion ({} events), {:.0} / {:.0} / {:.0} ms while its events were published ({} events). Goal p99 ≤ 100 ms during: {}.",
            h.delete_took.as_secs_f64(),
            h.deleted_drained.as_secs_f64(),
            h.steady_requests,
            h.before.p50,
            h.before.p95,
            h.before.p99,
            h.before.n,
            h.during.p50,
            h.during.p95,
            h.during.p99,
            h.during.n,
            met(h.during.n > 0 && h.during.p99 <= 100.0)
        );
        let st = &self.storm;
        let _ = writeln!(
            s,
            "- **Abort storm**: {STORM_RATE} paced creates/s for {} s, first alone ({} requests), then with {} more sent by clients that gave up mid-request ({:.0} % of all; {} of them had committed, {} of those on Kafka; {} events stuck after the relay settled). Publish lag p50 / p95 / p99 of the paced writes: {:.0} / {:.0} / {:.0} ms alone, {:.0} / {:.0} / {:.0} ms in the storm. Goal (every committed write on Kafka, nothing stuck, the same lag): {}.",
            STORM_WINDOW.as_secs(),
            st.calm_requests,
            st.aborted,
            100.0 * st.aborted as f64 / (st.aborted + st.storm_requests).max(1) as f64,
            st.aborted_committed,
            st.aborted_on_kafka,
            st.stuck,
            st.calm.p50,
            st.calm.p95,
            st.calm.p99,
            st.stormy.p50,
            st.stormy.p95,
            st.stormy.p99,
            met(st.aborted_on_kafka as i64 == st.aborted_committed
                && st.stuck == 0
                && st.stormy.p99 <= (st.calm.p99 * 1.5).max(st.calm.p99 + 20.0))
        );
        match self.failover_ms() {
            Some((from_kill, from_answer)) => {
                let _ = writeln!(
                    s,
                    "- **Crash failover**: chat-api SIGKILLed and started again at once (answering after {:.2} s); its first new event was on Kafka {:.0} ms after the kill, {:.0} ms after the new process answered. Goal ≤ 1 s: {}.",
                    self.failover.restart_took.as_secs_f64(),
                    from_kill,
                    from_answer,
                    met(from_kill <= 1000.0)
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "- **Crash failover**: the first event after the restart was not found on Kafka: **not met**."
                );
            }
        }
    }
}
