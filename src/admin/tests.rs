//! The GraphQL endpoint in process: `AdminApi::graphql` over a SQLite job store and a
//! Prosody-layout SQLite users database, with a component connection that never connects (no
//! message is sent; jobs are only stored).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use warp::Filter;

use super::{AdminApi, Credentials};
use crate::broadcast::{BroadcastService, Manager, Scope};
use crate::config::{ComponentConfig, Secret, UsersConfig, UsersSchema};
use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::xmpp::Connection;

pub const OWN: &str = "example.com";
pub const OTHER: &str = "other.org";
pub const GLOBAL: &str = "admin:secret";
pub const DOMAIN_ADMIN: &str = "admin@example.com:domainpw";

/// An admin API with its stores.
pub struct Lab {
    pub api: AdminApi,
    pub store: Store,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One set of credentials for every test, so that argon2 hashes the domain admin's password
/// once per test binary.
fn credentials() -> Credentials {
    static CREDENTIALS: OnceLock<Credentials> = OnceLock::new();
    CREDENTIALS
        .get_or_init(|| {
            let hash = super::hash_password("domainpw").unwrap();
            let admins = [(OWN.to_owned(), Secret::new(hash))].into();
            Credentials::new("admin", "secret", admins)
        })
        .clone()
}

pub fn basic(user_password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

impl Lab {
    pub async fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}/jobs.db", dir.path().display()), 2)
            .await
            .unwrap();
        let directory = users(dir.path()).await;
        let stop = CancellationToken::new();
        let component = ComponentConfig {
            jid: jid::BareJid::new("broadcast.example.com").unwrap(),
            secret: Secret::new("s"),
            // Nothing listens there: the connection keeps retrying and nothing is sent.
            server: "127.0.0.1:1".into(),
        };
        let (connection, _task) = Connection::start(component, stop.clone());
        let domains = vec![OWN.to_owned(), OTHER.to_owned()];
        let metrics = Metrics::new(&domains);
        let scope = Scope::new(&domains, directory.identity().clone());
        let manager = Manager::new(
            store.clone(),
            directory.clone(),
            connection.clone(),
            metrics.clone(),
            "node1".into(),
            scope,
            Duration::from_secs(60),
        );
        manager.take_up_jobs().await.unwrap();
        let safety = manager.safety().clone();
        let broadcasts = BroadcastService::new(store.clone(), directory, manager);
        let api = AdminApi::new(
            super::build_schema(Some(broadcasts)),
            credentials(),
            connection,
            safety,
            metrics,
        );
        Lab {
            api,
            store,
            stop,
            _dir: dir,
        }
    }

    /// Posts `body` as the user `auth` (`user:password`); the status and the JSON answer.
    pub async fn post_bytes(&self, auth: Option<&str>, body: impl Into<Bytes>) -> (u16, Value) {
        let api = self.api.clone();
        let route = warp::any()
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::body::bytes())
            .then(move |authorization: Option<String>, body: Bytes| {
                let api = api.clone();
                async move {
                    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
                    api.graphql(authorization.as_deref(), loopback, &body, None)
                        .await
                }
            });
        let mut request = warp::test::request().method("POST").path("/api/graphql");
        if let Some(auth) = auth {
            request = request.header("authorization", basic(auth));
        }
        let reply = request.body(body.into()).reply(&route).await;
        let answer = serde_json::from_slice(reply.body()).unwrap_or_else(|err| {
            panic!(
                "not JSON ({err}): {:?}",
                String::from_utf8_lossy(reply.body())
            )
        });
        (reply.status().as_u16(), answer)
    }

    pub async fn post(&self, auth: &str, body: Value) -> (u16, Value) {
        self.post_bytes(Some(auth), body.to_string()).await
    }

    pub async fn query(&self, auth: &str, query: &str) -> (u16, Value) {
        self.post(auth, json!({ "query": query })).await
    }

    /// Starts a job as the global admin and returns its id.
    pub async fn start(&self, domain: &str) -> i64 {
        let (status, answer) = self.query(GLOBAL, &start(domain, "")).await;
        assert_eq!(status, 200, "{answer}");
        answer
            .pointer("/data/broadcast/startBroadcast/ids/0")
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("{answer}"))
    }

    /// `(id, state)` of every job of `domain`, from the store.
    pub async fn jobs(&self, domain: &str) -> Vec<(i64, String)> {
        let jobs = self.store.list_jobs(domain, 1000, 0).await.unwrap();
        jobs.into_iter()
            .map(|job| (job.id, format!("{:?}", job.state)))
            .collect()
    }
}

