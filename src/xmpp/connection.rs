//! The XEP-0114 stream to the XMPP server, kept up with reconnects and shared by all workers.
//!
//! One task owns the socket. Workers talk to it through a [`Link`], which stands for one
//! connection: when that connection ends, every later use of the link fails, so a worker knows
//! that what it sent since its last acknowledged barrier may be lost and must be sent again on
//! the next link (design invariant 3).
//!
//! Silence is not a disconnect: when the server has sent nothing for [`SOFT_TIMEOUT`] the task
//! pings it, and only when nothing arrives for [`HARD_TIMEOUT`] after that, or the socket fails,
//! or the server closes the stream, is the connection considered dropped.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::{Sink, Stream};
use jid::BareJid;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, BufStream, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_xmpp::Stanza;
use tokio_xmpp::parsers::component::Handshake;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::xmlstream::{
    FallibleStreamElement, ReadError, StreamHeader, Timeouts, XmppStream, XmppStreamElement,
    initiate_stream,
};

use super::stanza;
use crate::config::ComponentConfig;

/// Quiet time after which the server is pinged.
pub const SOFT_TIMEOUT: Duration = Duration::from_secs(30);
/// Further quiet time after which the connection is given up.
pub const HARD_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed to open the socket and complete the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest wait between connection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Sends queued for the socket before senders wait.
const QUEUE: usize = 256;
/// Serialised messages held for the socket before the task stops taking more from the queue.
const AHEAD_LIMIT: usize = 64 * 1024;

type Socket = XmppStream<Wire>;

/// The connection this link stood for is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the connection to the XMPP server was lost")]
pub struct LinkDown;

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("cannot connect to {0}: {1}")]
    Tcp(String, std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("stream: {0}")]
    Stream(std::io::Error),
    #[error("the server sent no stream id")]
    NoStreamId,
    #[error("the server refused the handshake: check component.jid and component.secret")]
    Refused,
    #[error("the server closed the stream during the handshake")]
    Closed,
}

enum Outgoing {
    /// Messages serialised by [`super::Announcement::write_message`].
    Serialised(Vec<u8>),
    Barrier(oneshot::Sender<()>),
}

/// One live connection to the server, as seen by a worker.
#[derive(Debug, Clone)]
pub struct Link {
    queue: mpsc::Sender<Outgoing>,
}

impl Link {
    /// Queues messages written by [`super::Announcement::write_message`] on this connection;
    /// they go to the socket as they are, in one write.
    pub async fn send_serialised(&self, messages: Vec<u8>) -> Result<(), LinkDown> {
        self.queue
            .send(Outgoing::Serialised(messages))
            .await
            .map_err(|_| LinkDown)
    }

    /// Waits until the server has processed everything sent on this link so far.
    pub async fn barrier(&self) -> Result<(), LinkDown> {
        let (done, acked) = oneshot::channel();
        self.queue
            .send(Outgoing::Barrier(done))
            .await
            .map_err(|_| LinkDown)?;
        acked.await.map_err(|_| LinkDown)
    }
}

/// Hands out the current link; clone it freely.
#[derive(Debug, Clone)]
pub struct Connection {
    current: watch::Receiver<Option<Link>>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outgoing::Serialised(bytes) => write!(f, "Serialised({} bytes)", bytes.len()),
            Outgoing::Barrier(_) => f.write_str("Barrier"),
        }
    }
}

impl Connection {
    /// Starts the task that connects, reconnects and serves the socket until `stop` fires.
    pub fn start(
        config: ComponentConfig,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (publish, current) = watch::channel(None);
        let task = tokio::spawn(maintain(config, publish, stop));
        (Connection { current }, task)
    }

    /// Whether a connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.current.borrow().is_some()
    }

    /// Waits until the server has processed everything queued on the current connection so
    /// far; returns at once if there is none (what was queued on a lost connection is never
    /// sent).
    pub async fn flush(&self) {
        let link = self.current.borrow().clone();
        if let Some(link) = link {
            // A connection lost meanwhile sends nothing more either.
            let _ = link.barrier().await;
        }
    }

    /// The current link, waiting for a connection if there is none; `None` once stopped.
    pub async fn link(&self) -> Option<Link> {
        let mut current = self.current.clone();
        let link = current.wait_for(Option::is_some).await.ok()?;
        link.clone()
    }
}

