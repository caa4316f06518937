//! The end-to-end scenarios every XMPP server runs (`prosody_e2e.rs`, `resume.rs`,
//! `ejabberd_e2e.rs`), written once against [`XmppServer`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::Deadline;
use super::admin::{BroadcastSpec, assert_timestamp};
use super::ejabberd::{self, Ejabberd};
use super::prosody::{DOMAIN, Prosody};
use super::serve::{JobStore, Serve, ServeConfig};
use super::stanza::{Announcement, message_id};
use super::xmpp_client::XmppClient;

const PASSWORD: &str = "pw";
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// What the scenarios need from a running XMPP server serving [`DOMAIN`].
pub trait XmppServer {
    /// Registers `{prefix}0001` .. `{prefix}{n:04}`; returns their bare JIDs in order.
    async fn register_users(&self, prefix: &str, n: usize, password: &str) -> Vec<String>;
    /// Registers one account; returns its bare JID.
    async fn register_user(&self, name: &str, password: &str) -> String;
    fn c2s_port(&self) -> u16;
    /// The stored offline messages as `(username, stanza XML)`, oldest first.
    async fn offline_messages(&self) -> Vec<(String, String)>;
    /// Panics unless `xml` is the announcement to `recipient` as this server stores it.
    fn assert_stored(&self, announcement: &Announcement, xml: &str, recipient: &str);
    /// A `serve` config for this server's component listener and accounts.
    fn serve_config(&self, jobs: JobStore) -> ServeConfig;
}

impl XmppServer for Prosody {
    async fn register_users(&self, prefix: &str, n: usize, password: &str) -> Vec<String> {
        Prosody::register_users(self, prefix, n, password).await
    }
    async fn register_user(&self, name: &str, password: &str) -> String {
        Prosody::register_user(self, name, password).await
    }
    fn c2s_port(&self) -> u16 {
        Prosody::c2s_port(self)
    }
    async fn offline_messages(&self) -> Vec<(String, String)> {
        Prosody::offline_messages(self).await
    }
    fn assert_stored(&self, announcement: &Announcement, xml: &str, recipient: &str) {
        // Prosody stores the stanza as received, children in order.
        announcement.assert_stanza(xml, recipient);
    }
    fn serve_config(&self, jobs: JobStore) -> ServeConfig {
        ServeConfig::for_prosody(self, jobs)
    }
}

impl XmppServer for Ejabberd {
    async fn register_users(&self, prefix: &str, n: usize, password: &str) -> Vec<String> {
        Ejabberd::register_users(self, prefix, n, password).await
    }
    async fn register_user(&self, name: &str, password: &str) -> String {
        Ejabberd::register_user(self, name, password).await
    }
    fn c2s_port(&self) -> u16 {
        Ejabberd::c2s_port(self)
    }
    async fn offline_messages(&self) -> Vec<(String, String)> {
        Ejabberd::offline_messages(self).await
    }
    fn assert_stored(&self, announcement: &Announcement, xml: &str, recipient: &str) {
        ejabberd::assert_stored_stanza(announcement, xml, recipient);
    }
    fn serve_config(&self, jobs: JobStore) -> ServeConfig {
        ServeConfig::for_ejabberd(self, jobs)
    }
}

/// Stored offline messages per recipient bare JID.
pub async fn stored_by_recipient(server: &impl XmppServer) -> BTreeMap<String, Vec<String>> {
    let mut stored: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (user, xml) in server.offline_messages().await {
        stored
            .entry(format!("{user}@{DOMAIN}"))
            .or_default()
            .push(xml);
    }
    stored
}

/// Registers `u0001`..`u{n}` and the sender `admin` (password [`PASSWORD`]); returns every
/// account, the sender last, and the sender.
pub async fn accounts_and_sender(server: &impl XmppServer, n: usize) -> (Vec<String>, String) {
    let mut recipients = server.register_users("u", n, PASSWORD).await;
    let sender = server.register_user("admin", PASSWORD).await;
    recipients.push(sender.clone());
    (recipients, sender)
}

/// One broadcast to 200 accounts reaches an online user at once, an offline user when they
/// log in, and every other account's offline store, exactly once with the deterministic id;
/// the job reports FINISHED with full counts, and an account registered after the start is
/// not a recipient.
pub async fn broadcast_reaches_every_account(server: &impl XmppServer, jobs: JobStore) {
    reaches_every_account(server, server.serve_config(jobs)).await;
}

/// [`broadcast_reaches_every_account`] with `count_wait_ms = 0`: startBroadcast answers
/// before the recipients are counted (invariant 4a; `serve`'s log says so), the account
/// registered right after the answer is still not a recipient, and the job ends counted.
pub async fn broadcast_answered_before_counting(server: &impl XmppServer, jobs: JobStore) {
    let mut config = server.serve_config(jobs);
    config.count_wait_ms = Some(0);
    let serve = reaches_every_account(server, config).await;
    let log = serve.log();
    assert!(
        log.contains("answering before the recipients are counted"),
        "{log}"
    );
    assert!(log.contains("recipients counted"), "{log}");
}

