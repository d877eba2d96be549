//! One stack: PostgreSQL, Redis and Kafka in one data directory, on loopback ports.
//!
//! Layout of `data_dir`:
//!
//! ```text
//! postgres/        PGDATA (initdb once; owned by the `postgres` user when run as root)
//! postgres-run/    PostgreSQL's unix socket directory
//! redis/           Redis working directory (nothing is persisted)
//! kafka/           server.properties, log4j2.properties, data/ (the KRaft log directory)
//! <name>.log       stdout+stderr of each process (appended across runs)
//! <name>.pid       PID of each running process, for cleaning up after a crashed run
//! ```

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, User};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::kafka;
use crate::paths::Paths;
use crate::process::{Managed, free_port, kill_stale, pid_alive, run_captured};
use crate::provision::{postgres_bindir, which};

/// The database the services use, and its owner (password `todo`; loopback connections
/// are trusted, so the password is not checked).
pub const DATABASE: &str = "todo";
/// The database role the services use: a plain login role that owns [`DATABASE`] and may
/// create databases (tests make one per test). The superuser is `postgres`.
pub const DATABASE_USER: &str = "todo";
const DATABASE_PASSWORD: &str = "todo";

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Ports for one stack, all on 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub kafka: u16,
    pub kafka_controller: u16,
    pub redis: u16,
    pub postgres: u16,
}

impl Ports {
    /// The fixed ports of `cargo xtask up`, away from each server's usual port so a
    /// system-wide PostgreSQL or Redis does not get in the way.
    pub fn default_local() -> Self {
        Self {
            kafka: 19092,
            kafka_controller: 19093,
            redis: 16379,
            postgres: 15432,
        }
    }

    /// Ports the OS says are free (for tests; every call gives different ones).
    pub fn free() -> Self {
        Self {
            kafka: free_port(),
            kafka_controller: free_port(),
            redis: free_port(),
            postgres: free_port(),
        }
    }
}

/// What to start: where the data lives and which ports to listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    pub data_dir: PathBuf,
    pub ports: Ports,
}

/// PostgreSQL, Redis and Kafka, running. Stopped by PID on [`Stack::stop`] or on drop.
#[derive(Debug)]
pub struct Stack {
    paths: Paths,
    cfg: StackConfig,
    postgres: Option<Managed>,
    redis: Option<Managed>,
    kafka: Option<Managed>,
}

impl Stack {
    /// Starts PostgreSQL, Redis and Kafka concurrently and returns once each serves:
    /// PostgreSQL answers a query (and has the `todo` role and database), Redis answers
    /// PING, Kafka logged "Kafka Server started".
    ///
    /// - PostgreSQL: `initdb` once into `data_dir/postgres` with trust authentication;
    ///   listens on 127.0.0.1 only, its unix socket in `data_dir/postgres-run`. It refuses to
    ///   run as root, so as root it runs as the `postgres` user (which then needs to reach
    ///   `data_dir`; devstack makes `data_dir` itself traversable).
    /// - Redis: 127.0.0.1 only, nothing persisted (`--save ""`, no AOF).
    /// - Kafka: KRaft, one combined broker and controller, 127.0.0.1 only, storage
    ///   formatted once; topic auto-creation is off (see [`Stack::create_topics`]).
    ///
    /// Processes left running by a crashed earlier run on the same data directory are
    /// stopped first (found through their pidfiles).
    pub async fn start(paths: &Paths, cfg: StackConfig) -> Result<Stack> {
        fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating the data directory {}", cfg.data_dir.display()))?;
        let data_dir = fs::canonicalize(&cfg.data_dir)
            .with_context(|| format!("resolving {}", cfg.data_dir.display()))?;
        let cfg = StackConfig {
            data_dir,
            ports: cfg.ports,
        };
        let dir = &cfg.data_dir;
        kill_stale(&dir.join("postgres.pid"), "postgres", dir, Signal::SIGINT)?;
        kill_stale(&dir.join("redis.pid"), "redis-server", dir, Signal::SIGTERM)?;
        kill_stale(&dir.join("kafka.pid"), "kafka.Kafka", dir, Signal::SIGTERM)?;

        let ports = cfg.ports;
        ensure_free(ports.postgres, "PostgreSQL")?;
        ensure_free(ports.redis, "Redis")?;
        ensure_free(ports.kafka, "Kafka")?;
        ensure_free(ports.kafka_controller, "the Kafka controller")?;

        let (kafka_log, kafka_pidfile) = (dir.join("kafka.log"), dir.join("kafka.pid"));
        let (postgres, redis, kafka) = tokio::try_join!(
            start_postgres(dir, ports.postgres),
            start_redis(dir, ports.redis),
            kafka::start_broker(paths, dir, &ports, &kafka_log, &kafka_pidfile),
        )?;
        Ok(Stack {
            paths: paths.clone(),
            cfg,
            postgres: Some(postgres),
            redis: Some(redis),
            kafka: Some(kafka),
        })
    }

