//! A client of the admin API for the command line: one typed method per `broadcast` operation.
//!
//! It lives in `admin` because only this module knows GraphQL: the query documents and their
//! variables stay in this file; error codes are read with [`ErrorCode`]. Callers see Rust types
//! and, on failure, a [`Failure`] kind they can turn into an exit code. Every value travels as a
//! GraphQL variable, so a body with quotes or newlines needs no escaping.
//!
//! `http://` and `https://` endpoints: HTTPS with rustls, trusting the system's certificate
//! authorities or only those of a file ([`TrustedRoots`]); a server whose certificate they do
//! not vouch for is [`ClientError::Untrusted`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{self, RootCertStore};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use super::codes::{ErrorCode, Failure};
pub use crate::job::{ExecutionState, JobKind, Status};

/// How long connecting to the admin listener may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole request may take; starting a job reads the domain's accounts.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Every field of `Broadcast`, in the order of [`ApiJob`].
const JOB_FIELDS: &str = "id name domain messageSubject messageBody senderJid messageRate \
    ownerNode createTimestamp startTimestamp stopTimestamp executionState abortionReason \
    recipientGroup recipientCount recipientsProcessed waitingReason kind amends \
    status startAt pausedAt language translations { language messageSubject messageBody } group \
    unknownRecipientCount unknownRecipients recipientsCounted";

const START: &str = "mutation Start($name: String!, $domain: DomainName!, \
    $subject: String!, $body: String!, $sender: BareJID!, $rate: PosInt!, $key: String, \
    $at: DateTime, $language: String, $translations: [BroadcastTranslationInput!], \
    $recipientGroup: BroadcastRecipientGroup!, $recipients: [BareJID!], $group: String) { \
    broadcast { startBroadcast(name: $name, domain: $domain, messageSubject: $subject, \
    messageBody: $body, senderJid: $sender, messageRate: $rate, \
    recipientGroup: $recipientGroup, recipients: $recipients, group: $group, \
    idempotencyKey: $key, startAt: $at, language: $language, translations: $translations) \
    { message ids } } }";
const PAUSE: &str = "mutation Pause($domain: DomainName!, $id: Int!) { broadcast { \
    pauseBroadcast(domain: $domain, id: $id) { message ids } } }";
const RESUME: &str = "mutation Resume($domain: DomainName!, $id: Int!) { broadcast { \
    resumeBroadcast(domain: $domain, id: $id) { message ids } } }";
const ABORT: &str = "mutation Abort($domain: DomainName!, $id: Int!) { broadcast { \
    abortBroadcast(domain: $domain, id: $id) { message ids } } }";
const ABORT_BY_DOMAIN: &str = "mutation AbortByDomain($domain: DomainName!) { broadcast { \
    abortBroadcastsByDomain(domain: $domain) { message ids } } }";
const DELETE_BY_IDS: &str = "mutation DeleteByIds($domain: DomainName!, $ids: [Int!]!) { \
    broadcast { deleteInactiveBroadcastsByIds(domain: $domain, ids: $ids) { message ids } } }";
const DELETE_BY_DOMAIN: &str = "mutation DeleteByDomain($domain: DomainName!) { broadcast { \
    deleteInactiveBroadcastsByDomain(domain: $domain) { message ids } } }";
const CORRECT: &str = "mutation Correct($domain: DomainName!, $id: Int!, $subject: String!, \
    $body: String!, $rate: PosInt!, $key: String, $language: String, \
    $translations: [BroadcastTranslationInput!]) { broadcast { correctBroadcast(domain: $domain, \
    id: $id, messageSubject: $subject, messageBody: $body, messageRate: $rate, \
    idempotencyKey: $key, language: $language, translations: $translations) { message ids } } }";
const RETRACT: &str = "mutation Retract($domain: DomainName!, $id: Int!, $rate: PosInt!, \
    $key: String) { broadcast { retractBroadcast(domain: $domain, id: $id, messageRate: $rate, \
    idempotencyKey: $key) { message ids } } }";
const COUNT: &str = "query Count($domain: DomainName!, $sample: NonNegInt) { broadcast { \
    countBroadcastRecipients(domain: $domain, sample: $sample) \
    { domain recipientCount sample } } }";
