//! Kafka: the topics Job against the components, partitions against the autoscalers.

use super::*;

/// The topics Job: its TOPICS and PARTITIONS variables.
pub(super) fn topics_job<'a>(index: &Index<'a>) -> Option<(&'a Object, Vec<String>, Option<i64>)> {
    index.of_kind("Job").find_map(|job| {
        job.containers().into_iter().find_map(|c| {
            let env = |var: &str| {
                c["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| e["name"] == var)
                    .and_then(|e| e["value"].as_str())
            };
            let topics = env("TOPICS")?;
            let partitions = env("PARTITIONS").and_then(|p| p.parse().ok());
            Some((
                job,
                topics.split_whitespace().map(str::to_owned).collect(),
                partitions,
            ))
        })
    })
}

pub(super) fn kafka(_objects: &[Object], index: &Index<'_>, p: &mut Problems) {
    let kafka_pubsub = index
        .of_kind("Component")
        .any(|c| c.str_at("/spec/type") == Some("pubsub.kafka"));
    if !kafka_pubsub {
        return;
    }
    let Some((job, topics, partitions)) = topics_job(index) else {
        if let Some(c) = index
            .of_kind("Component")
            .find(|c| c.str_at("/spec/type") == Some("pubsub.kafka"))
        {
            p.add(c, "no Job creates the topics (a Job with TOPICS and PARTITIONS): Dapr never creates them");
        }
        return;
    };
    for s in index.of_kind("Subscription") {
        for key in ["/spec/topic", "/spec/deadLetterTopic"] {
            if let Some(topic) = s.str_at(key)
                && !topics.iter().any(|t| t == topic)
            {
                p.add(
                    s,
                    format!("uses topic {topic:?}, which {job} does not create"),
                );
            }
        }
    }
    let apps = index.dapr_apps();
    for so in index.of_kind("ScaledObject") {
        let target = so.str_at("/spec/scaleTargetRef/name").unwrap_or("");
        let max = so
            .at("/spec/maxReplicaCount")
            .and_then(Value::as_i64)
            .unwrap_or(100);
        for trigger in so
            .at("/spec/triggers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if trigger["type"] != "kafka" {
                continue;
            }
            let topic = trigger
                .pointer("/metadata/topic")
                .and_then(Value::as_str)
                .unwrap_or("");
            let group = trigger
                .pointer("/metadata/consumerGroup")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !topics.iter().any(|t| t == topic) {
                p.add(
                    so,
                    format!("scales on topic {topic:?}, which {job} does not create"),
                );
            }
            if let Some(partitions) = partitions
                && max > partitions
            {
                p.add(so, format!("maxReplicaCount {max} exceeds the {partitions} partitions of {topic:?}: the extra replicas would get no partition"));
            }
            // The Kafka component's consumer group is the app id.
            let app = apps
                .iter()
                .find(|(_, w)| w.kind() == "Deployment" && w.name() == target)
                .map(|(id, _)| *id);
            match app {
                None => p.add(
                    so,
                    format!(
                        "scales {target:?}, which has no Dapr sidecar: whose consumer lag is it?"
                    ),
                ),
                Some(app) => {
                    if group != app {
                        p.add(so, format!("reads the lag of consumer group {group:?}, but {target}'s sidecar consumes as {app:?} (consumerGroup {{appID}})"));
                    }
                    let subscribed = index.of_kind("Subscription").any(|s| {
                        s.str_at("/spec/topic") == Some(topic)
                            && s.at("/scopes")
                                .and_then(Value::as_array)
                                .is_some_and(|a| a.iter().any(|x| x == app))
                    });
                    if !subscribed {
                        p.add(
                            so,
                            format!(
                                "scales on {topic:?}, but app {app:?} has no Subscription to it"
                            ),
                        );
                    }
                }
            }
        }
    }
}
