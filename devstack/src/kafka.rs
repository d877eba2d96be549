//! Apache Kafka from the official jars: a single-node KRaft broker+controller, and Kafka's
//! own command-line tools (topics, console consumer) run with `java -cp 'libs/*'`.

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::paths::Paths;
use crate::process::{Managed, run_captured, tail_lines};
use crate::provision::java_command;
use crate::stack::Ports;

/// Broker heap: the JVM default would be a quarter of the machine's memory.
const BROKER_HEAP: &[&str] = &["-Xms256m", "-Xmx768m"];
/// The command-line tools are short-lived: a small heap and a fast-starting JIT.
const TOOL_JVM: &[&str] = &[
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xshare:auto",
];
/// What the broker logs once it serves clients.
const READY_LINE: &str = "Kafka Server started";
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// SIGTERM makes the broker shut down in order (flush, close logs); it takes a few seconds.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// Retention of every topic devstack creates: 7 days.
pub(crate) const RETENTION_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Stands for "no key" in the console consumer's output; made of control characters so
/// that no real key (a user id) can be mistaken for it.
const NULL_LITERAL: &str = "\u{1}devstack-null\u{1}";

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

const TOOLS_LOG_CONFIG: &str = "\
# Written by devstack: Kafka's command-line tools only report warnings and errors.
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
";

fn tools_log_config_path(paths: &Paths) -> PathBuf {
    paths.kafka_home().join("tools-log4j2.properties")
}

/// Writes the tools' log4j2 configuration into the Kafka home (atomically: parallel tests
/// may call this at once).
pub(crate) fn write_tools_log_config(paths: &Paths) -> Result<()> {
    let path = tools_log_config_path(paths);
    if fs::read_to_string(&path).is_ok_and(|text| text == TOOLS_LOG_CONFIG) {
        return Ok(());
    }
    write_atomically(&path, TOOLS_LOG_CONFIG)
}

fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    let dir = path.parent().context("path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let partial = dir.join(format!(
        ".{}.{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        unique_suffix()
    ));
    fs::write(&partial, contents).with_context(|| format!("writing {}", partial.display()))?;
    fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}

fn unique_suffix() -> String {
    format!(
        "{}-{:x}",
        std::process::id(),
        RandomState::new().build_hasher().finish()
    )
}

fn classpath(paths: &Paths) -> Result<String> {
    let libs = paths.kafka_libs();
    if !libs
        .join(format!("kafka_2.13-{}.jar", crate::KAFKA_VERSION))
        .is_file()
    {
        bail!(
            "the Kafka jars are not in {}: run `cargo xtask provision` (devstack::provision::kafka)",
            libs.display()
        );
    }
    Ok(format!("{}/*", libs.display()))
}

/// `java … <main_class>` for one of Kafka's command-line tools.
pub(crate) fn tool_command(paths: &Paths, main_class: &str) -> Result<tokio::process::Command> {
    let classpath = classpath(paths)?;
    write_tools_log_config(paths)?;
    let mut cmd = java_command();
    cmd.args(TOOL_JVM)
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            tools_log_config_path(paths).display()
        ))
        .arg("-cp")
        .arg(classpath)
        .arg(main_class);
    Ok(tokio::process::Command::from(cmd))
}

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

