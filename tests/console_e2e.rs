//! The web console in Debian's Chromium (headless, through chromedriver) against `serve` on a
//! real Prosody with 200 accounts and a real client: wrong credentials are refused; a domain
//! admin sees only its domain; bad input typed in the form (empty body, body over the limit,
//! rate 0, unknown sender) shows the API's error at its field and creates no job; the dry run
//! shows the count and a sample; the announcement is confirmed, its progress bar reaches 100 %
//! and FINISHED, and the client received it; it is corrected (an empty text refused in the
//! dialog first) and retracted, and the client gets both; a slow job is aborted and deleted
//! from the page;
//! the page fits a phone's width; the browser loaded nothing but the listener's own files, the
//! console's Content-Security-Policy header is present and the browser reported no error.
//!
//! The browser is driven by `tests/support/console_browser.py` (selenium in the test venv),
//! which reports what the page showed as JSON. Screenshots of each step are written to
//! `target/screenshots/console/` (under `CARGO_TARGET_DIR` if set).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::admin::BroadcastSpec;
use support::prosody::{DOMAIN, OTHER_DOMAIN, Prosody, ProsodyStorage};
use support::scenarios::accounts_and_sender;
use support::serve::{ADMIN_PASSWORD, ADMIN_USER, JobStore, Serve, ServeConfig};
use support::stanza::message_id;
use support::xmpp_client::{XmppClient, venv_python};
use xmpp_broadcast::admin::console::CONTENT_SECURITY_POLICY;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/console_browser.py"
);
const DOMAIN_ADMIN_PASSWORD: &str = "domain-admin-pw";
/// How far ahead the page schedules the slow job: long enough to see it SCHEDULED.
const SCHEDULE_AHEAD: Duration = Duration::from_secs(4);
/// Jobs on a page of the console.
const PAGE_SIZE: usize = 10;
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
/// The whole browser session, every step included.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target")));
    target.join("screenshots/console")
}

