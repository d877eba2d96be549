//! What daprd delivers to a subscription route, unwrapped.
//!
//! daprd posts a CloudEvent envelope (`application/cloudevents+json`) whose `data` holds the
//! event as published. A publisher may also have sent raw JSON that daprd passes through, so
//! a body without the envelope is taken as the event itself.

use serde_json::Value;
use service_kit::SubscriptionOutcome;
use todo_domain::{EventType, UserId};

/// The event inside a delivery, with the envelope's attributes when there was one.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The CloudEvent `id` (the publisher sets it to the event id).
    pub id: Option<String>,
    /// The CloudEvent `type` (the publisher sets it to the event type).
    pub event_type: Option<String>,
    /// The CloudEvent `traceparent`: the trace the event belongs to (the publisher's, or
    /// daprd's).
    pub traceparent: Option<String>,
    /// The event itself.
    pub data: Value,
}

/// Why a body holds no event. Never worth retrying: the same bytes never decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    NotJson(String),
    /// A CloudEvent without `data`.
    NoData,
    /// `data_base64`: binary content, which no event of ours is.
    BinaryData,
    /// `data` is a string that does not hold JSON.
    DataNotJson(String),
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotJson(e) => write!(f, "body is not JSON: {e}"),
            Self::NoData => f.write_str("CloudEvent has no data"),
            Self::BinaryData => f.write_str("CloudEvent carries binary data (data_base64)"),
            Self::DataNotJson(e) => write!(f, "CloudEvent data is not JSON: {e}"),
        }
    }
}

/// Unwraps a delivered body.
pub fn unwrap(body: &[u8]) -> Result<Delivery, EnvelopeError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let Value::Object(mut fields) = value else {
        // Not an object: not an envelope, and the caller's decoding will reject it.
        return Ok(Delivery {
            id: None,
            event_type: None,
            traceparent: None,
            data: value,
        });
    };
    let is_envelope = fields.contains_key("specversion")
        || (fields.contains_key("data") && !fields.contains_key("event_id"));
    if !is_envelope {
        return Ok(Delivery {
            id: None,
            event_type: None,
            traceparent: None,
            data: Value::Object(fields),
        });
    }
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let id = text(fields.get("id"));
    let event_type = text(fields.get("type"));
    let traceparent = text(fields.get("traceparent"));
    let data = match fields.remove("data") {
        // A publisher that declared a non-JSON content type gets its JSON back as a string.
        Some(Value::String(s)) => {
            serde_json::from_str(&s).map_err(|e| EnvelopeError::DataNotJson(e.to_string()))?
        }
        Some(Value::Null) | None if fields.contains_key("data_base64") => {
            return Err(EnvelopeError::BinaryData);
        }
        Some(Value::Null) | None => return Err(EnvelopeError::NoData),
        Some(data) => data,
    };
    Ok(Delivery {
        id,
        event_type,
        traceparent,
        data,
    })
}

/// Why an event is not processed, and what daprd should do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub outcome: SubscriptionOutcome,
    pub reason: String,
}

impl Rejected {
    pub(crate) fn drop(reason: impl Into<String>) -> Self {
        Self {
            outcome: SubscriptionOutcome::Drop,
            reason: reason.into(),
        }
    }

    pub(crate) fn retry(reason: impl Into<String>) -> Self {
        Self {
            outcome: SubscriptionOutcome::Retry,
            reason: reason.into(),
        }
    }
}

/// The checks every versioned event of ours gets before it is decoded: a JSON object, a
/// `schema_version` from 1 to `max_version`, the `event_type` the route takes, and a valid
/// `user_id` (checked before full decoding, so a bad one is retried for a while rather than
/// dropped). Anything else wrong is dropped: the same bytes never decode.
pub fn check_versioned(
    data: &Value,
    max_version: u32,
    expected: EventType,
) -> Result<UserId, Rejected> {
    if !data.is_object() {
        return Err(Rejected::drop("event is not a JSON object"));
    }
    match data.get("schema_version").and_then(Value::as_u64) {
        Some(v) if (1..=u64::from(max_version)).contains(&v) => {}
        Some(v) => return Err(Rejected::drop(format!("unknown schema_version {v}"))),
        None => return Err(Rejected::drop("schema_version missing or not a number")),
    }
    let event_type = data.get("event_type").and_then(Value::as_str);
    if event_type != Some(expected.as_str()) {
        return Err(Rejected::drop(format!(
            "event_type {event_type:?} is not {}",
            expected.as_str()
        )));
    }
    match data.get("user_id") {
        None | Some(Value::Null) => Err(Rejected::retry("user_id missing")),
        Some(Value::String(s)) => {
            UserId::parse(s).map_err(|e| Rejected::retry(format!("user_id invalid: {}", e.message)))
        }
        Some(_) => Err(Rejected::retry("user_id is not a string")),
    }
}

/// For the handlers' unit tests: bodies as daprd delivers them, and what a decode answers.
#[cfg(test)]
pub(crate) mod testing {
    use serde_json::{Value, json};
    use service_kit::SubscriptionOutcome;

    use super::Rejected;

    pub fn json_of(event: &impl serde::Serialize) -> Value {
        serde_json::to_value(event).unwrap_or_default()
    }

    /// `data` in a CloudEvent envelope of type `kind`.
    pub fn cloud_event(kind: &str, data: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"specversion": "1.0", "id": "x", "type": kind, "data": data}))
            .unwrap_or_default()
    }

    /// What daprd is told for a body that decoded (`Success`) or not.
    pub fn outcome<T>(decoded: Result<T, Rejected>) -> SubscriptionOutcome {
        decoded.map_or_else(|r| r.outcome, |_| SubscriptionOutcome::Success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap_or_default()
    }

    #[test]
    fn a_cloud_event_yields_its_data_and_attributes() {
        let body = bytes(json!({
            "specversion": "1.0", "id": "e1", "type": "task.completed", "source": "chat-api",
            "datacontenttype": "application/json", "topic": "task-events",
            "data": {"event_id": "e1", "n": 1}
        }));
        let d = unwrap(&body).expect("unwraps");
        assert_eq!(d.id.as_deref(), Some("e1"));
        assert_eq!(d.event_type.as_deref(), Some("task.completed"));
        assert_eq!(d.data, json!({"event_id": "e1", "n": 1}));
    }

    #[test]
    fn data_sent_as_a_json_string_is_parsed() {
        let body = bytes(json!({"specversion": "1.0", "data": "{\"event_id\":\"e1\"}"}));
        assert_eq!(unwrap(&body).map(|d| d.data), Ok(json!({"event_id": "e1"})));
    }

    #[test]
    fn a_raw_event_is_taken_as_it_is() {
        let body = bytes(json!({"event_id": "e1", "data": "not an envelope"}));
        let d = unwrap(&body).expect("unwraps");
        assert_eq!(d.id, None);
        assert_eq!(d.data["event_id"], "e1");
    }

    #[test]
    fn bodies_without_an_event_are_rejected() {
        assert!(matches!(
            unwrap(b"{not json"),
            Err(EnvelopeError::NotJson(_))
        ));
        assert_eq!(
            unwrap(&bytes(json!({"specversion": "1.0"}))),
            Err(EnvelopeError::NoData)
        );
        assert_eq!(
            unwrap(&bytes(json!({"specversion": "1.0", "data_base64": "AAE="}))),
            Err(EnvelopeError::BinaryData)
        );
        assert!(matches!(
            unwrap(&bytes(json!({"specversion": "1.0", "data": "{oops"}))),
            Err(EnvelopeError::DataNotJson(_))
        ));
    }
}
