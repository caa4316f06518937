//! The GraphQL admin API, operation by operation and error code by error code, with
//! MongooseIM's messages, codes, context keys and HTTP statuses (mongooseim-broadcast.md §5):
//! start, get, list (newest first, paged), abort (a running job stops sending: the XMPP server
//! receives nothing more), delete by ids and by domain, 400 for requests that cannot run, 401
//! for missing or wrong credentials, and domain admins, who may do everything on their own
//! domain and nothing on another.
//!
//! Each test runs a whole instance in process ([`support::app::App`]: jobs in SQLite, users in
//! a Prosody-layout SQLite database, the in-process XEP-0114 server) serving `example.com`,
//! `example.org` and `empty.example.net` (no accounts), so each can run alone and in
//! parallel. Delivery to real clients through Prosody and ejabberd is proven by the
//! end-to-end tests.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::Deadline;
use support::admin::{
    Admin, Auth, BroadcastSpec, START_BROADCAST, START_BROADCAST_AT, START_BROADCAST_ONCE,
    assert_timestamp,
};
use support::app::{App, AppOptions};
use support::prosody::{DOMAIN, OTHER_DOMAIN};
use support::serve::{ADMIN_PASSWORD, ADMIN_USER};

/// A configured domain without any account.
const EMPTY_DOMAIN: &str = "empty.example.net";
/// A domain the instance does not serve.
const UNKNOWN_DOMAIN: &str = "unknown.example.net";
/// A job id that does not exist.
const UNKNOWN_ID: i64 = 999_999;
/// Accounts of `example.com`: `u0001`..`u0019` and the sender `admin`.
const USERS: i64 = 20;
/// A user password (not any admin's).
const PASSWORD: &str = "pw";
const DOMAIN_ADMIN: &str = "admin@example.com";
const DOMAIN_ADMIN_PASSWORD: &str = "domain-admin-pw";
/// A job at this rate sends its 20 messages in one go and finishes within a moment.
const FAST: i64 = 1000;
/// A job at this rate is still running 20 seconds after it started: long enough to abort it.
const SLOW: i64 = 1;
/// How long a fast job may take to finish.
const JOB_TIMEOUT: Duration = Duration::from_secs(20);
const NODE: &str = "node1";

const GET: &str = "query Get($domain: DomainName!, $id: Int!) { broadcast { \
    getBroadcast(domain: $domain, id: $id) { id name domain messageSubject messageBody senderJid \
    messageRate ownerNode createTimestamp startTimestamp stopTimestamp executionState \
    abortionReason recipientGroup recipientCount recipientsProcessed } } }";
const LIST: &str = "query List($domain: DomainName!, $limit: PosInt, $index: NonNegInt) { \
    broadcast { getBroadcasts(domain: $domain, limit: $limit, index: $index) \
    { id executionState } } }";
const ABORT: &str = "mutation Abort($domain: DomainName!, $id: Int!) { broadcast { \
    abortBroadcast(domain: $domain, id: $id) { message ids } } }";
const DELETE_BY_IDS: &str = "mutation DeleteByIds($domain: DomainName!, $ids: [Int!]!) { \
    broadcast { deleteInactiveBroadcastsByIds(domain: $domain, ids: $ids) { message ids } } }";
const DELETE_BY_DOMAIN: &str = "mutation DeleteByDomain($domain: DomainName!) { broadcast { \
    deleteInactiveBroadcastsByDomain(domain: $domain) { message ids } } }";

/// One GraphQL operation of the `broadcast` category, with its arguments.
#[derive(Clone, Debug)]
struct Call {
    /// The field under `broadcast`.
    field: &'static str,
    /// The name of the operation in `query`.
    operation: &'static str,
    query: &'static str,
    variables: Value,
}

fn get(domain: &str, id: i64) -> Call {
    Call {
        field: "getBroadcast",
        operation: "Get",
        query: GET,
        variables: json!({ "domain": domain, "id": id }),
    }
}

fn list(domain: &str, limit: Option<i64>, index: Option<i64>) -> Call {
    Call {
        field: "getBroadcasts",
        operation: "List",
        query: LIST,
        variables: json!({ "domain": domain, "limit": limit, "index": index }),
    }
}

fn abort(domain: &str, id: i64) -> Call {
    Call {
        field: "abortBroadcast",
        operation: "Abort",
        query: ABORT,
        variables: json!({ "domain": domain, "id": id }),
    }
}

fn delete_by_ids(domain: &str, ids: &[i64]) -> Call {
    Call {
        field: "deleteInactiveBroadcastsByIds",
        operation: "DeleteByIds",
        query: DELETE_BY_IDS,
        variables: json!({ "domain": domain, "ids": ids }),
    }
}

fn delete_by_domain(domain: &str) -> Call {
    Call {
        field: "deleteInactiveBroadcastsByDomain",
        operation: "DeleteByDomain",
        query: DELETE_BY_DOMAIN,
        variables: json!({ "domain": domain }),
    }
}

/// `startBroadcast` of `spec` with the idempotency key `key`.
fn start_once(spec: &BroadcastSpec, key: &str) -> Call {
    Call {
        field: "startBroadcast",
        operation: "Start",
        query: START_BROADCAST_ONCE,
        variables: spec.variables_with_key(key),
    }
}

const CORRECT_ONCE: &str = "mutation Correct($domain: DomainName!, $id: Int!, \
    $subject: String!, $body: String!, $rate: PosInt!, $key: String) { broadcast { \
    correctBroadcast(domain: $domain, id: $id, messageSubject: $subject, messageBody: $body, \
    messageRate: $rate, idempotencyKey: $key) { message ids } } }";

/// `correctBroadcast` of job `id` with `body`, at [`FAST`], with the idempotency key `key`.
fn correct_once(id: i64, body: &str, key: &str) -> Call {
    Call {
        field: "correctBroadcast",
        operation: "Correct",
        query: CORRECT_ONCE,
        variables: json!({ "domain": DOMAIN, "id": id, "subject": "", "body": body,
                           "rate": FAST, "key": key }),
    }
}

/// `startBroadcast` of `spec` scheduled for `at` (a `DateTime` as the client writes it).
fn start_at(spec: &BroadcastSpec, at: &str) -> Call {
    let mut variables = spec.variables();
    variables["at"] = json!(at);
    Call {
        field: "startBroadcast",
        operation: "Start",
        query: START_BROADCAST_AT,
        variables,
    }
}

