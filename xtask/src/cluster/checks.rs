//! `cargo xtask cluster test`: checks of the deployed system, each failing with what it saw.
//! The machine reaches the pods' and Services' addresses directly (the pod bridge and
//! kube-proxy's rules), so requests go through the cluster's own network.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use reqwest::Method;
use serde_json::{Value, json};

use crate::minikube::{Api, Kube, chat_api_token, mint_token};

/// The namespace of the system.
const NAMESPACE: &str = "todo";

/// The service Deployments and their app ports.
const SERVICES: [(&str, u16); 4] = [
    ("chat-api", 3000),
    ("recurring-tasks", 3001),
    ("notifications", 3002),
    ("reminder-cron", 3003),
];

/// kubectl in the system's namespace; its output, or an error with what it said.
pub fn kubectl_out(kube: &Kube, args: &[&str]) -> Result<String> {
    let out = kube
        .ns(args)
        .output()
        .with_context(|| format!("running {} {args:?}", kube.shown))?;
    ensure!(
        out.status.success(),
        "{} -n {NAMESPACE} {}: {}",
        kube.shown,
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn json_of(kube: &Kube, args: &[&str]) -> Result<Value> {
    serde_json::from_str(&kubectl_out(kube, args)?).context("kubectl's JSON")
}

/// The ready condition and containers of a pod, as one line for messages.
fn pod_summary(pod: &Value) -> String {
    let containers: Vec<String> = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}(ready={}, restarts={})",
                c["name"].as_str().unwrap_or("?"),
                c["ready"],
                c["restartCount"]
            )
        })
        .collect();
    format!(
        "{} phase={} [{}]",
        pod["metadata"]["name"].as_str().unwrap_or("?"),
        pod["status"]["phase"].as_str().unwrap_or("?"),
        containers.join(", ")
    )
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Every pod of the system Ready (the Jobs' pods Succeeded), and every service pod with an
/// injected, ready `daprd` beside its own container.
pub fn pods_ready_and_injected(kube: &Kube) -> Result<()> {
    let pods = json_of(kube, &["get", "pods", "-o", "json"])?;
    let pods = pods["items"].as_array().context("no pod list")?;
    let mut wrong = Vec::new();
    let mut services_seen = Vec::new();
    for pod in pods {
        let phase = pod["status"]["phase"].as_str().unwrap_or("");
        if pod["metadata"]["deletionTimestamp"].is_string() {
            continue;
        }
        if phase == "Succeeded" {
            continue;
        }
        if !is_ready(pod) {
            wrong.push(format!("not Ready: {}", pod_summary(pod)));
        }
        let component = &pod["metadata"]["labels"]["app.kubernetes.io/component"];
        if component == "service" {
            let name = pod["metadata"]["labels"]["app.kubernetes.io/name"]
                .as_str()
                .unwrap_or("?");
            services_seen.push(name.to_owned());
            let daprd = pod["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"] == "daprd");
            match daprd {
                Some(c) if c["ready"] == true => {}
                Some(_) => wrong.push(format!("daprd not ready: {}", pod_summary(pod))),
                None => wrong.push(format!("no daprd injected: {}", pod_summary(pod))),
            }
        }
    }
    for (service, _) in SERVICES {
        if !services_seen.iter().any(|s| s == service) {
            wrong.push(format!("no pod of {service}"));
        }
    }
    ensure!(wrong.is_empty(), "pods: {wrong:#?}");
    println!(
        "    {} pods Ready; daprd injected and ready in {} service pods",
        pods.len(),
        services_seen.len()
    );
    Ok(())
}

/// A service pod as the check sees it.
#[derive(Debug)]
pub struct ServicePod {
    pub name: String,
    pub app: String,
    pub ip: String,
    /// Of each container.
    pub restarts: Vec<i64>,
}

/// Every service pod that is not going away.
pub fn service_pods(kube: &Kube) -> Result<Vec<ServicePod>> {
    let pods = json_of(
        kube,
        &[
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/component=service",
            "-o",
            "json",
        ],
    )?;
    Ok(pods["items"]
        .as_array()
        .context("no pod list")?
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let restarts = p["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| c["restartCount"].as_i64().unwrap_or(-1))
                .collect();
            ServicePod {
                name: p["metadata"]["name"].as_str().unwrap_or("?").to_owned(),
                app: p["metadata"]["labels"]["app.kubernetes.io/name"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned(),
                ip: p["status"]["podIP"].as_str().unwrap_or("").to_owned(),
                restarts,
            }
        })
        .collect())
}

