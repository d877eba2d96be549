//! W3C trace context (`traceparent`), carried from a request through the outbox, Kafka and
//! the consumers, so one change is one trace across every process.
//!
//! `traceparent` is `00-{trace id: 32 hex}-{parent span id: 16 hex}-{flags: 2 hex}`. A
//! request or event that brings a valid one continues its trace (with a span id of its own);
//! anything else starts a new trace. Ids are random (UUID v4 bytes): unguessable, and never
//! all zeros, which the standard reserves as invalid.

use std::fmt;

use axum::http::HeaderMap;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use uuid::Uuid;

/// The header (and CloudEvent attribute) that carries the context.
pub const TRACEPARENT: &str = "traceparent";
/// The answer's header naming the request's trace (W3C Trace Context level 2).
pub const TRACERESPONSE: &str = "traceresponse";

/// One span's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    sampled: bool,
}

impl TraceContext {
    /// A context read from a `traceparent` value; `None` when it is not a valid version-00
    /// (or later, read as 00) value. Upper-case hex, all-zero ids and version `ff` are
    /// invalid, as the standard says.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let mut parts = value.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !hex(version, 2)
            || version == "ff"
            || !hex(trace, 32)
            || !hex(span, 16)
            || !hex(flags, 2)
        {
            return None;
        }
        // Version 00 has exactly four fields; a later version may append more.
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The start of a new trace (sampled).
    pub fn new_root() -> Self {
        Self {
            trace_id: nonzero(|| Uuid::new_v4().as_u128()),
            span_id: new_span_id(),
            sampled: true,
        }
    }

    /// A span of this trace with this one as its parent.
    pub fn child(&self) -> Self {
        Self {
            span_id: new_span_id(),
            ..*self
        }
    }

    /// The context a request's valid `traceparent` header names (its parent), if any.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
    }

    /// The trace id, 32 lower-case hex digits: what log lines carry as `trace_id`.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    pub fn span_id(&self) -> String {
        format!("{:016x}", self.span_id)
    }
}

/// Starts `span` as the span of one unit of work (a request, a handled event, a cron tick):
/// a child of `parent` (a context that came from elsewhere), or the root of a new trace.
/// Records the span's `trace_id` field (declare it `tracing::field::Empty`) and returns its
/// context, which its writes store and its log lines name.
///
/// When spans are exported ([`crate::telemetry`]), that context is the exported span's own,
/// so a consumer that continues it names a span the collector has as its parent. Otherwise
/// the ids are drawn here and nothing else happens.
pub fn start(span: &tracing::Span, parent: Option<TraceContext>) -> TraceContext {
    let remote = parent.map_or_else(opentelemetry::Context::new, |p| {
        opentelemetry::Context::new().with_remote_span_context(p.span_context())
    });
    let context = if span.set_parent(remote).is_ok() {
        TraceContext::of_span(span.context().span().span_context())
    } else {
        None
    }
    .unwrap_or_else(|| parent.map_or_else(TraceContext::new_root, |p| p.child()));
    span.record("trace_id", tracing::field::display(context.trace_id()));
    context
}

impl TraceContext {
    fn span_context(&self) -> SpanContext {
        SpanContext::new(
            TraceId::from_bytes(self.trace_id.to_be_bytes()),
            SpanId::from_bytes(self.span_id.to_be_bytes()),
            if self.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        )
    }

    /// An exported span's context; `None` when it is not valid (nothing exports spans).
    fn of_span(span: &SpanContext) -> Option<Self> {
        span.is_valid().then(|| Self {
            trace_id: u128::from_be_bytes(span.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(span.span_id().to_bytes()),
            sampled: span.is_sampled(),
        })
    }
}

/// The `traceparent` value naming this span as the parent.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

fn new_span_id() -> u64 {
    nonzero(|| Uuid::new_v4().as_u128() as u64)
}

fn nonzero<T: PartialEq + Default>(mut draw: impl FnMut() -> T) -> T {
    loop {
        let v = draw();
        if v != T::default() {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let parent = TraceContext::parse(GIVEN).expect("valid");
        assert_eq!(parent.to_string(), GIVEN);
        let child = parent.child();
        assert_eq!(child.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(child.span_id(), parent.span_id());
        assert!(child.to_string().ends_with("-01"));
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, GIVEN.parse().expect("header value"));
        assert_eq!(TraceContext::from_headers(&headers), Some(parent));
    }

    #[test]
    fn invalid_values_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
            let span = tracing::info_span!("work", trace_id = tracing::field::Empty);
            let fresh = start(&span, TraceContext::parse(bad));
            assert_ne!(fresh.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert!(TraceContext::parse(&fresh.to_string()).is_some());
        }
        // A later version is read as far as version 00 goes.
        assert!(
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-ab")
                .is_some()
        );
    }

    #[test]
    fn without_an_exporter_a_span_gets_ids_of_our_own() {
        let parent = TraceContext::parse(GIVEN).expect("valid");
        let span = tracing::info_span!("work", trace_id = tracing::field::Empty);
        let child = start(&span, Some(parent));
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id(), parent.span_id());
        let root = start(&span, None);
        assert_ne!(root.trace_id(), parent.trace_id());
        let back = TraceContext::of_span(&parent.span_context()).expect("valid");
        assert_eq!(back, parent);
    }

    #[test]
    fn new_traces_differ() {
        let (a, b) = (TraceContext::new_root(), TraceContext::new_root());
        assert_ne!(a.trace_id(), b.trace_id());
        assert_eq!(a.trace_id().len(), 32);
        assert_eq!(a.span_id().len(), 16);
    }
}