/// `startAt` `seconds` from now, to the second.
fn in_seconds(seconds: i64) -> String {
    (chrono::Utc::now() + chrono::TimeDelta::seconds(seconds))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

const HOLDS: &str = "query Holds($domain: DomainName!, $id: Int!) { broadcast { \
    getBroadcast(domain: $domain, id: $id) { executionState status startAt pausedAt ownerNode \
    waitingReason recipientCount recipientsProcessed startTimestamp } } }";

/// Job `id` of `example.com` with the fields of its holds.
fn holds(id: i64) -> Call {
    Call {
        field: "getBroadcast",
        operation: "Holds",
        query: HOLDS,
        variables: json!({ "domain": DOMAIN, "id": id }),
    }
}

const HOLD: &str = "mutation Hold($domain: DomainName!, $id: Int!) { broadcast { \
    pauseBroadcast(domain: $domain, id: $id) { message ids } } }";
const UNHOLD: &str = "mutation Unhold($domain: DomainName!, $id: Int!) { broadcast { \
    resumeBroadcast(domain: $domain, id: $id) { message ids } } }";

/// `pauseBroadcast` of job `id` of `example.com`.
fn pause(id: i64) -> Call {
    Call {
        field: "pauseBroadcast",
        operation: "Hold",
        query: HOLD,
        variables: json!({ "domain": DOMAIN, "id": id }),
    }
}

/// `resumeBroadcast` of job `id` of `example.com`.
fn resume(id: i64) -> Call {
    Call {
        field: "resumeBroadcast",
        operation: "Unhold",
        query: UNHOLD,
        variables: json!({ "domain": DOMAIN, "id": id }),
    }
}

fn start(spec: &BroadcastSpec) -> Call {
    Call {
        field: "startBroadcast",
        operation: "Start",
        query: START_BROADCAST,
        variables: spec.variables(),
    }
}

/// A job of `domain` sent by its `admin` account.
fn spec(domain: &str, name: &str, rate: i64) -> BroadcastSpec {
    BroadcastSpec {
        name: name.into(),
        domain: domain.into(),
        sender: format!("admin@{domain}"),
        rate,
        ..BroadcastSpec::default()
    }
}

/// `spec` with the sender `sender`.
fn sent_by(sender: String, spec: BroadcastSpec) -> BroadcastSpec {
    BroadcastSpec { sender, ..spec }
}

/// `spec` at a rate above MongooseIM's 1000 messages per second.
fn too_fast(spec: BroadcastSpec) -> BroadcastSpec {
    BroadcastSpec { rate: 1001, ..spec }
}

/// Code and message of startBroadcast's refusals.
const SENDER_NOT_FOUND: (&str, &str) = ("sender_not_found", "Sender account does not exist");
const BAD_RATE: (&str, &str) = ("bad_parameter", "Invalid parameter: message_rate");

/// The `message`/`ids` result of a mutation.
fn result(message: &str, ids: &[i64]) -> Value {
    json!({ "message": message, "ids": ids })
}

/// The error entry MongooseIM gives an operation error: message, path from the root,
/// `extensions` with the code and the operation's context keys.
fn operation_error(field: &str, code: &str, message: &str, context: Value) -> Value {
    let mut extensions = context;
    extensions["code"] = json!(code);
    json!({ "message": message, "path": ["broadcast", field], "extensions": extensions })
}

/// The argument a refusal names in `extensions.argument` (xmpp-broadcast's own addition, so
/// that a form can show the error at its field), as the request names it.
fn concerned_argument(code: &str, message: &str) -> Option<&'static str> {
    match (code, message) {
        ("sender_not_found", _) => Some("senderJid"),
        ("idempotency_key_reused", _) => Some("idempotencyKey"),
        ("bad_parameter", "Invalid parameter: message_rate") => Some("messageRate"),
        ("bad_parameter", "Invalid parameter: name") => Some("name"),
        ("bad_parameter", "Invalid parameter: subject") => Some("messageSubject"),
        ("bad_parameter", "Invalid parameter: body") => Some("messageBody"),
        ("bad_parameter", "Invalid parameter: idempotency_key") => Some("idempotencyKey"),
        ("bad_parameter", message) if message.starts_with("Invalid parameter: limit") => {
            Some("limit")
        }
        ("bad_parameter", message) if message.starts_with("Invalid parameter: start_at") => {
            Some("startAt")
        }
        _ => None,
    }
}

/// The 401 body for a caller acting on a domain it may not manage.
fn no_permission_for_domain(operation: &str, field: &str) -> Value {
    json!({ "errors": [{
        "message": format!(
            "Cannot execute query {operation} without permissions to the given domain. \
             Args with invalid value: domain"
        ),
        "path": [operation, "broadcast", field],
        "extensions": { "code": "no_permissions" },
    }] })
}

/// An error entry without `locations` (MongooseIM's have none; ours may).
fn without_locations(error: &Value) -> Value {
    let mut error = error.clone();
    if let Some(object) = error.as_object_mut() {
        object.remove("locations");
    }
    error
}

/// One in-process instance with a finished job of `example.org`.
struct Fixture {
    app: App,
    /// A finished job of `example.org`.
    foreign_job: i64,
}

impl Fixture {
    async fn start() -> Fixture {
        let hash = xmpp_broadcast::admin::hash_password(DOMAIN_ADMIN_PASSWORD).unwrap();
        let mut options =
            AppOptions::one_domain(DOMAIN, USERS as usize - 1).with_domain(OTHER_DOMAIN, "o", 2);
        options.domains.push((EMPTY_DOMAIN.into(), Vec::new()));
        options.domain_admins = vec![(DOMAIN.into(), hash)];
        assert_eq!(options.node_name, NODE);
        let app = App::start(options).await;
        let mut fixture = Fixture {
            app,
            foreign_job: 0,
        };
        let foreign = fixture
            .ok(&start(&spec(OTHER_DOMAIN, "foreign", FAST)))
            .await;
        fixture.foreign_job = foreign["ids"][0].as_i64().expect("id of the foreign job");
        fixture
            .wait_state(OTHER_DOMAIN, fixture.foreign_job, "FINISHED")
            .await;
        fixture
    }

    fn admin(&self) -> &Admin {
        &self.app.admin
    }

    /// Sends `call` with `auth`, under `operation` (`operationName`) if given.
    async fn send(&self, call: &Call, auth: Auth<'_>, operation: Option<&str>) -> (u16, Value) {
        let mut body = json!({ "query": call.query, "variables": call.variables });
        if let Some(operation) = operation {
            body["operationName"] = json!(operation);
        }
        self.admin().post_raw(body.to_string(), auth).await
    }

    /// Runs `call` as `auth`, expecting success; returns the field's value.
    async fn ok_as(&self, call: &Call, auth: Auth<'_>) -> Value {
        let (status, body) = self.send(call, auth, None).await;
        assert!(
            status == 200 && body.get("errors").is_none(),
            "{} {}: HTTP {status} {body}",
            call.field,
            call.variables
        );
        body["data"]["broadcast"][call.field].clone()
    }

    /// Runs `call` as the global admin, expecting success; returns the field's value.
    async fn ok(&self, call: &Call) -> Value {
        self.ok_as(call, Auth::Admin).await
    }

    /// Runs `call` as the global admin expecting one operation error: HTTP 200, the field
    /// null; returns the error entry without `locations`.
    async fn error(&self, call: &Call) -> Value {
        let (status, body) = self.send(call, Auth::Admin, None).await;
        let errors = body["errors"].as_array();
        assert!(
            status == 200 && errors.is_some_and(|errors| errors.len() == 1),
            "{} {}: expected one operation error with HTTP 200, got HTTP {status} {body}",
            call.field,
            call.variables
        );
        // (Whether its parent is null too is the concern of `failed_field_is_null`.)
        assert_eq!(
            body["data"]["broadcast"][call.field],
            Value::Null,
            "{} {}: the failed field is null: {body}",
            call.field,
            call.variables
        );
        without_locations(&body["errors"][0])
    }

    /// Asserts that `call` fails with `code` and `message`, the context being `call`'s
    /// variables named in `context`.
    async fn assert_error(&self, call: &Call, code: &str, message: &str, context: &[&str]) {
        let context: serde_json::Map<String, Value> = context
            .iter()
            .map(|key| ((*key).to_owned(), call.variables[*key].clone()))
            .collect();
        let mut expected = operation_error(call.field, code, message, Value::Object(context));
        if let Some(argument) = concerned_argument(code, message) {
            expected["extensions"]["argument"] = json!(argument);
        }
        assert_eq!(
            self.error(call).await,
            expected,
            "{} {}",
            call.field,
            call.variables
        );
    }

    /// Asserts that `call` answers `idempotency_key_reused`, naming job `id`.
    async fn assert_key_reused(&self, call: &Call, id: i64, context: &[&str]) {
        let message = format!(
            "The idempotency key was already used for broadcast job {id} with other arguments; \
             nothing was created"
        );
        self.assert_error(call, "idempotency_key_reused", &message, context)
            .await;
    }

    /// Asserts that `call` (getBroadcast or abortBroadcast) answers `broadcast_not_found`.
    async fn assert_not_found(&self, call: &Call) {
        let message = "Broadcast job not found";
        self.assert_error(call, "broadcast_not_found", message, &["domain", "id"])
            .await;
    }

    /// Asserts that aborting job `id` of `example.com` answers `not_running`.
    async fn assert_not_running(&self, id: i64) {
        let message = "The broadcast job is not currently running";
        self.assert_error(
            &abort(DOMAIN, id),
            "not_running",
            message,
            &["domain", "id"],
        )
        .await;
    }