async fn maintain(
    config: ComponentConfig,
    publish: watch::Sender<Option<Link>>,
    stop: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let attempt = tokio::select! {
            _ = stop.cancelled() => break,
            attempt = tokio::time::timeout(CONNECT_TIMEOUT, connect(&config)) => attempt,
        };
        match attempt.unwrap_or(Err(ConnectError::Timeout)) {
            Ok(socket) => {
                tracing::info!(server = %config.server, jid = %config.jid, "connected to the XMPP server");
                backoff = BACKOFF_MIN;
                let (queue, outgoing) = mpsc::channel(QUEUE);
                publish.send_replace(Some(Link { queue }));
                let end = serve(socket, outgoing, &config.jid, &stop).await;
                publish.send_replace(None);
                match end {
                    Ok(()) => break,
                    Err(reason) => tracing::warn!(%reason, "connection to the XMPP server lost"),
                }
            }
            Err(err) => {
                tracing::warn!(server = %config.server, error = %err, retry_in = ?backoff, "cannot connect to the XMPP server");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    publish.send_replace(None);
}

async fn connect(config: &ComponentConfig) -> Result<Socket, ConnectError> {
    let tcp = TcpStream::connect(&config.server)
        .await
        .map_err(|err| ConnectError::Tcp(config.server.clone(), err))?;
    tcp.set_nodelay(true).map_err(ConnectError::Stream)?;
    let header = StreamHeader {
        to: Some(Cow::Borrowed(config.jid.domain().as_str())),
        from: None,
        id: None,
    };
    let timeouts = Timeouts {
        read_timeout: SOFT_TIMEOUT,
        response_timeout: HARD_TIMEOUT,
    };
    let wire = Wire {
        socket: BufStream::new(tcp),
        ahead: Mutex::new(BytesMut::new()),
    };
    let mut pending = initiate_stream(wire, ns::COMPONENT, header, timeouts)
        .await
        .map_err(ConnectError::Stream)?;
    let stream_id = pending.take_header().id.ok_or(ConnectError::NoStreamId)?;
    let mut socket: Socket = pending.skip_features();
    let handshake = XmppStreamElement::ComponentHandshake(Handshake::from_stream_id_and_password(
        stream_id.into_owned(),
        config.secret.expose(),
    ));
    futures::SinkExt::send(&mut socket, &handshake)
        .await
        .map_err(ConnectError::Stream)?;
    loop {
        match futures::StreamExt::next(&mut socket).await {
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::ComponentHandshake(_)))) => {
                return Ok(socket);
            }
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(err)))) => {
                tracing::warn!(error = ?err, "the server refused the component");
                return Err(ConnectError::Refused);
            }
            // Elements a component server need not send, such as <stream:features/>.
            Some(Ok(other)) => tracing::debug!(element = ?other, "ignored during the handshake"),
            Some(Err(ReadError::ParseError(err))) => {
                tracing::debug!(error = %err, "ignored during the handshake");
            }
            Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(ReadError::HardError(err))) => return Err(ConnectError::Stream(err)),
            Some(Err(ReadError::StreamFooterReceived)) | None => return Err(ConnectError::Closed),
        }
    }
}

/// Serves one connection until it fails (`Err`) or `stop` fires (`Ok`).
async fn serve(
    mut socket: Socket,
    mut outgoing: mpsc::Receiver<Outgoing>,
    jid: &BareJid,
    stop: &CancellationToken,
) -> Result<(), String> {
    let mut state = Session {
        jid: jid.clone(),
        barriers: HashMap::new(),
        replies: Vec::new(),
        next_ping: 0,
        unflushed: false,
    };
    let result = tokio::select! {
        _ = stop.cancelled() => Ok(()),
        end = poll_fn(|cx| state.poll(cx, &mut socket, &mut outgoing)) => Err(end),
    };
    if result.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), socket.shutdown()).await;
    }
    result
}

/// The state of one connection, driven by [`Session::poll`].
struct Session {
    jid: BareJid,
    /// Barriers waiting for the reply to the ping with this id.
    barriers: HashMap<String, oneshot::Sender<()>>,
    /// Stanzas this task must send on its own: replies to requests and keepalive pings.
    replies: Vec<Stanza>,
    next_ping: u64,
    unflushed: bool,
}

