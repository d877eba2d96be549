//! Reminders users set: how late they reach the log with the shipped cron period, and what
//! one scan costs with 100,000 tasks that have reminders.

use std::time::Instant;

use reminder_cron::{ScanSettings, Scanner, Tick};
use service_kit::{MemoryIdempotencyStore, OutgoingEvent, PublishError, Publisher};
use todo_domain::{Description, Due, Priority, Reminders, Tags, TimeZone, Title, UserId};
use todo_store::{NewTask, TaskStore};

use super::*;

/// Tasks whose reminder (`1h` before) fires 20 s, 22 s, ... after they are created.
pub(super) const LATENESS_TASKS: usize = 30;
const LATENESS_FIRST: i64 = 20;
const LATENESS_STEP: i64 = 2;
/// Tasks with reminders in the scan measurement, and how many are written at a time.
pub(super) const SCAN_TASKS: usize = 100_000;
const SCAN_WRITERS: usize = 8;
const SCAN_TICKS: usize = 20;
/// The shipped cron period (`components/binding-reminder-cron.yaml`).
pub(super) const CRON_PERIOD_S: u64 = 30;

pub(super) enum LatenessOutcome {
    NotMeasured(String),
    Measured {
        tasks: usize,
        logged: usize,
        /// fires_at → notification logged (`late_ms` of the log line), milliseconds.
        late: Quantiles,
    },
}

/// [`LATENESS_TASKS`] tasks due in an hour and a bit, each with reminder `1h`, so they fire
/// over a minute starting 20 s from now. Returns the ids and the last firing time.
pub(super) async fn create_lateness_tasks(ctx: &Ctx<'_>) -> Result<(Vec<String>, DateTime<Utc>)> {
    let now = Utc::now();
    let mut ids = Vec::new();
    let mut last = now;
    for i in 0..LATENESS_TASKS {
        let user = format!("late-{}", i % 6);
        let fires = now + chrono::Duration::seconds(LATENESS_FIRST + LATENESS_STEP * i as i64);
        last = fires;
        let due = fires + chrono::Duration::hours(1);
        let body = json!({"title": format!("reminded {i}"), "due_at": due.to_rfc3339(), "reminders": ["1h"]});
        ids.push(create_task(ctx, &user, &body).await?);
    }
    Ok((ids, last))
}

