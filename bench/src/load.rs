//! API writes: closed-loop workers (and paced schedules) against chat-api.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Op {
    Create,
    Complete,
}

impl Op {
    pub(super) fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Complete => "complete",
        }
    }

    pub(super) fn event_type(self) -> &'static str {
        match self {
            Op::Create => "task.created",
            Op::Complete => "task.completed",
        }
    }
}

pub(super) struct BenchUser {
    pub(super) token: String,
    pub(super) tasks_url: String,
}

pub(super) struct Worker {
    pub(super) users: Vec<BenchUser>,
    pub(super) next: usize,
    /// Tasks the create phase made, (user index, task id), completed in that order.
    pub(super) created: VecDeque<(usize, String)>,
}

pub(super) struct Sample {
    /// Since the phase started.
    pub(super) start: Duration,
    pub(super) latency: Duration,
    pub(super) ok: bool,
}

/// The load's users for one concurrency level: `b<level>-w<worker>-u<n>`.
pub(super) fn level_user_prefix(level: usize) -> String {
    format!("b{level}-")
}

pub(super) fn make_workers(
    ctx: &Ctx<'_>,
    prefix: &str,
    count: usize,
    base: &str,
) -> Result<Vec<Worker>> {
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
pub(super) struct Schedule {
    pub(super) t0: Instant,
    pub(super) end: Instant,
    /// Zero: closed loop, the next request as soon as the last one answered. Otherwise open
    /// loop: request n is due at `t0 + offset + n × interval` (sent late, never skipped, if
    /// the last one answered after that), and its latency counts from when it was due.
    pub(super) interval: Duration,
    pub(super) offset: Duration,
    /// Ends the run before `end` once set.
    pub(super) stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Schedule {
    pub(super) fn closed(t0: Instant, end: Instant) -> Schedule {
        Schedule {
            t0,
            end,
            interval: Duration::ZERO,
            offset: Duration::ZERO,
            stop: None,
        }
    }

    pub(super) fn stopped(&self) -> bool {
        Instant::now() >= self.end
            || self
                .stop
                .as_ref()
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
    }
}

pub(super) async fn run_worker(
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

pub(super) struct Phase {
    pub(super) op: Op,
    pub(super) level: usize,
    /// The measured window (shorter than asked only when the complete phase ran out of tasks).
    pub(super) window: Duration,
    pub(super) wall_start: DateTime<Utc>,
    pub(super) wall_end: DateTime<Utc>,
    pub(super) requests: usize,
    pub(super) errors: usize,
    /// Successful writes in the whole phase, warm-up included: each must have its event.
    pub(super) ok_total: usize,
    pub(super) latency: Quantiles,
    pub(super) ran_out: bool,
    pub(super) usage: Vec<Usage>,
    pub(super) settle: Option<Settle>,
    pub(super) kafka: Option<KafkaPhase>,
}

impl Phase {
    pub(super) fn rps(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64().max(1e-9)
    }
}

pub(super) async fn run_phase(
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
