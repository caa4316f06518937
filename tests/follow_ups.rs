//! Corrections and retractions (issue 13), on real servers with a real client:
//!
//! 1. Prosody and ejabberd: an online client receives the original, then the correction
//!    (`<replace id>` = the original's id), then the retraction (`<retract id>` = the original's
//!    origin-id); a client offline during all three receives all three, in that order, at
//!    login; a user registered after the original gets neither follow-up; every other account
//!    holds the three; bad input on the real instance changes nothing.
//! 2. Prosody: a broadcast aborted half-way is retracted for exactly whom it may have reached
//!    (its committed batch and the batch in flight), and a SIGKILL in the middle of the
//!    retraction loses nobody.
//! 3. In process (the fake XEP-0114 server): every refusal — unknown id, another domain's id,
//!    a running original, a retraction of a retraction, texts over the limits — creates
//!    nothing; the dry run counts a follow-up's recipients; an original stays while its
//!    follow-up runs.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use support::Deadline;
use support::admin::{Admin, ApiError, BroadcastSpec};
use support::app::{App, AppOptions};
use support::ejabberd::{Ejabberd, EjabberdStorage};
use support::pg::PgDatabase;
use support::prosody::{DOMAIN, Prosody, ProsodyStorage};
use support::scenarios::{XmppServer, accounts_and_sender, stored_by_recipient};
use support::serve::{JobStore, Serve};
use support::stanza::{message_id, parse_stored};
use support::xmpp_client::{ReceivedMessage, XmppClient};
use xmpp_broadcast::job::RETRACTION_FALLBACK_BODY;

const PASSWORD: &str = "pw";
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
const JOB_TIMEOUT: Duration = Duration::from_secs(60);

const CORRECT: &str = "mutation Correct($domain: DomainName!, $id: Int!, $subject: String!, \
    $body: String!, $rate: PosInt!) { broadcast { correctBroadcast(domain: $domain, id: $id, \
    messageSubject: $subject, messageBody: $body, messageRate: $rate) { message ids } } }";
const RETRACT: &str = "mutation Retract($domain: DomainName!, $id: Int!, $rate: PosInt!) { \
    broadcast { retractBroadcast(domain: $domain, id: $id, messageRate: $rate) \
    { message ids } } }";
const COUNT: &str = "query Count($domain: DomainName!, $amends: Int) { broadcast { \
    countBroadcastRecipients(domain: $domain, sample: 3, amends: $amends) \
    { recipientCount sample } } }";

/// `correctBroadcast` of job `id` on `domain`; returns the follow-up's id.
async fn correct(
    admin: &Admin,
    domain: &str,
    id: i64,
    body: &str,
    rate: i64,
) -> Result<i64, ApiError> {
    let variables = json!({
        "domain": domain, "id": id, "subject": "Corrected", "body": body, "rate": rate,
    });
    let data = admin.graphql(CORRECT, variables).await?;
    let result = &data["broadcast"]["correctBroadcast"];
    assert_eq!(result["message"], "Broadcast correction started", "{data}");
    Ok(result["ids"][0].as_i64().expect("an id"))
}

/// `retractBroadcast` of job `id` on `domain`; returns the follow-up's id.
async fn retract(admin: &Admin, domain: &str, id: i64, rate: i64) -> Result<i64, ApiError> {
    let variables = json!({ "domain": domain, "id": id, "rate": rate });
    let data = admin.graphql(RETRACT, variables).await?;
    let result = &data["broadcast"]["retractBroadcast"];
    assert_eq!(result["message"], "Broadcast retraction started", "{data}");
    Ok(result["ids"][0].as_i64().expect("an id"))
}

/// What identifies a stored or received message: its id and the id it amends, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Original(String),
    Correction { id: String, replaces: String },
    Retraction { id: String, retracts: String },
}

impl Seen {
    fn of(message: &ReceivedMessage) -> Seen {
        match (&message.replace_id, &message.retract_id) {
            (Some(replaces), None) => Seen::Correction {
                id: message.id.clone(),
                replaces: replaces.clone(),
            },
            (None, Some(retracts)) => Seen::Retraction {
                id: message.id.clone(),
                retracts: retracts.clone(),
            },
            _ => Seen::Original(message.id.clone()),
        }
    }

