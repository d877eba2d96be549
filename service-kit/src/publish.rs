//! Publishing events through the Dapr sidecar (gRPC). The sidecar answers only after the
//! broker acknowledged the message, so `Ok` means the event is durably on the topic.
//!
//! Single events go through `PublishEvent`; [`Publisher::publish_all`] sends several events
//! of *different* partition keys in one `BulkPublishEvent` call (stable since daprd 1.17;
//! an older sidecar answers it as unimplemented, and then gets `BulkPublishEventAlpha1`,
//! which runs the same code). The Kafka component hands a bulk request to the producer as
//! one batch, which saves the per-call work in the sidecar, but a bulk request is neither
//! ordered nor transactional: two events of one key in one request could swap on a partial
//! failure, hence at most one event per key. daprd (1.16 to 1.18) answers a bulk request to
//! Kafka with an error as soon as any entry failed (some entries may have been written):
//! callers treat every entry of a failed request as not published and publish it again,
//! which consumers absorb by event id.

use std::{collections::HashMap, future::Future, time::Duration};

use dapr::dapr::proto::runtime::v1 as dapr_v1;
use uuid::Uuid;

use crate::Secret;

/// Name of the pub/sub component in `components/`.
pub const PUBSUB_NAME: &str = "pubsub";

/// The content type of a whole CloudEvent handed to the sidecar (what [`DaprPublisher`]
/// sends for an event).
pub const CLOUDEVENT: &str = "application/cloudevents+json";

/// One event to publish.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingEvent<'a> {
    pub topic: &'a str,
    /// Kafka record key: events with the same key keep their order.
    pub partition_key: &'a str,
    /// Also the CloudEvent id, so a redelivered event is recognisably the same one.
    pub event_id: Uuid,
    pub event_type: &'a str,
    /// JSON.
    pub payload: &'a [u8],
    /// The W3C trace context the event belongs to, written into the CloudEvent
    /// (`traceparent`), where the consumers continue the trace.
    pub traceparent: Option<&'a str>,
}

/// Why an event was not published. The relay decides by it when to back off, when to hand
/// the publisher lock over and when to park an event, so each variant says what is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// No answer from the sidecar: it could not be reached (not started, restarting, dead),
    /// the connection broke while the call was in flight, or the call ran past
    /// [`CALL_DEADLINE`]. Nothing is known about the event or the broker.
    #[error("dapr sidecar unreachable: {0}")]
    Unavailable(String),
    /// The sidecar answered that the broker did not take the event now (broker down, a
    /// partition without a leader, too few in-sync replicas, a timeout): the same event can
    /// succeed later.
    #[error("publish failed: {0}")]
    Failed(String),
    /// The broker, or the sidecar's own rules, refuse this very event, and will every time:
    /// record too large, invalid record, not authorized, unknown topic, a topic the app's
    /// scopes do not allow.
    #[error("publish refused: {0}")]
    Refused(String),
}

impl PublishError {
    /// The error for an answer the sidecar gave with `message` (daprd reports the Kafka
    /// producer's error text in it): [`PublishError::Refused`] when the text names a refusal
    /// of the record itself, else [`PublishError::Failed`].
    pub fn answered(message: impl Into<String>) -> Self {
        let message = message.into();
        if refuses_the_record(&message) {
            Self::Refused(message)
        } else {
            Self::Failed(message)
        }
    }
}

/// The broker's error texts (as the Kafka producer behind daprd words them) that refuse the
/// record itself, so that trying it again cannot succeed.
const REFUSALS: &[&str] = &[
    "message was too large",
    "larger than configured producer.maxmessagebytes",
    "larger than the configured segment size",
    "failed the validation on broker",
    "timestamp of the message is out of acceptable range",
    "not authorized",
    "topic or partition that does not exist",
    "operation on an invalid topic",
    "do not satisfy the configured policy",
];

fn refuses_the_record(message: &str) -> bool {
    let message = message.to_lowercase();
    REFUSALS.iter().any(|r| message.contains(r))
}