    /// Starts a job of `example.com`; returns its id, checking the whole response.
    async fn start_job(&self, name: &str, rate: i64) -> i64 {
        let (status, body) = self
            .send(&start(&spec(DOMAIN, name, rate)), Auth::Admin, None)
            .await;
        let id = body["data"]["broadcast"]["startBroadcast"]["ids"][0]
            .as_i64()
            .unwrap_or_else(|| panic!("startBroadcast {name}: HTTP {status} {body}"));
        let expected = json!({ "data": { "broadcast": {
            "startBroadcast": result("Broadcast job started", &[id]),
        } } });
        assert_eq!((status, &body), (200, &expected), "startBroadcast {name}");
        id
    }

    /// A job of `example.com` that has finished.
    async fn finished_job(&self, name: &str) -> i64 {
        let id = self.start_job(name, FAST).await;
        self.wait_state(DOMAIN, id, "FINISHED").await;
        id
    }

    /// A job of `example.com` that was aborted while running.
    async fn aborted_job(&self, name: &str) -> i64 {
        let id = self.start_job(name, SLOW).await;
        self.ok(&abort(DOMAIN, id)).await;
        id
    }

    /// Polls `getBroadcast` until job `id` of `domain` is in `state`; returns the job.
    async fn wait_state(&self, domain: &str, id: i64, state: &str) -> Value {
        let deadline = Deadline::after(JOB_TIMEOUT, format!("job {id} to be {state}"));
        loop {
            let job = self.ok(&get(domain, id)).await;
            if job["executionState"] == state {
                return job;
            }
            assert_eq!(job["executionState"], "RUNNING", "job {id}: {job}");
            deadline.tick().await;
        }
    }

    /// The ids of `example.com`'s jobs as `getBroadcasts` lists them with `limit`, `index`.
    async fn listed(&self, limit: Option<i64>, index: Option<i64>) -> Vec<i64> {
        let jobs = self.ok(&list(DOMAIN, limit, index)).await;
        jobs.as_array()
            .unwrap_or_else(|| panic!("getBroadcasts returns a list: {jobs}"))
            .iter()
            .map(|job| job["id"].as_i64().expect("integer id"))
            .collect()
    }

    /// Leaves `example.com` without jobs: aborts the running one, deletes the rest.
    async fn reset(&self) {
        for job in self.ok(&list(DOMAIN, None, None)).await.as_array().unwrap() {
            if job["executionState"] == "RUNNING" {
                self.ok(&abort(DOMAIN, job["id"].as_i64().unwrap())).await;
            }
        }
        self.ok(&delete_by_domain(DOMAIN)).await;
        assert_eq!(self.listed(None, None).await, Vec::<i64>::new(), "reset");
    }

    /// Messages the XMPP server received for `example.com`'s accounts.
    async fn offline_count(&self) -> usize {
        let suffix = format!("@{DOMAIN}");
        self.app.server.seen(|seen| {
            seen.messages
                .iter()
                .filter(|m| m.to.ends_with(&suffix))
                .count()
        })
    }
}

/// One `#[tokio::test]` per scenario, each with its own instance.
macro_rules! scenarios {
    ($($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let fixture = Arc::new(Fixture::start().await);
                super::$scenario(fixture).await;
            }
        )*
    };
}

mod scenario {
    use super::*;

    scenarios![
        start_and_get,
        abort_running,
        one_running_job_per_domain,
        unknown_and_foreign_ids,
        list_and_page,
        delete_by_ids_skips,
        delete_by_domain_keeps_running,
        operation_errors,
        start_error_precedence,
        request_errors,
        failed_field_is_null,
        credentials,
        domain_admin_own_domain,
        domain_admin_other_domain,
        request_forms,
        graphiql,
        users_database_fails,
        idempotent_retries,
        scheduled_starts,
        pause_and_resume,
    ];
}

/// startBroadcast's answer, and every field of a finished job.
async fn start_and_get(f: Arc<Fixture>) {
    f.reset().await;
    let id = f.finished_job("announcement").await;
    let job = f.ok(&get(DOMAIN, id)).await;
    let spec = spec(DOMAIN, "announcement", FAST);
    for (field, expected) in [
        ("id", json!(id)),
        ("name", json!(spec.name)),
        ("domain", json!(DOMAIN)),
        ("messageSubject", json!(spec.subject)),
        ("messageBody", json!(spec.body)),
        ("senderJid", json!(spec.sender)),
        ("messageRate", json!(FAST)),
        ("ownerNode", json!("undefined")),
        ("executionState", json!("FINISHED")),
        ("abortionReason", Value::Null),
        ("recipientGroup", json!("ALL_USERS_IN_DOMAIN")),
        ("recipientCount", json!(USERS)),
        ("recipientsProcessed", json!(USERS)),
    ] {
        assert_eq!(job[field], expected, "{field} of a finished job: {job}");
    }
    for field in ["createTimestamp", "startTimestamp", "stopTimestamp"] {
        assert_timestamp(field, &job[field]);
    }
    // The same format throughout, so the text order is the time order.
    let time = |field: &str| job[field].as_str().unwrap().to_owned();
    assert!(
        time("createTimestamp") <= time("startTimestamp")
            && time("startTimestamp") <= time("stopTimestamp"),
        "created <= started <= stopped: {job}"
    );
    // A finished job cannot be aborted.
    f.assert_not_running(id).await;
}

/// An abort takes effect in the database at once and stops the sending within about a second:
/// the XMPP server receives nothing more.
async fn abort_running(f: Arc<Fixture>) {
    f.reset().await;
    let before = f.offline_count().await;
    let id = f.start_job("to be aborted", SLOW).await;
    let running = f.ok(&get(DOMAIN, id)).await;
    assert_eq!(running["executionState"], "RUNNING", "{running}");
    assert_eq!(running["ownerNode"], NODE, "owner while running: {running}");
    assert_eq!(running["stopTimestamp"], Value::Null, "{running}");

    // Wait until it is sending: its first messages are stored.
    let deadline = Deadline::after(JOB_TIMEOUT, "the slow job's first message");
    while f.offline_count().await == before {
        deadline.tick().await;
    }

    let (status, body) = f.send(&abort(DOMAIN, id), Auth::Admin, None).await;
    let stopped_at = f.offline_count().await;
    let expected = json!({ "data": { "broadcast": {
        "abortBroadcast": result("Broadcast job aborted", &[id]),
    } } });
    assert_eq!((status, &body), (200, &expected), "abortBroadcast");

    let aborted = f.ok(&get(DOMAIN, id)).await;
    assert_eq!(
        aborted["executionState"], "ABORT_ADMIN",
        "at once: {aborted}"
    );
    assert_eq!(aborted["ownerNode"], "undefined", "{aborted}");
    assert_eq!(aborted["abortionReason"], Value::Null, "{aborted}");
    assert_timestamp("stopTimestamp", &aborted["stopTimestamp"]);
    assert!(
        aborted["recipientsProcessed"].as_i64().unwrap() < USERS,
        "aborted before the end: {aborted}"
    );

    // The worker was stopped, and what it sent acknowledged by the server, before the answer.
    let live = f.admin().metric("mod_broadcast_live_jobs", DOMAIN).await;
    assert_eq!(live, Some(0.0), "a worker of the aborted job is live");
    // At 1 message per second a sender still running would store 2 or 3 more in 2.5 s.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = f.offline_count().await;
    assert_eq!(later, stopped_at, "messages stored after the abort");
    let sent = stopped_at - before;
    assert!(
        sent >= 1 && (sent as i64) < USERS,
        "{sent} messages sent before the abort"
    );
    assert_eq!(
        f.ok(&get(DOMAIN, id)).await["executionState"],
        "ABORT_ADMIN",
        "still aborted"
    );

    // Aborting it again: it is not running any more.
    f.assert_not_running(id).await;
}

