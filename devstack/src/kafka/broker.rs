//! The single-node KRaft broker+controller: its configuration, storage format and process.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;

use super::RETENTION_MS;
use super::tools::{classpath, tool_command};
use crate::paths::Paths;
use crate::process::{Managed, run_captured};
use crate::tools::java_command;

/// Broker heap: the JVM default would be a quarter of the machine's memory.
const BROKER_HEAP: &[&str] = &["-Xms256m", "-Xmx768m"];

/// How the broker's JVM is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerJvm {
    /// For the running system and the benchmark: G1 and the optimizing compiler, the
    /// settings Kafka's own start script uses.
    Server,
    /// For tests, which start dozens of short-lived brokers on 2 cores: the serial
    /// collector and the quick compiler only (as Kafka's command-line tools here), which
    /// take about half the CPU to start (5 s against 3 s measured) and keep up with a
    /// test's traffic.
    QuickStart,
}

impl BrokerJvm {
    fn flags(self) -> &'static [&'static str] {
        match self {
            BrokerJvm::Server => &[
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35",
                "-XX:+ExplicitGCInvokesConcurrent",
            ],
            BrokerJvm::QuickStart => &[
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Xshare:auto",
            ],
        }
    }
}
/// What the broker logs once it serves clients.
const READY_LINE: &str = "Kafka Server started";
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// SIGTERM makes the broker shut down in order (flush, close logs); it takes a few seconds.
const STOP_GRACE: Duration = Duration::from_secs(30);
const BROKER_LOG_CONFIG: &str = "\
# Written by devstack on every start.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.request.additivity = false
logger.request.appenderRef.out.ref = STDOUT
";

/// Where one stack keeps its broker: config, log4j config, and the log directory.
pub(crate) struct BrokerDirs {
    pub(crate) root: PathBuf,
    pub(crate) server_properties: PathBuf,
    pub(crate) log_config: PathBuf,
    pub(crate) log_dir: PathBuf,
    pub(crate) formatted_marker: PathBuf,
}

impl BrokerDirs {
    pub(crate) fn new(data_dir: &Path) -> Self {
        let root = data_dir.join("kafka");
        Self {
            server_properties: root.join("server.properties"),
            log_config: root.join("log4j2.properties"),
            log_dir: root.join("data"),
            formatted_marker: root.join(".formatted"),
            root,
        }
    }
}

/// The broker's client and controller ports, on 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BrokerPorts {
    pub(crate) kafka: u16,
    pub(crate) controller: u16,
}

fn server_properties(dirs: &BrokerDirs, ports: BrokerPorts) -> String {
    let BrokerPorts { kafka, controller } = ports;
    format!(
        "# Written by devstack on every start (ports may differ between runs).
process.roles=broker,controller
node.id=1
# A static voter set: unlike a dynamic quorum it stores no endpoint in the log, so the
# same data directory can be started on other ports.
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{kafka},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{kafka}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs={log_dir}
# Topics are created on purpose (Stack::create_topics), with their partition count; an
# auto-created one would silently have a single partition.
auto.create.topics.enable=false
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
log.retention.ms={retention}
# One node: every internal topic has a single replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumers of a fresh group start at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
",
        log_dir = dirs.log_dir.display(),
        retention = RETENTION_MS,
    )
}

/// A fresh KRaft cluster id: a random UUID's 16 bytes, base64url without padding (22
/// characters), the form `kafka-storage.sh random-uuid` prints.
fn new_cluster_id() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

/// Writes the broker's configuration, formats its storage on first use, starts it and
/// waits for [`READY_LINE`].
pub(crate) async fn start_broker(
    paths: &Paths,
    data_dir: &Path,
    ports: BrokerPorts,
    log_file: &Path,
    pidfile: &Path,
    jvm: BrokerJvm,
) -> Result<Managed> {
    let classpath = classpath(paths)?;
    let dirs = BrokerDirs::new(data_dir);
    fs::create_dir_all(&dirs.root).with_context(|| format!("creating {}", dirs.root.display()))?;
    fs::write(&dirs.server_properties, server_properties(&dirs, ports))
        .with_context(|| format!("writing {}", dirs.server_properties.display()))?;
    fs::write(&dirs.log_config, BROKER_LOG_CONFIG)
        .with_context(|| format!("writing {}", dirs.log_config.display()))?;

    if !dirs.formatted_marker.is_file() {
        // A format that was interrupted leaves a half-written directory: start over.
        if dirs.log_dir.exists() {
            fs::remove_dir_all(&dirs.log_dir)
                .with_context(|| format!("removing {}", dirs.log_dir.display()))?;
        }
        let mut format = tool_command(paths, "kafka.tools.StorageTool")?;
        // `--cluster-id=<id>` in one word: an id starting with '-' (base64url allows it)
        // would otherwise be read as an option.
        format
            .args([
                "format".to_owned(),
                "--ignore-formatted".to_owned(),
                format!("--cluster-id={}", new_cluster_id()),
                "-c".to_owned(),
            ])
            .arg(&dirs.server_properties);
        run_captured(
            &mut format,
            "formatting the Kafka log directory failed; delete the stack's data directory to start afresh",
        )
        .await?;
        fs::write(&dirs.formatted_marker, "")
            .with_context(|| format!("writing {}", dirs.formatted_marker.display()))?;
    }

    let mut cmd = java_command();
    cmd.args(BROKER_HEAP)
        .args(jvm.flags())
        .args(["-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true"])
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            dirs.log_config.display()
        ))
        .arg("-cp")
        .arg(classpath)
        .arg("kafka.Kafka")
        .arg(&dirs.server_properties)
        .current_dir(&dirs.root);
    let mut broker = Managed::spawn("kafka", cmd, log_file, Some(pidfile))?
        .with_stop(Signal::SIGTERM, STOP_GRACE);
    broker.wait_for_log(READY_LINE, START_TIMEOUT).await?;
    Ok(broker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_22_url_safe_characters_and_differ() {
        let a = new_cluster_id();
        let b = new_cluster_id();
        assert_eq!(a.len(), 22);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a, b);
    }
}
