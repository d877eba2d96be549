//! One trace per change, end to end: a request's W3C trace context is stored with its
//! outbox row, published in the CloudEvent (`traceparent`) on Kafka, continued by
//! `recurring-tasks` (its log lines carry the `trace_id`), and carried on by the next
//! instance's `task.created`. Meanwhile the `/metrics` of both services, read with the
//! Prometheus Python client's parser, count what happened. With an OTLP endpoint set, a real
//! OpenTelemetry Collector receives the spans of one change (the services' and their
//! sidecars') linked parent to child.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use e2e::{
    Env, SeenTaskEvent, Service, decode_task_events,
    metrics::{Scraped, scrape},
};
use serde_json::{Value, json};
use todo_domain::{EventType, topics};

struct Setup {
    api: Service,
    worker: Service,
    client: reqwest::Client,
    env: Env,
}

impl Setup {
    /// chat-api and recurring-tasks on a fresh stack, exporting their spans (and their
    /// sidecars') to a collector when `export`.
    async fn start(export: bool) -> Result<Setup> {
        let mut env = Env::start().await?;
        if export {
            env.export_traces().await?;
        }
        let (api, worker) = env.start_api_and_recurring().await?;
        Ok(Setup {
            env,
            api,
            worker,
            client: e2e::client(),
        })
    }

    /// Sends a request (with `traceparent` if given); the answer's body and the trace id
    /// its `traceresponse` header names.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        traceparent: Option<&str>,
    ) -> Result<(Value, String)> {
        let mut request = request.bearer_auth(self.env.token("alice")?);
        if let Some(tp) = traceparent {
            request = request.header("traceparent", tp);
        }
        let res = request.send().await?.error_for_status()?;
        let answer = res
            .headers()
            .get("traceresponse")
            .and_then(|v| v.to_str().ok())
            .context("no traceresponse header")?
            .to_owned();
        Ok((res.json().await?, trace_id(&answer)?))
    }

    /// Creates a daily task and completes it; the trace ids of the two requests.
    async fn create_and_complete(
        &self,
        title: &str,
        tp: Option<&str>,
    ) -> Result<(String, String, String)> {
        let base = format!("{}/api/alice/tasks", self.api.base);
        let body = json!({"title": title, "due_at": "2027-01-04T09:00", "time_zone": "Europe/Berlin", "recurrence": "daily"});
        let (task, created) = self.send(self.client.post(&base).json(&body), tp).await?;
        let id = task["id"].as_str().context("task id")?.to_owned();
        let (_, completed) = self
            .send(self.client.post(format!("{base}/{id}/complete")), tp)
            .await?;
        Ok((id, created, completed))
    }
}

fn trace_id(traceparent: &str) -> Result<String> {
    let parts: Vec<&str> = traceparent.split('-').collect();
    ensure!(
        parts.len() == 4 && parts[1].len() == 32,
        "not a traceparent: {traceparent:?}"
    );
    Ok(parts[1].to_owned())
}

fn event_trace(e: &SeenTaskEvent) -> Result<String> {
    trace_id(
        e.traceparent
            .as_deref()
            .context("a record without traceparent")?,
    )
}

