use std::{
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use devstack::{Managed, Paths, Ports, Stack, StackConfig, provision as prov};
use nix::sys::signal::Signal;

/// Topics the system uses; created by `up` and by the tests' stacks.
const TOPICS: [&str; 4] = [
    "task-events",
    "reminders",
    "task-events-dlq",
    "reminders-dlq",
];
const TOPIC_PARTITIONS: u32 = 3;

pub(crate) fn step(what: &str) -> Instant {
    println!("==> {what}");
    Instant::now()
}

pub(crate) fn done(started: Instant) {
    println!("    done in {:.1}s", started.elapsed().as_secs_f64());
}

pub fn provision() -> Result<()> {
    let paths = Paths::discover()?;
    prov::all(&paths)
}

/// Runs `cargo <args>` in the workspace root, streaming its output.
pub(crate) fn cargo(paths: &Paths, args: &[&str], envs: &[(&str, String)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(&paths.root)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The local JWT secret, created once under `.data/`.
fn jwt_secret(paths: &Paths) -> Result<String> {
    let file = paths.data.join("jwt-secret");
    if let Ok(s) = fs::read_to_string(&file)
        && s.trim().len() >= 32
    {
        return Ok(s.trim().to_owned());
    }
    fs::create_dir_all(&paths.data)?;
    let secret = random_secret(48);
    fs::write(&file, &secret).with_context(|| format!("writing {}", file.display()))?;
    Ok(secret)
}

/// `len` random letters and digits.
fn random_secret(len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| CHARS[rand::random_range(0..CHARS.len())] as char)
        .collect()
}

pub async fn up() -> Result<()> {
    let paths = Paths::discover()?;
    prov::all(&paths)?;
    let runtime = devstack::dapr_install::locate(&paths)?;
    let cli = devstack::dapr_install::cli(&paths)?;
    println!("Running {}", runtime.describe());

    let t = step("building the services");
    cargo(&paths, &["build", "--bins"], &[])?;
    done(t);

    let t = step("starting PostgreSQL, Redis and Kafka (data in .data/stack)");
    let stack = Stack::start(
        &paths,
        StackConfig {
            data_dir: paths.data.join("stack"),
            ports: Ports::default_local(),
        },
    )
    .await?;
    stack.create_topics(&TOPICS, TOPIC_PARTITIONS).await?;
    done(t);

    let secret = jwt_secret(&paths)?;
    let env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", stack.database_url()),
        ("JWT_SECRET", secret),
    ];
    // Fresh for every run, as the Kubernetes secrets are per cluster: every daprd requires
    // DAPR_API_TOKEN from its app, and sends APP_API_TOKEN to its app, which requires it
    // on the event and cron routes. `dapr run` passes its environment to the sidecars and
    // the apps alike, so nothing that merely reaches a local port can post an event.
    let tokens: Vec<(&str, String)> = vec![
        ("APP_API_TOKEN", random_secret(40)),
        ("DAPR_API_TOKEN", random_secret(40)),
    ];

    let t = step("applying database migrations");
    let status = Command::new(paths.root.join("target/debug/chat-api"))
        .arg("migrate")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .status()
        .context("running chat-api migrate")?;
    if !status.success() {
        bail!("migrations failed ({status})");
    }
    done(t);

    // What `cargo xtask dlq` needs to act on this running system (owner-only, removed at stop).
    let run_env = paths.data.join("run.env");
    write_private(
        &run_env,
        &env.iter()
            .filter(|(k, _)| *k == "DATABASE_URL")
            .chain(&tokens)
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect::<String>(),
    )?;

    let t = step("starting the services with their sidecars (dapr run -f dapr.yaml)");
    let log = paths.data.join("dapr-run.log");
    let all_env: Vec<(&str, String)> = env.iter().chain(&tokens).cloned().collect();
    let mut dapr = devstack::run_file::start(&paths, &runtime, &cli, &all_env, &log).await?;
    done(t);

    println!();
    println!(
        "The system is up. chat-api: http://127.0.0.1:3000   (logs: {})",
        log.display()
    );
    println!("  token:  cargo xtask token alice");
    println!("  create: curl -s -X POST http://127.0.0.1:3000/api/alice/tasks \\");
    println!("            -H \"Authorization: Bearer $(cargo xtask token alice)\" \\");
    println!("            -H 'content-type: application/json' -d '{{\"title\":\"Try it\"}}'");
    println!("Press Ctrl-C to stop everything.");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => { r.context("waiting for Ctrl-C")?; }
        _ = term.recv() => {}
        () = wait_exit(&mut dapr) => { eprintln!("dapr run exited; stopping. End of its log:\n{}", dapr.log_tail(30)); }
    }
    let t = step("stopping the services and the stack");
    let _ = fs::remove_file(&run_env);
    dapr.shutdown().await;
    stack.stop().await?;
    done(t);
    Ok(())
}

