//! Steady write load for fault tests: one sequential writer per user (so each user's commit
//! order is known), bounded in time by the caller, loopback only.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::{Env, SeenTaskEvent, decode_task_events};

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub user: String,
    /// Index of the request within its user's sequence.
    pub seq: usize,
    /// `None`: no HTTP answer (connection refused while a process was down).
    pub status: Option<u16>,
    pub task_id: Option<String>,
    pub latency: Duration,
    pub started: Instant,
    pub base: String,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
}

impl Load {
    /// Starts one writer per user creating tasks every `interval`, spreading each user's
    /// requests over `bases` in turn.
    pub fn start(env: &Env, bases: &[String], users: &[&str], interval: Duration) -> Result<Load> {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()?;
        let mut handles = Vec::new();
        for user in users {
            let token = env.token(user)?;
            let (user, bases, stop, outcomes, client) = (
                (*user).to_owned(),
                bases.to_vec(),
                stop.clone(),
                outcomes.clone(),
                client.clone(),
            );
            handles.push(tokio::spawn(async move {
                let mut seq = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let base = bases[seq % bases.len()].clone();
                    let started = Instant::now();
                    let res = client
                        .post(format!("{base}/api/{user}/tasks"))
                        .bearer_auth(&token)
                        .json(&json!({"title": format!("{user} #{seq}")}))
                        .send()
                        .await;
                    let (status, task_id) = match res {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body: Value = r.json().await.unwrap_or(Value::Null);
                            (Some(status), body["id"].as_str().map(str::to_owned))
                        }
                        Err(_) => (None, None),
                    };
                    let latency = started.elapsed();
                    if let Ok(mut all) = outcomes.lock() {
                        all.push(Outcome {
                            user: user.clone(),
                            seq,
                            status,
                            task_id,
                            latency,
                            started,
                            base,
                        });
                    }
                    seq += 1;
                    tokio::time::sleep(interval.saturating_sub(latency)).await;
                }
            }));
        }
        Ok(Load {
            stop,
            handles,
            outcomes,
        })
    }

    /// Stops the writers and returns every outcome.
    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            let _ = h.await;
        }
        self.outcomes.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

/// Latency percentile (0–100) of answered requests ([`crate::percentile`]); zero when none
/// was answered.
pub fn latency_percentile(outcomes: &[Outcome], p: f64) -> Duration {
    let answered: Vec<Duration> = outcomes
        .iter()
        .filter(|o| o.status.is_some())
        .map(|o| o.latency)
        .collect();
    crate::percentile(&answered, p).unwrap_or(Duration::ZERO)
}

/// Asserts that every created task (201 with an id) has its `task.created` event on
/// `task-events`, that nothing else is there except redeliveries of the same event id (and
/// at most `unknown_allowed` creations whose answer the client never got), and that each
/// user's events are in the order the user's writer created them.
pub async fn verify_all_delivered(
    env: &Env,
    outcomes: &[Outcome],
    unknown_allowed: usize,
    timeout: Duration,
) -> Result<Vec<SeenTaskEvent>> {
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in outcomes {
        if let (Some(201), Some(id)) = (o.status, &o.task_id) {
            expected.entry(o.user.clone()).or_default().push(id.clone());
        }
    }
    for ids in expected.values_mut() {
        // Writers are sequential per user: request order is commit order.
        let order: BTreeMap<&String, usize> = outcomes
            .iter()
            .filter_map(|o| o.task_id.as_ref().map(|id| (id, o.seq)))
            .collect();
        ids.sort_by_key(|id| order.get(id).copied().unwrap_or(usize::MAX));
    }
    let want: BTreeSet<&String> = expected.values().flatten().collect();
    let deadline = Instant::now() + timeout;
    // Read exactly what the topic holds once it has at least ours and stopped growing (the
    // events of other writers, up to `unknown_allowed`, are among them): asking for more
    // would wait out the whole timeout, asking for fewer would read the topic again.
    let seen = loop {
        let holds = env
            .settled_end_offset(topics_task_events(), want.len(), deadline)
            .await?;
        let records = env
            .records(
                topics_task_events(),
                holds.max(1),
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_secs(5)),
            )
            .await?;
        let seen = decode_task_events(&records)?;
        let got: BTreeSet<String> = seen.iter().map(|e| e.event.task.id.to_string()).collect();
        let missing = want.iter().filter(|id| !got.contains(**id)).count();
        if missing == 0 || Instant::now() >= deadline {
            break seen;
        }
    };

    let mut by_task: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &seen {
        ensure!(
            e.event.event_type.as_str() == "task.created",
            "unexpected event type {:?}",
            e.event.event_type
        );
        ensure!(
            e.key.as_deref() == Some(e.event.user_id.as_str()),
            "record key {:?} is not the user id {}",
            e.key,
            e.event.user_id
        );
        by_task
            .entry(e.event.task.id.to_string())
            .or_default()
            .insert(e.event.event_id.to_string());
    }
    for (task, ids) in &by_task {
        ensure!(
            ids.len() == 1,
            "task {task} has {} different events: duplicates must be redeliveries of one event id",
            ids.len()
        );
    }
    let missing: Vec<&&String> = want
        .iter()
        .filter(|id| !by_task.contains_key(**id))
        .collect();
    ensure!(
        missing.is_empty(),
        "{} of {} committed changes have no event on task-events, e.g. {:?}",
        missing.len(),
        want.len(),
        missing.iter().take(3).collect::<Vec<_>>()
    );
    let unknown = by_task.keys().filter(|id| !want.contains(id)).count();
    ensure!(
        unknown <= unknown_allowed,
        "{unknown} events on task-events for tasks the API never reported created (allowed {unknown_allowed})"
    );

    for (user, ids) in &expected {
        let mut mine: Vec<&SeenTaskEvent> =
            seen.iter().filter(|e| &e.event.user_id == user).collect();
        mine.sort_by_key(|e| (e.partition, e.offset));
        let partitions: BTreeSet<i32> = mine.iter().map(|e| e.partition).collect();
        ensure!(
            partitions.len() == 1,
            "{user}: events on several partitions {partitions:?}"
        );
        let mut order = Vec::new();
        for e in mine {
            let id = e.event.task.id.to_string();
            if !order.contains(&id) && want.contains(&id) {
                order.push(id);
            }
        }
        ensure!(&order == ids, "{user}: events are not in commit order");
    }
    Ok(seen)
}

fn topics_task_events() -> &'static str {
    todo_domain::topics::TASK_EVENTS
}