fn server_properties(dirs: &BrokerDirs, ports: &Ports) -> String {
    let (kafka, controller) = (ports.kafka, ports.kafka_controller);
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

/// A fresh KRaft cluster id: 16 random bytes, base64url without padding (22 characters).
fn new_cluster_id() -> String {
    let mut bytes = [0u8; 16];
    for chunk in bytes.chunks_mut(8) {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        hasher.write_u32(std::process::id());
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    base64url(&bytes)
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        let chars = group.len() + 1;
        for i in 0..chars {
            let index = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}

/// Writes the broker's configuration, formats its storage on first use, starts it and
/// waits for [`READY_LINE`].
pub(crate) async fn start_broker(
    paths: &Paths,
    data_dir: &Path,
    ports: &Ports,
    log_file: &Path,
    pidfile: &Path,
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
        .args([
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
        ])
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

/// Creates each topic unless it exists, in parallel (each tool run is a JVM start).
pub(crate) async fn create_topics(
    paths: &Paths,
    bootstrap: &str,
    topics: &[&str],
    partitions: u32,
) -> Result<()> {
    let mut runs = tokio::task::JoinSet::new();
    for topic in topics {
        let mut cmd = tool_command(paths, "org.apache.kafka.tools.TopicCommand")?;
        cmd.args([
            "--bootstrap-server",
            bootstrap,
            "--create",
            "--if-not-exists",
        ])
        .args(["--topic", topic])
        .args(["--partitions", &partitions.to_string()])
        .args(["--replication-factor", "1"])
        .args(["--config", &format!("retention.ms={RETENTION_MS}")]);
        let topic = (*topic).to_owned();
        runs.spawn(async move {
            run_captured(&mut cmd, "is the broker running and reachable?")
                .await
                .with_context(|| format!("creating topic {topic}"))
        });
    }
    while let Some(done) = runs.join_next().await {
        done.context("a topic creation task panicked")??;
    }
    Ok(())
}

/// `TopicCommand --describe` for every non-internal topic.
pub(crate) async fn describe_topics(paths: &Paths, bootstrap: &str) -> Result<String> {
    let mut cmd = tool_command(paths, "org.apache.kafka.tools.TopicCommand")?;
    cmd.args([
        "--bootstrap-server",
        bootstrap,
        "--describe",
        "--exclude-internal",
    ]);
    run_captured(&mut cmd, "is the broker running and reachable?").await
}

/// One record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// `None` when the record has no key.
    pub key: Option<String>,
    pub value: String,
}

/// Reads `topic` from the beginning with Kafka's own console consumer until `expected`
/// records arrived or `timeout` passed (plus up to 15 s for the JVM to start and join the
/// topic), and returns the records read (fewer than
/// `expected` on timeout: callers assert on the count, and can check that nothing *more*
/// arrives by asking for more than they expect). Values must be single-line (JSON is).
/// Errors only when the consumer cannot run or prints something unreadable.
pub async fn consume(
    stack_bootstrap: &str,
    paths: &Paths,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    run_console_consumer(
        stack_bootstrap,
        paths,
        topic,
        expected,
        timeout,
        false,
        |line| {
            records.push(parse_record(line)?);
            Ok(())
        },
    )
    .await?;
    Ok(records)
}

/// A record with its Kafka timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedRecord {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// True when the broker stamped it on append (topic config
    /// `message.timestamp.type=LogAppendTime`); false for the producer's `CreateTime`.
    pub log_append_time: bool,
    pub record: Record,
}

/// As [`consume`], with each record's timestamp, handing every record to `on_record` as
/// it arrives instead of collecting them (a benchmark reads hundreds of thousands).
/// Returns how many records were read.
pub async fn consume_timed(
    stack_bootstrap: &str,
    paths: &Paths,
    topic: &str,
    expected: usize,
    timeout: Duration,
    mut on_record: impl FnMut(TimedRecord) -> Result<()>,
) -> Result<usize> {
    let mut count = 0;
    run_console_consumer(
        stack_bootstrap,
        paths,
        topic,
        expected,
        timeout,
        true,
        |line| {
            let (stamp, rest) = line.split_once('\t').context("no timestamp field")?;
            let (kind, millis) = stamp
                .split_once(':')
                .context("timestamp is not TYPE:MILLIS")?;
            let log_append_time = match kind {
                "LogAppendTime" => true,
                "CreateTime" => false,
                other => bail!("unknown timestamp type {other:?}"),
            };
            on_record(TimedRecord {
                timestamp_ms: millis.parse().context("timestamp is not a number")?,
                log_append_time,
                record: parse_record(rest)?,
            })?;
            count += 1;
            Ok(())
        },
    )
    .await?;
    Ok(count)
}

/// Runs the console consumer on `topic` from the beginning and hands each output line to
/// `on_line` until `expected` lines came or the time is up (see [`consume`]).
async fn run_console_consumer(
    stack_bootstrap: &str,
    paths: &Paths,
    topic: &str,
    expected: usize,
    timeout: Duration,
    print_timestamp: bool,
    mut on_line: impl FnMut(&str) -> Result<()>,
) -> Result<()> {
    let started = Instant::now();
    let mut cmd = tool_command(paths, "org.apache.kafka.tools.consumer.ConsoleConsumer")?;
    let timeout_ms = timeout.as_millis().max(1).to_string();
    cmd.args([
        "--bootstrap-server",
        stack_bootstrap,
        "--topic",
        topic,
        "--from-beginning",
    ])
    .args(["--max-messages", &expected.max(1).to_string()])
    .args(["--timeout-ms", &timeout_ms]);
    for property in [
        "print.partition=true".to_owned(),
        "print.offset=true".to_owned(),
        "print.key=true".to_owned(),
        "print.value=true".to_owned(),
        format!("print.timestamp={print_timestamp}"),
        "print.headers=false".to_owned(),
        "key.separator=\t".to_owned(),
        "line.separator=\n".to_owned(),
        format!("null.literal={NULL_LITERAL}"),
    ] {
        cmd.args(["--property", &property]);
    }
    cmd.arg("--consumer-property")
        .arg("enable.auto.commit=false")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .context("starting Kafka's console consumer (java): is Java installed?")?;
    let stdout = child.stdout.take().context("console consumer stdout")?;
    let mut stderr = child.stderr.take().context("console consumer stderr")?;
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    // The JVM start and the group join come on top of the caller's timeout.
    let deadline = tokio::time::Instant::now() + timeout + Duration::from_secs(15);
    let mut lines = BufReader::new(stdout).lines();
    let mut read = 0;
    let mut exited_by_itself = false;
    while read < expected {
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                on_line(&line).with_context(|| {
                    format!("unexpected console consumer output for topic {topic}: {line:?}")
                })?;
                read += 1;
            }
            // The consumer exited (its --timeout-ms passed, or it failed).
            Ok(Ok(None)) => {
                exited_by_itself = true;
                break;
            }
            Err(_) => break,
            Ok(Err(err)) => return Err(err).context("reading the console consumer's output"),
        }
    }
    let _ = child.start_kill();
    let status = child.wait().await;
    if read < expected {
        let stderr = stderr_task.await.unwrap_or_default();
        // Running out of time ends it with a TimeoutException; anything else is a failure
        // to report, not an empty topic.
        let failed = exited_by_itself
            && status.as_ref().is_ok_and(|s| !s.success())
            && !stderr.contains("TimeoutException");
        if failed {
            bail!(
                "Kafka's console consumer failed on topic {topic} ({}):\n{}",
                status.map(|s| s.to_string()).unwrap_or_default(),
                stderr.lines().take(15).collect::<Vec<_>>().join("\n")
            );
        }
        eprintln!(
            "consume({topic}): {read} of {expected} records after {:.1}s; console consumer said:\n{}",
            started.elapsed().as_secs_f64(),
            tail_lines(&stderr, 10)
        );
    }
    Ok(())
}

