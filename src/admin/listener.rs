//! The admin listener's connections: the accept loop, the connection limit and the timeouts
//! that keep idle or slow clients from holding sockets and tasks forever. HTTP/1.1 only (the
//! GraphQL API, GraphiQL, `/health` and `/metrics` need nothing else), over TLS when the
//! listener has a certificate ([`Tls`]): the handshake holds a connection slot like a request
//! head does, so it must end within the header timeout.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::tls::Tls;

/// Time a client has to send a complete request head. hyper arms it whenever the connection
/// waits for a request: on a new connection and after each response, so it is also the idle
/// (keep-alive) timeout. A socket that sends nothing, or a header a byte at a time, is closed
/// when it expires.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client of this listener keeps an idle connection for its next request: well
/// under [`HEADER_TIMEOUT`], so that it never sends a request on a connection the server is
/// closing at that moment (the request would fail with the connection closed under it).
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Time a connection may stay silent (no byte read or written) in the middle of a request, for
/// example a body announced by `Content-Length` and never sent, before it is closed. A request
/// the server takes longer than this to answer is cut too (none should: query cost is
/// bounded and logins wait at most for a short queue).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections served at once. Further connections wait in the listen backlog, unanswered,
/// until one ends (at the latest after the timeouts above), so a flood of idle sockets delays
/// the others by at most [`HEADER_TIMEOUT`] instead of holding them off forever.
pub const MAX_CONNECTIONS: usize = 128;

/// Time open requests get to finish once the listener stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Pause after an accept error that is not the client's (out of file descriptors, say), so that
/// the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The limits of the admin listener; [`ListenerLimits::default`] has the documented values,
/// tests use shorter ones.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    pub header_timeout: Duration,
    pub stall_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            header_timeout: HEADER_TIMEOUT,
            stall_timeout: STALL_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Accepts connections until `stop` fires, serving each with the service `serve_client` makes
/// for the client's address, over TLS with `tls`; then lets open requests finish (for
/// [`SHUTDOWN_GRACE`] at most).
pub(crate) async fn run<M, S, B>(
    listener: TcpListener,
    limits: ListenerLimits,
    tls: Option<Tls>,
    stop: CancellationToken,
    serve_client: M,
) where
    M: Fn(SocketAddr) -> S,
    S: Service<hyper::Request<Incoming>, Response = hyper::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = stop.cancelled() => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (socket, client) = match accepted {
            Ok(accepted) => accepted,
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                tracing::warn!(%err, "admin listener cannot accept a connection");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let service = serve_client(client);
        let stop = stop.clone();
        let acceptor = tls.as_ref().map(Tls::acceptor);
        connections.spawn(async move {
            let activity = Arc::new(Activity::new());
            let socket = Watched {
                inner: socket,
                activity: activity.clone(),
            };
            match acceptor {
                None => serve_connection(socket, activity, service, limits, stop).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(socket);
                    let secured = tokio::select! {
                        secured = tokio::time::timeout(limits.header_timeout, handshake) => secured,
                        () = stop.cancelled() => return,
                    };
                    match secured {
                        Ok(Ok(secured)) => {
                            serve_connection(secured, activity, service, limits, stop).await;
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%client, %err, "admin TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(%client, "admin TLS handshake not done in time");
                        }
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Serves HTTP/1.1 on `socket` (the TCP socket, or the TLS stream over it) whose bytes on the
/// wire `activity` records.
async fn serve_connection<I, S, B>(
    socket: I,
    activity: Arc<Activity>,
    service: S,
    limits: ListenerLimits,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin,
    S: Service<hyper::Request<Incoming>, Response = hyper::Response<B>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = TokioIo::new(socket);
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut stopping_until = None;
    loop {
        let silent_until = activity.last() + limits.stall_timeout;
        let deadline =
            stopping_until.map_or(silent_until, |until: Instant| until.min(silent_until));
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(err) = ended {
                    tracing::debug!(%err, "admin connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                if stopping_until.is_some_and(|until| until <= now) {
                    return;
                }
                if activity.last() + limits.stall_timeout <= now {
                    tracing::debug!("closing an admin connection silent in a request");
                    return;
                }
            }
            () = stop.cancelled(), if stopping_until.is_none() => {
                connection.as_mut().graceful_shutdown();
                stopping_until = Some(Instant::now() + SHUTDOWN_GRACE);
            }
        }
    }
}

/// Errors of one client's connection, which the accept loop ignores.
fn is_connection_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        err.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// When a connection last read or wrote a byte.
struct Activity {
    start: Instant,
    /// Milliseconds since `start`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(elapsed, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// A socket that records its activity (bytes on the wire, TLS records included).
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, data);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
