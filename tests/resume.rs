//! Crash recovery: a `serve` killed with SIGKILL in the middle of a job (during the second
//! batch, after the first was committed) and started again with the same config resumes the
//! job from its committed progress and finishes it. Every account gets the message at least
//! once, always with the same id, and the repeats are bounded by one batch (rate × 10).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use support::Deadline;
use support::admin::BroadcastSpec;
use support::prosody::{DOMAIN, Prosody, ProsodyStorage};
use support::serve::{JobStore, Serve, ServeConfig};
use support::stanza::Announcement;

const RATE: i64 = 10;
const BATCH: usize = 100; // rate × 10
const ACCOUNTS: usize = 200;

#[tokio::test(flavor = "multi_thread")]
async fn killed_serve_resumes_its_running_job() {
    let prosody = Prosody::start(ProsodyStorage::Sqlite).await;
    let mut recipients = prosody.register_users("u", ACCOUNTS - 1, "pw").await;
    let sender = prosody.register_user("admin", "pw").await;
    recipients.push(sender.clone());

    let mut serve = Serve::start(ServeConfig::for_prosody(&prosody, JobStore::Sqlite)).await;
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
    // Sorted after every recipient, so its page is read only after a restart: it must still
    // not be a recipient, because the snapshot was fixed when the job was created.
    let late_user = prosody.register_user("zzz-late", "pw").await;

    // Kill in the middle of the second batch: the first is committed, part of the second
    // has reached Prosody but is not committed.
    serve
        .admin()
        .wait_processed(job_id, BATCH as i64, Duration::from_secs(60))
        .await;
    let deadline = Deadline::after(Duration::from_secs(30), "part of the second batch");
    while prosody.offline_messages().await.len() < BATCH + BATCH / 3 {
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
    let mut per_user: BTreeMap<String, usize> = BTreeMap::new();
    let stored = prosody.offline_messages().await;
    for (user, xml) in &stored {
        let recipient = format!("{user}@{DOMAIN}");
        announcement.assert_stanza(xml, &recipient);
        *per_user.entry(recipient).or_default() += 1;
    }
    let missing: Vec<&String> = recipients
        .iter()
        .filter(|r| !per_user.contains_key(*r))
        .collect();
    assert!(missing.is_empty(), "never delivered to {missing:?}");
    assert!(
        !per_user.contains_key(&late_user),
        "an account registered after the start got the message"
    );
    assert_eq!(
        per_user.len(),
        ACCOUNTS,
        "messages to non-recipients: {per_user:?}"
    );
    let repeats = stored.len() - ACCOUNTS;
    eprintln!("{repeats} messages were sent twice after the restart");
    assert!(
        repeats <= BATCH,
        "{repeats} repeated messages, more than one batch"
    );
}