/// [`COUNT`] of a list or a group.
const COUNT_AUDIENCE: &str = "query CountAudience($domain: DomainName!, $sample: NonNegInt, \
    $recipientGroup: BroadcastRecipientGroup!, $recipients: [BareJID!], $group: String) { \
    broadcast { countBroadcastRecipients(domain: $domain, sample: $sample, \
    recipientGroup: $recipientGroup, recipients: $recipients, group: $group) \
    { domain recipientCount sample unknownRecipientCount unknownRecipients } } }";
/// [`COUNT`] for a follow-up of job `$amends`; a separate document, so that a plain count
/// does not need an instance that knows the argument.
const COUNT_AMENDS: &str = "query CountAmends($domain: DomainName!, $sample: NonNegInt, \
    $amends: Int!) { broadcast { \
    countBroadcastRecipients(domain: $domain, sample: $sample, amends: $amends) \
    { domain recipientCount sample } } }";

/// `getBroadcast` with every field of the job.
fn get_document() -> String {
    format!(
        "query Get($domain: DomainName!, $id: Int!) {{ broadcast {{ \
         getBroadcast(domain: $domain, id: $id) {{ {JOB_FIELDS} }} }} }}"
    )
}

/// `getBroadcasts` with every field of each job.
fn list_document() -> String {
    format!(
        "query List($domain: DomainName!, $limit: PosInt, $index: NonNegInt) {{ broadcast {{ \
         getBroadcasts(domain: $domain, limit: $limit, index: $index) {{ {JOB_FIELDS} }} }} }}"
    )
}

/// A broadcast job as the API returns it: every field of `Broadcast`, in the schema's order,
/// so that serialising it gives back the API's JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiJob {
    pub id: i64,
    pub name: String,
    pub domain: String,
    pub message_subject: String,
    pub message_body: String,
    pub sender_jid: String,
    pub message_rate: i64,
    /// The instance running the job, or `undefined`.
    pub owner_node: String,
    /// `YYYY-MM-DDTHH:MM:SSZ`, as the API renders it.
    pub create_timestamp: String,
    pub start_timestamp: Option<String>,
    pub stop_timestamp: Option<String>,
    pub execution_state: ExecutionState,
    pub abortion_reason: Option<String>,
    pub recipient_group: String,
    pub recipient_count: i64,
    pub recipients_processed: i64,
    /// Why no instance runs this running job now, if none does.
    pub waiting_reason: Option<String>,
    /// What the job sends: a broadcast, or a correction or retraction of one.
    pub kind: JobKind,
    /// For a correction or retraction, the broadcast it amends.
    pub amends: Option<i64>,
    /// Where the job is in its life, holds (SCHEDULED, PAUSED) included.
    pub status: Status,
    /// When the job was scheduled to start, if it was.
    pub start_at: Option<String>,
    /// When it was paused, while it is.
    pub paused_at: Option<String>,
    /// The language tag of the subject and body, if given.
    pub language: Option<String>,
    /// The message in other languages.
    pub translations: Vec<ApiTranslation>,
    /// The configured group it is for (recipient group GROUP).
    #[serde(default)]
    pub group: Option<String>,
    /// For a list (LISTED): how many names were not accounts.
    #[serde(default)]
    pub unknown_recipient_count: Option<i64>,
    /// For a list: the first names that were not accounts.
    #[serde(default)]
    pub unknown_recipients: Option<Vec<String>>,
    /// Whether `recipient_count` is the number of recipients, not only those processed while
    /// they are being counted.
    pub recipients_counted: bool,
}

/// The text of a message in one more language, as the API takes it
/// (`BroadcastTranslationInput`) and shows it (`BroadcastTranslation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiTranslation {
    pub language: String,
    pub message_subject: String,
    pub message_body: String,
}

/// `translations` as a request's variable: null for none.
fn translations_variable(translations: &[ApiTranslation]) -> Value {
    if translations.is_empty() {
        Value::Null
    } else {
        json!(translations)
    }
}

/// The answer of a mutation: what was done, to which jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutationResult {
    pub message: String,
    pub ids: Vec<i64>,
}

/// Who a broadcast to a domain would reach now (`countBroadcastRecipients`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipientsPreview {
    pub domain: String,
    pub recipient_count: i64,
    /// The first recipients, in sending order.
    pub sample: Vec<String>,
    /// For a list: how many names are not accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_recipient_count: Option<i64>,
    /// For a list: the first names that are not accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_recipients: Option<Vec<String>>,
}

