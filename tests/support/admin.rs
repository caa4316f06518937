//! A client for the product's admin HTTP API: `/health` and the MongooseIM-compatible
//! `broadcast` GraphQL category at `/api/graphql` (HTTP Basic auth).

use std::time::Duration;

use serde_json::{Value, json};
use xmpp_broadcast::admin::client::{TrustedRoots, http_client_builder};

use super::Deadline;
use super::prosody::DOMAIN;
use super::secrets::assert_no_secret;

/// Every field of the `Broadcast` object.
const BROADCAST_FIELDS: &str = "id name domain messageSubject messageBody senderJid messageRate \
    ownerNode createTimestamp startTimestamp stopTimestamp executionState abortionReason \
    recipientGroup recipientCount recipientsCounted recipientsProcessed waitingReason kind amends status startAt \
    pausedAt language translations { language messageSubject messageBody } group \
    unknownRecipientCount unknownRecipients";

/// `startBroadcast` with every argument a variable (`name`, `domain`, `subject`, `body`,
/// `sender`, `rate`), selecting `message ids`; operation name `Start`.
pub const START_BROADCAST: &str = "mutation Start($name: String!, $domain: DomainName!, \
    $subject: String!, $body: String!, $sender: BareJID!, $rate: PosInt!) { broadcast { \
    startBroadcast(name: $name, domain: $domain, messageSubject: $subject, messageBody: $body, \
    senderJid: $sender, messageRate: $rate, recipientGroup: ALL_USERS_IN_DOMAIN) \
    { message ids } } }";
/// [`START_BROADCAST`] with xmpp-broadcast's `idempotencyKey` (`$key`).
pub const START_BROADCAST_ONCE: &str = "mutation Start($name: String!, $domain: DomainName!, \
    $subject: String!, $body: String!, $sender: BareJID!, $rate: PosInt!, $key: String) { \
    broadcast { startBroadcast(name: $name, domain: $domain, messageSubject: $subject, \
    messageBody: $body, senderJid: $sender, messageRate: $rate, \
    recipientGroup: ALL_USERS_IN_DOMAIN, idempotencyKey: $key) { message ids } } }";
/// [`START_BROADCAST`] with xmpp-broadcast's `startAt` (`$at`).
pub const START_BROADCAST_AT: &str = "mutation Start($name: String!, $domain: DomainName!, \
    $subject: String!, $body: String!, $sender: BareJID!, $rate: PosInt!, $at: DateTime) { \
    broadcast { startBroadcast(name: $name, domain: $domain, messageSubject: $subject, \
    messageBody: $body, senderJid: $sender, messageRate: $rate, \
    recipientGroup: ALL_USERS_IN_DOMAIN, startAt: $at) { message ids } } }";

/// Which credentials a request carries.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    /// The configured admin username and password.
    Admin,
    /// No `Authorization` header.
    None,
    /// Explicit Basic credentials.
    Basic(&'a str, &'a str),
}

/// The arguments of `startBroadcast`; `Default` is a valid job for [`DOMAIN`] sent by
/// `admin@example.com` (which the test must register).
#[derive(Clone, Debug)]
pub struct BroadcastSpec {
    pub name: String,
    pub domain: String,
    pub subject: String,
    pub body: String,
    pub sender: String,
    pub rate: i64,
}

impl Default for BroadcastSpec {
    fn default() -> Self {
        BroadcastSpec {
            name: "maintenance notice".into(),
            domain: DOMAIN.into(),
            subject: "Maintenance".into(),
            body: "The service will be down tonight from 22:00 to 23:00 UTC.".into(),
            sender: format!("admin@{DOMAIN}"),
            rate: 100,
        }
    }
}

impl BroadcastSpec {
    /// The variables of [`START_BROADCAST`] for this job.
    pub fn variables(&self) -> Value {
        json!({
            "name": self.name,
            "domain": self.domain,
            "subject": self.subject,
            "body": self.body,
            "sender": self.sender,
            "rate": self.rate,
        })
    }

