//! `cargo xtask cluster up | test | status | down`: the whole system on a real single-node
//! Kubernetes on this machine ([`devstack::cluster`]), deployed as a Minikube user deploys it
//! (the Minikube overlay through the thin `k8s/overlays/cluster`), and tested there.

use std::{path::PathBuf, time::Instant};

use anyhow::{Context as _, Result};
use devstack::{
    Paths,
    cluster::{Cluster, system::SERVICES},
    steps::{cargo, done, step, timed},
};

use crate::minikube::{self, Kube};

mod checks;
mod faults;
mod hostile;

/// The overlay applied on this machine's cluster.
const OVERLAY: &str = "k8s/overlays/cluster";
/// The collector its tracing component exports to, applied first.
const COLLECTOR: &str = "k8s/overlays/cluster/collector";

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Action {
    /// The node, Dapr, the images and the system; keeps what already runs.
    Up,
    /// The tests against the deployed system.
    Test,
    /// What runs, and the check that nothing listens beyond the cluster's own addresses.
    Status,
    /// Stops everything and puts the machine back as `up` found it.
    Down,
}

pub fn cluster(action: Action, only: Option<&str>) -> Result<()> {
    let paths = Paths::discover()?;
    let cluster = Cluster::new(&paths);
    let kube = Kube::kubeconfig(&cluster.bin.join("kubectl"), &cluster.kubeconfig());
    match action {
        Action::Up => {
            let started = Instant::now();
            cluster.up(&paths)?;
            let binaries = release_binaries(&paths)?;
            let t = step(
                "the system's images (services from the Dockerfile; Kafka, PostgreSQL, Redis stand-ins)",
            );
            let changed = cluster.system_images(&paths, &binaries)?;
            done(t);
            let t = step(&format!(
                "applying {COLLECTOR} (the collector the spans go to)"
            ));
            minikube::run(kube.cmd(&["apply", "-k"]).arg(paths.root.join(COLLECTOR)))?;
            done(t);
            minikube::deploy(&paths, &kube, OVERLAY, changed)
                .inspect_err(|_| minikube::diagnose(&kube))?;
            cluster.check_listeners()?;
            println!(
                "\nThe system runs on the cluster (up in {:.0}s): {} -n todo get pods",
                started.elapsed().as_secs_f64(),
                kube.shown
            );
            Ok(())
        }
        Action::Test => {
            let started = Instant::now();
            let model = debug_binary(&paths, "e2e", "scripted-model")?;
            cluster.scripted_model_image(&model)?;
            let state = cluster.state.clone();
            let checks: Vec<(&str, Check)> = vec![
                (
                    "every pod Ready, daprd injected beside every service",
                    Box::new(checks::pods_ready_and_injected),
                ),
                (
                    "/readyz of every service through the cluster",
                    Box::new(checks::readyz),
                ),
                ("the smoke test", Box::new(minikube::smoke_test)),
                ("the MCP tools listed", Box::new(checks::mcp_tools)),
                (
                    "the web page, with a sign-in link printed in the pod",
                    Box::new(checks::web_page),
                ),
                (
                    "a reminder logged by notifications",
                    Box::new(checks::reminder_logged),
                ),
                (
                    "a chat turn against a scripted model in the cluster",
                    Box::new(move |kube: &Kube| checks::chat_turn(kube, &state)),
                ),
                (
                    "a change's spans reach the collector in the cluster",
                    Box::new(checks::traces_reach_the_collector),
                ),
                (
                    "forged and malformed input to every port, slow and vanishing clients",
                    Box::new(hostile::forged_and_malformed_input),
                ),
                (
                    "fault: the chat-api pod deleted under a steady writer",
                    Box::new(faults::delete_chat_api_pod),
                ),
                (
                    "fault: a recurring-tasks pod deleted during completions",
                    Box::new(faults::delete_recurring_tasks_pod),
                ),
                (
                    "fault: the Kafka pod deleted under a steady writer",
                    Box::new(faults::delete_kafka_pod),
                ),
                (
                    "fault: kubectl rollout restart of chat-api under a steady writer",
                    Box::new(faults::rollout_restart_chat_api),
                ),
                (
                    "two chat-api replicas keep each user's events in order",
                    Box::new(faults::two_replicas_keep_each_users_order),
                ),
                (
                    "KEDA scales recurring-tasks out on a backlog and in again",
                    Box::new(faults::keda_scales_on_lag),
                ),
            ];
            for (what, check) in checks {
                if only.is_some_and(|only| !what.contains(only)) {
                    continue;
                }
                let t = step(what);
                check(&kube)
                    .inspect_err(|_| minikube::diagnose(&kube))
                    .with_context(|| format!("cluster test: {what}"))?;
                done(t);
            }
            println!(
                "\ncluster test passed in {:.0}s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Action::Down => cluster.down(),
        Action::Status => {
            println!("processes running: {:?}", cluster.pids());
            println!(
                "{}",
                cluster.kubectl(&["get", "nodes,pods", "-A", "-o", "wide"])?
            );
            cluster.check_listeners()
        }
    }
}

/// One check of `cluster test`.
type Check = Box<dyn Fn(&Kube) -> Result<()>>;

/// `cargo build --locked` with `args` in the workspace, shown as `title`.
fn cargo_build(paths: &Paths, title: &str, args: &[&str]) -> Result<()> {
    timed(title, || {
        cargo(paths, &[&["build", "--locked"], args].concat(), &[])
    })
}

/// Builds `binary` of `package` (dev profile: a test fixture) and answers its path.
fn debug_binary(paths: &Paths, package: &str, binary: &str) -> Result<PathBuf> {
    cargo_build(
        paths,
        &format!("{binary} (cargo build -p {package} --bin {binary})"),
        &["-p", package, "--bin", binary],
    )?;
    Ok(target_dir(paths).join("debug").join(binary))
}

/// Cargo's target directory.
fn target_dir(paths: &Paths) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| paths.root.join("target"), PathBuf::from)
}

/// Builds the services' release binaries (the Dockerfile's builder stage, on this machine:
/// the same workspace, lock file and toolchain) and answers where they are.
fn release_binaries(paths: &Paths) -> Result<PathBuf> {
    let mut args = vec!["--release"];
    for service in SERVICES {
        args.extend(["--bin", service]);
    }
    cargo_build(
        paths,
        "the services' release binaries (cargo build --release)",
        &args,
    )?;
    Ok(target_dir(paths).join("release"))
}
