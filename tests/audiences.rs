//! Audiences on real servers with a real client: a list of accounts and named groups.
//!
//! 1. Prosody and ejabberd: a list naming 3 of 200 accounts (and two names that are not
//!    accounts, and a repeat) reaches exactly those 3 — an online client at once, the others'
//!    offline stores — and the job reports the unknown names; every bad audience is refused
//!    with its code and creates nothing.
//! 2. ejabberd's shared roster groups (`sr_user`, written by `ejabberdctl srg_user_add`) on
//!    PostgreSQL, MariaDB and SQLite, with the README's statements: a group job reaches
//!    exactly its members, and not a member added right after the start.
//! 3. In process (SQLite, the fake XEP-0114 server): a scheduled list keeps the accounts it
//!    named when it was scheduled; a scheduled group is read when it starts (a member added
//!    before its time is a recipient, one added after is not).
//! 4. Prosody on PostgreSQL with a group defined by a plain table of the operator's, and a
//!    list on Prosody's SQLite: `serve` is SIGKILLed in the middle of each job, restarted,
//!    and resumes it; every recipient got the message, nobody else did, repeats within one
//!    batch.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::Deadline;
use support::admin::{Admin, ApiError};
use support::app::{App, AppOptions};
use support::ejabberd::{Ejabberd, EjabberdStorage};
use support::mysql::MySqlDatabase;
use support::pg::PgDatabase;
use support::prosody::{DOMAIN, Prosody, ProsodyStorage};
use support::scenarios::{XmppServer, accounts_and_sender, assert_delivered, stored_by_recipient};
use support::serve::{JobStore, Serve, ServeConfig};
use support::stanza::{Announcement, message_id};
use support::xmpp_client::XmppClient;

const PASSWORD: &str = "pw";
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
const JOB_TIMEOUT: Duration = Duration::from_secs(120);
const SUBJECT: &str = "Audience";
const BODY: &str = "Only for some of you.";

const START: &str = "mutation Start($domain: DomainName!, $sender: BareJID!, $rate: PosInt!, \
    $recipientGroup: BroadcastRecipientGroup!, $recipients: [BareJID!], $group: String) { \
    broadcast { startBroadcast(name: \"audience\", domain: $domain, messageSubject: \"Audience\", \
    messageBody: \"Only for some of you.\", senderJid: $sender, messageRate: $rate, \
    recipientGroup: $recipientGroup, recipients: $recipients, group: $group) { message ids } } }";
const COUNT: &str = "query Count($domain: DomainName!, \
    $recipientGroup: BroadcastRecipientGroup!, $recipients: [BareJID!], $group: String) { \
    broadcast { countBroadcastRecipients(domain: $domain, sample: 10, \
    recipientGroup: $recipientGroup, recipients: $recipients, group: $group) \
    { recipientCount sample unknownRecipientCount unknownRecipients } } }";
const GET: &str = "query Get($domain: DomainName!, $id: Int!) { broadcast { \
    getBroadcast(domain: $domain, id: $id) { executionState recipientGroup group \
    recipientCount recipientsProcessed unknownRecipientCount unknownRecipients } } }";

/// Who a request names: `(recipientGroup, recipients, group)`.
fn audience(group: &str, recipients: Option<&[String]>, name: Option<&str>) -> Value {
    json!({
        "domain": DOMAIN,
        "recipientGroup": group,
        "recipients": recipients,
        "group": name,
    })
}

async fn start(
    admin: &Admin,
    sender: &str,
    rate: i64,
    mut variables: Value,
) -> Result<i64, ApiError> {
    variables["sender"] = json!(sender);
    variables["rate"] = json!(rate);
    let data = admin.graphql(START, variables).await?;
    Ok(data["broadcast"]["startBroadcast"]["ids"][0]
        .as_i64()
        .expect("an id"))
}

async fn job(admin: &Admin, id: i64) -> Value {
    let data = admin
        .graphql(GET, json!({ "domain": DOMAIN, "id": id }))
        .await
        .expect("getBroadcast");
    data["broadcast"]["getBroadcast"].clone()
}

