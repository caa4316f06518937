//! Secrets stay secret: a whole instance whose every secret comes from outside its config
//! file (a systemd credentials directory, `…_file` keys) serves a broadcast, refuses wrong
//! logins, fails to reach a job database whose URL carries a password, and at debug level
//! neither its log, nor `check-config`'s output, nor any API answer shows a secret. The check
//! itself is shown to catch a planted secret.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::admin::{Admin, Auth, BroadcastSpec};
use support::pg::PgDatabase;
use support::process::{self, LogFile};
use support::prosody::{COMPONENT_SECRET, Prosody, ProsodyStorage};
use support::secrets::{DATABASE_PASSWORD, TEST_SECRETS, assert_no_secret, leaked_in};
use support::serve::{self, ADMIN_PASSWORD, ADMIN_USER};
use support::xmpp_client::XmppClient;
use support::{Deadline, free_port, scratch_dir};

const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn the_check_catches_a_planted_secret() {
    let clean = "INFO job finished job_id=7 processed=1000\n{\"message\":\"ok\"}";
    assert!(leaked_in(clean).is_empty());
    assert_no_secret("a clean log", clean);
    for secret in TEST_SECRETS {
        assert!(secret.starts_with("xbtest-"), "{secret} is not distinctive");
        let planted = format!("{clean}\nERROR cannot connect to postgres://xb:{secret}@db/jobs");
        assert_eq!(leaked_in(&planted), vec![*secret]);
        let caught = std::panic::catch_unwind(|| assert_no_secret("a planted log", &planted));
        let message = caught.expect_err("the check must fail on a planted secret");
        let message = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains("cannot connect to postgres"), "{message}");
    }
}

/// The config of the instance: no secret in it, only where they are.
fn config_without_secrets(
    prosody: &Prosody,
    jobs_url: &str,
    admin_listen: &str,
    password_file: &Path,
) -> String {
    format!(
        "node_name = \"node1\"\nlog_format = \"json\"\n\n\
         [component]\njid = \"broadcast.example.com\"\nserver = {server:?}\n\n\
         [database]\nurl = {jobs_url:?}\n\n\
         [users]\nschema = \"prosody\"\nurl = {users:?}\n\n\
         [admin]\nlisten = {admin_listen:?}\nusername = {ADMIN_USER:?}\n\
         password_file = {password_file:?}\n\n[domains.\"example.com\"]\n",
        server = prosody.component_addr(),
        users = prosody.users_db_url(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_shows_in_logs_errors_or_answers() {
    let prosody = Prosody::start(ProsodyStorage::Sqlite).await;
    prosody.register_user("admin", "sender-pw").await;
    let alice = prosody.register_user("alice", "alice-pw").await;
    let mut client = XmppClient::login(&alice, "alice-pw", prosody.c2s_port());
    client.wait_online(TIMEOUT).await;
    let jobs = PgDatabase::create().await;

    let dir = scratch_dir("secrets");
    let credentials = dir.path().join("credentials");
    fs::create_dir(&credentials).expect("mkdir credentials");
    fs::write(credentials.join("component-secret"), COMPONENT_SECRET).expect("credential");
    // PostgreSQL trusts 127.0.0.1 here, so any password logs in: it is only carried.
    fs::write(credentials.join("database-password"), DATABASE_PASSWORD).expect("credential");
    let password_file = dir.path().join("admin-password");
    fs::write(&password_file, format!("{ADMIN_PASSWORD}\n")).expect("password file");
    let admin_listen = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("component.toml");
    fs::write(
        &config,
        config_without_secrets(&prosody, &jobs.url(), &admin_listen, &password_file),
    )
    .expect("write config");
    let written = fs::read_to_string(&config).expect("read config");
    assert!(leaked_in(&written).is_empty(), "the config holds no secret");

    let with_credentials = |command: &mut Command| {
        command
            .env("CREDENTIALS_DIRECTORY", &credentials)
            .env("XMPP_BROADCAST_LOG", "debug");
    };
    let mut check = serve::command();
    with_credentials(&mut check);
    let output = check
        .args(["check-config", "--config", config.to_str().expect("UTF-8")])
        .output()
        .expect("run check-config");
    let checked = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{checked}");
    assert_no_secret("check-config", &checked);

    // A job database that refuses: the error names it without its password.
    let refusing = format!("postgres://postgres@127.0.0.1:{}/jobs", free_port());
    let mut check = serve::command();
    with_credentials(&mut check);
    let output = check
        .args(["check-config", "--config", config.to_str().expect("UTF-8")])
        .env("XMPP_BROADCAST_DATABASE_URL", &refusing)
        .output()
        .expect("run check-config");
    let refused = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{refused}");
    assert!(
        refused.contains("postgres://postgres@127.0.0.1"),
        "{refused}"
    );
    assert_no_secret("check-config's error", &refused);

    let log = LogFile::new(&dir.path().join("serve.log"), "xmpp-broadcast serve stderr");
    let mut command = serve::command();
    with_credentials(&mut command);
    let mut child = command
        .args(["serve", "--config", config.to_str().expect("UTF-8")])
        .stdin(Stdio::null())
        .stdout(log.append_handle())
        .stderr(log.append_handle())
        .spawn()
        .expect("spawn serve");
    let admin = Admin::new(&admin_listen, ADMIN_USER, ADMIN_PASSWORD);
    let deadline = Deadline::after(TIMEOUT, "serve to be healthy");
    loop {
        if let Some(health) = admin.health().await
            && health["status"] == "ok"
            && health["xmpp"] == "connected"
        {
            break;
        }
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "{}",
            log.contents()
        );
        deadline.tick().await;
    }

    // Every answer is checked by `Admin`: a broadcast, a failed login, a refused argument.
    let spec = BroadcastSpec::default();
    let id = admin.start_broadcast(&spec).await.expect("start");
    let message = client
        .next_message(TIMEOUT)
        .await
        .expect("the broadcast arrives");
    assert_eq!(message.body, spec.body);
    admin.wait_state(id, "FINISHED", TIMEOUT).await;
    let (status, _) = admin
        .post(
            "{ broadcast { getBroadcasts(domain: \"example.com\") { id } } }",
            json!({}),
            Auth::Basic(ADMIN_USER, COMPONENT_SECRET),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = admin
        .post(
            "{ broadcast { getBroadcast(domain: \"example.com\", id: -1) { id } } }",
            json!({}),
            Auth::Admin,
        )
        .await;
    assert!(status == 200 || status == 400, "{status}");
    admin.metrics().await;

    process::signal(child.id(), "TERM");
    let exit = process::wait_exit(&mut child, TIMEOUT, "serve").await;
    assert!(
        exit.success(),
        "serve stopped with {exit}: {}",
        log.contents()
    );
    let text = log.contents();
    assert!(text.lines().count() > 5, "a debug log: {text}");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line}"));
    }
    assert_no_secret("serve's debug log", &text);
}
