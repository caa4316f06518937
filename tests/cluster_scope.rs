//! Each instance runs only what it serves (design invariant 7a), with real processes: `serve`
//! instances on one real Prosody that hosts example.com and example.org, sharing a job database
//! (PostgreSQL or MariaDB), each with its own `[domains]` and users database, and a real client.
//!
//! 1. Disjoint domains, MongooseIM schema: A serves example.com (its users database), B serves
//!    example.org (another users database). A is killed in the middle of a job: B sends nothing
//!    of it and never finishes it (before, it paged *its* users database and marked the job
//!    FINISHED for recipients it never reached); the job waits, visible and counted; a third
//!    instance C serving example.com takes it over and every user is reached.
//! 2. Prosody schema: with no other instance for example.com, the job waits (the API says why,
//!    the metric counts it, B's log warns) and finishes once A is back.
//! 3. A domain removed from the config: after the restart its running job stops, is listed, and
//!    the global admin aborts and deletes it.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use support::Deadline;
use support::admin::{Admin, BroadcastSpec};
use support::mysql::MySqlDatabase;
use support::pg::PgDatabase;
use support::prosody::{DOMAIN, OTHER_DOMAIN, Prosody, ProsodyStorage};
use support::proxy::TcpProxy;
use support::scenarios::assert_delivered;
use support::serve::{JobStore, Serve, ServeConfig};
use support::stanza::{Announcement, message_id};
use support::xmpp_client::XmppClient;

/// The lease time of every instance: the minimum `serve` accepts.
const LEASE_TIME: u64 = 10;
/// Messages per second: low, so that a job is in the middle when its owner is killed.
const RATE: i64 = 10;
/// Accounts of each domain besides its sender `admin`: fewer than a batch (rate × 10), so a
/// killed owner has committed nothing and its successor sends them all again.
const ACCOUNTS: usize = 59;
/// The password of every account.
const PASSWORD: &str = "pw";
/// How many messages the owner sends before it is killed or restarted.
const SENT_BEFORE_FAULT: usize = 15;
/// The longest a lease can take to expire after its owner died, plus a renewal round of
/// another instance (a third of the lease time, jittered by a fifth) and slack.
const EXPIRY_AND_ROUND: Duration = Duration::from_secs(LEASE_TIME + 4 + 6);
/// What counts one message stanza in the bytes an instance sent to Prosody.
const MESSAGE: &str = "<message";

/// The job database the instances share.
enum Jobs {
    Postgres(PgDatabase),
    MariaDb(MySqlDatabase),
}

impl Jobs {
    fn url(&self) -> String {
        match self {
            Jobs::Postgres(db) => db.url(),
            Jobs::MariaDb(db) => db.url(),
        }
    }
}

/// Prosody with example.com and example.org, their accounts, and the shared job database.
struct World {
    prosody: Prosody,
    jobs: Jobs,
    /// Every account of example.com (`u0001`.. and `admin`).
    com: Vec<String>,
    /// Every account of example.org (`o0001`.. and `admin`).
    org: Vec<String>,
}

impl World {
    async fn new(jobs: Jobs, instances: usize) -> Self {
        let components: Vec<String> = (1..=instances)
            .map(|i| format!("broadcast{i}.{DOMAIN}"))
            .collect();
        let components: Vec<&str> = components.iter().map(String::as_str).collect();
        let prosody = Prosody::start_with_components(ProsodyStorage::Sqlite, &components).await;
        let (mut com, com_admin, mut org, org_admin) = tokio::join!(
            prosody.register_users_at(DOMAIN, "u", ACCOUNTS, PASSWORD),
            prosody.register_user_at(DOMAIN, "admin", PASSWORD),
            prosody.register_users_at(OTHER_DOMAIN, "o", ACCOUNTS, PASSWORD),
            prosody.register_user_at(OTHER_DOMAIN, "admin", PASSWORD),
        );
        com.push(com_admin);
        org.push(org_admin);
        World {
            prosody,
            jobs,
            com,
            org,
        }
    }

    /// An instance named `node{n}` with the component `broadcast{n}.example.com` (reached
    /// through the recording `proxy`), serving `domains`, reading Prosody's own database.
    fn config(&self, n: usize, proxy: &TcpProxy, domains: &[&str]) -> ServeConfig {
        let mut config = ServeConfig::for_prosody(&self.prosody, JobStore::Shared(self.jobs.url()));
        config.node_name = format!("node{n}");
        config.lease_time = LEASE_TIME;
        config.component_jid = format!("broadcast{n}.{DOMAIN}");
        config.component_server = proxy.address().to_string();
        config.domains = domains.iter().map(|domain| domain.to_string()).collect();
        config
    }

