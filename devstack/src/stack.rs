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
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::paths::Paths;
use crate::postgres::{DATABASE, DATABASE_PASSWORD, DATABASE_USER};
use crate::process::{Managed, free_port, kill_stale, pid_alive};
use crate::{kafka, kafka::BrokerJvm, postgres, redis};

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

    fn broker(&self) -> kafka::BrokerPorts {
        kafka::BrokerPorts {
            kafka: self.kafka,
            controller: self.kafka_controller,
        }
    }
}

/// What to start: where the data lives and which ports to listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    pub data_dir: PathBuf,
    pub ports: Ports,
    /// How the broker's JVM is tuned: [`BrokerJvm::QuickStart`] for tests.
    pub broker_jvm: BrokerJvm,
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
        let cfg = StackConfig { data_dir, ..cfg };
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
            postgres::start_postgres(dir, ports.postgres),
            redis::start_redis(dir, ports.redis),
            kafka::start_broker(
                paths,
                dir,
                ports.broker(),
                &kafka_log,
                &kafka_pidfile,
                cfg.broker_jvm
            ),
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
        postgres::create_database_if_absent(self.cfg.ports.postgres, name).await?;
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
            self.cfg.ports.broker(),
            &dir.join("kafka.log"),
            &dir.join("kafka.pid"),
            self.cfg.broker_jvm,
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