/// A second start on a domain with a running job is refused; other domains are independent;
/// the running job cannot be reached through another domain.
async fn one_running_job_per_domain(f: Arc<Fixture>) {
    f.reset().await;
    let id = f.start_job("running", SLOW).await;
    f.assert_error(
        &start(&spec(DOMAIN, "second", FAST)),
        "running_job_limit_exceeded",
        "Cannot start new broadcast job: running job limit exceeded",
        &["domain", "name"],
    )
    .await;
    assert_eq!(f.listed(None, None).await, vec![id], "nothing was created");

    // Through another domain the running job does not exist, and is left running.
    for call in [get(OTHER_DOMAIN, id), abort(OTHER_DOMAIN, id)] {
        f.assert_not_found(&call).await;
    }
    let job = f.ok(&get(DOMAIN, id)).await;
    assert_eq!(job["executionState"], "RUNNING", "{job}");

    // Another domain may run a job at the same time.
    let other = f.ok(&start(&spec(OTHER_DOMAIN, "other", FAST))).await;
    let other = other["ids"][0].as_i64().expect("id");
    f.wait_state(OTHER_DOMAIN, other, "FINISHED").await;

    f.ok(&abort(DOMAIN, id)).await;
    f.ok(&delete_by_ids(OTHER_DOMAIN, &[other])).await;
}

/// Unknown ids and other domains' ids are `broadcast_not_found` for getBroadcast and
/// abortBroadcast, and the other domain's job is untouched.
async fn unknown_and_foreign_ids(f: Arc<Fixture>) {
    let foreign = f.foreign_job;
    for call in [
        get(DOMAIN, UNKNOWN_ID),
        get(DOMAIN, foreign),
        abort(DOMAIN, UNKNOWN_ID),
        abort(DOMAIN, foreign),
    ] {
        f.assert_not_found(&call).await;
    }
    let job = f.ok(&get(OTHER_DOMAIN, foreign)).await;
    assert_eq!(job["executionState"], "FINISHED", "{job}");
    assert_eq!(job["domain"], OTHER_DOMAIN, "{job}");
}

/// getBroadcasts: newest first; `limit` caps, `index` skips rows (not pages); defaults 50
/// and 0; other domains' jobs never appear.
async fn list_and_page(f: Arc<Fixture>) {
    f.reset().await;
    let a = f.finished_job("a").await;
    let b = f.aborted_job("b").await;
    let c = f.finished_job("c").await;
    let d = f.finished_job("d").await;

    let jobs = f.ok(&list(DOMAIN, None, None)).await;
    let expected = json!([
        { "id": d, "executionState": "FINISHED" },
        { "id": c, "executionState": "FINISHED" },
        { "id": b, "executionState": "ABORT_ADMIN" },
        { "id": a, "executionState": "FINISHED" },
    ]);
    assert_eq!(jobs, expected, "every state, newest first");
    for (limit, index, expected) in [
        (Some(2), None, vec![d, c]),
        (Some(2), Some(2), vec![b, a]),
        (None, Some(3), vec![a]),
        (None, Some(4), vec![]),
        (Some(1), Some(1), vec![c]),
        (Some(50), Some(0), vec![d, c, b, a]),
    ] {
        assert_eq!(
            f.listed(limit, index).await,
            expected,
            "limit {limit:?} index {index:?}"
        );
    }
    // Literal arguments, and the defaults when they are left out.
    let query = format!(
        "{{ broadcast {{ all: getBroadcasts(domain: \"{DOMAIN}\") {{ id }} \
         page: getBroadcasts(domain: \"{DOMAIN}\", limit: 3, index: 1) {{ id }} }} }}"
    );
    let (status, body) = f.admin().post(&query, json!({}), Auth::Admin).await;
    let ids = |ids: &[i64]| ids.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>();
    let expected = json!({ "data": { "broadcast": {
        "all": ids(&[d, c, b, a]), "page": ids(&[c, b, a]),
    } } });
    assert_eq!((status, body), (200, expected), "literal arguments");

    let empty = f.ok(&list(EMPTY_DOMAIN, None, None)).await;
    assert_eq!(empty, json!([]), "a domain without jobs");
    let other = f.ok(&list(OTHER_DOMAIN, None, None)).await;
    assert_eq!(
        other,
        json!([{ "id": f.foreign_job, "executionState": "FINISHED" }]),
        "another domain lists only its own jobs"
    );
}

/// deleteInactiveBroadcastsByIds deletes the listed finished and aborted jobs of the domain,
/// reporting them in input order, once each; running jobs, unknown ids and other domains'
/// jobs are skipped.
async fn delete_by_ids_skips(f: Arc<Fixture>) {
    f.reset().await;
    let a = f.finished_job("a").await;
    let b = f.aborted_job("b").await;
    let running = f.start_job("running", SLOW).await;
    let foreign = f.foreign_job;

    let call = delete_by_ids(DOMAIN, &[b, UNKNOWN_ID, foreign, running, a, b]);
    let deleted = f.ok(&call).await;
    assert_eq!(
        deleted,
        result("Inactive broadcasts deleted", &[b, a]),
        "input order, each once"
    );
    assert_eq!(
        f.listed(None, None).await,
        vec![running],
        "the running job is kept"
    );
    f.assert_not_found(&get(DOMAIN, a)).await;
    let kept = f.ok(&get(OTHER_DOMAIN, foreign)).await;
    assert_eq!(kept["id"], foreign, "another domain's job is kept: {kept}");

    let nothing = f.ok(&delete_by_ids(DOMAIN, &[])).await;
    assert_eq!(
        nothing,
        result("Inactive broadcasts deleted", &[]),
        "no ids"
    );

    f.ok(&abort(DOMAIN, running)).await;
    let deleted = f.ok(&delete_by_ids(DOMAIN, &[running])).await;
    assert_eq!(
        deleted,
        result("Inactive broadcasts deleted", &[running]),
        "once aborted it is deleted"
    );
}

/// deleteInactiveBroadcastsByDomain deletes every finished and aborted job of the domain,
/// oldest first, and keeps the running one and other domains' jobs.
async fn delete_by_domain_keeps_running(f: Arc<Fixture>) {
    f.reset().await;
    let a = f.finished_job("a").await;
    let b = f.aborted_job("b").await;
    let c = f.finished_job("c").await;
    let running = f.start_job("running", SLOW).await;

    let deleted = f.ok(&delete_by_domain(DOMAIN)).await;
    assert_eq!(
        deleted,
        result("Inactive broadcasts deleted", &[a, b, c]),
        "oldest first, the running job kept"
    );
    assert_eq!(f.listed(None, None).await, vec![running]);
    let kept = f.ok(&get(OTHER_DOMAIN, f.foreign_job)).await;
    assert_eq!(kept["id"], f.foreign_job, "another domain's job is kept");

    let nothing = f.ok(&delete_by_domain(DOMAIN)).await;
    assert_eq!(nothing, result("Inactive broadcasts deleted", &[]), "again");

    f.ok(&abort(DOMAIN, running)).await;
    let deleted = f.ok(&delete_by_domain(DOMAIN)).await;
    assert_eq!(deleted, result("Inactive broadcasts deleted", &[running]));
    assert_eq!(f.listed(None, None).await, Vec::<i64>::new());
}

/// Every operation's `domain_not_found`, and startBroadcast's codes, each with its message and
/// context keys (§5.5, §5.6).
async fn operation_errors(f: Arc<Fixture>) {
    f.reset().await;
    let unknown = [
        (
            start(&spec(UNKNOWN_DOMAIN, "x", FAST)),
            &["domain", "name"][..],
        ),
        (get(UNKNOWN_DOMAIN, 1), &["domain", "id"][..]),
        (list(UNKNOWN_DOMAIN, None, None), &["domain"][..]),
        (abort(UNKNOWN_DOMAIN, 1), &["domain", "id"][..]),
        (
            delete_by_ids(UNKNOWN_DOMAIN, &[1, 2]),
            &["domain", "ids"][..],
        ),
        (delete_by_domain(UNKNOWN_DOMAIN), &["domain"][..]),
    ];
    for (call, context) in unknown {
        f.assert_error(&call, "domain_not_found", "Domain not found", context)
            .await;
    }

    let refusals = [
        (too_fast(spec(DOMAIN, "too fast", FAST)), BAD_RATE),
        (
            sent_by(format!("nobody@{DOMAIN}"), spec(DOMAIN, "unknown", FAST)),
            SENDER_NOT_FOUND,
        ),
        (
            sent_by(
                format!("admin@{OTHER_DOMAIN}"),
                spec(DOMAIN, "foreign", FAST),
            ),
            SENDER_NOT_FOUND,
        ),
        // A domain without accounts: its sender cannot exist, and MongooseIM checks the
        // sender (§4.3 step 8) before the recipients (step 9).
        (spec(EMPTY_DOMAIN, "nobody to tell", FAST), SENDER_NOT_FOUND),
    ];
    for (spec, (code, message)) in refusals {
        f.assert_error(&start(&spec), code, message, &["domain", "name"])
            .await;
    }
    assert_eq!(f.listed(None, None).await, Vec::<i64>::new(), "no job made");
    let empty = f.ok(&list(EMPTY_DOMAIN, None, None)).await;
    assert_eq!(empty, json!([]), "no job made on the empty domain");
}

