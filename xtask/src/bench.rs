//! `cargo xtask bench`: throughput and latency of the whole pipeline on the real stack,
//! against the sidecar's own ceiling (issue 9).
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
use devstack::{Paths, provision as prov};
use e2e::{Env, Service};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::tasks::{cargo, done, step};

mod outage;
mod relay_faults;

const TASK_EVENTS: &str = "task-events";
const REMINDERS: &str = "reminders";
/// The raw baseline publishes here: same broker, same partitions, nobody consumes it.
const RAW_TOPIC: &str = "bench-raw";
const PUBSUB: &str = "pubsub";
const RECURRING_GROUP: &str = "recurring-tasks";

/// The measuring must end within this, after the release build (which takes as long as it
/// takes: about 8 minutes cold on two cores, seconds when warm).
const BUDGET: Duration = Duration::from_secs(14 * 60 + 30);
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
/// The cron tick only decides when reminders are published, not how long they take to
/// reach the log; a faster tick than the shipped 30 s keeps the run short.
const REMINDER_SCHEDULE: &str = "@every 5s";
const REMINDER_WAIT: Duration = Duration::from_secs(40);

const RAW_BULK_ENTRIES: usize = 100;
const RAW_BULK_CONCURRENCY: usize = 4;
const RAW_WARMUP: Duration = Duration::from_secs(3);

/// How long the relay and the recurring worker's consumer may take to catch up after a phase.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

const HEADER: &str = "# Benchmarks

Appended by `cargo xtask bench` (see the README): one dated section per run, every figure
produced by the command on the machine it names. Definitions:

- **API writes**: a closed-loop load client in `xtask` (reqwest, HTTP/1.1 keep-alive,
  loopback) with a fixed number of workers (the concurrency); each worker has 64 users of
  its own and writes for them in turn, one request at a time. `create` = `POST /api/{user}/tasks`, `complete` =
  `POST /api/{user}/tasks/{id}/complete` of the tasks the create phase made. Each phase runs
  a warm-up, then the measured window; req/s and latency (send to last body byte) count the
  requests started inside the window; errors are transport errors and any status but
  201/200.
- **Events on Kafka**: distinct event ids of the phase's events read back from
  `task-events` with Kafka's console consumer, against the phase's successful writes
  (warm-up included). Every write must have its event.
- **Publish lag**: the record's Kafka timestamp minus the event's `occurred_at`, for events
  that occurred in the measured window. `occurred_at` is taken by chat-api in the write
  transaction, just before it commits; the topics are switched to
  `message.timestamp.type=LogAppendTime`, so the timestamp is the broker's append time,
  after which the single-replica broker acknowledges at once (acks=all). So: commit →
  Kafka ack, give or take the commit itself (about a millisecond).
- **Event rate**: the phase's events whose Kafka append time falls in the measured window,
  per second: what reached Kafka while the API was under that load.
- **Relay drain**: chat-api is stopped, a second chat-api with its relay off takes writes
  for 10 s, then chat-api starts again and its relay publishes the whole backlog: events
  per second between the first and the last backlog event's Kafka append time. This is the
  relay's publishing rate without the API's request work competing for the CPU.
- **Kafka outage**: creates paced at 400/s (open loop: each request's latency counts from
  when it was due) while the broker is stopped for 30 s and started again on the same
  data. Catch-up = from the broker serving again until the last event that occurred
  before that was appended to `task-events` (from the read-back; also polled live on
  `/relay/status`). Every successful write's event must be on Kafka.
- **Relay under faults**: head-of-line (one user deletes an account of 20,000 tasks while
  ten paced writers create 200 tasks/s for other users: their publish lag while the
  deletion's events are published, and just before), abort storm (300 paced creates/s for
  10 s alone, then 10 s with a quarter of all requests sent by raw-TCP clients that close
  0-4 ms after sending, one in four after half the body: every committed write of theirs
  must be on Kafka, nothing pending afterwards, and the paced writes' lag is compared), and
  crash failover (chat-api SIGKILLed and started again at once: its first new event's Kafka
  append time minus the kill, and minus when the new process answered).
- **Raw publishes**: the same sidecar (chat-api's daprd) and broker, no service code:
  `PublishEvent` over gRPC at the relay's concurrency (single) and `BulkPublishEvent`
  (bulk), a real task event as payload, distinct partition keys, to a topic nobody
  consumes. The API's event rate under load (and the relay's drain rate) is reported as a
  ratio of the higher of the two; the target is judged on the rate under load.
- **Recurring**: the next instance's `created_at` (taken by recurring-tasks when it handles
  the event, in the transaction that inserts it) minus the completed task's `completed_at`
  (taken by chat-api in the completing transaction), from the database, for completions
  paced at a fixed rate after a warm-up.
- **Reminders**: the notification service's log line for the reminder (its timestamp)
  minus the reminder record's Kafka append time on `reminders`. The cron binding fires
  every 5 s instead of 30 s: the tick decides when a reminder is published, not how long
  it then takes.
- **Resources**: per process, CPU = (utime + stime) delta from `/proc/PID/stat` over the
  measured window (100 % = one core; PostgreSQL includes its backends), RSS = the highest
  `VmRSS` of `/proc/PID/status` sampled every 250 ms in the window.

Other work on the machine skews every figure: each run records the load average it started
with.
";

/// Command-line options: `cargo xtask bench [--duration S] [--warmup S] [--levels 8,32,128]
/// [--set KEY=VALUE]... [--no-record]`.
#[derive(Debug, Clone)]
struct Options {
    duration: Duration,
    warmup: Duration,
    levels: Vec<usize>,
    /// Extra environment for chat-api (tuning: `DB_MAX_CONNECTIONS`, `RELAY_*`).
    chat_api_env: Vec<(String, String)>,
    record: bool,
    /// Internal: the release build of `xtask` measuring, started by the debug one.
    measure: bool,
    /// Internal: the time left for measuring, and how long the build took.
    budget: Option<Duration>,
    build: Duration,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut opts = Options {
            duration: Duration::from_secs(20),
            warmup: Duration::from_secs(5),
            levels: vec![8, 32, 128],
            chat_api_env: Vec::new(),
            record: true,
            measure: false,
            budget: None,
            build: Duration::ZERO,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--duration" => {
                    opts.duration = Duration::from_secs(
                        value("--duration")?
                            .parse()
                            .context("--duration: seconds")?,
                    )
                }
                "--warmup" => {
                    opts.warmup = Duration::from_secs(
                        value("--warmup")?.parse().context("--warmup: seconds")?,
                    )
                }
                "--levels" => {
                    opts.levels = value("--levels")?
                        .split(',')
                        .map(|l| {
                            l.trim()
                                .parse::<usize>()
                                .context("--levels: numbers such as 8,32,128")
                        })
                        .collect::<Result<_>>()?;
                }
                "--set" => {
                    let kv = value("--set")?;
                    let (k, v) = kv.split_once('=').context("--set takes KEY=VALUE")?;
                    opts.chat_api_env.push((k.to_owned(), v.to_owned()));
                }
                "--no-record" => opts.record = false,
                "--measure" => opts.measure = true,
                "--budget-ms" => {
                    opts.budget = Some(Duration::from_millis(
                        value("--budget-ms")?.parse().context("--budget-ms")?,
                    ))
                }
                "--build-ms" => {
                    opts.build =
                        Duration::from_millis(value("--build-ms")?.parse().context("--build-ms")?)
                }
                other => bail!(
                    "unknown bench option {other:?}; options: --duration S, --warmup S, --levels 8,32,128, --set KEY=VALUE, --no-record"
                ),
            }
        }
        if opts.levels.is_empty() || opts.levels.contains(&0) {
            bail!("--levels needs at least one concurrency above 0");
        }
        if opts.duration.is_zero() {
            bail!("--duration must be at least 1 second");
        }
        Ok(opts)
    }
}

