//! The outbox relay, where `task-events` is published: it runs in `chat-api` and publishes
//! the events committed with each task change (the outbox, [`outbox`]) through the sidecar,
//! in commit order per user, marking each published only after the sidecar confirmed the
//! broker's ack. Marking an event published deletes its row: what is left in the outbox is
//! pending (or parked). With its queries: the outbox's ([`OutboxStore`]) and the publisher lock's
//! ([`PublisherLock`]); its metrics in [`metrics`].
//!
//! May depend on: the store (the outbox's table and connections), the domain, and
//! `service-kit`'s publisher. Never on HTTP.
//!
//! - **Waking**: at once after each commit (an in-memory signal), and swept periodically, so
//!   an event is never stranded. Requests only write the database, so they keep succeeding
//!   whatever the sidecar or Kafka do.
//! - **Rounds** ([`round`]): a round reads pending events in commit order (pages of about
//!   twice what the last round published, up to [`RelayConfig::batch_size`]), at most
//!   [`RelayConfig::per_user`] of each user, reading past users who reached that (so an
//!   account deletion of 20,000 tasks cannot hold up anybody else), fills the rest of the
//!   round with the events already read beyond that cap (so one user's backlog goes in
//!   long rounds when nobody else waits), and publishes each
//!   user's events as a pipeline of its own: one event of a user in flight at a time, the
//!   next sent as soon as that one is acknowledged, whatever the other users' calls do;
//!   whatever is ready at a moment goes in one bulk call, many users per call. While a
//!   round runs, what is committed meanwhile is read in (woken by the commit, at most every
//!   [`ROUND_SLICE`], the users with nothing queued or in flight) and joins the pipelines,
//!   so a heavy user's backlog is not stopped for the others' new events (a round whose
//!   calls were all answered waits for such a read rather than ending); a round sends
//!   nothing more after [`ROUND_MAX`], and the next one reads everything pending again
//!   (which also finds rows that became visible out of id order). What a round published
//!   is marked as it goes (every [`ROUND_SLICE`]) and, for the rest, by the next round
//!   while it reads, on the relay's second connection.
//! - **Failures** are told apart by what the sidecar answered
//!   ([`service_kit::PublishError`]):
//!   - *no answer* (its sidecar is down, dead mid-call, frozen): the round is an outage of
//!     this replica; it backs off, probes, and after [`RelayConfig::handover_after`] hands
//!     the lock over;
//!   - *the broker did not take the event now* (broker down, a partition without a leader,
//!     too few replicas): the event's user waits with a backoff of its own while every
//!     other user's events go; a round that got nothing through is an outage, followed by
//!     a probe round of one bulk call's worth, with capped exponential backoff and jitter.
//!     Such an event is never parked: it goes when its partition is back;
//!   - *the broker refuses the event itself* (too large, invalid, not authorized, unknown
//!     topic): its user waits with backoff; after [`RelayConfig::park_after`] refusals the
//!     event is *parked*: kept in the outbox, counted on `/relay/status`, logged as an
//!     error, and re-queued by `chat-api outbox retry`.
//! - **One publisher**: with several replicas on one database only the holder of the
//!   [`PublisherLock`] publishes; the lock dies with its holder's database session (or
//!   process), so a crashed replica's successor publishes within about a second. The relay
//!   confirms it still holds the lock before every call, so a process that was frozen
//!   publishes nothing more once another took over. A holder whose own sidecar stays
//!   unreachable for [`RelayConfig::handover_after`] gives the lock up so a replica with a
//!   working sidecar can publish (a broker outage is no reason: every sidecar fails
//!   alike), and takes it again as soon as it is free and its sidecar answers.
//! - **Its own connections**: the relay has a pool of its own, whose statements give up on
//!   row locks after a bound, so no request's transaction can block it; the watchdog
//!   ([`health`]) restarts a relay that makes no progress. `chat-api` runs the watchdog
//!   and the relay on a runtime of their own, where their connections are made too.

