//! What publishing costs, and how fast one user's backlog goes:
//!
//! - **One user's drain**: an account deletion of [`SOLO_TASKS`] tasks, published with
//!   nobody else writing, then again beside paced writers. Its rate is set against one
//!   event per single-publish round trip (raw `PublishEvent` calls to the same sidecar, one
//!   in flight, same run, alone and beside the same writers): the most a user's events can
//!   go when one of them is in flight at a time.
//! - **Relay on and off**: closed-loop creates through two more chat-api instances of the
//!   same build, each on a database of its own, one with its relay off (the same writes,
//!   task and outbox rows committed, nothing published), taking turns in a balanced order
//!   ([`TURN_ORDER`]) after the earlier phases' writes reached the disk;
//!   requests/s, latency, and every process's CPU per 1,000 writes, so it shows where
//!   publishing costs: the relay's queries, the sidecars, the broker, the consumers.

use std::{fmt::Write as _, sync::atomic::AtomicBool};

use anyhow::ensure;

use super::*;
use crate::relay_faults::{paced, stop_all};

/// Tasks of the account deleted to measure one user's drain: a drain of several seconds,
/// as long as each baseline window ([`RTT_WINDOW`]). With 2,000 (about 1.5 s), one stall of
/// the machine's other tenants decided a run's ratio.
pub(super) const SOLO_TASKS: usize = 10_000;
/// The users of this module: `o-...`.
pub(super) const PREFIX: &str = "o-";
/// The paced writers beside the loaded drain, and their rate in all.
const BESIDE_WORKERS: usize = 10;
const BESIDE_RATE: u32 = 400;
/// Concurrency of the relay on/off turns (as `wrk -t2 -c32`).
pub(super) const PAIR_CLIENTS: usize = 32;
/// Relay on (true) and off, in an order where each mode's mean position is the same (on,
/// off, off, on, off, on, on, off), so neither mode gets the early or the late turns: with
/// on, off, on, off, whatever the earlier phases left running (the disk's writeback of
/// their records, the database's vacuum of their deletions) fell in the relay-on turns
/// first.
const TURN_ORDER: [bool; 8] = [true, false, false, true, false, true, true, false];
/// Round-trip baseline: single publishes, one in flight, this long.
const RTT_WINDOW: Duration = Duration::from_secs(8);

/// One drain of [`SOLO_TASKS`] events of one user.
pub(super) struct Drain {
    /// The deletion's request (its transaction writes the backlog): not part of the drain.
    pub(super) deleted_in: Duration,
    /// From the deletion's answer until none of the user's events was pending.
    pub(super) took: Duration,
    /// Single publishes with one in flight, just before and just after the drain.
    pub(super) rtt: [RawResult; 2],
    /// CPU of each process per 1,000 events (milliseconds of one core): during the drain
    /// (from the deletion's answer: the deletion's own transaction, 20,000 statements, is
    /// the API's work, not the relay's), and during the baseline window just before it.
    pub(super) cpu: Vec<(String, f64, f64)>,
}

impl Drain {
    fn rate(&self) -> f64 {
        SOLO_TASKS as f64 / self.took.as_secs_f64().max(1e-9)
    }
    /// The baseline: the mean of the rates before and after the drain.
    pub(super) fn baseline(&self) -> f64 {
        (self.rtt[0].rate + self.rtt[1].rate) / 2.0
    }
    pub(super) fn ratio(&self) -> f64 {
        self.rate() / self.baseline().max(1e-9)
    }
}

pub(super) struct SoloDrain {
    pub(super) alone: Drain,
    /// Beside paced writers.
    pub(super) loaded: Drain,
}

pub(super) struct Turn {
    pub(super) relay_on: bool,
    pub(super) phase: Phase,
    /// After a relay-on turn: until its outbox was empty.
    pub(super) drained: Option<Duration>,
}

pub(super) struct RelayCost {
    pub(super) solo: SoloDrain,
    pub(super) turns: Vec<Turn>,
    pub(super) duration: Duration,
}

