//! `/metrics`: MongooseIM's mod_broadcast metrics (mongooseim-broadcast.md §7) in Prometheus
//! text format, labelled `host_type` = domain, with a zero series for every configured domain;
//! `promtool check metrics` accepts the output without a complaint. After a finished job the
//! counters equal its recipients exactly; an abort counts once in `jobs_aborted_admin`.
//! `xmpp_broadcast_job_database_up` is 1 while the job database is usable.
//!
//! The instance runs in the test process on the in-process XEP-0114 server: what is counted is
//! the component's own work, which a real XMPP server would not change.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::Deadline;
use support::admin::{Admin, BroadcastSpec};
use support::app::{App, AppOptions};
use support::process::{output_with_input, require_program};
use support::prosody::{DOMAIN, OTHER_DOMAIN};

/// Accounts of `example.com`, the sender included.
const USERS: i64 = 10;
const JOB_TIMEOUT: Duration = Duration::from_secs(20);
/// An aborted job's worker stops "within about a second".
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

const LIVE_JOBS: &str = "mod_broadcast_live_jobs";
const STARTED: &str = "mod_broadcast_jobs_started_total";
const FINISHED: &str = "mod_broadcast_jobs_finished_total";
const ABORTED_ADMIN: &str = "mod_broadcast_jobs_aborted_admin_total";
const ABORTED_ERROR: &str = "mod_broadcast_jobs_aborted_error_total";
const PROCESSED: &str = "mod_broadcast_recipients_processed_total";
const SUCCESS: &str = "mod_broadcast_recipients_success_total";
const SKIPPED: &str = "mod_broadcast_recipients_skipped_total";

/// The eight metrics of §7 (Prometheus names of this project) and their types.
const METRICS: [(&str, &str); 8] = [
    (LIVE_JOBS, "gauge"),
    (STARTED, "counter"),
    (FINISHED, "counter"),
    (ABORTED_ADMIN, "counter"),
    (ABORTED_ERROR, "counter"),
    (PROCESSED, "counter"),
    (SUCCESS, "counter"),
    (SKIPPED, "counter"),
];

/// Runs `promtool check metrics` on `text`; panics with its complaints unless it accepts it
/// without any.
async fn assert_promtool_accepts(text: &str, when: &str) {
    require_program(
        "promtool",
        "install it with `apt-get install prometheus` (`bash .ci/run` does)",
    );
    let mut promtool = Command::new("promtool");
    promtool.args(["check", "metrics"]);
    let output = output_with_input(promtool, text.as_bytes()).await;
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && complaints.trim().is_empty(),
        "promtool check metrics {when}: {} {complaints}\n{text}",
        output.status
    );
}

/// Every metric's value for `host_type`, in [`METRICS`] order (missing series panic).
async fn values(admin: &Admin, host_type: &str) -> Vec<(&'static str, f64)> {
    let mut values = Vec::new();
    for (name, _) in METRICS {
        let value = admin
            .metric(name, host_type)
            .await
            .unwrap_or_else(|| panic!("no series {name}{{host_type=\"{host_type}\"}}"));
        values.push((name, value));
    }
    values
}

/// The expected values, in [`METRICS`] order, when no job runs and none failed: every
/// recipient processed was a success, none was skipped.
fn no_live_jobs(
    started: f64,
    finished: f64,
    aborted_admin: f64,
    recipients: f64,
) -> Vec<(&'static str, f64)> {
    vec![
        (LIVE_JOBS, 0.0),
        (STARTED, started),
        (FINISHED, finished),
        (ABORTED_ADMIN, aborted_admin),
        (ABORTED_ERROR, 0.0),
        (PROCESSED, recipients),
        (SUCCESS, recipients),
        (SKIPPED, 0.0),
    ]
}

