//! A real daprd, started by devstack, publishes to the stack's Kafka with the partition
//! key as the record key, and keeps state in the stack's Redis.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use devstack::{
    BrokerJvm, Paths, Ports, Sidecar, SidecarConfig, Stack, StackConfig, consume, free_port,
    pid_alive, provision, render_components,
};

/// The tests here each start a whole stack: they take turns.
static ONE_STACK_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PUBSUB: &str = "\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.kafka
  version: v1
  metadata:
    - name: brokers
      value: KAFKA_BOOTSTRAP
    - name: authType
      value: none
    - name: disableTls
      value: \"true\"
    # Kafka 4 no longer speaks the protocol of sarama's default version (2.0.0).
    - name: version
      value: 3.6.0
";

const STATESTORE: &str = "\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
    - name: redisHost
      value: REDIS_ADDR
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_publishes_keyed_records_to_kafka_and_saves_state_in_redis() -> Result<()> {
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    let paths = Paths::discover()?;
    let provision_paths = paths.clone();
    tokio::task::spawn_blocking(move || provision::all_once(&provision_paths)).await??;

    let dir = tempfile::tempdir()?;
    let stack = Stack::start(
        &paths,
        StackConfig {
            data_dir: dir.path().join("stack"),
            ports: Ports::free(),
            broker_jvm: BrokerJvm::QuickStart,
        },
    )
    .await?;
    stack.create_topics(&["task-events"], 3).await?;

    let templates = dir.path().join("templates");
    fs::create_dir_all(&templates)?;
    fs::write(templates.join("pubsub.yaml"), PUBSUB)?;
    fs::write(templates.join("statestore.yaml"), STATESTORE)?;
    let resources = dir.path().join("components");
    render_components(
        &templates,
        &resources,
        &[
            ("KAFKA_BOOTSTRAP", stack.kafka_bootstrap()),
            ("REDIS_ADDR", stack.redis_addr()),
        ],
    )?;

    let started = Instant::now();
    let mut sidecar = Sidecar::start(
        &paths,
        SidecarConfig::new(
            "publisher",
            &resources,
            &dir.path().join("daprd-publisher.log"),
        ),
    )
    .await?;
    println!("daprd ready in {:.1}s", started.elapsed().as_secs_f64());
    sidecar.wait_ready(Duration::from_secs(10)).await?;

    let http = reqwest::Client::new();
    let body = serde_json::json!({ "event_id": "e-1", "user_id": "alice", "title": "a\tb" });
    let response = http
        .post(format!(
            "{}/v1.0/publish/pubsub/task-events?metadata.partitionKey=alice",
            sidecar.http_url()
        ))
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    ensure!(
        status.as_u16() == 204,
        "publish answered {status}: {}",
        response.text().await?
    );

    let records = consume(
        &stack.kafka_bootstrap(),
        &paths,
        "task-events",
        1,
        Duration::from_secs(20),
    )
    .await?;
    ensure!(records.len() == 1, "expected one record, got {records:?}");
    let record = &records[0];
    ensure!(
        record.key.as_deref() == Some("alice"),
        "wrong key: {record:?}"
    );
    ensure!((0..3).contains(&record.partition));
    let envelope: serde_json::Value =
        serde_json::from_str(&record.value).context("the value is not JSON")?;
    ensure!(
        envelope["data"] == body,
        "the CloudEvent does not carry the body: {envelope}"
    );

    let saved = http
        .post(format!("{}/v1.0/state/statestore", sidecar.http_url()))
        .json(&serde_json::json!([{ "key": "k1", "value": { "n": 1 } }]))
        .send()
        .await?;
    ensure!(
        saved.status().as_u16() == 204,
        "state save answered {}",
        saved.status()
    );
    let read: serde_json::Value = http
        .get(format!("{}/v1.0/state/statestore/k1", sidecar.http_url()))
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        read == serde_json::json!({ "n": 1 }),
        "state read back {read}"
    );

    let pid = sidecar.pid();
    let stopping = Instant::now();
    sidecar.stop();
    println!("daprd stopped in {:.1}s", stopping.elapsed().as_secs_f64());
    ensure!(!pid_alive(pid), "daprd {pid} still running after stop");
    stack.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_with_an_app_port_starts_before_the_app_listens() -> Result<()> {
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    let paths = Paths::discover()?;
    let provision_paths = paths.clone();
    tokio::task::spawn_blocking(move || provision::all_once(&provision_paths)).await??;

    let dir = tempfile::tempdir()?;
    let resources = dir.path().join("components");
    fs::create_dir_all(&resources)?;
    let app_port = free_port();
    let mut cfg = SidecarConfig::new("late-app", &resources, &dir.path().join("daprd.log"));
    cfg.app_port = Some(app_port);
    let sidecar = Sidecar::start(&paths, cfg).await?;

    // No app yet: daprd is not fully ready.
    ensure!(
        sidecar.wait_ready(Duration::from_secs(2)).await.is_err(),
        "daprd claims readiness without its app"
    );

    // A minimal app: any HTTP answer to daprd's start-up calls (/dapr/config,
    // /dapr/subscribe) will do; 404 means "none".
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, app_port))?;
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    sidecar.wait_ready(Duration::from_secs(30)).await?;
    Ok(())
}
