//! The outbox relay: publishes committed events through the sidecar, in commit order per
//! user, marking each published only after the sidecar confirmed the broker's ack.
//!
//! Woken at once after each commit (an in-memory signal) and swept periodically, so an
//! event is never stranded. While the sidecar or Kafka is down it retries with capped
//! exponential backoff and jitter; requests keep succeeding because they only write the
//! database. A round that published nothing is followed by a small probe round (one bulk
//! call's worth of events) instead of a whole batch, so an outage costs a call every second
//! or two and the relay notices the broker's return within that. Memory stays bounded: only
//! one batch is held at a time; the rest waits in the outbox table.
//!
//! A round reads a batch and publishes it in waves: each wave sends the oldest unpublished
//! event of every user in the batch, many users per bulk call, so no two events of one user
//! are ever in flight together and a user whose event failed sends nothing more that round.
//! While the relay is busy, the events a round published are marked in the outbox by the
//! next round, on another connection while it reads: one statement less on the way from
//! commit to Kafka, and under load each statement also waits for a pooled connection
//! behind the requests.
//!
//! With several `chat-api` replicas on one database, only the holder of the `outbox` lease
//! (a row renewed every quarter of its term) publishes, so one user's events are never
//! published by two relays at once; when the holder dies, another replica takes over once
//! the lease expires.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::Arc,
    time::Duration,
};

use chrono::Utc;
use futures::{FutureExt, StreamExt, future, stream};
use service_kit::{PublishError, Publisher, Shutdown, publish::OutgoingEvent};
use todo_store::{OUTBOX_LEASE, OutboxStore, PendingEvent};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Events read from the outbox per round.
    pub batch_size: u64,
    /// Publish calls in flight at once (each user's events stay sequential).
    pub concurrency: usize,
    /// Events per publish call, each of a different user: above 1, the next events of many
    /// users go to the sidecar in one bulk call ([`Publisher::publish_all`]).
    pub bulk_size: usize,
    /// How often the outbox is swept when nothing woke the relay.
    pub sweep_interval: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Published rows older than this are deleted.
    pub retention: Duration,
    /// Log the backlog when the oldest pending event is older than this.
    pub lag_warning: Duration,
    /// How long the publishing lease lasts without renewal: a crashed holder's successor
    /// waits at most this long. Renewed once a quarter of it has passed, so three quarters
    /// must exceed the longest round (publish timeout 10 s, plus a quick refusal's retry).
    pub lease_ttl: Duration,
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
            sweep_interval: Duration::from_millis(500),
            backoff_initial: Duration::from_millis(100),
            // While nothing gets through, each retry is a probe of one bulk call, so a short
            // cap costs little and bounds how long the relay sleeps after the broker is back
            // (`cargo xtask bench`, Kafka outage).
            backoff_max: Duration::from_secs(2),
            retention: Duration::from_secs(24 * 3600),
            lag_warning: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(30),
        }
    }
}

/// A bulk call refused faster than this is retried event by event within the round.
const BULK_FALLBACK_WITHIN: Duration = Duration::from_secs(2);

pub struct Relay<P> {
    /// This relay's name in the lease table.
    holder: String,
    outbox: OutboxStore,
    publisher: Arc<P>,
    wake: Arc<Notify>,
    config: RelayConfig,
}

/// What one round achieved.
#[derive(Debug, Default, PartialEq, Eq)]
struct Round {
    read: usize,
    published: usize,
    failed: bool,
    /// Every failure was this relay's own sidecar being unreachable (not the broker).
    unreachable: bool,
}

impl Round {
    /// Failed without publishing anything: an outage, not one refused event.
    fn stalled(&self) -> bool {
        self.failed && self.published == 0
    }
}