fn announcement(job_id: i64, sender: &str) -> Announcement {
    Announcement {
        job_id,
        sender: sender.to_owned(),
        subject: SUBJECT.into(),
        body: BODY.into(),
    }
}

/// 1. A list of 3 of 200 accounts, with unknown names and a repeat.
async fn a_list_reaches_exactly_its_accounts(server: &impl XmppServer, jobs: JobStore) {
    let (accounts, sender) = accounts_and_sender(server, 199).await;
    let listed = [
        accounts[0].clone(),
        accounts[41].clone(),
        accounts[150].clone(),
    ];
    let mut online = XmppClient::login(&listed[0], PASSWORD, server.c2s_port());
    online.wait_online(LOGIN_TIMEOUT).await;
    let serve = Serve::start(server.serve_config(jobs)).await;
    let admin = serve.admin();
    let mut request: Vec<String> = listed.to_vec();
    request.push(format!("nobody@{DOMAIN}"));
    request.push(listed[1].clone());
    request.push(format!("ghost@{DOMAIN}"));

    let count = admin
        .graphql(COUNT, audience("LISTED", Some(&request), None))
        .await
        .expect("countBroadcastRecipients");
    let count = &count["broadcast"]["countBroadcastRecipients"];
    assert_eq!(count["recipientCount"], 3, "{count}");
    assert_eq!(count["unknownRecipientCount"], 2, "{count}");
    let sorted: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(count["sample"], json!(sorted), "{count}");

    let id = start(
        admin,
        &sender,
        100,
        audience("LISTED", Some(&request), None),
    )
    .await
    .expect("startBroadcast");
    admin.wait_state(id, "FINISHED", JOB_TIMEOUT).await;
    let done = job(admin, id).await;
    assert_eq!(
        done,
        json!({
            "executionState": "FINISHED",
            "recipientGroup": "LISTED",
            "group": null,
            "recipientCount": 3,
            "recipientsProcessed": 3,
            "unknownRecipientCount": 2,
            "unknownRecipients": [format!("ghost@{DOMAIN}"), format!("nobody@{DOMAIN}")],
        })
    );
    let message = online
        .next_message(LOGIN_TIMEOUT)
        .await
        .expect("the online listed account gets the message");
    assert_eq!(message.id, message_id(id, &listed[0]));
    assert_eq!(message.body, BODY);
    // Every other account's offline store: the two other listed accounts hold it once, the
    // 197 others nothing (the server had processed every message when the job finished).
    let stored = stored_by_recipient(server).await;
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        vec![&listed[1], &listed[2]],
        "{stored:?}"
    );
    for recipient in &listed[1..] {
        assert_eq!(stored[recipient].len(), 1, "{recipient}");
        server.assert_stored(&announcement(id, &sender), &stored[recipient][0], recipient);
    }

    // Bad audiences: each refused with its code, nothing created.
    let other_domain = vec![listed[0].clone(), "alice@example.org".to_owned()];
    let unknown_only = vec![format!("ghost@{DOMAIN}")];
    let refusals: Vec<(Value, &str, u16)> = vec![
        (
            audience("GROUP", None, Some("staff")),
            "group_not_found",
            200,
        ),
        (
            audience("LISTED", Some(&other_domain), None),
            "bad_parameter",
            200,
        ),
        (audience("LISTED", Some(&[]), None), "bad_parameter", 200),
        (audience("LISTED", None, None), "bad_parameter", 200),
        (
            audience("ALL_USERS_IN_DOMAIN", Some(&unknown_only), None),
            "bad_parameter",
            200,
        ),
        (
            audience("LISTED", Some(&unknown_only), None),
            "no_recipients",
            200,
        ),
        (
            audience("LISTED", Some(&["not a jid@".to_owned()]), None),
            "input_coercion",
            400,
        ),
        (
            audience("GROUP", None, Some("bad name")),
            "bad_parameter",
            200,
        ),
    ];
    for (variables, code, status) in refusals {
        let refused = start(admin, &sender, 100, variables.clone())
            .await
            .expect_err(code);
        assert_eq!(
            (refused.code.as_str(), refused.status),
            (code, status),
            "{variables}: {}",
            refused.message
        );
    }
    assert_eq!(
        admin.get_broadcasts(DOMAIN).await.len(),
        1,
        "nothing created"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_reaches_exactly_its_accounts_on_prosody() {
    let prosody = Prosody::start(ProsodyStorage::Sqlite).await;
    a_list_reaches_exactly_its_accounts(&prosody, JobStore::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_reaches_exactly_its_accounts_on_ejabberd() {
    let ejabberd = Ejabberd::start(EjabberdStorage::Postgres(PgDatabase::create().await)).await;
    a_list_reaches_exactly_its_accounts(&ejabberd, JobStore::Postgres(PgDatabase::create().await))
        .await;
}

/// The README's statement for a shared roster group `staff` of ejabberd's default schema
/// (PostgreSQL, SQLite): members of the group that are accounts of the domain.
const EJABBERD_STAFF: &str = "SELECT u.username FROM users u \
    JOIN sr_user g ON g.jid = u.username || '@' || $1 WHERE g.grp = 'staff'";
/// The same for ejabberd's `new_sql_schema` on MySQL/MariaDB.
const EJABBERD_NEW_STAFF_MYSQL: &str = "SELECT u.username FROM users u \
    JOIN sr_user g ON g.server_host = u.server_host AND g.jid = CONCAT(u.username, '@', $1) \
    WHERE u.server_host = $1 AND g.grp = 'staff'";

/// 2. A shared roster group: its members at the start, not one added after it.
async fn a_group_reaches_its_members(storage: EjabberdStorage, statement: &str, jobs: JobStore) {
    let ejabberd = Ejabberd::start(storage).await;
    let (accounts, sender) = accounts_and_sender(&ejabberd, 20).await;
    ejabberd.create_group("staff").await;
    let members = [&accounts[1], &accounts[3], &accounts[5]];
    for member in members {
        ejabberd.add_to_group(user(member), "staff").await;
    }
    let mut online = XmppClient::login(members[0], PASSWORD, ejabberd.c2s_port());
    online.wait_online(LOGIN_TIMEOUT).await;
    let mut config = ServeConfig::for_ejabberd(&ejabberd, jobs);
    config.groups = vec![("staff".into(), statement.into())];
    let serve = Serve::start(config).await;
    let admin = serve.admin();
    let group = || audience("GROUP", None, Some("staff"));

    let count = admin.graphql(COUNT, group()).await.expect("count");
    assert_eq!(
        count["broadcast"]["countBroadcastRecipients"]["recipientCount"], 3,
        "{count}"
    );
    // One message a second: the job still runs when the next member is added.
    let id = start(admin, &sender, 1, group()).await.expect("start");
    let late = &accounts[7];
    ejabberd.add_to_group(user(late), "staff").await;
    let running = job(admin, id).await;
    assert_eq!(running["executionState"], "RUNNING", "{running}");
    admin.wait_state(id, "FINISHED", JOB_TIMEOUT).await;
    let done = job(admin, id).await;
    assert_eq!(
        (
            &done["recipientGroup"],
            &done["group"],
            &done["recipientCount"],
            &done["unknownRecipientCount"]
        ),
        (&json!("GROUP"), &json!("staff"), &json!(3), &Value::Null),
        "{done}"
    );
    let message = online.next_message(LOGIN_TIMEOUT).await.expect("live");
    assert_eq!(message.id, message_id(id, members[0]));
    let stored = stored_by_recipient(&ejabberd).await;
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        vec![members[1], members[2]],
        "only the members at the start, {late} added after it excluded: {stored:?}"
    );
    // The member added late is in the group now: a new job reaches four.
    let count = admin.graphql(COUNT, group()).await.expect("count");
    assert_eq!(
        count["broadcast"]["countBroadcastRecipients"]["recipientCount"], 4,
        "{count}"
    );
}

fn user(jid: &str) -> &str {
    jid.split('@').next().expect("a local part")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ejabberd_group_on_postgres() {
    let storage = EjabberdStorage::Postgres(PgDatabase::create().await);
    a_group_reaches_its_members(storage, EJABBERD_STAFF, JobStore::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ejabberd_group_on_mariadb() {
    let storage = EjabberdStorage::MariaDbNew(MySqlDatabase::create().await);
    let jobs = JobStore::MySql(MySqlDatabase::create().await);
    a_group_reaches_its_members(storage, EJABBERD_NEW_STAFF_MYSQL, jobs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ejabberd_group_on_sqlite() {
    a_group_reaches_its_members(EjabberdStorage::Sqlite, EJABBERD_STAFF, JobStore::Sqlite).await;
}

const START_AT: &str = "mutation Start($domain: DomainName!, $recipientGroup: \
    BroadcastRecipientGroup!, $recipients: [BareJID!], $group: String, $at: DateTime) { \
    broadcast { startBroadcast(name: \"later\", domain: $domain, messageSubject: \"\", \
    messageBody: \"b\", senderJid: \"admin@example.com\", messageRate: 100, \
    recipientGroup: $recipientGroup, recipients: $recipients, group: $group, startAt: $at) \
    { message ids } } }";

/// 3. Scheduled lists and groups, in process.
#[tokio::test(flavor = "multi_thread")]
async fn scheduled_lists_and_groups_fix_their_recipients() {
    let mut options = AppOptions::one_domain(DOMAIN, 10);
    options.users_sql = vec![
        "CREATE TABLE staff (username TEXT NOT NULL)".into(),
        "INSERT INTO staff VALUES ('u0001'), ('u0003')".into(),
    ];
    options.groups = vec![(
        DOMAIN.into(),
        "staff".into(),
        "SELECT s.username FROM staff s WHERE EXISTS (SELECT 1 FROM prosody p \
         WHERE p.host = $1 AND p.user = s.username AND p.store = 'accounts')"
            .into(),
    )];
    let app = App::start(options).await;
    let admin = app.admin();
    let in_two_seconds = || {
        (chrono::Utc::now() + chrono::TimeDelta::seconds(2))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let jid = |user: &str| format!("{user}@{DOMAIN}");

    // A list: u0002 and u0004 (and a name that is not an account), checked now.
    let mut list = audience(
        "LISTED",
        Some(&[jid("u0002"), jid("u0004"), jid("ghost")]),
        None,
    );
    list["at"] = json!(in_two_seconds());
    let data = admin.graphql(START_AT, list).await.expect("scheduled");
    let listed = data["broadcast"]["startBroadcast"]["ids"][0]
        .as_i64()
        .unwrap();
    let scheduled = job(admin, listed).await;
    assert_eq!(
        (
            &scheduled["recipientCount"],
            &scheduled["unknownRecipientCount"]
        ),
        (&json!(2), &json!(1)),
        "{scheduled}"
    );
    // An account registered after the list was scheduled is not on it, even if named.
    app.register(DOMAIN, "ghost").await;
    admin.wait_state(listed, "FINISHED", JOB_TIMEOUT).await;
    let done = job(admin, listed).await;
    assert_eq!(done["recipientsProcessed"], 2, "{done}");
    for (user, expected) in [("u0002", 1), ("u0004", 1), ("ghost", 0), ("u0001", 0)] {
        assert_eq!(app.messages_to(&jid(user)), expected, "{user}");
    }

    // A group: its members when its time comes.
    let mut group = audience("GROUP", None, Some("staff"));
    group["at"] = json!(in_two_seconds());
    let data = admin.graphql(START_AT, group).await.expect("scheduled");
    let grouped = data["broadcast"]["startBroadcast"]["ids"][0]
        .as_i64()
        .unwrap();
    assert_eq!(job(admin, grouped).await["recipientCount"], 2);
    app.users_sql("INSERT INTO staff VALUES ('u0005')").await;
    admin.wait_state(grouped, "FINISHED", JOB_TIMEOUT).await;
    app.users_sql("INSERT INTO staff VALUES ('u0006')").await;
    let done = job(admin, grouped).await;
    assert_eq!(
        (
            &done["recipientCount"],
            &done["recipientsProcessed"],
            &done["group"]
        ),
        (&json!(3), &json!(3), &json!("staff")),
        "{done}"
    );
    for (user, expected) in [("u0001", 1), ("u0003", 1), ("u0005", 1), ("u0006", 0)] {
        assert_eq!(app.messages_to(&jid(user)), expected, "{user}");
    }
}

/// Messages a second of the jobs killed half-way: a batch is 200 recipients.
const SLOW: i64 = 20;
const BATCH: usize = 200;

/// Kills `serve` once the first batch of job `id` is committed and part of the second has
/// reached the server, restarts it, and waits for the job to finish; checks that exactly
/// `recipients` hold the message, with at most one batch of repeats.
async fn kill_and_resume(
    server: &impl XmppServer,
    serve: &mut Serve,
    id: i64,
    sender: &str,
    recipients: &[String],
) {
    serve
        .admin()
        .wait_processed(id, BATCH as i64, JOB_TIMEOUT)
        .await;
    let deadline = Deadline::after(Duration::from_secs(30), "part of the second batch");
    while server.offline_messages().await.len() < BATCH + BATCH / 4 {
        deadline.tick().await;
    }
    serve.sigkill();
    serve.restart().await;
    let done = serve.admin().wait_state(id, "FINISHED", JOB_TIMEOUT).await;
    assert_eq!(done["recipientsProcessed"], recipients.len(), "{done}");
    let repeats = assert_delivered(server, &announcement(id, sender), recipients).await;
    assert!(repeats <= BATCH, "{repeats} repeats, more than one batch");
}

/// 3a. A list of 300 of 400 Prosody accounts (SQLite), killed half-way.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_list_job_resumes() {
    let prosody = Prosody::start(ProsodyStorage::Sqlite).await;
    let (accounts, sender) = accounts_and_sender(&prosody, 399).await;
    // Three accounts of every four.
    let listed: Vec<String> = accounts
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 != 3)
        .map(|(_, jid)| jid.clone())
        .collect();
    assert_eq!(listed.len(), 300);
    let mut serve = Serve::start(ServeConfig::for_prosody(&prosody, JobStore::Sqlite)).await;
    let id = start(
        serve.admin(),
        &sender,
        SLOW,
        audience("LISTED", Some(&listed), None),
    )
    .await
    .expect("start");
    kill_and_resume(&prosody, &mut serve, id, &sender, &listed).await;
}

/// The README's group of a plain table of the operator's, `broadcast_groups(grp, username)`,
/// here in Prosody's PostgreSQL database: the members that are accounts of the domain.
const PLAIN_TABLE_GROUP: &str = "SELECT g.username FROM broadcast_groups g \
    WHERE g.grp = 'customers' AND EXISTS (SELECT 1 FROM prosody p WHERE p.host = $1 \
    AND p.\"user\" = g.username AND p.store = 'accounts')";

/// 3b. A group of 300 of 400 Prosody accounts (PostgreSQL) from a plain table, killed
///     half-way; a name in the table that is not an account is not sent to.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_group_job_resumes() {
    let users = PgDatabase::create().await;
    let users_url = users.url();
    let prosody = Prosody::start(ProsodyStorage::Postgres(users)).await;
    let (accounts, sender) = accounts_and_sender(&prosody, 399).await;
    let members: Vec<String> = accounts.iter().skip(100).cloned().collect();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&users_url)
        .await
        .expect("connect");
    sqlx::query("CREATE TABLE broadcast_groups (grp text NOT NULL, username text NOT NULL)")
        .execute(&mut conn)
        .await
        .expect("create");
    let names: Vec<&str> = members
        .iter()
        .map(|jid| user(jid))
        .chain(["not-an-account"])
        .collect();
    sqlx::query("INSERT INTO broadcast_groups SELECT 'customers', unnest($1::text[])")
        .bind(&names)
        .execute(&mut conn)
        .await
        .expect("insert");
    let mut config = ServeConfig::for_prosody(&prosody, JobStore::Sqlite);
    config.groups = vec![("customers".into(), PLAIN_TABLE_GROUP.into())];
    let mut serve = Serve::start(config).await;
    let id = start(
        serve.admin(),
        &sender,
        SLOW,
        audience("GROUP", None, Some("customers")),
    )
    .await
    .expect("start");
    kill_and_resume(&prosody, &mut serve, id, &sender, &members).await;
}
