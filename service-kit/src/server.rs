//! The HTTP listener each service binds at build time (port 0 in tests, so the port is read
//! back) and serves its router on until shutdown.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;
use axum::Router;
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
        axum::serve(self.inner, router)
            .with_graceful_shutdown(stop)
            .await
            .context("server error")
    }
}
