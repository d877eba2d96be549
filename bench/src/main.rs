//! The benchmark (`cargo xtask bench`, which runs this crate): throughput and latency of the
//! whole pipeline on the real stack, against the sidecar's own ceiling.
//!
//! It builds the services with `--release`, starts PostgreSQL, Redis and Kafka on free
//! loopback ports and every service beside its own `daprd` through the end-to-end harness
//! ([`e2e::Env`]), runs the scenarios one after another (each a warm-up, then a fixed
//! measured window, bounded in count and time), prints the report and appends it to
//! `BENCHMARKS.md` (whose header defines every figure). Nothing is typed in: each number
//! comes from this run. Everything it starts is stopped by PID at the end, on error, on
//! Ctrl-C and when the time budget runs out.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    fmt::Write as _,
    fs,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use dapr::dapr::proto::runtime::v1 as dapr_v1;
use devstack::{BrokerJvm, Paths, provision as prov};
use e2e::{Env, Service};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use devstack::steps::{cargo, done, step};

mod chat;
mod ctx;
mod drain;
mod kafka_events;
mod load;
mod machine;
mod options;
mod outage;
mod procs;
mod raw;
mod recurring;
mod relay_cost;
mod relay_faults;
mod reminders;
mod report;
mod services;
mod stats;
mod tracing;
mod user_reminders;

use ctx::Ctx;
use drain::*;
use kafka_events::*;
use load::*;
use machine::*;
use options::*;
use procs::*;
use raw::*;
use recurring::*;
use reminders::*;
use report::*;
use services::*;
use stats::*;
use user_reminders::*;

const TASK_EVENTS: &str = "task-events";
const REMINDERS: &str = "reminders";
/// The raw baseline publishes here: same broker, same partitions, nobody consumes it.
const RAW_TOPIC: &str = "bench-raw";
const PUBSUB: &str = "pubsub";
const RECURRING_GROUP: &str = "recurring-tasks";

/// The measuring must end within this, after the release build (which takes as long as it
/// takes: about 8 minutes cold on two cores, seconds when warm).
const BUDGET: Duration = Duration::from_secs(19 * 60);
/// Kept back from the budget for stopping everything (Kafka takes up to 30 s).
const STOP_RESERVE: Duration = Duration::from_secs(45);

/// Each load worker writes for its own users in turn, one request at a time, so no user
/// ever has two writes in flight (as with a real client). The relay publishes one event per
/// user at a time (per-user order), so a few users writing many events a second bound it by
/// the publish latency; 64 per worker keeps each user to a few writes a second.
const USERS_PER_WORKER: usize = 64;
/// Count bound of one worker in one phase (the time bound normally ends it first).
const MAX_REQUESTS_PER_WORKER: usize = 100_000;

const RECURRING_USERS: usize = 20;
/// Completions of recurring tasks are paced (open loop), not as fast as possible.
const RECURRING_INTERVAL: Duration = Duration::from_millis(50);
const RECURRING_WARMUP: Duration = Duration::from_secs(2);
const RECURRING_MEASURE: Duration = Duration::from_secs(15);

const REMINDER_TASKS: usize = 60;
/// The shipped period: reminders users set are measured from their time to the log, which
/// the period bounds.
const REMINDER_SCHEDULE: &str = "@every 30s";
const REMINDER_WAIT: Duration = Duration::from_secs(60);

const RAW_BULK_ENTRIES: usize = 100;
const RAW_BULK_CONCURRENCY: usize = 4;
const RAW_WARMUP: Duration = Duration::from_secs(3);

