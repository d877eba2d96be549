//! The system under test: chat-api's settings, the reminder services, waiting for the
//! relay to settle, and stopping it all.

use std::path::Path;

use super::*;

/// chat-api's tuning as the benchmark runs it: the service defaults, then `--set`.
pub(super) fn chat_api_settings(opts: &Options) -> Vec<(String, String)> {
    let relay = relay::RelayConfig::default();
    let mut settings: Vec<(String, String)> = vec![
        ("DB_MAX_CONNECTIONS".into(), "16".into()),
        ("RELAY_BATCH_SIZE".into(), relay.batch_size.to_string()),
        ("RELAY_CONCURRENCY".into(), relay.concurrency.to_string()),
        ("RELAY_BULK_SIZE".into(), relay.bulk_size.to_string()),
    ];
    for (k, v) in &opts.chat_api_env {
        settings.retain(|(key, _)| key != k);
        settings.push((k.clone(), v.clone()));
    }
    settings
}

pub(super) fn setting<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
    settings
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

pub(super) async fn start_reminder_services(
    env: &Env,
    db_url: &str,
) -> Result<(Service, Service), String> {
    for bin in ["reminder-cron", "notifications"] {
        if let Err(e) = e2e::binary(bin) {
            return Err(format!("binary missing: {e:#}"));
        }
    }
    let t = step(&format!(
        "starting reminder-cron (cron {REMINDER_SCHEDULE}) and notifications, each beside its own daprd"
    ));
    let started = async {
        e2e::reminders::set_cron_schedule(env, REMINDER_SCHEDULE)?;
        let cron = e2e::reminders::start_reminder_cron(env, db_url, None).await?;
        let notifications = e2e::reminders::start_notifications(env, Some(db_url), None).await?;
        anyhow::Ok((cron, notifications))
    }
    .await
    .map_err(|e| format!("could not start them: {e:#}"));
    done(t);
    started
}

/// Waits until the relay has published everything and recurring-tasks has consumed all of
/// `task-events`, so one phase's backlog does not run into the next.
pub(super) async fn settle(ctx: &Ctx<'_>) -> Result<Settle> {
    let started = Instant::now();
    let drained = relay_drained(ctx).await?;
    loop {
        let lag =
            devstack::consumer_group_lag(&ctx.bootstrap, ctx.paths, RECURRING_GROUP, TASK_EVENTS)
                .await?;
        if lag == Some(0) {
            break;
        }
        if started.elapsed() > SETTLE_TIMEOUT {
            bail!("recurring-tasks still lags {lag:?} records {SETTLE_TIMEOUT:?} after the phase");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(Settle {
        drained,
        consumed: started.elapsed(),
    })
}

/// Waits until chat-api's relay has nothing pending; returns how long that took.
pub(super) async fn relay_drained(ctx: &Ctx<'_>) -> Result<Duration> {
    relay_drained_at(
        ctx,
        &ctx.api_base,
        Some(&ctx.api_log),
        Duration::from_millis(50),
    )
    .await
}

/// Waits until the relay of the chat-api at `base` has nothing pending, asking every `poll`;
/// returns how long that took. On timeout the error ends with the tail of `log`, if given.
pub(super) async fn relay_drained_at(
    ctx: &Ctx<'_>,
    base: &str,
    log: Option<&Path>,
    poll: Duration,
) -> Result<Duration> {
    drained(&format!("the relay at {base}"), log, poll, || {
        relay_pending_at(ctx, base)
    })
    .await
}

/// Asks `pending` every `poll` until it answers 0; returns how long that took. After
/// [`SETTLE_TIMEOUT`] it fails, naming `what` and ending with the tail of `log`, if given.
pub(super) async fn drained<F: Future<Output = Result<u64>>>(
    what: &str,
    log: Option<&Path>,
    poll: Duration,
    mut pending: impl FnMut() -> F,
) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let pending = pending().await?;
        if pending == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > SETTLE_TIMEOUT {
            let tail = log.map_or_else(String::new, |log| {
                let text = fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                format!(
                    "; end of {}:\n{}",
                    log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            });
            bail!("{what} still has events pending ({pending}) after {SETTLE_TIMEOUT:?}{tail}");
        }
        tokio::time::sleep(poll).await;
    }
}

/// How often [`user_drained`] polls (a look in the database the relay uses): at most this
/// much late on a drain of seconds. Polled every 10 ms, the polls took CPU from the drain
/// they measured.
pub(super) const USER_DRAIN_POLL: Duration = Duration::from_millis(50);

/// How long until none of `user`'s events is pending in chat-api's outbox. The user's own,
/// not the whole outbox's: beside writers committing 400 events a second, the outbox is
/// seldom empty at the instant of a poll, so waiting for that measured the writers. Each
/// poll looks for the user's oldest pending row (1 while there is one) along the primary
/// key: a count read the whole backlog every poll, a cost that grew with it and was the
/// database's CPU taken from the drain it measured.
pub(super) async fn user_drained(ctx: &Ctx<'_>, user: &str) -> Result<Duration> {
    let oldest = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT id FROM outbox WHERE user_id = $1 AND published_at IS NULL ORDER BY id LIMIT 1",
        [user.into()],
    );
    drained(
        &format!("{user}'s backlog"),
        Some(&ctx.api_log),
        USER_DRAIN_POLL,
        || async {
            let row = ctx.db.query_one_raw(oldest.clone()).await?;
            Ok(u64::from(row.is_some()))
        },
    )
    .await
}