async fn wait_exit(process: &mut Managed) {
    while process.is_running() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every test, in one `cargo test --workspace` (one build, one feature resolution): unit
/// and in-process tests on SQLite and on a real PostgreSQL started here, and the end-to-end
/// suite, each test of which starts its own real stack. Then property-based fuzzing of the
/// API from its OpenAPI document. Tests run in parallel within each test binary, except
/// those that start a whole stack (Kafka, PostgreSQL, Redis and sidecars): they take turns
/// (`e2e::Env` holds the turn), which is what a 2-core machine can carry.
pub async fn test(extra: &[String]) -> Result<()> {
    let paths = Paths::discover()?;
    prov::all(&paths)?;

    let t = step("cargo clippy: no warnings in any crate or test");
    cargo(
        &paths,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )
    .context("clippy found problems (see above)")?;
    done(t);

    let t = step("cargo fmt --check: the tree is formatted with rustfmt's defaults");
    cargo(&paths, &["fmt", "--all", "--check"], &[])
        .context("the tree is not formatted: run `cargo fmt --all`")?;
    done(t);

    let t = step("starting PostgreSQL for the in-process suites");
    let tmp = paths.data.join("test-stack");
    let _ = fs::remove_dir_all(&tmp);
    let stack = Stack::start(
        &paths,
        StackConfig {
            data_dir: tmp.clone(),
            ports: Ports::free(),
        },
    )
    .await?;
    done(t);

    let t = step(
        "cargo test --workspace: unit, in-process (SQLite and PostgreSQL) and end-to-end tests",
    );
    let mut args = vec!["test", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    let result = cargo(
        &paths,
        &args,
        &[("TEST_POSTGRES_URL", stack.admin_database_url())],
    );
    let result = match result {
        Ok(()) => {
            done(t);
            let t = step(
                "property-based API fuzzing from the OpenAPI document (schemathesis; SQLite and PostgreSQL)",
            );
            let sqlite = format!("sqlite://{}/fuzz.db", tmp.display());
            let fuzzed = async {
                fuzz_api(&paths, &sqlite).await?;
                fuzz_api(&paths, &stack.create_database("fuzz").await?).await
            }
            .await;
            if fuzzed.is_ok() {
                done(t);
            }
            fuzzed
        }
        Err(e) => Err(e),
    };
    stack.stop().await?;
    let _ = fs::remove_dir_all(&tmp);
    result?;
    println!("all tests passed");
    Ok(())
}

/// Runs `tools/fuzz-api.sh` against a chat-api of its own on `database_url`: any 5xx fails.
async fn fuzz_api(paths: &Paths, database_url: &str) -> Result<()> {
    const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret-fuzz";
    const FUZZ_SECONDS: &str = "60";
    let port = devstack::free_port();
    let bin = paths.root.join("target/debug/chat-api");
    let env = [
        ("JWT_SECRET", SECRET.to_owned()),
        ("DATABASE_URL", database_url.to_owned()),
        ("MIGRATE_ON_START", "true".to_owned()),
        ("APP_PORT", port.to_string()),
        ("RELAY_ENABLED", "false".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let mut cmd = Command::new(&bin);
    cmd.arg("serve")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut server = Managed::spawn(
        "chat-api (fuzz target)",
        cmd,
        &paths.data.join("fuzz-chat-api.log"),
        None,
    )?;
    let base = format!("http://127.0.0.1:{port}");
    server
        .wait_http_ok(&format!("{base}/readyz"), Duration::from_secs(30))
        .await?;
    let token = Command::new(&bin)
        .args(["token", "alice"])
        .env("JWT_SECRET", SECRET)
        .output()
        .context("minting the fuzzer's token")?;
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    let status = Command::new("bash")
        .arg(paths.root.join("tools/fuzz-api.sh"))
        .args([base.as_str(), token.as_str(), FUZZ_SECONDS])
        .current_dir(&paths.root)
        .status()
        .context("running tools/fuzz-api.sh")?;
    server.shutdown().await;
    if !status.success() {
        bail!(
            "the API fuzzer found server errors ({status}); the server's log: {}",
            paths.data.join("fuzz-chat-api.log").display()
        );
    }
    Ok(())
}

pub fn token(user: &str) -> Result<()> {
    let paths = Paths::discover()?;
    let secret = jwt_secret(&paths)?;
    let bin = paths.root.join("target/debug/chat-api");
    if !bin.is_file() {
        bail!(
            "{} is missing: run `cargo xtask up` (or `cargo build --bins`) first",
            bin.display()
        );
    }
    let status = Command::new(bin)
        .args(["token", user])
        .env("JWT_SECRET", secret)
        .status()
        .context("running chat-api token")?;
    if !status.success() {
        bail!("chat-api token failed ({status})");
    }
    Ok(())
}

/// Writes `text` to `file`, readable by its owner only.
fn write_private(file: &std::path::Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("writing {}", file.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .with_context(|| format!("writing {}", file.display()))
}

/// `chat-api dlq ...` against the system `cargo xtask up` runs: its database, chat-api's
/// sidecar and this run's token.
pub fn dlq(args: &[String]) -> Result<()> {
    let paths = Paths::discover()?;
    let run_env = paths.data.join("run.env");
    let text = fs::read_to_string(&run_env).with_context(|| {
        format!(
            "{} is missing: start the local system first (`cargo xtask up`)",
            run_env.display()
        )
    })?;
    let bin = paths.root.join("target/debug/chat-api");
    let status = Command::new(bin)
        .arg("dlq")
        .args(args)
        .envs(text.lines().filter_map(|l| l.split_once('=')))
        .env("DAPR_GRPC_PORT", "50001")
        .status()
        .context("running chat-api dlq")?;
    if !status.success() {
        bail!("chat-api dlq failed ({status})");
    }
    Ok(())
}

/// Stops what a crashed `up` left: the services (through `dapr run`'s pidfile) and the stack.
pub async fn down() -> Result<()> {
    let paths = Paths::discover()?;
    let pidfile = paths.data.join("dapr-run.pid");
    kill_pidfile(&pidfile)?;
    let _ = fs::remove_file(paths.data.join("run.env"));
    let data = paths.data.join("stack");
    for name in ["kafka.pid", "redis.pid", "postgres.pid"] {
        kill_pidfile(&data.join(name))?;
    }
    println!("stopped whatever was left running");
    Ok(())
}

fn kill_pidfile(pidfile: &Path) -> Result<()> {
    let Ok(raw) = fs::read_to_string(pidfile) else {
        return Ok(());
    };
    let Ok(pid) = raw.trim().parse::<i32>() else {
        return Ok(());
    };
    if devstack::pid_alive(pid as u32) {
        println!("stopping pid {pid} ({})", pidfile.display());
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        for _ in 0..100 {
            if !devstack::pid_alive(pid as u32) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if devstack::pid_alive(pid as u32) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let _ = fs::remove_file(pidfile);
    Ok(())
}