/// The body of [`broadcast_reaches_every_account`], with `serve` configured by `config`;
/// returns the instance, still running.
async fn reaches_every_account(server: &impl XmppServer, config: ServeConfig) -> Serve {
    // 200 accounts: u0001..u0199 and the sender, who is a recipient too.
    let (recipients, sender) = accounts_and_sender(server, 199).await;
    let (online_user, offline_user) = (recipients[0].clone(), recipients[1].clone());

    let mut online = XmppClient::login(&online_user, PASSWORD, server.c2s_port());
    online.wait_online(LOGIN_TIMEOUT).await;
    let serve = Serve::start(config).await;
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
    let late_user = server.register_user("late", PASSWORD).await;

    let job = admin.wait_state(job_id, "FINISHED", JOB_TIMEOUT).await;
    assert_eq!(job["recipientCount"], 200, "{job}");
    assert_eq!(job["recipientsCounted"], true, "{job}");
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
    let stored = stored_by_recipient(server).await;
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
        server.assert_stored(&announcement, &messages[0], recipient);
    }

    // The offline user gets it from the offline store on login.
    let mut offline = XmppClient::login(&offline_user, PASSWORD, server.c2s_port());
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
    serve
}

/// Checks the offline store after a job: every one of `recipients` holds `announcement` at
/// least once, and nobody else holds anything; returns how many messages were repeats.
pub async fn assert_delivered(
    server: &impl XmppServer,
    announcement: &Announcement,
    recipients: &[String],
) -> usize {
    let stored = stored_by_recipient(server).await;
    let mut total = 0;
    for (recipient, messages) in &stored {
        assert!(
            recipients.contains(recipient),
            "{recipient} is not a recipient but got {messages:?}"
        );
        for xml in messages {
            server.assert_stored(announcement, xml, recipient);
        }
        total += messages.len();
    }
    let missing: Vec<&String> = recipients
        .iter()
        .filter(|r| !stored.contains_key(*r))
        .collect();
    assert!(missing.is_empty(), "never delivered to {missing:?}");
    total - recipients.len()
}

const RATE: i64 = 10;
const BATCH: usize = 100; // rate × 10
const ACCOUNTS: usize = 200;

/// Crash recovery: a `serve` killed with SIGKILL in the middle of a job (during the second
/// batch, after the first was committed) and started again with the same config resumes the
/// job from its committed progress and finishes it. Every account gets the message at least
/// once, always with the same id, the repeats are bounded by one batch (rate × 10), and an
/// account registered after the start — sorted after every recipient, so its page is read only
/// after the restart — is not a recipient.
pub async fn killed_serve_resumes_its_running_job(server: &impl XmppServer, jobs: JobStore) {
    let mut recipients = server.register_users("u", ACCOUNTS - 1, PASSWORD).await;
    let sender = server.register_user("admin", PASSWORD).await;
    recipients.push(sender.clone());

    let mut serve = Serve::start(server.serve_config(jobs)).await;
    let spec = BroadcastSpec {
        name: "resume".into(),
        sender: sender.clone(),
        rate: RATE,
        ..BroadcastSpec::default()
    };
    let job_id = serve
        .admin()
        .start_broadcast(&spec)
        .await
        .expect("startBroadcast");
    let late_user = server.register_user("zzz-late", PASSWORD).await;

    // Kill in the middle of the second batch: the first is committed, part of the second
    // has reached the server but is not committed.
    serve
        .admin()
        .wait_processed(job_id, BATCH as i64, Duration::from_secs(60))
        .await;
    let deadline = Deadline::after(Duration::from_secs(30), "part of the second batch");
    while server.offline_messages().await.len() < BATCH + BATCH / 3 {
        deadline.tick().await;
    }
    let job = serve.admin().get_broadcast(job_id).await;
    assert_eq!(
        (&job["executionState"], &job["recipientsProcessed"]),
        (&json!("RUNNING"), &json!(BATCH)),
        "not in the middle of the second batch: {job}"
    );
    serve.sigkill();
    serve.restart().await;

    let job = serve
        .admin()
        .wait_state(job_id, "FINISHED", Duration::from_secs(120))
        .await;
    assert_eq!(job["recipientCount"], ACCOUNTS, "{job}");
    assert_eq!(job["recipientsProcessed"], ACCOUNTS, "{job}");

    let announcement = Announcement {
        job_id,
        sender,
        subject: spec.subject,
        body: spec.body,
    };
    let repeats = assert_delivered(server, &announcement, &recipients).await;
    assert!(
        !stored_by_recipient(server).await.contains_key(&late_user),
        "an account registered after the start got the message"
    );
    eprintln!("{repeats} messages were sent twice after the restart");
    assert!(
        repeats <= BATCH,
        "{repeats} repeated messages, more than one batch"
    );
}