/// How long the relay and the recurring worker's consumer may take to catch up after a phase.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(bench(&args)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `cargo xtask bench`: provisions, builds every binary with `--release` (the services and
/// this bench, in one build so they share one feature resolution), then runs the release
/// bench to measure: a load client built without optimisations would take CPU from the
/// system it measures. Ctrl-C reaches both; this one waits for the other's clean-up.
async fn bench(args: &[String]) -> Result<()> {
    let started = Instant::now();
    let opts = Options::parse(args)?;
    if opts.measure {
        return measure_main(opts).await;
    }
    let paths = Paths::discover()?;
    prov::all(&paths)?;

    let t = step("building every binary with --release");
    cargo(
        &paths,
        &["build", "--release", "--bins", "--workspace"],
        &[],
    )?;
    done(t);

    let mut cmd = tokio::process::Command::new(paths.root.join("target/release/bench"));
    cmd.args(args)
        .args([
            "--measure",
            "--budget-ms",
            &BUDGET.as_millis().to_string(),
            "--build-ms",
            &started.elapsed().as_millis().to_string(),
        ])
        .current_dir(&paths.root)
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("starting target/release/bench")?;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("waiting for the measuring bench")?,
            r = tokio::signal::ctrl_c() => {
                r.context("waiting for Ctrl-C")?;
                // A terminal's Ctrl-C reaches the child too; a SIGINT sent to this process only
                // is passed on. Either way the child stops what it started, then exits.
                if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT);
                }
            }
        }
    };
    if !status.success() {
        bail!("the benchmark failed ({status})");
    }
    Ok(())
}

/// The measuring half, in the release bench: runs [`measure`] within the time budget, then
/// prints the report and appends it to `BENCHMARKS.md`.
async fn measure_main(opts: Options) -> Result<()> {
    let started = Instant::now();
    let paths = Paths::discover()?;
    let exe = std::env::current_exe()?;
    e2e::use_binaries_from(
        exe.parent()
            .context("the bench has no directory")?
            .to_path_buf(),
    );
    let budget = opts.budget.unwrap_or(BUDGET).saturating_sub(STOP_RESERVE);
    let report = tokio::select! {
        r = tokio::time::timeout(budget, measure(&paths, &opts)) => match r {
            Ok(report) => match report? {
                Some(report) => report,
                None => return Ok(()),
            },
            Err(_) => bail!("the benchmark ran out of its time budget ({:.1} minutes of measuring); everything it started was stopped", BUDGET.as_secs_f64() / 60.0),
        },
        r = tokio::signal::ctrl_c() => {
            r.context("waiting for Ctrl-C")?;
            bail!("interrupted; everything the benchmark started was stopped");
        }
    };
    let text = report.render(&opts, opts.build + started.elapsed());
    println!("\n{text}");
    if opts.record {
        let file = paths.root.join("BENCHMARKS.md");
        let mut all = fs::read_to_string(&file).unwrap_or_else(|_| HEADER.to_owned());
        if !all.ends_with("\n\n") {
            all.push('\n');
        }
        all.push_str(&text);
        fs::write(&file, all).with_context(|| format!("writing {}", file.display()))?;
        println!("appended to {}", file.display());
    }
    if !report.left_running.is_empty() {
        bail!(
            "processes still running after the stop: {:?}",
            report.left_running
        );
    }
    Ok(())
}

// The run

/// Stops the services and the stack ([`stop_everything`]); answers what is still running.
async fn stop_services(
    paths: &Paths,
    env: Env,
    api: Service,
    worker: Service,
    reminder_services: Result<(Service, Service), String>,
) -> Result<Vec<u32>> {
    let t = step("stopping every process");
    let mut services = vec![api, worker];
    if let Ok((cron, notifications)) = reminder_services {
        services.push(cron);
        services.push(notifications);
    }
    let left_running = stop_everything(paths, env, services).await?;
    done(t);
    Ok(left_running)
}

/// The processes whose CPU and memory the bench reports: the services and their sidecars,
/// the stack's servers, and the bench itself.
fn service_procs(
    api: &Service,
    worker: &Service,
    reminder_services: &Result<(Service, Service), String>,
    stack_pids: &[u32],
) -> Vec<Proc> {
    let mut procs = vec![
        Proc::new("chat-api", api.process.pid(), false),
        Proc::new("daprd (chat-api)", api.sidecar.pid(), false),
        Proc::new("recurring-tasks", worker.process.pid(), false),
        Proc::new("daprd (recurring-tasks)", worker.sidecar.pid(), false),
    ];
    if let Ok((cron, notifications)) = reminder_services {
        procs.push(Proc::new("reminder-cron", cron.process.pid(), false));
        procs.push(Proc::new(
            "daprd (reminder-cron)",
            cron.sidecar.pid(),
            false,
        ));
        procs.push(Proc::new(
            "notifications",
            notifications.process.pid(),
            false,
        ));
        procs.push(Proc::new(
            "daprd (notifications)",
            notifications.sidecar.pid(),
            false,
        ));
    }
    for (name, pid) in ["PostgreSQL (all processes)", "Redis", "Kafka"]
        .iter()
        .zip(stack_pids)
    {
        procs.push(Proc::new(name, *pid, name.starts_with("PostgreSQL")));
    }
    procs.push(Proc::new("load client (bench)", std::process::id(), false));
    procs
}