/// Both measures, one after the other. `procs` are every process of the stack
/// ([`service_procs`]), chat-api and its sidecar first.
pub(super) async fn measure(
    ctx: &Ctx<'_>,
    api: &Service,
    payload: Arc<Vec<u8>>,
    api_settings: &[(String, String)],
    procs: &[Proc],
    clk_tck: f64,
    opts: &Options,
) -> Result<RelayCost> {
    let t = step(&format!(
        "one user's backlog: an account deletion of {SOLO_TASKS} tasks, alone and beside paced writers"
    ));
    let solo = solo_drain(ctx, api, payload, procs, clk_tck).await?;
    done(t);
    let t = step(&format!(
        "publishing's cost: relay on and off, {PAIR_CLIENTS} clients, taking turns"
    ));
    let turns = on_off(
        ctx,
        api_settings,
        &procs[2..],
        clk_tck,
        opts.warmup,
        opts.duration,
    )
    .await?;
    settle(ctx).await?;
    done(t);
    Ok(RelayCost {
        solo,
        turns,
        duration: opts.duration,
    })
}

/// One task, so that the outbox has an event to copy as the raw publishes' payload.
pub(super) async fn create_one(ctx: &Ctx<'_>) -> Result<()> {
    let user = format!("{PREFIX}sample");
    let status = ctx
        .client
        .post(format!("{}/api/{user}/tasks", ctx.api_base))
        .bearer_auth(ctx.env.token(&user)?)
        .json(&json!({ "title": "sample" }))
        .send()
        .await?
        .status();
    ensure!(status == 201, "creating a sample task: {status}");
    relay_drained(ctx).await.map(drop)
}

/// One user's drain, alone and loaded, on chat-api itself. Each drain is measured between
/// two baseline windows (before and after it), so a machine that gets slower or faster
/// while the scenario runs moves the baseline with the drain. The baseline's publishes go
/// where the user's events go: to `task-events` (read by recurring-tasks' sidecar, which
/// drops their type), with the user's id as partition key (one partition).
pub(super) async fn solo_drain(
    ctx: &Ctx<'_>,
    api: &Service,
    payload: Arc<Vec<u8>>,
    procs: &[Proc],
    clk_tck: f64,
) -> Result<SoloDrain> {
    let user = format!("{PREFIX}solo-1");
    create_tasks(ctx, &user).await?;
    let alone = measured_drain(ctx, api, &payload, &user, procs, clk_tck).await?;
    println!(
        "    alone: {SOLO_TASKS} events in {:.2} s (the deletion answered in {:.2} s); single publish round trips {:.0}/s before, {:.0}/s after",
        alone.took.as_secs_f64(),
        alone.deleted_in.as_secs_f64(),
        alone.rtt[0].rate,
        alone.rtt[1].rate
    );

    let user = format!("{PREFIX}solo-2");
    create_tasks(ctx, &user).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = make_workers(ctx, &format!("{PREFIX}b-"), BESIDE_WORKERS, &ctx.api_base)?;
    let handles = paced(ctx, writers, BESIDE_RATE, &stop);
    let loaded = measured_drain(ctx, api, &payload, &user, procs, clk_tck).await;
    stop_all(&stop, handles).await;
    let loaded = loaded?;
    relay_drained(ctx).await?;
    println!(
        "    beside {BESIDE_RATE} writes/s: {SOLO_TASKS} events in {:.2} s (the deletion answered in {:.2} s); single publish round trips {:.0}/s before, {:.0}/s after",
        loaded.took.as_secs_f64(),
        loaded.deleted_in.as_secs_f64(),
        loaded.rtt[0].rate,
        loaded.rtt[1].rate
    );
    Ok(SoloDrain { alone, loaded })
}

/// `user`'s account deleted and its events drained, between two baseline windows, with
/// every process's CPU per 1,000 events in the drain and in the window before it.
async fn measured_drain(
    ctx: &Ctx<'_>,
    api: &Service,
    payload: &Arc<Vec<u8>>,
    user: &str,
    procs: &[Proc],
    clk_tck: f64,
) -> Result<Drain> {
    let start = cpu_ticks(procs);
    let before = round_trips(api, payload, user).await?;
    let baseline_end = cpu_ticks(procs);
    let deleted_in = delete_account(ctx, user, None).await?;
    let drain_start = cpu_ticks(procs);
    let took = user_drained(ctx, user)
        .await
        .with_context(|| format!("{user}'s deletion"))?;
    let drained = cpu_ticks(procs);
    let after = round_trips(api, payload, user).await?;
    // Milliseconds of one core per 1,000 events, from two readings of the clock ticks.
    let per_thousand = |from: &[u64], to: &[u64], i: usize, events: f64| {
        to[i].saturating_sub(from[i]) as f64 / clk_tck * 1000.0 / (events / 1000.0).max(1e-9)
    };
    let baseline_events = (before.calls * before.entries_per_call) as f64;
    let cpu = procs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                p.name.clone(),
                per_thousand(&drain_start, &drained, i, SOLO_TASKS as f64),
                per_thousand(&start, &baseline_end, i, baseline_events),
            )
        })
        .collect();
    Ok(Drain {
        deleted_in,
        took,
        rtt: [before, after],
        cpu,
    })
}

