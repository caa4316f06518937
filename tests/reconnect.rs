//! Invariant 3 against an in-process XEP-0114 server that can drop the connection: a batch whose
//! acknowledgement never came is sent again on the next connection, and only then committed.

mod support;

use std::time::{Duration, Instant};

use jid::BareJid;
use tokio_util::sync::CancellationToken;
use xmpp_broadcast::broadcast::{Manager, Scope};
use xmpp_broadcast::config::{ComponentConfig, Secret, UsersConfig, UsersSchema};
use xmpp_broadcast::directory::Directory;
use xmpp_broadcast::job::{ExecutionState, JobSpec, Lease, RecipientGroup, Snapshot};
use xmpp_broadcast::metrics::Metrics;
use xmpp_broadcast::store::Store;
use xmpp_broadcast::xmpp::{Connection, message_id};

use support::fake_server::{FakeServer, SECRET};

#[tokio::test]
async fn a_batch_cut_by_a_disconnect_is_sent_again_before_it_counts() {
    let users: Vec<String> = (1..=40).map(|i| format!("u{i:04}")).collect();
    let server = FakeServer::start(Some(25)).await;
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
        group: None,
        language: None,
        translations: Vec::new(),
    };
    let lease_time = Duration::from_secs(60);
    let id = store
        .create_job(
            &spec,
            "node1",
            lease_time,
            &Snapshot::Listed(users.clone()),
            &xmpp_broadcast::job::UsersDatabase::new("prosody@test"),
        )
        .await
        .unwrap();
    let component = ComponentConfig {
        jid: BareJid::new("broadcast.example.com").unwrap(),
        secret: Secret::new(SECRET),
        server: server.address.clone(),
    };
    let stop = CancellationToken::new();
    let (connection, _task) = Connection::start(component, stop.clone());
    let metrics = Metrics::new(&["example.com".to_owned()]);
    let directory = prosody_directory(dir.path()).await;
    let scope = Scope::new(&["example.com".to_owned()], directory.identity().clone());
    let manager = Manager::new(
        store.clone(),
        directory,
        connection,
        metrics.clone(),
        "node1".into(),
        scope,
        lease_time,
    );
    // The leases are vouched for, as once an instance has taken up its job database.
    manager.safety().renewed(Instant::now());
    let job = store.get_job(id).await.unwrap().unwrap();
    manager.launch(job, Lease::first(id, "node1"), true);

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

    server.seen(|seen| {
        assert_eq!(seen.connections, 2, "the component reconnected once");
        // The first 25 were cut off unacknowledged, so the whole batch of 40 went out again.
        assert_eq!(seen.messages.len(), 25 + 40);
        let mut distinct: Vec<String> = seen.messages.iter().map(|m| m.to.clone()).collect();
        distinct.sort();
        distinct.dedup();
        let expected: Vec<String> = users.iter().map(|u| format!("{u}@example.com")).collect();
        assert_eq!(distinct, expected);
        for message in &seen.messages {
            assert_eq!(
                message.id,
                message_id(id, &BareJid::new(&message.to).unwrap())
            );
        }
    });
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
        database_id: None,
        groups: Default::default(),
    };
    Directory::connect(&config).await.unwrap()
}
