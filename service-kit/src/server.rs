//! The HTTP listener each service binds at build time (port 0 in tests, so the port is read
//! back) and serves its router on until shutdown.
//!
//! Every request runs to completion in a task of its own, whatever the client does: hyper
//! drops a request's future when its client goes away, and a handler dropped between a
//! transaction's `BEGIN` and `COMMIT` would leave its write half-done and, with some
//! drivers, its pooled connection inside the transaction. Detached, the write commits or
//! rolls back as it would have, and only the answer is lost.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;
use axum::{Router, extract::Request, middleware::Next, response::Response};
use tokio::net::TcpListener;

/// A bound listener that is not serving yet.
pub struct Listener {
    inner: TcpListener,
}

impl Listener {
    pub async fn bind(host: IpAddr, port: u16) -> anyhow::Result<Self> {
        let addr = SocketAddr::new(host, port);
        let inner = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        Ok(Self { inner })
    }

    /// The port it is bound to (the one the OS chose when asked for 0).
    pub fn port(&self) -> u16 {
        self.inner
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// Serves `router` until `stop` resolves, then lets in-flight requests finish.
    pub async fn serve(
        self,
        router: Router,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.inner, detached(router))
            .with_graceful_shutdown(stop)
            .await
            .context("server error")
    }
}

/// `router` with every request handled in its own task, so a client that disconnects
/// cannot cancel it halfway (see the module docs). A panic inside is re-raised where the
/// request was awaited, so panic handling layers inside `router` see it as before.
pub fn detached(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(run_detached))
}

async fn run_detached(request: Request, next: Next) -> Response {
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down cancels the task; the client is gone by then too.
        Err(_) => {
            axum::response::IntoResponse::into_response(axum::http::StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}