/// The baseline: single publishes, one in flight, to the user's topic with the user's key.
async fn round_trips(api: &Service, payload: &Arc<Vec<u8>>, user: &str) -> Result<RawResult> {
    raw_publish_to(
        api,
        payload.clone(),
        1,
        1,
        RTT_WINDOW,
        todo_domain::event::topics::TASK_EVENTS,
        Some(user),
    )
    .await
}

async fn create_tasks(ctx: &Ctx<'_>, user: &str) -> Result<()> {
    let token = ctx.env.token(user)?;
    let url = format!("{}/api/{user}/tasks", ctx.api_base);
    let mut made = 0;
    while made < SOLO_TASKS {
        let batch = (SOLO_TASKS - made).min(32);
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..batch {
            let call = ctx
                .client
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({ "title": format!("solo {}", made + i) }))
                .send();
            calls.spawn(call);
        }
        while let Some(r) = calls.join_next().await {
            let status = r??.status();
            ensure!(status == 201, "creating {user}'s tasks: {status}");
        }
        made += batch;
    }
    relay_drained(ctx).await?;
    Ok(())
}

/// The relay on/off turns. `common` are the processes both modes share (consumers,
/// PostgreSQL, Redis, Kafka, the load client).
pub(super) async fn on_off(
    ctx: &Ctx<'_>,
    api_settings: &[(String, String)],
    common: &[Proc],
    clk_tck: f64,
    warmup: Duration,
    duration: Duration,
) -> Result<Vec<Turn>> {
    let mut instances = Vec::new();
    for relay_on in [true, false] {
        let url = ctx.env.database().await?;
        let mut vars: Vec<(&str, String)> = vec![
            ("DATABASE_URL", url),
            ("MIGRATE_ON_START", "true".into()),
            ("RELAY_ENABLED", relay_on.to_string()),
        ];
        vars.extend(
            api_settings
                .iter()
                .filter(|(k, _)| k != "RELAY_ENABLED")
                .map(|(k, v)| (k.as_str(), v.clone())),
        );
        instances.push(ctx.env.start_service("chat-api", "chat-api", &vars).await?);
    }
    let result = turns(ctx, &instances, common, clk_tck, warmup, duration).await;
    for mut service in instances {
        service.process.shutdown().await;
        service.sidecar.shutdown().await;
    }
    result
}

async fn turns(
    ctx: &Ctx<'_>,
    instances: &[Service],
    common: &[Proc],
    clk_tck: f64,
    warmup: Duration,
    duration: Duration,
) -> Result<Vec<Turn>> {
    // What the earlier phases left to do is done before the first turn, which is a relay-on
    // turn: recurring-tasks' sidecar reading their events (two account deletions of
    // [`SOLO_TASKS`] tasks just before), and the database's vacuum of their deleted and
    // updated rows, which autovacuum would otherwise start during a turn.
    let quiet = Instant::now();
    settle(ctx).await?;
    ctx.db
        .execute_unprepared("VACUUM (ANALYZE)")
        .await
        .context("vacuuming the bench's database before the turns")?;
    println!(
        "    the earlier phases' events consumed and their rows vacuumed after {:.1} s",
        quiet.elapsed().as_secs_f64()
    );
    // The earlier phases' records and rows on disk before the first turn (the raw bulk
    // publishes write gigabytes), so no turn waits for their writeback.
    let flushed = Instant::now();
    let status = tokio::process::Command::new("sync")
        .status()
        .await
        .context("running sync")?;
    ensure!(status.success(), "sync failed: {status}");
    println!(
        "    the earlier phases' writes on disk after {:.1} s",
        flushed.elapsed().as_secs_f64()
    );
    let mut turns = Vec::new();
    for (turn, &relay_on) in TURN_ORDER.iter().enumerate() {
        let api = &instances[usize::from(!relay_on)];
        let mut procs = vec![
            Proc::new("chat-api", api.process.pid(), false),
            // The relay's own runtime (api::app::RelayRuntime): what publishing costs in
            // chat-api itself, apart from what the requests cost beside it.
            Proc::threads("the relay's threads", api.process.pid(), "outbox-relay"),
            Proc::new("daprd (chat-api)", api.sidecar.pid(), false),
        ];
        procs.extend(common.iter().cloned());
        let procs = Arc::new(procs);
        let workers = make_workers(ctx, &format!("{PREFIX}t{turn}-"), PAIR_CLIENTS, &api.base)?;
        let (_, phase) = run_phase(
            ctx,
            workers,
            Op::Create,
            PAIR_CLIENTS,
            warmup,
            duration,
            Some((&procs, clk_tck)),
        )
        .await;
        let drained = if relay_on {
            let drained = relay_drained_at(ctx, &api.base, None, Duration::from_millis(20)).await;
            Some(drained.context("the relay-on instance after its turn")?)
        } else {
            None
        };
        println!(
            "    relay {}: {:.0} req/s, p99 {:.1} ms, {} errors",
            if relay_on { "on " } else { "off" },
            phase.rps(),
            phase.latency.p99,
            phase.errors
        );
        turns.push(Turn {
            relay_on,
            phase,
            drained,
        });
    }
    Ok(turns)
}

