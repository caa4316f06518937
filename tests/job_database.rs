//! An instance started while its job database cannot be used serves at once and recovers by
//! itself, as MongooseIM does in its emergency mode: `/health` says the job database is down,
//! `/metrics` has `xmpp_broadcast_job_database_up 0`, every operation on jobs answers
//! `temporarily_unavailable` at once (not after the pool's 10 s acquire timeout), and
//! `countBroadcastRecipients`, which needs only the users database, works. When the database
//! answers, the instance migrates it, resumes its own jobs and runs new ones.
//!
//! In process (the fake XEP-0114 server): a SQLite job database whose directory is missing at
//! start (a job of the instance's earlier life resumes when it appears), and a PostgreSQL one
//! behind a proxy that refuses, then forwards. End to end: the `serve` binary on a real
//! Prosody, its PostgreSQL job database behind the refusing proxy, a real client receiving the
//! message of a job started after the database came back; the cause is logged once.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use support::admin::{Admin, BroadcastSpec};
use support::app::{App, AppOptions};
use support::pg::PgDatabase;
use support::prosody::{DOMAIN, Prosody, ProsodyStorage};
use support::proxy::TcpProxy;
use support::scenarios::stored_by_recipient;
use support::serve::{JobStore, Serve, ServeConfig};
use support::stanza::message_id;
use support::xmpp_client::XmppClient;
use support::{Deadline, free_port};

/// The gauge that says whether the job database is usable.
const DATABASE_UP: &str = "xmpp_broadcast_job_database_up";
/// An operation refused for want of the job database is answered within this: far below the
/// pool's acquire timeout (10 s), which a query on an unreached database would wait out.
const AT_ONCE: Duration = Duration::from_secs(2);
/// How long an instance may take to use its job database once it answers: the pause between
/// attempts grows to 10 s at most.
const RECOVERY: Duration = Duration::from_secs(20);
const JOB_TIMEOUT: Duration = Duration::from_secs(30);
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
/// The PostgreSQL server the proxies forward to.
const POSTGRES: &str = "127.0.0.1:5432";
/// Accounts of [`DOMAIN`] besides the sender `admin`.
const USERS: usize = 3;
const PASSWORD: &str = "pw";
/// What `serve` logs (error) for each distinct failure to use its job database.
const NOT_USABLE: &str = "the job database is not usable";
/// What it logs (debug) when an attempt fails as the one before did.
const STILL_NOT_USABLE: &str = "the job database is still not usable";
/// `serve`'s log filter in the end-to-end test: the manager's debug lines show every attempt.
const LOG_ATTEMPTS: &str = "info,sqlx=warn,xmpp_broadcast::broadcast::manager=debug";

/// Every operation on jobs of [`DOMAIN`], each needing the job database: (name, query).
const JOB_OPERATIONS: [(&str, &str); 6] = [
    (
        "startBroadcast",
        "mutation { broadcast { startBroadcast(name: \"n\", domain: \"example.com\", \
         messageSubject: \"s\", messageBody: \"b\", senderJid: \"admin@example.com\", \
         messageRate: 100, recipientGroup: ALL_USERS_IN_DOMAIN) { ids } } }",
    ),
    (
        "getBroadcasts",
        "{ broadcast { getBroadcasts(domain: \"example.com\") { id } } }",
    ),
    (
        "getBroadcast",
        "{ broadcast { getBroadcast(domain: \"example.com\", id: 1) { id } } }",
    ),
    (
        "abortBroadcast",
        "mutation { broadcast { abortBroadcast(domain: \"example.com\", id: 1) { ids } } }",
    ),
    (
        "deleteInactiveBroadcastsByIds",
        "mutation { broadcast { deleteInactiveBroadcastsByIds(domain: \"example.com\", \
         ids: [1]) { ids } } }",
    ),
    (
        "deleteInactiveBroadcastsByDomain",
        "mutation { broadcast { deleteInactiveBroadcastsByDomain(domain: \"example.com\") \
         { ids } } }",
    ),
];