/// Deletes `user`'s account (`timeout` instead of the client's own, if given); returns how
/// long the request took.
pub(super) async fn delete_account(
    ctx: &Ctx<'_>,
    user: &str,
    timeout: Option<Duration>,
) -> Result<Duration> {
    let sent = Instant::now();
    let mut request = ctx
        .client
        .delete(format!("{}/api/{user}", ctx.api_base))
        .bearer_auth(ctx.env.token(user)?);
    if let Some(timeout) = timeout {
        request = request.timeout(timeout);
    }
    let status = request.send().await?.status();
    anyhow::ensure!(status == 204, "deleting {user}'s account: {status}");
    Ok(sent.elapsed())
}

pub(super) async fn relay_pending_at(ctx: &Ctx<'_>, base: &str) -> Result<u64> {
    Ok(relay_status(ctx.client, base).await?.0)
}

/// chat-api's relay backlog at `base`: pending events and the oldest one's age.
pub(super) async fn relay_status(client: &reqwest::Client, base: &str) -> Result<(u64, Duration)> {
    let status: Value = client
        .get(format!("{base}/relay/status"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let pending = status["pending"]
        .as_u64()
        .context("relay status without pending")?;
    let age = status["oldest_pending_age_ms"].as_u64().unwrap_or(0);
    Ok((pending, Duration::from_millis(age)))
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Settle {
    pub(super) drained: Duration,
    pub(super) consumed: Duration,
}

/// Stops `services` (apps first, then their sidecars) and the stack, keeps the logs in
/// `.data/bench-logs`, and returns the PIDs still alive afterwards (none, if all is well).
pub(super) async fn stop_everything(
    paths: &Paths,
    mut env: Env,
    mut services: Vec<Service>,
) -> Result<Vec<u32>> {
    let mut pids: Vec<u32> = services
        .iter()
        .flat_map(|s| [s.process.pid(), s.sidecar.pid()])
        .collect();
    pids.extend(env.stack.pids());
    for s in &mut services {
        s.process.shutdown().await;
    }
    for s in &mut services {
        s.sidecar.shutdown().await;
    }
    drop(services);
    let Env { stack, dir, .. } = env;
    stack.stop().await?;
    let kept = keep_logs(&dir.path().join("logs"), &logs_kept_in(paths));
    drop(dir);
    match kept {
        Ok(()) => println!("    the services' and sidecars' logs are in .data/bench-logs"),
        Err(e) => println!("    could not keep the logs: {e:#}"),
    }
    Ok(pids
        .into_iter()
        .filter(|p| devstack::pid_alive(*p))
        .collect())
}

/// Copies the services' and sidecars' logs of the run to `to` (replacing the last run's),
/// for looking into a figure afterwards.
fn keep_logs(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// The stack's log directory, copied to `.data/bench-logs` (as [`stop_services`] does at a
/// normal end) if the run ends before that (an error, the time budget, Ctrl-C) and so before
/// the stack's directory is removed: the services' logs of a failed run can be read
/// afterwards.
pub(super) struct KeptOnFailure {
    from: std::path::PathBuf,
    to: std::path::PathBuf,
    armed: bool,
}

impl KeptOnFailure {
    pub(super) fn new(from: std::path::PathBuf, paths: &Paths) -> Self {
        Self {
            from,
            to: logs_kept_in(paths),
            armed: true,
        }
    }

    /// [`stop_services`] keeps the logs from here on.
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for KeptOnFailure {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match keep_logs(&self.from, &self.to) {
            Ok(()) => eprintln!(
                "the services' and sidecars' logs are in {}",
                self.to.display()
            ),
            Err(e) => eprintln!("could not keep the logs in {}: {e:#}", self.to.display()),
        }
    }
}

/// Where the last run's logs are kept.
fn logs_kept_in(paths: &Paths) -> std::path::PathBuf {
    paths.data.join("bench-logs")
}
