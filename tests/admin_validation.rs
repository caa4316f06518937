//! The admin API refuses bad input without side effects: every `startBroadcast` argument
//! outside its limits gets MongooseIM's error code (and, for input coercion, HTTP 400),
//! creates no job and leaves the component stream up, so a valid job afterwards still
//! delivers. Lengths count grapheme clusters. Missing or wrong credentials get 401.

mod support;

use std::time::Duration;

use serde_json::json;
use support::admin::{Admin, ApiError, Auth, BroadcastSpec};
use support::prosody::{DOMAIN, Prosody, ProsodyStorage};
use support::serve::{ADMIN_PASSWORD, ADMIN_USER, JobStore, Serve, ServeConfig};
use support::stanza::Announcement;

const JOB_TIMEOUT: Duration = Duration::from_secs(60);

/// An error the API answers with HTTP 200 and a null field.
fn operation_error(code: &str, message: &str) -> ApiError {
    ApiError {
        status: 200,
        code: code.into(),
        message: message.into(),
    }
}

fn bad_parameter(parameter: &str) -> ApiError {
    operation_error("bad_parameter", &format!("Invalid parameter: {parameter}"))
}

/// Starts the `spec` job expecting `expected`, then checks no job exists.
async fn assert_refused(admin: &Admin, case: &str, spec: BroadcastSpec, expected: ApiError) {
    let result = admin.start_broadcast(&spec).await;
    assert_eq!(result, Err(expected), "{case}");
    assert_eq!(
        admin.get_broadcasts(DOMAIN).await,
        Vec::<serde_json::Value>::new(),
        "{case}"
    );
}

/// Starts the `spec` job expecting an input coercion error (HTTP 400), then checks no job
/// exists.
async fn assert_coercion_error(admin: &Admin, case: &str, spec: BroadcastSpec) {
    let error = admin.start_broadcast(&spec).await.expect_err(case);
    assert_eq!(
        (error.status, error.code.as_str()),
        (400, "input_coercion"),
        "{case}: {error:?}"
    );
    assert_eq!(
        admin.get_broadcasts(DOMAIN).await,
        Vec::<serde_json::Value>::new(),
        "{case}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_start_requests_are_refused_without_side_effects() {
    let prosody = Prosody::start(ProsodyStorage::Sqlite).await;
    let mut recipients = prosody.register_users("u", 4, "pw").await;
    recipients.push(prosody.register_user("admin", "pw").await);
    let serve = Serve::start(ServeConfig::for_prosody(&prosody, JobStore::Sqlite)).await;
    let admin = serve.admin();
    let valid = BroadcastSpec::default();
    let with = |change: fn(&mut BroadcastSpec)| {
        let mut spec = valid.clone();
        change(&mut spec);
        spec
    };

    let refusals = [
        (
            "empty name",
            with(|s| s.name = String::new()),
            bad_parameter("name"),
        ),
        (
            "251-char name",
            with(|s| s.name = "n".repeat(251)),
            bad_parameter("name"),
        ),
        (
            "1025-char subject",
            with(|s| s.subject = "s".repeat(1025)),
            bad_parameter("subject"),
        ),
        (
            "empty body",
            with(|s| s.body = String::new()),
            bad_parameter("body"),
        ),
        (
            "16001-char body",
            with(|s| s.body = "b".repeat(16001)),
            bad_parameter("body"),
        ),
        (
            "rate 1001",
            with(|s| s.rate = 1001),
            bad_parameter("message_rate"),
        ),
        (
            "NUL in subject",
            with(|s| s.subject = "a\u{0}b".into()),
            bad_parameter("subject"),
        ),
        (
            "ESC in body",
            with(|s| s.body = "a\u{1b}[31mb".into()),
            bad_parameter("body"),
        ),
        (
            "unknown sender",
            with(|s| s.sender = format!("nobody@{DOMAIN}")),
            operation_error("sender_not_found", "Sender account does not exist"),
        ),
        (
            "sender of another domain",
            with(|s| s.sender = "admin@other.example.org".into()),
            operation_error("sender_not_found", "Sender account does not exist"),
        ),
        (
            "unknown domain",
            with(|s| s.domain = "unknown.example.org".into()),
            operation_error("domain_not_found", "Domain not found"),
        ),
    ];
    for (case, spec, expected) in refusals {
        assert_refused(admin, case, spec, expected).await;
    }
    let coercions = [
        ("rate 0", with(|s| s.rate = 0)),
        ("empty domain", with(|s| s.domain = String::new())),
        (
            "sender without local part",
            with(|s| s.sender = format!("@{DOMAIN}")),
        ),
        (
            "sender with resource",
            with(|s| s.sender = format!("admin@{DOMAIN}/phone")),
        ),
    ];
    for (case, spec) in coercions {
        assert_coercion_error(admin, case, spec).await;
    }

    // The stream survived the refusals: a valid job is delivered to every account.
    let job_id = admin.start_broadcast(&valid).await.expect("valid job");
    let job = admin.wait_state(job_id, "FINISHED", JOB_TIMEOUT).await;
    assert_eq!(job["recipientsProcessed"], recipients.len(), "{job}");
    let announcement = Announcement {
        job_id,
        sender: valid.sender.clone(),
        subject: valid.subject.clone(),
        body: valid.body.clone(),
    };
    let mut stored: Vec<(String, String)> = prosody
        .offline_messages()
        .await
        .into_iter()
        .map(|(user, xml)| (format!("{user}@{DOMAIN}"), xml))
        .collect();
    stored.sort();
    recipients.sort();
    let users: Vec<&String> = stored.iter().map(|(user, _)| user).collect();
    assert_eq!(
        users,
        recipients.iter().collect::<Vec<_>>(),
        "one message each"
    );
    for (recipient, xml) in &stored {
        announcement.assert_stanza(xml, recipient);
    }

    // Limits count grapheme clusters: "e" + U+0301 is one.
    let at_limits = with(|s| {
        s.name = "e\u{301}".repeat(250);
        s.subject = "e\u{301}".repeat(1024);
        s.body = "e\u{301}".repeat(16000);
    });
    let job_id = admin
        .start_broadcast(&at_limits)
        .await
        .expect("lengths at the limits");
    let job = admin.wait_state(job_id, "FINISHED", JOB_TIMEOUT).await;
    assert_eq!(job["name"], at_limits.name, "{job}");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_valid_credentials_get_401() {
    let prosody = Prosody::start(ProsodyStorage::Sqlite).await;
    prosody.register_user("admin", "pw").await;
    let serve = Serve::start(ServeConfig::for_prosody(&prosody, JobStore::Sqlite)).await;
    let query = "query { broadcast { getBroadcasts(domain: \"example.com\") { id } } }";
    let cases = [
        ("no credentials", Auth::None),
        ("wrong password", Auth::Basic(ADMIN_USER, "wrong")),
        ("wrong user", Auth::Basic("root", ADMIN_PASSWORD)),
    ];
    for (case, auth) in cases {
        let (status, body) = serve.admin().post(query, json!({}), auth).await;
        assert_eq!(status, 401, "{case}: {body}");
    }
    let (status, body) = serve.admin().post(query, json!({}), Auth::Admin).await;
    assert_eq!(
        (status, &body["data"]["broadcast"]["getBroadcasts"]),
        (200, &json!([])),
        "{body}"
    );
}
