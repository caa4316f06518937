//! The admin HTTP listener: the GraphQL API at `/api/graphql` (POST; GraphiQL on GET, served
//! with its scripts from the binary, [`graphiql`]), `/metrics` (Prometheus) and `/health`, both
//! of which say whether the job database is usable, and the web [`console`] at `/`; over HTTPS
//! when given a certificate ([`tls`]).
//!
//! Only this module knows GraphQL. It follows MongooseIM's HTTP rules: 401 with
//! `no_permissions` or `wrong_credentials` before anything runs, 400 for requests that cannot be
//! parsed or whose arguments cannot be coerced (`parser_error`, `input_coercion`), and 200 with a
//! null field and an `extensions.code` for operation errors. A domain admin acting on another
//! domain gets 401 `no_permissions`, decided on the document before any field runs. A query over
//! the bounds of `document` (size, fragments expanded) gets 400 `query_too_complex` without being
//! validated or run.
//!
//! Before that, a POST that a web page of another origin could have sent is refused
//! ([`same_origin`]), logins are limited ([`login`]) and connections are bounded
//! ([`listener`]); each limit has its own status and code (README, security section).

mod auth;
pub mod client;
pub mod codes;
mod coercion;
pub mod console;
mod document;
mod graphiql;
mod listener;
#[cfg(test)]
mod listener_tests;
mod login;
mod same_origin;
mod scalars;
mod schema;
mod source;
mod tls;

use std::net::{IpAddr, SocketAddr};

use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

pub use auth::{Credentials, GlobalPassword, Principal, hash_password};
pub use codes::ErrorCode;
pub use listener::{
    CLIENT_IDLE_TIMEOUT, HEADER_TIMEOUT, ListenerLimits, MAX_CONNECTIONS, STALL_TIMEOUT,
};
pub use login::{
    FAILURE_WINDOW, LoginLimits, MAX_FAILURES_PER_ACCOUNT, MAX_FAILURES_PER_CLIENT, MAX_VERIFIED,
    VERIFIER_THREADS, VERIFY_QUEUE,
};
pub use schema::{AdminSchema, build as build_schema};
pub use tls::{Tls, TlsError};

use crate::broadcast::Safety;
use crate::metrics::Metrics;
use crate::xmpp::Connection;
use auth::Denied;
use schema::Caller;

/// What the listener serves.
#[derive(Clone)]
pub struct AdminApi {
    schema: AdminSchema,
    credentials: Credentials,
    connection: Connection,
    /// Whether the job database is usable: the instance's last contact with it (taking it up
    /// at start, then each lease renewal) succeeded, so it accepts jobs.
    job_database: Safety,
    metrics: Metrics,
    /// Requests executed at once, each on a blocking thread ([`MAX_EXECUTIONS`]).
    executions: std::sync::Arc<tokio::sync::Semaphore>,
    /// HTTPS, if the listener has a certificate.
    tls: Option<Tls>,
    /// Bodies larger than [`MAX_BODY`] being read ([`LARGE_BODIES`]).
    large_bodies: std::sync::Arc<tokio::sync::Semaphore>,
}

/// GraphQL requests executed at once. Each runs on a thread of tokio's blocking pool, off the
/// runtime's one worker thread; the bound keeps the memory of large answers bounded and leaves
/// a core to the sending.
const MAX_EXECUTIONS: usize = 2;

/// Largest request body accepted from anyone.
const MAX_BODY: u64 = 256 * 1024;

/// Largest request body accepted from a caller whose credentials were checked before the body
/// was read: a list of recipients (100,000 JIDs) or a message in several languages.
const MAX_LARGE_BODY: u64 = 8 * 1024 * 1024;

/// Bodies larger than [`MAX_BODY`] read at once; another waits for its turn. With
/// [`MAX_EXECUTIONS`], this bounds the memory that large requests take.
const LARGE_BODIES: usize = 2;

