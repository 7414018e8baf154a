//! The HTTP server: accepting connections, with the timeouts and caps that
//! keep slow or silent clients from holding the service.
//!
//! - At most `MAX_CONNECTIONS` connections are served at once; past that,
//!   new ones wait in the listen backlog.
//! - A request head must arrive within `HTTP_HEADER_TIMEOUT_SECS` of the
//!   connection being ready for one (hyper's header read timeout, whose
//!   clock starts when the connection opens or the previous response is
//!   written): so it also closes idle keep-alive connections.
//! - A connection on which nothing moves either way for
//!   `HTTP_IDLE_TIMEOUT_SECS` (a stalled upload, a client that stopped
//!   reading its response) is closed, unless it was upgraded to a
//!   websocket, which has keep-alives of its own.
//! - Request bodies and in-flight requests are bounded by the front
//!   service every route goes through (`super::front`).
//!
//! Every connection carries its peer address (for rate limits) in the
//! requests' extensions as [`ClientAddr`]. Closed connections are counted
//! in `/metrics` by reason.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::{Instant, Sleep},
};
use tower::ServiceExt;

use crate::config::Config;

/// The peer of a request's connection, and whether the connection was
/// handed over to a websocket.
#[derive(Debug)]
pub struct ClientAddr {
    pub peer: SocketAddr,
    upgraded: AtomicBool,
}

impl ClientAddr {
    /// The connection becomes a websocket: the HTTP idle timeout no longer
    /// applies.
    pub fn mark_upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }
}

/// The server's timeouts and caps.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Settings {
            header_timeout: config.http_header_timeout(),
            idle_timeout: config.http_idle_timeout(),
            max_connections: config.max_connections.max(1),
        }
    }
}

/// A connection that fails its next read once nothing moved on it for the
/// idle timeout.
struct IdleIo {
    stream: TcpStream,
    client: Arc<ClientAddr>,
    idle: Duration,
    last: Instant,
    /// Gone once the connection is a websocket: the timer would otherwise
    /// keep the waker (and so the whole finished task) of the HTTP
    /// connection alive for as long as the websocket lives.
    timer: Option<Pin<Box<Sleep>>>,
}

impl IdleIo {
    fn new(stream: TcpStream, client: Arc<ClientAddr>, idle: Duration) -> Self {
        let now = Instant::now();
        IdleIo {
            stream,
            client,
            idle,
            last: now,
            timer: Some(Box::pin(tokio::time::sleep_until(now + idle))),
        }
    }

    fn moved(&mut self) {
        self.last = Instant::now();
    }
}

impl IdleIo {
    /// Called when the stream is not ready: has nothing moved for too long?
    /// The timer is not moved on every byte (that would touch the timer
    /// wheel twice per request); when it fires early it is set again to
    /// the idle time after the last movement.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        if self.client.upgraded.load(Ordering::Relaxed) {
            self.timer = None;
            return false;
        }
        let Some(timer) = self.timer.as_mut() else {
            return false;
        };
        while timer.as_mut().poll(cx).is_ready() {
            let deadline = self.last + self.idle;
            if Instant::now() >= deadline {
                crate::metrics::count("http_connections_dropped_total", "reason", "idle");
                return true;
            }
            timer.as_mut().reset(deadline);
        }
        false
    }
}

fn idle_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "nothing moved on the connection for too long",
    )
}

impl AsyncRead for IdleIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.stalled(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    self.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.stalled(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.stream).poll_flush(cx) {
            Poll::Pending if self.stalled(cx) => Poll::Ready(Err(idle_error())),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    self.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.stalled(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Why a connection ended, for the metrics.
fn note_connection_error(error: &(dyn std::error::Error + 'static)) {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(hyper) = error.downcast_ref::<hyper::Error>()
            && hyper.is_timeout()
        {
            crate::metrics::count("http_connections_dropped_total", "reason", "header");
            return;
        }
        source = error.source();
    }
}

/// Serve `router` on `listener` until `shutdown` resolves, then stop
/// accepting and wait for open requests to finish (the caller bounds the wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) {
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little
                    // rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let client = Arc::new(ClientAddr {
            peer,
            upgraded: AtomicBool::new(false),
        });
        let io = TokioIo::new(IdleIo::new(stream, client.clone(), settings.idle_timeout));
        let service = router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(client.clone());
                request
            },
        );
        let connection = builder
            .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        crate::metrics::gauge_add("http_connections_open", 1);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                note_connection_error(error.as_ref());
            }
            crate::metrics::gauge_add("http_connections_open", -1);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
