//! The end-to-end harness: a real stack (PostgreSQL, Redis, Kafka) on free loopback ports in
//! a temporary directory, the project's component YAML pointed at it, and the service
//! binaries each started beside its own real `daprd`. Everything is stopped by PID when the
//! values are dropped, also when a test fails.
//!
//! The binaries must be built first (`cargo xtask test` does `cargo build --bins`).

pub mod browser;
pub mod load;
pub mod metrics;
pub mod model;
pub mod reminders;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use api::auth::JwtKeys;
use devstack::{
    BrokerJvm, Collector, Managed, Paths, Ports, Sidecar, SidecarConfig, Stack, StackConfig,
    render_components,
};
use serde::Deserialize;
use todo_domain::{TaskEvent, UserId, topics};

pub const JWT_SECRET: &str = "e2e-secret-e2e-secret-e2e-secret-e2e-secret";
pub const TOPIC_PARTITIONS: u32 = 3;
/// Every topic the system uses.
pub const TOPICS: [&str; 4] = [
    topics::TASK_EVENTS,
    topics::REMINDERS,
    topics::TASK_EVENTS_DLQ,
    topics::REMINDERS_DLQ,
];

/// The running infrastructure and the rendered components for one test.
pub struct Env {
    pub paths: Paths,
    pub stack: Stack,
    pub resources: PathBuf,
    pub dir: tempfile::TempDir,
    pub jwt: JwtKeys,
    /// Where services started from now on export their spans, and daprd its own
    /// ([`Env::export_traces`]).
    pub tracing: Option<Tracing>,
    /// This test's turn: dropped last, after the stack.
    _turn: StackTurn,
}

/// The tests of the suite run in parallel, but at most [`stacks_at_once`] of those that
/// start a whole stack (Kafka, PostgreSQL, Redis and sidecars) at a time: [`Env::start`]
/// waits for a turn, which its [`Env`] gives back when dropped. Drop a test's [`Service`]s
/// before its `Env` (declare them after it, or after it in a struct's fields last), so the
/// next test's stack does not start beside their sidecars.
static STACK_TURNS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();

/// How many stacks may run at once: `E2E_STACKS`, by default 2. Most of a stack's time is
/// spent waiting (for a broker, a cron tick, a redelivery), so two fit on 2 cores; 1 runs
/// the tests one after another.
pub fn stacks_at_once() -> usize {
    std::env::var("E2E_STACKS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(2)
}

/// A turn to run a whole stack (see [`STACK_TURNS`]), held until dropped.
pub type StackTurn = tokio::sync::SemaphorePermit<'static>;

/// Waits for a turn to run a whole stack; a test that starts one without [`Env::start`]
/// (the run file's) holds it while its stack runs.
pub async fn stack_turn() -> StackTurn {
    STACK_TURNS
        .get_or_init(|| tokio::sync::Semaphore::new(stacks_at_once()))
        .acquire()
        .await
        .expect("the semaphore of stack turns is never closed")
}

/// An OpenTelemetry Collector receiving the spans of the services and their sidecars.
pub struct Tracing {
    pub collector: Collector,
    /// The sidecars' Dapr Configuration: every call sampled, spans sent to the collector.
    pub dapr_config: PathBuf,
}

impl Tracing {
    /// Starts a Collector with its files in the environment's directory, and writes the Dapr
    /// Configuration that sends a sidecar's spans to it. A service exports to it with
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (batches every 200 ms).
    pub async fn start(env: &Env) -> Result<Tracing> {
        let dir = env
            .dir
            .path()
            .join(format!("otelcol-{}", devstack::free_port()));
        let collector = Collector::start(&env.paths, &dir).await?;
        let dapr_config = dir.join("dapr-tracing.yaml");
        std::fs::write(
            &dapr_config,
            format!(
                "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: e2e-tracing\n\
                 spec:\n  tracing:\n    samplingRate: \"1\"\n    otel:\n      endpointAddress: \"{}\"\n\
                 \x20     isSecure: false\n      protocol: grpc\n",
                collector.address()
            ),
        )?;
        Ok(Tracing {
            collector,
            dapr_config,
        })
    }
}

/// A service binary running beside its sidecar.
pub struct Service {
    /// `<app id>-<port>`: names its log files.
    pub name: String,
    pub bin: String,
    pub port: u16,
    pub process: Managed,
    pub sidecar: Sidecar,
    pub base: String,
    pub env: Vec<(String, String)>,
}

/// How a service's sidecar watches and calls it.
pub(crate) struct SidecarOptions<'a> {
    /// daprd probes this path and pauses subscriptions and input bindings while it fails.
    pub health_path: Option<&'a str>,
    /// daprd sends it on every call to the app, and the app requires it (`APP_API_TOKEN`).
    pub app_token: Option<&'a str>,
    /// More environment for daprd (the chat model's `CHAT_MODEL_*`).
    pub sidecar_env: Vec<(String, String)>,
    /// Where the app and daprd export spans; `None`: the environment's, if any.
    pub tracing: Option<&'a Tracing>,
}

