//! A private Prosody 0.12 server per test: SQL storage on SQLite or PostgreSQL, plaintext c2s
//! and a XEP-0114 component listener on free loopback ports, all files in a scratch dir.
//!
//! The VirtualHosts are [`DOMAIN`] and [`OTHER_DOMAIN`]; the component [`COMPONENT_JID`] may
//! send with any `from` (`validate_from_addresses = false`), as the broadcast component needs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{
    AssertSqlSafe, ConnectOptions, Connection, MySqlConnection, PgConnection, SqliteConnection,
};
use tempfile::TempDir;

use super::component::wait_for_handshake;
use super::mysql::MySqlDatabase;
use super::pg::PgDatabase;
use super::process::{self, LogFile};
use super::{free_port, scratch_dir};

/// The XMPP domain (VirtualHost) every test uses.
pub const DOMAIN: &str = "example.com";
/// A second VirtualHost, for tests that need jobs on two domains.
pub const OTHER_DOMAIN: &str = "example.org";
/// The broadcast component's JID.
pub const COMPONENT_JID: &str = "broadcast.example.com";
/// The component's shared secret.
pub const COMPONENT_SECRET: &str = "xbtest-component-secret-Q7v2";

/// How long Prosody may take to accept a component handshake (measured: ~0.1 s).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// SQLite database file name, relative to Prosody's `data_path`.
const SQLITE_FILE: &str = "prosody.sqlite";
/// The offline store, oldest first, as Prosody's mod_storage_sql keeps it.
const OFFLINE_SQL: &str = r#"SELECT "user", "value" FROM "prosodyarchive"
    WHERE "host" = 'example.com' AND "store" = 'offline' ORDER BY "sort_id""#;

/// Prosody's login on MariaDB.
const MARIADB_USER: &str = "xb_prosody";
pub const MARIADB_PASSWORD: &str = "xbtest-mariadb-password-R4n6";

/// Where Prosody keeps its data (`storage = "sql"`).
pub enum ProsodyStorage {
    /// A SQLite file in the scratch dir, switched to WAL mode (see the reference's later
    /// findings: in rollback-journal mode any concurrent reader makes Prosody's commits fail).
    Sqlite,
    /// A PostgreSQL database; owned so it is dropped only after Prosody has stopped.
    Postgres(PgDatabase),
    /// A MariaDB database, likewise.
    MariaDb(MySqlDatabase),
}

/// A running Prosody (a direct child process), stopped with SIGTERM on drop.
pub struct Prosody {
    child: Child,
    log: LogFile,
    config: PathBuf,
    c2s_port: u16,
    component_port: u16,
    storage: ProsodyStorage,
    dir: TempDir,
}

impl Prosody {
    /// Writes a config, starts `prosody --config F -F` and waits until a XEP-0114 handshake
    /// as [`COMPONENT_JID`] succeeds. Panics (with Prosody's log) if it exits or times out.
    pub async fn start(storage: ProsodyStorage) -> Self {
        Prosody::start_with_components(storage, &[]).await
    }

    /// [`Prosody::start`] with more components besides [`COMPONENT_JID`] (same secret, also
    /// free to send with any `from`), one per instance of a cluster.
    pub async fn start_with_components(storage: ProsodyStorage, components: &[&str]) -> Self {
        process::require_program(
            "prosody",
            "install it with `apt-get install prosody lua-dbi-sqlite3 lua-dbi-postgresql` \
             (`bash .ci/run` does)",
        );
        let dir = scratch_dir("prosody");
        let data = dir.path().join("data");
        fs::create_dir(&data).expect("create data dir");
        fs::create_dir(dir.path().join("certs")).expect("create certs dir");
        match &storage {
            ProsodyStorage::Sqlite => create_wal_database(&data.join(SQLITE_FILE)).await,
            ProsodyStorage::MariaDb(db) => db.grant_login(MARIADB_USER, MARIADB_PASSWORD).await,
            ProsodyStorage::Postgres(_) => {}
        }
        let (c2s_port, component_port) = (free_port(), free_port());
        let log = LogFile::new(&dir.path().join("prosody.log"), "prosody log");
        let config = dir.path().join("prosody.cfg.lua");
        let mut lua = config_lua(dir.path(), &log, c2s_port, component_port, &storage);
        lua.push_str(&components_lua(components));
        fs::write(&config, lua).expect("write prosody.cfg.lua");
        let child = spawn(&config, &log);
        let mut prosody = Prosody {
            child,
            log,
            config,
            c2s_port,
            component_port,
            storage,
            dir,
        };
        prosody.wait_ready().await;
        prosody
    }

