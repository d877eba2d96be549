//! Reading a topic back with Kafka's own console consumer, for tests and the benchmark.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::tools::tool_command;
use crate::paths::Paths;
use crate::process::tail_lines;

/// Stands for "no key" in the console consumer's output; made of control characters so
/// that no real key (a user id) can be mistaken for it.
const NULL_LITERAL: &str = "\u{1}devstack-null\u{1}";

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

/// The console consumer's `--property` values that make it print what [`parse_record`]
/// reads (with the timestamp first when `print_timestamp`).
pub fn output_properties(print_timestamp: bool) -> Vec<String> {
    vec![
        "print.partition=true".to_owned(),
        "print.offset=true".to_owned(),
        "print.key=true".to_owned(),
        "print.value=true".to_owned(),
        format!("print.timestamp={print_timestamp}"),
        "print.headers=false".to_owned(),
        "key.separator=\t".to_owned(),
        "line.separator=\n".to_owned(),
        format!("null.literal={NULL_LITERAL}"),
    ]
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
    for property in output_properties(print_timestamp) {
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

/// Parses `Partition:P<TAB>Offset:O<TAB>KEY<TAB>VALUE`.
/// One line of the console consumer's output with [`output_properties`]`(false)`.
pub fn parse_record(line: &str) -> Result<Record> {
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
}