impl Env {
    /// Starts PostgreSQL, Redis and Kafka (with the topics) on free ports and renders
    /// `components/` for them; the broker's JVM tuned to start quickly.
    pub async fn start() -> Result<Env> {
        Env::start_with(BrokerJvm::QuickStart).await
    }

    /// As [`Env::start`], the broker's JVM tuned as `broker_jvm` says.
    pub async fn start_with(broker_jvm: BrokerJvm) -> Result<Env> {
        let turn = stack_turn().await;
        let paths = Paths::discover()?;
        let dir = tempfile::Builder::new().prefix("todo-e2e-").tempdir()?;
        // The broker starts from a copy of a formatted directory that holds the topics.
        devstack::seed_broker(&paths, &dir.path().join("stack"), &TOPICS, TOPIC_PARTITIONS).await?;
        let stack = Stack::start(
            &paths,
            StackConfig {
                data_dir: dir.path().join("stack"),
                ports: Ports::free(),
                broker_jvm,
            },
        )
        .await
        .context("starting the stack")?;
        let resources = dir.path().join("components");
        render_components(
            &paths.root.join("components"),
            &resources,
            &[
                ("127.0.0.1:19092", stack.kafka_bootstrap()),
                ("127.0.0.1:16379", stack.redis_addr()),
            ],
        )?;
        Ok(Env {
            paths,
            stack,
            resources,
            dir,
            jwt: JwtKeys::new(&service_kit::Secret::new(JWT_SECRET)),
            tracing: None,
            _turn: turn,
        })
    }

    /// Starts an OpenTelemetry Collector ([`Tracing::start`]); the services started from now
    /// on export their spans to it, and their sidecars theirs.
    pub async fn export_traces(&mut self) -> Result<&Collector> {
        let tracing = Tracing::start(self).await?;
        Ok(&self.tracing.insert(tracing).collector)
    }

    /// Starts `bin` as `app_id`, as [`Env::start_service`] does, exporting its spans and its
    /// sidecar's to `tracing`'s collector.
    pub async fn start_traced_service(
        &self,
        bin: &str,
        app_id: &str,
        env: &[(&str, String)],
        tracing: &Tracing,
    ) -> Result<Service> {
        let mut vars = vec![("JWT_SECRET", JWT_SECRET.to_owned())];
        vars.extend(env.iter().cloned());
        let options = SidecarOptions {
            health_path: None,
            app_token: None,
            sidecar_env: Vec::new(),
            tracing: Some(tracing),
        };
        self.launch(bin, app_id, &vars, options).await
    }

    /// A fresh database for one test, returned as a URL.
    pub async fn database(&self) -> Result<String> {
        let name = format!("e2e_{}", uuid::Uuid::new_v4().simple());
        self.stack.create_database(&name).await
    }

    /// Starts `bin` (a binary of this workspace) as `app_id` with its own sidecar, and
    /// waits until both answer.
    pub async fn start_service(
        &self,
        bin: &str,
        app_id: &str,
        env: &[(&str, String)],
    ) -> Result<Service> {
        // As in dapr.yaml: a subscriber's sidecar pauses delivery while the app is not ready
        // (down, or its database down), so events wait in Kafka rather than dead-letter.
        let health_path = (app_id == "recurring-tasks").then_some("/readyz");
        let mut vars = vec![("JWT_SECRET", JWT_SECRET.to_owned())];
        vars.extend(env.iter().cloned());
        let options = SidecarOptions {
            health_path,
            app_token: None,
            sidecar_env: Vec::new(),
            tracing: None,
        };
        self.launch(bin, app_id, &vars, options).await
    }

