//! The relay's watchdog. The relay reports progress: a round that published, found nothing
//! to publish, or failed on an outage it knows about (the broker or its sidecar down), and
//! a follower's check that another replica holds the lock. No progress for
//! [`RelayConfig::stall_after`](super::RelayConfig) means the relay is stuck (a statement
//! waiting on somebody else's lock, a call that never returns, a database that refuses every
//! statement): the watchdog logs an error, shows the stall on `/relay/status`, and starts
//! the relay over with fresh connections. A stall that a restart does not clear makes
//! `/readyz` fail, so an orchestrator restarts the process.

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use service_kit::Shutdown;
use tokio::task::JoinHandle;

/// How often the watchdog looks.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// What the relay reports and the watchdog, `/relay/status` and `/readyz` read.
#[derive(Debug)]
pub struct RelayHealth {
    holder: String,
    stall_after: Duration,
    leading: AtomicBool,
    last_progress: Mutex<Instant>,
    /// Since when the relay is stalled, as the watchdog saw it.
    stalled_since: Mutex<Option<Instant>>,
    /// Restarts the watchdog made since the relay last made progress.
    restarts_in_stall: AtomicU64,
    restarts: AtomicU64,
}

/// The relay's state as `/relay/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthView {
    pub holder: String,
    pub publishing_here: bool,
    pub stalled_for: Option<Duration>,
    pub restarts: u64,
    pub ready: bool,
}

impl RelayHealth {
    pub fn new(holder: String, stall_after: Duration) -> Self {
        Self {
            holder,
            stall_after,
            leading: AtomicBool::new(false),
            last_progress: Mutex::new(Instant::now()),
            stalled_since: Mutex::new(None),
            restarts_in_stall: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
        }
    }

    /// This process's relay's name (the lock holder's name when it publishes).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub(crate) fn progress(&self) {
        *lock(&self.last_progress) = Instant::now();
        if lock(&self.stalled_since).take().is_some() {
            tracing::info!(holder = %self.holder, "outbox relay makes progress again");
        }
        self.restarts_in_stall.store(0, Ordering::SeqCst);
    }

    pub(crate) fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
    }

    fn since_progress(&self) -> Duration {
        lock(&self.last_progress).elapsed()
    }

    /// False once a restart did not clear a stall: the process needs restarting.
    pub fn ready(&self) -> bool {
        self.restarts_in_stall.load(Ordering::SeqCst) < 2 || lock(&self.stalled_since).is_none()
    }

    pub fn view(&self) -> HealthView {
        HealthView {
            holder: self.holder.clone(),
            publishing_here: self.leading.load(Ordering::SeqCst),
            stalled_for: lock(&self.stalled_since).map(|t| t.elapsed()),
            restarts: self.restarts.load(Ordering::SeqCst),
            ready: self.ready(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the relay that `start` builds (fresh connections each time) until `shutdown`,
/// restarting it whenever it makes no progress for `health`'s stall period, or ends.
pub async fn supervise<F, Fut>(start: F, health: Arc<RelayHealth>, shutdown: Shutdown)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<JoinHandle<()>>> + Send,
{
    let mut task: Option<JoinHandle<()>> = None;
    loop {
        if task.is_none() {
            match start().await {
                Ok(t) => {
                    task = Some(t);
                    // A fresh relay gets a whole stall period to show progress.
                    *lock(&health.last_progress) = Instant::now();
                }
                Err(e) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "outbox relay cannot start; retrying"
                    );
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(WATCH_EVERY) => {}
            () = shutdown.wait() => break,
        }
        let ended = task.as_ref().is_some_and(JoinHandle::is_finished);
        let stalled = health.since_progress() >= health.stall_after;
        if !(ended || stalled) {
            continue;
        }
        let since = health.since_progress();
        lock(&health.stalled_since).get_or_insert_with(|| Instant::now() - since);
        let restarts = health.restarts_in_stall.fetch_add(1, Ordering::SeqCst) + 1;
        health.restarts.fetch_add(1, Ordering::SeqCst);
        health.set_leading(false);
        if ended {
            tracing::error!(holder = %health.holder, "outbox relay ended unexpectedly; starting it again");
        } else {
            tracing::error!(
                holder = %health.holder,
                no_progress_ms = since.as_millis() as u64,
                restarts_in_this_stall = restarts,
                "outbox relay stalled: no progress with events pending; restarting it with fresh connections"
            );
        }
        if restarts >= 2 {
            tracing::error!(holder = %health.holder, "a restart did not clear the relay's stall; /readyz fails until it makes progress");
        }
        if let Some(t) = task.take() {
            t.abort();
            let _ = t.await;
        }
    }
    if let Some(t) = task {
        let _ = t.await;
    }
}