mod health;
pub mod metrics;
pub mod outbox;
mod plan;
pub mod publisher_lock;
mod round;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use futures::FutureExt;
pub use outbox::{Backlog, OutboxStore, ParkedEvent, PendingEvent};
pub use publisher_lock::PublisherLock;
use service_kit::{Publisher, Shutdown};
use tokio::sync::Notify;

pub use health::{HealthView, RelayHealth, supervise};

/// A round reads in what was committed while it runs at most this often (so a fresh event
/// waits at most this long for its read, and the commits in between go together), and
/// marks what it published this often. Under steady writes each bulk call carries one
/// slice of commits (about 45 events at 1,500 writes/s, 80 with 50 ms: the sidecar's and
/// the broker's CPU per event fell by a fifth more, within the noise of relay on/off
/// throughput, for 25 ms more publish lag, so 25 ms it is). A commit after a quiet spell
/// is read at once.
pub const ROUND_SLICE: Duration = Duration::from_millis(25);

/// A round sends nothing more after this long even when nobody else waits, so the next
/// round's read comes soon (the users whose events failed in it, rows that became visible
/// out of id order); long enough that the gap between two rounds (the last call's answer,
/// then the next read, a few milliseconds in which a heavy user has nothing in flight)
/// costs little beside it. New commits do not wait for it: a round reads them in.
pub const ROUND_MAX: Duration = Duration::from_millis(250);

/// The relay's settings (`RELAY_*`, parsed and checked in chat-api's `config`).
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Events read from the outbox per round.
    pub batch_size: u64,
    /// Publish calls in flight at once (each user's events stay sequential).
    pub concurrency: usize,
    /// Events per publish call, each of a different user: above 1, the next events of many
    /// users go to the sidecar in one bulk call ([`Publisher::publish_all`]).
    pub bulk_size: usize,
    /// Events of one user a round takes before it reads on past them to reach the other
    /// users; what it read beyond that fills the round's remaining room afterwards.
    pub per_user: usize,
    /// How often the outbox is swept when nothing woke the relay.
    pub sweep_interval: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Backoff of one event that failed while the sidecar answered (its user waits;
    /// everybody else goes on).
    pub refusal_backoff_initial: Duration,
    pub refusal_backoff_max: Duration,
    /// Refusals of the event itself by the broker after which it is parked.
    pub park_after: u32,
    /// Log the backlog when the oldest pending event is older than this.
    pub lag_warning: Duration,
    /// A holder whose own sidecar is unreachable this long gives the lock up ...
    pub handover_after: Duration,
    /// ... and leaves it to the other replicas this long before it tries again.
    pub handover_pause: Duration,
    /// How often a replica that does not publish tries to take the lock.
    pub follow_interval: Duration,
    /// PostgreSQL ends the lock's session after this much silence, so a frozen holder loses
    /// the lock (its keeper pings every second while it lives).
    pub lock_idle_timeout: Duration,
    /// No progress for this long is a stall: the watchdog restarts the relay.
    pub stall_after: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            // Large enough that a round under load carries everything that accumulated during
            // the previous one (`cargo xtask bench`: 256 let the relay fall behind at 2,000
            // writes/s).
            batch_size: 1000,
            concurrency: 32,
            // `cargo xtask bench`: 256 drained a backlog 20-50 % faster than 64, with the same
            // publish lag under load.
            bulk_size: 256,
            per_user: 32,
            sweep_interval: Duration::from_millis(500),
            backoff_initial: Duration::from_millis(100),
            // While nothing gets through, each retry is a probe of one bulk call, so a short
            // cap costs little and bounds how long the relay sleeps after the broker is back
            // (`cargo xtask bench`, Kafka outage).
            backoff_max: Duration::from_secs(2),
            refusal_backoff_initial: Duration::from_millis(200),
            refusal_backoff_max: Duration::from_secs(5),
            // With the backoff above, about 25 s of the broker refusing the event itself:
            // a margin against an error text read wrongly, short enough that a user notices.
            park_after: 10,
            lag_warning: Duration::from_secs(5),
            handover_after: Duration::from_secs(10),
            handover_pause: Duration::from_secs(15),
            follow_interval: Duration::from_millis(250),
            lock_idle_timeout: Duration::from_secs(5),
            // Above the sidecar call's own deadline (12 s), so one slow call is not a stall.
            stall_after: Duration::from_secs(15),
        }
    }
}

