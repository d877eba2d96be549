//! The stack really runs: PostgreSQL, Redis and Kafka start on free ports, Kafka survives a
//! restart on the same data, and stopping leaves no process behind.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use devstack::{BrokerJvm, Paths, Ports, Stack, StackConfig, pid_alive, provision};

/// The tests here each start a whole stack: they take turns.
static ONE_STACK_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_starts_creates_topics_survives_a_kafka_restart_and_stops_cleanly() -> Result<()> {
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    let paths = Paths::discover()?;
    let provision_paths = paths.clone();
    tokio::task::spawn_blocking(move || provision::all_once(&provision_paths)).await??;

    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let mut stack = Stack::start(
        &paths,
        StackConfig {
            data_dir: dir.path().join("stack"),
            ports: Ports::free(),
            broker_jvm: BrokerJvm::QuickStart,
        },
    )
    .await?;
    println!("stack started in {:.1}s", started.elapsed().as_secs_f64());
    let pids = stack.pids();
    ensure!(
        pids.len() == 3,
        "expected 3 running processes, got {pids:?}"
    );
    ensure!(
        stack
            .database_url()
            .starts_with("postgres://todo:todo@127.0.0.1:")
    );
    ensure!(stack.database_url().ends_with("/todo"));

    stack.create_topics(&["task-events"], 3).await?;
    // Creating again is a no-op, not an error.
    stack.create_topics(&["task-events"], 3).await?;
    let described = stack.describe_topics().await?;
    let line = described
        .lines()
        .find(|l| l.contains("Topic: task-events") && l.contains("PartitionCount"))
        .with_context(|| format!("task-events missing from:\n{described}"))?;
    ensure!(
        line.contains("PartitionCount: 3"),
        "wrong partition count: {line}"
    );
    ensure!(
        line.contains("retention.ms=604800000"),
        "wrong retention: {line}"
    );

    let old_kafka = stack.kafka_pid().context("kafka pid")?;
    let restarted = Instant::now();
    stack.stop_kafka().await?;
    ensure!(
        !pid_alive(old_kafka),
        "kafka {old_kafka} still running after stop_kafka"
    );
    stack.start_kafka().await?;
    println!(
        "kafka restarted in {:.1}s",
        restarted.elapsed().as_secs_f64()
    );
    let new_kafka = stack.kafka_pid().context("kafka pid after restart")?;
    ensure!(new_kafka != old_kafka);
    let described = stack.describe_topics().await?;
    ensure!(
        described.contains("PartitionCount: 3"),
        "topic lost across the restart:\n{described}"
    );

    let pids = stack.pids();
    ensure!(
        pids.len() == 3,
        "expected 3 running processes, got {pids:?}"
    );
    stack.stop().await?;
    for pid in pids {
        ensure!(!pid_alive(pid), "pid {pid} still running after stop");
    }
    for name in ["postgres", "redis", "kafka"] {
        let pidfile = dir.path().join("stack").join(format!("{name}.pid"));
        ensure!(!pidfile.exists(), "{} left behind", pidfile.display());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stack_stops_its_processes() -> Result<()> {
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    let paths = Paths::discover()?;
    let provision_paths = paths.clone();
    tokio::task::spawn_blocking(move || provision::all_once(&provision_paths)).await??;

    let dir = tempfile::tempdir()?;
    let mut stack = Stack::start(
        &paths,
        StackConfig {
            data_dir: dir.path().to_path_buf(),
            ports: Ports::free(),
            broker_jvm: BrokerJvm::QuickStart,
        },
    )
    .await?;
    let pids = stack.pids();
    ensure!(
        pids.len() == 3,
        "expected 3 running processes, got {pids:?}"
    );
    drop(stack);
    for pid in pids {
        ensure!(!pid_alive(pid), "pid {pid} still running after drop");
    }
    Ok(())
}
