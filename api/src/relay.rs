//! The outbox relay: publishes committed events through the sidecar, in commit order per
//! user, marking each published only after the sidecar confirmed the broker's ack.
//!
//! Woken at once after each commit (an in-memory signal) and swept periodically, so an
//! event is never stranded. While the sidecar or Kafka is down it retries with capped
//! exponential backoff and jitter; requests keep succeeding because they only write the
//! database. Memory stays bounded: only one batch is held at a time; the rest waits in the
//! outbox table.
//!
//! With several `chat-api` replicas on one database, only the holder of the `outbox` lease
//! (a row renewed every round) publishes, so one user's events are never published by two
//! relays at once; when the holder dies, another replica takes over once the lease expires.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::Utc;
use futures::{stream, StreamExt};
use service_kit::{publish::OutgoingEvent, Publisher, Shutdown};
use todo_store::{OutboxStore, PendingEvent, OUTBOX_LEASE};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Events read from the outbox per round.
    pub batch_size: u64,
    /// Users published concurrently (each user's events stay sequential).
    pub concurrency: usize,
    /// How often the outbox is swept when nothing woke the relay.
    pub sweep_interval: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Published rows older than this are deleted.
    pub retention: Duration,
    /// Log the backlog when the oldest pending event is older than this.
    pub lag_warning: Duration,
    /// How long the publishing lease lasts without renewal: a crashed holder's successor
    /// waits at most this long. Must exceed the longest round (publish timeout 10 s).
    pub lease_ttl: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            concurrency: 32,
            sweep_interval: Duration::from_millis(500),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            retention: Duration::from_secs(24 * 3600),
            lag_warning: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(30),
        }
    }
}

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
}

impl<P: Publisher> Relay<P> {
    pub fn new(outbox: OutboxStore, publisher: Arc<P>, wake: Arc<Notify>, config: RelayConfig) -> Self {
        let holder = format!("relay-{}", uuid::Uuid::new_v4());
        Self { holder, outbox, publisher, wake, config }
    }

