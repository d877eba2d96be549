//! The local system: `cargo xtask up` (every service beside its sidecar through
//! `dapr run -f dapr.yaml`, on the stack), `down` (what a crashed `up` left), `token` and
//! `dlq` (against what `up` runs).

use std::{fs, path::Path, process::Command, time::Duration};

use anyhow::{Context as _, Result, bail};
use devstack::{
    BrokerJvm, Managed, Paths, Ports, Stack, StackConfig, provision as prov,
    steps::{cargo, done, step},
};
use nix::sys::signal::Signal;

/// Topics the system uses; created by `up` and by the tests' stacks.
const TOPICS: [&str; 4] = [
    "task-events",
    "reminders",
    "task-events-dlq",
    "reminders-dlq",
];
const TOPIC_PARTITIONS: u32 = 3;

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

/// Runs the whole system locally until Ctrl-C (or SIGTERM), then stops all it started.
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
            broker_jvm: BrokerJvm::Server,
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
        "The system is up. chat-api: {}   (logs: {})",
        api_url()?,
        log.display()
    );
    match signed_token(&paths, "alice", true) {
        Ok(link) => println!("  open:   {link}   (the web page, signed in as alice)"),
        Err(err) => println!("  (no sign-in link: {err:#})"),
    }
    println!("  link:   cargo xtask token <user> --link");
    println!("  token:  cargo xtask token alice");
    println!(
        "  create: curl -s -X POST {}/api/alice/tasks \\",
        api_url()?
    );
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

/// Where `up` serves chat-api (its port in `dapr.yaml`).
fn api_url() -> Result<String> {
    let app =
        devstack::run_file::run_file_app("chat-api").context("dapr.yaml has no chat-api app")?;
    Ok(format!("http://127.0.0.1:{}", app.app_port))
}

pub fn token(user: &str, link: bool) -> Result<()> {
    let paths = Paths::discover()?;
    println!("{}", signed_token(&paths, user, link)?);
    Ok(())
}

/// A token for `user` signed with this checkout's JWT secret (by `chat-api token`), or a
/// sign-in link to the web page of the system `up` runs.
fn signed_token(paths: &Paths, user: &str, link: bool) -> Result<String> {
    let secret = jwt_secret(paths)?;
    let bin = paths.root.join("target/debug/chat-api");
    if !bin.is_file() {
        bail!(
            "{} is missing: run `cargo xtask up` (or `cargo build --bins`) first",
            bin.display()
        );
    }
    let mut command = Command::new(bin);
    command.args(["token", user]).env("JWT_SECRET", secret);
    if link {
        command.args(["--link", &api_url()?]);
    }
    let output = command.output().context("running chat-api token")?;
    if !output.status.success() {
        bail!(
            "chat-api token failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
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
    let chat_api = devstack::run_file::run_file_app("chat-api")
        .context("no chat-api in the run file's apps")?;
    let bin = paths.root.join("target/debug/chat-api");
    let status = Command::new(bin)
        .arg("dlq")
        .args(args)
        .envs(text.lines().filter_map(|l| l.split_once('=')))
        .env("DAPR_GRPC_PORT", chat_api.dapr_grpc_port.to_string())
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
