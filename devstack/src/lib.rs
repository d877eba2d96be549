//! The project's own infrastructure, run for real on loopback.
//!
//! `devstack` provisions and runs the parts the Todo services talk to (PostgreSQL, Redis,
//! Apache Kafka in KRaft mode and the Dapr sidecar `daprd`) as ordinary local processes:
//! no Docker engine is available on the development machines or in CI. It is used by
//! `cargo xtask` (local runs, CI) and by the end-to-end tests.
//!
//! - [`provision`] installs what is missing, idempotently: Debian packages (Redis,
//!   PostgreSQL), the Kafka jars from Maven Central (pinned by `devstack/kafka/pom.xml`),
//!   `daprd` and the `dapr` CLI built from the official Go modules, and the files
//!   `dapr init --slim` would create.
//! - [`Stack`] starts PostgreSQL, Redis and Kafka in one data directory, waits until each
//!   really serves, and stops them by PID (also on drop, so a panicking test leaves nothing
//!   behind). Pidfiles let a later run kill what a crashed run left.
//! - [`Sidecar`] starts one `daprd` directly, the way a test wants it; [`run_file`] starts
//!   the whole system with `dapr run -f dapr.yaml`, as `cargo xtask up` does.
//! - [`listeners_of`] says which sockets a set of processes listens on (`ss`).
//! - [`Collector`] runs the OpenTelemetry Collector (built by [`provision`] from its
//!   official modules) as an OTLP receiver that writes every span to a file, for the tests
//!   of trace export.
//! - [`consume`] reads a topic back with Kafka's own console consumer ([`consume_timed`]
//!   with each record's timestamp); [`alter_topic_config`] and [`consumer_group_lag`] wrap
//!   Kafka's config and consumer-group tools.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use devstack::{BrokerJvm, Paths, Ports, Stack, StackConfig};
//! let paths = Paths::discover()?;
//! devstack::provision::all(&paths)?; // blocking; minutes on a fresh machine, ~1 s warm
//! let stack = Stack::start(&paths, StackConfig {
//!     data_dir: paths.data.join("local"),
//!     ports: Ports::default_local(),
//!     broker_jvm: BrokerJvm::Server,
//! }).await?;
//! stack.create_topics(&["task-events", "reminders"], 3).await?;
//! // ... run services against stack.database_url(), stack.kafka_bootstrap(), ...
//! stack.stop().await?;
//! # Ok(()) }
//! ```
//!
//! - [`dapr_install`] says which `daprd` runs: the user's own `~/.dapr/bin/daprd` when it is
//!   the pinned release with the needed components, else the project's build in the cache
//!   (the user's install is never replaced).
//!
//! Knobs (environment): `DEVSTACK_ANY_DAPR=1` accepts whatever `~/.dapr/bin/daprd` is
//! installed instead of the pinned build; `DEVSTACK_PG_BINDIR` picks a PostgreSQL install;
//! `XDG_CACHE_HOME` moves the download cache; an explicit `GOSUMDB` is honoured (otherwise
//! the Go checksum database, unreachable here, is switched off for the daprd build: the
//! module's own `go.sum` still pins every dependency).
//!
//! What it may depend on: process and HTTP plumbing only (`tokio`, `reqwest`, `nix`,
//! `anyhow`). It knows nothing of the Todo domain or the services.

pub mod cluster;
mod collector;
pub mod dapr_install;
mod kafka;
mod listeners;
mod paths;
mod postgres;
mod process;
pub mod provision;
mod redis;
pub mod run_file;
mod sidecar;
mod stack;
pub mod steps;
mod tools;
mod versions;

pub use collector::{Collector, ExportedSpan, parse_spans};
pub use dapr_install::{DaprRuntime, Origin};
pub use kafka::{
    BrokerJvm, Record, TimedRecord, alter_topic_config, console_output_properties, consume,
    consume_timed, consumer_group_lag, parse_record, seed_broker, topic_end_offset,
};
pub use listeners::{Listener, listeners_of, with_descendants};
pub use paths::Paths;
pub use postgres::{DATABASE, DATABASE_USER};
pub use process::{Managed, free_port, pid_alive};
pub use sidecar::{Sidecar, SidecarConfig, render_components};
pub use stack::{Ports, Stack, StackConfig};
pub use versions::{
    COREDNS_VERSION, DAPR_CLI_VERSION, DAPR_RUNTIME_VERSION, DAPRD_BUILD_TAGS, ETCD_VERSION,
    HELM_VERSION, KAFKA_VERSION, KEDA_VERSION, KUBERNETES_VERSION, METRICS_SERVER_VERSION,
    OTELCOL_VERSION,
};
