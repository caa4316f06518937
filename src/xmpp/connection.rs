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
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Sink, Stream};
use jid::BareJid;
use tokio::io::BufStream;
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
/// Stanzas queued for the socket before senders wait.
const QUEUE: usize = 256;

type Socket = XmppStream<BufStream<TcpStream>>;

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
    Stanzas(Vec<Stanza>),
    Barrier(oneshot::Sender<()>),
}

/// One live connection to the server, as seen by a worker.
#[derive(Debug, Clone)]
pub struct Link {
    queue: mpsc::Sender<Outgoing>,
}

impl Link {
    /// Queues stanzas on this connection; they are written together.
    pub async fn send_all(&self, stanzas: Vec<Stanza>) -> Result<(), LinkDown> {
        self.queue
            .send(Outgoing::Stanzas(stanzas))
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
            Outgoing::Stanzas(stanzas) => write!(f, "Stanzas({})", stanzas.len()),
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
    let mut pending = initiate_stream(BufStream::new(tcp), ns::COMPONENT, header, timeouts)
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
        queued: VecDeque::new(),
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
    /// Workers' stanzas taken from the queue and not yet written, in order.
    queued: VecDeque<Stanza>,
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
            let next = match self.replies.pop().or_else(|| self.queued.pop_front()) {
                Some(stanza) => stanza,
                None => match outgoing.poll_recv(cx) {
                    Poll::Ready(Some(Outgoing::Stanzas(stanzas))) => {
                        self.queued.extend(stanzas);
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
