//! The walking skeleton end to end: task changes over HTTP reach Kafka through chat-api's outbox,
//! its real daprd sidecar and the real broker, keyed by user and in order per user.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Result, ensure};
use e2e::{Env, decode_task_events};
use serde_json::{Value, json};
use todo_domain::{EventType, topics};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_changes_reach_kafka_keyed_by_user_and_in_order() -> Result<()> {
    let env = Env::start().await?;
    let db = env.database().await?;
    let api = env.start_chat_api(&db).await?;
    let client = e2e::client();

    let users = ["alice", "bob"];
    let mut task_ids = BTreeMap::new();
    for user in users {
        let token = env.token(user)?;
        let base = format!("{}/api/{user}/tasks", api.base);
        let created: Value = client
            .post(&base)
            .bearer_auth(&token)
            .json(&json!({"title": format!("{user}'s task"), "priority": "high", "tags": ["e2e"], "due_at": "2026-12-24T18:00", "time_zone": "Europe/Berlin", "recurrence": "monthly"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = created["id"].as_str().unwrap_or_default().to_owned();
        let task = format!("{base}/{id}");
        client
            .patch(&task)
            .bearer_auth(&token)
            .json(&json!({"description": "updated"}))
            .send()
            .await?
            .error_for_status()?;
        client
            .post(format!("{task}/complete"))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?;
        client
            .delete(&task)
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?;
        task_ids.insert(user, id);
    }

    let records = env
        .records(topics::TASK_EVENTS, 8, Duration::from_secs(45))
        .await?;
    ensure!(
        records.len() == 8,
        "expected 8 records on task-events, got {}: {records:#?}",
        records.len()
    );
    // Exactly eight: ask for one more and see that it never comes.
    let again = env
        .records(topics::TASK_EVENTS, 9, Duration::from_secs(5))
        .await?;
    ensure!(
        again.len() == 8,
        "expected no further records, got {}",
        again.len()
    );
    let seen = decode_task_events(&records)?;
    // Each record is a whole CloudEvent with the attributes daprd gives its own envelopes:
    // chat-api writes it, daprd passes it through.
    for record in &records {
        let ce: Value = serde_json::from_str(&record.value)?;
        for (attribute, expected) in [
            ("specversion", "1.0"),
            ("source", "chat-api"),
            ("datacontenttype", "application/json"),
            ("topic", topics::TASK_EVENTS),
            ("pubsubname", "pubsub"),
        ] {
            ensure!(ce[attribute] == expected, "{attribute}: {ce}");
        }
        let time = ce["time"].as_str().unwrap_or_default();
        ensure!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok(),
            "time: {ce}"
        );
        ensure!(
            ce["traceparent"].is_string() && ce["traceid"] == ce["traceparent"],
            "trace context: {ce}"
        );
    }

    for user in users {
        let mut mine: Vec<_> = seen.iter().filter(|e| e.event.user_id == user).collect();
        ensure!(
            mine.len() == 4,
            "{user}: expected 4 events, got {}",
            mine.len()
        );
        let partitions: Vec<i32> = mine.iter().map(|e| e.partition).collect();
        ensure!(
            partitions.windows(2).all(|w| w[0] == w[1]),
            "{user}: one key, one partition: {partitions:?}"
        );
        mine.sort_by_key(|e| e.offset);
        let types: Vec<EventType> = mine.iter().map(|e| e.event.event_type).collect();
        ensure!(
            types
                == [
                    EventType::TaskCreated,
                    EventType::TaskUpdated,
                    EventType::TaskCompleted,
                    EventType::TaskDeleted
                ],
            "{user}: events out of order: {types:?}"
        );
        for (i, e) in mine.iter().enumerate() {
            ensure!(
                e.key.as_deref() == Some(user),
                "{user}: record key {:?}",
                e.key
            );
            ensure!(
                e.cloudevent_id == e.event.event_id.to_string(),
                "CloudEvent id must be the event_id"
            );
            ensure!(
                e.cloudevent_type == e.event.event_type.as_str(),
                "CloudEvent type must be the event type"
            );
            ensure!(
                e.event.task.id.to_string() == task_ids[user],
                "{user}: wrong task in event"
            );
            ensure!(
                e.event.task.version == i as i64 + 1,
                "{user}: version {} at position {i}",
                e.event.task.version
            );
            ensure!(
                e.event.task.title == format!("{user}'s task"),
                "complete snapshot carries the title"
            );
            ensure!(
                e.event.task.tags == ["e2e"],
                "complete snapshot carries the tags"
            );
            ensure!(
                e.event.task.time_zone.name() == "Europe/Berlin",
                "complete snapshot carries the zone"
            );
            ensure!(
                e.event.task.recurrence.is_some(),
                "complete snapshot carries the recurrence"
            );
        }
        ensure!(
            mine[1].event.changed_fields == ["description"],
            "update names its fields"
        );
        ensure!(
            mine[2].event.task.completed,
            "completion snapshot is completed"
        );
    }

    let topics_described = env.stack.describe_topics().await?;
    for topic in [
        topics::TASK_EVENTS,
        topics::REMINDERS,
        topics::TASK_EVENTS_DLQ,
        topics::REMINDERS_DLQ,
    ] {
        let line = topics_described
            .lines()
            .find(|l| l.contains(&format!("Topic: {topic}\t")) && l.contains("PartitionCount"))
            .unwrap_or_default();
        ensure!(
            line.contains(&format!("PartitionCount: {}", e2e::TOPIC_PARTITIONS)),
            "topic {topic}: {line:?}\n{topics_described}"
        );
        ensure!(
            line.contains("retention.ms=604800000"),
            "topic {topic} keeps 7 days: {line:?}"
        );
    }
    Ok(())
}