    /// The configuration it runs with (`data_dir` made absolute).
    pub fn config(&self) -> &StackConfig {
        &self.cfg
    }

    /// Kafka's bootstrap address: `127.0.0.1:PORT`.
    pub fn kafka_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.cfg.ports.kafka)
    }

    /// Redis' address: `127.0.0.1:PORT`.
    pub fn redis_addr(&self) -> String {
        format!("127.0.0.1:{}", self.cfg.ports.redis)
    }

    /// The services' database: `postgres://todo:todo@127.0.0.1:PORT/todo`.
    pub fn database_url(&self) -> String {
        self.database_url_for(DATABASE)
    }

    /// The superuser's connection to the `postgres` database.
    pub fn admin_database_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.cfg.ports.postgres
        )
    }

    fn database_url_for(&self, database: &str) -> String {
        format!(
            "postgres://{DATABASE_USER}:{DATABASE_PASSWORD}@127.0.0.1:{}/{database}",
            self.cfg.ports.postgres
        )
    }

    /// Creates a database owned by `todo` unless it exists, and returns its URL (for
    /// tests that each want an empty database). `name` must be a plain identifier.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            bail!("database name {name:?} must be lowercase letters, digits and underscores");
        }
        create_database_if_absent(self.cfg.ports.postgres, name).await?;
        Ok(self.database_url_for(name))
    }

    /// PIDs of the processes that are still running.
    pub fn pids(&mut self) -> Vec<u32> {
        [&mut self.postgres, &mut self.redis, &mut self.kafka]
            .into_iter()
            .flatten()
            .filter_map(|p| p.is_running().then(|| p.pid()))
            .collect()
    }

    /// The Kafka broker's PID, while it runs.
    pub fn kafka_pid(&self) -> Option<u32> {
        self.kafka.as_ref().map(Managed::pid)
    }

    /// Creates each topic unless it exists, with `partitions` partitions, replication 1
    /// and `retention.ms` of 7 days. An existing topic is left as it is.
    pub async fn create_topics(&self, topics: &[&str], partitions: u32) -> Result<()> {
        kafka::create_topics(&self.paths, &self.kafka_bootstrap(), topics, partitions).await
    }

    /// `TopicCommand --describe` output for every non-internal topic.
    pub async fn describe_topics(&self) -> Result<String> {
        kafka::describe_topics(&self.paths, &self.kafka_bootstrap()).await
    }

    /// Fault injection: stops Kafka (SIGTERM, then waits for it to exit; SIGKILL after 30 s).
    pub async fn stop_kafka(&mut self) -> Result<()> {
        if let Some(mut kafka) = self.kafka.take() {
            kafka.shutdown().await;
        }
        Ok(())
    }

    /// Starts Kafka again on the same data and ports and waits until it serves. Does
    /// nothing if it is running.
    pub async fn start_kafka(&mut self) -> Result<()> {
        if let Some(kafka) = &mut self.kafka
            && kafka.is_running()
        {
            return Ok(());
        }
        self.kafka = None;
        let dir = &self.cfg.data_dir;
        ensure_free(self.cfg.ports.kafka, "Kafka")?;
        ensure_free(self.cfg.ports.kafka_controller, "the Kafka controller")?;
        let kafka = kafka::start_broker(
            &self.paths,
            dir,
            &self.cfg.ports,
            &dir.join("kafka.log"),
            &dir.join("kafka.pid"),
        )
        .await?;
        self.kafka = Some(kafka);
        Ok(())
    }

    /// Stops everything (in parallel) and waits until every process has exited.
    pub async fn stop(mut self) -> Result<()> {
        let all: Vec<u32> = [&self.kafka, &self.redis, &self.postgres]
            .into_iter()
            .flatten()
            .map(Managed::pid)
            .collect();
        self.begin_stop_all();
        for process in [&mut self.kafka, &mut self.redis, &mut self.postgres]
            .into_iter()
            .flatten()
        {
            process.shutdown().await;
        }
        let left: Vec<u32> = all.into_iter().filter(|&pid| pid_alive(pid)).collect();
        if !left.is_empty() {
            bail!("processes still running after stop: {left:?}");
        }
        Ok(())
    }

    fn begin_stop_all(&mut self) {
        for process in [&mut self.kafka, &mut self.redis, &mut self.postgres]
            .into_iter()
            .flatten()
        {
            process.begin_stop();
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Signal all first so they stop in parallel; each Managed then waits on its drop.
        self.begin_stop_all();
    }
}