/// `/readyz` of every service pod at its pod address, and of chat-api at its Service's.
pub fn readyz(kube: &Kube) -> Result<()> {
    let mut probe = Api::new()?;
    let mut wrong = Vec::new();
    let mut answered = 0;
    for pod in service_pods(kube)? {
        let name = pod.app.as_str();
        let Some((_, port)) = SERVICES.iter().find(|(s, _)| *s == name) else {
            continue;
        };
        probe.base = format!("http://{}:{port}", pod.ip);
        match probe.call(Method::GET, "/readyz", None) {
            Ok((200, _)) => answered += 1,
            Ok((status, body)) => wrong.push(format!("{} ({name}): {status} {body}", probe.base)),
            Err(e) => wrong.push(format!("{} ({name}): {e:#}", probe.base)),
        }
    }
    probe.base = service_base(kube)?;
    match probe.call(Method::GET, "/readyz", None) {
        Ok((200, _)) => answered += 1,
        Ok((status, body)) => wrong.push(format!(
            "{} (Service chat-api): {status} {body}",
            probe.base
        )),
        Err(e) => wrong.push(format!("{} (Service chat-api): {e:#}", probe.base)),
    }
    ensure!(wrong.is_empty(), "/readyz: {wrong:#?}");
    println!(
        "    /readyz answered 200 {answered} times (every service pod, and chat-api's Service)"
    );
    Ok(())
}

/// chat-api's Service: `http://<cluster IP>:3000`.
pub fn service_base(kube: &Kube) -> Result<String> {
    let svc = json_of(kube, &["get", "service", "chat-api", "-o", "json"])?;
    let ip = svc["spec"]["clusterIP"]
        .as_str()
        .context("chat-api's Service has no cluster IP")?;
    Ok(format!("http://{ip}:3000"))
}

/// A user of its own for one check, with a token, against chat-api's Service.
pub fn user_api(kube: &Kube, prefix: &str) -> Result<(String, Api)> {
    let user = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut api = Api::new()?;
    api.base = service_base(kube)?;
    api.token = Some(mint_token(kube, &user)?);
    Ok((user, api))
}

/// The MCP tools listed through chat-api's Service (the streamable HTTP transport, JSON
/// answers), with the caller's token.
pub fn mcp_tools(kube: &Kube) -> Result<()> {
    let (user, api) = user_api(kube, "mcp")?;
    let rpc = |body: Value| -> Result<Value> {
        let (status, answer) = api.request(
            Method::POST,
            "/mcp",
            Some(&body),
            &[("accept", "application/json, text/event-stream")],
        )?;
        ensure!(status == 200, "MCP {body}: {status}: {answer}");
        Ok(answer)
    };
    let init = rpc(json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "cluster-test", "version": "1"}}
    }))?;
    ensure!(
        init["result"]["serverInfo"].is_object(),
        "MCP initialize answered {init}"
    );
    let listed = rpc(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))?;
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for tool in [
        "add_task",
        "list_tasks",
        "complete_task",
        "delete_task",
        "update_task",
    ] {
        ensure!(
            names.contains(&tool),
            "MCP tools/list lacks {tool}: {listed}"
        );
    }
    let _ = api.call(Method::DELETE, &format!("/api/{user}"), None);
    println!("    MCP tools listed: {names:?}");
    Ok(())
}