/// A `startBroadcast` field on `domain`, with an optional alias.
pub fn start_field(domain: &str, alias: &str) -> String {
    format!(
        "{alias} startBroadcast(name: \"n\", domain: \"{domain}\", messageSubject: \"\", \
         messageBody: \"b\", senderJid: \"admin@{domain}\", messageRate: 10, \
         recipientGroup: ALL_USERS_IN_DOMAIN) {{ ids }}"
    )
}

fn start(domain: &str, alias: &str) -> String {
    format!(
        "mutation {{ broadcast {{ {} }} }}",
        start_field(domain, alias)
    )
}

/// The users: `admin`, `u1`, `u2` of each domain, in Prosody's SQL layout.
async fn users(dir: &std::path::Path) -> Directory {
    use sqlx::{ConnectOptions, Connection};
    let url = format!("sqlite://{}/users.db", dir.display());
    let mut conn = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
        .unwrap()
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE prosody (host TEXT, user TEXT, store TEXT, key TEXT, type TEXT, value TEXT)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for host in [OWN, OTHER] {
        for user in ["admin", "u1", "u2"] {
            sqlx::query(
                "INSERT INTO prosody VALUES ($1, $2, 'accounts', 'password', 'string', 'x')",
            )
            .bind(host)
            .bind(user)
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    conn.close().await.unwrap();
    let config = UsersConfig {
        schema: UsersSchema::Prosody,
        url: Secret::new(url),
        time_zone: None,
        database_id: None,
        groups: Default::default(),
    };
    Directory::connect(&config).await.unwrap()
}

/// `depth` fragments, each spreading the previous one twice: 2^depth expansions of a
/// `getBroadcasts` field.
pub fn nested_fragments(depth: usize) -> String {
    let mut query = format!("query {{ broadcast {{ ...F{depth} }} }}\n");
    query.push_str(
        "fragment F1 on BroadcastAdminQuery { getBroadcasts(domain: \"example.com\") { id } }\n",
    );
    for n in 2..=depth {
        let previous = n - 1;
        query.push_str(&format!(
            "fragment F{n} on BroadcastAdminQuery {{ ...F{previous} ...F{previous} }}\n"
        ));
    }
    query
}

fn code(answer: &Value) -> &str {
    answer
        .pointer("/errors/0/extensions/code")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no code in {answer}"))
}

#[tokio::test]
async fn nested_fragment_attacks_are_refused_at_once() {
    let lab = Lab::new().await;
    for depth in [24, 29] {
        let started = Instant::now();
        let (status, answer) = lab.query(GLOBAL, &nested_fragments(depth)).await;
        let elapsed = started.elapsed();
        // A bound against exponential work (async-graphql alone takes seconds), not a benchmark.
        assert!(elapsed < Duration::from_secs(1), "2^{depth}: {elapsed:?}");
        assert_eq!(status, 400, "{answer}");
        assert_eq!(code(&answer), "query_too_complex");
        assert!(answer.get("data").is_none(), "{answer}");
    }
    // Small enough, the same shape runs.
    let (status, answer) = lab.query(GLOBAL, &nested_fragments(4)).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn fragment_cycles_are_refused() {
    let lab = Lab::new().await;
    let query = "query { broadcast { ...A } } \
        fragment A on BroadcastAdminQuery { ...B } \
        fragment B on BroadcastAdminQuery { getBroadcasts(domain: \"example.com\") { id } ...A }";
    let (status, answer) = lab.query(GLOBAL, query).await;
    assert_eq!(
        (status, code(&answer)),
        (400, "validation_error"),
        "{answer}"
    );
}

/// The answer a domain admin gets for `field` on another domain under `operation`.
fn refusal(operation: &str, field: &str) -> Value {
    json!({ "errors": [{
        "message": format!(
            "Cannot execute query {operation} without permissions to the given domain. \
             Args with invalid value: domain"
        ),
        "path": [operation, "broadcast", field],
        "extensions": { "code": "no_permissions" },
    }] })
}

#[tokio::test]
async fn a_refused_request_changes_nothing() {
    let lab = Lab::new().await;
    // An inactive job on each domain, which a delete would remove.
    for domain in [OWN, OTHER] {
        let id = lab.start(domain).await;
        let abort = format!(
            "mutation {{ broadcast {{ abortBroadcast(domain: \"{domain}\", id: {id}) {{ ids }} }} }}"
        );
        assert_eq!(lab.query(GLOBAL, &abort).await.0, 200);
    }
    let before = (lab.jobs(OWN).await, lab.jobs(OTHER).await);
    assert_eq!(before.0.len(), 1);

    let own_start = start_field(OWN, "");
    let delete =
        |domain: &str| format!("deleteInactiveBroadcastsByDomain(domain: \"{domain}\") {{ ids }}");
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "own domain first",
            json!({ "query": format!(
                "mutation {{ broadcast {{ {own_start} {} }} }}",
                format!("abortBroadcast(domain: \"{OTHER}\", id: 1) {{ ids }}")
            ) }),
            "ROOT",
            "abortBroadcast",
        ),
        (
            "other domain first",
            json!({ "query": format!(
                "mutation {{ broadcast {{ o: {} {} }} }}",
                delete(OTHER),
                delete(OWN)
            ) }),
            "ROOT",
            "deleteInactiveBroadcastsByDomain",
        ),
        (
            "through variables, one with a default",
            json!({
                "query": "mutation M($own: DomainName!, $other: DomainName = \"Other.ORG\") { \
                    broadcast { a: deleteInactiveBroadcastsByDomain(domain: $own) { ids } \
                    b: deleteInactiveBroadcastsByDomain(domain: $other) { ids } } }",
                "operationName": "M",
                "variables": { "own": OWN },
            }),
            "M",
            "deleteInactiveBroadcastsByDomain",
        ),
        (
            "through a fragment and an inline fragment",
            json!({ "query": format!(
                "mutation {{ broadcast {{ ... on BroadcastAdminMutation {{ {own_start} }} ...F }} }} \
                 fragment F on BroadcastAdminMutation {{ x: {} }}",
                delete(OTHER)
            ) }),
            "ROOT",
            "deleteInactiveBroadcastsByDomain",
        ),
    ];
    for (case, body, operation, field) in cases {
        let (status, answer) = lab.post(DOMAIN_ADMIN, body).await;
        assert_eq!(status, 401, "{case}: {answer}");
        assert_eq!(answer, refusal(operation, field), "{case}");
        let after = (lab.jobs(OWN).await, lab.jobs(OTHER).await);
        assert_eq!(after, before, "{case}: the jobs changed");
    }

    // The same admin's request on its own domain alone runs.
    let (status, answer) = lab
        .query(
            DOMAIN_ADMIN,
            &format!("mutation {{ broadcast {{ {} }} }}", delete(OWN)),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(lab.jobs(OWN).await.is_empty());
}

#[tokio::test]
async fn get_broadcasts_limit_is_bounded() {
    let lab = Lab::new().await;
    lab.start(OWN).await;
    let list = |limit: i64| {
        format!("{{ broadcast {{ getBroadcasts(domain: \"{OWN}\", limit: {limit}) {{ id }} }} }}")
    };
    let (status, answer) = lab
        .query(GLOBAL, &list(super::schema::MAX_LIST_LIMIT))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer
            .pointer("/data/broadcast/getBroadcasts")
            .map(|jobs| jobs.as_array().map(Vec::len)),
        Some(Some(1))
    );
    let (status, answer) = lab
        .query(GLOBAL, &list(super::schema::MAX_LIST_LIMIT + 1))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(code(&answer), "bad_parameter");
    assert_eq!(
        answer.pointer("/errors/0/message"),
        Some(&json!("Invalid parameter: limit (at most 100)"))
    );
    assert_eq!(
        answer.pointer("/data/broadcast/getBroadcasts"),
        Some(&Value::Null)
    );
}

#[tokio::test]
async fn surrogate_pairs_and_variable_width_escapes_are_accepted() {
    let lab = Lab::new().await;
    let query = r#"mutation { broadcast { startBroadcast(name: "\uD83D\uDE00", domain: "example.com",
        messageSubject: "\u{1F600}\u{e9}", messageBody: "a\"\\u{1F600}", senderJid: "admin@example.com",
        messageRate: 10, recipientGroup: ALL_USERS_IN_DOMAIN) { ids } } }"#;
    let (status, answer) = lab.query(GLOBAL, query).await;
    assert_eq!(status, 200, "{answer}");
    let job = &lab.store.list_jobs(OWN, 10, 0).await.unwrap()[0];
    assert_eq!(
        (job.name.as_str(), job.subject.as_str(), job.body.as_str()),
        ("😀", "😀é", "a\"\\u{1F600}")
    );
    let lone = r#"{ broadcast { getBroadcasts(domain: "\uD83D") { id } } }"#;
    let (status, answer) = lab.query(GLOBAL, lone).await;
    assert_eq!((status, code(&answer)), (400, "parser_error"), "{answer}");
    let message = answer.pointer("/errors/0/message").and_then(Value::as_str);
    assert!(
        message.is_some_and(|m| m.contains("lone surrogate")),
        "{answer}"
    );
}

