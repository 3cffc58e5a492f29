//! The accept loop: each connection served by hyper (HTTP/1.1 with upgrades for the
//! WebSocket, or HTTP/2), within bounds that `axum::serve` does not set:
//!
//! - at most `max_connections` sockets at once, WebSockets included (a place belongs to
//!   the socket, and goes with it through an upgrade); past that, new connections wait in
//!   the kernel's backlog until one closes, so a flood costs a bounded number of sockets;
//! - a request head must arrive within `header_timeout`, which also closes an HTTP/1
//!   keep-alive connection that sits idle that long between requests, so connections that
//!   never send anything (or send a header a byte at a time) do not hold a place for ever;
//! - on shutdown, the listener closes at once, connections finish what they are doing
//!   (a response in progress is sent, idle keep-alive connections close), and after
//!   `drain` whatever is still open (a long-held event stream) is dropped.
//!
//! Written here because axum's `serve` exposes none of these settings; the protocol work
//! is hyper's and hyper-util's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bounds of `serve`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub drain: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains (see the module docs).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let mut at_capacity = false;
    tokio::pin!(shutdown);
    loop {
        let place = tokio::select! {
            place = Arc::clone(&places).acquire_owned() => place.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        if places.available_permits() == 0 && !at_capacity {
            tracing::warn!(max_connections = limits.max_connections, "connection limit reached; new ones wait");
        }
        at_capacity = places.available_permits() == 0;
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or memory: wait for some to be freed rather than spin.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small writes (SSE events, WebSocket frames) go out at once.
        let _ = stream.set_nodelay(true);
        let (app, builder, watcher) = (app.clone(), Arc::clone(&builder), graceful.watcher());
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            // hyper times the request head once it knows the protocol, which it learns from
            // the first bytes: a client that sends none is timed here.
            let mut first = [0u8; 1];
            if !matches!(tokio::time::timeout(header_timeout, stream.peek(&mut first)).await, Ok(Ok(1..))) {
                return;
            }
            // The peer's address goes with each request, for the per-address rate limit.
            let app = tower::ServiceExt::map_request(app, move |mut request: axum::extract::Request<_>| {
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                request
            });
            let service = TowerToHyperService::new(app);
            let io = TokioIo::new(Placed { stream, _place: place });
            let connection = builder.serve_connection_with_upgrades(io, service);
            // A connection's errors (a client gone, a malformed request) are its own.
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            drain_secs = limits.drain.as_secs(),
            "connections still open after the drain deadline were dropped"
        );
    }
    Ok(())
}

/// A socket and its place: the place is given back when the socket is dropped, after its
/// last request or, once upgraded, when its WebSocket ends.
struct Placed {
    stream: TcpStream,
    _place: OwnedSemaphorePermit,
}

impl AsyncRead for Placed {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Placed {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