/// Sets (or overrides) per-topic configuration, e.g. `message.timestamp.type=LogAppendTime`
/// so each record carries the broker's append time.
pub async fn alter_topic_config(
    stack_bootstrap: &str,
    paths: &Paths,
    topic: &str,
    configs: &[(&str, &str)],
) -> Result<()> {
    let configs: Vec<String> = configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut cmd = tool_command(paths, "kafka.admin.ConfigCommand")?;
    cmd.args(["--bootstrap-server", stack_bootstrap, "--alter"])
        .args(["--entity-type", "topics", "--entity-name", topic])
        .args(["--add-config", &configs.join(",")]);
    run_captured(&mut cmd, "is the broker running and reachable?")
        .await
        .with_context(|| format!("altering the configuration of topic {topic}"))?;
    Ok(())
}

/// The sum of `topic`'s end offsets over its partitions: how many records were ever
/// appended to it (nothing here compacts or uses transactions, and retention is days).
pub async fn topic_end_offset(stack_bootstrap: &str, paths: &Paths, topic: &str) -> Result<u64> {
    let mut cmd = tool_command(paths, "org.apache.kafka.tools.GetOffsetShell")?;
    cmd.args([
        "--bootstrap-server",
        stack_bootstrap,
        "--topic",
        topic,
        "--time",
        "-1",
    ]);
    let out = run_captured(&mut cmd, "is the broker running and reachable?")
        .await
        .with_context(|| format!("reading the end offsets of topic {topic}"))?;
    parse_end_offsets(&out, topic)
}