impl Session {
    /// Reads what the server sent, then writes what is queued; returns why the connection ended.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        socket: &mut Socket,
        outgoing: &mut mpsc::Receiver<Outgoing>,
    ) -> Poll<String> {
        loop {
            match Pin::new(&mut *socket).poll_next(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => return Poll::Ready("the stream ended".into()),
                Poll::Ready(Some(Ok(element))) => self.receive(element),
                Poll::Ready(Some(Err(ReadError::SoftTimeout))) => {
                    let id = self.ping_id();
                    self.replies.push(stanza::ping(&self.jid, &id));
                }
                Poll::Ready(Some(Err(ReadError::ParseError(err)))) => {
                    tracing::warn!(error = %err, "ignoring an unreadable element from the server");
                }
                Poll::Ready(Some(Err(ReadError::HardError(err)))) => {
                    return Poll::Ready(format!("read failed: {err}"));
                }
                Poll::Ready(Some(Err(ReadError::StreamFooterReceived))) => {
                    return Poll::Ready("the server closed the stream".into());
                }
            }
        }
        loop {
            match Sink::<&XmppStreamElement>::poll_ready(Pin::new(&mut *socket), cx) {
                Poll::Pending => break,
                Poll::Ready(Err(err)) => return Poll::Ready(format!("write failed: {err}")),
                Poll::Ready(Ok(())) => {}
            }
            let next = match self.replies.pop() {
                Some(reply) => reply,
                // Enough is waiting for the socket: write it before taking more.
                None if socket.get_stream().ahead_len() >= AHEAD_LIMIT => {
                    match Sink::<&XmppStreamElement>::poll_flush(Pin::new(&mut *socket), cx) {
                        Poll::Ready(Ok(())) => {
                            self.unflushed = false;
                            continue;
                        }
                        Poll::Ready(Err(err)) => {
                            return Poll::Ready(format!("write failed: {err}"));
                        }
                        Poll::Pending => break,
                    }
                }
                None => match outgoing.poll_recv(cx) {
                    Poll::Ready(Some(Outgoing::Serialised(messages))) => {
                        socket.get_stream().put_ahead(&messages);
                        self.unflushed = true;
                        continue;
                    }
                    Poll::Ready(Some(Outgoing::Barrier(done))) => {
                        let id = self.ping_id();
                        self.barriers.insert(id.clone(), done);
                        stanza::ping(&self.jid, &id)
                    }
                    Poll::Ready(None) | Poll::Pending => break,
                },
            };
            let element = XmppStreamElement::Stanza(next);
            if let Err(err) = Pin::new(&mut *socket).start_send(&element) {
                return Poll::Ready(format!("write failed: {err}"));
            }
            self.unflushed = true;
        }
        if self.unflushed {
            match Sink::<&XmppStreamElement>::poll_flush(Pin::new(&mut *socket), cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(err)) => return Poll::Ready(format!("write failed: {err}")),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }

    fn receive(&mut self, element: FallibleStreamElement) {
        let stanza = match element {
            FallibleStreamElement::Ok(XmppStreamElement::Stanza(stanza)) => stanza,
            FallibleStreamElement::Ok(XmppStreamElement::StreamError(err)) => {
                tracing::warn!(error = ?err, "the server sent a stream error");
                return;
            }
            FallibleStreamElement::Ok(other) => {
                tracing::debug!(element = ?other, "ignoring a non-stanza element");
                return;
            }
            FallibleStreamElement::Err(err) => {
                tracing::debug!(error = %err, "ignoring an unparsable stanza");
                return;
            }
        };
        match stanza {
            Stanza::Iq(Iq::Result { id, .. }) | Stanza::Iq(Iq::Error { id, .. })
                if self.barriers.contains_key(&id) =>
            {
                if let Some(done) = self.barriers.remove(&id) {
                    let _ = done.send(());
                }
            }
            Stanza::Iq(iq) => {
                if let Some(reply) = stanza::reply_to(&iq) {
                    self.replies.push(reply);
                }
            }
            Stanza::Message(message) => {
                tracing::debug!(from = ?message.from, to = ?message.to, type_ = ?message.type_, "message for the component");
            }
            Stanza::Presence(_) => {}
        }
    }

    fn ping_id(&mut self) -> String {
        self.next_ping += 1;
        format!("xb-ping-{}", self.next_ping)
    }
}

/// The socket under the XML stream, with a side entrance for messages serialised ahead
/// ([`super::Announcement::write_message`]), which the XML stream's own writer would otherwise
/// build and serialise one element at a time.
///
/// Bytes put ahead are written before anything the XML stream writes after they were put, so
/// a barrier's ping still follows the messages it covers. The XML stream flushes its own
/// buffer into this socket before it flushes the socket, and the socket writes what is ahead
/// first, so flushing the stream sends both, in order.
struct Wire {
    socket: BufStream<TcpStream>,
    /// Only this connection's task touches it; the lock is never contended.
    ahead: Mutex<BytesMut>,
}

impl Wire {
    fn put_ahead(&self, bytes: &[u8]) {
        self.ahead
            .lock()
            .expect("serialised messages lock")
            .extend_from_slice(bytes);
    }

    fn ahead_len(&self) -> usize {
        self.ahead.lock().expect("serialised messages lock").len()
    }

    /// Writes what is ahead, all of it or until the socket is full.
    fn poll_write_ahead(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let ahead = self.ahead.get_mut().expect("serialised messages lock");
        while !ahead.is_empty() {
            let written = ready!(Pin::new(&mut self.socket).poll_write(cx, ahead))?;
            if written == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            ahead.advance(written);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_read(cx, buf)
    }
}

impl AsyncBufRead for Wire {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().socket).poll_fill_buf(cx)
    }

    fn consume(self: Pin<&mut Self>, amount: usize) {
        Pin::new(&mut self.get_mut().socket).consume(amount);
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_write_ahead(cx))?;
        Pin::new(&mut this.socket).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_ahead(cx))?;
        Pin::new(&mut this.socket).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_ahead(cx))?;
        Pin::new(&mut this.socket).poll_shutdown(cx)
    }
}