impl RelayCost {
    /// Mean requests/s and p99 of the turns with the relay on, then off.
    pub(super) fn means(&self) -> ((f64, f64), (f64, f64)) {
        let mean = |on: bool| {
            let turns: Vec<&Turn> = self.turns.iter().filter(|t| t.relay_on == on).collect();
            let n = turns.len().max(1) as f64;
            (
                turns.iter().map(|t| t.phase.rps()).sum::<f64>() / n,
                turns.iter().map(|t| t.phase.latency.p99).sum::<f64>() / n,
            )
        };
        (mean(true), mean(false))
    }

    /// CPU milliseconds (one core) per 1,000 writes of each process, mean over the turns
    /// of one mode, in the processes' order.
    fn cpu_per_thousand(&self, on: bool) -> Vec<(String, f64)> {
        let turns: Vec<&Turn> = self.turns.iter().filter(|t| t.relay_on == on).collect();
        let mut rows: Vec<(String, f64)> = Vec::new();
        for turn in &turns {
            let writes = turn.phase.requests.max(1) as f64 / 1000.0;
            let secs = turn.phase.window.as_secs_f64();
            for u in &turn.phase.usage {
                let ms = u.cpu_percent / 100.0 * secs * 1000.0 / writes / turns.len() as f64;
                match rows.iter_mut().find(|(n, _)| *n == u.name) {
                    Some((_, v)) => *v += ms,
                    None => rows.push((u.name.clone(), ms)),
                }
            }
        }
        rows
    }

