//! `cargo xtask <task>`: the project's developer tasks, in Rust.
//!
//! - `provision`: install or build everything the stack needs (idempotent, cached).
//! - `up`: run the whole system locally: Kafka, Redis, PostgreSQL, then every service with
//!   its sidecar through `dapr run -f dapr.yaml`. Ctrl-C stops everything it started.
//! - `test`: every test: unit and in-process (SQLite and PostgreSQL), then end to end.
//! - `bench`: the benchmark of the whole pipeline on the real stack (the `bench` crate,
//!   release build); prints the report and appends it to `BENCHMARKS.md`.
//! - `token <user_id> [--link]`: a bearer token for the local system started by `up`, or a
//!   sign-in link to its web page.
//! - `down`: stop what a crashed `up` left running.
//! - `cluster up | test | status | down`: the whole system on a real single-node Kubernetes
//!   on this machine, built from package registries (`cluster.rs`, `devstack::cluster`).
//! - `minikube`: build the images into Minikube, install Dapr and KEDA, apply
//!   `k8s/overlays/minikube`, wait, smoke-test (see `minikube/`).

mod args;
mod cluster;
mod local;
mod minikube;
mod test;

use std::process::ExitCode;

use clap::Parser as _;

/// The project's developer tasks.
#[derive(Debug, clap::Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
enum Cli {
    /// Install or build everything the stack needs (idempotent, cached).
    Provision,
    /// Run the whole system locally (Kafka, Redis, PostgreSQL, every service beside its
    /// sidecar); Ctrl-C stops it.
    Up,
    /// Every test: clippy, rustfmt, unit, in-process and end to end.
    Test {
        /// Passed on to `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The benchmark (`cargo xtask bench --help` for its options).
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A bearer token for the local system started by `up`.
    Token {
        /// The user the token is for.
        user: String,
        /// Print a sign-in link to the web page instead (the token in its fragment).
        #[arg(long)]
        link: bool,
    },
    /// Dead letters of the local system: `list [<dlq>]` or `replay <dlq> [<topic>]`.
    Dlq {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Stop what a crashed `up` left running.
    Down,
    /// The whole system on a real single-node Kubernetes on this machine, from package
    /// registries: `up` builds, starts and deploys it, `test` tests it, `status` shows it,
    /// `down` stops it and puts the machine back.
    Cluster {
        #[arg(value_enum)]
        action: cluster::Action,
        /// `test`: only the checks whose title contains this text.
        #[arg(long)]
        only: Option<String>,
    },
    /// The whole system on Minikube (`cargo xtask minikube --help` for its options).
    #[command(disable_help_flag = true)]
    Minikube {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let result = match cli {
        Cli::Provision => devstack::Paths::discover().and_then(|p| devstack::provision::all(&p)),
        Cli::Up => runtime.block_on(local::up()),
        Cli::Test { args } => {
            let raw: Vec<String> = std::env::args().collect();
            runtime.block_on(test::test(&cargo_test_args(args, &raw)))
        }
        Cli::Bench { args } => bench(&args),
        Cli::Token { user, link } => local::token(&user, link),
        Cli::Dlq { args } => local::dlq(&args),
        Cli::Down => runtime.block_on(local::down()),
        Cli::Cluster { action, only } => cluster::cluster(action, only.as_deref()),
        Cli::Minikube { args } => minikube::minikube(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask bench ...`: the `bench` crate, with the same arguments.
fn bench(args: &[String]) -> anyhow::Result<()> {
    let paths = devstack::Paths::discover()?;
    let mut run = vec!["run", "--quiet", "--locked", "--package", "bench", "--"];
    run.extend(args.iter().map(String::as_str));
    devstack::steps::cargo(&paths, &run, &[])
}

/// The arguments for `cargo test`. Clap takes a `--` right after `test` as its own separator
/// and drops it, so `cargo xtask test -- --nocapture` would hand cargo `--nocapture`; the
/// `--` is put back when the command line (`raw`) had it there.
fn cargo_test_args(parsed: Vec<String>, raw: &[String]) -> Vec<String> {
    let after_test = raw.iter().skip_while(|a| *a != "test").nth(1);
    if after_test.is_some_and(|a| a == "--") && parsed.first().is_none_or(|a| a != "--") {
        std::iter::once("--".to_owned()).chain(parsed).collect()
    } else {
        parsed
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Cli, cargo_test_args};

    /// What `cargo test` gets for this command line.
    fn cargo_args(line: &[&str]) -> Vec<String> {
        let raw: Vec<String> = line.iter().map(|a| (*a).to_owned()).collect();
        match Cli::try_parse_from(&raw).expect("the command line parses") {
            Cli::Test { args } => cargo_test_args(args, &raw),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn test_arguments_reach_cargo_test_as_written() {
        assert_eq!(
            cargo_args(&["cargo xtask", "test", "--", "--nocapture"]),
            ["--", "--nocapture"]
        );
        assert_eq!(
            cargo_args(&["cargo xtask", "test", "-p", "e2e", "--", "--nocapture"]),
            ["-p", "e2e", "--", "--nocapture"]
        );
        assert_eq!(
            cargo_args(&["cargo xtask", "test", "-p", "e2e", "--test", "recurring"]),
            ["-p", "e2e", "--test", "recurring"]
        );
        assert!(cargo_args(&["cargo xtask", "test"]).is_empty());
    }
}