    /// Stops Prosody (SIGTERM, waiting for it to exit) and starts it again with the same
    /// config, ports and data; returns once it accepts the component handshake again.
    pub async fn restart(&mut self) {
        process::signal(self.child.id(), "TERM");
        process::wait_exit(&mut self.child, START_TIMEOUT, "Prosody after SIGTERM").await;
        self.child = spawn(&self.config, &self.log);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let addr = self.component_addr();
        let component = (COMPONENT_JID, COMPONENT_SECRET);
        wait_for_handshake(&mut self.child, "Prosody", &addr, component, START_TIMEOUT).await;
    }

    /// The component listener, `127.0.0.1:PORT` (the product's `component.server`).
    pub fn component_addr(&self) -> String {
        format!("127.0.0.1:{}", self.component_port)
    }

    /// The plaintext client-to-server port on 127.0.0.1.
    pub fn c2s_port(&self) -> u16 {
        self.c2s_port
    }

    /// Prosody's SQL database as a URL for the product's `[users]` section and for sqlx.
    pub fn users_db_url(&self) -> String {
        match &self.storage {
            ProsodyStorage::Sqlite => format!("sqlite://{}", self.sqlite_path().display()),
            ProsodyStorage::Postgres(db) => db.url(),
            ProsodyStorage::MariaDb(db) => db.url(),
        }
    }

    fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("data").join(SQLITE_FILE)
    }

    /// Runs `lua` inside the server (`prosodyctl shell '>lua'`) and returns the shell's output.
    pub async fn shell(&self, lua: &str) -> String {
        let output = tokio::process::Command::new("prosodyctl")
            .arg("--config")
            .arg(&self.config)
            .arg("shell")
            .arg(format!(">{lua}"))
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run prosodyctl shell");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "prosodyctl shell failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Registers `{prefix}0001` .. `{prefix}{n:04}` on [`DOMAIN`] with one shell call and
    /// returns their bare JIDs in order.
    pub async fn register_users(&self, prefix: &str, n: usize, password: &str) -> Vec<String> {
        self.register_users_at(DOMAIN, prefix, n, password).await
    }

    /// [`Prosody::register_users`] on `domain` (a VirtualHost: [`DOMAIN`] or [`OTHER_DOMAIN`]).
    pub async fn register_users_at(
        &self,
        domain: &str,
        prefix: &str,
        n: usize,
        password: &str,
    ) -> Vec<String> {
        let lua = format!(
            "local um = require 'core.usermanager'; local created = 0; \
             for i = 1, {n} do \
               if um.create_user(string.format({}, i), {}, {}) then created = created + 1 end \
             end; return 'created=' .. created",
            lua_string(&format!("{prefix}%04d")),
            lua_string(password),
            lua_string(domain),
        );
        let output = self.shell(&lua).await;
        assert!(
            output.contains(&format!("created={n}")),
            "registering {n} users failed: {output}"
        );
        (1..=n)
            .map(|i| format!("{prefix}{i:04}@{domain}"))
            .collect()
    }

    /// Registers one user on [`DOMAIN`] and returns the bare JID.
    pub async fn register_user(&self, name: &str, password: &str) -> String {
        self.register_user_at(DOMAIN, name, password).await
    }

    /// Registers one user on `domain` (a VirtualHost) and returns the bare JID.
    pub async fn register_user_at(&self, domain: &str, name: &str, password: &str) -> String {
        let lua = format!(
            "return 'created=' .. tostring(require 'core.usermanager'.create_user({}, {}, {}))",
            lua_string(name),
            lua_string(password),
            lua_string(domain),
        );
        let output = self.shell(&lua).await;
        assert!(
            output.contains("created=true"),
            "registering {name}@{domain} failed: {output}"
        );
        format!("{name}@{domain}")
    }

    /// Every stored offline message of [`DOMAIN`] as `(username, stanza XML)`, oldest first.
    pub async fn offline_messages(&self) -> Vec<(String, String)> {
        let rows = match &self.storage {
            ProsodyStorage::Sqlite => {
                let mut conn = SqliteConnection::connect(&self.users_db_url())
                    .await
                    .expect("open Prosody's SQLite file");
                let rows = sqlx::query_as(OFFLINE_SQL).fetch_all(&mut conn).await;
                conn.close().await.expect("close SQLite connection");
                rows
            }
            ProsodyStorage::Postgres(db) => {
                let mut conn = PgConnection::connect(&db.url())
                    .await
                    .expect("connect to Prosody's PostgreSQL database");
                sqlx::query_as(OFFLINE_SQL).fetch_all(&mut conn).await
            }
            ProsodyStorage::MariaDb(db) => {
                let mut conn = MySqlConnection::connect(&db.url())
                    .await
                    .expect("connect to Prosody's MariaDB database");
                let sql = AssertSqlSafe(OFFLINE_SQL.replace('"', "`"));
                sqlx::query_as(sql).fetch_all(&mut conn).await
            }
        };
        rows.expect("read Prosody's offline store")
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        process::terminate(&mut self.child, Duration::from_secs(5));
        self.log.print_if_panicking();
    }
}