/// Who a broadcast is for, as `startBroadcast` and `countBroadcastRecipients` take it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Audience {
    /// Every user of the domain.
    #[default]
    AllUsers,
    /// These bare JIDs (`LISTED`).
    Listed(Vec<String>),
    /// A group configured for the domain (`GROUP`).
    Group(String),
}

impl Audience {
    /// The variables `recipientGroup`, `recipients` and `group` of a document.
    fn variables(&self) -> [(&'static str, Value); 3] {
        let (group, recipients, name) = match self {
            Audience::AllUsers => ("ALL_USERS_IN_DOMAIN", Value::Null, Value::Null),
            Audience::Listed(list) => ("LISTED", json!(list), Value::Null),
            Audience::Group(name) => ("GROUP", Value::Null, json!(name)),
        };
        [
            ("recipientGroup", json!(group)),
            ("recipients", recipients),
            ("group", name),
        ]
    }
}

/// The arguments of `startBroadcast`; the recipients are every user of the domain. The server
/// checks every value.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub name: String,
    pub domain: String,
    pub subject: String,
    pub body: String,
    pub sender: String,
    pub rate: i64,
    /// Makes a retry answer with the job the first attempt created.
    pub idempotency_key: Option<String>,
    /// Schedules the job for this time (RFC 3339) instead of starting it now.
    pub start_at: Option<String>,
    /// Who it is for.
    pub audience: Audience,
    /// The language tag of the subject and body.
    pub language: Option<String>,
    /// The message in other languages.
    pub translations: Vec<ApiTranslation>,
}

/// The arguments of `correctBroadcast`: the new subject and body for everyone job `id` reached.
#[derive(Debug, Clone)]
pub struct CorrectRequest {
    pub domain: String,
    pub id: i64,
    pub subject: String,
    pub body: String,
    pub rate: i64,
    /// Makes a retry answer with the job the first attempt created.
    pub idempotency_key: Option<String>,
    /// The language tag of the corrected subject and body.
    pub language: Option<String>,
    /// The corrected message in other languages (the correction replaces every language).
    pub translations: Vec<ApiTranslation>,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API refused the request with an error code.
    #[error("{message} ({code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// Nothing answered: refused connection, timeout, reset.
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server's certificate is not signed by a trusted authority, or is not valid for the
    /// host or now.
    #[error(
        "the admin API at {url} presented a certificate that is not trusted ({reason}); give the \
         certificate authority that signed it with --ca-file (or XMPP_BROADCAST_CA_FILE)"
    )]
    Untrusted { url: String, reason: String },
    /// The certificate authorities to trust could not be read.
    #[error("cannot read the trusted certificate authorities from {from}: {reason}")]
    TrustedRoots { from: String, reason: String },
    /// Something answered, but not as the admin API does.
    #[error("unexpected answer from {url}: {detail}")]
    Unexpected {
        url: String,
        status: u16,
        detail: String,
    },
}

impl ClientError {
    /// The kind of failure, from the HTTP status and the error code.
    pub fn failure(&self) -> Failure {
        match self {
            ClientError::Api { status: 401, .. } => Failure::Unauthorized,
            ClientError::Api { code, status, .. } => match ErrorCode::parse(code) {
                Some(code) => code.failure(),
                None if *status >= 500 => Failure::Unavailable,
                None => Failure::Other,
            },
            ClientError::Unreachable { .. } => Failure::Unavailable,
            ClientError::Untrusted { .. } => Failure::Other,
            ClientError::TrustedRoots { .. } => Failure::InvalidInput,
            ClientError::Unexpected { status: 401, .. } => Failure::Unauthorized,
            ClientError::Unexpected { status, .. } if *status >= 500 => Failure::Unavailable,
            ClientError::Unexpected { .. } => Failure::Other,
        }
    }
}

/// Which certificate authorities an `https://` endpoint's certificate must come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TrustedRoots {
    /// The system's (`/etc/ssl/certs`, or `SSL_CERT_FILE` and `SSL_CERT_DIR`).
    #[default]
    System,
    /// Only the certificates of this PEM file (`--ca-file`): a private CA's, or a self-signed
    /// server certificate itself.
    File(PathBuf),
}