    /// The variables of [`START_BROADCAST_ONCE`] for this job with the idempotency key `key`.
    pub fn variables_with_key(&self, key: &str) -> Value {
        let mut variables = self.variables();
        variables["key"] = json!(key);
        variables
    }
}

/// A GraphQL error as the API reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// Admin API client bound to one `serve` instance.
#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    base: String,
    username: String,
    password: String,
}

impl Admin {
    /// A client for `http://{listen}` using the given admin credentials.
    pub fn new(listen: &str, username: &str, password: &str) -> Self {
        Admin::connect(&format!("http://{listen}"), None, username, password)
    }

    /// A client for `https://{listen}` trusting only the CA certificate in `ca_file`.
    pub fn https(listen: &str, ca_file: &std::path::Path, username: &str, password: &str) -> Self {
        Admin::connect(
            &format!("https://{listen}"),
            Some(ca_file),
            username,
            password,
        )
    }

    fn connect(
        base: &str,
        ca_file: Option<&std::path::Path>,
        username: &str,
        password: &str,
    ) -> Self {
        let roots = ca_file.map(|path| TrustedRoots::File(path.to_owned()));
        Admin {
            // Idle connections are dropped before the listener closes them: a request on a
            // connection it is closing fails (an instance frozen past its idle timeout closes
            // them all when it wakes up).
            http: http_client_builder(roots.as_ref())
                .expect("TLS settings")
                .pool_idle_timeout(xmpp_broadcast::admin::CLIENT_IDLE_TIMEOUT)
                .build()
                .expect("an HTTP client"),
            base: base.to_owned(),
            username: username.into(),
            password: password.into(),
        }
    }

