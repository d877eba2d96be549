//! The trace a write belongs to. A service runs a request (or a handled event) inside
//! [`scope`] with its W3C `traceparent`; every outbox row the write appends stores it, and the
//! relay publishes the event with it, so the consumers continue the request's trace.

use std::future::Future;

tokio::task_local! {
    static TRACEPARENT: Option<String>;
}

/// Runs `f` with `traceparent` as the trace of the writes it makes.
pub async fn scope<F: Future>(traceparent: Option<String>, f: F) -> F::Output {
    TRACEPARENT.scope(traceparent, f).await
}

/// The trace of the write being made, if it runs inside [`scope`].
pub fn current() -> Option<String> {
    TRACEPARENT.try_with(Clone::clone).ok().flatten()
}
