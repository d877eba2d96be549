//! One scan: publish the reminders whose time has come, each once.
//!
//! Two kinds, read a page at a time:
//! - the default reminder, one per (task, due time), of every task without reminders of its
//!   own that is due within the window (or overdue by up to the grace);
//! - the reminders users set, one per (task, due time, reminder), whose time came within
//!   the grace before now (key `reminder:{task_id}:{due unix seconds}:{reminder}`).
//!
//! For each:
//!
//! 1. skip it if this process sent its reminder already (a local memo), or if its key is in
//!    the state store (sent by any replica, or being sent right now);
//! 2. **claim** the key `reminder:{task_id}:{due unix seconds}`: an atomic first-write with a
//!    short lease. Of replicas racing for one key exactly one wins; the others skip it;
//! 3. ask the database once more whether the task is still due (live, incomplete, same due
//!    time): one completed, deleted or moved since its page was read is not reminded, and
//!    its claim is released;
//! 4. **publish** `reminder.due` to `reminders` (partition key = user id, event id derived
//!    from task and due time, so a reminder sent twice is recognisably one);
//! 5. on success **confirm** the key for [`ScanSettings::key_ttl`], longer than the task can
//!    stay in range; on failure **release** it, so the next tick tries again.
//!
//! The claim comes before the publish, which is only safe because it is always given back
//! when the publish did not happen: released on a known failure, and expiring with its
//! lease ([`CLAIM_LEASE`]) when this process dies in between. A reminder can therefore be
//! published twice (a publish that succeeded but timed out, a confirm that failed), never
//! lost; both copies carry the same event id and `notifications` logs one.
//!
//! A task whose due time changes has a new key and gets a new reminder. A completed or
//! deleted task leaves the range at once. Failures of the state store or the broker stop the
//! scan after [`MAX_CONSECUTIVE_FAILURES`] in a row (the next tick starts over), so an outage
//! costs a few bounded calls per tick, not one per task.

mod metrics;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::Serialize;
use service_kit::{IdempotencyStore, OutgoingEvent, Publisher};
use todo_domain::{EventType, ReminderEvent, TaskSnapshot, topics};
use todo_store::{DueCursor, FiringCursor, TaskStore};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::config::ScanSettings;

/// How long a claim holds before its reminder is published and the claim confirmed. Well
/// above one publish ([`PUBLISH_TIMEOUT`]); if this process dies holding a claim, the
/// reminder goes out again at the first tick after the lease ran out.
pub const CLAIM_LEASE: Duration = Duration::from_secs(60);
/// Longest wait for one publish (daprd's own outbound timeout is 10 s).
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(15);
/// Failures in a row (state store or broker) after which a scan stops early.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 3;
/// Most keys the local memo of sent reminders holds; beyond it the state store is asked.
const MEMO_CAPACITY: usize = 100_000;

/// The state-store key of the reminder for `task_id` due at `due_at`. (daprd prefixes keys
/// with the app id, so every `reminder-cron` replica shares them and no other app sees them.)
pub fn reminder_key(task_id: Uuid, due_at: DateTime<Utc>) -> String {
    format!("reminder:{task_id}:{}", due_at.timestamp())
}

/// The state-store key of the user's reminder `offset` (canonical spelling) for `task_id`
/// due at `due_at`: one per (task, due time, reminder).
pub fn set_reminder_key(task_id: Uuid, due_at: DateTime<Utc>, offset: &str) -> String {
    format!("reminder:{task_id}:{}:{offset}", due_at.timestamp())
}

/// A failed read of a page: the scan stops, the next tick starts over. Returns false.
fn stop_on_read(report: &mut ScanReport, e: todo_store::StoreError) -> bool {
    tracing::error!(error = %e, transient = e.is_transient(), "cannot read due tasks; the next tick retries");
    report.stopped_early = Some(format!("database: {e}"));
    false
}