    /// `chat-api` on a fresh database whose sidecar's conversation component
    /// (`components/conversation.yaml`) talks to the OpenAI-compatible server at `endpoint`
    /// (a [`model::ScriptedModel`]'s); `None`: no key, so the component is not loaded.
    pub async fn start_chat_api_with_model(
        &self,
        database_url: &str,
        endpoint: Option<&str>,
        env: &[(&str, String)],
    ) -> Result<Service> {
        let mut vars = vec![
            ("JWT_SECRET", JWT_SECRET.to_owned()),
            ("DATABASE_URL", database_url.to_owned()),
            ("MIGRATE_ON_START", "true".to_owned()),
        ];
        vars.extend(env.iter().cloned());
        let sidecar_env = endpoint.map_or_else(Vec::new, |endpoint| {
            vec![
                ("CHAT_MODEL_API_KEY".to_owned(), "scripted-key".to_owned()),
                ("CHAT_MODEL_NAME".to_owned(), "scripted".to_owned()),
                ("CHAT_MODEL_ENDPOINT".to_owned(), endpoint.to_owned()),
            ]
        });
        let options = SidecarOptions {
            health_path: None,
            app_token: None,
            sidecar_env,
            tracing: None,
        };
        self.launch("chat-api", "chat-api", &vars, options).await
    }