fn ensure_free(port: u16, what: &str) -> Result<()> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .map(drop)
        .with_context(|| {
            format!(
                "port {port} for {what} is in use: stop whatever listens there \
                 (`ss -ltnp | grep :{port}`) or use other ports"
            )
        })
}

/// The account PostgreSQL runs as: itself when not root (PostgreSQL refuses root).
fn postgres_account() -> Result<Option<(Uid, Gid)>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")
        .context("looking up the postgres user")?
        .context(
            "PostgreSQL refuses to run as root and there is no `postgres` user to run it as: \
             install the postgresql package (it creates one) or run as a normal user",
        )?;
    Ok(Some((user.uid, user.gid)))
}

/// Makes `dir` owned by the PostgreSQL account (when running as root) and private.
fn prepare_postgres_dir(dir: &Path, account: Option<(Uid, Gid)>, mode: u32) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if let Some((uid, gid)) = account {
        std::os::unix::fs::chown(dir, Some(uid.as_raw()), Some(gid.as_raw()))
            .with_context(|| format!("handing {} to the postgres user", dir.display()))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", dir.display()))
}

/// As root, PostgreSQL runs as `postgres`, which must be able to walk down to its data.
fn ensure_reachable_by_postgres(data_dir: &Path) -> Result<()> {
    let meta = fs::metadata(data_dir).with_context(|| format!("reading {}", data_dir.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o001 == 0 {
        fs::set_permissions(data_dir, fs::Permissions::from_mode(mode | 0o001))
            .with_context(|| format!("making {} traversable", data_dir.display()))?;
    }
    for ancestor in data_dir.ancestors().skip(1) {
        let mode = fs::metadata(ancestor)
            .with_context(|| format!("reading {}", ancestor.display()))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            bail!(
                "PostgreSQL runs as the postgres user (it refuses root), which cannot enter {}: \
                 `chmod o+x {}`, or put the stack's data directory elsewhere",
                ancestor.display(),
                ancestor.display()
            );
        }
    }
    Ok(())
}

fn as_account(cmd: &mut Command, account: Option<(Uid, Gid)>) {
    if let Some((uid, gid)) = account {
        cmd.uid(uid.as_raw()).gid(gid.as_raw());
    }
}

async fn start_postgres(data_dir: &Path, port: u16) -> Result<Managed> {
    let bindir = postgres_bindir()?;
    let account = postgres_account()?;
    if account.is_some() {
        ensure_reachable_by_postgres(data_dir)?;
    }
    let pgdata = data_dir.join("postgres");
    if !pgdata.join("PG_VERSION").is_file() {
        // initdb into a side directory and rename, so an interrupted initdb is redone.
        let partial = data_dir.join("postgres.initdb");
        if partial.exists() {
            fs::remove_dir_all(&partial)
                .with_context(|| format!("removing {}", partial.display()))?;
        }
        if pgdata.exists() {
            fs::remove_dir_all(&pgdata)
                .with_context(|| format!("removing {}", pgdata.display()))?;
        }
        prepare_postgres_dir(&partial, account, 0o700)?;
        let mut initdb = Command::new(bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&partial)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .current_dir(&partial);
        as_account(&mut initdb, account);
        run_captured(
            &mut tokio::process::Command::from(initdb),
            "initdb failed; delete the stack's data directory to start afresh",
        )
        .await?;
        fs::rename(&partial, &pgdata)
            .with_context(|| format!("moving {} to {}", partial.display(), pgdata.display()))?;
    }
    remove_dead_postmaster_pid(&pgdata);

    let socket_dir = data_dir.join("postgres-run");
    prepare_postgres_dir(&socket_dir, account, 0o755)?;
    // A unix socket path has a ~107-byte limit; without one, PostgreSQL is TCP-only.
    let socket_arg = if socket_dir.as_os_str().len() + 20 < 107 {
        socket_dir.display().to_string()
    } else {
        String::new()
    };
    let mut cmd = Command::new(bindir.join("postgres"));
    cmd.arg("-D")
        .arg(&pgdata)
        .args(["-p", &port.to_string(), "-h", "127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={socket_arg}"))
        // Test suites open a pool per test.
        .args(["-c", "max_connections=200", "-c", "logging_collector=off"])
        .current_dir(&pgdata);
    as_account(&mut cmd, account);
    // SIGINT is PostgreSQL's "fast" shutdown; SIGTERM would wait for every client to leave.
    let mut postgres = Managed::spawn(
        "postgres",
        cmd,
        &data_dir.join("postgres.log"),
        Some(&data_dir.join("postgres.pid")),
    )?
    .with_stop(Signal::SIGINT, Duration::from_secs(20));

    let psql = bindir.join("psql");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let mut probe = psql_command(&psql, port, "postgres");
        probe.args(["-c", "SELECT 1"]);
        if run_captured(&mut probe, "").await.is_ok() {
            break;
        }
        if !postgres.is_running() {
            return Err(postgres.exited_error());
        }
        if Instant::now() >= deadline {
            bail!(
                "PostgreSQL did not answer a query on port {port} within {READY_TIMEOUT:?}; end of {}:\n{}",
                postgres.log_file().display(),
                postgres.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut role = psql_command(&psql, port, "postgres");
    role.args([
        "-c",
        &format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{DATABASE_USER}') \
             THEN CREATE ROLE {DATABASE_USER} LOGIN CREATEDB PASSWORD '{DATABASE_PASSWORD}'; \
             END IF; END $$;"
        ),
    ]);
    run_captured(&mut role, "creating the todo role failed").await?;
    create_database_if_absent(port, DATABASE).await?;
    Ok(postgres)
}

async fn create_database_if_absent(port: u16, name: &str) -> Result<()> {
    let psql = postgres_bindir()?.join("psql");
    let mut exists = psql_command(&psql, port, "postgres");
    exists.args([
        "-c",
        &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
    ]);
    let found = run_captured(&mut exists, "is PostgreSQL running?").await?;
    if found.trim() == "1" {
        return Ok(());
    }
    let mut create = psql_command(&psql, port, "postgres");
    create.args([
        "-c",
        &format!("CREATE DATABASE {name} OWNER {DATABASE_USER}"),
    ]);
    match run_captured(&mut create, "creating the database failed").await {
        Ok(_) => Ok(()),
        // Created meanwhile by a concurrent caller.
        Err(err) if format!("{err:#}").contains("already exists") => Ok(()),
        Err(err) => Err(err),
    }
}

fn psql_command(psql: &Path, port: u16, database: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(psql);
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "postgres",
        "-d",
        database,
    ])
    .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
    .env_remove("PGPASSWORD")
    .env_remove("PGSERVICE");
    cmd
}

