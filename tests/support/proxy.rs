//! A TCP proxy on a free loopback port that a test can cut and restore, to make a database
//! unreachable for a while without stopping the shared server. A recording proxy also keeps
//! every byte its clients sent, so a test can see what a process sent and when.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The bytes clients sent through a recording proxy, all connections in arrival order.
type Record = Arc<Mutex<Vec<u8>>>;

/// Forwards connections to `target` while up; while cut, it closes every open connection and
/// refuses new ones (accepts and closes them at once, like a server that is gone).
pub struct TcpProxy {
    address: SocketAddr,
    up: Arc<watch::Sender<bool>>,
    record: Option<Record>,
    task: tokio::task::JoinHandle<()>,
}

/// Where a proxy listens unless told: a free port of 127.0.0.1.
const ANY_LOOPBACK_PORT: &str = "127.0.0.1:0";

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> Self {
        Self::launch(ANY_LOOPBACK_PORT, target, None).await
    }

    /// A proxy listening at `address`: a port on which nothing listened until now (taken
    /// with [`super::free_port`]), so that connections to it were refused, as to a server
    /// that is not running.
    pub async fn start_at(address: SocketAddr, target: SocketAddr) -> Self {
        Self::launch(address, target, None).await
    }

    /// A proxy that also records what its clients send (see [`TcpProxy::sent_count`]).
    pub async fn start_recording(target: SocketAddr) -> Self {
        Self::launch(ANY_LOOPBACK_PORT, target, Some(Record::default())).await
    }

    async fn launch(
        address: impl tokio::net::ToSocketAddrs,
        target: SocketAddr,
        record: Option<Record>,
    ) -> Self {
        let listener = TcpListener::bind(address).await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let up = Arc::new(watch::Sender::new(true));
        let shared = up.clone();
        let recorder = record.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !*shared.borrow() {
                    drop(client);
                    continue;
                }
                tokio::spawn(forward(
                    client,
                    target,
                    shared.subscribe(),
                    recorder.clone(),
                ));
            }
        });
        TcpProxy {
            address,
            up,
            record,
            task,
        }
    }

    /// The proxy's `127.0.0.1:port`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Makes the target unreachable through the proxy.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Makes it reachable again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }

    /// How many times `pattern` occurs in everything the clients of a recording proxy sent
    /// so far (a count taken later minus one taken now is what was sent in between: bytes are
    /// recorded as soon as the proxy reads them, before it forwards them).
    pub fn sent_count(&self, pattern: &str) -> usize {
        let record = self.record.as_ref().expect("a recording proxy");
        let sent = record.lock().expect("record lock");
        let pattern = pattern.as_bytes();
        sent.windows(pattern.len())
            .filter(|window| *window == pattern)
            .count()
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

async fn forward(
    mut client: TcpStream,
    target: SocketAddr,
    mut up: watch::Receiver<bool>,
    record: Option<Record>,
) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    match record {
        None => {
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = up.wait_for(|up| !*up) => {}
            }
        }
        Some(record) => {
            let (mut from_client, mut to_client) = client.split();
            let (mut from_server, mut to_server) = server.split();
            let upstream = async {
                let mut buffer = vec![0; 16 * 1024];
                loop {
                    let read = match from_client.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => read,
                    };
                    record
                        .lock()
                        .expect("record lock")
                        .extend_from_slice(&buffer[..read]);
                    if to_server.write_all(&buffer[..read]).await.is_err() {
                        return;
                    }
                }
            };
            // Either direction ending ends the connection, like a plain TCP hop.
            tokio::select! {
                _ = upstream => {}
                _ = tokio::io::copy(&mut from_server, &mut to_client) => {}
                _ = up.wait_for(|up| !*up) => {}
            }
        }
    }
}
