//! The HTTP listener each service binds at build time (port 0 in tests, so the port is read
//! back) and serves its router on until shutdown.
//!
//! A client gets [`HEADER_TIMEOUT_DEFAULT`] (or `HTTP_HEADER_TIMEOUT_SECONDS`) to send a
//! request's headers, counted from when the server starts waiting for them; so a client that
//! sends them a byte at a time, and a keep-alive connection left idle that long, is closed.
//!
//! On shutdown it first drains for `SHUTDOWN_DRAIN_SECONDS` (default 0: not at all): it keeps
//! accepting and serving, but every HTTP/1 answer says `Connection: close`, so a client on a
//! keep-alive connection gets its answer and moves to a new connection (on Kubernetes, to
//! another pod) instead of having an idle connection closed under a request it is sending.
//! Then it stops accepting, closes idle connections and lets in-flight requests finish.
//!
//! Every request runs to completion in a task of its own, whatever the client does: hyper
//! drops a request's future when its client goes away, and a handler dropped between a
//! transaction's `BEGIN` and `COMMIT` would leave its write half-done and, with some
//! drivers, its pooled connection inside the transaction. Detached, the write commits or
//! rolls back as it would have, and only the answer is lost.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use axum::{Router, extract::Request, middleware::Next, response::Response};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::net::TcpListener;

/// How long a client may take to send a request's headers (and how long a keep-alive
/// connection may stay idle) unless `HTTP_HEADER_TIMEOUT_SECONDS` says otherwise.
pub const HEADER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(20);

/// A service built and bound but not serving yet: its name, its listener, the state its
/// routes share, and how its router is made from that state. The workers and the reminder
/// scanner are each one (their `Application`), built by their crate's `build` and started
/// the same way: `run_until(shutdown::signal())`.
pub struct Service<S> {
    name: &'static str,
    listener: Listener,
    state: S,
    router: fn(S) -> Router,
}

impl<S> Service<S> {
    pub fn new(name: &'static str, listener: Listener, state: S, router: fn(S) -> Router) -> Self {
        Self {
            name,
            listener,
            state,
            router,
        }
    }

    /// The port it is bound to.
    pub fn port(&self) -> u16 {
        self.listener.port()
    }

    pub fn state(&self) -> &S {
        &self.state
    }

    /// Serves until `stop` resolves, then lets in-flight requests finish.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "{} listening", self.name);
        self.listener.serve((self.router)(self.state), stop).await
    }
}

/// A bound listener that is not serving yet.
pub struct Listener {
    inner: TcpListener,
    header_timeout: Duration,
    drain: Duration,
}

impl Listener {
    pub async fn bind(host: IpAddr, port: u16) -> anyhow::Result<Self> {
        let header_timeout = crate::env::env_in(
            "HTTP_HEADER_TIMEOUT_SECONDS",
            HEADER_TIMEOUT_DEFAULT.as_secs(),
            1..=600,
            "seconds a client may take to send a request's headers",
        )?;
        let drain = crate::env::env_in(
            "SHUTDOWN_DRAIN_SECONDS",
            0,
            0..=60,
            "seconds of answering with `Connection: close` before shutting down",
        )?;
        let addr = SocketAddr::new(host, port);
        let inner = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        Ok(Self {
            inner,
            header_timeout: Duration::from_secs(header_timeout),
            drain: Duration::from_secs(drain),
        })
    }

    /// The same listener with another drain period (tests; services read the setting).
    pub fn with_drain(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// The same listener with another header timeout (tests; services read the setting).
    pub fn with_header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// The port it is bound to (the one the OS chose when asked for 0).
    pub fn port(&self) -> u16 {
        self.inner
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// Serves `router` until `stop` resolves, drains (see the module docs), then lets
    /// in-flight requests finish.
    pub async fn serve(
        self,
        router: Router,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let draining = Arc::new(AtomicBool::new(false));
        let router = close_when_draining(detached(router), draining.clone());
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.header_timeout)
            .keep_alive_timeout(self.header_timeout);
        let graceful = GracefulShutdown::new();
        let mut stop = std::pin::pin!(stop);
        let drain_end = tokio::time::sleep(Duration::ZERO);
        let mut drain_end = std::pin::pin!(drain_end);
        loop {
            let is_draining = draining.load(Ordering::SeqCst);
            let accepted = tokio::select! {
                accepted = self.inner.accept() => accepted,
                () = &mut stop, if !is_draining => {
                    if self.drain.is_zero() {
                        break;
                    }
                    tracing::info!(seconds = self.drain.as_secs(), "draining: answers close their connections");
                    draining.store(true, Ordering::SeqCst);
                    drain_end.as_mut().reset(tokio::time::Instant::now() + self.drain);
                    continue;
                }
                () = &mut drain_end, if is_draining => break,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let service = TowerToHyperService::new(router.clone());
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
        drop(self.inner);
        graceful.shutdown().await;
        Ok(())
    }
}

/// `router` whose HTTP/1 answers say `Connection: close` once `draining` is set (hyper then
/// closes the connection after the answer).
fn close_when_draining(router: Router, draining: Arc<AtomicBool>) -> Router {
    router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let draining = draining.clone();
            async move {
                let http1 = request.version() < axum::http::Version::HTTP_2;
                let mut response = next.run(request).await;
                if http1 && draining.load(Ordering::SeqCst) {
                    response.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                }
                response
            }
        },
    ))
}