pub struct Relay<P> {
    /// This relay's name: the lock holder's name while it publishes.
    holder: String,
    /// Where the publisher lock lives (the database's URL).
    database_url: String,
    outbox: OutboxStore,
    publisher: Arc<P>,
    wake: Arc<Notify>,
    config: RelayConfig,
    health: Arc<RelayHealth>,
    /// Users whose oldest event failed while the sidecar answered, waiting out a backoff.
    refused: Mutex<HashMap<String, round::Refused>>,
    /// Turns for single publishes when bulk calls are refused as a whole.
    fallback: tokio::sync::Semaphore,
    /// Events the last full round published: the next one reads about twice that.
    pace: std::sync::atomic::AtomicUsize,
    /// Runs once between two pages of a round's first read: a test commits rows there.
    #[cfg(test)]
    between_pages: Mutex<Option<futures::future::BoxFuture<'static, ()>>>,
}

/// What one round achieved.
#[derive(Debug, Default, PartialEq, Eq)]
struct Round {
    read: usize,
    published: usize,
    /// Publish calls the round made.
    calls: usize,
    failed: bool,
    /// Some call got no answer from this relay's own sidecar (the broker's errors come as
    /// answers), whatever else went through before it (a sidecar frozen mid-round).
    unreachable: bool,
    /// The publisher lock turned out lost: the round stopped before publishing more.
    lost_lock: bool,
    /// Stopped sending at [`ROUND_MAX`] (more may be queued).
    cut_short: bool,
    /// Some user reached the per-user cap, or the last read was full: more may be
    /// waiting, so the next round starts at once rather than after the sweep interval.
    saturated: bool,
    /// The outbox could not be read or written (the database, not the broker).
    database_failed: bool,
    /// Every failure was the broker refusing the event itself (its user waits out a
    /// backoff or the event is parked: no sign of an outage).
    only_refusals: bool,
}

impl Round {
    /// Failed without publishing anything, and not only on refused events: an outage of
    /// the broker or of this relay's sidecar.
    fn stalled(&self) -> bool {
        self.failed && self.published == 0 && !self.only_refusals
    }
}

impl<P: Publisher> Relay<P> {
    /// A relay reading `outbox` (best on a pool of its own, [`todo_store::connect_relay`]),
    /// taking the publisher lock in the database at `database_url`, and reporting to `health`
    /// (whose holder name it takes).
    pub fn new(
        outbox: OutboxStore,
        database_url: &str,
        publisher: Arc<P>,
        wake: Arc<Notify>,
        config: RelayConfig,
        health: Arc<RelayHealth>,
    ) -> Self {
        Self {
            holder: health.holder().to_owned(),
            database_url: database_url.to_owned(),
            outbox,
            publisher,
            wake,
            config,
            health,
            refused: Mutex::new(HashMap::new()),
            fallback: tokio::sync::Semaphore::new(round::FALLBACK_IN_FLIGHT),
            pace: std::sync::atomic::AtomicUsize::new(usize::MAX / 4),
            #[cfg(test)]
            between_pages: Mutex::new(None),
        }
    }

    /// A fresh relay name.
    pub fn new_holder_name() -> String {
        format!("relay-{}", uuid::Uuid::new_v4())
    }

