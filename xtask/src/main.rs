//! `cargo xtask <task>`: the project's developer tasks, in Rust.
//!
//! - `provision`: install or build everything the stack needs (idempotent, cached).
//! - `up`: run the whole system locally: Kafka, Redis, PostgreSQL, then every service with
//!   its sidecar through `dapr run -f dapr.yaml`. Ctrl-C stops everything it started.
//! - `test`: every test: unit and in-process (SQLite and PostgreSQL), then end to end.
//! - `bench`: the benchmark of the whole pipeline on the real stack (release build); prints
//!   the report and appends it to `BENCHMARKS.md`.
//! - `token <user_id>`: a bearer token for the local system started by `up`.
//! - `down`: stop what a crashed `up` left running.
//! - `minikube`: build the images into Minikube, install Dapr and KEDA, apply
//!   `k8s/overlays/minikube`, wait, smoke-test (see `minikube/`).

mod bench;
mod minikube;
mod tasks;

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage: cargo xtask <provision | up | test | bench [options] | token <user_id> | dlq list|replay ... | down | minikube [options]>"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.first().map(String::as_str) {
        Some("provision") => tasks::provision(),
        Some("up") => runtime.block_on(tasks::up()),
        Some("test") => runtime.block_on(tasks::test(&args[1..])),
        Some("bench") => runtime.block_on(bench::bench(&args[1..])),
        Some("token") => match args.get(1) {
            Some(user) => tasks::token(user),
            None => return usage(),
        },
        Some("dlq") => tasks::dlq(&args[1..]),
        Some("down") => runtime.block_on(tasks::down()),
        Some("minikube") => minikube::minikube(&args[1..]),
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
