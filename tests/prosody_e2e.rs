//! End to end against a real Prosody: one broadcast to 200 accounts reaches an online user
//! at once, an offline user when they log in, and every other account's offline store,
//! exactly once and with the deterministic id; the job reports FINISHED with full counts,
//! and an account registered after the start is not a recipient.
//! Run for Prosody+jobs on SQLite, and for Prosody+jobs on PostgreSQL.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::admin::{BroadcastSpec, assert_timestamp};
use support::pg::PgDatabase;
use support::prosody::{DOMAIN, Prosody, ProsodyStorage};
use support::serve::{JobStore, Serve, ServeConfig};
use support::stanza::{Announcement, message_id};
use support::xmpp_client::XmppClient;

const PASSWORD: &str = "pw";
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn broadcast_with_sqlite_prosody_and_sqlite_jobs() {
    broadcast_reaches_every_account(ProsodyStorage::Sqlite, JobStore::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broadcast_with_postgres_prosody_and_postgres_jobs() {
    let prosody_db = PgDatabase::create().await;
    let jobs_db = PgDatabase::create().await;
    broadcast_reaches_every_account(
        ProsodyStorage::Postgres(prosody_db),
        JobStore::Postgres(jobs_db),
    )
    .await;
}

async fn broadcast_reaches_every_account(storage: ProsodyStorage, jobs: JobStore) {
    let prosody = Prosody::start(storage).await;
    // 200 accounts: u0001..u0199 and the sender, who is a recipient too.
    let mut recipients = prosody.register_users("u", 199, PASSWORD).await;
    let sender = prosody.register_user("admin", PASSWORD).await;
    recipients.push(sender.clone());
    let (online_user, offline_user) = (recipients[0].clone(), recipients[1].clone());

    let mut online = XmppClient::login(&online_user, PASSWORD, prosody.c2s_port());
    online.wait_online(LOGIN_TIMEOUT).await;
    let serve = Serve::start(ServeConfig::for_prosody(&prosody, jobs)).await;
    let admin = serve.admin();

    let spec = BroadcastSpec {
        name: "e2e".into(),
        subject: "Planned maintenance".into(),
        body: "Service <xmpp> & friends: down at 22:00 'UTC'.".into(),
        sender: sender.clone(),
        rate: 100,
        ..BroadcastSpec::default()
    };
    let job_id = admin.start_broadcast(&spec).await.expect("startBroadcast");
    let late_user = prosody.register_user("late", PASSWORD).await;

    let job = admin.wait_state(job_id, "FINISHED", JOB_TIMEOUT).await;
    assert_eq!(job["recipientCount"], 200, "{job}");
    assert_eq!(job["recipientsProcessed"], 200, "{job}");
    assert_eq!(job["id"], job_id, "{job}");
    assert_eq!(job["name"], spec.name, "{job}");
    assert_eq!(job["domain"], DOMAIN, "{job}");
    assert_eq!(job["messageSubject"], spec.subject, "{job}");
    assert_eq!(job["messageBody"], spec.body, "{job}");
    assert_eq!(job["senderJid"], spec.sender, "{job}");
    assert_eq!(job["messageRate"], spec.rate, "{job}");
    assert_eq!(job["recipientGroup"], "ALL_USERS_IN_DOMAIN", "{job}");
    assert_eq!(job["abortionReason"], serde_json::Value::Null, "{job}");
    for field in ["createTimestamp", "startTimestamp", "stopTimestamp"] {
        assert_timestamp(field, &job[field]);
    }

    let announcement = Announcement {
        job_id,
        sender,
        subject: spec.subject.clone(),
        body: spec.body.clone(),
    };

    // The online user got it live, once.
    let live = online
        .next_message(LOGIN_TIMEOUT)
        .await
        .expect("live message");
    assert_eq!(live.from, announcement.sender);
    assert_eq!(live.to, online_user);
    assert_eq!(live.kind, "chat");
    assert_eq!(live.subject, announcement.subject);
    assert_eq!(live.body, announcement.body);
    assert_eq!(live.id, message_id(job_id, &online_user));
    assert_eq!(live.origin_id.as_deref(), Some(live.id.as_str()));
    assert!(!live.delayed, "live delivery without <delay/>");
    let more = online.messages_within(Duration::from_millis(500)).await;
    assert!(more.is_empty(), "duplicate live deliveries: {more:?}");

    // Everyone else (including the sender) holds exactly this one message offline;
    // the account registered after the start holds nothing.
    let mut stored: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (user, xml) in prosody.offline_messages().await {
        stored
            .entry(format!("{user}@{DOMAIN}"))
            .or_default()
            .push(xml);
    }
    assert!(
        !stored.contains_key(&late_user),
        "late registrant got a message"
    );
    assert!(
        !stored.contains_key(&online_user),
        "online user's message was stored"
    );
    assert_eq!(stored.len(), 199, "users with offline messages");
    for recipient in &recipients[1..] {
        let messages = stored.get(recipient).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            messages.len(),
            1,
            "offline messages of {recipient}: {messages:?}"
        );
        announcement.assert_stanza(&messages[0], recipient);
    }

    // The offline user gets it from the offline store on login.
    let mut offline = XmppClient::login(&offline_user, PASSWORD, prosody.c2s_port());
    offline.wait_online(LOGIN_TIMEOUT).await;
    let delayed = offline
        .next_message(LOGIN_TIMEOUT)
        .await
        .expect("offline message");
    assert_eq!(delayed.id, message_id(job_id, &offline_user));
    assert_eq!(delayed.origin_id.as_deref(), Some(delayed.id.as_str()));
    assert_eq!(delayed.body, announcement.body);
    assert!(
        delayed.delayed,
        "delivery from the offline store carries <delay/>"
    );
}