    /// Starts `bin` as `app_id` with `vars` beside its own daprd set up by `options`, and
    /// waits until both answer.
    pub(crate) async fn launch(
        &self,
        bin: &str,
        app_id: &str,
        vars: &[(&str, String)],
        options: SidecarOptions<'_>,
    ) -> Result<Service> {
        let port = devstack::free_port();
        let logs = self.dir.path().join("logs");
        // Named by port too: replicas of one app id must not share a log or pidfile.
        let mut cfg = SidecarConfig::new(
            app_id,
            &self.resources,
            &logs.join(format!("{app_id}-{port}-daprd.log")),
        );
        cfg.app_port = Some(port);
        cfg.app_health_check_path = options.health_path.map(str::to_owned);
        cfg.app_api_token = options.app_token.map(str::to_owned);
        cfg.env = options.sidecar_env;
        let mut all_env: Vec<(String, String)> = vec![
            ("APP_PORT".into(), port.to_string()),
            ("DAPR_GRPC_PORT".into(), cfg.grpc_port.to_string()),
            ("DAPR_HTTP_PORT".into(), cfg.http_port.to_string()),
            ("RUST_LOG".into(), "info".into()),
        ];
        if let Some(tracing) = options.tracing.or(self.tracing.as_ref()) {
            cfg.config_file = Some(tracing.dapr_config.clone());
            all_env.push((
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                tracing.collector.endpoint(),
            ));
            all_env.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into()));
        }
        if let Some(token) = options.app_token {
            all_env.push(("APP_API_TOKEN".into(), token.to_owned()));
        }
        all_env.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let name = format!("{app_id}-{port}");
        let process = spawn_binary(bin, &name, &all_env, &logs)?;
        let base = format!("http://127.0.0.1:{port}");
        process
            .wait_http_ok(&format!("{base}/healthz"), Duration::from_secs(30))
            .await?;
        let sidecar = Sidecar::start(&self.paths, cfg).await?;
        sidecar.wait_ready(Duration::from_secs(30)).await?;
        Ok(Service {
            name,
            bin: bin.to_owned(),
            port,
            process,
            sidecar,
            base,
            env: all_env,
        })
    }

    /// Lets `app_id` publish `topic` too, in this environment's rendered pub/sub component
    /// (its `publishingScopes`), for sidecars started from now on: the benchmark's raw
    /// publishes go to a topic of their own, which the real scopes do not list.
    pub fn allow_publishing(&self, app_id: &str, topic: &str) -> Result<()> {
        let file = self.resources.join("pubsub.yaml");
        let text = std::fs::read_to_string(&file)?;
        let mut in_scopes = false;
        let mut changed = false;
        let lines: Vec<String> = text
            .lines()
            .map(|line| {
                if line.contains("name: publishingScopes") {
                    in_scopes = true;
                } else if in_scopes && line.trim_start().starts_with("value:") {
                    in_scopes = false;
                    for sep in ['"', ';'] {
                        let from = format!("{sep}{app_id}=");
                        if line.contains(&from) {
                            changed = true;
                            return line.replacen(&from, &format!("{sep}{app_id}={topic},"), 1);
                        }
                    }
                }
                line.to_owned()
            })
            .collect();
        ensure!(
            changed,
            "{}: no publishing scope of {app_id} to extend",
            file.display()
        );
        std::fs::write(&file, lines.join("\n") + "\n")?;
        Ok(())
    }

    /// A sidecar without an app, as `app_id`, for a test to publish through: it may publish
    /// what the pub/sub component's `publishingScopes` allow that app id.
    pub async fn bare_sidecar(&self, app_id: &str) -> Result<Sidecar> {
        let log = self
            .dir
            .path()
            .join("logs")
            .join(format!("{app_id}-bare-{}-daprd.log", devstack::free_port()));
        Sidecar::start(
            &self.paths,
            SidecarConfig::new(app_id, &self.resources, &log),
        )
        .await
    }

    /// `chat-api` on a fresh database (migrated at start).
    pub async fn start_chat_api(&self, database_url: &str) -> Result<Service> {
        self.start_service(
            "chat-api",
            "chat-api",
            &[
                ("DATABASE_URL", database_url.to_owned()),
                ("MIGRATE_ON_START", "true".into()),
            ],
        )
        .await
    }

    /// `recurring-tasks` reading and writing the tasks database at `database_url`.
    pub async fn start_recurring(&self, database_url: &str) -> Result<Service> {
        self.start_service(
            "recurring-tasks",
            "recurring-tasks",
            &[("DATABASE_URL", database_url.to_owned())],
        )
        .await
    }

    /// The pipeline from a completion to its next instance on a fresh database: `chat-api`
    /// and `recurring-tasks`, in that order.
    pub async fn start_api_and_recurring(&self) -> Result<(Service, Service)> {
        let db = self.database().await?;
        let api = self.start_chat_api(&db).await?;
        let worker = self.start_recurring(&db).await?;
        Ok((api, worker))
    }

    pub fn token(&self, user: &str) -> Result<String> {
        let user = UserId::parse(user).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(self
            .jwt
            .mint(&user, jsonwebtoken::get_current_timestamp(), 3600)?)
    }

    /// Every record on `topic`, read with Kafka's own console consumer: waits for
    /// `expected` records (or `timeout`).
    /// How many records `topic` holds: each test's broker starts empty, and nothing
    /// compacts or expires a record within a test.
    pub async fn end_offset(&self, topic: &str) -> Result<usize> {
        let end =
            devstack::topic_end_offset(&self.stack.kafka_bootstrap(), &self.paths, topic).await?;
        Ok(usize::try_from(end)?)
    }

    /// Waits until `topic` holds at least `at_least` records and no more arrive between two
    /// looks a second apart (or `deadline` passes), and answers how many it holds: a read
    /// of exactly that many returns as soon as it has them, where a read of more would wait
    /// out its whole timeout.
    pub async fn settled_end_offset(
        &self,
        topic: &str,
        at_least: usize,
        deadline: Instant,
    ) -> Result<usize> {
        let mut last = self.end_offset(topic).await?;
        loop {
            if Instant::now() >= deadline {
                return Ok(last);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.end_offset(topic).await?;
            if now >= at_least && now == last {
                return Ok(now);
            }
            last = now;
        }
    }

    pub async fn records(
        &self,
        topic: &str,
        expected: usize,
        timeout: Duration,
    ) -> Result<Vec<devstack::Record>> {
        devstack::consume(
            &self.stack.kafka_bootstrap(),
            &self.paths,
            topic,
            expected,
            timeout,
        )
        .await
    }

    /// As [`Env::records`], with each record's Kafka timestamp (when it was published).
    pub async fn timed_records(
        &self,
        topic: &str,
        expected: usize,
        timeout: Duration,
    ) -> Result<Vec<devstack::TimedRecord>> {
        let mut records = Vec::new();
        devstack::consume_timed(
            &self.stack.kafka_bootstrap(),
            &self.paths,
            topic,
            expected,
            timeout,
            |r| {
                records.push(r);
                Ok(())
            },
        )
        .await?;
        Ok(records)
    }
}