impl TrustedRoots {
    /// The certificates, as a store; an error says where they were looked for.
    fn store(&self) -> Result<RootCertStore, ClientError> {
        let mut store = RootCertStore::empty();
        match self {
            TrustedRoots::System => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    let reason = match found.errors.first() {
                        Some(err) => format!("none could be used ({err})"),
                        None => "there are none".to_owned(),
                    };
                    return Err(ClientError::TrustedRoots {
                        from: "the system's store".to_owned(),
                        reason: format!("{reason}; give them with --ca-file"),
                    });
                }
            }
            TrustedRoots::File(path) => {
                let failed = |reason: String| ClientError::TrustedRoots {
                    from: path.display().to_string(),
                    reason,
                };
                let pem = std::fs::read(path).map_err(|err| failed(err.to_string()))?;
                let certs = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|err| failed(format!("not a PEM file: {err}")))?;
                if certs.is_empty() {
                    return Err(failed(
                        "no certificate in the file (PEM: -----BEGIN CERTIFICATE-----)".to_owned(),
                    ));
                }
                for cert in certs {
                    store
                        .add(cert)
                        .map_err(|err| failed(format!("not a usable certificate: {err}")))?;
                }
            }
        }
        Ok(store)
    }
}

/// A builder of HTTP clients whose HTTPS trusts `roots` (none: no certificate authority, for
/// clients of `http://` only). Every reqwest client of this program is built here: reqwest is
/// built with rustls and no default crypto provider, so a client built without these TLS
/// settings would fail.
pub fn http_client_builder(
    roots: Option<&TrustedRoots>,
) -> Result<reqwest::ClientBuilder, ClientError> {
    let store = match roots {
        Some(roots) => roots.store()?,
        None => RootCertStore::empty(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ClientError::TrustedRoots {
            from: "the TLS settings".to_owned(),
            reason: err.to_string(),
        })?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(reqwest::Client::builder().tls_backend_preconfigured(config))
}

/// The TLS error in `err`'s causes, if the connection failed in its handshake.
fn tls_cause<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(err);
    while let Some(current) = cause {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // An I/O error's `source` is its inner error's source, not the inner error itself.
        cause = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    None
}

/// The admin API of one instance, as one user.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    /// `http://host:port/api/graphql`.
    endpoint: String,
    /// HTTP Basic user and password; none sends no `Authorization` header.
    credentials: Option<(String, String)>,
}