/// Waits (until a cron period and 30 s after the last reminder's time) for every task's
/// line and reads its `late_ms`.
pub(super) async fn lateness(
    notifications: &Service,
    ids: &[String],
    last_fires: DateTime<Utc>,
) -> LatenessOutcome {
    let deadline = last_fires + chrono::Duration::seconds(CRON_PERIOD_S as i64 + 30);
    let mut late: HashMap<&str, i64> = HashMap::new();
    loop {
        let log = notifications.process.log_text();
        for id in ids {
            if let Some(n) = e2e::reminders::notifications(&log, Some(id)).first()
                && let Some(ms) = n.late_ms
            {
                late.insert(id.as_str(), ms);
            }
        }
        if late.len() == ids.len() || Utc::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if late.is_empty() {
        return LatenessOutcome::NotMeasured(format!(
            "notifications logged none of the {} reminders; end of its log:\n{}",
            ids.len(),
            notifications.process.log_tail(5)
        ));
    }
    LatenessOutcome::Measured {
        tasks: ids.len(),
        logged: late.len(),
        late: Quantiles::of(late.values().map(|&ms| ms as f64).collect()),
    }
}

/// Accepts every publish: the scan's own cost, without the broker's.
struct Discard;

impl Publisher for Discard {
    async fn publish(&self, _event: OutgoingEvent<'_>) -> Result<(), PublishError> {
        Ok(())
    }
}

pub(super) struct ScanCost {
    pub(super) tasks: usize,
    pub(super) write_s: f64,
    /// Time of one tick, milliseconds, over [`SCAN_TICKS`] ticks a cron period apart.
    pub(super) tick: Quantiles,
    pub(super) tick_max_ms: f64,
    /// Reminders the ticks published in all.
    pub(super) published: u64,
}

/// [`SCAN_TASKS`] tasks in a database of their own, written through the store as chat-api
/// writes them (1,000 users; due every few seconds over the next 30 days; reminders `1h` and
/// `1d`), then [`SCAN_TICKS`] ticks of a scanner (state in memory, publishes discarded) at
/// now, now + 30 s, ..., after one at a time nothing is due (it opens the pool's
/// connections). The first measured tick sends every reminder of the last hour's grace.
pub(super) async fn scan_cost(database_url: &str) -> Result<ScanCost> {
    let db = todo_store::connect(database_url, SCAN_WRITERS as u32).await?;
    todo_store::migrate(&db).await?;
    let store = TaskStore::new(db);
    let now = Utc::now();
    let spread = 30 * 24 * 3600 / SCAN_TASKS as i64;
    let reminders = Reminders::parse(&["1h", "1d"]).map_err(|e| anyhow::anyhow!(e.message))?;
    let started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..SCAN_WRITERS {
        let store = store.clone();
        let reminders = reminders.clone();
        writers.spawn(async move {
            for i in (w..SCAN_TASKS).step_by(SCAN_WRITERS) {
                let user = UserId::parse(&format!("scan-{}", i % 1000))
                    .map_err(|e| anyhow::anyhow!(e.message))?;
                let at =
                    now + chrono::Duration::hours(2) + chrono::Duration::seconds(spread * i as i64);
                let new = NewTask {
                    title: Title::parse(&format!("task {i}"))
                        .map_err(|e| anyhow::anyhow!(e.message))?,
                    description: Description::default(),
                    priority: Priority::Medium,
                    tags: Tags::default(),
                    due: Some(Due::at(at, at.naive_utc())),
                    time_zone: TimeZone::UTC,
                    recurrence: None,
                    reminders: reminders.clone(),
                };
                store.create(&user, new, now).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    let write_s = started.elapsed().as_secs_f64();
    let read = todo_store::connect_read_only(database_url, 2).await?;
    let scanner = Scanner::new(
        TaskStore::new(read),
        Arc::new(Discard),
        Arc::new(MemoryIdempotencyStore::new()),
        ScanSettings::default(),
    );
    scanner.tick(now - chrono::Duration::days(400)).await;
    let mut times = Vec::new();
    let mut published = 0;
    for k in 0..SCAN_TICKS {
        let at = now + chrono::Duration::seconds(CRON_PERIOD_S as i64 * k as i64);
        let t = Instant::now();
        let tick = scanner.tick(at).await;
        let elapsed = ms(t.elapsed());
        if let Tick::Ran(report) = tick {
            if let Some(why) = report.stopped_early {
                bail!("a scan stopped early: {why}");
            }
            published += report.published;
        }
        times.push(elapsed);
    }
    let tick_max_ms = times.iter().copied().fold(0.0, f64::max);
    Ok(ScanCost {
        tasks: SCAN_TASKS,
        write_s,
        tick: Quantiles::of(times),
        tick_max_ms,
        published,
    })
}

impl LatenessOutcome {
    /// The section of the report.
    pub(super) fn render(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\n### Reminders users set: their time → notification logged (cron every {CRON_PERIOD_S} s, as shipped)\n"
        );
        match self {
            Self::NotMeasured(why) => {
                let _ = writeln!(
                    s,
                    "Not measured: {}",
                    why.lines().next().unwrap_or_default()
                );
            }
            Self::Measured {
                tasks,
                logged,
                late,
            } => {
                let _ = writeln!(
                    s,
                    "{logged} of {tasks} reminders logged; lateness p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms.",
                    late.p50, late.p95, late.p99
                );
            }
        }
    }

    pub(super) fn render_target(&self, s: &mut String) {
        let goal = CRON_PERIOD_S as f64 * 1000.0 + 1000.0;
        match self {
            Self::NotMeasured(why) => {
                let _ = writeln!(
                    s,
                    "| set reminder lateness p95 ≤ cron period + 1 s | not measured: {} | – |",
                    why.lines().next().unwrap_or_default().replace('|', "/")
                );
            }
            Self::Measured {
                tasks,
                logged,
                late,
            } => {
                let _ = writeln!(
                    s,
                    "| set reminder lateness p95 ≤ cron period + 1 s ({goal:.0} ms) | p95 {:.0} ms ({logged} of {tasks} logged) | {} |",
                    late.p95,
                    met(logged == tasks && late.p95 <= goal)
                );
            }
        }
    }
}

/// The scan measurement's section and target rows.
pub(super) fn render_scan(scan: &Result<ScanCost, String>, s: &mut String) {
    let _ = writeln!(
        s,
        "\n### Reminder scan with {SCAN_TASKS} tasks that have reminders\n"
    );
    match scan {
        Err(why) => {
            let _ = writeln!(
                s,
                "Not measured: {}",
                why.lines().next().unwrap_or_default()
            );
        }
        Ok(c) => {
            let _ = writeln!(
                s,
                "{} tasks (reminders `1h` and `1d`, due over the next 30 days) written in {:.1} s; {} ticks a cron period apart: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms per tick, {} reminders published in all.",
                c.tasks, c.write_s, c.tick.n, c.tick.p50, c.tick.p95, c.tick_max_ms, c.published
            );
        }
    }
}

pub(super) fn render_scan_target(scan: &Result<ScanCost, String>, s: &mut String) {
    match scan {
        Err(why) => {
            let _ = writeln!(
                s,
                "| reminder scan tick ≤ 200 ms with {SCAN_TASKS} tasks with reminders | not measured: {} | – |",
                why.lines().next().unwrap_or_default().replace('|', "/")
            );
        }
        Ok(c) => {
            let _ = writeln!(
                s,
                "| reminder scan tick ≤ 200 ms with {SCAN_TASKS} tasks with reminders | max {:.1} ms (p95 {:.1} ms) | {} |",
                c.tick_max_ms,
                c.tick.p95,
                met(c.tick.n > 0 && c.tick_max_ms <= 200.0)
            );
        }
    }
}