    /// A recording proxy in front of Prosody's component port.
    async fn proxy(&self) -> TcpProxy {
        TcpProxy::start_recording(self.prosody.component_addr().parse().expect("address")).await
    }

    /// A slow job of `domain` sent by its `admin`.
    fn spec(domain: &str, name: &str) -> BroadcastSpec {
        BroadcastSpec {
            name: name.into(),
            domain: domain.into(),
            sender: format!("admin@{domain}"),
            rate: RATE,
            ..BroadcastSpec::default()
        }
    }
}

fn announcement(id: i64, spec: &BroadcastSpec) -> Announcement {
    Announcement {
        job_id: id,
        sender: spec.sender.clone(),
        subject: spec.subject.clone(),
        body: spec.body.clone(),
    }
}

/// A fresh PostgreSQL database with MongooseIM's `users` table holding `accounts` (bare JIDs),
/// created an hour ago.
async fn mongooseim_users(accounts: &[String]) -> PgDatabase {
    let db = PgDatabase::create().await;
    let mut conn = PgConnection::connect(&db.url()).await.expect("connect");
    sqlx::query(
        "CREATE TABLE users (username varchar(250), server varchar(250), \
         \"password\" text NOT NULL, pass_details text, \
         created_at TIMESTAMP NOT NULL DEFAULT now(), PRIMARY KEY (server, username))",
    )
    .execute(&mut conn)
    .await
    .expect("create users");
    for jid in accounts {
        let (user, server) = jid.split_once('@').expect("bare JID");
        sqlx::query(
            "INSERT INTO users (username, server, \"password\", created_at) \
             VALUES ($1, $2, 'x', now() - interval '1 hour')",
        )
        .bind(user)
        .bind(server)
        .execute(&mut conn)
        .await
        .expect("insert user");
    }
    conn.close().await.ok();
    db
}

/// Job `id` of `domain` through `admin` (the global admin), with why it waits.
async fn job(admin: &Admin, domain: &str, id: i64) -> Value {
    let query = "query Get($domain: DomainName!, $id: Int!) { broadcast { \
                 getBroadcast(domain: $domain, id: $id) { id executionState ownerNode \
                 recipientCount recipientsProcessed waitingReason } } }";
    let data = admin
        .graphql(query, json!({ "domain": domain, "id": id }))
        .await
        .unwrap_or_else(|e| panic!("getBroadcast {id}: {e:?}"));
    data["broadcast"]["getBroadcast"].clone()
}

/// Polls until `condition` holds for job `id` as `admin` sees it; returns the job.
async fn wait_job(
    admin: &Admin,
    domain: &str,
    id: i64,
    timeout: Duration,
    what: &str,
    condition: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Deadline::after(timeout, format!("job {id}: {what}"));
    loop {
        let job = job(admin, domain, id).await;
        if condition(&job) {
            return job;
        }
        deadline.tick().await;
    }
}

/// Polls until the proxy has carried at least `count` messages.
async fn wait_sent(proxy: &TcpProxy, count: usize) {
    let deadline = Deadline::after(Duration::from_secs(30), format!("{count} messages sent"));
    while proxy.sent_count(MESSAGE) < count {
        deadline.tick().await;
    }
}

/// Polls until `admin`'s `xmpp_broadcast_waiting_jobs` of `domain` is `count` (`None`: no
/// series, as for a domain the instance does not serve once nothing of it waits).
async fn wait_waiting_metric(admin: &Admin, domain: &str, count: Option<f64>, timeout: Duration) {
    let deadline = Deadline::after(timeout, format!("{count:?} waiting jobs of {domain}"));
    while admin.metric("xmpp_broadcast_waiting_jobs", domain).await != count {
        deadline.tick().await;
    }
}

/// Waits until the job is FINISHED with every recipient processed, as `admin` sees it.
async fn wait_finished(admin: &Admin, domain: &str, id: i64, recipients: usize) -> Value {
    let job = wait_job(
        admin,
        domain,
        id,
        Duration::from_secs(60),
        "FINISHED",
        |job| {
            let state = job["executionState"].as_str().unwrap_or_default();
            assert!(matches!(state, "RUNNING" | "FINISHED"), "{job}");
            state == "FINISHED"
        },
    )
    .await;
    assert_eq!(job["recipientCount"], recipients, "{job}");
    assert_eq!(job["recipientsProcessed"], recipients, "{job}");
    job
}

