//! Publishing under real faults: requests keep
//! succeeding while Kafka or the sidecar is down, nothing committed is lost (even when
//! chat-api itself is killed), and each user's events stay in commit order, also with two
//! replicas. Each test runs under steady write load on its own real stack.

use std::time::Duration;

use anyhow::{Result, ensure};
use devstack::Sidecar;
use e2e::{
    Env,
    load::{Load, Outcome, latency_percentile, verify_all_delivered},
};

const USERS: [&str; 4] = ["ann", "ben", "cat", "dan"];
const INTERVAL: Duration = Duration::from_millis(100);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

fn summary(outcomes: &[Outcome]) -> String {
    let ok = outcomes.iter().filter(|o| o.status == Some(201)).count();
    format!(
        "{} requests, {ok} created, p50 {:?}, p95 {:?}, max {:?}",
        outcomes.len(),
        latency_percentile(outcomes, 50.0),
        latency_percentile(outcomes, 95.0),
        latency_percentile(outcomes, 100.0)
    )
}

/// Every request answered 201, and none waited on the broker.
fn all_succeeded_quickly(outcomes: &[Outcome]) -> Result<()> {
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.status != Some(201)).collect();
    ensure!(
        failed.is_empty(),
        "{} requests failed during the fault, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    // A request that published inline would wait for the sidecar's timeout (10 s).
    let p95 = latency_percentile(outcomes, 95.0);
    ensure!(
        p95 < Duration::from_secs(1),
        "p95 latency {p95:?} during the fault: requests waited on publishing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_for_30_seconds_loses_nothing_and_blocks_no_one() -> Result<()> {
    let mut env = Env::start().await?;
    let api = env.start_chat_api(&env.database().await?).await?;
    let load = Load::start(&env, std::slice::from_ref(&api.base), &USERS, INTERVAL)?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    env.stack.stop_kafka().await?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let backlog: serde_json::Value = reqwest::get(format!("{}/relay/status", api.base))
        .await?
        .json()
        .await?;
    env.stack.start_kafka().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outcomes = load.stop().await;
    eprintln!(
        "kafka outage: {}; backlog at restart {backlog}",
        summary(&outcomes)
    );

    ensure!(
        backlog["pending"].as_u64().unwrap_or(0) > 0,
        "events must have waited in the outbox during the outage"
    );
    all_succeeded_quickly(&outcomes)?;
    verify_all_delivered(&env, &outcomes, 0, DELIVERY_TIMEOUT).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_killed_and_restarted_loses_nothing_and_blocks_no_one() -> Result<()> {
    let env = Env::start().await?;
    let mut api = env.start_chat_api(&env.database().await?).await?;
    let load = Load::start(&env, std::slice::from_ref(&api.base), &USERS, INTERVAL)?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let cfg = api.sidecar.config().clone();
    api.sidecar.kill9();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let backlog: serde_json::Value = reqwest::get(format!("{}/relay/status", api.base))
        .await?
        .json()
        .await?;
    api.sidecar = Sidecar::start(&env.paths, cfg).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outcomes = load.stop().await;
    eprintln!(
        "sidecar killed: {}; backlog at restart {backlog}",
        summary(&outcomes)
    );

    ensure!(
        backlog["pending"].as_u64().unwrap_or(0) > 0,
        "events must have waited in the outbox while the sidecar was down"
    );
    all_succeeded_quickly(&outcomes)?;
    verify_all_delivered(&env, &outcomes, 0, DELIVERY_TIMEOUT).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_api_killed_with_events_pending_publishes_them_after_restart() -> Result<()> {
    let env = Env::start().await?;
    let mut api = env.start_chat_api(&env.database().await?).await?;
    let load = Load::start(&env, std::slice::from_ref(&api.base), &USERS, INTERVAL)?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Hold events back (sidecar down), then crash chat-api with them pending.
    let cfg = api.sidecar.config().clone();
    api.sidecar.kill9();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let backlog: serde_json::Value = reqwest::get(format!("{}/relay/status", api.base))
        .await?
        .json()
        .await?;
    api.process.kill9();
    api.sidecar = Sidecar::start(&env.paths, cfg).await?;
    api.restart_process(&env.dir.path().join("logs")).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let outcomes = load.stop().await;
    eprintln!(
        "chat-api SIGKILL: {}; backlog at the kill {backlog}",
        summary(&outcomes)
    );

    ensure!(
        backlog["pending"].as_u64().unwrap_or(0) > 0,
        "events must have been pending when chat-api was killed"
    );
    let server_errors = outcomes
        .iter()
        .filter(|o| o.status.is_some_and(|s| s >= 500))
        .count();
    ensure!(server_errors == 0, "{server_errors} requests got a 5xx");
    let unanswered = outcomes.iter().filter(|o| o.status.is_none()).count();
    let answered_ok = outcomes.iter().filter(|o| o.status == Some(201)).count();
    ensure!(
        answered_ok + unanswered == outcomes.len(),
        "only refusals while chat-api was down"
    );
    // A request in flight at the kill may have committed without its answer arriving.
    verify_all_delivered(&env, &outcomes, unanswered, DELIVERY_TIMEOUT).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_writing_for_the_same_users_keep_each_users_order() -> Result<()> {
    let mut env = Env::start().await?;
    let db = env.database().await?;
    let mut first = env.start_chat_api(&db).await?;
    let second = env.start_chat_api(&db).await?;
    let load = Load::start(
        &env,
        &[first.base.clone(), second.base.clone()],
        &USERS,
        INTERVAL,
    )?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A short broker outage makes both replicas' events queue up together.
    env.stack.stop_kafka().await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    env.stack.start_kafka().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Then one replica loses its sidecar for good: if its relay held the publishing lease,
    // the other replica must take over, and nothing either replica committed may be lost.
    first.sidecar.kill9();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let outcomes = load.stop().await;
    eprintln!("two replicas: {}", summary(&outcomes));

    for base in [&first.base, &second.base] {
        ensure!(
            outcomes
                .iter()
                .any(|o| &o.base == base && o.status == Some(201)),
            "both replicas took writes"
        );
    }
    all_succeeded_quickly(&outcomes)?;
    if let Err(e) = verify_all_delivered(&env, &outcomes, 0, DELIVERY_TIMEOUT).await {
        // What each relay was doing, for whoever reads the failure.
        let client = e2e::client();
        let mut state = String::new();
        for (name, replica) in [("first (sidecar killed)", &first), ("second", &second)] {
            let status = match client
                .get(format!("{}/relay/status", replica.base))
                .send()
                .await
            {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(e) => format!("no answer: {e}"),
            };
            let log = replica.process.log_text();
            let relay_lines: Vec<&str> = log.lines().filter(|l| l.contains("relay")).collect();
            let tail = relay_lines[relay_lines.len().saturating_sub(15)..].join("\n    ");
            state.push_str(&format!("\n{name}: /relay/status {status}\n    {tail}"));
        }
        return Err(e.context(format!("the relays at the end:{state}")));
    }
    Ok(())
}

/// What the real sidecar answers, as the relay reads it ([`service_kit::PublishError`]):
/// the broker down is a passing failure, a record the topic refuses (larger than its `max.message.bytes`) is a refusal
/// of that record, and a call in flight when daprd is killed is an unreachable sidecar,
/// never a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecars_answers_are_told_apart_as_the_broker_means_them() -> Result<()> {
    use service_kit::{DaprPublisher, OutgoingEvent, PublishError, Publisher};

    let mut env = Env::start().await?;
    let mut sidecar = env.bare_sidecar("chat-api").await?;
    let publisher = DaprPublisher::new(sidecar.config().grpc_port, None);
    let small = br#"{"n": 1}"#.to_vec();
    let big = format!(r#"{{"pad": "{}"}}"#, "x".repeat(4_000)).into_bytes();
    let event = |topic: &'static str, key: &'static str, payload: &'static [u8]| OutgoingEvent {
        topic,
        partition_key: key,
        event_id: uuid::Uuid::now_v7(),
        event_type: "probe",
        payload,
        traceparent: None,
    };
    let small: &'static [u8] = small.leak();
    let big: &'static [u8] = big.leak();
    let bootstrap = env.stack.kafka_bootstrap();

    publisher
        .publish(event("task-events", "ann", small))
        .await
        .map_err(|e| anyhow::anyhow!("a plain publish failed: {e}"))?;

    // The topic refuses records over 2 KB.
    devstack::alter_topic_config(
        &bootstrap,
        &env.paths,
        "task-events",
        &[("max.message.bytes", "2048")],
    )
    .await?;
    let answer = first_failure(&publisher, event("task-events", "ann", big)).await;
    ensure!(
        matches!(answer, Err(PublishError::Refused(_))),
        "a record over max.message.bytes must be refused as itself: {answer:?}"
    );
    // In one bulk call beside a good record, daprd fails the whole call: no refusal of
    // each, and the good record is not reported refused.
    let answers = publisher
        .publish_all(&[
            event("task-events", "ann", big),
            event("task-events", "ben", small),
        ])
        .await;
    ensure!(
        !matches!(answers[1], Err(PublishError::Refused(_))),
        "the good record of a bulk call was reported refused: {answers:?}"
    );

    // The broker down: a passing failure, once daprd gives up on it.
    env.stack.stop_kafka().await?;
    let answer = publisher.publish(event("task-events", "ann", small)).await;
    ensure!(
        matches!(answer, Err(PublishError::Failed(_))),
        "the broker down must be a passing failure: {answer:?}"
    );
    // A call waits on the broker; daprd is killed while it does.
    let call = tokio::spawn(async move {
        let publisher = publisher;
        publisher.publish(event("task-events", "ann", small)).await
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(
        !call.is_finished(),
        "the call ended before daprd was killed: {:?}",
        call.await
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(sidecar.pid())?),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let answer = tokio::time::timeout(Duration::from_secs(15), call).await??;
    ensure!(
        matches!(answer, Err(PublishError::Unavailable(_))),
        "a call cut off by daprd's death must be an unreachable sidecar: {answer:?}"
    );
    sidecar.stop();
    Ok(())
}

/// The first failed answer to `event`, published again each 200 ms for at most 10 s (the
/// last answer if none failed).
async fn first_failure(
    publisher: &service_kit::DaprPublisher,
    event: service_kit::OutgoingEvent<'_>,
) -> Result<(), service_kit::PublishError> {
    use service_kit::Publisher as _;
    let started = std::time::Instant::now();
    loop {
        let answer = publisher.publish(event).await;
        if answer.is_err() || started.elapsed() > Duration::from_secs(10) {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