/// `router` with every request handled in its own task, so a client that disconnects
/// cannot cancel it halfway (see the module docs). A panic inside is re-raised where the
/// request was awaited, so panic handling layers inside `router` still see it.
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::routing::get;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    use super::*;

    /// A server on a free loopback port with a one-second header timeout.
    async fn serve() -> (u16, tokio::sync::oneshot::Sender<()>) {
        let (port, stop, _) = serve_with(|l| l.with_header_timeout(Duration::from_secs(1))).await;
        (port, stop)
    }

    /// A server of "hello" on a free loopback port, its listener set up by `set`: its port,
    /// its stop signal and its task.
    async fn serve_with(
        set: impl FnOnce(Listener) -> Listener,
    ) -> (
        u16,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let listener = set(Listener::bind(IpAddr::from([127, 0, 0, 1]), 0)
            .await
            .expect("bind"));
        let port = listener.port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = Router::new().route("/", get(|| async { "hello" }));
        let server = tokio::spawn(listener.serve(router, async {
            let _ = stopped.await;
        }));
        (port, stop, server)
    }

    /// One keep-alive request on `stream`: the answer's head and body.
    async fn ask(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn while_draining_it_serves_and_tells_keep_alive_clients_to_reconnect() {
        let (port, stop, server) = serve_with(|l| l.with_drain(Duration::from_secs(1))).await;
        let mut kept = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let before = ask(&mut kept).await;
        assert!(
            before.starts_with("HTTP/1.1 200") && !before.contains("connection: close"),
            "{before}"
        );
        let _ = stop.send(());
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The idle keep-alive connection was not closed: its next request is answered, with
        // the word to close it.
        let during = ask(&mut kept).await;
        assert!(during.starts_with("HTTP/1.1 200"), "{during}");
        assert!(during.contains("connection: close"), "{during}");
        // New connections are still accepted while draining.
        let mut fresh = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        assert!(ask(&mut fresh).await.contains("hello"));
        // Then it stops.
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stops after draining")
            .expect("join")
            .expect("serve");
        assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
    }

    #[tokio::test]
    async fn a_client_sending_its_headers_a_byte_at_a_time_is_cut_off() {
        let (port, _stop) = serve().await;
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let started = Instant::now();
        let request =
            b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let mut cut_off = false;
        for byte in request {
            if stream.write_all(&[*byte]).await.is_err() {
                cut_off = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            // The server answers a timed-out head by closing (perhaps after a 408).
            let mut buf = [0u8; 512];
            if let Ok(read) =
                tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
            {
                let n = read.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(
                    !text.contains("hello"),
                    "the slow request was served: {text}"
                );
                cut_off = true;
                break;
            }
        }
        let took = started.elapsed();
        assert!(cut_off, "the connection stayed open for {took:?}");
        assert!(
            took < Duration::from_secs(3),
            "cut off only after {took:?}, with a one-second timeout"
        );
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_and_prompt_clients_are_served() {
        let (port, _stop) = serve().await;
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.expect("read");
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("hello"), "{text}");
        // Then nothing: the server closes the connection after the timeout.
        let started = Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "an idle connection was still open after {:?}",
            started.elapsed()
        );
    }

    /// A client that hangs up while its request is being handled does not cut the handler
    /// short: a write half done (a transaction begun, its commit not yet sent) finishes.
    #[tokio::test]
    async fn a_client_that_hangs_up_mid_request_does_not_cancel_the_handler() {
        let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let listener = Listener::bind(IpAddr::from([127, 0, 0, 1]), 0)
            .await
            .expect("bind");
        let port = listener.port();
        let flag = finished.clone();
        let router = Router::new().route(
            "/slow",
            get(move || async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                "done"
            }),
        );
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(listener.serve(router, async {
            let _ = stopped.await;
        }));
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(stream);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            finished.load(std::sync::atomic::Ordering::SeqCst),
            "the handler was cancelled when its client hung up"
        );
    }

    #[tokio::test]
    async fn stopping_lets_the_listener_go() {
        let (port, stop) = serve().await;
        let _ = stop.send(());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            TcpStream::connect(("127.0.0.1", port)).await.is_err(),
            "still accepting after stop"
        );
    }
}