impl AdminClient {
    /// A client of the API at `endpoint` (`http://host:port/api/graphql`, or `https://`
    /// trusting `roots`); an error if the roots cannot be read.
    pub fn new(
        endpoint: String,
        credentials: Option<(String, String)>,
        roots: &TrustedRoots,
    ) -> Result<Self, ClientError> {
        let https = endpoint
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
        let http = http_client_builder(https.then_some(roots))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(super::CLIENT_IDLE_TIMEOUT)
            .build()
            .map_err(|err| ClientError::TrustedRoots {
                from: "the TLS settings".to_owned(),
                reason: innermost_cause(&err),
            })?;
        Ok(AdminClient {
            http,
            endpoint,
            credentials,
        })
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `startBroadcast`: returns the new job's id.
    pub async fn start(&self, broadcast: &StartRequest) -> Result<i64, ClientError> {
        let mut variables = json!({
            "name": broadcast.name,
            "domain": broadcast.domain,
            "subject": broadcast.subject,
            "body": broadcast.body,
            "sender": broadcast.sender,
            "rate": broadcast.rate,
            "key": broadcast.idempotency_key,
            "at": broadcast.start_at,
            "language": broadcast.language,
            "translations": translations_variable(&broadcast.translations),
        });
        for (name, value) in broadcast.audience.variables() {
            variables[name] = value;
        }
        self.create(START, "startBroadcast", variables).await
    }

    /// `correctBroadcast`: returns the id of the new job, which sends the correction.
    pub async fn correct(&self, correction: &CorrectRequest) -> Result<i64, ClientError> {
        let variables = json!({
            "domain": correction.domain,
            "id": correction.id,
            "subject": correction.subject,
            "body": correction.body,
            "rate": correction.rate,
            "key": correction.idempotency_key,
            "language": correction.language,
            "translations": translations_variable(&correction.translations),
        });
        self.create(CORRECT, "correctBroadcast", variables).await
    }

    /// `retractBroadcast`: retracts what job `id` of `domain` sent; returns the id of the new
    /// job, which sends the retraction. With `key`, a retry answers with the job the first
    /// attempt created.
    pub async fn retract(
        &self,
        domain: &str,
        id: i64,
        rate: i64,
        key: Option<&str>,
    ) -> Result<i64, ClientError> {
        let variables = json!({ "domain": domain, "id": id, "rate": rate, "key": key });
        self.create(RETRACT, "retractBroadcast", variables).await
    }

    /// `getBroadcast`: job `id` of `domain`.
    pub async fn get(&self, domain: &str, id: i64) -> Result<ApiJob, ClientError> {
        let variables = json!({ "domain": domain, "id": id });
        self.call(&get_document(), "getBroadcast", variables).await
    }

    /// `getBroadcasts`: the jobs of `domain`, newest first, `limit` of them from `index`.
    pub async fn list(
        &self,
        domain: &str,
        limit: u32,
        index: u32,
    ) -> Result<Vec<ApiJob>, ClientError> {
        let variables = json!({ "domain": domain, "limit": limit, "index": index });
        self.call(&list_document(), "getBroadcasts", variables)
            .await
    }

    /// `pauseBroadcast`: job `id` of `domain` stops sending until resumed.
    pub async fn pause(&self, domain: &str, id: i64) -> Result<MutationResult, ClientError> {
        let variables = json!({ "domain": domain, "id": id });
        self.call(PAUSE, "pauseBroadcast", variables).await
    }

    /// `resumeBroadcast`: paused job `id` of `domain` goes on from its committed progress.
    pub async fn resume(&self, domain: &str, id: i64) -> Result<MutationResult, ClientError> {
        let variables = json!({ "domain": domain, "id": id });
        self.call(RESUME, "resumeBroadcast", variables).await
    }

    /// `abortBroadcast`: stops job `id` of `domain`.
    pub async fn abort(&self, domain: &str, id: i64) -> Result<MutationResult, ClientError> {
        let variables = json!({ "domain": domain, "id": id });
        self.call(ABORT, "abortBroadcast", variables).await
    }

    /// `abortBroadcastsByDomain`: stops the running job of `domain`, if one runs.
    pub async fn abort_domain(&self, domain: &str) -> Result<MutationResult, ClientError> {
        let variables = json!({ "domain": domain });
        self.call(ABORT_BY_DOMAIN, "abortBroadcastsByDomain", variables)
            .await
    }

    /// `deleteInactiveBroadcastsByIds`: returns the ids actually deleted.
    pub async fn delete(&self, domain: &str, ids: &[i64]) -> Result<MutationResult, ClientError> {
        let variables = json!({ "domain": domain, "ids": ids });
        self.call(DELETE_BY_IDS, "deleteInactiveBroadcastsByIds", variables)
            .await
    }

    /// `deleteInactiveBroadcastsByDomain`: deletes every job of `domain` that is not running.
    pub async fn delete_all(&self, domain: &str) -> Result<MutationResult, ClientError> {
        let variables = json!({ "domain": domain });
        self.call(
            DELETE_BY_DOMAIN,
            "deleteInactiveBroadcastsByDomain",
            variables,
        )
        .await
    }

    /// `countBroadcastRecipients`: who a broadcast would reach — with `amends`, a correction or
    /// retraction of that job — and the first `sample` of them.
    pub async fn count_recipients(
        &self,
        domain: &str,
        sample: u32,
        amends: Option<i64>,
        audience: &Audience,
    ) -> Result<RecipientsPreview, ClientError> {
        let (document, variables) = match (amends, audience) {
            (None, Audience::AllUsers) => (COUNT, json!({ "domain": domain, "sample": sample })),
            (None, audience) => {
                let mut variables = json!({ "domain": domain, "sample": sample });
                for (name, value) in audience.variables() {
                    variables[name] = value;
                }
                (COUNT_AUDIENCE, variables)
            }
            (Some(id), _) => (
                COUNT_AMENDS,
                json!({ "domain": domain, "sample": sample, "amends": id }),
            ),
        };
        self.call(document, "countBroadcastRecipients", variables)
            .await
    }

    /// Runs a mutation that creates a job and returns the new job's id.
    async fn create(
        &self,
        document: &str,
        field: &str,
        variables: Value,
    ) -> Result<i64, ClientError> {
        let result: MutationResult = self.call(document, field, variables).await?;
        result
            .ids
            .first()
            .copied()
            .ok_or_else(|| ClientError::Unexpected {
                url: self.endpoint.clone(),
                status: 200,
                detail: format!("{field} returned no id"),
            })
    }

    /// Runs `document` and reads `data.broadcast.<field>` as a `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        document: &str,
        field: &str,
        variables: Value,
    ) -> Result<T, ClientError> {
        let mut request = self
            .http
            .post(&self.endpoint)
            .json(&json!({ "query": document, "variables": variables }));
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|err| self.unreachable(&err))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|err| self.unreachable(&err))?;
        let Ok(body) = serde_json::from_str::<Value>(&text) else {
            return Err(self.unexpected(status, format!("HTTP {status}: {}", excerpt(&text))));
        };
        if let Some(error) = body["errors"].get(0) {
            return Err(ClientError::Api {
                status,
                code: error["extensions"]["code"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_owned(),
                message: error["message"].as_str().unwrap_or_default().to_owned(),
            });
        }
        let value = body["data"]["broadcast"][field].clone();
        if status != 200 || value.is_null() {
            return Err(self.unexpected(status, format!("HTTP {status}: no {field} in {body}")));
        }
        serde_json::from_value(value)
            .map_err(|err| self.unexpected(status, format!("{field}: {err}")))
    }

    fn unreachable(&self, err: &reqwest::Error) -> ClientError {
        if let Some(rustls::Error::InvalidCertificate(reason)) = tls_cause(err) {
            return ClientError::Untrusted {
                url: self.endpoint.clone(),
                reason: reason.to_string(),
            };
        }
        let reason = if err.is_timeout() {
            "no answer in time".to_owned()
        } else {
            innermost_cause(err)
        };
        ClientError::Unreachable {
            url: self.endpoint.clone(),
            reason,
        }
    }

    fn unexpected(&self, status: u16, detail: String) -> ClientError {
        ClientError::Unexpected {
            url: self.endpoint.clone(),
            status,
            detail,
        }
    }
}