impl Service {
    /// Restarts the binary (not the sidecar) with the same settings, after a crash.
    pub async fn restart_process(&mut self, logs: &Path) -> Result<()> {
        self.process.stop();
        self.process = spawn_binary(&self.bin, &self.name, &self.env, logs)?;
        self.process
            .wait_http_ok(&format!("{}/healthz", self.base), Duration::from_secs(30))
            .await
    }
}

/// Where [`binary`] looks instead of next to the test executable (set once, by `cargo xtask
/// bench`, to `target/release`).
static BINARY_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes [`binary`] take the service binaries from `dir` (e.g. `target/release`). The
/// first call wins.
pub fn use_binaries_from(dir: PathBuf) {
    let _ = BINARY_DIR.set(dir);
}

/// The path of a workspace binary next to this test executable (`target/<profile>/`), or
/// in the directory given to [`use_binaries_from`] or named by `E2E_BIN_DIR`.
pub fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let chosen = BINARY_DIR
        .get()
        .cloned()
        .or_else(|| std::env::var_os("E2E_BIN_DIR").map(PathBuf::from));
    let dir = match &chosen {
        Some(dir) => dir.as_path(),
        None => exe
            .parent()
            .and_then(|deps| deps.parent())
            .context("test executable has no target directory")?,
    };
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build the services first (`cargo build --bins`, which `cargo xtask test` does)",
            path.display()
        );
    }
    Ok(path)
}

fn spawn_binary(bin: &str, name: &str, env: &[(String, String)], logs: &Path) -> Result<Managed> {
    let mut cmd = Command::new(binary(bin)?);
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Managed::spawn(name, cmd, &logs.join(format!("{name}.log")), None)
}

/// An HTTP client for the services. It lets go of a pooled connection after 10 s idle: the
/// services close a keep-alive connection that stays idle for their header timeout (20 s
/// by default), and a request a client sends on such a connection just as the server
/// closes it is reset, whatever the server does.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(10))
        .build()
        .expect("a reqwest client with default TLS settings builds")
}

/// The CloudEvent envelope of each published event (written by the publisher, passed through by
/// daprd).
#[derive(Debug, Deserialize)]
pub struct CloudEvent<T> {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The W3C trace context the publisher wrote.
    #[serde(default)]
    pub traceparent: Option<String>,
    pub data: T,
}

/// A task event read back from Kafka, with its record's key and position.
#[derive(Debug)]
pub struct SeenTaskEvent {
    pub key: Option<String>,
    pub partition: i32,
    pub offset: i64,
    pub cloudevent_id: String,
    pub cloudevent_type: String,
    pub traceparent: Option<String>,
    pub event: TaskEvent,
}

pub fn decode_task_events(records: &[devstack::Record]) -> Result<Vec<SeenTaskEvent>> {
    records
        .iter()
        .map(|r| {
            let ce: CloudEvent<TaskEvent> = serde_json::from_str(&r.value).with_context(|| {
                format!(
                    "record at {}:{} is not a CloudEvent with a TaskEvent: {}",
                    r.partition, r.offset, r.value
                )
            })?;
            Ok(SeenTaskEvent {
                key: r.key.clone(),
                partition: r.partition,
                offset: r.offset,
                cloudevent_id: ce.id,
                cloudevent_type: ce.event_type,
                traceparent: ce.traceparent,
                event: ce.data,
            })
        })
        .collect()
}

/// The `p`th percentile (0–100) of `values` by nearest rank: the smallest value with at
/// least `p` % of the values at or below it; `None` when there are none. The one percentile
/// of the tests and the benchmark.
pub fn percentile<T: Copy + PartialOrd>(values: &[T], p: f64) -> Option<T> {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

#[cfg(test)]
mod percentile_tests {
    use super::percentile;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v = [5, 1, 4, 2, 3];
        assert_eq!(percentile(&v, 50.0), Some(3));
        assert_eq!(percentile(&v, 95.0), Some(5));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile::<u64>(&[], 50.0), None);
        assert_eq!(percentile(&[2.5, 0.5, 1.5], 50.0), Some(1.5));
    }
}