#[tokio::test]
async fn deep_nesting_is_refused_before_parsing() {
    let lab = Lab::new().await;
    // Deep enough to overflow a recursive parser's stack.
    let depth = 60_000;
    let query = format!(
        "{{ broadcast {{ getBroadcasts(domain: \"example.com\", limit: {}1{}) {{ id }} }} }}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let (status, answer) = lab.query(GLOBAL, &query).await;
    assert_eq!(
        (status, code(&answer)),
        (400, "query_too_complex"),
        "{answer}"
    );
}

/// The console's picker: the global admin manages every configured domain, a domain admin its
/// own.
#[tokio::test]
async fn broadcast_domains_are_the_callers() {
    let lab = Lab::new().await;
    let query = "query { broadcast { getBroadcastDomains } }";
    let mut every = vec![OWN, OTHER];
    every.sort();
    for (auth, expected) in [(GLOBAL, every), (DOMAIN_ADMIN, vec![OWN])] {
        let (status, answer) = lab.query(auth, query).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["data"]["broadcast"]["getBroadcastDomains"],
            json!(expected),
            "{auth}"
        );
    }
}

/// A refusal names the argument it concerns in `extensions.argument` (as the request wrote
/// it), besides MongooseIM's code and message, whether the value is out of its limits (200),
/// names no account (200) or does not fit its type (400, given as a variable or inline).
#[tokio::test]
async fn refusals_name_their_argument() {
    let lab = Lab::new().await;
    let start = "mutation S($name: String!, $body: String!, $sender: BareJID!, $rate: PosInt!) { \
        broadcast { startBroadcast(name: $name, domain: \"example.com\", messageSubject: \"\", \
        messageBody: $body, senderJid: $sender, messageRate: $rate, \
        recipientGroup: ALL_USERS_IN_DOMAIN) { ids } } }";
    let valid = json!({ "name": "n", "body": "b", "sender": "admin@example.com", "rate": 10 });
    let with = |key: &str, value: Value| {
        let mut variables = valid.clone();
        variables[key] = value;
        json!({ "query": start, "variables": variables })
    };
    let cases = [
        (with("body", json!("")), 200, "bad_parameter", "messageBody"),
        (with("name", json!("")), 200, "bad_parameter", "name"),
        (
            with("rate", json!(1001)),
            200,
            "bad_parameter",
            "messageRate",
        ),
        (
            with("sender", json!("nobody@example.com")),
            200,
            "sender_not_found",
            "senderJid",
        ),
        (
            with("sender", json!("admin@other.org")),
            200,
            "sender_not_found",
            "senderJid",
        ),
        (with("rate", json!(0)), 400, "input_coercion", "messageRate"),
        (
            with("sender", json!("")),
            400,
            "input_coercion",
            "senderJid",
        ),
    ];
    for (body, status, expected_code, argument) in cases {
        let (answered, answer) = lab.post(GLOBAL, body.clone()).await;
        assert_eq!(answered, status, "{body}: {answer}");
        assert_eq!(code(&answer), expected_code, "{body}: {answer}");
        assert_eq!(
            answer["errors"][0]["extensions"]["argument"], argument,
            "{body}: {answer}"
        );
    }
    let inline = "mutation { broadcast { startBroadcast(name: \"n\", domain: \"example.com\", \
        messageSubject: \"\", messageBody: \"b\", senderJid: \"admin@example.com\", \
        messageRate: 0, recipientGroup: ALL_USERS_IN_DOMAIN) { ids } } }";
    let (status, answer) = lab.query(GLOBAL, inline).await;
    assert_eq!((status, code(&answer)), (400, "input_coercion"), "{answer}");
    assert_eq!(answer["errors"][0]["extensions"]["argument"], "messageRate");
    let far = "mutation { broadcast { startBroadcast(name: \"n\", domain: \"example.com\", \
        messageSubject: \"\", messageBody: \"b\", senderJid: \"admin@example.com\", \
        messageRate: 10, recipientGroup: ALL_USERS_IN_DOMAIN, \
        startAt: \"2100-01-01T00:00:00Z\") { ids } } }";
    let (status, far) = lab.query(GLOBAL, far).await;
    assert_eq!((status, code(&far)), (200, "bad_parameter"), "{far}");
    assert_eq!(far["errors"][0]["extensions"]["argument"], "startAt");
    // MongooseIM's message is unchanged.
    assert_eq!(
        answer["errors"][0]["message"],
        "Input coercion failed for type PosInt with value 0. The reason it failed is: \
         Value is not a positive integer"
    );
    assert!(lab.jobs(OWN).await.is_empty());
}