    /// Runs until `shutdown`; the round in flight finishes first.
    pub async fn run(self, shutdown: Shutdown) {
        let mut failures: u32 = 0;
        let mut last_purge = tokio::time::Instant::now();
        let mut last_lag_log = tokio::time::Instant::now();
        let mut leading = false;
        let mut failing_since: Option<tokio::time::Instant> = None;
        while !shutdown.is_triggered() {
            // A relay that cannot publish (its own sidecar is gone) steps aside for a lease
            // period, so a healthy replica can take over; alone, it takes the lease back.
            if leading && failing_since.is_some_and(|t| t.elapsed() >= self.config.lease_ttl) {
                tracing::warn!(holder = %self.holder, "outbox relay cannot publish; handing the lease to another replica");
                if let Err(e) = self.outbox.release_lease(OUTBOX_LEASE, &self.holder).await {
                    tracing::warn!(error = %e, "outbox relay: cannot release the lease");
                }
                leading = false;
                failing_since = None;
                tokio::select! {
                    () = tokio::time::sleep(self.config.lease_ttl / 2) => {}
                    () = shutdown.wait() => {}
                }
                continue;
            }
            match self.lead().await {
                Ok(true) => {
                    if !leading {
                        tracing::info!(holder = %self.holder, "outbox relay is publishing (holds the lease)");
                    }
                    leading = true;
                }
                Ok(false) => {
                    if leading {
                        tracing::warn!(holder = %self.holder, "outbox relay lost the lease; another replica publishes");
                    }
                    leading = false;
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
            let round = self.round().await;
            if round.failed {
                failing_since.get_or_insert_with(tokio::time::Instant::now);
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
            failures = 0;
            failing_since = None;
            if last_purge.elapsed() >= Duration::from_secs(60) {
                self.purge().await;
                last_purge = tokio::time::Instant::now();
            }
            if round.read as u64 >= self.config.batch_size {
                continue; // more is waiting
            }
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
        if leading {
            if let Err(e) = self.outbox.release_lease(OUTBOX_LEASE, &self.holder).await {
                tracing::warn!(error = %e, "outbox relay: cannot release the lease");
            }
        }
        tracing::info!("outbox relay stopped");
    }

    /// Takes or renews the publishing lease.
    async fn lead(&self) -> Result<bool, todo_store::StoreError> {
        let ttl = chrono::Duration::from_std(self.config.lease_ttl).unwrap_or(chrono::Duration::seconds(30));
        self.outbox.acquire_lease(OUTBOX_LEASE, &self.holder, Utc::now(), ttl).await
    }

    async fn round(&self) -> Round {
        let batch = match self.outbox.pending(0, self.config.batch_size).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay: cannot read the outbox");
                return Round { failed: true, ..Round::default() };
            }
        };
        if batch.is_empty() {
            return Round::default();
        }
        let read = batch.len();
        let mut by_user: BTreeMap<String, Vec<PendingEvent>> = BTreeMap::new();
        for event in batch {
            by_user.entry(event.user_id.clone()).or_default().push(event);
        }
        let results: Vec<(Vec<i64>, bool)> = stream::iter(by_user.into_values())
            .map(|events| self.publish_in_order(events))
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        let mut published = Vec::with_capacity(read);
        let mut failed = false;
        for (seqs, user_failed) in results {
            published.extend(seqs);
            failed |= user_failed;
        }
        if let Err(e) = self.outbox.mark_published(&published, Utc::now()).await {
            // They were published; they will be published again (same event ids) after the
            // next read. Consumers are idempotent by event id.
            tracing::warn!(error = %e, count = published.len(), "outbox relay: cannot mark events published");
            failed = true;
        }
        Round { read, published: published.len(), failed }
    }

    /// Publishes one user's events in order, stopping at the first failure so none overtakes it.
    async fn publish_in_order(&self, events: Vec<PendingEvent>) -> (Vec<i64>, bool) {
        let mut done = Vec::with_capacity(events.len());
        for event in events {
            let outgoing = OutgoingEvent {
                topic: &event.topic,
                partition_key: &event.user_id,
                event_id: event.event_id,
                event_type: &event.event_type,
                payload: event.payload.as_bytes(),
            };
            match self.publisher.publish(outgoing).await {
                Ok(()) => done.push(event.seq),
                Err(e) => {
                    if event.attempts == 0 || event.attempts % 20 == 0 {
                        tracing::warn!(error = %e, event_id = %event.event_id, user_id = %event.user_id, attempts = event.attempts + 1, "publish failed; will retry");
                    }
                    if let Err(db) = self.outbox.record_failure(event.seq, &e.to_string()).await {
                        tracing::debug!(error = %db, "cannot record publish failure");
                    }
                    return (done, true);
                }
            }
        }
        (done, false)
    }

    async fn log_backlog_if_behind(&self) {
        if let Ok(b) = self.outbox.backlog().await {
            let age = b.oldest_created_at.map(|t| (Utc::now() - t).to_std().unwrap_or_default());
            if age.is_some_and(|a| a >= self.config.lag_warning) {
                tracing::warn!(pending = b.pending, oldest_pending_age_ms = age.map(|a| a.as_millis() as u64), "outbox relay is behind");
            }
        }
    }

    async fn log_backlog(&self) {
        if let Ok(b) = self.outbox.backlog().await {
            let age = b.oldest_created_at.map(|t| (Utc::now() - t).num_milliseconds().max(0));
            tracing::warn!(pending = b.pending, oldest_pending_age_ms = age, "outbox relay cannot publish; events are kept and retried");
        }
    }

    async fn purge(&self) {
        let Ok(retention) = chrono::Duration::from_std(self.config.retention) else { return };
        match self.outbox.purge_published(Utc::now() - retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "purged published outbox rows"),
            Err(e) => tracing::warn!(error = %e, "cannot purge published outbox rows"),
        }
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
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let config = RelayConfig::default();
        let first = backoff(&config, 1);
        assert!(first <= config.backoff_initial && first >= config.backoff_initial / 2);
        let late = backoff(&config, 30);
        assert!(late <= config.backoff_max && late >= config.backoff_max / 2);
    }
}