/// After a SIGKILL, postmaster.pid stays behind; PostgreSQL refuses to start if its PID
/// now belongs to some other live process.
fn remove_dead_postmaster_pid(pgdata: &Path) {
    let lock = pgdata.join("postmaster.pid");
    let pid = fs::read_to_string(&lock).ok().and_then(|text| {
        text.lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
    });
    if let Some(pid) = pid {
        let is_postgres = fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains("postgres"));
        if !pid_alive(pid) || !is_postgres {
            let _ = fs::remove_file(&lock);
        }
    }
}

async fn start_redis(data_dir: &Path, port: u16) -> Result<Managed> {
    let redis_server = which("redis-server").context(
        "redis-server is not installed: run `cargo xtask provision` or `apt-get install redis-server`",
    )?;
    let dir = data_dir.join("redis");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Command::new(redis_server);
    cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--protected-mode", "yes", "--logfile", ""])
        .arg("--dir")
        .arg(&dir)
        .current_dir(&dir);
    let mut redis = Managed::spawn(
        "redis",
        cmd,
        &data_dir.join("redis.log"),
        Some(&data_dir.join("redis.pid")),
    )?
    .with_stop(Signal::SIGTERM, Duration::from_secs(10));

    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match redis_ping(port).await {
            Ok(()) => return Ok(redis),
            Err(err) => {
                if !redis.is_running() {
                    return Err(redis.exited_error());
                }
                if Instant::now() >= deadline {
                    return Err(err.context(format!(
                        "Redis did not answer PING on port {port}; end of {}:\n{}",
                        redis.log_file().display(),
                        redis.log_tail(30)
                    )));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn redis_ping(port: u16) -> Result<()> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
    stream.write_all(b"PING\r\n").await?;
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).await?;
    if &reply != b"+PONG\r\n" {
        bail!(
            "Redis answered {:?} to PING",
            String::from_utf8_lossy(&reply)
        );
    }
    Ok(())
}