/// Counts one reminder's outcome; false when failures in a row say the scan should stop.
fn account(
    report: &mut ScanReport,
    failures_in_a_row: &mut u32,
    task: &TaskSnapshot,
    outcome: Result<Reminded, Failure>,
) -> bool {
    report.due += 1;
    match outcome {
        Ok(Reminded::Published) => report.published += 1,
        Ok(Reminded::AlreadySent) => report.already_sent += 1,
        Ok(Reminded::Withdrawn) => report.withdrawn += 1,
        Err(failure) => {
            report.failed += 1;
            *failures_in_a_row += 1;
            tracing::warn!(task_id = %task.id, user_id = %task.user_id, error = %failure, "reminder not sent; the next tick retries");
            if *failures_in_a_row >= MAX_CONSECUTIVE_FAILURES {
                report.stopped_early = Some(failure.to_string());
                return false;
            }
            return true;
        }
    }
    *failures_in_a_row = 0;
    true
}

/// What one scan did. Returned to daprd in the cron call's answer and logged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    /// Reminders found due: tasks in the window (default reminders) and reminders users
    /// set whose time has come.
    pub due: u64,
    /// Reminders published by this scan.
    pub published: u64,
    /// Tasks whose reminder was sent before, or is being sent by another replica.
    pub already_sent: u64,
    /// Tasks left for the next tick because a call failed.
    pub failed: u64,
    /// Tasks completed, deleted or moved between the read and the publish: not reminded.
    pub withdrawn: u64,
    /// Why the scan stopped before the end of the range, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    pub elapsed_ms: u64,
}

/// The outcome of a cron tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    Ran(ScanReport),
    /// A scan of this process was still running: this tick did nothing.
    Skipped,
}

enum Reminded {
    Published,
    AlreadySent,
    Withdrawn,
}

/// Why one task's reminder did not go out this tick.
#[derive(Debug)]
enum Failure {
    State(String),
    Database(String),
    Publish(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::State(e) => write!(f, "state store: {e}"),
            Self::Database(e) => write!(f, "database: {e}"),
            Self::Publish(e) => write!(f, "publish: {e}"),
        }
    }
}

/// Scans for due tasks and publishes their reminders. One per process; ticks never overlap.
pub struct Scanner<P, I> {
    tasks: TaskStore,
    publisher: Arc<P>,
    keys: Arc<I>,
    settings: ScanSettings,
    running: tokio::sync::Mutex<()>,
    /// Keys this process confirmed, until their TTL: spares the state store a read per due
    /// task per tick. Only own confirmations go in, never keys merely seen, since another
    /// replica's claim may still be released.
    memo: Mutex<HashMap<String, Instant>>,
}