    /// The base URL, `http://` or `https://` and the listener's address.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /health` as JSON, or `None` while nothing answers.
    pub async fn health(&self) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}/health", self.base))
            .send()
            .await
            .ok()?;
        assert_eq!(response.status(), 200, "GET /health");
        let text = response.text().await.expect("read /health");
        assert_no_secret("GET /health", &text);
        Some(serde_json::from_str(&text).expect("/health returns JSON"))
    }

    /// Posts a GraphQL request; returns the HTTP status and the JSON body (a JSON string
    /// holding the raw text if the body is not JSON).
    pub async fn post(&self, query: &str, variables: Value, auth: Auth<'_>) -> (u16, Value) {
        let body = json!({ "query": query, "variables": variables });
        self.post_raw(body.to_string(), auth).await
    }

    /// Posts `body` as the request body (content type JSON) as it is: a whole GraphQL request
    /// (with `operationName`, say) or text that is not JSON at all. Returns as [`Admin::post`].
    pub async fn post_raw(&self, body: impl Into<reqwest::Body>, auth: Auth<'_>) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}/api/graphql", self.base))
            .header("content-type", "application/json")
            .body(body);
        let request = match auth {
            Auth::Admin => request.basic_auth(&self.username, Some(&self.password)),
            Auth::None => request,
            Auth::Basic(user, password) => request.basic_auth(user, Some(password)),
        };
        let response = request.send().await.expect("POST /api/graphql");
        let status = response.status().as_u16();
        let text = response.text().await.expect("read GraphQL response");
        assert_no_secret("an answer of /api/graphql", &text);
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// `GET {path}` without credentials: the status, the content type and the body text.
    pub async fn get(&self, path: &str) -> (u16, String, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {path}: {err}"));
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.expect("read GET response");
        assert_no_secret(&format!("GET {path}"), &text);
        (status, content_type, text)
    }

    /// The `/metrics` text (Prometheus exposition format).
    pub async fn metrics(&self) -> String {
        let (status, _, text) = self.get("/metrics").await;
        assert_eq!(status, 200, "GET /metrics: {text}");
        text
    }

    /// The value of the sample `name{host_type="<host_type>"}` in `/metrics`, if present.
    pub async fn metric(&self, name: &str, host_type: &str) -> Option<f64> {
        self.sample(&format!("{name}{{host_type=\"{host_type}\"}}"))
            .await
    }

    /// The value of the sample `name` without labels in `/metrics`, if present.
    pub async fn unlabelled_metric(&self, name: &str) -> Option<f64> {
        self.sample(name).await
    }

    /// The value of `series` (a name and its labels as written) in `/metrics`, if present.
    async fn sample(&self, series: &str) -> Option<f64> {
        let prefix = format!("{series} ");
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|value| {
                value
                    .parse()
                    .unwrap_or_else(|_| panic!("{series}: {value}"))
            })
    }

    /// Runs `query` as the admin; returns `data` or the first error.
    pub async fn graphql(&self, query: &str, variables: Value) -> Result<Value, ApiError> {
        let (status, body) = self.post(query, variables, Auth::Admin).await;
        match body["errors"].get(0) {
            Some(error) => Err(ApiError {
                status,
                code: error["extensions"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                message: error["message"].as_str().unwrap_or_default().into(),
            }),
            None => {
                assert_eq!(status, 200, "GraphQL response without errors: {body}");
                Ok(body["data"].clone())
            }
        }
    }

    /// `startBroadcast`; returns the new job id.
    pub async fn start_broadcast(&self, spec: &BroadcastSpec) -> Result<i64, ApiError> {
        let data = self.graphql(START_BROADCAST, spec.variables()).await?;
        Ok(started(&data))
    }

    /// `startBroadcast` of `spec` with the idempotency key `key`: returns the id of the job
    /// the key created (now or earlier).
    pub async fn start_broadcast_once(
        &self,
        spec: &BroadcastSpec,
        key: &str,
    ) -> Result<i64, ApiError> {
        let variables = spec.variables_with_key(key);
        let data = self.graphql(START_BROADCAST_ONCE, variables).await?;
        Ok(started(&data))
    }

    /// `startBroadcast` of `spec` scheduled for `at` (RFC 3339); returns the job id and the
    /// answer's message.
    pub async fn start_broadcast_at(
        &self,
        spec: &BroadcastSpec,
        at: &str,
    ) -> Result<(i64, String), ApiError> {
        let mut variables = spec.variables();
        variables["at"] = json!(at);
        let data = self.graphql(START_BROADCAST_AT, variables).await?;
        let result = &data["broadcast"]["startBroadcast"];
        let message = result["message"].as_str().unwrap_or_default().to_owned();
        let ids = result["ids"].as_array().expect("ids is a list");
        assert_eq!(ids.len(), 1, "startBroadcast returns one id: {data}");
        Ok((ids[0].as_i64().expect("integer id"), message))
    }

    /// `pauseBroadcast` (`resume`: `resumeBroadcast`) of job `id` on [`DOMAIN`].
    pub async fn hold_broadcast(&self, id: i64, resume: bool) -> Result<(), ApiError> {
        let field = if resume {
            "resumeBroadcast"
        } else {
            "pauseBroadcast"
        };
        let query = format!(
            "mutation Hold($domain: DomainName!, $id: Int!) {{ broadcast {{ \
             {field}(domain: $domain, id: $id) {{ message ids }} }} }}"
        );
        let data = self
            .graphql(&query, json!({ "domain": DOMAIN, "id": id }))
            .await?;
        assert_eq!(data["broadcast"][field]["ids"], json!([id]), "{data}");
        Ok(())
    }

    /// `abortBroadcast` of job `id` on [`DOMAIN`].
    pub async fn abort_broadcast(&self, id: i64) -> Result<(), ApiError> {
        let query = "mutation Abort($domain: DomainName!, $id: Int!) { broadcast { \
                     abortBroadcast(domain: $domain, id: $id) { message ids } } }";
        let data = self
            .graphql(query, json!({ "domain": DOMAIN, "id": id }))
            .await?;
        let result = &data["broadcast"]["abortBroadcast"];
        assert_eq!(result["ids"], json!([id]), "{data}");
        Ok(())
    }

    /// `getBroadcast` of job `id` on [`DOMAIN`] with every field; panics on errors.
    pub async fn get_broadcast(&self, id: i64) -> Value {
        self.get_broadcast_in(DOMAIN, id).await
    }

    /// `getBroadcast` of job `id` on `domain` with every field; panics on errors.
    pub async fn get_broadcast_in(&self, domain: &str, id: i64) -> Value {
        let query = format!(
            "query Get($domain: DomainName!, $id: Int!) {{ broadcast {{ \
             getBroadcast(domain: $domain, id: $id) {{ {BROADCAST_FIELDS} }} }} }}"
        );
        let data = self
            .graphql(&query, json!({ "domain": domain, "id": id }))
            .await
            .unwrap_or_else(|e| panic!("getBroadcast {id}: {e:?}"));
        data["broadcast"]["getBroadcast"].clone()
    }

    /// `getBroadcasts` of `domain` (`id` and `executionState`, newest first).
    pub async fn get_broadcasts(&self, domain: &str) -> Vec<Value> {
        let query = "query List($domain: DomainName!) { broadcast { \
                     getBroadcasts(domain: $domain) { id executionState } } }";
        let data = self
            .graphql(query, json!({ "domain": domain }))
            .await
            .unwrap_or_else(|e| panic!("getBroadcasts {domain}: {e:?}"));
        data["broadcast"]["getBroadcasts"]
            .as_array()
            .expect("getBroadcasts returns a list")
            .clone()
    }

    /// Polls `getBroadcast` until the job is in `state`; panics if it ends in another state.
    pub async fn wait_state(&self, id: i64, state: &str, timeout: Duration) -> Value {
        self.wait_state_in(DOMAIN, id, state, timeout).await
    }

    /// [`Admin::wait_state`] for a job of `domain`.
    pub async fn wait_state_in(
        &self,
        domain: &str,
        id: i64,
        state: &str,
        timeout: Duration,
    ) -> Value {
        let deadline = Deadline::after(timeout, format!("job {id} to be {state}"));
        loop {
            let job = self.get_broadcast_in(domain, id).await;
            let current = job["executionState"].as_str().unwrap_or_default();
            if current == state {
                return job;
            }
            assert_eq!(current, "RUNNING", "job {id} ended in another state: {job}");
            deadline.tick().await;
        }
    }

    /// Polls `getBroadcast` until the job's `status` is `status`.
    pub async fn wait_status(&self, id: i64, status: &str, timeout: Duration) -> Value {
        let deadline = Deadline::after(timeout, format!("job {id} to be {status}"));
        loop {
            let job = self.get_broadcast(id).await;
            if job["status"] == status {
                return job;
            }
            deadline.tick().await;
        }
    }

    /// Polls `getBroadcast` until at least `processed` recipients are committed.
    pub async fn wait_processed(&self, id: i64, processed: i64, timeout: Duration) -> Value {
        let deadline = Deadline::after(timeout, format!("job {id} to process {processed}"));
        loop {
            let job = self.get_broadcast(id).await;
            if job["recipientsProcessed"].as_i64().unwrap_or_default() >= processed {
                return job;
            }
            deadline.tick().await;
        }
    }
}

/// Panics unless `value` is a timestamp in the API's `YYYY-MM-DDTHH:MM:SSZ` format.
pub fn assert_timestamp(field: &str, value: &Value) {
    let text = value.as_str().unwrap_or_default();
    let parsed = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%SZ");
    assert!(
        text.len() == 20 && parsed.is_ok(),
        "{field} is not a YYYY-MM-DDTHH:MM:SSZ timestamp: {value}"
    );
}

/// The id `startBroadcast` answered in `data`, checking its whole answer.
fn started(data: &Value) -> i64 {
    let result = &data["broadcast"]["startBroadcast"];
    assert_eq!(result["message"], "Broadcast job started", "{data}");
    let ids = result["ids"].as_array().expect("ids is a list");
    assert_eq!(ids.len(), 1, "startBroadcast returns one id: {data}");
    ids[0].as_i64().expect("integer id")
}