/// Runs the browser script with `config`; its JSON report.
async fn drive_browser(config: &Value) -> Value {
    for program in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        support::process::require_program(
            program,
            "install Debian's browser with `apt-get install chromium chromium-driver` \
             (`bash .ci/run` does)",
        );
    }
    let mut command = tokio::process::Command::new(venv_python());
    command
        .arg(SCRIPT)
        .arg(config.to_string())
        .env("SE_OFFLINE", "true")
        .kill_on_drop(true);
    let output = tokio::time::timeout(BROWSER_TIMEOUT, command.output())
        .await
        .expect("the browser session ended in time")
        .expect("run console_browser.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "console_browser.py failed ({}): {stdout}\n{stderr}",
        output.status
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|err| panic!("console_browser.py report is not JSON ({err}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_sends_aborts_and_refuses_in_chromium() {
    let prosody = Prosody::start(ProsodyStorage::Sqlite).await;
    // 200 accounts: u0001..u0199 and the sender, who is a recipient too.
    let (recipients, sender) = accounts_and_sender(&prosody, 199).await;
    let online_user = recipients[0].clone();
    let mut online = XmppClient::login(&online_user, "pw", prosody.c2s_port());
    online.wait_online(LOGIN_TIMEOUT).await;

    let other_sender = prosody.register_user_at(OTHER_DOMAIN, "admin", "pw").await;
    let mut config = ServeConfig::for_prosody(&prosody, JobStore::Sqlite);
    config.domains.push(OTHER_DOMAIN.into());
    config.groups = vec![(
        "early".into(),
        "SELECT \"user\" FROM prosody WHERE host = $1 AND store = 'accounts' \
         AND \"user\" IN ('u0002', 'u0003')"
            .into(),
    )];
    let hash = support::serve::hash_password(DOMAIN_ADMIN_PASSWORD).await;
    let serve = Serve::start_with_domain_admins(config, &[(DOMAIN, &hash)]).await;
    let admin = serve.admin();

    // The console's files carry the policy; the page is served at `/`.
    let (status, content_type, page) = admin.get("/").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.contains("/console/console.js"), "{page}");

    // More jobs on the other domain than a page holds (each to its one account), to page
    // through.
    let mut other_jobs = Vec::new();
    for n in 1..=PAGE_SIZE + 2 {
        let spec = BroadcastSpec {
            name: format!("other {n}"),
            domain: OTHER_DOMAIN.into(),
            sender: other_sender.clone(),
            ..BroadcastSpec::default()
        };
        let id = admin
            .start_broadcast(&spec)
            .await
            .expect("a job on the other domain");
        admin
            .wait_state_in(OTHER_DOMAIN, id, "FINISHED", LOGIN_TIMEOUT)
            .await;
        other_jobs.push(id);
    }
    other_jobs.reverse();

    let body = "Service <xmpp> & friends: down at 22:00 'UTC'.\nBack by 23:00.";
    let correction = "Service down at 23:00 UTC, not 22:00.";
    let browser = json!({
        "url": admin.base(),
        "screenshots": screenshots(),
        "admin_user": ADMIN_USER,
        "admin_password": ADMIN_PASSWORD,
        "domain_admin_user": format!("admin@{DOMAIN}"),
        "domain_admin_password": DOMAIN_ADMIN_PASSWORD,
        "domain": DOMAIN,
        "other_domain": OTHER_DOMAIN,
        "sender": sender,
        "unknown_sender": format!("nobody@{DOMAIN}"),
        "body_max": 16_000,
        "name": "maintenance",
        "subject": "Planned maintenance",
        "body": body,
        "correction": correction,
        "schedule_ahead": SCHEDULE_AHEAD.as_secs(),
        "listed": [recipients[3].clone(), format!("ghost@{DOMAIN}")],
    });
    let report = drive_browser(&browser).await;
    assert_eq!(report["ok"], true, "{report:#}");

    assert_eq!(report["title"], "xmpp-broadcast console");
    assert_eq!(report["login_focused"], "username", "{report:#}");

    // Wrong credentials: the API's refusal, in words, and still at the login form.
    let wrong = &report["wrong_credentials"];
    let error = wrong["error"].as_str().unwrap();
    assert!(error.contains("Wrong user name or password"), "{error}");
    assert!(error.contains("wrong_credentials"), "{error}");
    assert_eq!(wrong["still_login"], true);

    // The domain admin's picker holds its domain only; the global admin's every domain.
    let domain_admin = &report["domain_admin"];
    assert_eq!(domain_admin["domains"], json!([DOMAIN]), "{domain_admin}");
    assert_eq!(domain_admin["picker_disabled"], true);
    assert_eq!(domain_admin["who"], format!("admin@{DOMAIN}"));
    let logged_out = &report["after_logout"];
    assert_eq!(logged_out["login_visible"], true);
    assert_eq!(logged_out["app_hidden"], true);
    assert_eq!(logged_out["focused"], "username");
    let mut every_domain = vec![DOMAIN, OTHER_DOMAIN];
    every_domain.sort();
    assert_eq!(report["global_admin"]["domains"], json!(every_domain));
    assert_eq!(report["global_admin"]["focused"], "send-title");
    assert_eq!(report["global_admin"]["unlabelled"], json!([]));

    // The other domain's jobs, newest first, a page at a time.
    let pages = &report["pages"];
    let ids = |page: &Value| -> Vec<i64> {
        page.as_array()
            .unwrap()
            .iter()
            .map(|job| job[0].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&pages["first"]), other_jobs[..PAGE_SIZE], "{pages}");
    assert_eq!(ids(&pages["second"]), other_jobs[PAGE_SIZE..], "{pages}");
    assert_eq!(ids(&pages["back"]), other_jobs[..PAGE_SIZE], "{pages}");
    assert_eq!(
        pages["labels"],
        json!(["Jobs 1–10", "Jobs 11–12", "Jobs 1–10"])
    );
    assert_eq!(pages["older_disabled"], json!([false, true, false]));
    assert_eq!(pages["newer_disabled"], json!([true, false, true]));

    // Bad input: the API's error at its field, the field marked and focused, no job listed.
    let refusals = report["refusals"].as_array().unwrap();
    let expected = [
        (
            "empty body",
            "f-body",
            "Invalid parameter: body (bad_parameter)",
        ),
        (
            "body over the limit",
            "f-body",
            "Invalid parameter: body (bad_parameter)",
        ),
        ("rate 0", "f-rate", "(input_coercion)"),
        (
            "unknown sender",
            "f-sender",
            "Sender account does not exist (sender_not_found)",
        ),
    ];
    assert_eq!(refusals.len(), expected.len());
    for (refusal, (case, field, says)) in refusals.iter().zip(expected) {
        assert_eq!(refusal["case"], case);
        let error = refusal["error"].as_str().unwrap();
        assert!(error.contains(says), "{case}: {error}");
        assert_eq!(refusal["invalid"], "true", "{case}");
        assert_eq!(refusal["focused"], field, "{case}");
        assert_eq!(refusal["other_errors"], "", "{case}");
        assert_eq!(refusal["jobs"], json!([]), "{case}");
    }
    assert!(
        refusals[2]["error"]
            .as_str()
            .unwrap()
            .contains("Value is not a positive integer"),
        "{}",
        refusals[2]
    );
    assert_eq!(
        refusals[1]["counter"],
        "16001 / 16000 characters — 1 too many"
    );
    assert_eq!(refusals[0]["counter"], "0 / 16000 characters — required");

    // The dry run: the count and the first recipients, then an explicit confirmation.
    let sent = &report["sent"];
    let dry_run = &sent["dry_run"];
    assert_eq!(
        dry_run["text"],
        format!("200 users of {DOMAIN} would receive this message now, among them:")
    );
    let mut first = recipients.clone();
    first.sort();
    assert_eq!(dry_run["sample"], json!(first[..5]), "{dry_run}");
    assert_eq!(dry_run["confirm"], "Send to 200 users");
    assert_eq!(dry_run["focused"], "dry-run");

    // No refused request created a job: the announcement is the next after the other
    // domain's.
    let job_id = sent["job_id"].as_i64().unwrap();
    assert_eq!(job_id, other_jobs[0] + 1, "{sent}");
    assert_eq!(sent["state"], "FINISHED");
    assert_eq!(sent["bar"], json!([200.0, 200.0]));
    let status = sent["status"].as_str().unwrap();
    assert!(
        status.starts_with("200 of 200 recipients (100 %)"),
        "{status}"
    );
    assert_eq!(sent["status_role"], "status");
    let job = admin.get_broadcast(job_id).await;
    assert_eq!(job["executionState"], "FINISHED", "{job}");
    assert_eq!(job["recipientsProcessed"], 200, "{job}");
    assert_eq!(job["messageBody"], body, "{job}");
    assert_eq!(job["senderJid"], sender, "{job}");

    // The client received the announcement as typed in the page.
    let live = online
        .next_message(LOGIN_TIMEOUT)
        .await
        .expect("the announcement");
    assert_eq!(live.id, message_id(job_id, &online_user));
    assert_eq!(live.from, sender);
    assert_eq!(live.subject, "Planned maintenance");
    assert_eq!(live.body, body);

    // The correction: an empty text refused at its field in the dialog, then sent to the
    // 200 users the broadcast reached; then the retraction of the message, both followed to
    // FINISHED, and the client got both, naming the original message.
    let corrected = &report["corrected"];
    assert_eq!(corrected["title"], format!("Correct job #{job_id}"));
    assert_eq!(corrected["confirm"], "Send the correction to 200 users");
    assert_eq!(corrected["focused"], "a-body");
    let refused = corrected["refused"]["error"].as_str().unwrap();
    assert!(
        refused.contains("Invalid parameter: body (bad_parameter)"),
        "{refused}"
    );
    assert_eq!(corrected["refused"]["focused"], "a-body");
    let correction_id = corrected["job_id"].as_i64().unwrap();
    let retracted = &report["retracted"];
    assert_eq!(retracted["confirm"], "Retract from 200 users");
    let retraction_id = retracted["job_id"].as_i64().unwrap();
    assert_eq!(
        (correction_id, retraction_id),
        (job_id + 1, job_id + 2),
        "{report:#}"
    );
    let original_id = message_id(job_id, &online_user);
    let corrected_message = online
        .next_message(LOGIN_TIMEOUT)
        .await
        .expect("the correction");
    assert_eq!(corrected_message.body, correction);
    assert_eq!(
        corrected_message.replace_id.as_deref(),
        Some(original_id.as_str())
    );
    let retraction = online
        .next_message(LOGIN_TIMEOUT)
        .await
        .expect("the retraction");
    assert_eq!(retraction.retract_id.as_deref(), Some(original_id.as_str()));
    for (id, kind) in [(correction_id, "CORRECTION"), (retraction_id, "RETRACTION")] {
        let job = admin.get_broadcast(id).await;
        assert_eq!(job["executionState"], "FINISHED", "{job}");
        assert_eq!(job["kind"], kind, "{job}");
        assert_eq!(job["amends"], job_id, "{job}");
        assert_eq!(job["recipientsProcessed"], 200, "{job}");
    }

    // Audiences: a list (one address that is not an account, shown before and after), a
    // configured group, a bad list line refused at the list.
    let audiences = &report["audiences"];
    assert_eq!(audiences["groups"], json!(["early"]), "{audiences}");
    let ghost = format!("ghost@{DOMAIN}");
    assert_eq!(
        audiences["listed_dry"]["text"],
        format!(
            "1 user of {DOMAIN} would receive this message now; 1 listed address is not an \
             account and would be skipped: {ghost}; the recipients include:"
        ),
        "{audiences}"
    );
    assert_eq!(audiences["listed_dry"]["sample"], json!([recipients[3]]));
    let listed_facts = audiences["listed_facts"].as_str().unwrap();
    assert!(
        listed_facts.contains(&format!(
            "listed accounts (1 listed address was not an account: {ghost})"
        )),
        "{listed_facts}"
    );
    let group_dry = audiences["group_dry"]["text"].as_str().unwrap();
    assert!(group_dry.starts_with("2 users of"), "{group_dry}");
    assert!(
        audiences["group_facts"]
            .as_str()
            .unwrap()
            .contains("group early"),
        "{audiences}"
    );
    let bad_list = audiences["bad_list"]["error"].as_str().unwrap();
    assert!(bad_list.contains("input_coercion"), "{bad_list}");
    assert_eq!(audiences["bad_list"]["invalid"], "true");
    let listed_id = audiences["listed_id"].as_i64().unwrap();
    let group_id = audiences["group_id"].as_i64().unwrap();
    for (id, count) in [(listed_id, 1), (group_id, 2)] {
        let job = admin.get_broadcast(id).await;
        assert_eq!(
            (&job["executionState"], &job["recipientsProcessed"]),
            (&json!("FINISHED"), &json!(count)),
            "{job}"
        );
    }
    let stored = prosody.offline_messages().await;
    let holders = |id: i64| -> Vec<String> {
        let mut users: Vec<String> = stored
            .iter()
            .filter(|(user, xml)| xml.contains(&message_id(id, &format!("{user}@{DOMAIN}"))))
            .map(|(user, _)| user.clone())
            .collect();
        users.sort();
        users
    };
    assert_eq!(holders(listed_id), ["u0004"]);
    assert_eq!(holders(group_id), ["u0002", "u0003"]);

    // Phone-sized: nothing wider than the screen.
    assert_eq!(report["phone"]["overflow"], 0, "{}", report["phone"]);

    // The slow job, aborted from the page (after a confirmation), then deleted.
    // It was scheduled, seen SCHEDULED then RUNNING at its time, paused and resumed.
    let holds = &report["holds"];
    assert_eq!(
        holds["dry_run"]["confirm"], "Schedule for 200 users",
        "{holds}"
    );
    assert_eq!(
        holds["seen"],
        json!(["SCHEDULED", "RUNNING", "PAUSED", "RUNNING"]),
        "{holds}"
    );
    let scheduled = holds["scheduled_status"].as_str().unwrap();
    assert!(scheduled.contains("starts"), "{scheduled}");
    let paused = holds["paused_status"].as_str().unwrap();
    assert!(paused.ends_with("recipients (0 %). Paused."), "{paused}");
    let aborted = &report["aborted"];
    let slow_id = aborted["job_id"].as_i64().unwrap();
    assert_eq!(slow_id, retraction_id + 1);
    assert_eq!(aborted["state"], "ABORT_ADMIN");
    // The job the page scheduled started at its time, not before (seconds, both).
    let slow = &aborted["stored"];
    let start_at = slow["startAt"].as_str().expect("the slow job's startAt");
    let started = slow["startTimestamp"]
        .as_str()
        .expect("the slow job's start");
    assert!(started >= start_at, "{slow}");
    assert_eq!(slow["status"], "ABORT_ADMIN", "{slow}");
    assert_eq!(aborted["dialog"]["title"], format!("Abort job #{slow_id}?"));
    assert_eq!(aborted["dialog"]["focused"], "confirm-no");
    let running = aborted["running_status"].as_str().unwrap();
    assert!(running.contains("of 200 recipients"), "{running}");
    assert!(running.contains("left"), "{running}");
    let deleted = &report["deleted"];
    assert_eq!(
        deleted["jobs"],
        json!([
            [retraction_id, "FINISHED"],
            [correction_id, "FINISHED"],
            [job_id, "FINISHED"]
        ])
    );
    let jobs = admin.get_broadcasts(DOMAIN).await;
    let ids: Vec<_> = jobs.iter().map(|job| job["id"].as_i64()).collect();
    let group_id = report["audiences"]["group_id"].as_i64();
    let listed_id = report["audiences"]["listed_id"].as_i64();
    assert_eq!(
        ids,
        [
            group_id,
            listed_id,
            Some(retraction_id),
            Some(correction_id),
            Some(job_id)
        ],
        "{jobs:?}"
    );

    // The browser loaded the listener's files only; the page had the policy; no errors.
    let base = admin.base();
    let requests = report["requests"].as_array().unwrap();
    assert!(
        requests
            .iter()
            .any(|url| url == &json!(format!("{base}/console/console.js"))),
        "{requests:?}"
    );
    // Every request over the network (the log also has the browser's own `chrome://` pages
    // from before the console was opened) went to the listener.
    let network = requests
        .iter()
        .map(|url| url.as_str().unwrap())
        .filter(|url| {
            ["http:", "https:", "ws:", "wss:"]
                .iter()
                .any(|s| url.starts_with(s))
        });
    for url in network {
        assert!(
            url.starts_with(&format!("{base}/")),
            "loaded from elsewhere: {url}"
        );
    }
    assert_eq!(
        report["document"]["csp"], CONTENT_SECURITY_POLICY,
        "{report:#}"
    );
    assert_eq!(report["console_errors"], json!([]), "{report:#}");
}