    /// Runs until `shutdown`; the round in flight finishes first.
    pub async fn run(self, shutdown: Shutdown) {
        let mut lock: Option<PublisherLock> = None;
        let mut failures: u32 = 0;
        let mut last_purge = tokio::time::Instant::now();
        let mut last_lag_log = tokio::time::Instant::now();
        // Since when this relay's own sidecar has not answered: every round since failed for
        // it, or the last one had a call without an answer.
        let mut unreachable_since: Option<tokio::time::Instant> = None;
        let mut stalled_since: Option<tokio::time::Instant> = None;
        // Published (acknowledged) events not yet marked in the outbox: while the relay is
        // busy, each round marks the previous round's events as it reads the next batch.
        let mut unmarked: Vec<i64> = Vec::new();
        // Until when this relay leaves the lock to the others after stepping aside.
        let mut aside_until: Option<tokio::time::Instant> = None;
        while !shutdown.is_triggered() {
            let Some(held) = lock.as_ref() else {
                // Stepped aside for a sidecar it could not reach: it takes the lock again as
                // soon as the lock is free and its sidecar answers, or after the pause
                // whatever its sidecar does (alone, it is the only one who can publish).
                if aside_until.is_some_and(|t| tokio::time::Instant::now() < t)
                    && !self.publisher.answers().await
                {
                    self.health.progress();
                    self.pause(self.config.follow_interval, &shutdown).await;
                    continue;
                }
                match PublisherLock::try_acquire(
                    &self.database_url,
                    &self.holder,
                    self.config.lock_idle_timeout,
                )
                .await
                {
                    Ok(Some(taken)) => {
                        tracing::info!(holder = %self.holder, "outbox relay is publishing (holds the publisher lock)");
                        lock = Some(taken);
                        aside_until = None;
                        self.health.set_leading(true);
                        failures = 0;
                    }
                    Ok(None) => {
                        // Another replica publishes: following is this relay's progress.
                        self.health.set_leading(false);
                        self.health.progress();
                        self.pause(self.config.follow_interval, &shutdown).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox relay: cannot take the publisher lock");
                        failures = failures.saturating_add(1);
                        self.pause(self.backoff(failures), &shutdown).await;
                    }
                }
                continue;
            };
            // A relay that cannot reach its own sidecar steps aside, so a replica with a
            // working sidecar can take over.
            if unreachable_since.is_some_and(|t| t.elapsed() >= self.config.handover_after) {
                tracing::warn!(holder = %self.holder, "outbox relay cannot reach its sidecar; giving the publisher lock to another replica");
                self.flush_marks(&mut unmarked).await;
                if let Some(l) = lock.take() {
                    l.release().await;
                }
                self.health.set_leading(false);
                unreachable_since = None;
                self.health.progress();
                aside_until = Some(tokio::time::Instant::now() + self.config.handover_pause);
                continue;
            }
            let limit = self.config.batch_size;
            // After calls that got no answer, publish only once the sidecar answers again.
            let round = if unreachable_since.is_some() && !self.publisher.answers().await {
                Round {
                    failed: true,
                    unreachable: true,
                    ..Round::default()
                }
            } else if failures > 0 {
                // After a round that got nothing through, probe with one bulk call's worth.
                self.probe(held, &mut unmarked).await
            } else {
                self.round(held, &mut unmarked, limit).await
            };
            if round.lost_lock {
                self.flush_marks(&mut unmarked).await;
                tracing::warn!(holder = %self.holder, "outbox relay lost the publisher lock; another replica may publish");
                lock = None;
                self.health.set_leading(false);
                continue;
            }
            if round.stalled() {
                self.flush_marks(&mut unmarked).await;
                let now = tokio::time::Instant::now();
                stalled_since.get_or_insert(now);
                unreachable_since = if round.unreachable {
                    Some(unreachable_since.unwrap_or(now))
                } else {
                    None
                };
                // An outage of the broker or sidecar is known and handled by backing off;
                // a database that refuses every statement is what the watchdog is for.
                if !round.database_failed {
                    self.health.progress();
                }
                failures = failures.saturating_add(1);
                if last_lag_log.elapsed() >= Duration::from_secs(10) {
                    self.log_backlog().await;
                    last_lag_log = tokio::time::Instant::now();
                }
                // Only time or shutdown end a backoff: new commits must not turn an outage
                // into a busy loop.
                self.pause(self.backoff(failures), &shutdown).await;
                continue;
            }
            if !round.database_failed {
                self.health.progress();
            }
            if let Some(since) = stalled_since.take() {
                self.forget_outage_failures();
                tracing::info!(
                    stalled_ms = since.elapsed().as_millis() as u64,
                    failed_rounds = failures,
                    "outbox relay is publishing again"
                );
            }
            failures = 0;
            // A call without an answer, even in a round whose other calls went through: the
            // sidecar may have stopped answering since. The next call waits until it
            // answers again, since a frozen sidecar still takes calls into its socket and
            // writes them when it wakes, after another replica published the same events;
            // and the time towards the handover starts now.
            unreachable_since = round.unreachable.then(tokio::time::Instant::now);
            if last_purge.elapsed() >= Duration::from_secs(60) {
                self.purge().await;
                last_purge = tokio::time::Instant::now();
            }
            if round.cut_short || round.saturated || round.read as u64 >= limit || self.woken() {
                continue; // more is waiting: the next round marks this one's events meanwhile
            }
            self.flush_marks(&mut unmarked).await;
            if last_lag_log.elapsed() >= Duration::from_secs(10) {
                self.log_backlog_if_behind().await;
                last_lag_log = tokio::time::Instant::now();
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.config.sweep_interval) => {}
                () = shutdown.wait() => {}
            }
        }
        self.flush_marks(&mut unmarked).await;
        if let Some(l) = lock {
            l.release().await;
        }
        self.health.set_leading(false);
        tracing::info!("outbox relay stopped");
    }

    async fn pause(&self, delay: Duration, shutdown: &Shutdown) {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.wait() => {}
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        plan::backoff(
            self.config.backoff_initial,
            self.config.backoff_max,
            failures,
        )
    }

    /// Whether a commit signalled since the relay last waited (taking the signal).
    fn woken(&self) -> bool {
        let notified = std::pin::pin!(self.wake.notified());
        notified.now_or_never().is_some()
    }

    /// Marks `unmarked` published (removes them from the outbox); on failure they stay for
    /// the next try (a relay that stops before marking them publishes them again after its
    /// restart, under the same ids).
    async fn flush_marks(&self, unmarked: &mut Vec<i64>) {
        if unmarked.is_empty() {
            return;
        }
        match self.outbox.remove_published(unmarked).await {
            Ok(()) => unmarked.clear(),
            Err(e) => {
                tracing::warn!(error = %e, count = unmarked.len(), "outbox relay: cannot mark events published")
            }
        }
    }

    async fn log_backlog_if_behind(&self) {
        if let Ok(b) = self.outbox.backlog().await {
            let age = b
                .oldest_created_at
                .map(|t| (Utc::now() - t).to_std().unwrap_or_default());
            if age.is_some_and(|a| a >= self.config.lag_warning) {
                tracing::warn!(
                    pending = b.pending,
                    parked = b.parked,
                    oldest_pending_age_ms = age.map(|a| a.as_millis() as u64),
                    "outbox relay is behind"
                );
            }
        }
    }

    async fn log_backlog(&self) {
        if let Ok(b) = self.outbox.backlog().await {
            let age = b
                .oldest_created_at
                .map(|t| (Utc::now() - t).num_milliseconds().max(0));
            tracing::warn!(
                pending = b.pending,
                oldest_pending_age_ms = age,
                "outbox relay cannot publish; events are kept and retried"
            );
        }
    }

    /// Deletes what a relay of an earlier version marked published instead of deleting.
    async fn purge(&self) {
        match self.outbox.purge_marked().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "purged outbox rows marked published"),
            Err(e) => tracing::warn!(error = %e, "cannot purge outbox rows marked published"),
        }
    }
}

#[cfg(test)]
mod tests;
