//! The system as `cargo xtask up` runs it (`dapr run -f dapr.yaml` through the real dapr
//! CLI): every socket any of its processes listens on is on loopback, and stopping it
//! leaves no process behind.

use std::{collections::BTreeSet, process::Command, time::Duration};

use devstack::{
    BrokerJvm, Paths, Ports, Stack, StackConfig, listeners_of, pid_alive, with_descendants,
};

#[tokio::test]
async fn every_process_of_the_run_file_listens_on_loopback_only_and_stops() {
    let _turn = e2e::stack_turn().await;
    let paths = Paths::discover().expect("paths");
    let dir = tempfile::Builder::new()
        .prefix("todo-run-file-")
        .tempdir()
        .expect("tempdir");
    // The run file's components name the fixed ports of `cargo xtask up`.
    let mut stack = Stack::start(
        &paths,
        StackConfig {
            data_dir: dir.path().join("stack"),
            ports: Ports::default_local(),
            broker_jvm: BrokerJvm::QuickStart,
        },
    )
    .await
    .expect("the stack on the ports of `cargo xtask up` (is `cargo xtask up` running?)");
    stack
        .create_topics(&e2e::TOPICS, e2e::TOPIC_PARTITIONS)
        .await
        .expect("topics");
    let env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", stack.database_url()),
        ("JWT_SECRET", e2e::JWT_SECRET.to_owned()),
        (
            "APP_API_TOKEN",
            "run-file-app-token-run-file-app-token".to_owned(),
        ),
        (
            "DAPR_API_TOKEN",
            "run-file-dapr-token-run-file-dapr-token".to_owned(),
        ),
    ];
    let migrated = Command::new(paths.root.join("target/debug/chat-api"))
        .arg("migrate")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .status()
        .expect("chat-api migrate");
    assert!(migrated.success(), "migrations: {migrated}");

    let runtime = devstack::dapr_install::locate(&paths).expect("daprd");
    let cli = devstack::dapr_install::cli(&paths).expect("dapr CLI");
    let log = dir.path().join("dapr-run.log");
    let mut dapr = devstack::run_file::start(&paths, &runtime, &cli, &env, &log)
        .await
        .expect("dapr run -f dapr.yaml");

    let mut pids: BTreeSet<u32> = with_descendants(dapr.pid());
    pids.extend(stack.pids());
    let listeners = listeners_of(&pids).expect("ss");
    let daprd: Vec<_> = listeners.iter().filter(|l| l.process == "daprd").collect();
    // Each of the four sidecars: HTTP API, gRPC API, internal gRPC API, metrics.
    assert!(
        daprd.len() >= 16,
        "fewer daprd listeners than four sidecars have: {listeners:#?}"
    );
    for app in devstack::run_file::RUN_FILE_APPS {
        for port in [app.app_port, app.dapr_grpc_port] {
            assert!(
                listeners
                    .iter()
                    .any(|l| l.local == format!("127.0.0.1:{port}")),
                "{} is not listening on 127.0.0.1:{port}: {listeners:#?}",
                app.id
            );
        }
    }
    let exposed: Vec<_> = listeners.iter().filter(|l| !l.on_loopback()).collect();
    assert!(
        exposed.is_empty(),
        "listening beyond loopback: {exposed:#?}\n(all: {listeners:#?})"
    );

    dapr.shutdown().await;
    stack.stop().await.expect("stopping the stack");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| pid_alive(p)).collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after the stop: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
