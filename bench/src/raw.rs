//! Raw publishes to the same sidecar, no service code: the ceiling. Each event is sent as
//! the relay sends it: a CloudEvent daprd passes through as it is.

use service_kit::OutgoingEvent;

use super::*;

/// The CloudEvent type of every raw publish.
pub(super) const RAW_TYPE: &str = "bench.raw";

pub(super) struct RawResult {
    pub(super) concurrency: usize,
    pub(super) entries_per_call: usize,
    /// Events acknowledged per second in the measured window.
    pub(super) rate: f64,
    pub(super) calls: usize,
    pub(super) errors: usize,
    pub(super) latency: Quantiles,
}

/// Publishes straight to chat-api's sidecar over gRPC (`entries_per_call` 1: `PublishEvent`;
/// more: `BulkPublishEvent`) with `concurrency` calls in flight, each entry with its
/// own partition key and CloudEvent id, to a topic nobody consumes.
pub(super) async fn raw_publish(
    api: &Service,
    payload: Arc<Vec<u8>>,
    concurrency: usize,
    entries_per_call: usize,
    duration: Duration,
) -> Result<RawResult> {
    raw_publish_to(
        api,
        payload,
        concurrency,
        entries_per_call,
        duration,
        RAW_TOPIC,
        None,
    )
    .await
}

/// As [`raw_publish`], to `topic`, and every entry with partition key `key` if given (one
/// user's events: one partition).
pub(super) async fn raw_publish_to(
    api: &Service,
    payload: Arc<Vec<u8>>,
    concurrency: usize,
    entries_per_call: usize,
    duration: Duration,
    topic: &str,
    key: Option<&str>,
) -> Result<RawResult> {
    let client = dapr_v1::dapr_client::DaprClient::connect(api.sidecar.grpc_url())
        .await
        .map_err(|e| anyhow!("connecting to chat-api's sidecar over gRPC: {e}"))?;
    let t0 = Instant::now();
    let (from, to) = (RAW_WARMUP, RAW_WARMUP + duration);
    let end = t0 + to;
    let mut handles = Vec::new();
    for w in 0..concurrency {
        let mut client = client.clone();
        let payload = payload.clone();
        let (topic, key) = (topic.to_owned(), key.map(str::to_owned));
        handles.push(tokio::spawn(async move {
            let mut samples: Vec<(Sample, usize)> = Vec::new();
            let mut n = 0usize;
            while Instant::now() < end && samples.len() < MAX_REQUESTS_PER_WORKER {
                let started = Instant::now();
                // What the relay sends: its own CloudEvent, passed through (`rawPayload`).
                let entry = |k: usize| {
                    let key = key.clone().unwrap_or_else(|| format!("raw-{w}-{}", k % 64));
                    let event = OutgoingEvent {
                        topic: &topic,
                        partition_key: &key,
                        event_id: uuid::Uuid::new_v4(),
                        event_type: RAW_TYPE,
                        payload: &payload,
                        traceparent: None,
                    };
                    let data = service_kit::publish::envelope(&event, "chat-api", PUBSUB)
                        .expect("the bench's payload is JSON");
                    (data, HashMap::from([("partitionKey".to_owned(), key)]))
                };
                let acked = if entries_per_call == 1 {
                    let (data, mut metadata) = entry(n);
                    metadata.extend(service_kit::publish::raw_payload());
                    let req = dapr_v1::PublishEventRequest {
                        pubsub_name: PUBSUB.into(),
                        topic: topic.clone(),
                        data,
                        data_content_type: service_kit::publish::CLOUDEVENT.into(),
                        metadata,
                    };
                    usize::from(client.publish_event(req).await.is_ok())
                } else {
                    let entries = (0..entries_per_call)
                        .map(|i| {
                            let (event, metadata) = entry(n * entries_per_call + i);
                            dapr_v1::BulkPublishRequestEntry {
                                entry_id: i.to_string(),
                                event,
                                content_type: service_kit::publish::CLOUDEVENT.into(),
                                metadata,
                            }
                        })
                        .collect();
                    let req = dapr_v1::BulkPublishRequest {
                        pubsub_name: PUBSUB.into(),
                        topic: topic.clone(),
                        entries,
                        metadata: service_kit::publish::raw_payload(),
                    };
                    let res = client.bulk_publish_event(req).await;
                    match res {
                        Ok(r) => {
                            entries_per_call.saturating_sub(r.into_inner().failed_entries.len())
                        }
                        Err(_) => 0,
                    }
                };
                n += 1;
                samples.push((
                    Sample {
                        start: started - t0,
                        latency: started.elapsed(),
                        ok: acked == entries_per_call,
                    },
                    acked,
                ));
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for h in handles {
        samples.extend(h.await.unwrap_or_default());
    }
    let measured: Vec<&(Sample, usize)> = samples
        .iter()
        .filter(|(s, _)| s.start >= from && s.start < to)
        .collect();
    let acked: usize = measured.iter().map(|(_, a)| a).sum();
    Ok(RawResult {
        concurrency,
        entries_per_call,
        rate: acked as f64 / duration.as_secs_f64(),
        calls: measured.len(),
        errors: measured.iter().filter(|(s, _)| !s.ok).count(),
        latency: Quantiles::of(measured.iter().map(|(s, _)| ms(s.latency)).collect()),
    })
}

/// Records read from the start of `task-events` to find a `task.created` in: the first
/// write of every run is a creation.
const SAMPLE_RECORDS: usize = 1;

/// A real task event as the raw baseline's payload: the first `task.created` on
/// `task-events` (a published event's outbox row is gone).
pub(super) async fn sample_payload(ctx: &Ctx<'_>) -> Result<Arc<Vec<u8>>> {
    let records = devstack::consume(
        &ctx.bootstrap,
        ctx.paths,
        TASK_EVENTS,
        SAMPLE_RECORDS,
        Duration::from_secs(30),
    )
    .await?;
    let payload = records
        .iter()
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.value).ok())
        .map(|v| v["data"].clone())
        .find(|data| data["event_type"] == "task.created")
        .context("no task.created event on task-events to copy as the raw payload")?;
    Ok(Arc::new(serde_json::to_vec(&payload)?))
}
