//! Invariant 3 against an in-process XEP-0114 server that can drop the connection: a batch whose
//! acknowledgement never came is sent again on the next connection, and only then committed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jid::BareJid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use xmpp_broadcast::broadcast::{
    ExecutionState, JobSpec, Lease, Manager, RecipientGroup, Snapshot,
};
use xmpp_broadcast::config::{ComponentConfig, Secret, UsersConfig, UsersSchema};
use xmpp_broadcast::directory::Directory;
use xmpp_broadcast::metrics::Metrics;
use xmpp_broadcast::store::Store;
use xmpp_broadcast::xmpp::{Connection, message_id};

const SECRET: &str = "s3cret";

/// What the fake server saw: the recipients of every message, in arrival order, and how many
/// connections completed the handshake.
#[derive(Default)]
struct Seen {
    recipients: Vec<String>,
    ids: Vec<String>,
    connections: usize,
}

/// Accepts components; the first connection is closed, unanswered, after `drop_after` messages.
async fn fake_server(drop_after: usize) -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let first = shared.lock().unwrap().connections == 0;
            let limit = first.then_some(drop_after);
            tokio::spawn(serve_component(socket, shared.clone(), limit));
        }
    });
    (address, seen)
}

async fn serve_component(mut socket: TcpStream, seen: Arc<Mutex<Seen>>, drop_after: Option<usize>) {
    let mut text = String::new();
    read_until(&mut socket, &mut text, ">").await;
    if !text.contains("<stream:stream") {
        read_until(&mut socket, &mut text, "<stream:stream").await;
        read_until(&mut socket, &mut text, ">").await;
    }
    let stream_id = "fake-stream-1";
    socket
        .write_all(format!("<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='{stream_id}' from='broadcast.example.com'>").as_bytes())
        .await
        .unwrap();
    text.clear();
    read_until(&mut socket, &mut text, "</handshake>").await;
    let expected = sha1_hex(&format!("{stream_id}{SECRET}"));
    assert!(text.contains(&expected), "bad handshake: {text}");
    socket.write_all(b"<handshake/>").await.unwrap();
    seen.lock().unwrap().connections += 1;
    text.clear();
    let mut received = 0;
    loop {
        let Some(element) = next_element(&mut socket, &mut text).await else {
            return;
        };
        if element.starts_with("<message") {
            received += 1;
            let mut seen = seen.lock().unwrap();
            seen.recipients.push(attribute(&element, "to"));
            seen.ids.push(attribute(&element, "id"));
            if drop_after == Some(received) {
                return; // closes the socket without answering anything more
            }
        } else if element.starts_with("<iq") {
            let reply = format!(
                "<iq type='result' id='{}' from='example.com' to='broadcast.example.com'/>",
                attribute(&element, "id")
            );
            socket.write_all(reply.as_bytes()).await.unwrap();
        }
    }
}

async fn read_until(socket: &mut TcpStream, text: &mut String, marker: &str) {
    let mut buffer = [0u8; 4096];
    while !text.contains(marker) {
        let n = socket.read(&mut buffer).await.unwrap();
        assert!(n > 0, "peer closed while waiting for {marker}");
        text.push_str(std::str::from_utf8(&buffer[..n]).unwrap());
    }
}

/// The next complete `<message>` or `<iq>` element of the stream, or `None` at its end.
async fn next_element(socket: &mut TcpStream, text: &mut String) -> Option<String> {
    let mut buffer = [0u8; 65536];
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
        text.push_str(std::str::from_utf8(&buffer[..n]).unwrap());
    }
}

fn attribute(element: &str, name: &str) -> String {
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

fn sha1_hex(text: &str) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_batch_cut_by_a_disconnect_is_sent_again_before_it_counts() {
    let users: Vec<String> = (1..=40).map(|i| format!("u{i:04}")).collect();
    let (address, seen) = fake_server(25).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/jobs.db", dir.path().display()), 2)
        .await
        .unwrap();
    let spec = JobSpec {
        name: "reconnect".into(),
        domain: "example.com".into(),
        subject: "s".into(),
        body: "b".into(),
        sender: BareJid::new("admin@example.com").unwrap(),
        rate: 200, // one batch of up to 2000 recipients
        recipient_group: RecipientGroup::AllUsersInDomain,
    };
    let lease_time = Duration::from_secs(60);
    let id = store
        .create_job(&spec, "node1", lease_time, &Snapshot::Listed(users.clone()))
        .await
        .unwrap();
    let component = ComponentConfig {
        jid: BareJid::new("broadcast.example.com").unwrap(),
        secret: Secret::new(SECRET),
        server: address,
    };
    let stop = CancellationToken::new();
    let (connection, _task) = Connection::start(component, stop.clone());
    let metrics = Metrics::new(&["example.com".to_owned()]);
    let manager = Manager::new(
        store.clone(),
        prosody_directory(dir.path()).await,
        connection,
        metrics.clone(),
        "node1".into(),
        lease_time,
    );
    let job = store.get_job(id).await.unwrap().unwrap();
    manager.launch(
        job,
        Lease {
            job_id: id,
            owner: "node1".into(),
            epoch: 1,
        },
        true,
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let job = loop {
        let job = store.get_job(id).await.unwrap().unwrap();
        if job.state != ExecutionState::Running || Instant::now() > deadline {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.cancel();
    assert_eq!(job.state, ExecutionState::Finished);
    assert_eq!(job.recipients_processed, 40);

    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.connections, 2, "the component reconnected once");
        // The first 25 were cut off unacknowledged, so the whole batch of 40 went out again.
        assert_eq!(seen.recipients.len(), 25 + 40);
        let mut distinct = seen.recipients.clone();
        distinct.sort();
        distinct.dedup();
        let expected: Vec<String> = users.iter().map(|u| format!("{u}@example.com")).collect();
        assert_eq!(distinct, expected);
        for (recipient, id_seen) in seen.recipients.iter().zip(&seen.ids) {
            assert_eq!(id_seen, &message_id(id, &BareJid::new(recipient).unwrap()));
        }
    }
    // Counted once per recipient, although the batch went out twice. The worker counts the job
    // as finished just after recording it, so wait for that.
    let deadline = Instant::now() + Duration::from_secs(5);
    let finished = "mod_broadcast_jobs_finished_total{host_type=\"example.com\"} 1";
    while !metrics.render().lines().any(|l| l == finished) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = metrics.render();
    for line in [
        "mod_broadcast_recipients_processed_total{host_type=\"example.com\"} 40",
        "mod_broadcast_recipients_success_total{host_type=\"example.com\"} 40",
        finished,
        "mod_broadcast_live_jobs{host_type=\"example.com\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
}

/// An empty Prosody-layout users database: this test's job lists its recipients in the job
/// store, so the directory is never read while sending.
async fn prosody_directory(dir: &std::path::Path) -> Directory {
    use sqlx::{ConnectOptions, Connection};
    let url = format!("sqlite://{}/users.db", dir.display());
    let mut conn = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
        .unwrap()
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE prosody (host TEXT, user TEXT, store TEXT, key TEXT, type TEXT, value TEXT)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let config = UsersConfig {
        schema: UsersSchema::Prosody,
        url: Secret::new(url),
        time_zone: None,
    };
    Directory::connect(&config).await.unwrap()
}