/// Sums the `TOPIC:PARTITION:OFFSET` lines of `GetOffsetShell` for `topic`.
fn parse_end_offsets(out: &str, topic: &str) -> Result<u64> {
    let mut total = 0;
    let mut partitions = 0;
    for line in out.lines() {
        let mut fields = line.trim().rsplitn(3, ':');
        let (Some(offset), Some(_partition), Some(name)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if name != topic {
            continue;
        }
        total += offset
            .parse::<u64>()
            .with_context(|| format!("an end offset that is not a number: {line:?}"))?;
        partitions += 1;
    }
    if partitions == 0 {
        bail!("GetOffsetShell printed no partition of {topic}:\n{out}");
    }
    Ok(total)
}

/// How many records of `topic` the consumer group `group` has not committed yet (summed
/// over partitions), or `None` while the group has no committed offsets for it.
pub async fn consumer_group_lag(
    stack_bootstrap: &str,
    paths: &Paths,
    group: &str,
    topic: &str,
) -> Result<Option<u64>> {
    let mut cmd = tool_command(
        paths,
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    )?;
    cmd.args([
        "--bootstrap-server",
        stack_bootstrap,
        "--describe",
        "--group",
        group,
    ]);
    let out = run_captured(&mut cmd, "is the broker running and reachable?")
        .await
        .with_context(|| format!("describing consumer group {group}"))?;
    parse_group_lag(&out, topic)
}

/// Sums the LAG column of `ConsumerGroupCommand --describe` over `topic`'s partitions.
fn parse_group_lag(out: &str, topic: &str) -> Result<Option<u64>> {
    let mut header: Option<Vec<&str>> = None;
    let mut total = 0u64;
    let mut seen = false;
    for line in out.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.first() == Some(&"GROUP") {
            header = Some(cols);
            continue;
        }
        let Some(header) = &header else { continue };
        let at = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .and_then(|i| cols.get(i).copied())
        };
        if at("TOPIC") != Some(topic) {
            continue;
        }
        match at("LAG").map(str::parse::<u64>) {
            Some(Ok(lag)) => {
                total += lag;
                seen = true;
            }
            // "-": no committed offset for that partition yet.
            _ => return Ok(None),
        }
    }
    Ok(seen.then_some(total))
}

/// Parses `Partition:P<TAB>Offset:O<TAB>KEY<TAB>VALUE`.
fn parse_record(line: &str) -> Result<Record> {
    let mut fields = line.splitn(4, '\t');
    let mut next = |what: &str| fields.next().with_context(|| format!("no {what} field"));
    let partition = next("partition")?
        .strip_prefix("Partition:")
        .context("no Partition: prefix")?
        .parse()
        .context("partition is not a number")?;
    let offset = next("offset")?
        .strip_prefix("Offset:")
        .context("no Offset: prefix")?
        .parse()
        .context("offset is not a number")?;
    let key = next("key")?;
    let value = next("value")?;
    Ok(Record {
        partition,
        offset,
        key: (key != NULL_LITERAL).then(|| key.to_owned()),
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_known_vectors() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

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

    #[test]
    fn end_offsets_are_summed_over_the_topics_partitions_only() {
        let out = "task-events:0:120\ntask-events:1:7\ntask-events-dlq:0:99\ntask-events:2:0\n";
        assert_eq!(parse_end_offsets(out, "task-events").expect("parse"), 127);
        assert_eq!(
            parse_end_offsets(out, "task-events-dlq").expect("parse"),
            99
        );
        assert!(
            parse_end_offsets(out, "reminders").is_err(),
            "no partition printed is an error"
        );
        assert!(parse_end_offsets("task-events:0:x", "task-events").is_err());
    }

    #[test]
    fn parse_record_reads_keys_values_and_missing_keys() {
        let record = parse_record("Partition:2\tOffset:17\talice\t{\"a\":\"b c\"}").expect("parse");
        assert_eq!(
            record,
            Record {
                partition: 2,
                offset: 17,
                key: Some("alice".into()),
                value: "{\"a\":\"b c\"}".into()
            }
        );
        let keyless =
            parse_record(&format!("Partition:0\tOffset:0\t{NULL_LITERAL}\t{{}}")).expect("parse");
        assert_eq!(keyless.key, None);
        assert!(parse_record("garbage").is_err());
    }

    #[test]
    fn group_lag_sums_the_topics_partitions_and_is_unknown_without_offsets() {
        let out = "\nGROUP  TOPIC        PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG  CONSUMER-ID  HOST  CLIENT-ID\n\
                   g      task-events  0          10              12              2    c1           /1    x\n\
                   g      task-events  1          5               5               0    c1           /1    x\n\
                   g      other        0          1               9               8    c1           /1    x\n";
        assert_eq!(parse_group_lag(out, "task-events").expect("parse"), Some(2));
        let unknown =
            "GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG\ng task-events 0 - 3 -\n";
        assert_eq!(
            parse_group_lag(unknown, "task-events").expect("parse"),
            None
        );
        assert_eq!(parse_group_lag("", "task-events").expect("parse"), None);
    }
}