/// Starts `prosody --config CONFIG -F`, its output appended to `log`.
fn spawn(config: &Path, log: &LogFile) -> Child {
    Command::new("prosody")
        .arg("--config")
        .arg(config)
        .arg("-F")
        .stdin(Stdio::null())
        .stdout(log.append_handle())
        .stderr(log.append_handle())
        .spawn()
        .expect("spawn prosody")
}

/// Creates the SQLite file in WAL journal mode (persistent) before Prosody opens it.
async fn create_wal_database(path: &Path) {
    let mut conn = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .expect("sqlite URL")
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await
        .expect("create Prosody's SQLite file");
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("read journal_mode");
    assert_eq!(mode, "wal", "SQLite refused WAL mode");
    conn.close().await.expect("close SQLite connection");
}

fn config_lua(
    dir: &Path,
    log: &LogFile,
    c2s_port: u16,
    component_port: u16,
    storage: &ProsodyStorage,
) -> String {
    let sql = match storage {
        ProsodyStorage::Sqlite => format!(
            "{{ driver = \"SQLite3\"; database = {} }}",
            lua_string(SQLITE_FILE)
        ),
        ProsodyStorage::Postgres(db) => format!(
            "{{ driver = \"PostgreSQL\"; database = {}; username = \"postgres\"; \
             host = \"127.0.0.1\"; port = 5432 }}",
            lua_string(db.name())
        ),
        ProsodyStorage::MariaDb(db) => format!(
            "{{ driver = \"MySQL\"; database = {}; username = {}; password = {}; \
             host = \"127.0.0.1\"; port = 3306 }}",
            lua_string(db.name()),
            lua_string(MARIADB_USER),
            lua_string(MARIADB_PASSWORD),
        ),
    };
    let path = |name: &str| lua_string(&dir.join(name).display().to_string());
    format!(
        r#"-- Written by tests/support/prosody.rs
run_as_root = true
pidfile = {pidfile}
data_path = {data}
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = {log} }} }}
certificates = {certs}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s_port} }}
c2s_interfaces = {{ "127.0.0.1" }}
component_ports = {{ {component_port} }}
component_interfaces = {{ "127.0.0.1" }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "posix"; "admin_shell" }}
modules_disabled = {{ "s2s" }}
authentication = "internal_hashed"
default_iteration_count = 4096 -- test only: faster registration (Prosody default 10000)
storage = "sql"
sql = {sql}
-- test only: plaintext c2s with SASL PLAIN/SCRAM on loopback
c2s_require_encryption = false
allow_unencrypted_plain_auth = true

VirtualHost {domain}

VirtualHost {other_domain}

Component {component}
  component_secret = {secret}
  validate_from_addresses = false
"#,
        pidfile = path("prosody.pid"),
        data = path("data"),
        log = lua_string(&log.path().display().to_string()),
        certs = path("certs"),
        domain = lua_string(DOMAIN),
        other_domain = lua_string(OTHER_DOMAIN),
        component = lua_string(COMPONENT_JID),
        secret = lua_string(COMPONENT_SECRET),
    )
}

/// `Component` sections for `components`, configured like [`COMPONENT_JID`].
fn components_lua(components: &[&str]) -> String {
    components
        .iter()
        .map(|jid| {
            format!(
                "\nComponent {}\n  component_secret = {}\n  validate_from_addresses = false\n",
                lua_string(jid),
                lua_string(COMPONENT_SECRET)
            )
        })
        .collect()
}

/// A Lua 5.4 string literal for `text`: Rust's `Debug` escapes (`\"`, `\\`, `\n`, `\u{..}`)
/// are all valid Lua 5.4 escapes.
fn lua_string(text: &str) -> String {
    format!("{text:?}")
}