    /// A message as a server stored it offline (Prosody without a namespace on the root).
    fn stored(xml: &str) -> Seen {
        let message = parse_stored(xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
        let id = message.attr("id").expect("an id").to_owned();
        let named = |name: &str, ns: &str| {
            message
                .get_child(name, ns)
                .and_then(|child| child.attr("id"))
                .map(str::to_owned)
        };
        match (
            named("replace", "urn:xmpp:message-correct:0"),
            named("retract", "urn:xmpp:message-retract:1"),
        ) {
            (Some(replaces), None) => Seen::Correction { id, replaces },
            (None, Some(retracts)) => Seen::Retraction { id, retracts },
            _ => Seen::Original(id),
        }
    }
}

/// The three messages a recipient gets, in order: job `original`'s, `correction`'s and
/// `retraction`'s, the two follow-ups naming the original's id.
fn three(recipient: &str, original: i64, correction: i64, retraction: i64) -> Vec<Seen> {
    let first = message_id(original, recipient);
    vec![
        Seen::Original(first.clone()),
        Seen::Correction {
            id: message_id(correction, recipient),
            replaces: first.clone(),
        },
        Seen::Retraction {
            id: message_id(retraction, recipient),
            retracts: first,
        },
    ]
}

/// 1. Original, correction, retraction of a correction (it retracts the original), to an
///    online client, an offline one and the offline store; a late registrant gets nothing.
async fn correct_then_retract(server: &impl XmppServer, jobs: JobStore) {
    let (recipients, sender) = accounts_and_sender(server, 5).await;
    let (online_user, offline_user) = (recipients[0].clone(), recipients[1].clone());
    let mut online = XmppClient::login(&online_user, PASSWORD, server.c2s_port());
    online.wait_online(LOGIN_TIMEOUT).await;
    let serve = Serve::start(server.serve_config(jobs)).await;
    let admin = serve.admin();

    let spec = BroadcastSpec {
        name: "wrong time".into(),
        body: "Maintenance tonight at 22:00.".into(),
        sender: sender.clone(),
        ..BroadcastSpec::default()
    };
    let original = admin.start_broadcast(&spec).await.expect("startBroadcast");
    admin.wait_state(original, "FINISHED", JOB_TIMEOUT).await;
    let late = server.register_user("late", PASSWORD).await;

    let correction = correct(
        admin,
        DOMAIN,
        original,
        "Maintenance tonight at 23:00.",
        100,
    )
    .await
    .expect("correctBroadcast");
    let job = admin.wait_state(correction, "FINISHED", JOB_TIMEOUT).await;
    assert_eq!(
        (&job["kind"], &job["amends"], &job["recipientCount"]),
        (
            &json!("CORRECTION"),
            &json!(original),
            &json!(recipients.len())
        ),
        "{job}"
    );
    assert_eq!(job["senderJid"], sender, "{job}");
    // A retraction of the correction retracts the original message.
    let retraction = retract(admin, DOMAIN, correction, 100)
        .await
        .expect("retractBroadcast");
    let job = admin.wait_state(retraction, "FINISHED", JOB_TIMEOUT).await;
    assert_eq!(
        (&job["kind"], &job["amends"], &job["recipientsProcessed"]),
        (
            &json!("RETRACTION"),
            &json!(original),
            &json!(recipients.len())
        ),
        "{job}"
    );
    assert_eq!(job["messageBody"], RETRACTION_FALLBACK_BODY, "{job}");

    let mut live = Vec::new();
    for _ in 0..3 {
        let message = online
            .next_message(LOGIN_TIMEOUT)
            .await
            .expect("a live message");
        assert_eq!(
            (message.from.as_str(), message.kind.as_str()),
            (sender.as_str(), "chat")
        );
        assert_eq!(message.origin_id.as_deref(), Some(message.id.as_str()));
        live.push(message);
    }
    let seen: Vec<Seen> = live.iter().map(Seen::of).collect();
    assert_eq!(seen, three(&online_user, original, correction, retraction));
    assert_eq!(live[1].body, "Maintenance tonight at 23:00.");
    assert_eq!(live[2].body, RETRACTION_FALLBACK_BODY);

    let mut offline = XmppClient::login(&offline_user, PASSWORD, server.c2s_port());
    offline.wait_online(LOGIN_TIMEOUT).await;
    let mut delayed = Vec::new();
    for _ in 0..3 {
        let message = offline
            .next_message(LOGIN_TIMEOUT)
            .await
            .expect("an offline message");
        assert!(message.delayed, "{message:?}");
        delayed.push(Seen::of(&message));
    }
    assert_eq!(
        delayed,
        three(&offline_user, original, correction, retraction)
    );

    let stored = stored_by_recipient(server).await;
    assert!(
        !stored.contains_key(&late),
        "the late registrant got {:?}",
        stored.get(&late)
    );
    for recipient in &recipients[2..] {
        let messages: Vec<Seen> = stored[recipient]
            .iter()
            .map(|xml| Seen::stored(xml))
            .collect();
        assert_eq!(
            messages,
            three(recipient, original, correction, retraction),
            "{recipient}"
        );
    }

    // Bad input on the real instance creates nothing.
    let refusals = [
        (
            correct(admin, DOMAIN, 9999, "b", 100).await,
            "broadcast_not_found",
        ),
        (
            retract(admin, DOMAIN, retraction, 100).await,
            "not_amendable",
        ),
        (
            correct(admin, DOMAIN, retraction, "b", 100).await,
            "not_amendable",
        ),
        (
            correct(admin, DOMAIN, original, &"x".repeat(16_001), 100).await,
            "bad_parameter",
        ),
        (
            correct(admin, DOMAIN, original, "", 100).await,
            "bad_parameter",
        ),
        (
            retract(admin, DOMAIN, original, 1001).await,
            "bad_parameter",
        ),
    ];
    for (refused, code) in refusals {
        assert_eq!(refused.expect_err(code).code, code);
    }
    assert_eq!(
        admin.get_broadcasts(DOMAIN).await.len(),
        3,
        "nothing was created"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn correct_then_retract_on_prosody() {
    let prosody = Prosody::start(ProsodyStorage::Sqlite).await;
    correct_then_retract(&prosody, JobStore::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn correct_then_retract_on_ejabberd() {
    let ejabberd = Ejabberd::start(EjabberdStorage::Postgres(PgDatabase::create().await)).await;
    correct_then_retract(&ejabberd, JobStore::Postgres(PgDatabase::create().await)).await;
}

/// Messages per second of the slow jobs: a batch is 100 recipients.
const SLOW: i64 = 10;
const BATCH: usize = 100;

/// 2. A broadcast to 250 accounts aborted in its second batch reached at most its first 200
///    (in sending order); its retraction goes to exactly those, survives a SIGKILL in its own
///    second batch, and every account that holds the original holds the retraction.
#[tokio::test(flavor = "multi_thread")]
async fn an_aborted_broadcast_is_retracted_for_whom_it_reached() {
    let prosody = Prosody::start(ProsodyStorage::Sqlite).await;
    let mut recipients = prosody.register_users("u", 249, PASSWORD).await;
    let sender = prosody.register_user("admin", PASSWORD).await;
    recipients.push(sender.clone());
    // Sending order: usernames in byte order ("admin" first).
    recipients.sort();
    let mut serve = Serve::start(prosody.serve_config(JobStore::Sqlite)).await;

    let spec = BroadcastSpec {
        sender: sender.clone(),
        rate: SLOW,
        ..BroadcastSpec::default()
    };
    let original = serve.admin().start_broadcast(&spec).await.expect("start");
    serve
        .admin()
        .wait_processed(original, BATCH as i64, JOB_TIMEOUT)
        .await;
    wait_stored(&prosody, BATCH + 5).await;
    serve
        .admin()
        .abort_broadcast(original)
        .await
        .expect("abort");
    let aborted = serve.admin().get_broadcast(original).await;
    assert_eq!(aborted["recipientsProcessed"], BATCH, "{aborted}");

    let admin = serve.admin();
    let dry = admin
        .graphql(COUNT, json!({ "domain": DOMAIN, "amends": original }))
        .await
        .expect("dry run");
    let preview = &dry["broadcast"]["countBroadcastRecipients"];
    assert_eq!(preview["recipientCount"], 2 * BATCH, "{dry}");
    assert_eq!(preview["sample"], json!(recipients[..3]), "{dry}");

    let retraction = retract(admin, DOMAIN, original, SLOW)
        .await
        .expect("retract");
    admin
        .wait_processed(retraction, BATCH as i64, JOB_TIMEOUT)
        .await;
    let before_kill = stored_by_recipient(&prosody).await;
    let retractions = |stored: &BTreeMap<String, Vec<String>>| -> usize {
        stored
            .values()
            .flatten()
            .filter(|xml| matches!(Seen::stored(xml), Seen::Retraction { .. }))
            .count()
    };
    let deadline = Deadline::after(JOB_TIMEOUT, "retractions of the second batch");
    while retractions(&stored_by_recipient(&prosody).await) < retractions(&before_kill) + 5 {
        deadline.tick().await;
    }
    serve.sigkill();
    serve.restart().await;
    let job = serve
        .admin()
        .wait_state(retraction, "FINISHED", JOB_TIMEOUT)
        .await;
    assert_eq!(job["recipientsProcessed"], 2 * BATCH, "{job}");

    let stored = stored_by_recipient(&prosody).await;
    let mut repeats = 0;
    for (position, recipient) in recipients.iter().enumerate() {
        let messages: Vec<Seen> = stored
            .get(recipient)
            .map(|xmls| xmls.iter().map(|xml| Seen::stored(xml)).collect())
            .unwrap_or_default();
        let first = message_id(original, recipient);
        let held_original = messages.contains(&Seen::Original(first.clone()));
        let got = messages
            .iter()
            .filter(|seen| {
                **seen
                    == Seen::Retraction {
                        id: message_id(retraction, recipient),
                        retracts: first.clone(),
                    }
            })
            .count();
        if position < 2 * BATCH {
            assert!(
                got >= 1,
                "{recipient} (#{position}) got no retraction: {messages:?}"
            );
            repeats += got - 1;
        } else {
            assert_eq!(
                got, 0,
                "{recipient} (#{position}) is beyond the stopped batch"
            );
            assert!(!held_original, "{recipient} holds the original");
        }
    }
    assert!(repeats <= BATCH, "{repeats} repeated retractions");
    eprintln!("retraction of job {original}: 200 recipients, {repeats} repeats after SIGKILL");
}

async fn wait_stored(prosody: &Prosody, count: usize) {
    let deadline = Deadline::after(JOB_TIMEOUT, format!("{count} stored messages"));
    while prosody.offline_messages().await.len() < count {
        deadline.tick().await;
    }
}

/// 3. Refusals create nothing; the dry run of a follow-up; an original stays while its
///    follow-up runs.
#[tokio::test(flavor = "multi_thread")]
async fn refused_follow_ups_change_nothing() {
    let options = AppOptions::one_domain("example.com", 3).with_domain("example.org", "o", 3);
    let app = App::start(options).await;
    let admin = app.admin();
    let jobs = |domain: &'static str| async move { admin.get_broadcasts(domain).await.len() };

    let org = BroadcastSpec {
        domain: "example.org".into(),
        sender: "admin@example.org".into(),
        ..BroadcastSpec::default()
    };
    let other_domains = admin.start_broadcast(&org).await.expect("start");
    admin
        .wait_state_in("example.org", other_domains, "FINISHED", JOB_TIMEOUT)
        .await;
    let slow = BroadcastSpec {
        rate: 1,
        ..BroadcastSpec::default()
    };
    let running = admin.start_broadcast(&slow).await.expect("start");
    let deadline = Deadline::after(JOB_TIMEOUT, "the slow job's first message");
    while app.server.message_count() == 0 {
        deadline.tick().await;
    }
    let code = |result: Result<i64, ApiError>| result.expect_err("refused").code;
    assert_eq!(
        code(correct(admin, DOMAIN, other_domains, "b", 10).await),
        "broadcast_not_found"
    );
    assert_eq!(
        code(retract(admin, DOMAIN, 777, 10).await),
        "broadcast_not_found"
    );
    assert_eq!(
        code(retract(admin, DOMAIN, running, 10).await),
        "broadcast_still_running"
    );
    assert_eq!(
        code(correct(admin, "example.net", running, "b", 10).await),
        "domain_not_found"
    );
    assert_eq!((jobs(DOMAIN).await, jobs("example.org").await), (1, 1));

    admin.abort_broadcast(running).await.expect("abort");
    let dry = admin
        .graphql(COUNT, json!({ "domain": DOMAIN, "amends": running }))
        .await
        .expect("dry run");
    // Aborted in its first batch: the batch may have reached all four accounts.
    assert_eq!(
        dry["broadcast"]["countBroadcastRecipients"]["recipientCount"], 4,
        "{dry}"
    );
    let retraction = retract(admin, DOMAIN, running, 1).await.expect("retract");
    let refused = admin
        .graphql(
            "mutation { broadcast { deleteInactiveBroadcastsByDomain(domain: \"example.com\") { ids } } }",
            Value::Null,
        )
        .await
        .expect("delete");
    assert_eq!(
        refused["broadcast"]["deleteInactiveBroadcastsByDomain"]["ids"],
        json!([]),
        "the original is kept while its retraction runs"
    );
    assert_eq!(
        code(retract(admin, DOMAIN, retraction, 10).await),
        "not_amendable"
    );
    assert_eq!(
        code(correct(admin, DOMAIN, running, "b", 10).await),
        "running_job_limit_exceeded"
    );
    assert_eq!(jobs(DOMAIN).await, 2);
    app.stop().await.expect("stop");
}