/// The whole run's report, or `None` with `--relay-only` (which prints its own).
async fn measure(paths: &Paths, opts: &Options) -> Result<Option<Report>> {
    let machine = Machine::read();

    let t = step("starting PostgreSQL, Redis and Kafka on free loopback ports");
    let mut env = Env::start_with(BrokerJvm::Server).await?;
    // Dropped before `env` (which removes its directory): a run that ends early keeps its
    // logs as `stop_services` does at the end.
    let mut logs = KeptOnFailure::new(env.dir.path().join("logs"), paths);
    env.stack
        .create_topics(&[RAW_TOPIC], e2e::TOPIC_PARTITIONS)
        .await?;
    // The raw publishes (the baseline) go through chat-api's sidecar to a topic of their own.
    env.allow_publishing("chat-api", RAW_TOPIC)?;
    let bootstrap = env.stack.kafka_bootstrap();
    let append_time = [("message.timestamp.type", "LogAppendTime")];
    tokio::try_join!(
        devstack::alter_topic_config(&bootstrap, paths, TASK_EVENTS, &append_time),
        devstack::alter_topic_config(&bootstrap, paths, REMINDERS, &append_time),
        devstack::alter_topic_config(&bootstrap, paths, RAW_TOPIC, &append_time),
    )?;
    let db_url = env.database().await?;
    done(t);

    let t = step("starting chat-api and recurring-tasks, each beside its own daprd");
    let api_settings = chat_api_settings(opts);
    let mut api_env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", db_url.clone()),
        ("MIGRATE_ON_START", "true".into()),
    ];
    api_env.extend(api_settings.iter().map(|(k, v)| (k.as_str(), v.clone())));
    let mut api = env.start_service("chat-api", "chat-api", &api_env).await?;
    let worker = env
        .start_service(
            "recurring-tasks",
            "recurring-tasks",
            &[("DATABASE_URL", db_url.clone())],
        )
        .await?;
    done(t);
    let reminder_services = start_reminder_services(&env, &db_url).await;

    let db = sea_orm::Database::connect(&db_url)
        .await
        .context("connecting to the benchmark database")?;
    let versions = Versions::read(paths, &db).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let stack_pids = env.stack.pids();
    let ctx = Ctx {
        paths,
        env: &env,
        api_base: api.base.clone(),
        api_log: api.process.log_file().to_path_buf(),
        client: &client,
        bootstrap: bootstrap.clone(),
        db: &db,
    };

    if opts.relay_only {
        let cost = async {
            relay_cost::create_one(&ctx).await?;
            let payload = sample_payload(&ctx).await?;
            let procs = service_procs(&api, &worker, &reminder_services, &stack_pids);
            relay_cost::measure(
                &ctx,
                &api,
                payload,
                &api_settings,
                &procs,
                clock_ticks_per_second(),
                opts,
            )
            .await
        }
        .await;
        logs.disarm();
        drop(db);
        let left_running = stop_services(paths, env, api, worker, reminder_services).await?;
        let mut text = String::new();
        cost?.render(&mut text);
        println!("{text}");
        if !left_running.is_empty() {
            bail!("processes still running after the stop: {left_running:?}");
        }
        return Ok(None);
    }

    // Reminders are due within the window at once; the cron tick publishes them while the
    // recurring scenario runs.
    let reminder_tasks = match &reminder_services {
        Ok(_) => Some(create_reminder_tasks(&ctx).await),
        Err(_) => None,
    };
    let lateness_tasks = match &reminder_services {
        Ok(_) => Some(create_lateness_tasks(&ctx).await),
        Err(_) => None,
    };

    let t = step("recurring: completion → next instance");
    let recurring = recurring_scenario(&ctx, &db).await?;
    done(t);

    let reminders = match (&reminder_services, reminder_tasks) {
        (Err(why), _) => ReminderOutcome::NotMeasured(why.clone()),
        (Ok(_), Some(Err(e))) => {
            ReminderOutcome::NotMeasured(format!("could not create the due tasks: {e:#}"))
        }
        (Ok((_, notifications)), Some(Ok((ids, created)))) => {
            let t = step("reminders: published → notification logged");
            let outcome = reminder_scenario(&ctx, notifications, &ids, created).await;
            done(t);
            outcome
        }
        (Ok(_), None) => ReminderOutcome::NotMeasured("no due tasks".into()),
    };
    let lateness = match (&reminder_services, lateness_tasks) {
        (Err(why), _) => LatenessOutcome::NotMeasured(why.clone()),
        (Ok(_), Some(Err(e))) => {
            LatenessOutcome::NotMeasured(format!("could not create the tasks: {e:#}"))
        }
        (Ok((_, notifications)), Some(Ok((ids, last)))) => {
            let t = step(&format!(
                "reminders users set: their time → notification logged (cron {REMINDER_SCHEDULE})"
            ));
            let outcome = lateness(notifications, &ids, last).await;
            done(t);
            outcome
        }
        (Ok(_), None) => LatenessOutcome::NotMeasured("no tasks".into()),
    };
    settle(&ctx).await?;

    let t = step("chat: a turn's own cost against a model that answers at once");
    let chat = chat::run(&ctx, &db_url).await?;
    println!(
        "    text turn p95 {:.1} ms, tool turn p95 {:.1} ms, REST create p95 {:.1} ms",
        chat.text_turn.p95, chat.tool_turn.p95, chat.create.p95
    );
    settle(&ctx).await?;
    done(t);

    let t = step("span export: creates with OTLP export off and on, taking turns");
    let tracing = tracing::run(&ctx, &db_url, opts.warmup, opts.duration).await?;
    settle(&ctx).await?;
    done(t);

    let payload = sample_payload(&ctx).await?;
    let relay_concurrency = setting(&api_settings, "RELAY_CONCURRENCY")
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let t = step(&format!(
        "raw publishes to chat-api's sidecar: single (concurrency {relay_concurrency}), bulk ({RAW_BULK_CONCURRENCY} × {RAW_BULK_ENTRIES})"
    ));
    let raw_single =
        raw_publish(&api, payload.clone(), relay_concurrency, 1, opts.duration).await?;
    let raw_bulk = raw_publish(
        &api,
        payload.clone(),
        RAW_BULK_CONCURRENCY,
        RAW_BULK_ENTRIES,
        opts.duration,
    )
    .await?;
    done(t);

    let procs = Arc::new(service_procs(
        &api,
        &worker,
        &reminder_services,
        &stack_pids,
    ));
    let clk_tck = clock_ticks_per_second();

    let relay_cost = relay_cost::measure(
        &ctx,
        &api,
        payload.clone(),
        &api_settings,
        &procs,
        clk_tck,
        opts,
    )
    .await?;

    let top = opts.levels.iter().copied().max().unwrap_or(0);
    let mut phases = Vec::new();
    for &level in &opts.levels {
        let mut workers = make_workers(&ctx, &level_user_prefix(level), level, &ctx.api_base)?;
        for op in [Op::Create, Op::Complete] {
            let t = step(&format!("API {} at concurrency {level}", op.name()));
            let (back, mut phase) = run_phase(
                &ctx,
                workers,
                op,
                level,
                opts.warmup,
                opts.duration,
                Some((&procs, clk_tck)),
            )
            .await;
            workers = back;
            phase.settle = Some(settle(&ctx).await?);
            println!(
                "    {:.0} req/s, p95 {:.1} ms, {} errors; relay drained {:.1}s after",
                phase.rps(),
                phase.latency.p95,
                phase.errors,
                phase
                    .settle
                    .as_ref()
                    .map_or(0.0, |s| s.drained.as_secs_f64())
            );
            phases.push(phase);
            done(t);
        }
    }

    // Last: the drain leaves tens of thousands of rows just marked published, and until
    // PostgreSQL's autoanalyze catches up the relay's read of pending rows may scan them
    // (seen as a higher publish lag at the next load), which would colour the API phases.
    let t = step(
        "relay drain: a backlog written while chat-api was stopped, published after its restart",
    );
    let drain = drain_scenario(&ctx, &mut api, &api_env).await?;
    done(t);

    let t = step(&format!(
        "Kafka outage: {} s without a broker under paced writes, then the catch-up",
        outage::OUTAGE.as_secs()
    ));
    let outage_workers = make_workers(&ctx, outage::PREFIX, outage::WORKERS, &ctx.api_base)?;
    // The broker is the stack's to stop: the context's borrow of `env` ends here.
    let Ctx {
        api_base,
        api_log,
        bootstrap,
        ..
    } = ctx;
    let outage = outage::run(&mut env.stack, &client, &api_base, outage_workers).await?;
    let ctx = Ctx {
        paths,
        env: &env,
        api_base,
        api_log,
        client: &client,
        bootstrap,
        db: &db,
    };
    relay_drained(&ctx).await?;
    done(t);

    let t = step(
        "relay under faults: an account deletion beside other writers, aborting clients, SIGKILL and restart",
    );
    let faults = relay_faults::run(&ctx, &mut api, &db).await?;
    done(t);

    let t = step("reading task-events back from Kafka (timestamps, ids)");
    // Every record on the topic, redeliveries included (a publish that failed after the
    // broker appended it is sent again under the same event id); at least one per event.
    let records = devstack::topic_end_offset(&ctx.bootstrap, paths, TASK_EVENTS).await?;
    let seen = read_task_events(&ctx, usize::try_from(records).unwrap_or(0)).await?;
    for phase in &mut phases {
        phase.kafka = Some(seen.phase_stats(phase));
    }
    let drain = seen.drain_stats(drain);
    let outage = seen.outage_stats(outage);
    let faults = faults.with_kafka(&seen);
    done(t);

    let t = step(&format!(
        "reminder scan: {SCAN_TASKS} tasks with reminders in a database of their own, ticks a cron period apart"
    ));
    let scan = match env.stack.create_database("reminder_scan").await {
        Ok(url) => scan_cost(&url).await.map_err(|e| format!("{e:#}")),
        Err(e) => Err(format!("could not create its database: {e:#}")),
    };
    if let Ok(c) = &scan {
        println!(
            "    written in {:.1} s; tick p50 {:.1} ms, max {:.1} ms",
            c.write_s, c.tick.p50, c.tick_max_ms
        );
    }
    done(t);

    logs.disarm();
    drop(db);
    let left_running = stop_services(paths, env, api, worker, reminder_services).await?;

    Ok(Some(Report {
        machine,
        versions,
        api_settings,
        top,
        recurring,
        reminders,
        lateness,
        scan,
        chat,
        tracing,
        relay_cost,
        raw_single,
        raw_bulk,
        raw_payload_bytes: payload.len(),
        relay_concurrency,
        drain,
        outage,
        faults,
        phases,
        kafka_unmatched: seen.unmatched,
        kafka_key_mismatches: seen.key_mismatches,
        kafka_raw: seen.raw,
        left_running,
        load_at_end: read_loadavg(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let q = Quantiles::of((1..=100).map(f64::from).collect());
        assert_eq!((q.n, q.p50, q.p95, q.p99), (100, 50.0, 95.0, 99.0));
        let one = Quantiles::of(vec![7.0]);
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
        assert_eq!(Quantiles::of(Vec::new()).n, 0);
    }

    #[test]
    fn log_line_times_come_from_json_or_the_first_word() {
        let json = r#"{"timestamp":"2026-11-28T10:00:00.250Z","level":"INFO","task_id":"x"}"#;
        assert_eq!(
            log_line_time(json).map(|t| t.timestamp_millis() % 1000),
            Some(250)
        );
        let text = "\u{1b}[2m2026-11-28T10:00:01.5Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m reminder";
        assert_eq!(
            log_line_time(text).map(|t| t.timestamp_millis() % 10_000),
            Some(1500)
        );
        assert!(log_line_time("no time here").is_none());
    }

    #[test]
    fn options_take_levels_settings_and_durations() {
        let args: Vec<String> = [
            "--levels",
            "4,16",
            "--set",
            "RELAY_CONCURRENCY=64",
            "--duration",
            "3",
            "--no-record",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let o = Options::parse(&args).expect("parse");
        assert_eq!(o.levels, [4, 16]);
        assert_eq!(o.duration, Duration::from_secs(3));
        assert!(!o.record);
        let settings = chat_api_settings(&o);
        assert_eq!(setting(&settings, "RELAY_CONCURRENCY"), Some("64"));
        assert!(Options::parse(&["--levels".to_owned(), "0".to_owned()]).is_err());
        assert!(Options::parse(&["--bogus".to_owned()]).is_err());
    }
}
