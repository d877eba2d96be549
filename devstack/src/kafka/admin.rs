//! Topic and consumer-group administration through Kafka's tools: create and describe
//! topics, alter their configuration, read end offsets and a group's lag.

use anyhow::{Context, Result, bail};

use super::RETENTION_MS;
use super::tools::tool_command;
use crate::paths::Paths;
use crate::process::run_captured;

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

#[cfg(test)]
mod tests {
    use super::*;

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
