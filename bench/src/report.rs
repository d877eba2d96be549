//! Figures and the report appended to BENCHMARKS.md.

use super::*;

pub(super) const HEADER: &str = "# Benchmarks

Appended by `cargo xtask bench` (see the README): one dated section per run, every figure
produced by the command on the machine it names. Definitions:

- **API writes**: a closed-loop load client in the bench (reqwest, HTTP/1.1 keep-alive,
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
  deletion's events are published, until none of that user's events is pending, and just
  before; runs before 2026-12-07 16:45 UTC waited instead for a poll that found the whole
  outbox empty, which the writers' latest commits made rare: the time they give for the
  deletion's events is too long, up to twice or more, and so is their window of the lag
  while they were published), abort storm (300 paced creates/s for
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
  every 30 s, as shipped.
- **Reminders users set**: 30 tasks with reminder `1h`, due so that the reminders fire
  every 2 s from 20 s after they are created; lateness = the line's `late_ms`
  (notifications' clock when it logs minus the reminder's `fires_at`), with the cron
  binding at the shipped 30 s: a reminder waits for the next tick, so the period bounds it.
- **Reminder scan**: 100,000 tasks written through `TaskStore::create` (8 writers) into a
  PostgreSQL database of their own, each with reminders `1h` and `1d`, due every 26 s over
  the next 30 days; then one tick at a time nothing is due (opening the pool), and 20
  ticks of a `reminder-cron` `Scanner` 30 s of scan time apart (read-only pool of 2,
  claims in memory, publishes discarded: the database's and the scan's own cost); the time
  of each `tick` call. The first of them sends the `1d` reminders of the hour of grace.
- **Chat**: a second chat-api replica (relay off) whose daprd runs `conversation.openai`
  pointed at a scripted OpenAI-compatible server on loopback that answers at once. One
  client sends, one at a time, a REST create (the baseline), a chat turn answered with text
  (one model call) and a chat turn with one `add_task` call (two model calls); latency from
  send to last body byte. Memory: chat-api's `VmRSS` before and after 1,000 new
  conversations (8 at a time).
- **Span export**: two more chat-api replicas (relay off) on the same database, one without
  an OTLP endpoint (as shipped: no exporter), one exporting to a real OpenTelemetry
  Collector (file exporter) with its daprd sampling every call; 16 closed-loop clients
  creating tasks, the two taking turns off, on, off, on, with the load levels' warm-up and
  duration.
- **Resources**: per process, CPU = (utime + stime) delta from `/proc/PID/stat` over the
  measured window (100 % = one core; PostgreSQL includes its backends), RSS = the highest
  `VmRSS` of `/proc/PID/status` sampled every 250 ms in the window.

Other work on the machine skews every figure: each run records the load average it started
with.
";

pub(super) struct Report {
    pub(super) machine: Machine,
    pub(super) versions: Versions,
    pub(super) api_settings: Vec<(String, String)>,
    pub(super) top: usize,
    pub(super) recurring: Recurring,
    pub(super) reminders: ReminderOutcome,
    pub(super) lateness: LatenessOutcome,
    pub(super) scan: Result<ScanCost, String>,
    pub(super) chat: super::chat::ChatBench,
    pub(super) tracing: super::tracing::TracingBench,
    pub(super) relay_cost: super::relay_cost::RelayCost,
    pub(super) raw_single: RawResult,
    pub(super) raw_bulk: RawResult,
    pub(super) raw_payload_bytes: usize,
    pub(super) relay_concurrency: usize,
    pub(super) drain: Drain,
    pub(super) outage: outage::Outage,
    pub(super) faults: relay_faults::RelayFaults,
    pub(super) phases: Vec<Phase>,
    pub(super) kafka_unmatched: usize,
    pub(super) kafka_key_mismatches: usize,
    pub(super) kafka_raw: usize,
    pub(super) left_running: Vec<u32>,
    pub(super) load_at_end: String,
}

pub(super) fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

impl Report {
    pub(super) fn render(&self, opts: &Options, elapsed: Duration) -> String {
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
        let _ = writeln!(
            s,
            "\nRecords on `task-events` of no known type: {}; records whose key is not the user id: {} (not counting the {} raw publishes of the one-user baseline, keyed by that user).",
            self.kafka_unmatched, self.kafka_key_mismatches, self.kafka_raw
        );

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

        self.lateness.render(&mut s);
        render_scan(&self.scan, &mut s);

        let _ = writeln!(s);
        self.chat.render(&mut s);
        self.tracing.render(&mut s);
        self.relay_cost.render(&mut s);
        let _ = writeln!(s);

        let _ = writeln!(
            s,
            "### Resources at the top load (concurrency {})\n",
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

    pub(super) fn render_targets(&self, s: &mut String) {
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

        self.lateness.render_target(s);
        render_scan_target(&self.scan, s);

        // 6. Kafka outage.
        self.outage.render_target(s);

        // 7. Span export.
        let ((off, _), (on, _)) = self.tracing.means();
        let _ = writeln!(
            s,
            "| span export costs < 5 % of throughput | on {:.3} × off ({on:.0} against {off:.0} requests/s, {} clients) | {} |",
            on / off.max(1e-9),
            super::tracing::CLIENTS,
            met(off > 0.0 && on >= 0.95 * off)
        );

        // 8. One user's drain, and publishing's cost.
        self.relay_cost.render_targets(s);

        // 9. chat-api memory at the top load.
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