/// Something events can be published through. The relay is generic over it so in-process
/// tests can stop at this boundary.
pub trait Publisher: Send + Sync + 'static {
    fn publish(
        &self,
        event: OutgoingEvent<'_>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// Publishes `events`, which must all have different partition keys, in one call where
    /// the publisher can, and answers one result per event, in order. No order holds between
    /// them, and a failed call may still have written some of them. The default publishes
    /// them one after another.
    /// Whether the sidecar answers a call that publishes nothing, within a short time. After
    /// calls that got no answer, the caller asks this before it publishes again, so it does
    /// not queue publishes in a sidecar that is frozen (which would write them whenever it
    /// resumes, possibly after another replica published newer events). Default: yes.
    fn answers(&self) -> impl Future<Output = bool> + Send {
        async { true }
    }

    fn publish_all(
        &self,
        events: &[OutgoingEvent<'_>],
    ) -> impl Future<Output = Vec<Result<(), PublishError>>> + Send {
        async move {
            let mut results = Vec::with_capacity(events.len());
            for event in events {
                results.push(self.publish(*event).await);
            }
            results
        }
    }
}

use crate::sidecar::{CONNECT_TIMEOUT, GrpcClient, SidecarClient};

/// How long one publish call may take before it counts as unanswered. daprd bounds its own
/// broker call (`components/resiliency.yaml`: 10 s) and answers with an error after it, so
/// a call still open after this means the sidecar itself is stuck (frozen, overloaded): the
/// caller must not wait for it, and treats it as unreachable.
pub const CALL_DEADLINE: Duration = Duration::from_secs(12);

/// `call`, or [`PublishError::Unavailable`] when it has not answered within [`CALL_DEADLINE`].
async fn within_deadline<T>(
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, PublishError> {
    match tokio::time::timeout(CALL_DEADLINE, call).await {
        Ok(answer) => answer.map_err(|s| call_error(&s)),
        Err(_) => Err(deadline_passed()),
    }
}

fn deadline_passed() -> PublishError {
    PublishError::Unavailable(format!(
        "the sidecar did not answer within {} s",
        CALL_DEADLINE.as_secs()
    ))
}

/// Publishes through the Dapr sidecar's gRPC API. Connects lazily and keeps retrying to
/// connect, so a service may start before its sidecar. All calls share one HTTP/2
/// connection.
pub struct DaprPublisher {
    sidecar: SidecarClient,
    pubsub: String,
    /// Set once the sidecar answered `BulkPublishEvent` as unimplemented (daprd before
    /// 1.17): bulk calls then use `BulkPublishEventAlpha1`, which it serves with the same
    /// code.
    bulk_alpha: std::sync::atomic::AtomicBool,
    /// The sidecar's app id (its `GetMetadata`), asked once: the envelopes' `source`.
    app_id: tokio::sync::OnceCell<String>,
}

impl DaprPublisher {
    /// `grpc_port`: the sidecar's gRPC port (`DAPR_GRPC_PORT`).
    pub fn new(grpc_port: u16, api_token: Option<Secret>) -> Self {
        Self {
            sidecar: SidecarClient::new(grpc_port, api_token),
            pubsub: PUBSUB_NAME.to_owned(),
            bulk_alpha: std::sync::atomic::AtomicBool::new(false),
            app_id: tokio::sync::OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<GrpcClient, PublishError> {
        self.sidecar
            .client()
            .await
            .map_err(PublishError::Unavailable)
    }

    /// One `PublishEvent` call: `data` to `topic` with `metadata` (partition key, CloudEvent
    /// id and type), answered within [`CALL_DEADLINE`]. `Ok` once the broker has it.
    pub async fn publish_event(
        &self,
        topic: &str,
        data: Vec<u8>,
        content_type: &str,
        metadata: HashMap<String, String>,
    ) -> Result<(), PublishError> {
        let mut client = self.client().await?;
        self.publish_with(&mut client, topic, data, content_type, metadata)
            .await
    }

    /// [`DaprPublisher::publish_event`] on a client already at hand.
    async fn publish_with(
        &self,
        client: &mut GrpcClient,
        topic: &str,
        data: Vec<u8>,
        content_type: &str,
        metadata: HashMap<String, String>,
    ) -> Result<(), PublishError> {
        let request = dapr_v1::PublishEventRequest {
            pubsub_name: self.pubsub.clone(),
            topic: topic.to_owned(),
            data,
            data_content_type: content_type.to_owned(),
            metadata,
        };
        within_deadline(client.publish_event(request))
            .await
            .map(drop)
    }

    /// The deprecated bulk call, for daprd before 1.17.
    async fn bulk_alpha1(
        client: &mut GrpcClient,
        request: dapr_v1::BulkPublishRequest,
    ) -> Result<tonic::Response<dapr_v1::BulkPublishResponse>, PublishError> {
        #[allow(deprecated)]
        within_deadline(client.bulk_publish_event_alpha1(request)).await
    }

    /// The app id the sidecar runs for, asked once.
    async fn app_id(&self, client: &mut GrpcClient) -> Result<&str, PublishError> {
        self.app_id
            .get_or_try_init(|| async {
                let answer = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    client.get_metadata(dapr_v1::GetMetadataRequest {}),
                )
                .await
                .map_err(|_| {
                    PublishError::Unavailable("the sidecar did not answer GetMetadata".into())
                })?
                .map_err(|s| call_error(&s))?;
                Ok(answer.into_inner().id)
            })
            .await
            .map(String::as_str)
    }

    /// One event as the sidecar gets it: the CloudEvent itself, passed through to the
    /// broker as it is (`rawPayload`), and the record's key.
    fn entry(&self, event: &OutgoingEvent<'_>, source: &str) -> Result<Raw, PublishError> {
        Ok(Raw {
            event: envelope(event, source, &self.pubsub)?,
            metadata: HashMap::from([("partitionKey".to_owned(), event.partition_key.to_owned())]),
        })
    }
}

/// The metadata that has daprd pass an event through as it is, without an envelope of its
/// own (for a bulk call: the request's, not the entries').
pub fn raw_payload() -> HashMap<String, String> {
    HashMap::from([("rawPayload".to_owned(), "true".to_owned())])
}

/// An event's CloudEvent and the metadata of its publish call.
struct Raw {
    event: Vec<u8>,
    metadata: HashMap<String, String>,
}

/// The CloudEvent of `event`, with the attributes daprd gives the envelopes it writes
/// itself (`specversion`, `id`, `source`: the app id, `type`, `datacontenttype`, `topic`,
/// `pubsubname`, `time`, and the trace context as `traceparent` and `traceid`), and the
/// payload as `data`, verbatim. Written here rather than by daprd because daprd's own
/// envelope costs it a JSON parse of the payload and a reflective decode of the metadata
/// per event, about half of what the sidecar spends publishing (BENCHMARKS.md,
/// "Publishing's cost"); the consumers' sidecars read it as any CloudEvent. A payload
/// that is not JSON is refused: it would make an envelope no consumer could read.
pub fn envelope(
    event: &OutgoingEvent<'_>,
    source: &str,
    pubsub: &str,
) -> Result<Vec<u8>, PublishError> {
    #[derive(serde::Serialize)]
    struct Attributes<'a> {
        specversion: &'static str,
        id: String,
        source: &'a str,
        #[serde(rename = "type")]
        event_type: &'a str,
        datacontenttype: &'static str,
        topic: &'a str,
        pubsubname: &'a str,
        time: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        traceparent: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        traceid: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tracestate: Option<&'static str>,
    }
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(event.payload) {
        return Err(PublishError::Refused(format!(
            "the event's payload is not JSON: {e}"
        )));
    }
    let attributes = Attributes {
        specversion: "1.0",
        id: event.event_id.to_string(),
        source,
        event_type: event.event_type,
        datacontenttype: "application/json",
        topic: event.topic,
        pubsubname: pubsub,
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        traceparent: event.traceparent,
        traceid: event.traceparent,
        tracestate: event.traceparent.map(|_| ""),
    };
    let mut out = serde_json::to_vec(&attributes)
        .map_err(|e| PublishError::Refused(format!("cannot write the CloudEvent: {e}")))?;
    // `{...}` becomes `{...,"data":<payload>}`.
    out.pop();
    out.reserve(event.payload.len() + 9);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(event.payload);
    out.push(b'}');
    Ok(out)
}

/// What a failed gRPC call says about the event.
fn call_error(status: &tonic::Status) -> PublishError {
    use tonic::Code;
    let text = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        // No answer: the connection was refused, or broke while the call was in flight
        // (daprd dying ends the call as Unknown or Cancelled, an h2 I/O error), or h2
        // itself failed. daprd reports the broker's errors as Internal, never these.
        Code::Unavailable | Code::Unknown | Code::Cancelled => PublishError::Unavailable(text),
        Code::Internal if status.message().starts_with("h2 protocol error") => {
            PublishError::Unavailable(text)
        }
        // daprd's own refusals: a topic the scopes forbid, no such component, a request it
        // cannot take.
        Code::PermissionDenied | Code::NotFound | Code::InvalidArgument => {
            PublishError::Refused(text)
        }
        _ => PublishError::answered(text),
    }
}

/// The result of each entry of one bulk call (`indices`: the entries' positions among the
/// caller's events) from daprd's answer, which lists only the failed entries, by id. A
/// failed entry whose id names no entry of the call cannot be attributed, so then every
/// entry counts as failed.
fn bulk_results(
    indices: &[usize],
    failed: Vec<dapr_v1::BulkPublishResponseFailedEntry>,
) -> Vec<(usize, Result<(), PublishError>)> {
    let mut results: Vec<(usize, Result<(), PublishError>)> =
        indices.iter().map(|&i| (i, Ok(()))).collect();
    for entry in failed {
        let at = entry
            .entry_id
            .parse::<usize>()
            .ok()
            .and_then(|i| indices.iter().position(|&j| j == i));
        match at {
            Some(at) => results[at].1 = Err(PublishError::answered(entry.error)),
            None => {
                let error = PublishError::Failed(format!(
                    "the sidecar reported a failed entry {:?} that is not in the call: {}",
                    entry.entry_id, entry.error
                ));
                for result in &mut results {
                    result.1 = Err(error.clone());
                }
                break;
            }
        }
    }
    results
}

/// A bulk call that failed as a whole: every entry failed. A refusal cannot be pinned on
/// any one entry (daprd fails the whole call when one entry was refused), so it counts as
/// a failure of each, never as each one's refusal.
fn whole_call_failed(
    indices: &[usize],
    error: &PublishError,
) -> Vec<(usize, Result<(), PublishError>)> {
    let error = match error {
        PublishError::Refused(e) if indices.len() > 1 => {
            PublishError::Failed(format!("the bulk call was refused as a whole: {e}"))
        }
        other => other.clone(),
    };
    indices.iter().map(|&i| (i, Err(error.clone()))).collect()
}

impl Publisher for DaprPublisher {
    async fn publish(&self, event: OutgoingEvent<'_>) -> Result<(), PublishError> {
        let mut client = self.client().await?;
        let source = self.app_id(&mut client).await?;
        let mut raw = self.entry(&event, source)?;
        raw.metadata.extend(raw_payload());
        self.publish_with(
            &mut client,
            event.topic,
            raw.event,
            CLOUDEVENT,
            raw.metadata,
        )
        .await
    }

    async fn answers(&self) -> bool {
        let Ok(mut client) = self.client().await else {
            return false;
        };
        matches!(
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                client.get_metadata(dapr_v1::GetMetadataRequest {})
            )
            .await,
            Ok(Ok(_))
        )
    }

    async fn publish_all(&self, events: &[OutgoingEvent<'_>]) -> Vec<Result<(), PublishError>> {
        if events.len() == 1 {
            return vec![self.publish(events[0]).await];
        }
        let mut by_topic: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, event) in events.iter().enumerate() {
            by_topic.entry(event.topic).or_default().push(i);
        }
        let mut results: Vec<Option<Result<(), PublishError>>> = vec![None; events.len()];
        let mut client = match self.client().await {
            Ok(c) => c,
            Err(e) => return vec![Err(e); events.len()],
        };
        let source = match self.app_id(&mut client).await {
            Ok(id) => id,
            Err(e) => return vec![Err(e); events.len()],
        };
        for (topic, mut indices) in by_topic {
            let mut entries = Vec::with_capacity(indices.len());
            indices.retain(|&i| match self.entry(&events[i], source) {
                Ok(raw) => {
                    entries.push(dapr_v1::BulkPublishRequestEntry {
                        // Unique within the request; daprd reports failed entries by it.
                        entry_id: i.to_string(),
                        event: raw.event,
                        content_type: CLOUDEVENT.to_owned(),
                        metadata: raw.metadata,
                    });
                    true
                }
                Err(refused) => {
                    results[i] = Some(Err(refused));
                    false
                }
            });
            if indices.is_empty() {
                continue;
            }
            let request = dapr_v1::BulkPublishRequest {
                pubsub_name: self.pubsub.clone(),
                topic: topic.to_owned(),
                entries,
                // daprd reads `rawPayload` from the request's metadata only. Nothing else
                // request-wide: the Kafka component copies request metadata over each
                // entry's, which would give every entry the same key.
                metadata: raw_payload(),
            };
            let answer = if self.bulk_alpha.load(std::sync::atomic::Ordering::Relaxed) {
                Self::bulk_alpha1(&mut client, request).await
            } else {
                match tokio::time::timeout(
                    CALL_DEADLINE,
                    client.bulk_publish_event(request.clone()),
                )
                .await
                {
                    Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                        self.bulk_alpha
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        Self::bulk_alpha1(&mut client, request).await
                    }
                    Ok(answer) => answer.map_err(|s| call_error(&s)),
                    Err(_) => Err(deadline_passed()),
                }
            };
            let outcome = match answer {
                Ok(response) => bulk_results(&indices, response.into_inner().failed_entries),
                Err(error) => whole_call_failed(&indices, &error),
            };
            for (i, result) in outcome {
                results[i] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(PublishError::Failed(
                        "the bulk call gave no result for this event".into(),
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_ends_without_the_sidecars_answer_is_unreachable_never_a_refusal() {
        for status in [
            tonic::Status::unavailable("connection refused"),
            tonic::Status::unknown("error reading a body from connection: broken pipe"),
            tonic::Status::cancelled("operation was canceled: connection closed"),
            tonic::Status::internal("h2 protocol error: error reading a body from connection"),
        ] {
            assert!(
                matches!(call_error(&status), PublishError::Unavailable(_)),
                "{status:?}"
            );
        }
    }

    #[test]
    fn the_brokers_refusals_of_a_record_are_told_from_its_passing_failures() {
        let refused = [
            "error when publish to topic task-events in pubsub pubsub: kafka: Failed to produce message to topic task-events: kafka server: Message was too large, server rejected it to avoid allocation error",
            "kafka server: This record has failed the validation on broker and hence will be rejected",
            "kafka server: The client is not authorized to access this topic",
            "kafka server: Request was for a topic or partition that does not exist on this broker",
        ];
        for message in refused {
            assert!(
                matches!(
                    call_error(&tonic::Status::internal(message)),
                    PublishError::Refused(_)
                ),
                "{message}"
            );
        }
        assert!(matches!(
            call_error(&tonic::Status::permission_denied(
                "topic x is not allowed for app id y"
            )),
            PublishError::Refused(_)
        ));
        let passing = [
            "kafka server: Messages are rejected since there are fewer in-sync replicas than required",
            "kafka server: In the middle of a leadership election, there is currently no leader for this partition and hence it is unavailable for writes",
            "kafka: client has run out of available brokers to talk to: dial tcp 127.0.0.1:9092: connect: connection refused",
            "context deadline exceeded",
        ];
        for message in passing {
            assert!(
                matches!(
                    call_error(&tonic::Status::internal(message)),
                    PublishError::Failed(_)
                ),
                "{message}"
            );
        }
    }

    fn failed(id: &str, error: &str) -> dapr_v1::BulkPublishResponseFailedEntry {
        dapr_v1::BulkPublishResponseFailedEntry {
            entry_id: id.to_owned(),
            error: error.to_owned(),
        }
    }

    #[test]
    fn a_bulk_answer_fails_the_entries_it_names_and_every_entry_when_it_names_a_stranger() {
        let results = bulk_results(
            &[0, 2, 5],
            vec![failed("2", "kafka server: Message was too large")],
        );
        assert_eq!(results[0], (0, Ok(())));
        assert!(matches!(results[1], (2, Err(PublishError::Refused(_)))));
        assert_eq!(results[2], (5, Ok(())));

        for stranger in ["7", "x", ""] {
            let results = bulk_results(&[0, 2, 5], vec![failed(stranger, "boom")]);
            assert!(
                results
                    .iter()
                    .all(|(_, r)| matches!(r, Err(PublishError::Failed(_)))),
                "{stranger:?}: {results:?}"
            );
        }
    }

    #[test]
    fn a_bulk_call_refused_as_a_whole_is_no_refusal_of_each_entry() {
        let refused = PublishError::Refused("kafka server: Message was too large".into());
        let results = whole_call_failed(&[1, 3], &refused);
        assert!(
            results
                .iter()
                .all(|(_, r)| matches!(r, Err(PublishError::Failed(_))))
        );
        // One entry alone: the refusal is its own.
        assert_eq!(
            whole_call_failed(&[4], &refused),
            vec![(4, Err(refused.clone()))]
        );
    }

    fn outgoing<'a>(payload: &'a [u8], traceparent: Option<&'a str>) -> OutgoingEvent<'a> {
        OutgoingEvent {
            topic: "task-events",
            partition_key: "ann",
            event_id: Uuid::from_u128(7),
            event_type: "task.created",
            payload,
            traceparent,
        }
    }

    #[test]
    fn the_envelope_carries_what_daprd_would_write_and_the_payload_verbatim() -> anyhow::Result<()>
    {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let payload = r#"{"event_type":"task.created","user_id":"ann","n":12345678901234567890}"#;
        let bytes = envelope(
            &outgoing(payload.as_bytes(), Some(tp)),
            "chat-api",
            "pubsub",
        )?;
        let ce: serde_json::Value = serde_json::from_slice(&bytes)?;
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["id"], Uuid::from_u128(7).to_string());
        assert_eq!(ce["source"], "chat-api");
        assert_eq!(ce["type"], "task.created");
        assert_eq!(ce["datacontenttype"], "application/json");
        assert_eq!(ce["topic"], "task-events");
        assert_eq!(ce["pubsubname"], "pubsub");
        assert_eq!(ce["traceparent"], tp);
        assert_eq!(ce["traceid"], tp);
        let time = ce["time"].as_str().unwrap_or_default();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{ce}");
        // The payload's own bytes, not a re-encoding (the big number survives).
        let text = String::from_utf8(bytes)?;
        assert!(text.ends_with(&format!(",\"data\":{payload}}}")), "{text}");

        let untraced = envelope(&outgoing(payload.as_bytes(), None), "chat-api", "pubsub")?;
        let ce: serde_json::Value = serde_json::from_slice(&untraced)?;
        assert!(
            ce.get("traceparent").is_none() && ce.get("traceid").is_none(),
            "{ce}"
        );
        Ok(())
    }

    #[test]
    fn a_payload_that_is_not_json_is_refused_not_wrapped() {
        for payload in [&b"{\"a\":"[..], b"", b"not json", b"{} {}"] {
            assert!(
                matches!(
                    envelope(&outgoing(payload, None), "chat-api", "pubsub"),
                    Err(PublishError::Refused(_))
                ),
                "{payload:?}"
            );
        }
    }
}
