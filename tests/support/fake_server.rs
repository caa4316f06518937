//! An in-process XEP-0114 server: accepts the component's handshake, answers every iq (the
//! delivery barrier's pings) with a result, and records each `<message>` it receives. It can
//! close its first connection, unanswered, after a given number of messages.
//!
//! Fast tests use it where a real XMPP server adds nothing (the admin API, the CLI, metrics);
//! delivery to real clients is proven against Prosody and ejabberd.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::stanza::sha1_hex;

/// The component secret the fake server expects.
pub const SECRET: &str = "xbtest-fake-server-secret-W2c5";
/// The component JID the fake server greets.
pub const COMPONENT_JID: &str = "broadcast.example.com";

/// One message as received: its raw XML, recipient and id.
#[derive(Clone, Debug)]
pub struct Received {
    pub to: String,
    pub id: String,
    pub xml: String,
}

/// What the server saw: every message in arrival order, and how many connections completed the
/// handshake.
#[derive(Default)]
pub struct Seen {
    pub messages: Vec<Received>,
    pub connections: usize,
}

/// A running fake server; it stops with the test's runtime.
#[derive(Clone)]
pub struct FakeServer {
    pub address: String,
    seen: Arc<Mutex<Seen>>,
}

impl FakeServer {
    /// Listens on 127.0.0.1; the first connection is closed after `drop_after` messages, if
    /// given.
    pub async fn start(drop_after: Option<usize>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let first = shared.lock().unwrap().connections == 0;
                let limit = drop_after.filter(|_| first);
                tokio::spawn(serve_component(socket, shared.clone(), limit));
            }
        });
        FakeServer { address, seen }
    }

    /// Runs `f` on what the server has seen so far.
    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }

    /// How many messages arrived.
    pub fn message_count(&self) -> usize {
        self.seen(|seen| seen.messages.len())
    }

    /// Whether a component is connected (handshake done at least once).
    pub fn connected(&self) -> bool {
        self.seen(|seen| seen.connections > 0)
    }
}

async fn serve_component(mut socket: TcpStream, seen: Arc<Mutex<Seen>>, drop_after: Option<usize>) {
    let mut text = String::new();
    if !read_until(&mut socket, &mut text, "<stream:stream").await
        || !read_until(&mut socket, &mut text, ">").await
    {
        return;
    }
    let stream_id = "fake-stream-1";
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams' id='{stream_id}' from='{COMPONENT_JID}'>"
    );
    if socket.write_all(header.as_bytes()).await.is_err() {
        return;
    }
    text.clear();
    if !read_until(&mut socket, &mut text, "</handshake>").await {
        return;
    }
    let expected = sha1_hex(&format!("{stream_id}{SECRET}"));
    assert!(text.contains(&expected), "bad handshake: {text}");
    if socket.write_all(b"<handshake/>").await.is_err() {
        return;
    }
    seen.lock().unwrap().connections += 1;
    text.clear();
    let mut received = 0;
    while let Some(element) = next_element(&mut socket, &mut text).await {
        if element.starts_with("<message") {
            received += 1;
            let message = Received {
                to: attribute(&element, "to"),
                id: attribute(&element, "id"),
                xml: element,
            };
            seen.lock().unwrap().messages.push(message);
            if drop_after == Some(received) {
                return; // closes the socket without answering anything more
            }
        } else if element.starts_with("<iq") {
            let reply = format!(
                "<iq type='result' id='{}' from='example.com' to='{COMPONENT_JID}'/>",
                attribute(&element, "id")
            );
            if socket.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// Reads until `text` contains `marker`; false if the peer closed first.
async fn read_until(socket: &mut TcpStream, text: &mut String, marker: &str) -> bool {
    let mut buffer = [0u8; 4096];
    while !text.contains(marker) {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buffer[..n])),
        }
    }
    true
}

/// The next complete `<message>` or `<iq>` element of the stream, or `None` at its end.
async fn next_element(socket: &mut TcpStream, text: &mut String) -> Option<String> {
    let mut buffer = [0u8; 65536];
    let mut pending = Vec::new();
    loop {
        let ends = ["</message>", "</iq>"]
            .iter()
            .filter_map(|end| text.find(end).map(|at| at + end.len()))
            .min();
        if let Some(end) = ends {
            let element: String = text.drain(..end).collect();
            let start = element
                .rfind("<message")
                .max(element.rfind("<iq"))
                .unwrap_or(0);
            return Some(element[start..].to_owned());
        }
        let n = socket.read(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        // A read may end inside a multi-byte character: keep the incomplete tail.
        pending.extend_from_slice(&buffer[..n]);
        let valid = match std::str::from_utf8(&pending) {
            Ok(valid) => valid.len(),
            Err(err) => err.valid_up_to(),
        };
        text.push_str(std::str::from_utf8(&pending[..valid]).unwrap());
        pending.drain(..valid);
    }
}

/// The value of attribute `name` of an element's start tag.
pub fn attribute(element: &str, name: &str) -> String {
    let head = &element[..element.find('>').unwrap_or(element.len())];
    for quote in ['\'', '"'] {
        let key = format!(" {name}={quote}");
        if let Some(at) = head.find(&key) {
            let rest = &head[at + key.len()..];
            return rest[..rest.find(quote).unwrap()].to_owned();
        }
    }
    panic!("no {name} in {element}")
}