/// The web page through chat-api's Service, and a sign-in link printed by the chat-api
/// binary in its pod (`chat-api token <user> --link <address>`) whose token the API takes.
pub fn web_page(kube: &Kube) -> Result<()> {
    let base = service_base(kube)?;
    let user = format!("web-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let link = chat_api_token(kube, &user, &["--link", &base])?;
    let link = link.trim();
    let token = link
        .strip_prefix(&format!("{base}/#token="))
        .with_context(|| format!("the pod printed {link:?}, not a sign-in link to {base}/"))?;
    let mut api = Api::new()?;
    api.base = base;
    let (status, page) = api.call(Method::GET, "/", None)?;
    let page = page.as_str().unwrap_or_default();
    ensure!(
        status == 200 && page.contains(r#"<script src="/app.js""#),
        "GET / answered {status}: {page:.200}"
    );
    for asset in ["/app.js", "/app.css"] {
        let (status, _) = api.call(Method::GET, asset, None)?;
        ensure!(status == 200, "GET {asset} answered {status}");
    }
    api.token = Some(token.to_owned());
    let (status, listed) = api.call(Method::GET, &format!("/api/{user}/tasks"), None)?;
    ensure!(
        status == 200,
        "the link's token was refused: {status} {listed}"
    );
    println!("    the page and its assets answered; the link's token lists {user}'s tasks");
    Ok(())
}

/// A task due within the hour makes reminder-cron publish a reminder, which notifications
/// logs (its log line names the task).
pub fn reminder_logged(kube: &Kube) -> Result<()> {
    let (user, api) = user_api(kube, "reminder")?;
    let due = (chrono::Utc::now() + chrono::Duration::minutes(45))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (status, task) = api.call(
        Method::POST,
        &format!("/api/{user}/tasks"),
        Some(&json!({"title": "cluster reminder check", "due_at": due})),
    )?;
    ensure!(
        status == 201,
        "creating a task due at {due} answered {status}: {task}"
    );
    let id = task["id"]
        .as_str()
        .context("the task has no id")?
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let logs = kube
            .ns(&[
                "logs",
                "-l",
                "app.kubernetes.io/name=notifications",
                "-c",
                "notifications",
                "--tail=-1",
                "--prefix",
            ])
            .output()?;
        let text = String::from_utf8_lossy(&logs.stdout);
        if let Some(line) = text.lines().find(|l| l.contains(&id)) {
            println!(
                "    reminder logged: {}",
                line.chars().take(200).collect::<String>()
            );
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "no reminder for task {id} (due {due}) logged by notifications within 120 s; \
                 look at: {} -n {NAMESPACE} logs deploy/reminder-cron -c reminder-cron",
                kube.shown
            );
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    let _ = api.call(Method::DELETE, &format!("/api/{user}"), None);
    Ok(())
}

/// The scripted model's Deployment and Service (`scripted-model.todo:8080`).
const MODEL_MANIFEST: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: scripted-model
  namespace: todo
  labels:
    app.kubernetes.io/name: scripted-model
    app.kubernetes.io/component: test
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: scripted-model
  template:
    metadata:
      labels:
        app.kubernetes.io/name: scripted-model
        app.kubernetes.io/component: test
    spec:
      containers:
        - name: model
          image: IMAGE
          imagePullPolicy: Never
          ports:
            - containerPort: 8080
          readinessProbe:
            httpGet:
              path: /calls
              port: 8080
            periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata:
  name: scripted-model
  namespace: todo
spec:
  selector:
    app.kubernetes.io/name: scripted-model
  ports:
    - port: 8080
      targetPort: 8080
";

/// Points the chat at `endpoint` (the Secret `chat-model`, empty values: no model) and
/// restarts chat-api, whose sidecar reads the Secret when its pod starts.
fn set_chat_model(kube: &Kube, endpoint: &str) -> Result<()> {
    let (key, model) = if endpoint.is_empty() {
        ("", "")
    } else {
        ("scripted", "scripted")
    };
    let patch = json!({"stringData": {"api-key": key, "model": model, "endpoint": endpoint}});
    crate::minikube::run(&mut kube.ns(&[
        "patch",
        "secret",
        "chat-model",
        "-p",
        &patch.to_string(),
    ]))?;
    crate::minikube::run(&mut kube.ns(&["rollout", "restart", "deployment/chat-api"]))?;
    crate::minikube::run(&mut kube.ns(&[
        "rollout",
        "status",
        "deployment/chat-api",
        "--timeout=300s",
    ]))?;
    // The old pods serve (with the old Secret) until they are gone.
    wait_until_gone_terminating(kube, "app.kubernetes.io/name=chat-api")
}

/// Waits until no pod matching `selector` is terminating.
pub fn wait_until_gone_terminating(kube: &Kube, selector: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(200);
    loop {
        let pods = json_of(kube, &["get", "pods", "-l", selector, "-o", "json"])?;
        let terminating = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_string())
            .count();
        if terminating == 0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{terminating} pods of {selector} still terminating after 200 s"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A chat turn through chat-api's Service against the scripted model running in the
/// cluster: the model calls `add_task`, the turn reports the task it created, the task is
/// there. The chat is put back without a model afterwards.
pub fn chat_turn(kube: &Kube, manifest_dir: &std::path::Path) -> Result<()> {
    let manifest = manifest_dir.join("scripted-model.yaml");
    std::fs::write(
        &manifest,
        MODEL_MANIFEST.replace("IMAGE", devstack::cluster::system::SCRIPTED_MODEL_IMAGE),
    )?;
    let manifest = manifest.to_str().context("path")?.to_owned();
    crate::minikube::run(&mut kube.cmd(&["apply", "-f", &manifest]))?;
    crate::minikube::run(&mut kube.ns(&[
        "rollout",
        "status",
        "deployment/scripted-model",
        "--timeout=120s",
    ]))?;
    set_chat_model(kube, "http://scripted-model.todo.svc.cluster.local:8080/v1")?;
    let outcome = (|| -> Result<()> {
        let (user, api) = user_api(kube, "chat")?;
        let title = format!("water the plants {user}");
        let (status, turn) = api.call(
            Method::POST,
            &format!("/api/{user}/chat"),
            Some(&json!({"message": title})),
        )?;
        ensure!(status == 200, "the chat turn answered {status}: {turn}");
        let changes = turn["changes"]
            .as_array()
            .context("the turn has no changes")?;
        ensure!(
            changes.len() == 1
                && changes[0]["action"] == "created"
                && changes[0]["task"]["title"] == title.as_str(),
            "the turn's changes are not the task the model added: {turn}"
        );
        let (status, list) = api.call(Method::GET, &format!("/api/{user}/tasks"), None)?;
        ensure!(
            status == 200
                && list["items"]
                    .as_array()
                    .is_some_and(|items| items.iter().any(|t| t["title"] == title.as_str())),
            "the task the chat made is not listed: {status} {list}"
        );
        println!("    chat turn: {}", turn["reply"].as_str().unwrap_or("?"));
        let _ = api.call(Method::DELETE, &format!("/api/{user}"), None);
        Ok(())
    })();
    let restored = set_chat_model(kube, "");
    let removed = crate::minikube::run(&mut kube.cmd(&["delete", "-f", &manifest, "--wait=true"]));
    outcome.and(restored).and(removed)
}

/// The spans the cluster overlay's collector (`otel-collector.observability`) has kept.
fn collected_spans(kube: &Kube) -> Result<Vec<devstack::ExportedSpan>> {
    let out = kube
        .cmd(&[
            "-n",
            "observability",
            "exec",
            "deploy/otel-collector",
            "--",
            "sh",
            "-c",
            "cat /spans/*.jsonl 2>/dev/null || true",
        ])
        .output()
        .context("running kubectl exec")?;
    ensure!(
        out.status.success(),
        "reading the collector's spans: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(devstack::parse_spans(&String::from_utf8_lossy(&out.stdout)))
}

/// With the tracing component, one change's spans reach the collector in the cluster, in
/// the trace the client started: chat-api's request spans (children of the client's span),
/// recurring-tasks' sidecar delivering the completion (`pubsub/task-events`), and
/// recurring-tasks' handling of it.
pub fn traces_reach_the_collector(kube: &Kube) -> Result<()> {
    crate::minikube::run(&mut kube.cmd(&[
        "-n",
        "observability",
        "rollout",
        "status",
        "deployment/otel-collector",
        "--timeout=120s",
    ]))?;
    let (user, api) = user_api(kube, "traced")?;
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let parent = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let traceparent = format!("00-{trace}-{parent}-01");
    let headers = [("traceparent", traceparent.as_str())];
    let body = json!({"title": "traced", "due_at": "2027-01-04T09:00",
                      "time_zone": "Europe/Berlin", "recurrence": "daily"});
    let base = format!("/api/{user}/tasks");
    let (status, task) = api.request(Method::POST, &base, Some(&body), &headers)?;
    ensure!(status == 201, "creating the task answered {status}: {task}");
    let id = task["id"].as_str().context("the created task has no id")?;
    let (status, done) = api.request(
        Method::POST,
        &format!("{base}/{id}/complete"),
        None,
        &headers,
    )?;
    ensure!(
        status == 200,
        "completing the task answered {status}: {done}"
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let spans = collected_spans(kube)?;
        let ours: Vec<_> = spans.iter().filter(|s| s.trace_id == trace).collect();
        let has = |service: Option<&str>, name: &str, parent_of: Option<&str>| {
            ours.iter().any(|s| {
                service.is_none_or(|service| s.service == service)
                    && s.name == name
                    && parent_of.is_none_or(|p| s.parent_span_id == p)
            })
        };
        let requests = ours
            .iter()
            .filter(|s| {
                s.service == "chat-api" && s.name == "request" && s.parent_span_id == parent
            })
            .count();
        if requests == 2
            && has(None, "pubsub/task-events", None)
            && has(Some("recurring-tasks"), "task_completed", None)
        {
            println!(
                "    {} spans of trace {trace} collected, from {:?}",
                ours.len(),
                ours.iter()
                    .map(|s| s.service.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
            );
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "after 90 s the collector has, of trace {trace} (client span {parent}): \
                 {ours:#?}\n({} spans in all); look at: {} -n observability logs \
                 deploy/otel-collector",
                spans.len(),
                kube.shown
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let _ = api.call(Method::DELETE, &format!("/api/{user}"), None);
    Ok(())
}