impl<P: Publisher> Relay<P> {
    pub fn new(
        outbox: OutboxStore,
        publisher: Arc<P>,
        wake: Arc<Notify>,
        config: RelayConfig,
    ) -> Self {
        let holder = format!("relay-{}", uuid::Uuid::new_v4());
        Self {
            holder,
            outbox,
            publisher,
            wake,
            config,
        }
    }

    /// This relay's name in the lease table.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Runs until `shutdown`; the round in flight finishes first.
    pub async fn run(self, shutdown: Shutdown) {
        let mut failures: u32 = 0;
        let mut last_purge = tokio::time::Instant::now();
        let mut last_lag_log = tokio::time::Instant::now();
        let mut leading = false;
        let mut renewed_at: Option<tokio::time::Instant> = None;
        // Since when every round failed because this relay's own sidecar was unreachable.
        let mut unreachable_since: Option<tokio::time::Instant> = None;
        let mut stalled_since: Option<tokio::time::Instant> = None;
        // Published (acknowledged) events not yet marked in the outbox: while the relay is
        // busy, each round marks the previous round's events as it reads the next batch.
        let mut unmarked: Vec<i64> = Vec::new();
        while !shutdown.is_triggered() {
            // A relay that cannot reach its own sidecar steps aside for a lease period, so a
            // replica with a healthy sidecar can take over; alone, it takes the lease back.
            // A broker outage is not a reason: every replica's sidecar would fail alike, and
            // stepping aside would only delay the catch-up once the broker is back.
            if leading && unreachable_since.is_some_and(|t| t.elapsed() >= self.config.lease_ttl) {
                tracing::warn!(holder = %self.holder, "outbox relay cannot publish; handing the lease to another replica");
                self.flush_marks(&mut unmarked).await;
                if let Err(e) = self.outbox.release_lease(OUTBOX_LEASE, &self.holder).await {
                    tracing::warn!(error = %e, "outbox relay: cannot release the lease");
                }
                leading = false;
                renewed_at = None;
                unreachable_since = None;
                tokio::select! {
                    () = tokio::time::sleep(self.config.lease_ttl / 2) => {}
                    () = shutdown.wait() => {}
                }
                continue;
            }
            // Renewing takes two statements; under load every statement waits for a pooled
            // connection behind the requests. A lease renewed less than a quarter of its term
            // ago has more than three quarters left, longer than any round, so it is renewed
            // only after that.
            let fresh =
                leading && renewed_at.is_some_and(|t| t.elapsed() < self.config.lease_ttl / 4);
            if !fresh {
                let asked = tokio::time::Instant::now();
                match self.lead().await {
                    Ok(true) => {
                        if !leading {
                            tracing::info!(holder = %self.holder, "outbox relay is publishing (holds the lease)");
                        }
                        leading = true;
                        renewed_at = Some(asked);
                    }
                    Ok(false) => {
                        if leading {
                            tracing::warn!(holder = %self.holder, "outbox relay lost the lease; another replica publishes");
                        }
                        leading = false;
                        renewed_at = None;
                        tokio::select! {
                            () = tokio::time::sleep(self.config.sweep_interval * 2) => {}
                            () = shutdown.wait() => {}
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox relay: cannot take the lease");
                        failures = failures.saturating_add(1);
                        tokio::select! {
                            () = tokio::time::sleep(backoff(&self.config, failures)) => {}
                            () = shutdown.wait() => {}
                        }
                        continue;
                    }
                }
            }
            // After a round that got nothing through, probe with one bulk call's worth.
            let limit = if failures > 0 {
                self.config.bulk_size.max(1) as u64
            } else {
                self.config.batch_size
            };
            let round = self.round(&mut unmarked, limit).await;
            if round.stalled() {
                self.flush_marks(&mut unmarked).await;
                let now = tokio::time::Instant::now();
                stalled_since.get_or_insert(now);
                unreachable_since = if round.unreachable {
                    Some(unreachable_since.unwrap_or(now))
                } else {
                    None
                };
                failures = failures.saturating_add(1);
                let delay = backoff(&self.config, failures);
                if last_lag_log.elapsed() >= Duration::from_secs(10) {
                    self.log_backlog().await;
                    last_lag_log = tokio::time::Instant::now();
                }
                // Only time or shutdown end a backoff: new commits must not turn an outage
                // into a busy loop.
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.wait() => {}
                }
                continue;
            }
            if let Some(since) = stalled_since.take() {
                tracing::info!(
                    stalled_ms = since.elapsed().as_millis() as u64,
                    failed_rounds = failures,
                    "outbox relay is publishing again"
                );
            }
            failures = 0;
            unreachable_since = None;
            if last_purge.elapsed() >= Duration::from_secs(60) {
                self.purge().await;
                last_purge = tokio::time::Instant::now();
            }
            if round.read as u64 >= limit || self.woken() {
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
        if leading && let Err(e) = self.outbox.release_lease(OUTBOX_LEASE, &self.holder).await {
            tracing::warn!(error = %e, "outbox relay: cannot release the lease");
        }
        tracing::info!("outbox relay stopped");
    }

    /// Takes or renews the publishing lease.
    async fn lead(&self) -> Result<bool, todo_store::StoreError> {
        let ttl = chrono::Duration::from_std(self.config.lease_ttl)
            .unwrap_or(chrono::Duration::seconds(30));
        self.outbox
            .acquire_lease(OUTBOX_LEASE, &self.holder, Utc::now(), ttl)
            .await
    }

    /// Whether a commit signalled since the relay last waited (taking the signal).
    fn woken(&self) -> bool {
        let notified = std::pin::pin!(self.wake.notified());
        notified.now_or_never().is_some()
    }

    /// Marks `unmarked` published; on failure they stay for the next try (a relay that stops
    /// before marking them publishes them again after its restart, under the same ids).
    async fn flush_marks(&self, unmarked: &mut Vec<i64>) {
        if unmarked.is_empty() {
            return;
        }
        match self.outbox.mark_published(unmarked, Utc::now()).await {
            Ok(()) => unmarked.clear(),
            Err(e) => {
                tracing::warn!(error = %e, count = unmarked.len(), "outbox relay: cannot mark events published")
            }
        }
    }

    /// Reads a batch (marking the previous round's events at the same time, on another
    /// connection), publishes it, and leaves what it published in `unmarked`.
    /// Publishes at most `max_events` events.
    async fn round(&self, unmarked: &mut Vec<i64>, max_events: u64) -> Round {
        // The read may still see the previous round's events as pending (their mark runs
        // alongside): they are left out by sequence number, so read that many more.
        let limit = max_events + unmarked.len() as u64;
        let marking = async {
            if unmarked.is_empty() {
                Ok(())
            } else {
                self.outbox.mark_published(unmarked, Utc::now()).await
            }
        };
        let (batch, marked) = tokio::join!(self.outbox.pending(0, limit), marking);
        let mut failed = false;
        let previous: HashSet<i64> = unmarked.iter().copied().collect();
        match marked {
            Ok(()) => unmarked.clear(),
            Err(e) => {
                tracing::warn!(error = %e, count = unmarked.len(), "outbox relay: cannot mark events published");
                failed = true;
            }
        }
        let batch: Vec<PendingEvent> = match batch {
            Ok(pending) => pending
                .into_iter()
                .filter(|e| !previous.contains(&e.seq))
                .take(usize::try_from(max_events).unwrap_or(usize::MAX))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay: cannot read the outbox");
                return Round {
                    failed: true,
                    ..Round::default()
                };
            }
        };
        if batch.is_empty() {
            return Round {
                failed,
                ..Round::default()
            };
        }
        let read = batch.len();
        // Each user's events in commit order (the batch is in commit order).
        let mut by_user: BTreeMap<String, VecDeque<PendingEvent>> = BTreeMap::new();
        for event in batch {
            by_user
                .entry(event.user_id.clone())
                .or_default()
                .push_back(event);
        }
        let mut queues: Vec<VecDeque<PendingEvent>> = by_user.into_values().collect();
        let mut published = Vec::with_capacity(read);
        let mut failed = false;
        let mut unreachable = true;
        // Wave after wave: the oldest unpublished event of every user still going, at most
        // one per user in flight, so a user's next event is sent only once the one before it
        // was acknowledged. A user whose event failed is done for this round: nothing of
        // theirs overtakes it.
        loop {
            let heads: Vec<usize> = (0..queues.len())
                .filter(|&i| !queues[i].is_empty())
                .collect();
            if heads.is_empty() {
                break;
            }
            // Owned chunks: a stream over borrowed slices trips the compiler's check that the
            // spawned relay future is Send for every lifetime.
            let chunks = bulk_calls(
                &heads,
                |u| queues[u].front().map_or(0, |e| e.payload.len()),
                self.config.bulk_size,
            );
            let outcomes: Vec<Vec<(usize, Result<(), PublishError>)>> = stream::iter(chunks)
                .map(|chunk| self.publish_heads(&queues, chunk))
                .buffer_unordered(self.config.concurrency.max(1))
                .collect()
                .await;
            let mut failures = Vec::new();
            for (user, result) in outcomes.into_iter().flatten() {
                let head = queues[user].pop_front();
                match result {
                    Ok(()) => published.extend(head.map(|e| e.seq)),
                    Err(e) => {
                        failed = true;
                        unreachable &= matches!(e, PublishError::Unavailable(_));
                        failures.extend(head.map(|event| (event, e)));
                        queues[user].clear();
                    }
                }
            }
            stream::iter(failures)
                .for_each_concurrent(self.config.concurrency.max(1), |(event, e)| async move {
                    self.note_failure(&event, &e).await
                })
                .await;
        }
        let count = published.len();
        unmarked.extend(published);
        Round {
            read,
            published: count,
            failed,
            unreachable: failed && unreachable,
        }
    }

    /// Publishes the oldest unpublished event of each user in `users` (indices into
    /// `queues`) in one call: different users, so no order is at stake inside it. If the
    /// sidecar refuses a bulk call as a whole at once, each event gets one more try on its
    /// own, so an event the broker refuses holds back only its own user.
    async fn publish_heads(
        &self,
        queues: &[VecDeque<PendingEvent>],
        users: Vec<usize>,
    ) -> Vec<(usize, Result<(), PublishError>)> {
        let picked: Vec<(usize, &PendingEvent)> = users
            .iter()
            .filter_map(|&u| queues[u].front().map(|e| (u, e)))
            .collect();
        let events: Vec<OutgoingEvent<'_>> = picked.iter().map(|(_, e)| outgoing(e)).collect();
        let sent = tokio::time::Instant::now();
        let mut results = self.publisher.publish_all(&events).await;
        // Only a quick refusal: a call that ran into the sidecar's timeout (broker down)
        // would only time out again, and the round must stay shorter than the lease.
        let rejected_whole = events.len() > 1
            && sent.elapsed() < BULK_FALLBACK_WITHIN
            && results
                .iter()
                .all(|r| matches!(r, Err(PublishError::Failed(_))));
        if rejected_whole {
            results = future::join_all(events.iter().map(|e| self.publisher.publish(*e))).await;
        }
        // An event without an answer was not published.
        results.resize_with(events.len(), || {
            Err(PublishError::Failed(
                "the publisher gave no result for this event".into(),
            ))
        });
        picked.into_iter().map(|(u, _)| u).zip(results).collect()
    }

    async fn note_failure(&self, event: &PendingEvent, e: &PublishError) {
        if event.attempts == 0 || event.attempts % 20 == 0 {
            tracing::warn!(error = %e, event_id = %event.event_id, user_id = %event.user_id, attempts = event.attempts + 1, "publish failed; will retry");
        }
        if let Err(db) = self.outbox.record_failure(event.seq, &e.to_string()).await {
            tracing::debug!(error = %db, "cannot record publish failure");
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

    async fn purge(&self) {
        let Ok(retention) = chrono::Duration::from_std(self.config.retention) else {
            return;
        };
        match self.outbox.purge_published(Utc::now() - retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "purged published outbox rows"),
            Err(e) => tracing::warn!(error = %e, "cannot purge published outbox rows"),
        }
    }
}

/// Payload bytes in one bulk call at most (a single larger event still goes, alone): well
/// inside daprd's 4 MiB gRPC request limit whatever the tasks hold.
const BULK_BYTES_MAX: usize = 1024 * 1024;

/// Splits `users` (in order) into bulk calls of at most `bulk_size` events and
/// [`BULK_BYTES_MAX`] payload bytes, `size(user)` being the size of that user's next event.
fn bulk_calls(users: &[usize], size: impl Fn(usize) -> usize, bulk_size: usize) -> Vec<Vec<usize>> {
    let mut calls: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for &user in users {
        let event = size(user);
        match calls.last_mut() {
            Some(call) if call.len() < bulk_size.max(1) && bytes + event <= BULK_BYTES_MAX => {
                call.push(user);
                bytes += event;
            }
            _ => {
                calls.push(vec![user]);
                bytes = event;
            }
        }
    }
    calls
}

fn outgoing(event: &PendingEvent) -> OutgoingEvent<'_> {
    OutgoingEvent {
        topic: &event.topic,
        partition_key: &event.user_id,
        event_id: event.event_id,
        event_type: &event.event_type,
        payload: event.payload.as_bytes(),
    }
}

/// Capped exponential backoff with full jitter in the upper half.
fn backoff(config: &RelayConfig, failures: u32) -> Duration {
    let exp = config
        .backoff_initial
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = exp.min(config.backoff_max);
    let half = capped / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, sync::Mutex};

