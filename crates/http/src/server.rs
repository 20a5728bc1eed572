//! The accept loop. `axum::serve` gives hyper no timer, so a client that opens a connection and
//! sends its request line and headers slowly, or nothing at all, holds the connection (a file
//! descriptor and a task) for as long as it likes: enough of them and `accept` fails for
//! everyone (slowloris). Here hyper's HTTP/1 header-read timeout is on. It runs from the moment
//! the server waits for a request's head, so it also closes a keep-alive connection left idle
//! that long. Slow bodies are the request timeout's (`REQUEST_TIMEOUT_SECONDS`, 408).
//!
//! HTTP/1.1 only: `axum::serve` also took HTTP/2 with prior knowledge (cleartext h2c), and it
//! read the first bytes of every connection, with no timeout, to tell the two apart. Nothing
//! here needs h2c (HTTP/2 and TLS end at the proxy in front), and that wait was one more place to
//! hold a connection open for free.
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{Service as _, ServiceExt as _};

/// How the accept loop treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Longest wait for a request's line and headers, idle keep-alive time included; the
    /// connection is closed after it (`HEADER_READ_TIMEOUT_SECONDS`).
    pub header_read_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self { header_read_timeout: Duration::from_secs(30) }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and finishes the
/// requests in flight. Handlers see the peer address (`ConnectInfo<SocketAddr>`, the client IP).
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(options.header_read_timeout);
    let mut make = app.into_make_service_with_connect_info::<SocketAddr>();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(service) = make.call(peer).await;
        let service = service.map_request(|req: Request<Incoming>| req.map(Body::new));
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A failed `accept`: a connection reset before it was taken is that client's problem; anything
/// else (out of file descriptors, most often) is logged, and the loop waits a second for
/// connections to close rather than spin.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