/// What an instance that has not reached its job database answers: `/health` degraded with the
/// database down (HTTP 200, the XMPP link connected), the gauge at 0, `temporarily_unavailable`
/// at once for every operation on jobs, and the recipient count of its `accounts`.
async fn assert_serves_without_job_database(admin: &Admin, accounts: usize) {
    let health = admin.health().await.expect("/health answers");
    assert_eq!(
        (health["status"].as_str(), health["job_database"].as_str()),
        (Some("degraded"), Some("down")),
        "/health: {health}"
    );
    assert_eq!(health["xmpp"], "connected", "/health: {health}");
    assert_eq!(admin.unlabelled_metric(DATABASE_UP).await, Some(0.0));
    for (name, query) in JOB_OPERATIONS {
        let began = Instant::now();
        let refused = admin.graphql(query, json!({})).await;
        let took = began.elapsed();
        let err = refused.expect_err(name);
        assert_eq!(
            (err.status, err.code.as_str()),
            (200, "temporarily_unavailable"),
            "{name}: {err:?}"
        );
        assert!(took < AT_ONCE, "{name} was answered after {took:?}");
    }
    let count = admin
        .graphql(
            "{ broadcast { countBroadcastRecipients(domain: \"example.com\") \
             { recipientCount } } }",
            json!({}),
        )
        .await
        .expect("countBroadcastRecipients needs only the users database");
    assert_eq!(
        count["broadcast"]["countBroadcastRecipients"]["recipientCount"], accounts,
        "{count}"
    );
}

/// Waits until the instance says its job database is usable: `/health` ok and up, the gauge 1.
async fn wait_recovered(admin: &Admin) {
    let deadline = Deadline::after(RECOVERY, "the job database to be up");
    loop {
        let health = admin.health().await.expect("/health answers");
        if health["job_database"] == "up" {
            assert_eq!(health["status"], "ok", "/health: {health}");
            break;
        }
        deadline.tick().await;
    }
    assert_eq!(admin.unlabelled_metric(DATABASE_UP).await, Some(1.0));
}

/// A broadcast of [`DOMAIN`] from `admin` at `rate` messages a second.
fn spec(name: &str, rate: i64) -> BroadcastSpec {
    BroadcastSpec {
        name: name.into(),
        rate,
        ..BroadcastSpec::default()
    }
}

/// Starts a job on the in-process instance, waits until it is FINISHED and checks that the
/// fake server got its message for every account.
async fn run_job_to_the_end(app: &App) {
    let admin = app.admin();
    let id = admin
        .start_broadcast(&spec("after recovery", 1000))
        .await
        .expect("startBroadcast once the job database is up");
    let job = admin.wait_state(id, "FINISHED", JOB_TIMEOUT).await;
    assert_eq!(job["recipientsProcessed"], USERS + 1, "{job}");
    assert_every_account_reached(app);
}

/// The fake server got at least one message for each account of [`DOMAIN`].
fn assert_every_account_reached(app: &App) {
    for user in support::app::accounts("u", USERS) {
        let jid = format!("{user}@{DOMAIN}");
        assert!(app.messages_to(&jid) >= 1, "nothing sent to {jid}");
    }
}

/// A SQLite job database whose directory does not exist at start: the instance serves without
/// it, and once the directory appears it migrates the database, resumes the job its earlier
/// life left running (a missing directory and a database of one's own, not a new one) and runs
/// a new job.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_job_database_whose_directory_appears_later() {
    let scratch = support::scratch_dir("jobs-later");
    let jobs = scratch.path().join("jobs");
    let away = scratch.path().join("jobs-away");
    std::fs::create_dir(&jobs).unwrap();
    let url = format!("sqlite://{}/jobs.db", jobs.display());
    // Each life has a users database of its own with the same accounts, named alike.
    let options = || {
        AppOptions::one_domain(DOMAIN, USERS)
            .with_jobs_url(&url)
            .with_users_database_id("users-of-both-lives")
    };

    // An earlier life of the instance stops in the middle of a slow job: it stays RUNNING,
    // owned by node1.
    let earlier = App::start(options()).await;
    let id = earlier
        .admin()
        .start_broadcast(&spec("left running", 1))
        .await
        .expect("startBroadcast");
    let deadline = Deadline::after(JOB_TIMEOUT, "the first message");
    while earlier.server.message_count() == 0 {
        deadline.tick().await;
    }
    earlier.stop().await.expect("a clean stop");

    std::fs::rename(&jobs, &away).unwrap();
    let app = App::launch(options()).await;
    assert_serves_without_job_database(app.admin(), USERS + 1).await;
    std::fs::rename(&away, &jobs).unwrap();
    wait_recovered(app.admin()).await;

    let job = app.admin().wait_state(id, "FINISHED", JOB_TIMEOUT).await;
    assert_eq!(job["recipientsProcessed"], USERS + 1, "{job}");
    assert_every_account_reached(&app);
    run_job_to_the_end(&app).await;
    app.stop().await.expect("a clean stop");
}