    use todo_domain::{Description, Priority, Tags, TimeZone, Title, UserId};
    use todo_store::{NewTask, TaskStore};

    use super::*;

    /// Answers like daprd 1.16: a bulk call with any refused event fails as a whole. Events
    /// of the users in `refused` are refused; every call is recorded as (user, task title).
    #[derive(Default)]
    struct ScriptedSidecar {
        calls: Mutex<Vec<Vec<(String, String)>>>,
        refused: Mutex<HashSet<String>>,
        /// While set, every event fails with this (an outage).
        outage: Mutex<Option<PublishError>>,
    }

    impl ScriptedSidecar {
        fn answer(&self, events: &[OutgoingEvent<'_>]) -> Vec<Result<(), PublishError>> {
            let call = events
                .iter()
                .map(|e| {
                    let v: serde_json::Value =
                        serde_json::from_slice(e.payload).unwrap_or_default();
                    (
                        e.partition_key.to_owned(),
                        v["task"]["title"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            self.calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(call);
            if let Some(e) = self
                .outage
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
            {
                return events.iter().map(|_| Err(e.clone())).collect();
            }
            let refused = self
                .refused
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let any = events.iter().any(|e| refused.contains(e.partition_key));
            events
                .iter()
                .map(|_| {
                    if any {
                        Err(PublishError::Failed("refused".into()))
                    } else {
                        Ok(())
                    }
                })
                .collect()
        }

        fn calls(&self) -> Vec<Vec<(String, String)>> {
            self.calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        }
    }

    impl Publisher for ScriptedSidecar {
        async fn publish(&self, event: OutgoingEvent<'_>) -> Result<(), PublishError> {
            self.answer(&[event]).remove(0)
        }

        async fn publish_all(&self, events: &[OutgoingEvent<'_>]) -> Vec<Result<(), PublishError>> {
            self.answer(events)
        }
    }

    /// A relay over a fresh SQLite outbox holding three events each of ann, bob and cy,
    /// committed interleaved (ann 1, bob 1, cy 1, ann 2, ...).
    async fn relay_with_events(
        dir: &std::path::Path,
    ) -> (Relay<ScriptedSidecar>, Arc<ScriptedSidecar>, OutboxStore) {
        let db = todo_store::connect(&format!("sqlite://{}/relay.db", dir.display()), 1)
            .await
            .expect("database");
        todo_store::migrate(&db).await.expect("migrations");
        let tasks = TaskStore::new(db.clone());
        for n in 1..=3 {
            for user in ["ann", "bob", "cy"] {
                let new = NewTask {
                    title: Title::parse(&format!("{user} {n}")).expect("title"),
                    description: Description::parse("").expect("description"),
                    priority: Priority::Medium,
                    tags: Tags::parse::<&str>(&[]).expect("tags"),
                    due_at: None,
                    due_local: None,
                    time_zone: TimeZone::default(),
                    recurrence: None,
                };
                tasks
                    .create(&UserId::parse(user).expect("user"), new, Utc::now())
                    .await
                    .expect("create");
            }
        }
        let sidecar = Arc::new(ScriptedSidecar::default());
        let outbox = OutboxStore::new(db);
        let relay = Relay::new(
            outbox.clone(),
            sidecar.clone(),
            Arc::new(Notify::new()),
            RelayConfig::default(),
        );
        (relay, sidecar, outbox)
    }

    /// A relay running in the background.
    struct Running {
        holder: String,
        sidecar: Arc<ScriptedSidecar>,
        outbox: OutboxStore,
        shutdown: Shutdown,
        task: tokio::task::JoinHandle<()>,
    }

    /// Starts a relay (as [`relay_with_events`]) whose sidecar fails every call with
    /// `outage`, with timings short enough for a test: a lease term of 300 ms, retries
    /// within 50 ms, probes of two events.
    async fn run_in_outage(dir: &std::path::Path, outage: PublishError) -> Running {
        let (relay, sidecar, outbox) = relay_with_events(dir).await;
        let config = RelayConfig {
            bulk_size: 2,
            sweep_interval: Duration::from_millis(20),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            lease_ttl: Duration::from_millis(300),
            ..RelayConfig::default()
        };
        let relay = Relay { config, ..relay };
        *sidecar.outage.lock().expect("lock") = Some(outage);
        let holder = relay.holder.clone();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(relay.run(shutdown.clone()));
        Running {
            holder,
            sidecar,
            outbox,
            shutdown,
            task,
        }
    }

    impl Running {
        async fn stop(self) {
            self.shutdown.trigger();
            self.task.await.expect("relay task");
        }
    }

    async fn lease_holder(outbox: &OutboxStore) -> Option<String> {
        outbox
            .lease_holder(OUTBOX_LEASE, Utc::now())
            .await
            .expect("lease")
    }

    #[tokio::test]
    async fn a_round_that_gets_nothing_through_tells_an_unreachable_sidecar_from_a_broker_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (relay, sidecar, _outbox) = relay_with_events(dir.path()).await;
        for (error, unreachable) in [
            (PublishError::Unavailable("connection refused".into()), true),
            (PublishError::Failed("broker down".into()), false),
        ] {
            *sidecar.outage.lock().expect("lock") = Some(error);
            let round = relay.round(&mut Vec::new(), relay.config.batch_size).await;
            assert_eq!(
                round,
                Round {
                    read: 9,
                    published: 0,
                    failed: true,
                    unreachable
                }
            );
            assert!(round.stalled());
        }
    }

    #[tokio::test]
    async fn through_a_broker_outage_the_relay_keeps_the_lease_probes_with_small_rounds_and_catches_up()
     {
        let dir = tempfile::tempdir().expect("tempdir");
        let relay = run_in_outage(dir.path(), PublishError::Failed("broker down".into())).await;

        // Several lease terms of outage, during which the lease never changes hands.
        let outage = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        while outage.elapsed() < Duration::from_millis(1_200) {
            assert_eq!(
                lease_holder(&relay.outbox).await.as_ref(),
                Some(&relay.holder),
                "a broker outage is no reason to give up the lease"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let calls = relay.sidecar.calls();
        assert!(calls.len() > 10, "the relay kept retrying: {calls:?}");
        // Only the first round tries cy's event (the third user's); the probes after it
        // carry the two oldest events, ann's and bob's.
        let cy = calls.iter().flatten().filter(|(_, t)| t == "cy 1").count();
        assert!(
            cy <= 2,
            "cy 1 tried {cy} times (a bulk call and its retry alone): {calls:?}"
        );
        assert!(
            calls.iter().flatten().all(|(_, t)| t.ends_with(" 1")),
            "nothing overtakes a user's first event"
        );

        *relay.sidecar.outage.lock().expect("lock") = None;
        let back = std::time::Instant::now();
        while !relay
            .outbox
            .pending(0, 100)
            .await
            .expect("pending")
            .is_empty()
        {
            assert!(
                back.elapsed() < Duration::from_secs(2),
                "not caught up 2 s after the broker came back"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        relay.stop().await;
    }

    #[tokio::test]
    async fn a_relay_whose_sidecar_is_unreachable_for_a_lease_term_hands_the_lease_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let relay = run_in_outage(
            dir.path(),
            PublishError::Unavailable("connection refused".into()),
        )
        .await;

        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            lease_holder(&relay.outbox).await.as_ref(),
            Some(&relay.holder),
            "the relay holds the lease at first"
        );
        let started = std::time::Instant::now();
        while lease_holder(&relay.outbox).await.as_ref() == Some(&relay.holder) {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "the lease was never handed over"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        relay.stop().await;
    }

    #[tokio::test]
    async fn a_round_sends_each_user_one_event_per_call_in_commit_order_and_holds_back_a_refused_users_rest()
     {
        let dir = tempfile::tempdir().expect("tempdir");
        let (relay, sidecar, outbox) = relay_with_events(dir.path()).await;
        sidecar.refused.lock().expect("lock").insert("bob".into());

        let mut unmarked = Vec::new();
        let round = relay.round(&mut unmarked, relay.config.batch_size).await;
        assert_eq!(unmarked.len(), 6, "what was published waits to be marked");
        relay.flush_marks(&mut unmarked).await;

        assert_eq!(
            round,
            Round {
                read: 9,
                published: 6,
                failed: true,
                unreachable: false
            }
        );
        let calls = sidecar.calls();
        for call in &calls {
            let users: HashSet<&String> = call.iter().map(|(u, _)| u).collect();
            assert_eq!(
                users.len(),
                call.len(),
                "two events of one user in one call: {call:?}"
            );
        }
        let sent: Vec<&String> = calls.iter().flatten().map(|(_, title)| title).collect();
        for user in ["ann", "cy"] {
            // A bulk call refused as a whole may have written some of its events: resending
            // them repeats an event, never reorders.
            let mut order: Vec<&str> = Vec::new();
            for title in sent.iter().filter(|t| t.starts_with(user)) {
                if !order.contains(&title.as_str()) {
                    order.push(title);
                }
            }
            assert_eq!(
                order,
                [
                    format!("{user} 1"),
                    format!("{user} 2"),
                    format!("{user} 3")
                ],
                "{user}: in commit order"
            );
        }
        assert!(
            sent.iter().all(|t| !t.starts_with("bob ") || *t == "bob 1"),
            "nothing of bob's overtakes his refused event: {sent:?}"
        );
        let pending = outbox.pending(0, 100).await.expect("pending");
        let titles: Vec<String> = pending.iter().map(|e| e.payload.clone()).collect();
        assert_eq!(
            pending.len(),
            3,
            "bob's three events stay pending: {titles:?}"
        );
        assert!(pending.iter().all(|e| e.user_id == "bob"));
        assert_eq!(
            pending[0].attempts, 1,
            "the refused event's attempt is recorded"
        );

        sidecar.refused.lock().expect("lock").clear();
        let again = relay.round(&mut unmarked, relay.config.batch_size).await;
        assert_eq!(
            again,
            Round {
                read: 3,
                published: 3,
                failed: false,
                unreachable: false
            }
        );
        relay.flush_marks(&mut unmarked).await;
        let bob: Vec<String> = sidecar
            .calls()
            .iter()
            .flatten()
            .filter(|(u, _)| u == "bob")
            .map(|(_, t)| t.clone())
            .collect();
        assert_eq!(bob.last().map(String::as_str), Some("bob 3"));
        assert!(outbox.pending(0, 100).await.expect("pending").is_empty());
    }

    #[tokio::test]
    async fn the_next_round_marks_the_previous_rounds_events_and_never_sends_them_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (relay, sidecar, outbox) = relay_with_events(dir.path()).await;
        let mut unmarked = Vec::new();
        let first = relay.round(&mut unmarked, relay.config.batch_size).await;
        assert_eq!(first.published, 9);
        assert_eq!(
            outbox.pending(0, 100).await.expect("pending").len(),
            9,
            "not marked yet"
        );

        let second = relay.round(&mut unmarked, relay.config.batch_size).await;

        assert_eq!(
            second,
            Round::default(),
            "the unmarked events are not read as new ones"
        );
        assert!(unmarked.is_empty());
        assert!(
            outbox.pending(0, 100).await.expect("pending").is_empty(),
            "marked while reading"
        );
        assert_eq!(
            sidecar.calls().iter().flatten().count(),
            9,
            "each event sent once"
        );
    }

    #[tokio::test]
    async fn a_bulk_call_refused_as_a_whole_is_retried_event_by_event_so_only_the_refused_user_waits()
     {
        let dir = tempfile::tempdir().expect("tempdir");
        let (relay, sidecar, _outbox) = relay_with_events(dir.path()).await;
        sidecar.refused.lock().expect("lock").insert("cy".into());

        relay.round(&mut Vec::new(), relay.config.batch_size).await;

        let calls = sidecar.calls();
        let first = calls.first().expect("a call");
        assert_eq!(
            first.len(),
            3,
            "the first wave goes out in one bulk call: {calls:?}"
        );
        let singles: Vec<&Vec<(String, String)>> = calls.iter().filter(|c| c.len() == 1).collect();
        assert!(
            singles.iter().any(|c| c[0].1 == "ann 1"),
            "after the refusal, ann's event went on its own: {calls:?}"
        );
    }

    #[test]
    fn bulk_calls_are_bounded_by_count_and_bytes_and_keep_the_order() {
        let users: Vec<usize> = (0..10).collect();
        assert_eq!(
            bulk_calls(&users, |_| 10, 4),
            vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]
        );
        let big = BULK_BYTES_MAX / 3;
        assert_eq!(
            bulk_calls(&users[..5], |_| big, 100),
            vec![vec![0, 1, 2], vec![3, 4]]
        );
        // An event larger than the byte bound still goes, on its own.
        let sizes = [10, BULK_BYTES_MAX * 2, 10, 10];
        assert_eq!(
            bulk_calls(&[0, 1, 2, 3], |u| sizes[u], 100),
            vec![vec![0], vec![1], vec![2, 3]]
        );
        assert!(bulk_calls(&[], |_| 1, 4).is_empty());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let config = RelayConfig::default();
        let first = backoff(&config, 1);
        assert!(first <= config.backoff_initial && first >= config.backoff_initial / 2);
        let late = backoff(&config, 30);
        assert!(late <= config.backoff_max && late >= config.backoff_max / 2);
    }
}
