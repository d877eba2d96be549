//! The system under test: chat-api's settings, the reminder services, and waiting for
//! the relay to settle.

use super::*;

/// chat-api's tuning as the benchmark runs it: the service defaults, then `--set`.
pub(super) fn chat_api_settings(opts: &Options) -> Vec<(String, String)> {
    let relay = chat_api::relay::RelayConfig::default();
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
    let started = Instant::now();
    loop {
        let pending = relay_pending(ctx).await?;
        if pending == 0 {
            break;
        }
        if started.elapsed() > SETTLE_TIMEOUT {
            let log = fs::read_to_string(&ctx.api_log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            bail!(
                "the relay still has {pending} events pending {SETTLE_TIMEOUT:?} after the phase; end of chat-api's log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(started.elapsed())
}

pub(super) async fn relay_pending(ctx: &Ctx<'_>) -> Result<u64> {
    relay_pending_at(ctx, &ctx.api_base).await
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