impl<P: Publisher, I: IdempotencyStore> Scanner<P, I> {
    pub fn new(tasks: TaskStore, publisher: Arc<P>, keys: Arc<I>, settings: ScanSettings) -> Self {
        Self {
            tasks,
            publisher,
            keys,
            settings,
            running: tokio::sync::Mutex::new(()),
            memo: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &ScanSettings {
        &self.settings
    }

    pub fn tasks(&self) -> &TaskStore {
        &self.tasks
    }

    /// A cron tick: scans unless a scan of this process is still running.
    pub async fn tick(&self, now: DateTime<Utc>) -> Tick {
        let Ok(_running) = self.running.try_lock() else {
            tracing::info!("previous scan still running; skipping this tick");
            return Tick::Skipped;
        };
        // One trace per tick; each reminder it publishes belongs to it.
        let span = tracing::info_span!("reminder_scan", trace_id = tracing::field::Empty);
        let trace = service_kit::trace::start(&span, None);
        let report = todo_store::trace::scope(Some(trace.to_string()), self.scan(now))
            .instrument(span)
            .await;
        metrics::count(&report);
        Tick::Ran(report)
    }

    /// Scans the range around `now` once. Use [`Scanner::tick`], which never overlaps.
    async fn scan(&self, now: DateTime<Utc>) -> ScanReport {
        let started = Instant::now();
        let mut report = ScanReport::default();
        self.forget_expired();
        let mut failures_in_a_row = 0;
        if self
            .scan_default(now, &mut report, &mut failures_in_a_row)
            .await
        {
            self.scan_set(now, &mut report, &mut failures_in_a_row)
                .await;
        }
        report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if report.published > 0 || report.failed > 0 || report.stopped_early.is_some() {
            tracing::info!(
                due = report.due,
                published = report.published,
                already_sent = report.already_sent,
                failed = report.failed,
                stopped_early = report.stopped_early.as_deref(),
                elapsed_ms = report.elapsed_ms,
                "reminder scan done"
            );
        } else {
            tracing::debug!(
                due = report.due,
                already_sent = report.already_sent,
                elapsed_ms = report.elapsed_ms,
                "reminder scan done"
            );
        }
        report
    }

    /// The default reminder of every task without reminders of its own that is due within
    /// the window. False when the scan stopped early.
    async fn scan_default(
        &self,
        now: DateTime<Utc>,
        report: &mut ScanReport,
        failures_in_a_row: &mut u32,
    ) -> bool {
        let (from, to) = self.range(now);
        let mut after: Option<DueCursor> = None;
        loop {
            let page = match self
                .tasks
                .due_between(from, to, after, self.settings.page_size)
                .await
            {
                Ok(page) => page,
                Err(e) => return stop_on_read(report, e),
            };
            for task in &page.tasks {
                let Some(event) =
                    ReminderEvent::for_task(task, self.settings.window.as_secs(), now)
                else {
                    continue; // the query only returns tasks with a due time
                };
                let key = reminder_key(task.id, event.due_at);
                let outcome = self.remind(task, &event, key, None).await;
                if !account(report, failures_in_a_row, task, outcome) {
                    return false;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return true,
            }
        }
    }

    /// The reminders users set whose time came within the grace before `now`.
    async fn scan_set(
        &self,
        now: DateTime<Utc>,
        report: &mut ScanReport,
        failures_in_a_row: &mut u32,
    ) {
        // From the start of the default reminders' range: overdue by up to the grace.
        let (from, _) = self.range(now);
        let mut after: Option<FiringCursor> = None;
        loop {
            let page = match self
                .tasks
                .reminders_firing(from, now, after, self.settings.page_size)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    stop_on_read(report, e);
                    return;
                }
            };
            for firing in &page.firings {
                let task = &firing.task;
                let Some(event) =
                    ReminderEvent::for_offset(task, &firing.reminder, firing.fires_at, now)
                else {
                    continue;
                };
                let key = set_reminder_key(task.id, event.due_at, &firing.reminder);
                let outcome = self.remind(task, &event, key, Some(&firing.reminder)).await;
                if !account(report, failures_in_a_row, task, outcome) {
                    return;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return,
            }
        }
    }

    /// The scanned range of due times: overdue by up to the grace, or due within the window.
    pub fn range(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let span = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        (
            now.checked_sub_signed(span(self.settings.overdue_grace))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            now.checked_add_signed(span(self.settings.window))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }

    /// Sends `event` (the reminder `offset` the user set, or the default one when `None`)
    /// once across replicas, guarded by the state-store `key`.
    async fn remind(
        &self,
        task: &TaskSnapshot,
        event: &ReminderEvent,
        key: String,
        offset: Option<&str>,
    ) -> Result<Reminded, Failure> {
        if self.memo_has(&key) {
            return Ok(Reminded::AlreadySent);
        }
        // A cheap read first: nearly every task in range was reminded on an earlier tick. The
        // read decides nothing on its own; the claim below is the atomic decision.
        if self
            .keys
            .seen(&key)
            .await
            .map_err(|e| Failure::State(e.to_string()))?
        {
            return Ok(Reminded::AlreadySent);
        }
        if !self
            .keys
            .claim(&key, CLAIM_LEASE)
            .await
            .map_err(|e| Failure::State(e.to_string()))?
        {
            return Ok(Reminded::AlreadySent);
        }
        metrics::CLAIMED.inc();
        // The page may be seconds old (a long scan, a slow broker): ask again right before
        // publishing.
        let still_due = match offset {
            None => {
                self.tasks
                    .still_due(&task.user_id, task.id, event.due_at)
                    .await
            }
            Some(offset) => {
                self.tasks
                    .still_reminded(&task.user_id, task.id, event.due_at, offset)
                    .await
            }
        };
        if !matches!(still_due, Ok(true)) {
            self.release(&key).await;
            return match still_due {
                Ok(_) => {
                    tracing::info!(task_id = %task.id, "completed, deleted or moved since it was read; not reminded");
                    Ok(Reminded::Withdrawn)
                }
                Err(e) => Err(Failure::Database(e.to_string())),
            };
        }
        if let Err(e) = self.publish(event).await {
            self.release(&key).await;
            return Err(Failure::Publish(e));
        }
        tracing::info!(
            event_id = %event.event_id,
            task_id = %task.id,
            user_id = %task.user_id,
            due_at = %event.due_at,
            offset = offset.unwrap_or("default"),
            "reminder published"
        );
        let ttl = self.settings.key_ttl();
        match self.keys.confirm(&key, ttl).await {
            Ok(()) => self.memo_insert(key, ttl),
            // The lease expires, a later tick publishes the same event id again, and the
            // consumer logs it once: a duplicate on the topic, never a lost reminder.
            Err(e) => {
                tracing::warn!(key, error = %e, "cannot confirm the sent reminder; it may be published again")
            }
        }
        Ok(Reminded::Published)
    }

    /// Gives a claim back; if that fails, it expires with its lease.
    async fn release(&self, key: &str) {
        if let Err(release) = self.keys.release(key).await {
            tracing::warn!(key, error = %release, lease_s = CLAIM_LEASE.as_secs(), "cannot release the claim; it expires with its lease");
        }
    }

    async fn publish(&self, event: &ReminderEvent) -> Result<(), String> {
        let payload = serde_json::to_vec(event).map_err(|e| format!("cannot serialise: {e}"))?;
        let traceparent = todo_store::trace::current();
        let outgoing = OutgoingEvent {
            topic: topics::REMINDERS,
            partition_key: &event.user_id,
            event_id: event.event_id,
            event_type: EventType::ReminderDue.as_str(),
            payload: &payload,
            traceparent: traceparent.as_deref(),
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.publisher.publish(outgoing)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} s", PUBLISH_TIMEOUT.as_secs())),
        }
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // The map stays consistent even if a holder panicked: use it anyway.
        self.memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn memo_has(&self, key: &str) -> bool {
        self.memo()
            .get(key)
            .is_some_and(|expiry| *expiry > Instant::now())
    }

    fn memo_insert(&self, key: String, ttl: Duration) {
        let mut memo = self.memo();
        if memo.len() < MEMO_CAPACITY {
            memo.insert(key, Instant::now() + ttl);
        }
    }

    fn forget_expired(&self) {
        let now = Instant::now();
        self.memo().retain(|_, expiry| *expiry > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_task_and_the_due_second() {
        let id = Uuid::nil();
        let due = DateTime::parse_from_rfc3339("2026-01-02T09:30:00.250Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        assert_eq!(
            reminder_key(id, due),
            "reminder:00000000-0000-0000-0000-000000000000:1767346200"
        );
    }

    #[test]
    fn the_key_outlives_the_time_a_task_stays_in_range() {
        let s = ScanSettings::default();
        assert!(s.key_ttl() > s.window + s.overdue_grace);
        assert!(CLAIM_LEASE > PUBLISH_TIMEOUT);
    }
}