/// A PostgreSQL job database that refuses connections at start and later answers.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_job_database_that_refuses_then_answers() {
    let database = PgDatabase::create().await;
    let proxy = TcpProxy::start(POSTGRES.parse().unwrap()).await;
    proxy.cut();
    let url = format!(
        "postgres://postgres@{}/{}",
        proxy.address(),
        database.name()
    );
    let app = App::launch(AppOptions::one_domain(DOMAIN, USERS).with_jobs_url(&url)).await;
    assert_serves_without_job_database(app.admin(), USERS + 1).await;
    proxy.restore();
    wait_recovered(app.admin()).await;
    run_job_to_the_end(&app).await;
    app.stop().await.expect("a clean stop");
}

/// The end-to-end case: `serve` started while its PostgreSQL job database is
/// unreachable (nothing listens at its port) answers `/health` and `temporarily_unavailable`
/// at once, logs the cause once (not at every attempt), and runs a job started after the
/// database came back (a proxy to PostgreSQL opened at that port): a real client on a real
/// Prosody receives the message, the other accounts hold it offline.
#[tokio::test(flavor = "multi_thread")]
async fn serve_started_without_its_job_database_recovers_on_prosody() {
    let prosody = Prosody::start(ProsodyStorage::Sqlite).await;
    let mut recipients = prosody.register_users("u", USERS, PASSWORD).await;
    let sender = prosody.register_user("admin", PASSWORD).await;
    recipients.push(sender.clone());
    let online_user = recipients[0].clone();
    let mut online = XmppClient::login(&online_user, PASSWORD, prosody.c2s_port());
    online.wait_online(LOGIN_TIMEOUT).await;

    let database = PgDatabase::create().await;
    let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let url = format!("postgres://postgres@{address}/{}", database.name());
    let config = ServeConfig::for_prosody(&prosody, JobStore::Shared(url));
    let mut serve = Serve::launch(config, LOG_ATTEMPTS).await;
    assert_serves_without_job_database(serve.admin(), recipients.len()).await;
    // A second attempt failed as the first did: its failure is not logged again as an error.
    let deadline = Deadline::after(RECOVERY, "a second attempt to reach the job database");
    while !serve.log().contains(STILL_NOT_USABLE) {
        deadline.tick().await;
    }
    let log = serve.log();
    let failures: Vec<&str> = log.lines().filter(|l| l.contains(NOT_USABLE)).collect();
    let cause = format!(
        "error=cannot connect to the job database at postgres://postgres@{address}/{} \
         (database.url): Connection refused",
        database.name()
    );
    assert_eq!(failures.len(), 1, "not one failure logged:\n{log}");
    assert!(
        failures[0].contains(" ERROR ") && failures[0].contains(&cause),
        "{cause} not in {log}"
    );

    let _database_back = TcpProxy::start_at(address, POSTGRES.parse().unwrap()).await;
    wait_recovered(serve.admin()).await;

    let spec = BroadcastSpec {
        sender: sender.clone(),
        ..spec("after recovery", 100)
    };
    let id = serve
        .admin()
        .start_broadcast(&spec)
        .await
        .expect("startBroadcast once the job database is up");
    let job = serve.admin().wait_state(id, "FINISHED", JOB_TIMEOUT).await;
    assert_eq!(job["recipientsProcessed"], recipients.len(), "{job}");

    let live = online
        .next_message(LOGIN_TIMEOUT)
        .await
        .expect("the online user gets the message");
    assert_eq!(live.id, message_id(id, &online_user));
    assert_eq!(
        (live.from.as_str(), live.body.as_str()),
        (sender.as_str(), spec.body.as_str())
    );
    let stored = stored_by_recipient(&prosody).await;
    for recipient in &recipients[1..] {
        let messages = stored.get(recipient).map(Vec::len).unwrap_or_default();
        assert_eq!(messages, 1, "offline messages of {recipient}");
    }
    assert!(serve.sigterm().await.success(), "serve stops cleanly");
}