/// A body over 256 KiB is read only from a caller whose credentials were checked first, up to
/// 8 MiB: a stranger's large body is refused unread (401), a larger one in any case (413).
#[tokio::test]
async fn large_bodies_need_credentials_first() {
    let lab = Lab::new().await;
    let routes = lab.api.clone().routes(([127, 0, 0, 1], 9).into());
    // A query padded with a comment to 1 MiB: valid GraphQL, too large for a stranger.
    let padded = |bytes: usize| {
        let query = format!(
            "query {{ broadcast {{ getBroadcastDomains }} }} #{}",
            "x".repeat(bytes)
        );
        json!({ "query": query }).to_string()
    };
    let send = |auth: Option<&str>, body: String| {
        let mut request = warp::test::request()
            .method("POST")
            .path("/api/graphql")
            .header("content-type", "application/json")
            .header("content-length", body.len().to_string());
        if let Some(auth) = auth {
            request = request.header("authorization", basic(auth));
        }
        request.body(body).reply(&routes)
    };
    let stranger = send(None, padded(1024 * 1024)).await;
    assert_eq!(stranger.status(), 401, "{:?}", stranger.body());
    let wrong = send(Some("admin:wrong"), padded(1024 * 1024)).await;
    assert_eq!(wrong.status(), 401, "{:?}", wrong.body());
    // The query text itself is bounded (128 KiB): a large body passes the listener and is
    // refused by the query bound, which shows it was read and parsed.
    let admin = send(Some(GLOBAL), padded(1024 * 1024)).await;
    let answer: Value = serde_json::from_slice(admin.body()).unwrap();
    assert_eq!(code(&answer), "query_too_complex", "{answer}");
    // A large body of variables, as a list of recipients is sent, is answered.
    let recipients: Vec<String> = (0..50_000)
        .map(|i| format!("user{i}@example.com"))
        .collect();
    let body = json!({
        "query": "query($r: [BareJID!]) { broadcast { countBroadcastRecipients(\
                  domain: \"example.com\", recipientGroup: LISTED, recipients: $r) \
                  { recipientCount unknownRecipientCount } } }",
        "variables": { "r": recipients },
    })
    .to_string();
    assert!(body.len() > 1024 * 1024);
    let listed = send(Some(GLOBAL), body).await;
    let answer: Value = serde_json::from_slice(listed.body()).unwrap();
    assert_eq!(listed.status(), 200, "{answer}");
    let count = &answer["data"]["broadcast"]["countBroadcastRecipients"];
    assert_eq!(count["recipientCount"], 0, "{answer}");
    assert_eq!(count["unknownRecipientCount"], 50_000, "{answer}");
    let too_large = send(Some(GLOBAL), padded(8 * 1024 * 1024)).await;
    assert_eq!(too_large.status(), 413);
}

/// A list refused for one of its JIDs names the `recipients` argument.
#[tokio::test]
async fn a_bad_recipient_names_the_list() {
    let lab = Lab::new().await;
    let count = "query C($r: [BareJID!]) { broadcast { countBroadcastRecipients(\
        domain: \"example.com\", recipientGroup: LISTED, recipients: $r) { recipientCount } } }";
    let (status, answer) = lab
        .post(
            GLOBAL,
            json!({ "query": count, "variables": { "r": ["u1@example.com", "not an address"] } }),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(code(&answer), "input_coercion", "{answer}");
    assert_eq!(
        answer.pointer("/errors/0/extensions/argument"),
        Some(&json!("recipients")),
        "{answer}"
    );
    let message = answer
        .pointer("/errors/0/message")
        .unwrap()
        .as_str()
        .unwrap();
    assert!(
        message.starts_with("Input coercion failed for type BareJID with value \"not an address\""),
        "{message}"
    );
}
