//! The admin listener served in process on 127.0.0.1:0: cross-site refusals, login limits over
//! HTTP, timeouts and the connection limit.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::auth::tests::{basic, credentials_with};
use super::*;
use crate::config::{ComponentConfig, Secret};

/// Longest wait for something that should happen.
const DEADLINE: Duration = Duration::from_secs(10);

struct Served {
    address: SocketAddr,
    credentials: Credentials,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    async fn start(limits: ListenerLimits, credentials: Credentials) -> Self {
        Served::start_with_tls(limits, credentials, None).await
    }

    async fn start_with_tls(
        limits: ListenerLimits,
        credentials: Credentials,
        tls: Option<Tls>,
    ) -> Self {
        let stop = CancellationToken::new();
        let component = ComponentConfig {
            jid: "broadcast.example.com".parse().unwrap(),
            secret: Secret::new("s3cret"),
            // Nothing listens there: the component stays disconnected.
            server: "127.0.0.1:1".to_owned(),
        };
        let (connection, _) = Connection::start(component, stop.clone());
        let api = AdminApi::new(
            build_schema(None),
            credentials.clone(),
            connection,
            Safety::new(Duration::from_secs(60)),
            Metrics::new(&["example.com".to_owned()]),
        );
        let api = match tls {
            Some(tls) => api.with_tls(tls),
            None => api,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(api.serve_with(listener, stop.clone(), limits));
        Served {
            address,
            credentials,
            stop,
            task,
        }
    }

    async fn with_defaults() -> Self {
        Served::start(
            ListenerLimits::default(),
            credentials_with(64, LoginLimits::default()),
        )
        .await
    }

    fn url(&self) -> String {
        format!("http://{}/api/graphql", self.address)
    }

    /// POSTs `{ __typename }` with the given headers: (status, code, body).
    async fn post(&self, authorization: &str, headers: &[(&str, &str)]) -> (u16, String, Value) {
        let mut request = plain_client()
            .post(self.url())
            .header("authorization", authorization)
            .body(json!({ "query": "{ __typename }" }).to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        let code = body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (status, code, body)
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the listener stops")
            .unwrap();
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// A client of `http://` URLs.
fn plain_client() -> reqwest::Client {
    client::http_client_builder(None).unwrap().build().unwrap()
}

fn admin() -> String {
    basic("admin:secret")
}

/// What an HTML form or a `fetch` of another site can send is refused before authentication
/// (the domain admin's password is never verified) and before any GraphQL runs.
#[tokio::test]
async fn requests_a_page_of_another_site_can_send_are_refused_before_anything_runs() {
    let served = Served::with_defaults().await;
    let domain_admin = basic("admin@example.com:domainpw");
    let foreign = ("origin", "http://evil.example");
    let cases = [
        (
            vec![("content-type", "text/plain"), foreign],
            403,
            "cross_origin_request",
        ),
        (vec![JSON, foreign], 403, "cross_origin_request"),
        (vec![JSON, ("origin", "null")], 403, "cross_origin_request"),
        (
            vec![JSON, ("sec-fetch-site", "cross-site")],
            403,
            "cross_origin_request",
        ),
        (
            vec![("content-type", "text/plain")],
            415,
            "unsupported_media_type",
        ),
        (
            vec![("content-type", "application/x-www-form-urlencoded")],
            415,
            "unsupported_media_type",
        ),
        (vec![], 415, "unsupported_media_type"),
    ];
    for (headers, status, code) in cases {
        for authorization in [admin(), domain_admin.clone()] {
            let (got_status, got_code, body) = served.post(&authorization, &headers).await;
            assert_eq!(
                (got_status, got_code.as_str()),
                (status, code),
                "{headers:?}"
            );
            assert!(body.get("data").is_none(), "{body}");
        }
    }
    let stats = served.credentials.verifier_stats();
    assert_eq!(stats.verified.load(Ordering::SeqCst), 0);
    served.stop().await;
}

#[tokio::test]
async fn same_origin_and_non_browser_requests_are_served() {
    let served = Served::with_defaults().await;
    let own_origin = format!("http://{}", served.address);
    let cases = [
        vec![JSON],
        vec![("content-type", "application/json; charset=utf-8")],
        vec![JSON, ("origin", own_origin.as_str())],
        vec![
            JSON,
            ("origin", own_origin.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
    ];
    for headers in cases {
        let (status, _, body) = served.post(&admin(), &headers).await;
        assert_eq!(status, 200, "{headers:?}: {body}");
        assert_eq!(body["data"]["__typename"], "AdminQuery", "{headers:?}");
    }
    let lower_case = format!("basic {}", base64_of("admin@example.com:domainpw"));
    let (status, _, body) = served.post(&lower_case, &[JSON]).await;
    assert_eq!(status, 200, "{body}");
    served.stop().await;
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Failed logins over HTTP: 401 `wrong_credentials` until the account's limit, then 429
/// `too_many_login_failures` with `Retry-After`; the global admin still gets in.
#[tokio::test]
async fn too_many_failed_logins_get_429_with_retry_after() {
    let limits = LoginLimits {
        max_failures_per_account: 2,
        ..LoginLimits::default()
    };
    let served = Served::start(ListenerLimits::default(), credentials_with(64, limits)).await;
    let wrong = basic("admin@example.com:wrong");
    for _ in 0..2 {
        let (status, code, _) = served.post(&wrong, &[JSON]).await;
        assert_eq!((status, code.as_str()), (401, "wrong_credentials"));
    }
    let response = plain_client()
        .post(served.url())
        .header("authorization", &wrong)
        .header("content-type", "application/json")
        .body(r#"{"query":"{ __typename }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry_after = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(retry_after, "60");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "too_many_login_failures"
    );
    let (status, _, _) = served.post(&admin(), &[JSON]).await;
    assert_eq!(status, 200);
    served.stop().await;
}

/// More logins than the verifier threads and queue hold: the overflow is refused at once with
/// 503 `login_busy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_beyond_the_verification_queue_get_503() {
    let limits = LoginLimits {
        verifier_threads: 1,
        verify_queue: 1,
        ..LoginLimits::default()
    };
    let served = Served::start(ListenerLimits::default(), credentials_with(4096, limits)).await;
    let served = std::sync::Arc::new(served);
    let attempts: Vec<_> = (0..12)
        .map(|index| {
            let served = served.clone();
            tokio::spawn(async move {
                let header = basic(&format!("admin@example.com:wrong{index}"));
                served.post(&header, &[JSON]).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for attempt in attempts {
        let (status, code, _) = attempt.await.unwrap();
        answers.push((status, code));
    }
    assert!(
        answers
            .iter()
            .all(|answer| *answer == (401, "wrong_credentials".into())
                || *answer == (503, "login_busy".into())),
        "{answers:?}"
    );
    assert!(
        answers.iter().any(|(status, _)| *status == 503),
        "{answers:?}"
    );
    let stats = served.credentials.verifier_stats();
    assert_eq!(stats.peak.load(Ordering::SeqCst), 1);
}

/// Reads until the server closes the connection (or resets it); panics after `DEADLINE`.
async fn until_closed(socket: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read = async {
        let mut buffer = [0; 4096];
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("the server closes the connection");
    received
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

#[tokio::test]
async fn a_socket_that_sends_no_request_is_closed_after_the_header_timeout() {
    let limits = ListenerLimits {
        header_timeout: Duration::from_millis(300),
        ..ListenerLimits::default()
    };
    let served = Served::start(limits, credentials_with(64, LoginLimits::default())).await;
    let started = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(served.address).await.unwrap();
    until_closed(&mut silent).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A header sent a byte at a time is cut at the same deadline.
    let mut slow = TcpStream::connect(served.address).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    until_closed(&mut slow).await;
    // A kept-alive connection is closed once idle for as long.
    let mut kept = TcpStream::connect(served.address).await.unwrap();
    kept.write_all(HEALTH).await.unwrap();
    let answered = until_closed(&mut kept).await;
    assert!(answered.starts_with(b"HTTP/1.1 200"), "{answered:?}");
    served.stop().await;
}

#[tokio::test]
async fn a_request_whose_body_never_comes_is_closed_after_the_stall_timeout() {
    let limits = ListenerLimits {
        stall_timeout: Duration::from_millis(300),
        ..ListenerLimits::default()
    };
    let served = Served::start(limits, credentials_with(64, LoginLimits::default())).await;
    let mut stalled = TcpStream::connect(served.address).await.unwrap();
    let head = "POST /api/graphql HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"query\"";
    stalled.write_all(head.as_bytes()).await.unwrap();
    let started = tokio::time::Instant::now();
    until_closed(&mut stalled).await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    served.stop().await;
}

/// Connections beyond the limit are not served until one of the others ends.
#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let limits = ListenerLimits {
        max_connections: 2,
        ..ListenerLimits::default()
    };
    let served = Served::start(limits, credentials_with(64, LoginLimits::default())).await;
    let mut first = TcpStream::connect(served.address).await.unwrap();
    let _second = TcpStream::connect(served.address).await.unwrap();
    // The first two are served: the first answers.
    first.write_all(HEALTH).await.unwrap();
    let mut answer = [0; 12];
    tokio::time::timeout(DEADLINE, first.read_exact(&mut answer))
        .await
        .expect("the first connection is served")
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let mut third = TcpStream::connect(served.address).await.unwrap();
    third.write_all(HEALTH).await.unwrap();
    let mut byte = [0; 1];
    let waiting = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(waiting.is_err(), "the third connection was served at once");
    drop(first);
    let mut answer = [0; 12];
    tokio::time::timeout(DEADLINE, third.read_exact(&mut answer))
        .await
        .expect("the third connection is served once a slot is free")
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    served.stop().await;
}

/// Stopping ends idle connections and the listener at once.
#[tokio::test]
async fn stopping_closes_idle_connections() {
    let served = Served::with_defaults().await;
    let mut idle = TcpStream::connect(served.address).await.unwrap();
    idle.write_all(HEALTH).await.unwrap();
    let mut answer = [0; 12];
    idle.read_exact(&mut answer).await.unwrap();
    let address = served.address;
    served.stop().await;
    until_closed(&mut idle).await;
    assert!(TcpStream::connect(address).await.is_err());
}

/// The certificate the listener at `address` presents to a client trusting `ca`.
async fn presented_certificate(address: SocketAddr, ca: &std::path::Path) -> Vec<u8> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let socket = TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, socket)
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// A CA (its certificate in `ca.pem`) and where the listener's files go, in a temporary
/// directory.
fn certificate_files() -> (
    tempfile::TempDir,
    crate::config::AdminTls,
    super::tls::test_certificates::Ca,
    std::path::PathBuf,
) {
    use super::tls::test_certificates::{Ca, files_in};
    let dir = tempfile::tempdir().unwrap();
    let files = files_in(dir.path());
    let ca = Ca::new();
    let ca_file = ca.write(dir.path());
    (dir, files, ca, ca_file)
}

/// Over HTTPS the listener serves every route, and a reload changes the certificate of the
/// next connections.
#[tokio::test]
async fn https_serves_every_route_and_the_certificate_reloaded() {
    let (_dir, files, ca, ca_file) = certificate_files();
    let first = ca.issue(&files);
    let tls = Tls::load(&files).unwrap();
    let served = Served::start_with_tls(
        ListenerLimits::default(),
        credentials_with(64, LoginLimits::default()),
        Some(tls.clone()),
    )
    .await;
    let roots = client::TrustedRoots::File(ca_file.clone());
    let https = client::http_client_builder(Some(&roots))
        .unwrap()
        .build()
        .unwrap();
    let base = format!("https://{}", served.address);
    for path in [
        "/health",
        "/metrics",
        "/api/graphql",
        "/api/graphiql/init.js",
    ] {
        let response = https.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let answer: Value = https
        .post(format!("{base}/api/graphql"))
        .header("authorization", admin())
        .header("content-type", "application/json")
        .body(r#"{"query":"{ __typename }"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["data"]["__typename"], "AdminQuery");
    // Plain HTTP is not answered.
    let plain = plain_client().get(format!("http://{}/health", served.address));
    assert!(plain.send().await.is_err());
    assert_eq!(presented_certificate(served.address, &ca_file).await, first);

    let renewed = ca.issue(&files);
    tls.reload().unwrap();
    assert_eq!(
        presented_certificate(served.address, &ca_file).await,
        renewed
    );
    served.stop().await;
}

/// A TLS handshake holds a connection slot and must end within the header timeout: a client
/// that never finishes it is closed, and the slot goes to the next client.
#[tokio::test]
async fn a_tls_handshake_that_never_ends_is_closed_after_the_header_timeout() {
    let (_dir, files, ca, ca_file) = certificate_files();
    let served_certificate = ca.issue(&files);
    let limits = ListenerLimits {
        header_timeout: Duration::from_millis(300),
        max_connections: 1,
        ..ListenerLimits::default()
    };
    let served = Served::start_with_tls(
        limits,
        credentials_with(64, LoginLimits::default()),
        Some(Tls::load(&files).unwrap()),
    )
    .await;
    let started = tokio::time::Instant::now();
    // A client hello cut short: a TLS record header announcing bytes that never come.
    let mut stalled = TcpStream::connect(served.address).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    // The only slot is taken: this handshake completes only once the first is closed.
    let address = served.address;
    let next = tokio::spawn(async move { presented_certificate(address, &ca_file).await });
    until_closed(&mut stalled).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let presented = tokio::time::timeout(DEADLINE, next)
        .await
        .expect("the next client is served")
        .unwrap();
    assert_eq!(presented, served_certificate);
    served.stop().await;
}

/// A client that does not trust the listener's certificate is told so, before it sends
/// anything.
#[tokio::test]
async fn a_client_without_the_ca_is_told_the_certificate_is_not_trusted() {
    let (_dir, files, ca, _) = certificate_files();
    ca.issue(&files);
    let served = Served::start_with_tls(
        ListenerLimits::default(),
        credentials_with(64, LoginLimits::default()),
        Some(Tls::load(&files).unwrap()),
    )
    .await;
    let endpoint = format!("https://{}/api/graphql", served.address);
    let client = client::AdminClient::new(endpoint, None, &client::TrustedRoots::System).unwrap();
    let err = client.list("example.com", 1, 0).await.unwrap_err();
    assert!(
        matches!(err, client::ClientError::Untrusted { .. }),
        "{err:?}"
    );
    assert_eq!(err.failure(), client::Failure::Other);
    assert!(err.to_string().contains("not trusted"), "{err}");
    served.stop().await;
}