    pub(super) fn render(&self, s: &mut String) {
        let solo = &self.solo;
        let _ = writeln!(
            s,
            "\n### One user's backlog\n\nAn account deletion of {SOLO_TASKS} tasks on chat-api (one user: one event in flight at a time), published with nobody else writing, then beside {BESIDE_WORKERS} paced writers ({BESIDE_RATE} creates/s in all). Drained = from the deletion's answer until none of the user's events is pending in the outbox (polled every {} ms). The baseline: raw single publishes to the same sidecar, one in flight, to `task-events` with the user's id as partition key (where the user's events go), for {:.0} s just before and {:.0} s just after each drain, alone and beside the same writers; the ratio is against the mean of the two.\n",
            USER_DRAIN_POLL.as_millis(),
            RTT_WINDOW.as_secs_f64(),
            RTT_WINDOW.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "| | deletion answered in | drain | events/s | single publishes/s (one in flight) before / after, p50 ms before / after | ratio |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for (label, d) in [("alone", &solo.alone), ("beside the writers", &solo.loaded)] {
            let _ = writeln!(
                s,
                "| {label} | {:.2} s | {:.2} s | {:.0} | {:.0} / {:.0}, {:.2} / {:.2} | {:.2} |",
                d.deleted_in.as_secs_f64(),
                d.took.as_secs_f64(),
                d.rate(),
                d.rtt[0].rate,
                d.rtt[1].rate,
                d.rtt[0].latency.p50,
                d.rtt[1].latency.p50,
                d.ratio()
            );
        }

        let _ = writeln!(
            s,
            "\nCPU per 1,000 events (milliseconds of one core) in each drain (from the deletion's answer), against the baseline window just before it (single publishes of the same number of events, without the relay, the outbox or the database; beside the writers, both include the writers' work):\n"
        );
        let _ = writeln!(
            s,
            "| process | alone: drain | alone: publishes | alone: − | beside: drain | beside: publishes | beside: − |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        let mut totals = [0.0; 4];
        for ((name, d, r), (_, ld, lr)) in solo.alone.cpu.iter().zip(&solo.loaded.cpu) {
            for (t, v) in totals.iter_mut().zip([d, r, ld, lr]) {
                *t += v;
            }
            let _ = writeln!(
                s,
                "| {name} | {d:.0} | {r:.0} | {:+.0} | {ld:.0} | {lr:.0} | {:+.0} |",
                d - r,
                ld - lr
            );
        }
        let [d, r, ld, lr] = totals;
        let _ = writeln!(
            s,
            "| **all** | {d:.0} | {r:.0} | {:+.0} | {ld:.0} | {lr:.0} | {:+.0} |",
            d - r,
            ld - lr
        );

        let ((on_rps, on_p99), (off_rps, off_p99)) = self.means();
        let _ = writeln!(
            s,
            "\n### Publishing's cost: relay on and off\n\nTwo more chat-api instances of this build, each on a database of its own, one with `RELAY_ENABLED=false` (the same task and outbox rows committed, nothing published). {PAIR_CLIENTS} closed-loop clients creating tasks for {:.0} s per turn, taking turns in a balanced order (on, off, off, on, off, on, on, off) once recurring-tasks had read every earlier event, the bench's database was vacuumed and the disk had the earlier writes (`sync`); after each relay-on turn, the time until its outbox was empty.\n",
            self.duration.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "| turn | relay | requests/s | p50 ms | p99 ms | errors | drained after |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for (i, t) in self.turns.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {:.1} | {:.1} | {} | {} |",
                i + 1,
                if t.relay_on { "on" } else { "off" },
                t.phase.rps(),
                t.phase.latency.p50,
                t.phase.latency.p99,
                t.phase.errors,
                t.drained
                    .map_or("–".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
            );
        }
        let _ = writeln!(
            s,
            "\nMean: on {on_rps:.0} requests/s ({:.3} × off), p99 {on_p99:.1} ms ({:.2} × off); off {off_rps:.0} requests/s, p99 {off_p99:.1} ms.\n",
            on_rps / off_rps.max(1e-9),
            on_p99 / off_p99.max(1e-9)
        );
        let on = self.cpu_per_thousand(true);
        let off = self.cpu_per_thousand(false);
        let _ = writeln!(
            s,
            "CPU per 1,000 writes (milliseconds of one core, mean of the turns):\n"
        );
        let _ = writeln!(s, "| process | relay on | relay off | on − off |");
        let _ = writeln!(s, "|---|---|---|---|");
        let (mut total_on, mut total_off) = (0.0, 0.0);
        for (name, v_on) in &on {
            let v_off = off.iter().find(|(n, _)| n == name).map_or(0.0, |(_, v)| *v);
            if !crate::procs::is_part(name) {
                total_on += v_on;
                total_off += v_off;
            }
            let _ = writeln!(
                s,
                "| {name} | {v_on:.0} | {v_off:.0} | {:+.0} |",
                v_on - v_off
            );
        }
        let _ = writeln!(
            s,
            "| **all** | {total_on:.0} | {total_off:.0} | {:+.0} |",
            total_on - total_off
        );
    }

    pub(super) fn render_targets(&self, s: &mut String) {
        let solo = &self.solo;
        let _ = writeln!(
            s,
            "| one user's drain ≥ 0.8 × one event per single-publish round trip, alone and under load | alone {:.2} × ({:.0} against {:.0}/s), beside {BESIDE_RATE} writes/s {:.2} × ({:.0} against {:.0}/s) | {} |",
            solo.alone.ratio(),
            solo.alone.rate(),
            solo.alone.baseline(),
            solo.loaded.ratio(),
            solo.loaded.rate(),
            solo.loaded.baseline(),
            met(solo.alone.ratio() >= 0.8 && solo.loaded.ratio() >= 0.8)
        );
        let ((on_rps, on_p99), (off_rps, off_p99)) = self.means();
        let _ = writeln!(
            s,
            "| relay on ≥ 0.8 × relay off throughput, p99 ≤ 3 × | {:.3} × ({on_rps:.0} against {off_rps:.0} requests/s, {PAIR_CLIENTS} clients); p99 {:.2} × ({on_p99:.1} against {off_p99:.1} ms) | {} |",
            on_rps / off_rps.max(1e-9),
            on_p99 / off_p99.max(1e-9),
            met(off_rps > 0.0 && on_rps >= 0.8 * off_rps && on_p99 <= 3.0 * off_p99)
        );
    }
}