/// `cargo xtask bench`: provisions, builds every binary with `--release` (the services and
/// `xtask` itself, in one build so they share one feature resolution), then runs the
/// release `xtask` to measure: a load client built without optimisations would take CPU
/// from the system it measures. Ctrl-C reaches both; this one waits for the other's clean-up.
pub async fn bench(args: &[String]) -> Result<()> {
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

    let mut cmd = tokio::process::Command::new(paths.root.join("target/release/xtask"));
    cmd.arg("bench")
        .args(args)
        .args([
            "--measure",
            "--budget-ms",
            &BUDGET.as_millis().to_string(),
            "--build-ms",
            &started.elapsed().as_millis().to_string(),
        ])
        .current_dir(&paths.root)
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("starting target/release/xtask")?;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("waiting for the measuring xtask")?,
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

/// The measuring half, in the release `xtask`: runs [`measure`] within the time budget, then
/// prints the report and appends it to `BENCHMARKS.md`.
async fn measure_main(opts: Options) -> Result<()> {
    let started = Instant::now();
    let paths = Paths::discover()?;
    let exe = std::env::current_exe()?;
    e2e::use_binaries_from(
        exe.parent()
            .context("xtask has no directory")?
            .to_path_buf(),
    );
    let budget = opts.budget.unwrap_or(BUDGET).saturating_sub(STOP_RESERVE);
    let report = tokio::select! {
        r = tokio::time::timeout(budget, measure(&paths, &opts)) => match r {
            Ok(report) => report?,
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

// ---------------------------------------------------------------------------------------
// The run

async fn measure(paths: &Paths, opts: &Options) -> Result<Report> {
    let machine = Machine::read();

    let t = step("starting PostgreSQL, Redis and Kafka on free loopback ports");
    let mut env = Env::start().await?;
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
    };

    // Reminders are due within the window at once; the cron tick publishes them while the
    // recurring scenario runs.
    let reminder_tasks = match &reminder_services {
        Ok(_) => Some(create_reminder_tasks(&ctx).await),
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
    settle(&ctx).await?;

    let payload = sample_payload(&db).await?;
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

    let mut procs = vec![
        Proc::new("chat-api", api.process.pid(), false),
        Proc::new("daprd (chat-api)", api.sidecar.pid(), false),
        Proc::new("recurring-tasks", worker.process.pid(), false),
        Proc::new("daprd (recurring-tasks)", worker.sidecar.pid(), false),
    ];
    if let Ok((cron, notifications)) = &reminder_services {
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
        .zip(&stack_pids)
    {
        procs.push(Proc::new(name, *pid, name.starts_with("PostgreSQL")));
    }
    procs.push(Proc::new("load client (xtask)", std::process::id(), false));
    let procs = Arc::new(procs);
    let clk_tck = clock_ticks_per_second();

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
    let events = scalar_i64(
        &db,
        &format!("SELECT count(*) FROM outbox WHERE topic = '{TASK_EVENTS}'"),
    )
    .await?;
    let records = devstack::topic_end_offset(&ctx.bootstrap, paths, TASK_EVENTS).await?;
    let seen = read_task_events(
        &ctx,
        usize::try_from(records.max(u64::try_from(events).unwrap_or(0))).unwrap_or(0),
    )
    .await?;
    for phase in &mut phases {
        phase.kafka = Some(seen.phase_stats(phase));
    }
    let drain = seen.drain_stats(drain);
    let outage = seen.outage_stats(outage);
    let faults = faults.with_kafka(&seen);
    done(t);

    let t = step("stopping every process");
    let mut services = vec![api, worker];
    if let Ok((cron, notifications)) = reminder_services {
        services.push(cron);
        services.push(notifications);
    }
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
    drop(db);
    let Env { stack, dir, .. } = env;
    stack.stop().await?;
    let kept = keep_logs(
        &dir.path().join("logs"),
        &paths.root.join(".data/bench-logs"),
    );
    drop(dir);
    let left_running: Vec<u32> = pids
        .into_iter()
        .filter(|p| devstack::pid_alive(*p))
        .collect();
    match kept {
        Ok(()) => println!("    the services' and sidecars' logs are in .data/bench-logs"),
        Err(e) => println!("    could not keep the logs: {e:#}"),
    }
    done(t);

    Ok(Report {
        machine,
        versions,
        api_settings,
        top,
        recurring,
        reminders,
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
        left_running,
        load_at_end: read_loadavg(),
    })
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

struct Ctx<'a> {
    paths: &'a Paths,
    env: &'a Env,
    api_base: String,
    api_log: std::path::PathBuf,
    client: &'a reqwest::Client,
    bootstrap: String,
}

// ---------------------------------------------------------------------------------------
// Relay drain: the relay's own publishing rate

/// Users of the drain scenario: `d-w<worker>-u<n>`.
const DRAIN_PREFIX: &str = "d-";
const DRAIN_FILL: Duration = Duration::from_secs(10);
const DRAIN_FILL_CONCURRENCY: usize = 32;

struct Drain {
    backlog: u64,
    /// From chat-api's restart until the outbox was empty (start-up included).
    drained_after: Duration,
    /// Backlog events per second between the first and the last one's Kafka append time.
    rate: f64,
    on_kafka: usize,
}

/// Stops chat-api (its relay releases the lease), writes for `DRAIN_FILL` through a second
/// chat-api whose relay is off, then starts chat-api again: its relay finds the whole
/// backlog waiting and publishes it as fast as it can.
async fn drain_scenario(
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

/// chat-api's tuning as the benchmark runs it: the service defaults, then `--set`.
fn chat_api_settings(opts: &Options) -> Vec<(String, String)> {
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

fn setting<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
    settings
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

async fn start_reminder_services(env: &Env, db_url: &str) -> Result<(Service, Service), String> {
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
async fn settle(ctx: &Ctx<'_>) -> Result<Settle> {
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
async fn relay_drained(ctx: &Ctx<'_>) -> Result<Duration> {
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

async fn relay_pending(ctx: &Ctx<'_>) -> Result<u64> {
    relay_pending_at(ctx, &ctx.api_base).await
}

async fn relay_pending_at(ctx: &Ctx<'_>, base: &str) -> Result<u64> {
    Ok(relay_status(ctx.client, base).await?.0)
}

/// chat-api's relay backlog at `base`: pending events and the oldest one's age.
async fn relay_status(client: &reqwest::Client, base: &str) -> Result<(u64, Duration)> {
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
struct Settle {
    drained: Duration,
    consumed: Duration,
}

// ---------------------------------------------------------------------------------------
// API writes

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Create,
    Complete,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Complete => "complete",
        }
    }

    fn event_type(self) -> &'static str {
        match self {
            Op::Create => "task.created",
            Op::Complete => "task.completed",
        }
    }
}

struct BenchUser {
    token: String,
    tasks_url: String,
}

struct Worker {
    users: Vec<BenchUser>,
    next: usize,
    /// Tasks the create phase made, (user index, task id), completed in that order.
    created: VecDeque<(usize, String)>,
}

struct Sample {
    /// Since the phase started.
    start: Duration,
    latency: Duration,
    ok: bool,
}

/// The load's users for one concurrency level: `b<level>-w<worker>-u<n>`.
fn level_user_prefix(level: usize) -> String {
    format!("b{level}-")
}

fn make_workers(ctx: &Ctx<'_>, prefix: &str, count: usize, base: &str) -> Result<Vec<Worker>> {
    (0..count)
        .map(|w| {
            let users = (0..USERS_PER_WORKER)
                .map(|u| {
                    let id = format!("{prefix}w{w}-u{u}");
                    Ok(BenchUser {
                        token: ctx.env.token(&id)?,
                        tasks_url: format!("{base}/api/{id}/tasks"),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Worker {
                users,
                next: 0,
                created: VecDeque::new(),
            })
        })
        .collect()
}

/// When a load worker sends, and until when.
#[derive(Clone)]
struct Schedule {
    t0: Instant,
    end: Instant,
    /// Zero: closed loop, the next request as soon as the last one answered. Otherwise open
    /// loop: request n is due at `t0 + offset + n × interval` (sent late, never skipped, if
    /// the last one answered after that), and its latency counts from when it was due.
    interval: Duration,
    offset: Duration,
    /// Ends the run before `end` once set.
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Schedule {
    fn closed(t0: Instant, end: Instant) -> Schedule {
        Schedule {
            t0,
            end,
            interval: Duration::ZERO,
            offset: Duration::ZERO,
            stop: None,
        }
    }

    fn stopped(&self) -> bool {
        Instant::now() >= self.end
            || self
                .stop
                .as_ref()
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
    }
}

async fn run_worker(
    mut w: Worker,
    client: reqwest::Client,
    op: Op,
    schedule: Schedule,
) -> (Worker, Vec<Sample>, bool) {
    let mut samples = Vec::new();
    let mut ran_out = false;
    let t0 = schedule.t0;
    while !schedule.stopped() && samples.len() < MAX_REQUESTS_PER_WORKER {
        let started = if schedule.interval.is_zero() {
            Instant::now()
        } else {
            let n = u32::try_from(samples.len()).unwrap_or(u32::MAX);
            let due = t0 + schedule.offset + schedule.interval * n;
            tokio::time::sleep_until(due.into()).await;
            due
        };
        let ok = match op {
            Op::Create => {
                let i = w.next % w.users.len();
                w.next += 1;
                let user = &w.users[i];
                let body = format!(
                    r#"{{"title":"bench task {}","priority":"high","tags":["bench"]}}"#,
                    w.next
                );
                let res = client
                    .post(&user.tasks_url)
                    .bearer_auth(&user.token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let id = r
                            .bytes()
                            .await
                            .ok()
                            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                            .and_then(|v| v["id"].as_str().map(str::to_owned));
                        id.map(|id| w.created.push_back((i, id))).is_some()
                    }
                    Ok(r) => {
                        let _ = r.bytes().await;
                        false
                    }
                    Err(_) => false,
                }
            }
            Op::Complete => {
                let Some((i, id)) = w.created.pop_front() else {
                    ran_out = true;
                    break;
                };
                let user = &w.users[i];
                match client
                    .post(format!("{}/{id}/complete", user.tasks_url))
                    .bearer_auth(&user.token)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let ok = r.status().as_u16() == 200;
                        let _ = r.bytes().await;
                        ok
                    }
                    Err(_) => false,
                }
            }
        };
        samples.push(Sample {
            start: started - t0,
            latency: started.elapsed(),
            ok,
        });
    }
    (w, samples, ran_out)
}

struct Phase {
    op: Op,
    level: usize,
    /// The measured window (shorter than asked only when the complete phase ran out of tasks).
    window: Duration,
    wall_start: DateTime<Utc>,
    wall_end: DateTime<Utc>,
    requests: usize,
    errors: usize,
    /// Successful writes in the whole phase, warm-up included: each must have its event.
    ok_total: usize,
    latency: Quantiles,
    ran_out: bool,
    usage: Vec<Usage>,
    settle: Option<Settle>,
    kafka: Option<KafkaPhase>,
}

impl Phase {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64().max(1e-9)
    }
}

async fn run_phase(
    ctx: &Ctx<'_>,
    workers: Vec<Worker>,
    op: Op,
    level: usize,
    warmup: Duration,
    duration: Duration,
    sample: Option<(&Arc<Vec<Proc>>, f64)>,
) -> (Vec<Worker>, Phase) {
    let t0 = Instant::now();
    let wall0 = Utc::now();
    let measure_start = t0 + warmup;
    let end = measure_start + duration;
    let sampler =
        sample.map(|(procs, clk_tck)| spawn_sampler(procs.clone(), measure_start, end, clk_tck));
    let handles: Vec<JoinHandle<(Worker, Vec<Sample>, bool)>> = workers
        .into_iter()
        .map(|w| {
            tokio::spawn(run_worker(
                w,
                ctx.client.clone(),
                op,
                Schedule::closed(t0, end),
            ))
        })
        .collect();
    let mut workers = Vec::new();
    let mut samples = Vec::new();
    let mut ran_out = false;
    for h in handles {
        if let Ok((w, s, out)) = h.await {
            workers.push(w);
            samples.extend(s);
            ran_out |= out;
        }
    }
    let usage = match sampler {
        Some(s) => s.await.unwrap_or_default(),
        None => Vec::new(),
    };

    let (from, to) = (warmup, warmup + duration);
    let measured: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start >= from && s.start < to)
        .collect();
    let last_finish = measured
        .iter()
        .map(|s| s.start + s.latency)
        .max()
        .unwrap_or(to);
    let window = if ran_out {
        last_finish.min(to).saturating_sub(from)
    } else {
        duration
    };
    let latencies: Vec<f64> = measured.iter().map(|s| ms(s.latency)).collect();
    let wall_start = wall0 + chrono::Duration::from_std(from).unwrap_or_default();
    let phase = Phase {
        op,
        level,
        window,
        wall_start,
        wall_end: wall_start + chrono::Duration::from_std(window).unwrap_or_default(),
        requests: measured.len(),
        errors: measured.iter().filter(|s| !s.ok).count(),
        ok_total: samples.iter().filter(|s| s.ok).count(),
        latency: Quantiles::of(latencies),
        ran_out,
        usage,
        settle: None,
        kafka: None,
    };
    (workers, phase)
}

// ---------------------------------------------------------------------------------------
// What reached Kafka

struct KafkaEvent {
    occurred_ms: i64,
    append_ms: i64,
}

#[derive(Default)]
struct SeenEvents {
    /// (user group: the user id up to its first `-`, such as `b32` or `d`; op) → events and
    /// their distinct ids.
    by_group: BTreeMap<(String, Op), (Vec<KafkaEvent>, HashSet<String>)>,
    unmatched: usize,
    key_mismatches: usize,
}

struct KafkaPhase {
    distinct: usize,
    missing: usize,
    /// Events appended to Kafka inside the measured window, per second.
    rate: f64,
    lag: Quantiles,
}

fn user_group(user: &str) -> &str {
    user.split_once('-').map_or(user, |(group, _)| group)
}

impl SeenEvents {
    fn phase_stats(&self, phase: &Phase) -> KafkaPhase {
        let (start, end) = (
            phase.wall_start.timestamp_millis(),
            phase.wall_end.timestamp_millis(),
        );
        let group = level_user_prefix(phase.level);
        let Some((events, ids)) = self
            .by_group
            .get(&(user_group(&group).to_owned(), phase.op))
        else {
            return KafkaPhase {
                distinct: 0,
                missing: phase.ok_total,
                rate: 0.0,
                lag: Quantiles::of(Vec::new()),
            };
        };
        let lags: Vec<f64> = events
            .iter()
            .filter(|e| e.occurred_ms >= start && e.occurred_ms < end)
            .map(|e| (e.append_ms - e.occurred_ms) as f64)
            .collect();
        let appended = events
            .iter()
            .filter(|e| e.append_ms >= start && e.append_ms < end)
            .count();
        KafkaPhase {
            distinct: ids.len(),
            missing: phase.ok_total.saturating_sub(ids.len()),
            rate: appended as f64 / phase.window.as_secs_f64().max(1e-9),
            lag: Quantiles::of(lags),
        }
    }

    fn drain_stats(&self, drain: Drain) -> Drain {
        let Some((events, ids)) = self
            .by_group
            .get(&(user_group(DRAIN_PREFIX).to_owned(), Op::Create))
        else {
            return drain;
        };
        let first = events.iter().map(|e| e.append_ms).min().unwrap_or(0);
        let last = events.iter().map(|e| e.append_ms).max().unwrap_or(0);
        let span_s = ((last - first).max(1)) as f64 / 1000.0;
        Drain {
            rate: events.len() as f64 / span_s,
            on_kafka: ids.len(),
            ..drain
        }
    }
}

async fn read_task_events(ctx: &Ctx<'_>, expected: usize) -> Result<SeenEvents> {
    let mut seen = SeenEvents::default();
    let mut not_append_time = 0usize;
    let read = devstack::consume_timed(
        &ctx.bootstrap,
        ctx.paths,
        TASK_EVENTS,
        expected,
        Duration::from_secs(180),
        |r| {
            if !r.log_append_time {
                not_append_time += 1;
            }
            let v: Value =
                serde_json::from_str(&r.record.value).context("a record that is not JSON")?;
            let data = &v["data"];
            let user = data["user_id"].as_str().unwrap_or_default();
            if r.record.key.as_deref() != Some(user) {
                seen.key_mismatches += 1;
            }
            let op = match data["event_type"].as_str() {
                Some(t) if t == Op::Create.event_type() => Some(Op::Create),
                Some(t) if t == Op::Complete.event_type() => Some(Op::Complete),
                _ => None,
            };
            let occurred = data["occurred_at"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            match (op, occurred) {
                (Some(op), Some(occurred)) => {
                    let entry = seen
                        .by_group
                        .entry((user_group(user).to_owned(), op))
                        .or_default();
                    entry.0.push(KafkaEvent {
                        occurred_ms: occurred.timestamp_millis(),
                        append_ms: r.timestamp_ms,
                    });
                    entry
                        .1
                        .insert(data["event_id"].as_str().unwrap_or_default().to_owned());
                }
                // The account deletion's events (relay under faults) are read, not measured.
                _ if data["event_type"] == "task.deleted" => {}
                _ => seen.unmatched += 1,
            }
            Ok(())
        },
    )
    .await?;
    println!("    {read} of {expected} records read");
    if not_append_time > 0 {
        bail!(
            "{not_append_time} records carry CreateTime, not LogAppendTime: the topic configuration did not apply"
        );
    }
    Ok(seen)
}

// ---------------------------------------------------------------------------------------
// Raw publishes: the ceiling

struct RawResult {
    concurrency: usize,
    entries_per_call: usize,
    /// Events acknowledged per second in the measured window.
    rate: f64,
    calls: usize,
    errors: usize,
    latency: Quantiles,
}

/// Publishes straight to chat-api's sidecar over gRPC (`entries_per_call` 1: `PublishEvent`;
/// more: `BulkPublishEvent`) with `concurrency` calls in flight, each entry with its
/// own partition key and CloudEvent id.
async fn raw_publish(
    api: &Service,
    payload: Arc<Vec<u8>>,
    concurrency: usize,
    entries_per_call: usize,
    duration: Duration,
) -> Result<RawResult> {
    let client = dapr_v1::dapr_client::DaprClient::connect(api.sidecar.grpc_url())
        .await
        .map_err(|e| anyhow!("connecting to chat-api's sidecar over gRPC: {e}"))?;
    let t0 = Instant::now();
    let (from, to) = (RAW_WARMUP, RAW_WARMUP + duration);
    let end = t0 + to;
    let mut handles = Vec::new();
    for w in 0..concurrency {
        let mut client = client.clone();
        let payload = payload.clone();
        handles.push(tokio::spawn(async move {
            let mut samples: Vec<(Sample, usize)> = Vec::new();
            let mut n = 0usize;
            while Instant::now() < end && samples.len() < MAX_REQUESTS_PER_WORKER {
                let started = Instant::now();
                let meta = |k: usize| {
                    HashMap::from([
                        ("partitionKey".to_owned(), format!("raw-{w}-{}", k % 64)),
                        ("cloudevent.id".to_owned(), uuid::Uuid::new_v4().to_string()),
                        ("cloudevent.type".to_owned(), "bench.raw".to_owned()),
                    ])
                };
                let acked = if entries_per_call == 1 {
                    let req = dapr_v1::PublishEventRequest {
                        pubsub_name: PUBSUB.into(),
                        topic: RAW_TOPIC.into(),
                        data: payload.to_vec(),
                        data_content_type: "application/json".into(),
                        metadata: meta(n),
                    };
                    usize::from(client.publish_event(req).await.is_ok())
                } else {
                    let entries = (0..entries_per_call)
                        .map(|i| dapr_v1::BulkPublishRequestEntry {
                            entry_id: i.to_string(),
                            event: payload.to_vec(),
                            content_type: "application/json".into(),
                            metadata: meta(n * entries_per_call + i),
                        })
                        .collect();
                    let req = dapr_v1::BulkPublishRequest {
                        pubsub_name: PUBSUB.into(),
                        topic: RAW_TOPIC.into(),
                        entries,
                        metadata: HashMap::new(),
                    };
                    let res = client.bulk_publish_event(req).await;
                    match res {
                        Ok(r) => {
                            entries_per_call.saturating_sub(r.into_inner().failed_entries.len())
                        }
                        Err(_) => 0,
                    }
                };
                n += 1;
                samples.push((
                    Sample {
                        start: started - t0,
                        latency: started.elapsed(),
                        ok: acked == entries_per_call,
                    },
                    acked,
                ));
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for h in handles {
        samples.extend(h.await.unwrap_or_default());
    }
    let measured: Vec<&(Sample, usize)> = samples
        .iter()
        .filter(|(s, _)| s.start >= from && s.start < to)
        .collect();
    let acked: usize = measured.iter().map(|(_, a)| a).sum();
    Ok(RawResult {
        concurrency,
        entries_per_call,
        rate: acked as f64 / duration.as_secs_f64(),
        calls: measured.len(),
        errors: measured.iter().filter(|(s, _)| !s.ok).count(),
        latency: Quantiles::of(measured.iter().map(|(s, _)| ms(s.latency)).collect()),
    })
}

/// A real task event as the raw baseline's payload.
async fn sample_payload(db: &DatabaseConnection) -> Result<Arc<Vec<u8>>> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT payload FROM outbox WHERE event_type = 'task.created' ORDER BY id DESC LIMIT 1",
        ))
        .await?
        .context("no task.created event in the outbox to copy as the raw payload")?;
    let payload: String = row.try_get("", "payload")?;
    Ok(Arc::new(payload.into_bytes()))
}

// ---------------------------------------------------------------------------------------
// Recurring tasks

struct Recurring {
    completions: usize,
    errors: usize,
    measured: usize,
    missing: usize,
    latency: Quantiles,
}

async fn recurring_scenario(ctx: &Ctx<'_>, db: &DatabaseConnection) -> Result<Recurring> {
    let total = ((RECURRING_WARMUP + RECURRING_MEASURE).as_millis()
        / RECURRING_INTERVAL.as_millis()) as usize;
    let users: Vec<(String, String)> = (0..RECURRING_USERS)
        .map(|u| {
            let id = format!("rec-{u}");
            Ok((
                ctx.env.token(&id)?,
                format!("{}/api/{id}/tasks", ctx.api_base),
            ))
        })
        .collect::<Result<_>>()?;
    // Create them 8 at a time.
    let mut tasks: Vec<(usize, String)> = Vec::with_capacity(total);
    for chunk in (0..total).collect::<Vec<_>>().chunks(8) {
        let mut handles = Vec::new();
        for &i in chunk {
            let u = i % users.len();
            let (token, url) = users[u].clone();
            let client = ctx.client.clone();
            handles.push(tokio::spawn(async move {
                let body = json!({"title": format!("recurring {i}"), "recurrence": "daily", "due_at": "2030-01-07T09:00:00Z"});
                let v: Value = client.post(&url).bearer_auth(&token).json(&body).send().await?.error_for_status()?.json().await?;
                anyhow::Ok((u, v["id"].as_str().context("created task without id")?.to_owned()))
            }));
        }
        for h in handles {
            tasks.push(h.await??);
        }
    }
    settle(ctx).await?;

    // Completions paced at a fixed rate; the first RECURRING_WARMUP of them are warm-up.
    let t0 = Instant::now();
    let wall0 = Utc::now();
    let mut handles = Vec::new();
    for (n, (u, id)) in tasks.into_iter().enumerate() {
        tokio::time::sleep_until((t0 + RECURRING_INTERVAL * n as u32).into()).await;
        let (token, url) = users[u].clone();
        let client = ctx.client.clone();
        handles.push(tokio::spawn(async move {
            client
                .post(format!("{url}/{id}/complete"))
                .bearer_auth(&token)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }));
    }
    let mut ok = 0usize;
    for h in handles {
        ok += usize::from(h.await.unwrap_or(false));
    }
    let measure_from = wall0 + chrono::Duration::from_std(RECURRING_WARMUP).unwrap_or_default();

    // Every successful completion must get its next instance.
    let count_sql = "SELECT count(*) FROM tasks WHERE user_id LIKE 'rec-%' AND occurrence = 1";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut created = 0;
    while Instant::now() < deadline {
        created = scalar_i64(db, count_sql).await?;
        if created as usize >= ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT (EXTRACT(EPOCH FROM (n.created_at - p.completed_at)) * 1000)::float8 AS ms \
                 FROM tasks p JOIN tasks n ON n.series_id = p.series_id AND n.occurrence = p.occurrence + 1 \
                 WHERE p.user_id LIKE 'rec-%' AND p.occurrence = 0 AND p.completed_at >= '{}'",
                measure_from.to_rfc3339()
            ),
        ))
        .await?;
    let latencies: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.try_get::<f64>("", "ms").ok())
        .collect();
    Ok(Recurring {
        completions: ok,
        errors: total - ok,
        measured: latencies.len(),
        missing: ok.saturating_sub(created as usize),
        latency: Quantiles::of(latencies),
    })
}

async fn scalar_i64(db: &DatabaseConnection, sql: &str) -> Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .context("no row")?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

// ---------------------------------------------------------------------------------------
// Reminders (only when reminder-cron and notifications exist)

enum ReminderOutcome {
    NotMeasured(String),
    Measured {
        tasks: usize,
        logged: usize,
        latency: Quantiles,
    },
}

/// Tasks due in an hour (inside the 24 h reminder window), for six users.
async fn create_reminder_tasks(ctx: &Ctx<'_>) -> Result<(Vec<String>, Instant)> {
    let due = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let mut ids = Vec::new();
    for i in 0..REMINDER_TASKS {
        let user = format!("rem-{}", i % 6);
        let v: Value = ctx
            .client
            .post(format!("{}/api/{user}/tasks", ctx.api_base))
            .bearer_auth(ctx.env.token(&user)?)
            .json(&json!({"title": format!("due soon {i}"), "due_at": due}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ids.push(
            v["id"]
                .as_str()
                .context("created task without id")?
                .to_owned(),
        );
    }
    Ok((ids, Instant::now()))
}

async fn reminder_scenario(
    ctx: &Ctx<'_>,
    notifications: &Service,
    task_ids: &[String],
    created: Instant,
) -> ReminderOutcome {
    // When notifications logged each task's reminder: its first log line naming the task.
    let mut logged: HashMap<&str, i64> = HashMap::new();
    while logged.len() < task_ids.len() && created.elapsed() < REMINDER_WAIT {
        let log = notifications.process.log_text();
        for line in log.lines() {
            for id in task_ids {
                if !logged.contains_key(id.as_str())
                    && line.contains(e2e::reminders::NOTIFICATION_MESSAGE)
                    && line.contains(id.as_str())
                    && let Some(at) = log_line_time(line)
                {
                    logged.insert(id.as_str(), at.timestamp_millis());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if logged.is_empty() {
        return ReminderOutcome::NotMeasured(format!(
            "notifications logged none of the {} reminders within {REMINDER_WAIT:?} (with a timestamp and the task id); end of its log:\n{}",
            task_ids.len(),
            notifications.process.log_tail(5)
        ));
    }
    let mut published: HashMap<String, i64> = HashMap::new();
    let read = devstack::consume_timed(
        &ctx.bootstrap,
        ctx.paths,
        REMINDERS,
        task_ids.len(),
        Duration::from_secs(10),
        |r| {
            let v: Value = serde_json::from_str(&r.record.value)?;
            if let Some(task) = v["data"]["task_id"].as_str() {
                published.entry(task.to_owned()).or_insert(r.timestamp_ms);
            }
            Ok(())
        },
    )
    .await;
    if let Err(e) = read {
        return ReminderOutcome::NotMeasured(format!("reading the reminders topic failed: {e:#}"));
    }
    let latencies: Vec<f64> = logged
        .iter()
        .filter_map(|(id, at)| published.get(*id).map(|p| (at - p) as f64))
        .collect();
    if latencies.is_empty() {
        return ReminderOutcome::NotMeasured(
            "no logged reminder matched a record on the reminders topic".into(),
        );
    }
    ReminderOutcome::Measured {
        tasks: task_ids.len(),
        logged: logged.len(),
        latency: Quantiles::of(latencies),
    }
}

/// The timestamp of a log line: the `timestamp` field of a JSON line, or the first word of
/// a text line (colour codes removed).
fn log_line_time(line: &str) -> Option<DateTime<Utc>> {
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        return v["timestamp"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
    }
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let first = plain.split_whitespace().next()?;
    DateTime::parse_from_rfc3339(first)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

// ---------------------------------------------------------------------------------------
// Processes: CPU and memory from /proc

#[derive(Debug, Clone)]
struct Proc {
    name: String,
    pid: u32,
    /// Count the whole process tree (PostgreSQL forks a backend per connection).
    tree: bool,
}

impl Proc {
    fn new(name: &str, pid: u32, tree: bool) -> Proc {
        Proc {
            name: name.to_owned(),
            pid,
            tree,
        }
    }
}

#[derive(Debug, Clone)]
struct Usage {
    name: String,
    cpu_percent: f64,
    rss_mb: Option<f64>,
}

/// (ppid, utime + stime in clock ticks) of a process.
fn proc_stat(pid: u32) -> Option<(u32, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // After the command name: field 3 (state) is index 0, so field n is index n - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((f.get(1)?.parse().ok()?, ticks))
}

fn cpu_ticks(procs: &[Proc]) -> Vec<u64> {
    let needs_tree = procs.iter().any(|p| p.tree);
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut ticks: HashMap<u32, u64> = HashMap::new();
    if needs_tree && let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, t)) = proc_stat(pid) {
                children.entry(ppid).or_default().push(pid);
                ticks.insert(pid, t);
            }
        }
    }
    procs
        .iter()
        .map(|p| {
            if !p.tree {
                return proc_stat(p.pid).map_or(0, |(_, t)| t);
            }
            let mut total = 0;
            let mut stack = vec![p.pid];
            while let Some(pid) = stack.pop() {
                total += ticks.get(&pid).copied().unwrap_or(0);
                stack.extend(children.get(&pid).into_iter().flatten().copied());
            }
            total
        })
        .collect()
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU over [start, end] and the highest RSS sampled in it, per process.
fn spawn_sampler(
    procs: Arc<Vec<Proc>>,
    start: Instant,
    end: Instant,
    clk_tck: f64,
) -> JoinHandle<Vec<Usage>> {
    tokio::spawn(async move {
        tokio::time::sleep_until(start.into()).await;
        let t0 = Instant::now();
        let before = cpu_ticks(&procs);
        let mut rss_max = vec![0u64; procs.len()];
        loop {
            for (max, p) in rss_max.iter_mut().zip(procs.iter()) {
                *max = (*max).max(rss_kb(p.pid).unwrap_or(0));
            }
            let now = Instant::now();
            if now >= end {
                break;
            }
            tokio::time::sleep((end - now).min(Duration::from_millis(250))).await;
        }
        let after = cpu_ticks(&procs);
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        procs
            .iter()
            .enumerate()
            .map(|(i, p)| Usage {
                name: p.name.clone(),
                cpu_percent: after[i].saturating_sub(before[i]) as f64 / clk_tck / secs * 100.0,
                rss_mb: (!p.tree).then(|| rss_max[i] as f64 / 1024.0),
            })
            .collect()
    })
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------------------------------
// Machine and versions

struct Machine {
    cpus: usize,
    model: String,
    memory_gib: f64,
    kernel: String,
    load_at_start: String,
}

impl Machine {
    fn read() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kb: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            model,
            memory_gib: mem_kb / 1024.0 / 1024.0,
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            load_at_start: read_loadavg(),
        }
    }
}

fn read_loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

struct Versions {
    dapr: String,
    postgres: String,
    redis: String,
    rustc: String,
    java: String,
    release_profile: String,
}

impl Versions {
    async fn read(paths: &Paths, db: &DatabaseConnection) -> Versions {
        let postgres = match db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SHOW server_version",
            ))
            .await
        {
            Ok(Some(row)) => row
                .try_get_by_index::<String>(0)
                .unwrap_or_else(|_| "unknown".into()),
            _ => "unknown".into(),
        };
        let redis = first_line(Command::new("redis-server").arg("--version"));
        let redis = redis
            .split_whitespace()
            .find_map(|w| w.strip_prefix("v="))
            .map_or(redis.clone(), str::to_owned);
        let cargo_toml = fs::read_to_string(paths.root.join("Cargo.toml")).unwrap_or_default();
        Versions {
            dapr: devstack::dapr_install::locate(paths).map_or_else(
                |err| format!("unknown ({err:#})"),
                |runtime| runtime.short(),
            ),
            postgres,
            redis,
            rustc: first_line(
                Command::new("rustc")
                    .arg("--version")
                    .current_dir(&paths.root),
            ),
            java: first_line(Command::new("java").arg("-version")),
            release_profile: if cargo_toml.contains("[profile.release") {
                "`--release` with the workspace's `[profile.release]`".into()
            } else {
                "`--release` (Cargo's defaults: opt-level 3, no LTO, 16 codegen units)".into()
            },
        }
    }
}

/// The first line a command prints (stdout, else stderr), or "unknown".
fn first_line(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .and_then(|o| {
            let out = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&out)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

// ---------------------------------------------------------------------------------------
// Figures and the report

#[derive(Debug, Clone, Copy, Default)]
struct Quantiles {
    n: usize,
    p50: f64,
    p95: f64,
    p99: f64,
}

impl Quantiles {
    /// Nearest-rank percentiles of `values` (milliseconds).
    fn of(mut values: Vec<f64>) -> Quantiles {
        if values.is_empty() {
            return Quantiles::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |p: f64| {
            values[((p / 100.0 * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1]
        };
        Quantiles {
            n: values.len(),
            p50: at(50.0),
            p95: at(95.0),
            p99: at(99.0),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Report {
    machine: Machine,
    versions: Versions,
    api_settings: Vec<(String, String)>,
    top: usize,
    recurring: Recurring,
    reminders: ReminderOutcome,
    raw_single: RawResult,
    raw_bulk: RawResult,
    raw_payload_bytes: usize,
    relay_concurrency: usize,
    drain: Drain,
    outage: outage::Outage,
    faults: relay_faults::RelayFaults,
    phases: Vec<Phase>,
    kafka_unmatched: usize,
    kafka_key_mismatches: usize,
    left_running: Vec<u32>,
    load_at_end: String,
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

impl Report {
    fn render(&self, opts: &Options, elapsed: Duration) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let v = &self.versions;
        let _ = writeln!(
            s,
            "## {} — `cargo xtask bench`\n",
            Utc::now().format("%Y-%m-%d %H:%M UTC")
        );
        let _ = writeln!(
            s,
            "- Machine: {} × {}, {:.1} GiB RAM, Linux {}; load average at start {}, at end {}.",
            m.cpus, m.model, m.memory_gib, m.kernel, m.load_at_start, self.load_at_end
        );
        let _ = writeln!(
            s,
            "- Versions: daprd {}, Kafka {} (KRaft, one node, heap 768 MB), PostgreSQL {}, Redis {}, {}, {}.",
            v.dapr,
            devstack::KAFKA_VERSION,
            v.postgres,
            v.redis,
            v.rustc,
            v.java
        );
        let _ = writeln!(
            s,
            "- Build: the services and the load client (`xtask`) built with {}; the build took {:.0} s.",
            v.release_profile,
            opts.build.as_secs_f64()
        );
        let settings: Vec<String> = self
            .api_settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            s,
            "- Settings: chat-api {}; recurring-tasks defaults; reminder cron `{REMINDER_SCHEDULE}`; topics with {} partitions, `LogAppendTime`; all processes on this machine, loopback only.",
            settings.join(", "),
            e2e::TOPIC_PARTITIONS
        );
        let _ = writeln!(
            s,
            "- Load: warm-up {} s then {} s measured per phase; concurrency {:?}; {USERS_PER_WORKER} users per worker; raw payload {} bytes (a real `task.created`). The run took {:.0} s, build included.\n",
            opts.warmup.as_secs(),
            opts.duration.as_secs(),
            opts.levels,
            self.raw_payload_bytes,
            elapsed.as_secs_f64()
        );

        self.render_targets(&mut s);

        let _ = writeln!(s, "### API writes and publish lag\n");
        let _ = writeln!(
            s,
            "| phase | conc. | req/s | p50 ms | p95 ms | p99 ms | errors | events on Kafka | event rate /s | lag p50 ms | lag p95 ms | lag p99 ms | relay drained after | recurring-tasks caught up after |"
        );
        let _ = writeln!(
            s,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for p in &self.phases {
            let k = p.kafka.as_ref();
            let events = k.map_or_else(
                || "–".into(),
                |k| {
                    if k.missing == 0 {
                        format!("{} of {} ✓", k.distinct, p.ok_total)
                    } else {
                        format!(
                            "{} of {} (**{} missing**)",
                            k.distinct, p.ok_total, k.missing
                        )
                    }
                },
            );
            let _ = writeln!(
                s,
                "| {}{} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
                p.op.name(),
                if p.ran_out { " (ran out of tasks)" } else { "" },
                p.level,
                p.rps(),
                p.latency.p50,
                p.latency.p95,
                p.latency.p99,
                p.errors,
                events,
                cell(k.map(|k| k.rate), 0),
                cell(k.map(|k| k.lag.p50), 0),
                cell(k.map(|k| k.lag.p95), 0),
                cell(k.map(|k| k.lag.p99), 0),
                p.settle.map_or_else(
                    || "–".into(),
                    |x| format!("{:.1} s", x.drained.as_secs_f64())
                ),
                p.settle.map_or_else(
                    || "–".into(),
                    |x| format!("{:.1} s", x.consumed.as_secs_f64())
                ),
            );
        }
        if self.kafka_unmatched > 0 || self.kafka_key_mismatches > 0 {
            let _ = writeln!(
                s,
                "\nRecords on `task-events` of no known type: {}; records whose key is not the user id: {}.",
                self.kafka_unmatched, self.kafka_key_mismatches
            );
        }

        let _ = writeln!(s, "\n### Raw publishes to the same sidecar (the ceiling)\n");
        let _ = writeln!(
            s,
            "| mode | calls in flight | events per call | events/s | call p50 ms | call p95 ms | call p99 ms | failed calls |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for (name, r) in [
            ("single (`PublishEvent`)", &self.raw_single),
            ("bulk (`BulkPublishEvent`)", &self.raw_bulk),
        ] {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {} of {} |",
                r.concurrency,
                r.entries_per_call,
                r.rate,
                r.latency.p50,
                r.latency.p95,
                r.latency.p99,
                r.errors,
                r.calls
            );
        }

        let d = &self.drain;
        let _ = writeln!(s, "\n### Relay drain: the relay's own publishing rate\n");
        let _ = writeln!(
            s,
            "A backlog of {} events, written through a second chat-api with its relay off while chat-api was stopped ({} of them on Kafka afterwards{}). After chat-api's restart the outbox was empty within {:.1} s (start-up included). Between the first and the last backlog event's append: {:.0} events/s = {:.2} × raw single, {:.2} × raw bulk.",
            d.backlog,
            d.on_kafka,
            if d.on_kafka as u64 >= d.backlog {
                ""
            } else {
                ", **some missing**"
            },
            d.drained_after.as_secs_f64(),
            d.rate,
            if self.raw_single.rate > 0.0 {
                d.rate / self.raw_single.rate
            } else {
                0.0
            },
            if self.raw_bulk.rate > 0.0 {
                d.rate / self.raw_bulk.rate
            } else {
                0.0
            },
        );

        self.outage.render(&mut s);
        self.faults.render(&mut s);

        let r = &self.recurring;
        let _ = writeln!(s, "\n### Recurring: completion → next instance\n");
        let _ = writeln!(
            s,
            "{} completions at {:.0}/s ({} failed); {} measured after a {} s warm-up; {} without a next instance. p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms.",
            r.completions,
            1000.0 / RECURRING_INTERVAL.as_millis() as f64,
            r.errors,
            r.measured,
            RECURRING_WARMUP.as_secs(),
            r.missing,
            r.latency.p50,
            r.latency.p95,
            r.latency.p99
        );

        let _ = writeln!(s, "\n### Reminders: published → notification logged\n");
        match &self.reminders {
            ReminderOutcome::NotMeasured(why) => {
                let _ = writeln!(
                    s,
                    "Not measured: {}",
                    why.lines().next().unwrap_or_default()
                );
            }
            ReminderOutcome::Measured {
                tasks,
                logged,
                latency,
            } => {
                let _ = writeln!(
                    s,
                    "{logged} of {tasks} reminders logged; p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms ({} matched).",
                    latency.p50, latency.p95, latency.p99, latency.n
                );
            }
        }

        let _ = writeln!(
            s,
            "\n### Resources at the top load (concurrency {})\n",
            self.top
        );
        let tops: Vec<&Phase> = self.phases.iter().filter(|p| p.level == self.top).collect();
        let _ = write!(s, "| process |");
        for p in &tops {
            let _ = write!(s, " CPU % ({}) | RSS MB ({}) |", p.op.name(), p.op.name());
        }
        let _ = write!(s, "\n|---|");
        for _ in &tops {
            let _ = write!(s, "---:|---:|");
        }
        let _ = writeln!(s);
        if let Some(first) = tops.first() {
            for (i, u) in first.usage.iter().enumerate() {
                let _ = write!(s, "| {} |", u.name);
                for p in &tops {
                    let u = p.usage.get(i);
                    let _ = write!(
                        s,
                        " {} | {} |",
                        cell(u.map(|u| u.cpu_percent), 0),
                        cell(u.and_then(|u| u.rss_mb), 1)
                    );
                }
                let _ = writeln!(s);
            }
            let _ = write!(s, "| **all of the above** |");
            for p in &tops {
                let _ = write!(
                    s,
                    " {:.0} of {} | |",
                    p.usage.iter().map(|u| u.cpu_percent).sum::<f64>(),
                    m.cpus * 100
                );
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "\nLeft running after the stop: {}.\n",
            if self.left_running.is_empty() {
                "nothing".to_owned()
            } else {
                format!("{:?}", self.left_running)
            }
        );
        s
    }

    fn render_targets(&self, s: &mut String) {
        let _ = writeln!(s, "### Targets\n");
        let _ = writeln!(s, "| target | figure | |");
        let _ = writeln!(s, "|---|---|---|");

        // 1. Writes: a level at which both phases sustain 2,000/s with p95 ≤ 25 ms and every event on Kafka.
        let mut levels: Vec<usize> = self.phases.iter().map(|p| p.level).collect();
        levels.dedup();
        let level_ok = |level: usize| {
            let ps: Vec<&Phase> = self.phases.iter().filter(|p| p.level == level).collect();
            !ps.is_empty()
                && ps.iter().all(|p| {
                    p.rps() >= 2000.0
                        && p.latency.p95 <= 25.0
                        && p.errors == 0
                        && p.kafka.as_ref().is_some_and(|k| k.missing == 0)
                })
        };
        let best = self
            .phases
            .iter()
            .max_by(|a, b| a.rps().total_cmp(&b.rps()));
        let all_delivered = self
            .phases
            .iter()
            .all(|p| p.kafka.as_ref().is_some_and(|k| k.missing == 0));
        let figure = best.map_or_else(String::new, |b| {
            format!(
                "best: {} {:.0} req/s at concurrency {} (p95 {:.1} ms); every event on Kafka: {}",
                b.op.name(),
                b.rps(),
                b.level,
                b.latency.p95,
                if all_delivered { "yes" } else { "**no**" }
            )
        });
        let _ = writeln!(
            s,
            "| ≥ 2,000 task writes/s through chat-api, every event on Kafka, API p95 ≤ 25 ms | {figure} | {} |",
            met(levels.iter().any(|&l| level_ok(l)))
        );

        // 2. API event rate against the raw ceiling.
        let ceiling = self.raw_single.rate.max(self.raw_bulk.rate);
        let ratio = |rate: f64| if ceiling > 0.0 { rate / ceiling } else { 0.0 };
        let api_rate = self
            .phases
            .iter()
            .filter_map(|p| p.kafka.as_ref().map(|k| k.rate))
            .fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "| API event rate ≥ 0.8 × raw sidecar rate | under load {api_rate:.0}/s = {:.2} × the raw ceiling {ceiling:.0}/s (raw single {:.0}/s at {} in flight, bulk {:.0}/s); the relay alone (drain) {:.0}/s = {:.2} × | {} |",
            ratio(api_rate),
            self.raw_single.rate,
            self.relay_concurrency,
            self.raw_bulk.rate,
            self.drain.rate,
            ratio(self.drain.rate),
            met(ratio(api_rate) >= 0.8)
        );

        // 3. Publish lag at every load.
        let worst = self
            .phases
            .iter()
            .filter_map(|p| p.kafka.as_ref().map(|k| (p, k.lag.p95)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let lag_figure: Vec<String> = self
            .phases
            .iter()
            .filter_map(|p| {
                p.kafka
                    .as_ref()
                    .map(|k| format!("{} {}: {:.0}", p.op.name(), p.level, k.lag.p95))
            })
            .collect();
        let _ = writeln!(
            s,
            "| publish lag p95 ≤ 50 ms (every load) | p95 ms — {} | {} |",
            lag_figure.join(", "),
            met(worst.is_some_and(|(_, w)| w <= 50.0))
        );

        // 4. Recurring.
        let r = &self.recurring;
        let _ = writeln!(
            s,
            "| recurring p95 ≤ 1 s | p95 {:.0} ms ({} measured, {} missing) | {} |",
            r.latency.p95,
            r.measured,
            r.missing,
            met(r.measured > 0 && r.missing == 0 && r.latency.p95 <= 1000.0)
        );

        // 5. Reminders.
        match &self.reminders {
            ReminderOutcome::NotMeasured(why) => {
                let _ = writeln!(
                    s,
                    "| reminder p95 ≤ 2 s | not measured: {} | – |",
                    why.lines().next().unwrap_or_default().replace('|', "/")
                );
            }
            ReminderOutcome::Measured {
                tasks,
                logged,
                latency,
            } => {
                let _ = writeln!(
                    s,
                    "| reminder p95 ≤ 2 s | p95 {:.0} ms ({logged} of {tasks} logged) | {} |",
                    latency.p95,
                    met(logged == tasks && latency.p95 <= 2000.0)
                );
            }
        }

        // 6. Kafka outage.
        self.outage.render_target(s);

        // 7. chat-api memory at the top load.
        let rss = self
            .phases
            .iter()
            .filter(|p| p.level == self.top)
            .flat_map(|p| {
                p.usage
                    .iter()
                    .filter(|u| u.name == "chat-api")
                    .filter_map(|u| u.rss_mb)
            })
            .fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "| chat-api RSS ≤ 64 MB at top load | {rss:.1} MB (highest sample at concurrency {}) | {} |\n",
            self.top,
            met(rss > 0.0 && rss <= 64.0)
        );
    }
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