impl AdminApi {
    /// The API of an instance.
    pub fn new(
        schema: AdminSchema,
        credentials: Credentials,
        connection: Connection,
        job_database: Safety,
        metrics: Metrics,
    ) -> Self {
        AdminApi {
            schema,
            credentials,
            connection,
            job_database,
            metrics,
            executions: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_EXECUTIONS)),
            tls: None,
            large_bodies: std::sync::Arc::new(tokio::sync::Semaphore::new(LARGE_BODIES)),
        }
    }

    /// The same API served over HTTPS with `tls`'s certificate (current at each connection).
    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Serves until `stop` fires, with the documented [`ListenerLimits`]. The listener is bound
    /// by the caller, so that a port in use is reported at start-up.
    pub async fn serve(self, listener: TcpListener, stop: CancellationToken) {
        self.serve_with(listener, stop, ListenerLimits::default())
            .await;
    }

    /// As [`AdminApi::serve`], with other connection limits.
    pub async fn serve_with(
        self,
        listener: TcpListener,
        stop: CancellationToken,
        limits: ListenerLimits,
    ) {
        let tls = self.tls.clone();
        listener::run(listener, limits, tls, stop, move |client| {
            hyper_util::service::TowerToHyperService::new(warp::service(
                self.clone().routes(client),
            ))
        })
        .await;
    }

    /// Every route, for a request from `client`.
    fn routes(
        self,
        client: SocketAddr,
    ) -> impl Filter<Extract = (impl Reply,), Error = warp::Rejection> + Clone + Send + Sync + 'static
    {
        let cross_site = warp::path!("api" / "graphql")
            .and(warp::post())
            .and(warp::header::headers_cloned())
            .and_then(|headers: warp::http::HeaderMap| async move {
                match same_origin::check(&headers) {
                    Ok(()) => Err(warp::reject::not_found()),
                    Err(refusal) => Ok(error_reply(refusal.code(), refusal.message(), None)),
                }
            });
        let api = self.clone();
        let graphql = warp::path!("api" / "graphql")
            .and(warp::post())
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::body::content_length_limit(MAX_LARGE_BODY))
            .and(warp::header::<u64>("content-length"))
            .and(warp::body::stream())
            .then(move |authorization: Option<String>, length: u64, body| {
                let api = api.clone();
                async move {
                    api.large_or_small(authorization.as_deref(), client.ip(), length, body)
                        .await
                }
            });
        let connection = self.connection.clone();
        let job_database = self.job_database.clone();
        let health = warp::path!("health").and(warp::get()).map(move || {
            let xmpp = if connection.is_connected() {
                "connected"
            } else {
                "disconnected"
            };
            // 200 either way: the instance serves and recovers by itself; `status` says
            // whether it can run jobs as far as its job database goes.
            let (status, database) = if job_database.accepts_new_jobs() {
                ("ok", "up")
            } else {
                ("degraded", "down")
            };
            warp::reply::json(&json!({ "status": status, "xmpp": xmpp, "job_database": database }))
        });
        let metrics = self.metrics.clone();
        let job_database = self.job_database.clone();
        let prometheus = warp::path!("metrics").and(warp::get()).map(move || {
            metrics.job_database_up(job_database.accepts_new_jobs());
            warp::reply::with_header(
                metrics.render(),
                "content-type",
                "text/plain; version=0.0.4; charset=utf-8",
            )
        });
        cross_site
            .or(graphql)
            .or(graphiql::routes())
            .or(health)
            .or(prometheus)
            .or(console::routes())
    }

    /// Reads a request's body of `length` bytes (at most [`MAX_LARGE_BODY`]) and answers it. A
    /// body larger than [`MAX_BODY`] is read only after the caller's credentials have been
    /// checked, [`LARGE_BODIES`] at a time, so that no one unauthenticated makes the instance
    /// hold megabytes.
    async fn large_or_small(
        &self,
        authorization: Option<&str>,
        client: IpAddr,
        length: u64,
        body: impl futures::Stream<Item = Result<impl bytes::Buf, warp::Error>> + Unpin,
    ) -> Response {
        if length <= MAX_BODY {
            return match read_body(body, length).await {
                Some(body) => self.graphql(authorization, client, &body, None).await,
                None => unreadable_body(),
            };
        }
        let principal = match self.credentials.check(authorization, Some(client)).await {
            Ok(principal) => principal,
            Err(denied) => return denied_reply(denied, "ROOT"),
        };
        // The semaphore is never closed, so a permit always comes.
        let _permit = self.large_bodies.acquire().await.ok();
        match read_body(body, length).await {
            Some(body) => {
                self.graphql(authorization, client, &body, Some(principal))
                    .await
            }
            None => unreadable_body(),
        }
    }

    /// Answers a request whose body is `body`; its caller's credentials are checked, unless
    /// they were before the body was read (`checked`).
    async fn graphql(
        &self,
        authorization: Option<&str>,
        client: IpAddr,
        body: &[u8],
        checked: Option<Principal>,
    ) -> Response {
        let request = match parse_request(body) {
            Ok(request) => request,
            Err((code, message)) => {
                return error_reply(code, message, None);
            }
        };
        let operation = request
            .operation_name
            .clone()
            .unwrap_or_else(|| "ROOT".to_owned());
        let principal = match checked {
            Some(principal) => principal,
            None => match self.credentials.check(authorization, Some(client)).await {
                Ok(principal) => principal,
                Err(denied) => return denied_reply(denied, &operation),
            },
        };
        if request.query.trim().is_empty() {
            return error_reply(ErrorCode::NoQuerySupplied, "No query supplied", None);
        }
        let checked = match document::check(
            &request.query,
            request.operation_name.as_deref(),
            &request.variables,
        ) {
            Ok(checked) => checked,
            Err(refusal) => {
                return error_reply(refusal.code(), &refusal.to_string(), None);
            }
        };
        // Every domain the operation names is checked before any field runs, so that a refused
        // request has changed nothing; each resolver checks its own domain again.
        if let Some(refused) = checked
            .domains
            .iter()
            .find(|used| !principal.may_manage(&used.domain))
        {
            let (message, path) = schema::permission_denied(&operation, &refused.field);
            return no_permissions_reply(&message, Some(json!(path)));
        }
        let document = checked.document;
        let variables = request.variables.clone();
        let mut request = request.data(Caller {
            principal,
            operation,
        });
        request.query = checked.query;
        request.set_parsed_query(document.clone());
        // The answer is built off the runtime's thread, which sends every job's messages: a
        // large answer (a hundred jobs' bodies, several times over) takes a noticeable time to
        // resolve and serialise.
        // The semaphore is never closed, so a permit always comes.
        let _permit = self.executions.acquire().await.ok();
        let schema = self.schema.clone();
        let runtime = tokio::runtime::Handle::current();
        let answered = tokio::task::spawn_blocking(move || {
            let response = runtime.block_on(schema.execute(request));
            answer(&response, &document, &variables)
        })
        .await;
        answered.unwrap_or_else(|_| {
            error_reply(
                ErrorCode::TemporarilyUnavailable,
                "The request could not be answered",
                None,
            )
        })
    }
}

