//! A real XMPP client logged in as one user: `tests/support/xmpp_client.py` (slixmpp) in
//! the test venv, reporting what it receives as JSON lines on stdout.
//!
//! The venv is `$XMPP_BROADCAST_TEST_VENV`, or `.venv` in the crate root; create it with
//! `python3 -m venv .venv && .venv/bin/pip install slixmpp==1.17.0` (`bash .ci/run` does).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use super::Deadline;
use super::process::LogFile;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/xmpp_client.py");

/// A `<message/>` as the client received it.
#[derive(Clone, Debug, Deserialize)]
pub struct ReceivedMessage {
    pub from: String,
    pub to: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub subject: String,
    pub body: String,
    pub origin_id: Option<String>,
    /// The id a XEP-0308 correction names (`<replace id=…/>`).
    pub replace_id: Option<String>,
    /// The id a XEP-0424 retraction names (`<retract id=…/>`).
    pub retract_id: Option<String>,
    /// Whether it carried a XEP-0203 `<delay/>`, i.e. came from the offline store.
    pub delayed: bool,
    /// The message's `xml:lang`.
    #[serde(default)]
    pub lang: Option<String>,
    /// Each `<subject/>` as `(xml:lang or "", text)`, in document order.
    #[serde(default)]
    pub subjects: Vec<(String, String)>,
    /// Each `<body/>` as `(xml:lang or "", text)`, in document order.
    #[serde(default)]
    pub bodies: Vec<(String, String)>,
    /// For a client logged in with a language: the body slixmpp picks for it.
    #[serde(default)]
    pub body_in_language: Option<String>,
}

/// One line of the client's stdout.
#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum WireEvent {
    Online,
    Message(Box<ReceivedMessage>),
    Error { reason: String },
}

/// What a healthy client reports (errors end the test).
enum Event {
    Online,
    Message(Box<ReceivedMessage>),
}

/// The client process (killed on drop). Log in, then [`XmppClient::wait_online`].
pub struct XmppClient {
    jid: String,
    child: Child,
    events: Lines<BufReader<ChildStdout>>,
    /// Messages that arrived while waiting for the login (offline-store deliveries).
    early: VecDeque<ReceivedMessage>,
    stderr: LogFile,
    _stderr_file: tempfile::NamedTempFile,
}

impl XmppClient {
    /// Starts logging in as `jid` on the plaintext c2s port `c2s_port` of 127.0.0.1.
    pub fn login(jid: &str, password: &str, c2s_port: u16) -> Self {
        Self::login_in(jid, password, c2s_port, None)
    }

    /// [`XmppClient::login`] with the stream's `xml:lang` set to `language` (a client set to
    /// that language), reporting the body it picks for it.
    pub fn login_in(jid: &str, password: &str, c2s_port: u16, language: Option<&str>) -> Self {
        let python = venv_python();
        let stderr_file = tempfile::NamedTempFile::new().expect("client stderr file");
        let stderr = LogFile::new(stderr_file.path(), format!("xmpp client {jid} stderr"));
        let mut child = Command::new(&python)
            .arg(SCRIPT)
            .args([jid, password, "127.0.0.1", &c2s_port.to_string()])
            .args(language)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.append_handle())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", python.display()));
        let events = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        XmppClient {
            jid: jid.to_owned(),
            child,
            events,
            early: VecDeque::new(),
            stderr,
            _stderr_file: stderr_file,
        }
    }

    /// Waits until the session is up and the server has processed its initial presence:
    /// from then on messages to the bare JID are delivered live. Messages from the offline
    /// store may arrive before; [`XmppClient::next_message`] returns them first.
    pub async fn wait_online(&mut self, timeout: Duration) {
        let deadline = Deadline::after(timeout, format!("{} to log in", self.jid));
        loop {
            match self.next_event(&deadline).await {
                Some(Event::Online) => return,
                Some(Event::Message(message)) => self.early.push_back(*message),
                None => panic!("{} did not log in within {timeout:?}", self.jid),
            }
        }
    }

    /// The next message, or `None` if none arrives within `timeout`.
    pub async fn next_message(&mut self, timeout: Duration) -> Option<ReceivedMessage> {
        if let Some(message) = self.early.pop_front() {
            return Some(message);
        }
        let deadline = Deadline::after(timeout, format!("a message for {}", self.jid));
        loop {
            match self.next_event(&deadline).await? {
                Event::Message(message) => return Some(*message),
                Event::Online => continue,
            }
        }
    }

    /// Every message that arrives within `window`.
    pub async fn messages_within(&mut self, window: Duration) -> Vec<ReceivedMessage> {
        let deadline = Deadline::after(window, "the end of the window");
        let mut messages = Vec::new();
        while let Some(message) = self.next_message(deadline.remaining()).await {
            messages.push(message);
        }
        messages
    }

    /// The next event before `deadline`; `None` on timeout. Panics on client errors.
    async fn next_event(&mut self, deadline: &Deadline) -> Option<Event> {
        let line = match tokio::time::timeout(deadline.remaining(), self.events.next_line()).await {
            Err(_elapsed) => return None,
            Ok(line) => line.expect("read client stdout"),
        };
        let Some(line) = line else {
            let status = self.child.wait().await.expect("wait for client");
            panic!("xmpp client {} exited ({status})", self.jid);
        };
        match serde_json::from_str(&line) {
            Ok(WireEvent::Online) => Some(Event::Online),
            Ok(WireEvent::Message(message)) => Some(Event::Message(message)),
            Ok(WireEvent::Error { reason }) => panic!("xmpp client {}: {reason}", self.jid),
            Err(e) => panic!("bad client event {line:?}: {e}"),
        }
    }
}

impl Drop for XmppClient {
    fn drop(&mut self) {
        self.stderr.print_if_panicking();
    }
}

/// The test venv's interpreter (also the browser tests'); panics with set-up instructions if
/// it is missing.
pub fn venv_python() -> PathBuf {
    let venv = std::env::var_os("XMPP_BROADCAST_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv")));
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "Python venv for the XMPP test client not found at {}: create it with \
         `python3 -m venv {0} && {0}/bin/pip install slixmpp==1.17.0` (`bash .ci/run` does), \
         or point XMPP_BROADCAST_TEST_VENV at one",
        venv.display()
    );
    python
}