/// The innermost cause of `err`, which says what went wrong ("Connection refused").
fn innermost_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// The start of a body that is not JSON, on one line.
fn excerpt(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The job's fields are the schema's: the client asks for every field of `Broadcast`, in
    /// its order, and [`ApiJob`] serialises to the same names.
    #[test]
    fn the_client_asks_for_every_field_of_the_schemas_broadcast() {
        let sdl = super::super::build_schema(None).sdl();
        let start = sdl.find("type Broadcast {").expect("type Broadcast");
        let end = start + sdl[start..].find('}').expect("end of type Broadcast");
        let schema_fields: Vec<&str> = sdl[start..end]
            .lines()
            .filter_map(|line| line.trim().split_once(':').map(|(name, _)| name))
            .filter(|name| !name.contains(' '))
            .collect();
        let asked = job_field_names();
        let asked: Vec<&str> = asked.iter().map(String::as_str).collect();
        assert_eq!(asked, schema_fields);
        let serialised = serde_json::to_value(job()).unwrap();
        let names: Vec<&str> = serialised
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted = schema_fields.clone();
        sorted.sort_unstable();
        let mut names_sorted = names.clone();
        names_sorted.sort_unstable();
        assert_eq!(names_sorted, sorted);
    }

    fn job() -> ApiJob {
        ApiJob {
            id: 1,
            name: "n".into(),
            domain: "example.com".into(),
            message_subject: String::new(),
            message_body: "b".into(),
            sender_jid: "admin@example.com".into(),
            message_rate: 10,
            owner_node: "undefined".into(),
            create_timestamp: "2026-01-01T00:00:00Z".into(),
            start_timestamp: None,
            stop_timestamp: None,
            execution_state: ExecutionState::AbortAdmin,
            abortion_reason: None,
            recipient_group: "ALL_USERS_IN_DOMAIN".into(),
            recipient_count: 2,
            recipients_counted: true,
            recipients_processed: 0,
            waiting_reason: None,
            kind: JobKind::Correction,
            amends: Some(3),
            status: Status::AbortAdmin,
            start_at: Some("2026-01-01T00:00:00Z".into()),
            paused_at: None,
            language: Some("en".into()),
            translations: vec![ApiTranslation {
                language: "de".into(),
                message_subject: String::new(),
                message_body: "b".into(),
            }],
            group: None,
            unknown_recipient_count: None,
            unknown_recipients: None,
        }
    }

    /// The names of [`JOB_FIELDS`], without the fields selected inside them.
    fn job_field_names() -> Vec<String> {
        let mut depth = 0;
        let mut names = Vec::new();
        for word in JOB_FIELDS.split_whitespace() {
            match word {
                "{" => depth += 1,
                "}" => depth -= 1,
                name if depth == 0 => names.push(name.to_owned()),
                _ => {}
            }
        }
        names
    }

    #[test]
    fn a_job_serialises_to_the_selected_fields_in_order() {
        let text = serde_json::to_string(&job()).unwrap();
        let object: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(object.len(), job_field_names().len(), "{text}");
        let mut rest = text.as_str();
        for field in job_field_names() {
            let key = format!("\"{field}\":");
            let at = rest
                .find(&key)
                .unwrap_or_else(|| panic!("{field} missing or out of order in {text}"));
            rest = &rest[at + key.len()..];
        }
        assert!(
            text.contains("\"executionState\":\"ABORT_ADMIN\""),
            "{text}"
        );
        assert!(
            text.ends_with(
                "\"kind\":\"CORRECTION\",\"amends\":3,\"status\":\"ABORT_ADMIN\",\
                 \"startAt\":\"2026-01-01T00:00:00Z\",\"pausedAt\":null,\"language\":\"en\",\
                 \"translations\":[{\"language\":\"de\",\"messageSubject\":\"\",\"messageBody\":\"b\"}],\
                 \"group\":null,\"unknownRecipientCount\":null,\"unknownRecipients\":null,\
                 \"recipientsCounted\":true}"
            ),
            "{text}"
        );
        let back: ApiJob = serde_json::from_str(&text).unwrap();
        assert_eq!(back, job());
    }

    #[test]
    fn every_document_parses() {
        for document in [
            START,
            PAUSE,
            RESUME,
            ABORT,
            ABORT_BY_DOMAIN,
            DELETE_BY_IDS,
            DELETE_BY_DOMAIN,
            CORRECT,
            RETRACT,
            COUNT,
            COUNT_AUDIENCE,
            COUNT_AMENDS,
            &get_document(),
            &list_document(),
        ] {
            async_graphql::parser::parse_query(document)
                .unwrap_or_else(|err| panic!("{document}: {err}"));
        }
    }

    #[test]
    fn failures_follow_status_and_code() {
        let api = |status, code: &str| ClientError::Api {
            status,
            code: code.into(),
            message: String::new(),
        };
        assert_eq!(api(200, "no_recipients").failure(), Failure::InvalidInput);
        assert_eq!(api(400, "input_coercion").failure(), Failure::InvalidInput);
        assert_eq!(api(200, "domain_not_found").failure(), Failure::NotFound);
        assert_eq!(api(200, "not_running").failure(), Failure::Conflict);
        assert_eq!(api(200, "database_error").failure(), Failure::Unavailable);
        assert_eq!(
            api(401, "wrong_credentials").failure(),
            Failure::Unauthorized
        );
        assert_eq!(api(400, "parser_error").failure(), Failure::Other);
        let unexpected = |status| ClientError::Unexpected {
            url: String::new(),
            status,
            detail: String::new(),
        };
        assert_eq!(unexpected(502).failure(), Failure::Unavailable);
        assert_eq!(unexpected(404).failure(), Failure::Other);
        let untrusted = ClientError::Untrusted {
            url: String::new(),
            reason: String::new(),
        };
        assert_eq!(untrusted.failure(), Failure::Other);
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let https = "https://127.0.0.1:1/api/graphql".to_owned();
        let missing = TrustedRoots::File(dir.path().join("missing.pem"));
        let empty_path = dir.path().join("empty.pem");
        std::fs::write(&empty_path, "no certificate here\n").unwrap();
        let broken_path = dir.path().join("broken.pem");
        std::fs::write(
            &broken_path,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for (roots, needle) in [
            (missing, "No such file"),
            (TrustedRoots::File(empty_path), "no certificate in the file"),
            (TrustedRoots::File(broken_path), "not a PEM file"),
        ] {
            let err = AdminClient::new(https.clone(), None, &roots).unwrap_err();
            assert_eq!(err.failure(), Failure::InvalidInput, "{err}");
            assert!(err.to_string().contains(needle), "{err}");
            // A plain HTTP endpoint never reads them.
            AdminClient::new("http://127.0.0.1:1/api/graphql".into(), None, &roots).unwrap();
        }
    }
}