/// The body of a request that declared `length` bytes: `None` if the connection failed or
/// sent more than it declared.
async fn read_body(
    mut body: impl futures::Stream<Item = Result<impl bytes::Buf, warp::Error>> + Unpin,
    length: u64,
) -> Option<Vec<u8>> {
    use futures::StreamExt as _;
    let mut read = Vec::with_capacity(usize::try_from(length).ok()?);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.ok()?;
        while chunk.has_remaining() {
            let bytes = chunk.chunk();
            if (read.len() + bytes.len()) as u64 > length {
                return None;
            }
            read.extend_from_slice(bytes);
            let taken = bytes.len();
            chunk.advance(taken);
        }
    }
    Some(read)
}

/// The answer to a body that could not be read as declared.
fn unreadable_body() -> Response {
    error_reply(ErrorCode::InvalidJsonBody, "Invalid JSON body", None)
}

/// The HTTP answer to an executed request.
fn answer(
    response: &async_graphql::Response,
    document: &async_graphql::parser::types::ExecutableDocument,
    variables: &async_graphql::Variables,
) -> Response {
    if let Some(refusal) = permission_refusal(response) {
        return refusal;
    }
    let status = classify(response);
    if status != StatusCode::BAD_REQUEST {
        return warp::reply::with_status(warp::reply::json(response), status).into_response();
    }
    let mut reply = serde_json::to_value(response).unwrap_or_else(|_| json!({}));
    mark_request_errors(&mut reply, response, document, variables);
    warp::reply::with_status(warp::reply::json(&reply), status).into_response()
}

/// Reads a request body as MongooseIM does: `variables` may be an object, a JSON-encoded
/// object or null, and variables set to null are dropped so that defaults apply.
fn parse_request(body: &[u8]) -> Result<async_graphql::Request, (ErrorCode, &'static str)> {
    const INVALID_BODY: (ErrorCode, &str) = (ErrorCode::InvalidJsonBody, "Invalid JSON body");
    const INVALID_VARIABLES: (ErrorCode, &str) =
        (ErrorCode::VariablesInvalidJson, "Invalid variables JSON");
    let mut body: serde_json::Value = serde_json::from_slice(body).map_err(|_| INVALID_BODY)?;
    let object = body.as_object_mut().ok_or(INVALID_BODY)?;
    let variables = match object.remove("variables") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(text)) if text.trim().is_empty() => None,
        Some(serde_json::Value::String(text)) => {
            Some(serde_json::from_str(&text).map_err(|_| INVALID_VARIABLES)?)
        }
        Some(variables) => Some(variables),
    };
    if let Some(variables) = variables {
        let variables = without_nulls(variables).ok_or(INVALID_VARIABLES)?;
        object.insert("variables".into(), variables);
    }
    serde_json::from_value(body).map_err(|_| INVALID_BODY)
}

fn without_nulls(variables: serde_json::Value) -> Option<serde_json::Value> {
    match variables {
        serde_json::Value::Object(mut map) => {
            map.retain(|_, value| !value.is_null());
            Some(serde_json::Value::Object(map))
        }
        serde_json::Value::Null => Some(serde_json::Value::Object(Default::default())),
        _ => None,
    }
}

