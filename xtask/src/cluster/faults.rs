//! `cargo xtask cluster test`'s faults and scaling, each with real clients through chat-api's
//! Service and the events read back from Kafka in its pod: pods deleted under a steady
//! writer, a rollout under load, the broker gone and back, a completion backlog that makes
//! KEDA scale a worker out and in, and two chat-api replicas that keep each user's order.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use reqwest::Method;
use serde_json::{Value, json};

use super::checks::{kubectl_out, user_api, wait_until_gone_terminating};
use crate::minikube::{Api, Kube, run};

/// Every record of `topic`, read by Kafka's console consumer in a pod of its own (on the
/// broker's image; the broker's advertised address resolves only inside the cluster, and a
/// second JVM in the broker's container would share its memory limit), as JSON values with
/// their partition and offset.
pub fn topic_events(kube: &Kube, topic: &str) -> Result<Vec<(i32, i64, Value)>> {
    let image = kubectl_out(
        kube,
        &[
            "get",
            "statefulset",
            "kafka",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    )?;
    let pod = format!(
        "read-{topic}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let mut args: Vec<String> = [
        "run",
        pod.as_str(),
        "--image",
        image.trim(),
        "--image-pull-policy",
        "IfNotPresent",
        "--restart=Never",
        "--rm",
        "-i",
        "--quiet",
        "--command",
        "--",
        "java",
        "-Xmx256m",
        "-cp",
        "/opt/kafka/libs/*",
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        "--bootstrap-server",
        "kafka.todo.svc.cluster.local:9092",
        "--topic",
        topic,
        "--from-beginning",
        "--timeout-ms",
        "8000",
        "--consumer-property",
        "enable.auto.commit=false",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for property in devstack::console_output_properties(false) {
        args.push("--property".into());
        args.push(property);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The consumer ends on its timeout with a non-zero status: read its output anyway.
    let out = kube.ns(&args).output().context("running kubectl run")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.starts_with("Partition:"))
        .map(|line| {
            let record = devstack::parse_record(line)?;
            let value: Value = serde_json::from_str(&record.value)
                .with_context(|| format!("a record of {topic} is not JSON: {}", record.value))?;
            Ok((record.partition, record.offset, value))
        })
        .collect()
}

/// The task events of `user` on `task-events` (the CloudEvents' `data`), in partition order.
fn events_of(kube: &Kube, users: &[&str]) -> Result<Vec<Value>> {
    let mut events: Vec<(i32, i64, Value)> = topic_events(kube, "task-events")?
        .into_iter()
        .filter(|(_, _, ce)| {
            ce["data"]["user_id"]
                .as_str()
                .is_some_and(|u| users.contains(&u))
        })
        .collect();
    events.sort_by_key(|(p, o, _)| (*p, *o));
    Ok(events
        .into_iter()
        .map(|(_, _, ce)| ce["data"].clone())
        .collect())
}

/// A client writing one task after another as its own user until stopped, recording each
/// answer: the ids of the tasks it was told were created, and the failures.
struct Writer {
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<Written>>,
    thread: JoinHandle<()>,
    user: String,
    token: Option<String>,
}

#[derive(Default, Clone)]
struct Written {
    created: Vec<String>,
    failures: Vec<String>,
}

impl Writer {
    fn start(kube: &Kube, prefix: &str) -> Result<Writer> {
        let (user, api) = user_api(kube, prefix)?;
        let token = api.token.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new(Mutex::new(Written::default()));
        let (stop2, record2, user2) = (stop.clone(), record.clone(), user.clone());
        let thread = std::thread::spawn(move || {
            let mut i = 0;
            while !stop2.load(Ordering::SeqCst) {
                i += 1;
                let body = json!({"title": format!("steady write {i}")});
                let outcome = api.call(Method::POST, &format!("/api/{user2}/tasks"), Some(&body));
                let mut r = locked(&record2);
                match outcome {
                    Ok((201, task)) => {
                        r.created
                            .push(task["id"].as_str().unwrap_or_default().to_owned());
                    }
                    Ok((status, body)) => r.failures.push(format!("write {i}: {status} {body}")),
                    Err(e) => r.failures.push(format!("write {i}: {e:#}")),
                }
                drop(r);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Ok(Writer {
            stop,
            record,
            thread,
            user,
            token,
        })
    }

    fn written(&self) -> Written {
        locked(&self.record).clone()
    }

    /// Waits until `more` further writes were acknowledged (or `within` passed).
    fn wait_for_more(&self, more: usize, within: Duration) -> Result<()> {
        let target = self.written().created.len() + more;
        let deadline = Instant::now() + within;
        while self.written().created.len() < target {
            ensure!(
                Instant::now() < deadline,
                "the writer got fewer than {more} writes acknowledged within {within:?}; {}",
                summary(&self.written().failures)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    fn stop(self) -> (String, Written) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
        let written = locked(&self.record).clone();
        (self.user, written)
    }
}

/// Whether an event may reach the topic twice: publishing is at least once, and a broker
/// that goes away after appending a record but before answering gets it again (the
/// consumers drop repeats by event id).
#[derive(Clone, Copy, PartialEq)]
enum Repeats {
    Fail,
    Report,
}

/// The writer's record, also after a panic in its thread (the data stays usable).
fn locked(record: &Mutex<Written>) -> std::sync::MutexGuard<'_, Written> {
    record
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits until every acknowledged write of `user` has its `task.created` event on
/// `task-events`, then checks that no event id appears twice (or reports how many did).
fn every_write_reaches_kafka(
    kube: &Kube,
    user: &str,
    written: &Written,
    repeats: Repeats,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let events = events_of(kube, &[user])?;
        let created: HashSet<&str> = events
            .iter()
            .filter(|e| e["event_type"] == "task.created")
            .filter_map(|e| e["task"]["id"].as_str())
            .collect();
        let missing: Vec<&String> = written
            .created
            .iter()
            .filter(|id| !created.contains(id.as_str()))
            .collect();
        if missing.is_empty() {
            let mut seen = HashSet::new();
            let doubled: Vec<&str> = events
                .iter()
                .filter_map(|e| e["event_id"].as_str())
                .filter(|id| !seen.insert(*id))
                .collect();
            ensure!(
                doubled.is_empty() || repeats == Repeats::Report,
                "event ids published twice for {user}: {doubled:?}"
            );
            println!(
                "    {} acknowledged writes, {} events on task-events, {} published twice",
                written.created.len(),
                events.len(),
                doubled.len()
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {} acknowledged writes of {user} have no task.created event on task-events \
                 after 180 s: {:?}",
                missing.len(),
                written.created.len(),
                missing.iter().take(10).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

fn delete_pods(kube: &Kube, selector: &str) -> Result<()> {
    run(&mut kube.ns(&["delete", "pod", "-l", selector, "--wait=false"]))
}

fn rollout_status(kube: &Kube, what: &str) -> Result<()> {
    run(&mut kube.ns(&["rollout", "status", what, "--timeout=300s"]))
}

/// The chat-api pod deleted under a steady writer: every acknowledged write's event reaches
/// Kafka, none doubled.
pub fn delete_chat_api_pod(kube: &Kube) -> Result<()> {
    let writer = Writer::start(kube, "del-api")?;
    writer.wait_for_more(20, Duration::from_secs(60))?;
    delete_pods(kube, "app.kubernetes.io/name=chat-api")?;
    std::thread::sleep(Duration::from_secs(3));
    rollout_status(kube, "deployment/chat-api")?;
    wait_until_gone_terminating(kube, "app.kubernetes.io/name=chat-api")?;
    if let Err(e) = writer.wait_for_more(20, Duration::from_secs(120)) {
        let failures = writer.written().failures;
        bail!(
            "{}\n{}",
            failed_writes(&e, &failures),
            service_path(kube, &writer.user, writer.token.as_deref())
        );
    }
    let (user, written) = writer.stop();
    println!(
        "    {} requests failed while the pod was replaced",
        written.failures.len()
    );
    every_write_reaches_kafka(kube, &user, &written, Repeats::Fail)
}

/// `failures` in short: how many, the first and the last few.
fn summary(failures: &[String]) -> String {
    let n = failures.len();
    let shown: Vec<&String> = if n <= 10 {
        failures.iter().collect()
    } else {
        failures[..5].iter().chain(&failures[n - 5..]).collect()
    };
    format!("{n} failures, the first and last: {shown:?}")
}

fn failed_writes(e: &anyhow::Error, failures: &[String]) -> String {
    let empty_404 = failures
        .iter()
        .filter(|f| f.ends_with(": 404 null"))
        .count();
    format!("{e:#} ({empty_404} of them 404 with an empty body, which chat-api never sends)")
}

/// One field (`status.podIP`, `metadata.name`) of every chat-api pod, space-separated.
fn chat_api_pods(kube: &Kube, field: &str) -> Result<String> {
    let jsonpath = format!("jsonpath={{.items[*].{field}}}");
    kubectl_out(
        kube,
        &[
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=chat-api",
            "-o",
            &jsonpath,
        ],
    )
}

/// What the way from this machine to chat-api's Service looks like now: its endpoints,
/// kube-proxy's rules for it, and the Service and each pod asked directly with a new
/// connection (for a failure in which writes through the Service were refused).
fn service_path(kube: &Kube, user: &str, token: Option<&str>) -> String {
    let endpoints = kubectl_out(
        kube,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=chat-api",
            "-o",
            "wide",
        ],
    )
    .unwrap_or_else(|e| format!("{e:#}"));
    let rules = std::process::Command::new("iptables-save")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains("todo/chat-api"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_else(|e| e.to_string());
    let service = super::checks::service_base(kube).unwrap_or_default();
    let mut asked = Vec::new();
    if let Ok(mut api) = Api::new() {
        let mut bases = vec![service.clone()];
        let pods = chat_api_pods(kube, "status.podIP").unwrap_or_default();
        bases.extend(
            pods.split_whitespace()
                .map(|ip| format!("http://{ip}:3000")),
        );
        let write = json!({"title": "a write on a new connection"});
        for base in bases {
            api.base = base.clone();
            api.token = None;
            let answer = api.call(Method::GET, "/readyz", None);
            asked.push(format!("{base}/readyz: {answer:?}"));
            // The writer's own request, on a new connection.
            api.token = token.map(str::to_owned);
            let path = format!("/api/{user}/tasks");
            let answer = api.call(Method::POST, &path, Some(&write));
            asked.push(format!("POST {base}{path}: {answer:?}"));
        }
    }
    // Where this machine's connections to the Service were sent: the reply's source in each
    // conntrack entry is the pod (address and port) the connection really reached.
    let service_ip = service
        .trim_start_matches("http://")
        .trim_end_matches(":3000")
        .to_owned();
    let tracked = std::fs::read_to_string("/proc/net/nf_conntrack")
        .map(|t| {
            t.lines()
                .filter(|l| l.contains(&format!("dst={service_ip} ")) && l.contains("dport=3000 "))
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_else(|e| e.to_string());
    let every_pod = kube
        .ns(&["get", "pods", "-A", "-o", "wide"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| e.to_string());
    format!(
        "the way to chat-api now:\n{endpoints}\nkube-proxy's rules:\n{rules}\n{}\n\
         connections to the Service ({service_ip}:3000) as conntrack has them:\n{tracked}\n\
         every pod:\n{every_pod}",
        asked.join("\n")
    )
}

/// The Kafka pod deleted under a steady writer: the writes keep succeeding (the outbox
/// holds their events) and the events catch up when the broker is back. An event the broker
/// appended just before it went can come twice (reported, see [`Repeats`]).
pub fn delete_kafka_pod(kube: &Kube) -> Result<()> {
    let writer = Writer::start(kube, "del-kafka")?;
    writer.wait_for_more(10, Duration::from_secs(60))?;
    run(&mut kube.ns(&["delete", "pod", "kafka-0", "--wait=true"]))?;
    writer.wait_for_more(10, Duration::from_secs(60))?;
    rollout_status(kube, "statefulset/kafka")?;
    writer.wait_for_more(10, Duration::from_secs(60))?;
    let (user, written) = writer.stop();
    ensure!(
        written.failures.is_empty(),
        "writes failed while Kafka was away: {:?}",
        written.failures
    );
    every_write_reaches_kafka(kube, &user, &written, Repeats::Report)
}

/// `kubectl rollout restart` of chat-api under a steady writer: no request fails.
pub fn rollout_restart_chat_api(kube: &Kube) -> Result<()> {
    let writer = Writer::start(kube, "rollout")?;
    writer.wait_for_more(20, Duration::from_secs(60))?;
    run(&mut kube.ns(&["rollout", "restart", "deployment/chat-api"]))?;
    rollout_status(kube, "deployment/chat-api")?;
    // Past the old pod's end.
    wait_until_gone_terminating(kube, "app.kubernetes.io/name=chat-api")?;
    writer.wait_for_more(20, Duration::from_secs(60))?;
    let (user, written) = writer.stop();
    ensure!(
        written.failures.is_empty(),
        "requests failed during the rollout: {:?}",
        written.failures
    );
    every_write_reaches_kafka(kube, &user, &written, Repeats::Fail)
}

/// Creates `n` daily tasks for `api`'s user and answers their (id, title).
fn daily_tasks(api: &Api, user: &str, n: usize) -> Result<Vec<(String, String)>> {
    (0..n)
        .map(|i| {
            let title = format!("daily {i}");
            let (status, task) = api.call(
                Method::POST,
                &format!("/api/{user}/tasks"),
                Some(&json!({"title": title, "recurrence": "daily"})),
            )?;
            ensure!(status == 201, "creating {title}: {status} {task}");
            Ok((task["id"].as_str().unwrap_or_default().to_owned(), title))
        })
        .collect()
}

fn complete(api: &Api, user: &str, id: &str) -> Result<()> {
    let (status, body) = api.call(
        Method::POST,
        &format!("/api/{user}/tasks/{id}/complete"),
        None,
    )?;
    ensure!(status == 200, "completing {id}: {status} {body}");
    Ok(())
}

/// A GET, sent again on a new connection when the one it went out on was closed under it.
/// chat-api closes a keep-alive connection that waited 20 s for a request
/// (`service_kit::server::HEADER_TIMEOUT_DEFAULT`, against slow clients). This client's
/// runtime runs only during a call, so it notices only when it writes the next request to
/// that connection, which then fails with "connection closed before message completed"
/// (seen on every writer's connection after the scale-out wait). HTTP/1.1 clients send an
/// idempotent request again then (RFC 9112, 9.3.1).
fn get_idempotent(api: &Api, path: &str) -> Result<(u16, Value)> {
    match api.call(Method::GET, path, None) {
        Err(e) => {
            println!("    GET {path} failed on a pooled connection ({e:#}); sent again");
            api.call(Method::GET, path, None)
        }
        answer => answer,
    }
}

/// Waits until `user` has exactly one pending next instance of every title in `titles`
/// (and no more), within `within`.
fn exactly_one_next_instance_each(
    api: &Api,
    user: &str,
    titles: &[String],
    within: Duration,
) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/{user}/tasks?status=pending&limit=100&cursor={c}"),
                None => format!("/api/{user}/tasks?status=pending&limit=100"),
            };
            let (status, page) = get_idempotent(api, &path)?;
            ensure!(status == 200, "listing: {status} {page}");
            for task in page["items"].as_array().into_iter().flatten() {
                *counts
                    .entry(task["title"].as_str().unwrap_or_default().to_owned())
                    .or_default() += 1;
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let doubled: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
        ensure!(doubled.is_empty(), "next instances made twice: {doubled:?}");
        let missing: Vec<&String> = titles.iter().filter(|t| !counts.contains_key(*t)).collect();
        if missing.is_empty() {
            println!("    {} next instances, one each", titles.len());
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {} completed tasks have no next instance after {within:?}: {:?}",
                missing.len(),
                titles.len(),
                missing.iter().take(10).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// A recurring-tasks pod deleted while completions stream in: exactly one next instance
/// per completed task.
pub fn delete_recurring_tasks_pod(kube: &Kube) -> Result<()> {
    let (user, api) = user_api(kube, "del-rec")?;
    let tasks = daily_tasks(&api, &user, 30)?;
    for (n, (id, _)) in tasks.iter().enumerate() {
        if n == 10 {
            delete_pods(kube, "app.kubernetes.io/name=recurring-tasks")?;
        }
        complete(&api, &user, id)?;
    }
    let titles: Vec<String> = tasks.into_iter().map(|(_, t)| t).collect();
    exactly_one_next_instance_each(&api, &user, &titles, Duration::from_secs(240))?;
    rollout_status(kube, "deployment/recurring-tasks")?;
    // Nothing more comes later (a redelivery after the restart would make a second one).
    std::thread::sleep(Duration::from_secs(10));
    exactly_one_next_instance_each(&api, &user, &titles, Duration::from_secs(1))?;
    let _ = api.call(Method::DELETE, &format!("/api/{user}"), None);
    Ok(())
}

fn replicas(kube: &Kube, deployment: &str) -> Result<(u64, u64)> {
    let text = kubectl_out(
        kube,
        &[
            "get",
            "deployment",
            deployment,
            "-o",
            "jsonpath={.spec.replicas} {.status.readyReplicas}",
        ],
    )?;
    let mut words = text.split_whitespace().map(|w| w.parse().unwrap_or(0));
    Ok((words.next().unwrap_or(0), words.next().unwrap_or(0)))
}

fn wait_replicas(kube: &Kube, deployment: &str, want: u64, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let (spec, ready) = replicas(kube, deployment)?;
        if spec == want && ready == want {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{deployment}: {spec} replicas ({ready} ready) after {within:?}, not {want}"
        );
        std::thread::sleep(Duration::from_secs(3));
    }
}

fn annotate_paused(kube: &Kube, paused: bool) -> Result<()> {
    let annotation = if paused {
        "autoscaling.keda.sh/paused-replicas=0".to_owned()
    } else {
        "autoscaling.keda.sh/paused-replicas-".to_owned()
    };
    run(&mut kube.ns(&[
        "annotate",
        "scaledobject",
        "recurring-tasks",
        &annotation,
        "--overwrite",
    ]))
}

/// Users and completions each of the KEDA check's backlog. One recurring-tasks replica
/// works off about 90 completions a second here, so the backlog must outlast KEDA's polling
/// and the HPA's sync (15 s each) by far: 240 completions were gone in 2.7 s, before the
/// HPA had looked.
const KEDA_USERS: usize = 4;
const KEDA_TASKS_PER_USER: usize = 1_000;

/// A backlog of completions (recurring-tasks held at zero replicas by KEDA's pause while
/// they pile up, written by several users at once) makes KEDA scale recurring-tasks out to
/// three replicas; every completion gets its one next instance; with the lag gone it scales
/// in to one again.
pub fn keda_scales_on_lag(kube: &Kube) -> Result<()> {
    annotate_paused(kube, true)?;
    let outcome = (|| {
        wait_replicas(kube, "recurring-tasks", 0, Duration::from_secs(120))?;
        let mut writers = Vec::new();
        for n in 0..KEDA_USERS {
            let (user, api) = user_api(kube, &format!("keda{n}"))?;
            writers.push(std::thread::spawn(
                move || -> Result<(String, Api, Vec<String>)> {
                    let tasks = daily_tasks(&api, &user, KEDA_TASKS_PER_USER)?;
                    for (id, _) in &tasks {
                        complete(&api, &user, id)?;
                    }
                    Ok((user, api, tasks.into_iter().map(|(_, t)| t).collect()))
                },
            ));
        }
        let mut users = Vec::new();
        for writer in writers {
            users.push(
                writer
                    .join()
                    .map_err(|_| anyhow::anyhow!("a writer panicked"))??,
            );
        }
        println!(
            "    {} completions wait with recurring-tasks at 0 replicas",
            KEDA_USERS * KEDA_TASKS_PER_USER
        );
        annotate_paused(kube, false)?;
        let t = Instant::now();
        wait_replicas(kube, "recurring-tasks", 3, Duration::from_secs(240))?;
        println!(
            "    KEDA scaled recurring-tasks out to 3 in {:.0}s",
            t.elapsed().as_secs_f64()
        );
        for (user, api, titles) in &users {
            exactly_one_next_instance_each(api, user, titles, Duration::from_secs(300))?;
        }
        let t = Instant::now();
        // KEDA's cooldown (120 s) and the HPA's scale-down stabilization (300 s).
        wait_replicas(kube, "recurring-tasks", 1, Duration::from_secs(660))?;
        println!(
            "    and in to 1 {:.0}s after the backlog was worked off",
            t.elapsed().as_secs_f64()
        );
        for (user, api, _) in &users {
            let _ = api.call(Method::DELETE, &format!("/api/{user}"), None);
        }
        Ok(())
    })();
    // Never leave the worker paused.
    let _ = annotate_paused(kube, false);
    outcome
}

/// Two chat-api replicas behind the Service, users updating their tasks one change after
/// another: on `task-events` each user's updates come in the order they were acknowledged.
pub fn two_replicas_keep_each_users_order(kube: &Kube) -> Result<()> {
    let patch = |min: u32| {
        run(&mut kube.ns(&[
            "patch",
            "hpa",
            "chat-api",
            "-p",
            &json!({"spec": {"minReplicas": min}}).to_string(),
        ]))
    };
    patch(2)?;
    let outcome = (|| {
        wait_replicas(kube, "chat-api", 2, Duration::from_secs(240))?;
        let mut users = Vec::new();
        let mut threads = Vec::new();
        for n in 0..4 {
            let (user, api) = user_api(kube, &format!("order{n}"))?;
            users.push(user.clone());
            threads.push(std::thread::spawn(
                move || -> Result<(String, String, usize)> {
                    let (status, task) = api.call(
                        Method::POST,
                        &format!("/api/{user}/tasks"),
                        Some(&json!({"title": "v0"})),
                    )?;
                    ensure!(status == 201, "{status} {task}");
                    let id = task["id"].as_str().unwrap_or_default().to_owned();
                    let updates = 40;
                    for v in 1..=updates {
                        let (status, body) = api.call(
                            Method::PATCH,
                            &format!("/api/{user}/tasks/{id}"),
                            Some(&json!({"title": format!("v{v}")})),
                        )?;
                        ensure!(status == 200, "update v{v}: {status} {body}");
                    }
                    Ok((user, id, updates))
                },
            ));
        }
        let mut expected: HashMap<String, (String, usize)> = HashMap::new();
        for thread in threads {
            let (user, id, updates) = thread
                .join()
                .map_err(|_| anyhow::anyhow!("a writer panicked"))??;
            expected.insert(user, (id, updates));
        }
        let serving = chat_api_pods(kube, "metadata.name")?;
        let user_refs: Vec<&str> = users.iter().map(String::as_str).collect();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let events = events_of(kube, &user_refs)?;
            let mut complete = true;
            for (user, (id, updates)) in &expected {
                let titles: Vec<&str> = events
                    .iter()
                    .filter(|e| e["task"]["id"] == id.as_str())
                    .filter_map(|e| e["task"]["title"].as_str())
                    .collect();
                let want: Vec<String> = (0..=*updates).map(|v| format!("v{v}")).collect();
                if titles.len() < want.len() {
                    complete = false;
                    continue;
                }
                ensure!(
                    titles == want,
                    "{user}'s events are out of order or doubled on task-events: {titles:?}"
                );
            }
            if complete {
                println!(
                    "    4 users × 41 changes in order on task-events, served by pods {serving}"
                );
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "not every user's events reached task-events within 180 s"
            );
            std::thread::sleep(Duration::from_secs(5));
        }
    })();
    let restored = patch(1);
    outcome.and(restored)
}