/// Polls `/metrics` until `name{host_type=DOMAIN}` is `value`.
async fn wait_metric(admin: &Admin, name: &str, value: f64, timeout: Duration) {
    let deadline = Deadline::after(timeout, format!("{name} to be {value}"));
    while admin.metric(name, DOMAIN).await != Some(value) {
        deadline.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_jobs_and_recipients() {
    let options =
        AppOptions::one_domain(DOMAIN, USERS as usize - 1).with_domain(OTHER_DOMAIN, "o", 0);
    let app = App::start(options).await;
    let admin = app.admin();
    let sender = format!("admin@{DOMAIN}");

    // Before any job: the format, build information, a zero series per configured domain.
    let (status, content_type, text) = admin.get("/metrics").await;
    assert_eq!(status, 200, "GET /metrics: {text}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "content type of the text format: {content_type}"
    );
    assert_promtool_accepts(&text, "at start").await;
    for (name, kind) in METRICS {
        let type_line = format!("# TYPE {name} {kind}");
        assert!(text.lines().any(|l| l == type_line), "{type_line}\n{text}");
    }
    let build_info = format!(
        "xmpp_broadcast_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        text.lines().any(|l| l == build_info),
        "{build_info}\n{text}"
    );
    // The instance is started once its job database is up (tests/job_database.rs has it down).
    for line in [
        "# TYPE xmpp_broadcast_job_database_up gauge",
        "xmpp_broadcast_job_database_up 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}\n{text}");
    }
    let zeros: Vec<(&str, f64)> = METRICS.iter().map(|(name, _)| (*name, 0.0)).collect();
    for domain in [DOMAIN, OTHER_DOMAIN] {
        assert_eq!(values(admin, domain).await, zeros, "{domain} at start");
    }

    // A finished job: every recipient counted once, as processed and as success.
    let spec = BroadcastSpec {
        name: "counted".into(),
        sender,
        rate: 1000,
        ..BroadcastSpec::default()
    };
    let id = admin.start_broadcast(&spec).await.expect("startBroadcast");
    let job = admin.wait_state(id, "FINISHED", JOB_TIMEOUT).await;
    assert_eq!(job["recipientCount"], json!(USERS), "{job}");
    // The worker's end is counted just after the job is marked finished.
    wait_metric(admin, FINISHED, 1.0, JOB_TIMEOUT).await;
    let recipients = USERS as f64;
    let after_finished = no_live_jobs(1.0, 1.0, 0.0, recipients);
    assert_eq!(
        values(admin, DOMAIN).await,
        after_finished,
        "after a finished job of {USERS} recipients"
    );
    assert_eq!(values(admin, OTHER_DOMAIN).await, zeros, "the other domain");

    // A slow job: live while it runs, then aborted by the admin.
    let slow = BroadcastSpec {
        name: "aborted".into(),
        rate: 1,
        ..spec.clone()
    };
    let id = admin.start_broadcast(&slow).await.expect("startBroadcast");
    wait_metric(admin, LIVE_JOBS, 1.0, JOB_TIMEOUT).await;
    assert_eq!(admin.metric(STARTED, DOMAIN).await, Some(2.0), "started");
    let abort = "mutation Abort($domain: DomainName!, $id: Int!) { broadcast { \
                 abortBroadcast(domain: $domain, id: $id) { message } } }";
    admin
        .graphql(abort, json!({ "domain": DOMAIN, "id": id }))
        .await
        .expect("abortBroadcast");
    wait_metric(admin, ABORTED_ADMIN, 1.0, STOP_TIMEOUT).await;
    let job = admin.get_broadcast(id).await;
    assert_eq!(job["executionState"], "ABORT_ADMIN", "{job}");
    let committed = job["recipientsProcessed"]
        .as_f64()
        .expect("recipientsProcessed");
    let after_abort = no_live_jobs(2.0, 1.0, 1.0, recipients + committed);
    assert_eq!(
        values(admin, DOMAIN).await,
        after_abort,
        "after an aborted job ({committed} recipients committed)"
    );
    assert_eq!(values(admin, OTHER_DOMAIN).await, zeros, "the other domain");
    assert_promtool_accepts(&admin.metrics().await, "after two jobs").await;
}