/// 200 when every error is an operation error (it carries a code); 400 when the request itself
/// was wrong: unknown fields, bad argument values and the like.
fn classify(response: &async_graphql::Response) -> StatusCode {
    let request_error = response.errors.iter().any(|err| {
        err.extensions
            .as_ref()
            .is_none_or(|extensions| extensions.get("code").is_none())
    });
    if request_error {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    }
}

/// Gives each error without a code MongooseIM's: `input_coercion` for a value that does not fit
/// its type (with MongooseIM's message where the value is found), `validation_error` for
/// anything else wrong with the document. Nothing ran, so there is no `data`.
fn mark_request_errors(
    reply: &mut serde_json::Value,
    response: &async_graphql::Response,
    document: &async_graphql::parser::types::ExecutableDocument,
    variables: &async_graphql::Variables,
) {
    if let Some(object) = reply.as_object_mut() {
        object.remove("data");
    }
    let Some(errors) = reply.get_mut("errors").and_then(|e| e.as_array_mut()) else {
        return;
    };
    for (error, source) in errors.iter_mut().zip(&response.errors) {
        if error.pointer("/extensions/code").is_some() {
            continue;
        }
        let message = source.message.as_str();
        let coercion = message.contains("Failed to parse")
            || message.starts_with("Invalid value for argument");
        let explained = coercion::refused_scalar(message).and_then(|scalar| {
            let position = *source.locations.first()?;
            let index = coercion::refused_index(message);
            coercion::explain(document, variables, position, scalar, index)
        });
        if let Some(explained) = explained {
            error["message"] = json!(explained);
        }
        let code = if coercion {
            ErrorCode::InputCoercion
        } else {
            ErrorCode::ValidationError
        };
        error["extensions"] = json!({ "code": code.as_str() });
        if let Some(argument) = coercion
            .then(|| coercion::refused_argument(message))
            .flatten()
        {
            error["extensions"][schema::ARGUMENT] = json!(argument);
        }
    }
}

fn denied_reply(denied: Denied, operation: &str) -> Response {
    let (code, message, path) = match denied {
        Denied::Limited(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let message = format!(
                "Too many failed logins from this address or for this account; try again in \
                 {seconds} s"
            );
            let reply = error_reply(ErrorCode::TooManyLoginFailures, &message, None);
            return warp::reply::with_header(reply, "retry-after", seconds.to_string())
                .into_response();
        }
        Denied::Busy => {
            let reply = error_reply(
                ErrorCode::LoginBusy,
                "Too many logins are being verified; try again shortly",
                None,
            );
            return warp::reply::with_header(reply, "retry-after", "1").into_response();
        }
        Denied::Missing => (
            ErrorCode::NoPermissions,
            format!("Cannot execute query {operation} without permissions"),
            Some(vec![operation.to_owned()]),
        ),
        Denied::Wrong => (
            ErrorCode::WrongCredentials,
            "The provided credentials are wrong".to_owned(),
            None,
        ),
    };
    let reply = error_reply(code, &message, path);
    warp::reply::with_header(reply, "www-authenticate", "Basic realm=\"xmpp-broadcast\"")
        .into_response()
}

/// A domain admin reached for another domain: the whole request is refused with 401.
fn permission_refusal(response: &async_graphql::Response) -> Option<Response> {
    let error = response.errors.iter().find(|err| {
        err.extensions
            .as_ref()
            .and_then(|extensions| extensions.get("code"))
            .is_some_and(|code| {
                *code == async_graphql::Value::from(ErrorCode::NoPermissions.as_str())
            })
    })?;
    let path = error
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get("path"))
        .and_then(|path| path.clone().into_json().ok());
    Some(no_permissions_reply(&error.message, path))
}

/// 401 `no_permissions` for a domain the caller may not manage.
fn no_permissions_reply(message: &str, path: Option<serde_json::Value>) -> Response {
    let body = json!({ "errors": [{
        "message": message,
        "path": path,
        "extensions": { "code": ErrorCode::NoPermissions.as_str() },
    }] });
    let status = http_status(ErrorCode::NoPermissions);
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// An answer carrying one error with `code`, under the code's HTTP status.
fn error_reply(code: ErrorCode, message: &str, path: Option<Vec<String>>) -> Response {
    let mut error = json!({ "message": message, "extensions": { "code": code.as_str() } });
    if let Some(path) = path {
        error["path"] = json!(path);
    }
    let body = warp::reply::json(&json!({ "errors": [error] }));
    warp::reply::with_status(body, http_status(code)).into_response()
}

/// The HTTP status of an answer carrying `code` ([`ErrorCode::http_status`]).
fn http_status(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Binds the admin listener, with a message that names the key on failure.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await.map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!("cannot listen on admin.listen = {address}: {err}"),
        )
    })
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
