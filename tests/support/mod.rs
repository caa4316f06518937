//! Test harness shared by the integration test binaries (`mod support;` in each).
//!
//! Every test gets real processes on free loopback ports, in its own scratch directories:
//!
//! * [`prosody::Prosody`] — a private Prosody 0.12 with SQL storage (SQLite or PostgreSQL);
//! * [`ejabberd::Ejabberd`] — a private ejabberd 23.01 with SQL storage (PostgreSQL or MariaDB);
//! * [`pg::PgDatabase`] — a throw-away PostgreSQL database on 127.0.0.1:5432, and
//!   [`mysql::MySqlDatabase`] — one on the MariaDB at 127.0.0.1:3306;
//! * [`serve::Serve`] — the `xmpp-broadcast serve` binary under test, and
//!   [`admin::Admin`], a client for its GraphQL admin API;
//! * [`cluster::Cluster`] — several `serve` instances sharing one job database on one Prosody,
//!   each behind a [`proxy::TcpProxy`] (a TCP hop a test can cut, or read what passed);
//! * [`xmpp_client::XmppClient`] — a real XMPP client (slixmpp) logged in as one user;
//! * [`app::App`] — a whole instance inside the test process, on SQLite and the
//!   [`fake_server::FakeServer`] (an in-process XEP-0114 server that records messages);
//! * [`component::RawComponent`] — a minimal XEP-0114 connection (readiness probe, injector);
//! * [`stanza`] — the expected message id and a structural check of stored stanzas;
//! * [`tls`] — a CA and server certificates for the admin listener's HTTPS, and a client that
//!   tells which certificate a server presents;
//! * [`process`] — child-process plumbing (signals, bounded waits, logs shown on failure);
//! * [`secrets`] — the suite's secrets, and the check that no log or answer shows one.
//!
//! Missing prerequisites (prosody, the Python venv, PostgreSQL) make tests fail with a
//! message that says how to provide them; nothing is skipped.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod admin;
pub mod app;
pub mod cluster;
pub mod component;
pub mod ejabberd;
pub mod fake_server;
pub mod mysql;
pub mod pg;
pub mod process;
pub mod prosody;
pub mod proxy;
pub mod scenarios;
pub mod secrets;
pub mod serve;
pub mod stanza;
pub mod tls;
pub mod xmpp_client;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// How often the harness polls for a condition it cannot await directly.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Returns a TCP port on 127.0.0.1 that was free a moment ago (the OS picked it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// Creates a fresh scratch directory, removed when the returned guard is dropped.
pub fn scratch_dir(label: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("xb-{label}-"))
        .tempdir()
        .expect("create scratch dir")
}

/// A point in time by which a polled condition must hold.
pub struct Deadline {
    at: Instant,
    what: String,
}

impl Deadline {
    /// A deadline `timeout` from now; `what` names the awaited condition in the panic message.
    pub fn after(timeout: Duration, what: impl Into<String>) -> Self {
        Deadline {
            at: Instant::now() + timeout,
            what: what.into(),
        }
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.at
    }

    /// Time left until the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Waits one poll interval; panics when the deadline has already passed.
    pub async fn tick(&self) {
        assert!(!self.expired(), "timed out waiting for {}", self.what);
        tokio::time::sleep(POLL_INTERVAL.min(self.remaining())).await;
    }
}

/// A database name no other test uses: `xb_<pid>_<milliseconds>_<counter>`.
pub fn unique_database_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis();
    format!(
        "xb_{}_{}_{}",
        std::process::id(),
        millis,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `drop` (a best-effort cleanup that needs async I/O) to completion from a synchronous
/// context such as `Drop`, which may itself run inside a runtime: on a private runtime on its
/// own thread. Warns with `what` if it fails.
pub fn cleanup_blocking<F>(what: String, drop: impl FnOnce() -> F + Send + 'static)
where
    F: Future<Output = Option<()>>,
{
    let done = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(drop())
    })
    .join();
    if !matches!(done, Ok(Some(()))) {
        eprintln!("warning: could not {what}");
    }
}

/// A SQLite database at `path` with `schema` (SQL text) loaded; returns its URL.
pub async fn sqlite_database(path: &std::path::Path, schema: &str) -> String {
    use sqlx::{ConnectOptions, Connection};
    let url = format!("sqlite://{}", path.display());
    let mut conn = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
        .expect("sqlite URL")
        .create_if_missing(true)
        .connect()
        .await
        .expect("create the database");
    sqlx::raw_sql(sqlx::AssertSqlSafe(schema.to_owned()))
        .execute(&mut conn)
        .await
        .expect("load the schema");
    conn.close().await.expect("close");
    url
}