/// §4.6: with several faults the first in MongooseIM's order is reported: domain, rate, sender,
/// recipients, then name, subject and body.
async fn start_error_precedence(f: Arc<Fixture>) {
    let unknown = format!("nobody@{DOMAIN}");
    let no_body = BroadcastSpec {
        body: String::new(),
        ..spec(DOMAIN, "x", FAST)
    };
    let cases = [
        (
            "invalid rate and unknown sender",
            too_fast(sent_by(unknown.clone(), spec(DOMAIN, "x", FAST))),
            BAD_RATE,
        ),
        (
            "unknown sender and empty name",
            sent_by(unknown.clone(), spec(DOMAIN, "", FAST)),
            SENDER_NOT_FOUND,
        ),
        (
            "unknown sender and empty body",
            sent_by(unknown, no_body),
            SENDER_NOT_FOUND,
        ),
        (
            "unknown domain and invalid rate",
            too_fast(spec(UNKNOWN_DOMAIN, "x", FAST)),
            ("domain_not_found", "Domain not found"),
        ),
    ];
    let mut wrong = Vec::new();
    for (case, spec, (code, message)) in cases {
        let error = f.error(&start(&spec)).await;
        let got = (
            error["extensions"]["code"].as_str().unwrap_or_default(),
            error["message"].as_str().unwrap_or_default(),
        );
        if got != (code, message) {
            wrong.push(format!("{case}: expected {code} ({message}), got {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "error precedence (§4.6):\n{}",
        wrong.join("\n")
    );
}

/// What is wrong with a 400 answer that should carry `code` and a message containing `reason`,
/// one error and no `data` (absent or null: nothing was executed).
fn bad_request_mismatch(
    case: &str,
    (status, body): (u16, Value),
    code: &str,
    reason: &str,
) -> Option<String> {
    let error = &body["errors"][0];
    let message = error["message"].as_str().unwrap_or_default();
    let fine = status == 400
        && error["extensions"]["code"] == code
        && message.contains(reason)
        && body["errors"].as_array().map(Vec::len) == Some(1)
        && body.get("data").is_none_or(Value::is_null);
    (!fine).then(|| {
        format!(
            "{case}: expected 400 {code} naming {reason:?}, one error, no data; \
             got HTTP {status} {body}"
        )
    })
}

/// HTTP 400 before anything runs (§5.6): an unparsable document, an invalid one, values that
/// do not fit a scalar (each rule of §5.3, as literals and as variables), a body that is not
/// JSON, no query. The body holds one error and no `data`: nothing in the request ran.
async fn request_errors(f: Arc<Fixture>) {
    f.reset().await;
    let admin = f.admin();
    let mut wrong = Vec::new();
    let answer = admin
        .post("query { broadcast { getBroadcasts(", json!({}), Auth::Admin)
        .await;
    wrong.extend(bad_request_mismatch(
        "unparsable",
        answer,
        "parser_error",
        "",
    ));
    let unknown_field =
        format!("{{ broadcast {{ getBroadcasts(domain: \"{DOMAIN}\") {{ id color }} }} }}");
    let answer = admin.post(&unknown_field, json!({}), Auth::Admin).await;
    wrong.extend(bad_request_mismatch(
        "unknown field",
        answer,
        "validation_error",
        "color",
    ));

    let list_with =
        |arguments: &str| format!("{{ broadcast {{ getBroadcasts({arguments}) {{ id }} }} }}");
    let start_with = |sender: &str, rate: &str| {
        format!(
            "mutation {{ broadcast {{ startBroadcast(name: \"n\", domain: \"{DOMAIN}\", \
             messageSubject: \"s\", messageBody: \"b\", senderJid: {sender}, \
             messageRate: {rate}, recipientGroup: ALL_USERS_IN_DOMAIN) {{ ids }} }} }}"
        )
    };
    let sender = format!("\"admin@{DOMAIN}\"");
    let start_variables = |sender: String, rate: i64| {
        json!({ "name": "n", "domain": DOMAIN, "subject": "s", "body": "b",
                "sender": sender, "rate": rate })
    };
    // (case, document, variables, the reason MongooseIM gives)
    let coercions = [
        (
            "PosInt 0",
            list_with(&format!("domain: \"{DOMAIN}\", limit: 0")),
            json!({}),
            "Value is not a positive integer",
        ),
        (
            "PosInt -3",
            start_with(&sender, "-3"),
            json!({}),
            "Value is not a positive integer",
        ),
        (
            "PosInt 0 in a variable",
            LIST.to_owned(),
            json!({ "domain": DOMAIN, "limit": 0 }),
            "Value is not a positive integer",
        ),
        (
            "PosInt 0 in a variable of startBroadcast",
            START_BROADCAST.to_owned(),
            start_variables(format!("admin@{DOMAIN}"), 0),
            "Value is not a positive integer",
        ),
        (
            "NonNegInt -1",
            list_with(&format!("domain: \"{DOMAIN}\", index: -1")),
            json!({}),
            "Value is not a non-negative integer",
        ),
        (
            "NonNegInt -1 in a variable",
            LIST.to_owned(),
            json!({ "domain": DOMAIN, "index": -1 }),
            "Value is not a non-negative integer",
        ),
        (
            "DomainName empty",
            list_with("domain: \"\""),
            json!({}),
            "empty_domain_name",
        ),
        (
            "DomainName empty in a variable",
            LIST.to_owned(),
            json!({ "domain": "" }),
            "empty_domain_name",
        ),
        (
            "DomainName with a local part",
            list_with(&format!("domain: \"user@{DOMAIN}\"")),
            json!({}),
            "failed_to_parse_domain_name",
        ),
        (
            "BareJID without local part",
            start_with(&format!("\"{DOMAIN}\""), "1"),
            json!({}),
            "jid_without_local_part",
        ),
        (
            "BareJID with a resource",
            start_with(&format!("\"admin@{DOMAIN}/phone\""), "1"),
            json!({}),
            "jid_with_resource",
        ),
        (
            "BareJID that is no JID",
            start_with("\"a@b@c\"", "1"),
            json!({}),
            "failed_to_parse_jid",
        ),
        (
            "BareJID with a resource in a variable",
            START_BROADCAST.to_owned(),
            start_variables(format!("admin@{DOMAIN}/phone"), 1),
            "jid_with_resource",
        ),
    ];
    for (case, document, variables, reason) in coercions {
        let answer = admin.post(&document, variables, Auth::Admin).await;
        wrong.extend(bad_request_mismatch(case, answer, "input_coercion", reason));
    }
    if !f.listed(None, None).await.is_empty() {
        wrong.push("a request answered with 400 started a job".into());
    }

    // Nothing of a request with a bad value runs, not even the fields before the bad one.
    let finished = f.finished_job("kept").await;
    let document = format!(
        "mutation {{ broadcast {{ \
         first: deleteInactiveBroadcastsByIds(domain: \"{DOMAIN}\", ids: [{finished}]) {{ ids }} \
         second: deleteInactiveBroadcastsByDomain(domain: \"\") {{ ids }} }} }}"
    );
    let answer = admin.post(&document, json!({}), Auth::Admin).await;
    wrong.extend(bad_request_mismatch(
        "a valid field before a bad value",
        answer,
        "input_coercion",
        "empty_domain_name",
    ));
    if f.listed(None, None).await != vec![finished] {
        wrong.push(format!(
            "a request answered with 400 input_coercion deleted job {finished}"
        ));
    }

    let (status, body) = admin.post_raw("{not json", Auth::Admin).await;
    let expected = json!({ "errors": [{
        "message": "Invalid JSON body", "extensions": { "code": "invalid_json_body" },
    }] });
    if (status, &body) != (400, &expected) {
        wrong.push(format!("a body that is not JSON: HTTP {status} {body}"));
    }
    let (status, body) = admin.post("", json!({}), Auth::Admin).await;
    let expected = json!({ "errors": [{
        "message": "No query supplied", "extensions": { "code": "no_query_supplied" },
    }] });
    if (status, &body) != (400, &expected) {
        wrong.push(format!("an empty query: HTTP {status} {body}"));
    }
    assert!(wrong.is_empty(), "HTTP 400 answers:\n{}", wrong.join("\n"));
}

/// A failed field is null and its siblings still answer (§5.6: the path names the field, the
/// `broadcast` object is there).
async fn failed_field_is_null(f: Arc<Fixture>) {
    let query = format!(
        "{{ broadcast {{ found: getBroadcast(domain: \"{OTHER_DOMAIN}\", id: {}) {{ id }} \
         missing: getBroadcast(domain: \"{OTHER_DOMAIN}\", id: {UNKNOWN_ID}) {{ id }} }} }}",
        f.foreign_job
    );
    let (status, body) = f.admin().post(&query, json!({}), Auth::Admin).await;
    let expected_data =
        json!({ "broadcast": { "found": { "id": f.foreign_job }, "missing": null } });
    let expected_error = operation_error(
        "missing",
        "broadcast_not_found",
        "Broadcast job not found",
        json!({ "domain": OTHER_DOMAIN, "id": UNKNOWN_ID }),
    );
    let errors: Vec<Value> = body["errors"]
        .as_array()
        .map(|errors| errors.iter().map(without_locations).collect())
        .unwrap_or_default();
    assert_eq!(
        (status, &body["data"], errors),
        (200, &expected_data, vec![expected_error]),
        "{body}"
    );
}

/// 401 before anything runs: no credentials (`no_permissions`, naming the operation), wrong
/// ones (`wrong_credentials`), for the global admin and for domain admins.
async fn credentials(f: Arc<Fixture>) {
    let call = list(DOMAIN, None, None);
    for (operation, named) in [(None, "ROOT"), (Some("List"), "List")] {
        let (status, body) = f.send(&call, Auth::None, operation).await;
        let expected = json!({ "errors": [{
            "message": format!("Cannot execute query {named} without permissions"),
            "path": [named],
            "extensions": { "code": "no_permissions" },
        }] });
        assert_eq!((status, body), (401, expected), "no credentials, {named}");
    }
    let wrong = json!({ "errors": [{
        "message": "The provided credentials are wrong",
        "extensions": { "code": "wrong_credentials" },
    }] });
    for (case, auth) in [
        ("wrong password", Auth::Basic(ADMIN_USER, "wrong")),
        ("wrong user", Auth::Basic("root", ADMIN_PASSWORD)),
        (
            "wrong domain admin password",
            Auth::Basic(DOMAIN_ADMIN, "wrong"),
        ),
        (
            "domain admin without a hash",
            Auth::Basic("admin@example.org", PASSWORD),
        ),
        (
            "domain admin of an unknown domain",
            Auth::Basic("admin@unknown.example.net", "x"),
        ),
        (
            "a user of the domain",
            Auth::Basic("u0001@example.com", DOMAIN_ADMIN_PASSWORD),
        ),
    ] {
        let (status, body) = f.send(&call, auth, Some("List")).await;
        assert_eq!((status, &body), (401, &wrong), "{case}");
    }
    // Mutations are refused the same way, and change nothing.
    let (status, body) = f
        .send(&delete_by_domain(OTHER_DOMAIN), Auth::None, None)
        .await;
    assert_eq!(status, 401, "deleting without credentials: {body}");
    let kept = f.ok(&get(OTHER_DOMAIN, f.foreign_job)).await;
    assert_eq!(kept["id"], f.foreign_job, "nothing was deleted");
}

/// A domain admin may do all six operations on its own domain.
async fn domain_admin_own_domain(f: Arc<Fixture>) {
    f.reset().await;
    let auth = Auth::Basic(DOMAIN_ADMIN, DOMAIN_ADMIN_PASSWORD);
    let started = f
        .ok_as(&start(&spec(DOMAIN, "by the domain admin", SLOW)), auth)
        .await;
    let id = started["ids"][0].as_i64().expect("id");
    assert_eq!(started, result("Broadcast job started", &[id]));
    let listed = f.ok_as(&list(DOMAIN, None, None), auth).await;
    assert_eq!(listed, json!([{ "id": id, "executionState": "RUNNING" }]));
    let job = f.ok_as(&get(DOMAIN, id), auth).await;
    assert_eq!(job["name"], "by the domain admin", "{job}");
    let aborted = f.ok_as(&abort(DOMAIN, id), auth).await;
    assert_eq!(aborted, result("Broadcast job aborted", &[id]));
    let deleted = f.ok_as(&delete_by_ids(DOMAIN, &[id]), auth).await;
    assert_eq!(deleted, result("Inactive broadcasts deleted", &[id]));
    let finished = f.finished_job("finished").await;
    let deleted = f.ok_as(&delete_by_domain(DOMAIN), auth).await;
    assert_eq!(deleted, result("Inactive broadcasts deleted", &[finished]));
    // The user name is a JID: compared normalised (§5.1).
    let listed = f
        .ok_as(
            &list(DOMAIN, None, None),
            Auth::Basic("Admin@EXAMPLE.com", DOMAIN_ADMIN_PASSWORD),
        )
        .await;
    assert_eq!(listed, json!([]), "as Admin@EXAMPLE.com");
}

/// A domain admin gets 401 `no_permissions` for each of the six operations on another domain,
/// and nothing happens there.
async fn domain_admin_other_domain(f: Arc<Fixture>) {
    let auth = Auth::Basic(DOMAIN_ADMIN, DOMAIN_ADMIN_PASSWORD);
    let foreign = f.foreign_job;
    let before = f.ok(&list(OTHER_DOMAIN, None, None)).await;
    let calls = [
        start(&spec(OTHER_DOMAIN, "not yours", FAST)),
        list(OTHER_DOMAIN, None, None),
        get(OTHER_DOMAIN, foreign),
        abort(OTHER_DOMAIN, foreign),
        delete_by_ids(OTHER_DOMAIN, &[foreign]),
        delete_by_domain(OTHER_DOMAIN),
    ];
    let mut wrong = Vec::new();
    for call in &calls {
        for operation in [None, Some(call.operation)] {
            let (status, body) = f.send(call, auth, operation).await;
            let expected = no_permission_for_domain(operation.unwrap_or("ROOT"), call.field);
            if (status, &body) != (401, &expected) {
                wrong.push(format!(
                    "{} as {operation:?}: HTTP {status} {body}",
                    call.field
                ));
            }
        }
    }
    // One field of its own domain and one of another: the whole request is refused.
    let mixed = format!(
        "query {{ broadcast {{ own: getBroadcasts(domain: \"{DOMAIN}\") {{ id }} \
         other: getBroadcasts(domain: \"{OTHER_DOMAIN}\") {{ id }} }} }}"
    );
    let (status, body) = f.admin().post(&mixed, json!({}), auth).await;
    if status != 401 {
        wrong.push(format!(
            "own and other domain in one request: HTTP {status} {body}"
        ));
    }
    // Also when the other domain is not served at all: permission comes first (§4.1).
    let (status, body) = f.send(&list(UNKNOWN_DOMAIN, None, None), auth, None).await;
    if (status, &body) != (401, &no_permission_for_domain("ROOT", "getBroadcasts")) {
        wrong.push(format!(
            "getBroadcasts of an unknown domain: HTTP {status} {body}"
        ));
    }
    let after = f.ok(&list(OTHER_DOMAIN, None, None)).await;
    if after != before {
        wrong.push(format!(
            "{OTHER_DOMAIN}'s jobs changed: {before} -> {after}"
        ));
    }
    assert!(
        wrong.is_empty(),
        "a domain admin of {DOMAIN} on {OTHER_DOMAIN}, expected 401 no_permissions:\n{}",
        wrong.join("\n")
    );
}

/// The request forms of §5.1: `variables` as an object, as a JSON-encoded string or null;
/// `operationName` picks one operation of several.
async fn request_forms(f: Arc<Fixture>) {
    let admin = f.admin();
    let foreign = f.foreign_job;
    let query = "query Get($domain: DomainName!, $id: Int!) { broadcast { \
                 getBroadcast(domain: $domain, id: $id) { id } } }";
    let expected = json!({ "data": { "broadcast": { "getBroadcast": { "id": foreign } } } });
    let variables = json!({ "domain": OTHER_DOMAIN, "id": foreign });
    let mut wrong = Vec::new();
    for (case, variables) in [
        ("variables as an object", variables.clone()),
        ("variables as a JSON string", json!(variables.to_string())),
    ] {
        let body = json!({ "query": query, "variables": variables });
        let (status, body) = admin.post_raw(body.to_string(), Auth::Admin).await;
        if (status, &body) != (200, &expected) {
            wrong.push(format!("{case}: HTTP {status} {body}"));
        }
    }
    let literal = format!(
        "query One {{ broadcast {{ getBroadcast(domain: \"{OTHER_DOMAIN}\", id: {foreign}) \
         {{ id }} }} }} query Other {{ broadcast {{ getBroadcasts(domain: \"{DOMAIN}\") \
         {{ id }} }} }}"
    );
    let body = json!({ "query": literal, "variables": null, "operationName": "One" });
    let (status, body) = admin.post_raw(body.to_string(), Auth::Admin).await;
    if (status, &body) != (200, &expected) {
        wrong.push(format!(
            "variables null, operationName One: HTTP {status} {body}"
        ));
    }
    assert!(wrong.is_empty(), "request forms:\n{}", wrong.join("\n"));
}

/// GET /api/graphql serves GraphiQL with its scripts from the listener (no other origin).
async fn graphiql(f: Arc<Fixture>) {
    let (status, content_type, page) = f.admin().get("/api/graphql").await;
    assert_eq!(status, 200, "{page}");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(
        page.contains("\"graphiql/graphiql.min.js\"") && !page.contains("//"),
        "a GraphiQL page loading its scripts from the listener: {page}"
    );
    let (status, content_type, script) = f.admin().get("/api/graphiql/init.js").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/javascript"),
        "{content_type}"
    );
    assert!(script.contains("GraphiQL.createFetcher"), "{script}");
}

/// The message of `cannot_count_recipients`.
const CANNOT_COUNT: &str =
    "Cannot count the recipients: the users database failed (the instance's log has the error)";

/// A users database that fails while a start reads the recipients, or at its sender check
/// (its table gone): `startBroadcast` and `countBroadcastRecipients` answer MongooseIM's
/// `cannot_count_recipients` and nothing is created; once it is back, a start works.
async fn users_database_fails(f: Arc<Fixture>) {
    use sqlx::Connection;
    f.reset().await;
    let count = Call {
        field: "countBroadcastRecipients",
        operation: "Count",
        query: "query Count($domain: DomainName!) { broadcast { \
                countBroadcastRecipients(domain: $domain) { recipientCount } } }",
        variables: json!({ "domain": DOMAIN }),
    };
    assert_eq!(f.ok(&count).await["recipientCount"], USERS);
    let users_url = format!("sqlite://{}/users.db", f.app.dir().display());
    let mut users = sqlx::SqliteConnection::connect(&users_url)
        .await
        .expect("the users database");
    let start_message = format!("{CANNOT_COUNT}; no job was created");
    // A username the driver cannot read as text: the sender is found, the recipients
    // cannot be read.
    let unreadable = "INSERT INTO prosody VALUES ('example.com', X'FF00', 'accounts', \
                      'password', 'string', 'pw')";
    // The accounts table gone: the sender check fails already.
    let gone = "ALTER TABLE prosody RENAME TO prosody_elsewhere";
    let repairs = [
        "DELETE FROM prosody WHERE typeof(user) = 'blob'",
        "ALTER TABLE prosody_elsewhere RENAME TO prosody",
    ];
    for (fault, repair) in [unreadable, gone].into_iter().zip(repairs) {
        sqlx::raw_sql(fault).execute(&mut users).await.expect(fault);
        let spec = spec(DOMAIN, "nobody counted", FAST);
        f.assert_error(
            &start(&spec),
            "cannot_count_recipients",
            &start_message,
            &["domain", "name"],
        )
        .await;
        f.assert_error(&count, "cannot_count_recipients", CANNOT_COUNT, &["domain"])
            .await;
        assert_eq!(f.listed(None, None).await, Vec::<i64>::new(), "{fault}");
        sqlx::raw_sql(repair)
            .execute(&mut users)
            .await
            .expect(repair);
    }
    assert_eq!(f.ok(&count).await["recipientCount"], USERS);
    f.finished_job("counted again").await;
}

/// A retry with the same idempotency key and arguments is answered with the job the key
/// created, running or ended, and creates nothing; other arguments under the key are refused;
/// a key out of its bounds is a bad parameter. The same holds for a follow-up.
async fn idempotent_retries(f: Arc<Fixture>) {
    f.reset().await;
    let slow = spec(DOMAIN, "once", SLOW);
    let started = |id: i64| result("Broadcast job started", &[id]);
    let first = f.ok(&start_once(&slow, "notice-1")).await;
    let id = first["ids"][0].as_i64().expect("id");
    assert_eq!(first, started(id));
    // Running: the retry is not `running_job_limit_exceeded`.
    assert_eq!(f.ok(&start_once(&slow, "notice-1")).await, started(id));
    f.assert_key_reused(
        &start_once(&spec(DOMAIN, "other name", SLOW), "notice-1"),
        id,
        &["domain", "name"],
    )
    .await;
    for bad in ["", "with space", &"k".repeat(129), "caf\u{e9}"] {
        f.assert_error(
            &start_once(&slow, bad),
            "bad_parameter",
            "Invalid parameter: idempotency_key",
            &["domain", "name"],
        )
        .await;
    }
    // Ended: the same answer, and the job is not run again.
    f.ok(&abort(DOMAIN, id)).await;
    assert_eq!(f.ok(&start_once(&slow, "notice-1")).await, started(id));
    assert_eq!(
        f.ok(&get(DOMAIN, id)).await["executionState"],
        "ABORT_ADMIN"
    );
    assert_eq!(
        f.listed(None, None).await,
        vec![id],
        "nothing else was created"
    );

    // A correction's retry: the same follow-up.
    let correction = f.ok(&correct_once(id, "fixed", "fix-1")).await;
    let fix = correction["ids"][0].as_i64().expect("id");
    assert_eq!(correction, result("Broadcast correction started", &[fix]));
    assert_eq!(f.ok(&correct_once(id, "fixed", "fix-1")).await, correction);
    f.assert_key_reused(
        &correct_once(id, "fixed again", "fix-1"),
        fix,
        &["domain", "id"],
    )
    .await;
    f.wait_state(DOMAIN, fix, "FINISHED").await;
    assert_eq!(f.listed(None, None).await, vec![fix, id]);

    // Deleting the job frees its key.
    f.reset().await;
    let again = f
        .ok(&start_once(&spec(DOMAIN, "other name", FAST), "notice-1"))
        .await;
    let again = again["ids"][0].as_i64().expect("id");
    assert!(again > fix, "a new job: {again}");
    f.wait_state(DOMAIN, again, "FINISHED").await;
}

/// A scheduled start: answered at once, shown SCHEDULED (RUNNING to MongooseIM's clients) with
/// its time, not the domain's running job, cancelled by an abort with nothing sent; a time a
/// few seconds past starts at once; bad times change nothing.
async fn scheduled_starts(f: Arc<Fixture>) {
    f.reset().await;
    let before = f.offline_count().await;
    let slow = spec(DOMAIN, "scheduled", SLOW);
    let at = in_seconds(3600);
    let answer = f.ok(&start_at(&slow, &at)).await;
    let id = answer["ids"][0].as_i64().expect("id");
    assert_eq!(answer, result("Broadcast job scheduled", &[id]));
    let job = f.ok(&holds(id)).await;
    assert_eq!(
        job,
        json!({ "executionState": "RUNNING", "status": "SCHEDULED", "startAt": at,
                "pausedAt": null, "ownerNode": "undefined", "waitingReason": null,
                "recipientCount": USERS, "recipientsProcessed": 0, "startTimestamp": null }),
    );
    f.assert_error(
        &pause(id),
        "not_running",
        "The broadcast job is not sending (it is SCHEDULED); only a RUNNING job can be paused",
        &["domain", "id"],
    )
    .await;
    // Not the domain's running job: another job runs meanwhile.
    let now = f.finished_job("meanwhile").await;

    for (bad, message) in [
        (
            in_seconds(-120),
            "Invalid parameter: start_at (it passed more than 60 seconds ago; a time up to that \
             far in the past starts the job at once)",
        ),
        (
            in_seconds(367 * 24 * 3600),
            "Invalid parameter: start_at (it is more than 366 days ahead)",
        ),
    ] {
        f.assert_error(
            &start_at(&slow, &bad),
            "bad_parameter",
            message,
            &["domain", "name"],
        )
        .await;
    }
    let (status, body) = f
        .send(&start_at(&slow, "tomorrow at noon"), Auth::Admin, None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "input_coercion",
        "{body}"
    );
    assert_eq!(
        f.listed(None, None).await,
        vec![now, id],
        "bad times created nothing"
    );

    f.ok(&abort(DOMAIN, id)).await;
    let cancelled = f.ok(&holds(id)).await;
    assert_eq!(
        (&cancelled["executionState"], &cancelled["status"]),
        (&json!("ABORT_ADMIN"), &json!("ABORT_ADMIN")),
        "{cancelled}"
    );
    assert_eq!(cancelled["startAt"], at, "{cancelled}");

    // A time a few seconds past starts the job at once.
    let fast = spec(DOMAIN, "just now", FAST);
    let answer = f.ok(&start_at(&fast, &in_seconds(-5))).await;
    let late = answer["ids"][0].as_i64().expect("id");
    assert_eq!(answer, result("Broadcast job started", &[late]));
    f.wait_state(DOMAIN, late, "FINISHED").await;
    assert_eq!(
        f.offline_count().await - before,
        2 * USERS as usize,
        "the scheduled job sent nothing; the two others sent to everybody"
    );
}

/// A pause answered by the owner stops its sending before the answer; the paused job frees its
/// domain, cannot be paused again, and resumes (only while no other job of the domain runs)
/// from its committed progress to the end; the errors change nothing.
async fn pause_and_resume(f: Arc<Fixture>) {
    f.reset().await;
    let before = f.offline_count().await;
    let id = f.start_job("to be paused", SLOW).await;
    let deadline = Deadline::after(JOB_TIMEOUT, "the slow job's first message");
    while f.offline_count().await == before {
        deadline.tick().await;
    }
    assert_eq!(
        f.ok(&pause(id)).await,
        result("Broadcast job paused", &[id])
    );
    let at_pause = f.offline_count().await;
    let paused = f.ok(&holds(id)).await;
    assert_eq!(
        (
            &paused["executionState"],
            &paused["status"],
            &paused["ownerNode"]
        ),
        (&json!("RUNNING"), &json!("PAUSED"), &json!("undefined")),
        "{paused}"
    );
    assert_timestamp("pausedAt", &paused["pausedAt"]);
    f.assert_error(
        &pause(id),
        "not_running",
        "The broadcast job is not sending (it is PAUSED); only a RUNNING job can be paused",
        &["domain", "id"],
    )
    .await;
    // Another job runs while it is paused; resuming meanwhile is refused.
    let other = f.start_job("urgent", SLOW).await;
    f.assert_error(
        &resume(id),
        "running_job_limit_exceeded",
        "Cannot resume the broadcast job: another job of the domain is running",
        &["domain", "id"],
    )
    .await;
    assert_eq!(f.ok(&holds(id)).await["status"], "PAUSED");
    f.ok(&abort(DOMAIN, other)).await;
    let sent_by_other = f.offline_count().await - at_pause;
    f.assert_error(
        &resume(other),
        "not_paused",
        "The broadcast job is not paused (it is ABORT_ADMIN)",
        &["domain", "id"],
    )
    .await;

    assert_eq!(
        f.ok(&resume(id)).await,
        result("Broadcast job resumed", &[id])
    );
    let resumed = f.ok(&holds(id)).await;
    assert_eq!(
        (
            &resumed["status"],
            &resumed["ownerNode"],
            &resumed["pausedAt"]
        ),
        (&json!("RUNNING"), &json!(NODE), &Value::Null),
        "{resumed}"
    );
    f.assert_error(
        &resume(id),
        "not_paused",
        "The broadcast job is not paused (it is RUNNING)",
        &["domain", "id"],
    )
    .await;
    f.ok(&abort(DOMAIN, id)).await;
    f.assert_error(
        &pause(id),
        "not_running",
        "The broadcast job is not sending (it is ABORT_ADMIN); only a RUNNING job can be paused",
        &["domain", "id"],
    )
    .await;
    assert!(
        f.offline_count().await > at_pause + sent_by_other,
        "the resumed job sent again"
    );
}

/// A paused job survives the restart of every instance: after the only instance is stopped
/// and another one (same job database, same users database) is started, the job is still
/// PAUSED and nothing is sent; resumed there, it goes on from its committed progress and
/// finishes, every user reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_job_survives_restarts_and_resumes_elsewhere() {
    let dir = tempfile::tempdir().expect("scratch directory");
    let jobs_url = format!("sqlite://{}/jobs.db", dir.path().display());
    let options = || {
        AppOptions::one_domain(DOMAIN, USERS as usize - 1)
            .with_jobs_url(&jobs_url)
            .with_users_database_id("prosody@shared")
    };
    let first = App::start(options()).await;
    // 20 users at 2 messages a second: the first batch (all of them) takes 10 s.
    let id = first
        .admin
        .start_broadcast(&spec(DOMAIN, "paused across restarts", 2))
        .await
        .expect("startBroadcast");
    let seen = || first.server.seen(|seen| seen.messages.len());
    let deadline = Deadline::after(JOB_TIMEOUT, "the first messages");
    while seen() < 3 {
        deadline.tick().await;
    }
    first.admin.hold_broadcast(id, false).await.expect("pause");
    let sent_first = seen();
    assert!(
        sent_first < USERS as usize,
        "paused before the end: {sent_first}"
    );
    first
        .stop()
        .await
        .expect("the first instance stops cleanly");

    let second = App::start(options()).await;
    let job = second.admin.get_broadcast(id).await;
    assert_eq!(
        (job["status"].as_str(), job["recipientsProcessed"].as_i64()),
        (Some("PAUSED"), Some(0)),
        "{job}"
    );
    // The restarted instance must not take the paused job up: it sends nothing for as long
    // as a resumed or taken-over job would need to start (its take-up ran before `start`
    // returned; its scheduler and ownership check run every second).
    let quiet = Deadline::after(Duration::from_secs(3), "the quiet window");
    while !quiet.expired() {
        assert_eq!(
            second.server.seen(|seen| seen.messages.len()),
            0,
            "sent while paused"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.admin.hold_broadcast(id, true).await.expect("resume");
    let job = second
        .admin
        .wait_state(id, "FINISHED", Duration::from_secs(30))
        .await;
    assert_eq!(job["recipientsProcessed"], USERS, "{job}");
    for user in support::app::accounts("u", USERS as usize - 1) {
        assert_eq!(second.messages_to(&format!("{user}@{DOMAIN}")), 1, "{user}");
    }
}
