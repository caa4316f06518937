//! Reaching a SQL database, shared by the job store and the user directory: the target named
//! in errors (the URL without its password), and a first direct connection within
//! [`CONNECT_TIMEOUT`], so that an unreachable database is reported at once with its cause
//! (connection refused, unknown host, failed authentication, unknown database) instead of the
//! pool's "pool timed out" after its whole acquire timeout.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::mysql::MySqlConnectOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

/// How long a first connection may take before the database is reported unreachable (a host
/// that drops packets would otherwise hold the start for the kernel's two minutes).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A database that could not be reached: which one, where, and why.
#[derive(Debug)]
pub struct ConnectError {
    /// What it is to the operator, e.g. "the job database".
    pub what: &'static str,
    /// The config key of its URL.
    pub key: &'static str,
    /// The URL without password nor parameters; `None` if the URL itself is wrong.
    pub target: Option<String>,
    pub cause: Cause,
}

/// The message already says the cause: no source, so that a chain is not printed twice.
impl std::error::Error for ConnectError {}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Some(target) => write!(
                f,
                "cannot connect to {} at {target} ({}): {}",
                self.what, self.key, self.cause
            ),
            None => write!(
                f,
                "cannot connect to {} ({}): {}",
                self.what, self.key, self.cause
            ),
        }
    }
}

/// Why a database could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// The driver's error, shown by its own message (the server's, for a refusal).
    #[error("{}", describe(.0))]
    Driver(sqlx::Error),
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("the directory {0} does not exist")]
    NoDirectory(String),
}

/// The part of a driver error an operator needs: the server's message, or the system's.
fn describe(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (code {code})", db.message()),
            None => db.message().to_owned(),
        },
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Tls(tls) => format!("TLS: {tls}"),
        sqlx::Error::Configuration(config) => format!("invalid URL: {config}"),
        sqlx::Error::PoolTimedOut => "no connection could be opened in time".to_owned(),
        other => other.to_string(),
    }
}

/// A database to reach, as errors name it.
#[derive(Debug, Clone)]
pub struct Target {
    what: &'static str,
    key: &'static str,
    shown: Option<String>,
}

impl Target {
    /// A database whose URL has not been parsed (yet).
    pub fn new(what: &'static str, key: &'static str) -> Self {
        Target {
            what,
            key,
            shown: None,
        }
    }

    /// The same database, shown as `postgres://user@host:port/database`.
    pub fn postgres(self, options: &PgConnectOptions) -> Self {
        let place = match options.get_socket() {
            Some(socket) => socket.display().to_string(),
            None => host_port(options.get_host(), options.get_port()),
        };
        let shown = format!(
            "postgres://{}@{place}/{}",
            options.get_username(),
            options.get_database().unwrap_or_default()
        );
        self.shown(shown)
    }

    /// The same database, shown as `mysql://user@host:port/database`.
    pub fn mysql(self, options: &MySqlConnectOptions) -> Self {
        let place = match options.get_socket() {
            Some(socket) => socket.display().to_string(),
            None => host_port(options.get_host(), options.get_port()),
        };
        let shown = format!(
            "mysql://{}@{place}/{}",
            options.get_username(),
            options.get_database().unwrap_or_default()
        );
        self.shown(shown)
    }

    /// The same database, shown as `sqlite://path`.
    pub fn sqlite(self, options: &SqliteConnectOptions) -> Self {
        let shown = format!("sqlite://{}", options.get_filename().display());
        self.shown(shown)
    }

    fn shown(mut self, shown: String) -> Self {
        self.shown = Some(shown);
        self
    }

    /// The error of this database for `cause`.
    pub fn error(&self, cause: Cause) -> ConnectError {
        ConnectError {
            what: self.what,
            key: self.key,
            target: self.shown.clone(),
            cause,
        }
    }

    /// The error of this database for a driver error.
    pub fn driver_error(&self, err: sqlx::Error) -> ConnectError {
        self.error(Cause::Driver(err))
    }

    /// One direct connection, within [`CONNECT_TIMEOUT`]: its error is the cause itself (the
    /// pool would retry until its acquire timeout and then only say that it timed out).
    pub async fn connect<O>(&self, options: &O) -> Result<O::Connection, ConnectError>
    where
        O: ConnectOptions,
        O::Connection: Sized,
    {
        match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(err)) => Err(self.driver_error(err)),
            Err(_) => Err(self.error(Cause::Timeout(CONNECT_TIMEOUT))),
        }
    }

    /// Checks that the directory of a SQLite file exists: SQLite would only say that it is
    /// "unable to open database file".
    pub fn sqlite_directory(&self, options: &SqliteConnectOptions) -> Result<(), ConnectError> {
        let file = options.get_filename();
        if is_in_memory(file) || file.exists() {
            return Ok(());
        }
        match file.parent() {
            Some(directory) if !directory.as_os_str().is_empty() && !directory.is_dir() => {
                Err(self.error(Cause::NoDirectory(directory.display().to_string())))
            }
            _ => Ok(()),
        }
    }
}

/// SQLite's in-memory databases have no file.
fn is_in_memory(file: &Path) -> bool {
    let name = file.to_string_lossy();
    name == ":memory:" || name.starts_with("file:")
}

/// `host:port`, with an IPv6 address in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn targets_show_no_password() {
        let options =
            PgConnectOptions::from_str("postgres://jobs:hunter2@db.example:6432/jobs").unwrap();
        let target = Target::new("the job database", "database.url").postgres(&options);
        let err = target.error(Cause::Timeout(CONNECT_TIMEOUT));
        let shown = err.to_string();
        assert_eq!(
            shown,
            "cannot connect to the job database at postgres://jobs@db.example:6432/jobs \
             (database.url): no answer within 10 s"
        );

        let url = "mysql://root:hunter2@[::1]:3306/x";
        let options = MySqlConnectOptions::from_str(url).unwrap();
        let shown = Target::new("the users database", "users.url")
            .mysql(&options)
            .error(Cause::Timeout(CONNECT_TIMEOUT))
            .to_string();
        assert!(
            shown.contains("mysql://root@[::1]:3306/x") && !shown.contains("hunter2"),
            "{shown}"
        );
        let url = "postgres://u:hunter2@[::1]:5432/x";
        let options = PgConnectOptions::from_str(url).unwrap();
        let shown = Target::new("the users database", "users.url")
            .postgres(&options)
            .error(Cause::Timeout(CONNECT_TIMEOUT))
            .to_string();
        assert!(shown.contains("postgres://u@[::1]:5432/x"), "{shown}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_reported_at_once_with_its_cause() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("postgres://postgres:hunter2@127.0.0.1:{port}/jobs");
        let options = PgConnectOptions::from_str(&url).unwrap();
        let target = Target::new("the job database", "database.url").postgres(&options);
        let started = std::time::Instant::now();
        let err = target.connect(&options).await.unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(2), "{err}");
        assert!(
            err.contains(&format!("127.0.0.1:{port}"))
                && err.contains("refused")
                && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_sqlite_directory_is_named() {
        let options = SqliteConnectOptions::from_str("sqlite:///nonexistent-xb/dir/jobs.db")
            .unwrap()
            .create_if_missing(true);
        let err = Target::new("the job database", "database.url")
            .sqlite(&options)
            .sqlite_directory(&options)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the directory /nonexistent-xb/dir does not exist"),
            "{err}"
        );
    }
}