/// 1. MongooseIM schema, PostgreSQL job database: the instance of the other domain sends
///    nothing of the job and never finishes it; a third instance of the job's domain takes it
///    over and every user is reached, the online client included.
#[tokio::test(flavor = "multi_thread")]
async fn another_domains_instance_leaves_the_job_to_one_that_serves_it() {
    let world = World::new(Jobs::Postgres(PgDatabase::create().await), 3).await;
    let (com_users, org_users) =
        tokio::join!(mongooseim_users(&world.com), mongooseim_users(&world.org));
    let mongooseim = |mut config: ServeConfig, users: &PgDatabase| {
        config.users_url = users.url();
        config.users_schema = ("mongooseim", None);
        config
    };
    let (proxy_a, proxy_b, proxy_c) = tokio::join!(world.proxy(), world.proxy(), world.proxy());
    let mut a = Serve::start(mongooseim(world.config(1, &proxy_a, &[DOMAIN]), &com_users)).await;
    let b = Serve::start(mongooseim(
        world.config(2, &proxy_b, &[OTHER_DOMAIN]),
        &org_users,
    ))
    .await;

    let online = world.com[0].clone();
    let mut client = XmppClient::login(&online, PASSWORD, world.prosody.c2s_port());
    client.wait_online(Duration::from_secs(20)).await;
    let spec = World::spec(DOMAIN, "disjoint");
    let id = a
        .admin()
        .start_broadcast(&spec)
        .await
        .expect("startBroadcast");
    wait_sent(&proxy_a, SENT_BEFORE_FAULT).await;
    a.sigkill();
    let killed = Instant::now();

    // B sees the job expire and counts it, but does not take it.
    wait_waiting_metric(b.admin(), DOMAIN, Some(1.0), EXPIRY_AND_ROUND).await;
    let waiting = job(b.admin(), DOMAIN, id).await;
    assert_eq!(waiting["executionState"], "RUNNING", "{waiting}");
    assert_eq!(waiting["ownerNode"], "node1", "{waiting}");
    let reason = waiting["waitingReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("does not serve example.com") && reason.contains("mongooseim@postgresql:"),
        "{waiting}"
    );
    eprintln!(
        "job {id} counted as waiting by node2 {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );

    let c = Serve::start(mongooseim(world.config(3, &proxy_c, &[DOMAIN]), &com_users)).await;
    let finished = wait_finished(c.admin(), DOMAIN, id, world.com.len()).await;
    assert_eq!(finished["ownerNode"], "undefined", "{finished}");
    assert_eq!(
        proxy_b.sent_count(MESSAGE),
        0,
        "node2 sent messages of example.com"
    );
    assert!(proxy_c.sent_count(MESSAGE) >= world.com.len() - SENT_BEFORE_FAULT);

    let announcement = announcement(id, &spec);
    let expected = message_id(id, &online);
    let deadline = Deadline::after(Duration::from_secs(10), "the online client's message");
    let received = loop {
        let message = client
            .next_message(deadline.remaining())
            .await
            .expect("the online client got the message");
        if message.id == expected {
            break message;
        }
    };
    assert_eq!(
        (received.body.as_str(), received.from.as_str()),
        (spec.body.as_str(), spec.sender.as_str())
    );
    let offline: Vec<String> = world.com[1..].to_vec();
    let repeats = assert_delivered(&world.prosody, &announcement, &offline).await;
    eprintln!("job {id}: taken over by node3, every user reached, {repeats} repeats");
    wait_waiting_metric(b.admin(), DOMAIN, None, EXPIRY_AND_ROUND).await;
}

/// 2. Prosody schema, MariaDB job database: with no other instance for example.com the job
///    waits — the API says why, the metric counts it, the other domain's instance warns — and
///    it finishes with every user reached once its instance is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_nobody_may_run_waits_for_its_instance() {
    let world = World::new(Jobs::MariaDb(MySqlDatabase::create().await), 2).await;
    let (proxy_a, proxy_b) = tokio::join!(world.proxy(), world.proxy());
    let mut a = Serve::start(world.config(1, &proxy_a, &[DOMAIN])).await;
    let b = Serve::start(world.config(2, &proxy_b, &[OTHER_DOMAIN])).await;
    let spec = World::spec(DOMAIN, "nobody else");
    let id = a
        .admin()
        .start_broadcast(&spec)
        .await
        .expect("startBroadcast");
    wait_sent(&proxy_a, SENT_BEFORE_FAULT).await;
    a.sigkill();

    wait_waiting_metric(b.admin(), DOMAIN, Some(1.0), EXPIRY_AND_ROUND).await;
    // Warned once the job has waited a whole lease time.
    let deadline = Deadline::after(EXPIRY_AND_ROUND, "node2 to warn about the waiting job");
    while !b.log().contains("a running job waits") {
        deadline.tick().await;
    }
    let waiting = job(b.admin(), DOMAIN, id).await;
    assert_eq!(waiting["executionState"], "RUNNING", "{waiting}");
    let reason = waiting["waitingReason"].as_str().unwrap_or_default();
    assert!(reason.contains("does not serve example.com"), "{waiting}");
    assert!(
        b.log().contains(&format!("job_id={id}")),
        "the warning names the job:\n{}",
        b.log()
    );

    a.restart().await;
    wait_finished(a.admin(), DOMAIN, id, world.com.len()).await;
    assert_eq!(
        proxy_b.sent_count(MESSAGE),
        0,
        "node2 sent messages of example.com"
    );
    assert_delivered(&world.prosody, &announcement(id, &spec), &world.com).await;
    wait_waiting_metric(b.admin(), DOMAIN, None, EXPIRY_AND_ROUND).await;
}

