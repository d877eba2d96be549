//! Relay drain: the relay's own publishing rate, from a backlog written while it was off.

use super::*;

/// Users of the drain scenario: `d-w<worker>-u<n>`.
pub(super) const DRAIN_PREFIX: &str = "d-";
pub(super) const DRAIN_FILL: Duration = Duration::from_secs(10);
pub(super) const DRAIN_FILL_CONCURRENCY: usize = 32;

pub(super) struct Drain {
    pub(super) backlog: u64,
    /// From chat-api's restart until the outbox was empty (start-up included).
    pub(super) drained_after: Duration,
    /// Backlog events per second between the first and the last one's Kafka append time.
    pub(super) rate: f64,
    pub(super) on_kafka: usize,
}

/// Stops chat-api (its relay releases the lease), writes for `DRAIN_FILL` through a second
/// chat-api whose relay is off, then starts chat-api again: its relay finds the whole
/// backlog waiting and publishes it as fast as it can.
pub(super) async fn drain_scenario(
    ctx: &Ctx<'_>,
    api: &mut Service,
    api_env: &[(&str, String)],
) -> Result<Drain> {
    let mut filler_env = api_env.to_vec();
    filler_env.push(("RELAY_ENABLED", "false".into()));
    let mut filler = ctx
        .env
        .start_service("chat-api", "chat-api", &filler_env)
        .await?;
    api.process.shutdown().await;
    let workers = make_workers(ctx, DRAIN_PREFIX, DRAIN_FILL_CONCURRENCY, &filler.base)?;
    let (_, fill) = run_phase(
        ctx,
        workers,
        Op::Create,
        DRAIN_FILL_CONCURRENCY,
        Duration::ZERO,
        DRAIN_FILL,
        None,
    )
    .await;
    let backlog = relay_pending_at(ctx, &filler.base).await?;
    println!(
        "    backlog of {backlog} events ({} writes at {:.0}/s with the relay off)",
        fill.ok_total,
        fill.rps()
    );
    let restarted = Instant::now();
    api.restart_process(&ctx.env.dir.path().join("logs"))
        .await?;
    let start_up = restarted.elapsed();
    let settle = settle(ctx).await?;
    filler.process.shutdown().await;
    filler.sidecar.shutdown().await;
    Ok(Drain {
        backlog,
        drained_after: start_up + settle.drained,
        rate: 0.0,
        on_kafka: 0,
    })
}