/// The `task.completed` of `task_id` and the `task.created` of the instance after it.
async fn chain(setup: &Setup, task_id: &str) -> Result<(SeenTaskEvent, SeenTaskEvent)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Exactly what is there now: a read for more would wait for records that never come.
        let held = setup.env.end_offset(topics::TASK_EVENTS).await?;
        let records = setup
            .env
            .records(topics::TASK_EVENTS, held.max(1), Duration::from_secs(10))
            .await?;
        let mut events = decode_task_events(&records)?;
        let completed = events.iter().position(|e| {
            e.event.event_type == EventType::TaskCompleted && e.event.task.id.to_string() == task_id
        });
        let next = events.iter().position(|e| {
            e.event.event_type == EventType::TaskCreated
                && e.event.task.id.to_string() != task_id
                && e.event
                    .task
                    .recurrence
                    .as_ref()
                    .is_some_and(|r| r.series_id.to_string() == task_id)
        });
        if let (Some(c), Some(n)) = (completed, next) {
            let next = events.swap_remove(n);
            let completed = events.swap_remove(if c == events.len() { n } else { c });
            return Ok((completed, next));
        }
        if Instant::now() > deadline {
            bail!(
                "no completion and next instance of {task_id} on {}",
                topics::TASK_EVENTS
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_and_its_next_instance_share_the_requests_trace() -> Result<()> {
    let setup = Setup::start(false).await?;

    let api_before = scrape(&setup.env, &setup.api.base).await?;
    let worker_before = scrape(&setup.env, &setup.worker.base).await?;

    // A client's own trace: continued by every request that names it.
    let given_trace = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let given = format!("00-{given_trace}-00f067aa0ba902b7-01");
    let (id, created, completed) = setup.create_and_complete("Traced", Some(&given)).await?;
    ensure!(
        created == given_trace && completed == given_trace,
        "the answers name another trace"
    );
    let (done, next) = chain(&setup, &id).await?;
    ensure!(
        event_trace(&done)? == given_trace,
        "task.completed: {:?}",
        done.traceparent
    );
    ensure!(
        event_trace(&next)? == given_trace,
        "next task.created: {:?}",
        next.traceparent
    );
    ensure!(
        done.traceparent != next.traceparent,
        "the next instance's event has a span of its own (recurring-tasks'), not the request's"
    );
    let log = setup.worker.process.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("created the next instance") && l.contains(&given_trace))
        .with_context(|| format!("no log line of recurring-tasks with trace_id {given_trace}"))?;
    ensure!(line.contains(&format!("trace_id={given_trace}")), "{line}");

    // Without one: each request starts a trace of its own, which flows the same way.
    let (id, created, completed) = setup.create_and_complete("Untraced", None).await?;
    ensure!(
        created != completed && completed != given_trace,
        "fresh traces expected"
    );
    let (done, next) = chain(&setup, &id).await?;
    ensure!(
        event_trace(&done)? == completed,
        "task.completed: {:?}",
        done.traceparent
    );
    ensure!(
        event_trace(&next)? == completed,
        "next task.created: {:?}",
        next.traceparent
    );
    ensure!(
        setup
            .worker
            .process
            .log_text()
            .contains(&format!("trace_id={completed}")),
        "recurring-tasks logged nothing with trace_id {completed}"
    );
    // A malformed traceparent is not an error: it starts a new trace.
    let (_, fresh) = setup
        .send(
            setup
                .client
                .post(format!("{}/api/alice/tasks", setup.api.base))
                .json(&json!({"title": "x"})),
            Some("00-not-a-trace-01"),
        )
        .await?;
    ensure!(fresh.len() == 32 && fresh != given_trace, "{fresh}");

    // What /metrics says of all that.
    let api = scrape(&setup.env, &setup.api.base).await?;
    let worker = scrape(&setup.env, &setup.worker.base).await?;
    api.expect_family("http_requests_total", "counter")?;
    api.expect_family("http_request_duration_seconds", "histogram")?;
    api.expect_family("relay_backlog_events", "gauge")?;
    api.expect_family("relay_oldest_pending_age_seconds", "gauge")?;
    api.expect_family("relay_published_events_total", "counter")?;
    let created = |m: &Scraped| {
        m.value(
            "http_requests_total",
            &[
                ("route", "/api/{user_id}/tasks"),
                ("method", "POST"),
                ("status", "201"),
            ],
        )
    };
    ensure!(
        created(&api) - created(&api_before) == 3.0,
        "3 creates counted"
    );
    let completes = |m: &Scraped| {
        m.value(
            "http_requests_total",
            &[
                ("route", "/api/{user_id}/tasks/{task_id}/complete"),
                ("status", "200"),
            ],
        )
    };
    ensure!(
        completes(&api) - completes(&api_before) == 2.0,
        "2 completions counted"
    );
    let published = |m: &Scraped| m.value("relay_published_events_total", &[]);
    ensure!(
        published(&api) - published(&api_before) >= 5.0,
        "at least 3 created and 2 completed published: {}",
        published(&api) - published(&api_before)
    );
    worker.expect_family("subscription_outcomes_total", "counter")?;
    let success = |m: &Scraped| {
        m.value(
            "subscription_outcomes_total",
            &[("topic", "task-events"), ("outcome", "SUCCESS")],
        )
    };
    ensure!(
        success(&worker) - success(&worker_before) >= 2.0,
        "both completions answered SUCCESS: {}",
        success(&worker) - success(&worker_before)
    );
    Ok(())
}

/// The spans named `span_id` in `trace` the collector has so far.
fn exported(
    spans: &[devstack::ExportedSpan],
    trace: &str,
    span_id: &str,
) -> Option<devstack::ExportedSpan> {
    spans
        .iter()
        .find(|s| s.trace_id == trace && s.span_id == span_id)
        .cloned()
}

/// The span id of a `traceparent`.
fn span_of(traceparent: &str) -> Result<String> {
    let parts: Vec<&str> = traceparent.split('-').collect();
    ensure!(parts.len() == 4, "not a traceparent: {traceparent:?}");
    Ok(parts[2].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_otlp_endpoint_the_spans_of_one_change_reach_the_collector_linked() -> Result<()> {
    let setup = Setup::start(true).await?;
    let given_trace = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let given_parent = "00f067aa0ba902b7";
    let given = format!("00-{given_trace}-{given_parent}-01");
    let (id, _, _) = setup.create_and_complete("Exported", Some(&given)).await?;
    let (done, next) = chain(&setup, &id).await?;
    // The completion was published with the span of the request that completed it, and the
    // next instance with the span of recurring-tasks' handling.
    let request_span = span_of(done.traceparent.as_deref().context("no traceparent")?)?;
    let handler_span = span_of(next.traceparent.as_deref().context("no traceparent")?)?;

    let collector = &setup.env.tracing.as_ref().context("tracing")?.collector;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = collector.spans()?;
        let request = exported(&spans, &given_trace, &request_span);
        let handler = exported(&spans, &given_trace, &handler_span);
        // recurring-tasks' sidecar's span of delivering the completion (daprd names it by
        // topic): in the trace, a child of the span the event was published with.
        let daprd: Vec<_> = spans
            .iter()
            .filter(|s| {
                s.trace_id == given_trace
                    && s.name == format!("pubsub/{}", topics::TASK_EVENTS)
                    && s.parent_span_id == request_span
            })
            .collect();
        if let (Some(request), Some(handler), false) = (&request, &handler, daprd.is_empty()) {
            ensure!(
                request.service == "chat-api" && request.name == "request",
                "{request:?}"
            );
            ensure!(
                request.parent_span_id == given_parent,
                "the request's span continues the client's: {request:?}"
            );
            ensure!(
                handler.service == "recurring-tasks" && handler.name == "task_completed",
                "{handler:?}"
            );
            ensure!(
                handler.parent_span_id == request_span,
                "recurring-tasks' span is a child of the completing request's: {handler:?}"
            );
            // The create request: the same trace, also a child of the client's span.
            ensure!(
                spans.iter().any(|s| s.trace_id == given_trace
                    && s.service == "chat-api"
                    && s.span_id != request_span
                    && s.parent_span_id == given_parent),
                "the create request's span is missing"
            );
            break;
        }
        if Instant::now() > deadline {
            let ours: Vec<_> = spans.iter().filter(|s| s.trace_id == given_trace).collect();
            bail!(
                "after 30 s the collector has, in trace {given_trace}: {ours:#?}\n\
                 (request span {request_span}, handler span {handler_span}); collector log:\n{}",
                collector.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A request without a traceparent: its span is the root of a new trace.
    let (_, fresh) = setup
        .send(
            setup
                .client
                .post(format!("{}/api/alice/tasks", setup.api.base))
                .json(&json!({"title": "root"})),
            None,
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = collector.spans()?;
        if let Some(root) = spans
            .iter()
            .find(|s| s.trace_id == fresh && s.service == "chat-api")
        {
            ensure!(root.parent_span_id.is_empty(), "{root:?}");
            break;
        }
        ensure!(Instant::now() < deadline, "no span of trace {fresh}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_goes_away_costs_the_spans_only() -> Result<()> {
    let mut env = Env::start().await?;
    env.export_traces().await?;
    let db = env.database().await?;
    let api = env.start_chat_api(&db).await?;
    env.tracing
        .as_mut()
        .context("tracing")?
        .collector
        .shutdown()
        .await;

    // Requests are served and their events published as before.
    let client = e2e::client();
    let token = env.token("alice")?;
    for i in 0..40 {
        let res = client
            .post(format!("{}/api/alice/tasks", api.base))
            .bearer_auth(&token)
            .json(&json!({"title": format!("no collector {i}")}))
            .send()
            .await?;
        ensure!(res.status() == 201, "create {i}: {}", res.status());
    }
    let records = env
        .records(topics::TASK_EVENTS, 40, Duration::from_secs(30))
        .await?;
    ensure!(
        decode_task_events(&records)?.len() == 40,
        "{} of 40 events on Kafka",
        records.len()
    );
    // And the lost spans are said, once per batch, naming the cause.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = api.process.log_text();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("BatchSpanProcessor.ExportError"))
        {
            ensure!(line.contains("Unavailable"), "{line}");
            ensure!(
                !log.contains("Export.Failed.Exhausted"),
                "the exporter's own warning repeats the error"
            );
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "chat-api never said its spans could not be exported"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}