/// 3. A domain removed from the config: its running job is not resumed after the restart,
///    waits visibly, and the global admin lists, aborts and deletes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_removed_domains_job_stops_and_the_global_admin_ends_it() {
    let world = World::new(Jobs::Postgres(PgDatabase::create().await), 1).await;
    let proxy = world.proxy().await;
    let mut a = Serve::start(world.config(1, &proxy, &[DOMAIN, OTHER_DOMAIN])).await;
    let spec = World::spec(OTHER_DOMAIN, "removed domain");
    let id = a
        .admin()
        .start_broadcast(&spec)
        .await
        .expect("startBroadcast");
    wait_sent(&proxy, SENT_BEFORE_FAULT).await;

    let config = std::fs::read_to_string(a.config_path()).expect("read config");
    let table = format!("[domains.{OTHER_DOMAIN:?}]");
    assert!(config.contains(&table), "{config}");
    std::fs::write(a.config_path(), config.replace(&table, "")).expect("write config");
    a.restart().await;
    let after_restart = proxy.sent_count(MESSAGE);

    let admin = a.admin();
    let listed = admin
        .graphql(
            "query List($domain: DomainName!) { broadcast { getBroadcasts(domain: $domain) \
             { id executionState ownerNode waitingReason } } }",
            json!({ "domain": OTHER_DOMAIN }),
        )
        .await
        .expect("the global admin lists the removed domain's jobs");
    let jobs = &listed["broadcast"]["getBroadcasts"];
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(
        (
            &jobs[0]["id"],
            &jobs[0]["executionState"],
            &jobs[0]["ownerNode"]
        ),
        (&json!(id), &json!("RUNNING"), &json!("undefined")),
        "{listed}"
    );
    let reason = jobs[0]["waitingReason"].as_str().unwrap_or_default();
    assert!(reason.contains("does not serve example.org"), "{listed}");
    wait_waiting_metric(admin, OTHER_DOMAIN, Some(1.0), EXPIRY_AND_ROUND).await;
    assert_eq!(
        proxy.sent_count(MESSAGE),
        after_restart,
        "messages of the removed domain were sent after the restart"
    );
    assert!(a.log().contains("not running a job of this instance's"));

    let aborted = admin
        .graphql(
            "mutation Abort($domain: DomainName!) { broadcast { \
             abortBroadcastsByDomain(domain: $domain) { message ids } } }",
            json!({ "domain": OTHER_DOMAIN }),
        )
        .await
        .expect("abortBroadcastsByDomain");
    assert_eq!(
        aborted["broadcast"]["abortBroadcastsByDomain"]["ids"],
        json!([id])
    );
    let ended = job(admin, OTHER_DOMAIN, id).await;
    assert_eq!(ended["executionState"], "ABORT_ADMIN", "{ended}");
    assert_eq!(ended["waitingReason"], Value::Null, "{ended}");
    let deleted = admin
        .graphql(
            "mutation Delete($domain: DomainName!) { broadcast { \
             deleteInactiveBroadcastsByDomain(domain: $domain) { ids } } }",
            json!({ "domain": OTHER_DOMAIN }),
        )
        .await
        .expect("deleteInactiveBroadcastsByDomain");
    assert_eq!(
        deleted["broadcast"]["deleteInactiveBroadcastsByDomain"]["ids"],
        json!([id])
    );
    // No job left and not configured: the domain is unknown again.
    let gone = admin
        .graphql(
            "query List($domain: DomainName!) { broadcast { getBroadcasts(domain: $domain) \
             { id } } }",
            json!({ "domain": OTHER_DOMAIN }),
        )
        .await
        .expect_err("an unknown domain");
    assert_eq!(gone.code, "domain_not_found");
    assert_eq!(proxy.sent_count(MESSAGE), after_restart);
    assert!(
        world.org.len() > after_restart,
        "the job was stopped in the middle"
    );
}
