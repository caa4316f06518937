//! A minimal XEP-0114 component connection over raw TCP: the readiness probe for Prosody
//! and a way to inject stanzas without the product under test.

use std::time::Duration;

use std::process::Child;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Deadline;
use super::stanza::sha1_hex;

/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Waits until a XEP-0114 handshake as `jid` succeeds on `addr`: the readiness of an XMPP
/// server for the component. Panics if `server` (its launcher process) exits first, or after
/// `timeout`.
pub async fn wait_for_handshake(
    server: &mut Child,
    name: &str,
    addr: &str,
    (jid, secret): (&str, &str),
    timeout: Duration,
) {
    let deadline = Deadline::after(timeout, format!("{name}'s component handshake"));
    loop {
        if let Some(status) = server.try_wait().expect("try_wait server") {
            panic!("{name} exited during start-up with {status}");
        }
        if let Ok(component) = RawComponent::connect(addr, jid, secret, PROBE_TIMEOUT).await {
            component.close().await;
            return;
        }
        deadline.tick().await;
    }
}

/// An authenticated `jabber:component:accept` stream.
pub struct RawComponent {
    stream: TcpStream,
}

impl RawComponent {
    /// Connects to `addr`, opens a stream to `jid` and completes the handshake
    /// (`<handshake>` = lower-hex SHA-1 of stream id + secret). Gives up after `timeout`.
    pub async fn connect(
        addr: &str,
        jid: &str,
        secret: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        tokio::time::timeout(timeout, Self::handshake(addr, jid, secret))
            .await
            .map_err(|_| format!("no handshake with {addr} within {timeout:?}"))?
    }

    async fn handshake(addr: &str, jid: &str, secret: &str) -> Result<Self, String> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{jid}'>"
        );
        write(&mut stream, &header).await?;
        let received = read_until(&mut stream, |text| stream_id(text).is_some()).await?;
        let id = stream_id(&received).expect("checked by read_until");
        write(
            &mut stream,
            &format!(
                "<handshake>{}</handshake>",
                sha1_hex(&format!("{id}{secret}"))
            ),
        )
        .await?;
        let reply = read_until(&mut stream, |text| {
            text.contains("<handshake") || text.contains("</stream:stream>")
        })
        .await?;
        if !reply.contains("<handshake") {
            return Err(format!("handshake refused: {reply}"));
        }
        Ok(RawComponent { stream })
    }

    /// Writes one serialized stanza to the stream.
    pub async fn send(&mut self, stanza: &str) {
        write(&mut self.stream, stanza)
            .await
            .expect("send stanza on component stream");
    }

    /// Writes one serialized stanza; an error if the server closed the connection meanwhile.
    pub async fn try_send(&mut self, stanza: &str) -> Result<(), String> {
        write(&mut self.stream, stanza).await
    }

    /// Closes the stream and returns everything the server wrote until it closed its own
    /// (a `<stream:error>` if it ended the stream on an earlier stanza), or the error if
    /// the connection broke first.
    pub async fn close_and_read(mut self) -> Result<String, String> {
        // The server may have closed already: its reply is still in the socket to be read.
        let _ = write(&mut self.stream, "</stream:stream>").await;
        read_until(&mut self.stream, |text| text.contains("</stream:stream>")).await
    }

    /// Closes the stream and waits for the server's closing tag, which the server sends
    /// only after it has processed every stanza sent before (streams are ordered).
    pub async fn close(mut self) {
        write(&mut self.stream, "</stream:stream>")
            .await
            .expect("close component stream");
        read_until(&mut self.stream, |text| text.contains("</stream:stream>"))
            .await
            .expect("server closes the component stream");
    }
}

async fn write(stream: &mut TcpStream, text: &str) -> Result<(), String> {
    stream
        .write_all(text.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))
}

/// Reads until `done` holds for the text received so far; an EOF before is an error.
async fn read_until(stream: &mut TcpStream, done: impl Fn(&str) -> bool) -> Result<String, String> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed; received: {}",
                String::from_utf8_lossy(&received)
            ));
        }
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received);
        if done(&text) {
            return Ok(text.into_owned());
        }
    }
}

/// The `id` attribute of the server's `<stream:stream>` header, once it is complete.
fn stream_id(text: &str) -> Option<String> {
    let start = text.find("<stream:stream")?;
    let header = &text[start..start + text[start..].find('>')?];
    let (quote, at) = [('\'', header.find(" id='")), ('"', header.find(" id=\""))]
        .into_iter()
        .find_map(|(quote, at)| Some((quote, at?)))?;
    let value = &header[at + 5..];
    Some(value[..value.find(quote)?].to_owned())
}
