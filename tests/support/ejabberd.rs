//! A private ejabberd 23.01 (Debian's package) per test: SQL storage on PostgreSQL or MariaDB,
//! plaintext c2s and a XEP-0114 listener with `check_from: false` on free loopback ports.
//!
//! Started without systemd as the reference recipe says: `setpriv` as user `ejabberd` (no PAM,
//! so the file descriptor limit is inherited), an own `ejabberdctl.cfg` with `ERL_DIST_PORT`
//! (no epmd) and `INET_DIST_INTERFACE=127.0.0.1`, an own node name and HOME (Erlang cookie),
//! the schema loaded from `/usr/share/ejabberd/sql/` (ejabberd 23.01 does not create it), and
//! `max_user_offline_messages` raised above Debian's 100. Accounts are seeded as SCRAM-SHA-1
//! rows in SQL. Ready once a XEP-0114 handshake succeeds, while the launcher is watched.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{
    AssertSqlSafe, ConnectOptions, Connection, MySqlConnection, PgConnection, SqliteConnection,
};
use tempfile::TempDir;
use tokio_xmpp::minidom::Element;

use super::component::wait_for_handshake;
use super::mysql::MySqlDatabase;
use super::pg::PgDatabase;
use super::process::{self, LogFile};
use super::stanza::{Announcement, message_id};
use super::{free_port, scratch_dir};

pub use super::prosody::{COMPONENT_JID, COMPONENT_SECRET, DOMAIN};

/// How long ejabberd may take to accept a component handshake (measured: ~1.2 s).
const START_TIMEOUT: Duration = Duration::from_secs(60);
const SCHEMA_DIR: &str = "/usr/share/ejabberd/sql";
/// ejabberd's login on MariaDB.
const MARIADB_USER: &str = "xb_ejabberd";
const MARIADB_PASSWORD: &str = "xb-ejabberd-pw";
/// SCRAM iterations of the seeded accounts (ejabberd's default).
const ITERATIONS: u32 = 4096;

/// Where ejabberd keeps its data, and which of its SQL schemas.
pub enum EjabberdStorage {
    /// The default schema (`pg.sql`, no host column), `new_sql_schema: false`.
    Postgres(PgDatabase),
    /// The default schema (`lite.sql`) in a file of the scratch dir.
    Sqlite,
    /// `new_sql_schema: true` (`mysql.new.sql`, with `server_host`).
    MariaDbNew(MySqlDatabase),
}

impl EjabberdStorage {
    fn new_schema(&self) -> bool {
        matches!(self, EjabberdStorage::MariaDbNew(_))
    }
}

/// A running ejabberd, stopped with SIGTERM on drop.
pub struct Ejabberd {
    child: Child,
    log: LogFile,
    error_log: LogFile,
    pid_file: PathBuf,
    c2s_port: u16,
    component_port: u16,
    storage: EjabberdStorage,
    sqlite_path: PathBuf,
    _dir: TempDir,
}

impl Ejabberd {
    /// Loads the schema, writes the configuration, starts ejabberd and waits until a XEP-0114
    /// handshake as [`COMPONENT_JID`] succeeds. Panics (with ejabberd's logs) if it exits or
    /// times out.
    pub async fn start(storage: EjabberdStorage) -> Self {
        process::require_program(
            "ejabberdctl",
            "install it with `apt-get install ejabberd erlang-p1-pgsql erlang-p1-mysql` \
             (`bash .ci/run` does)",
        );
        let dir = scratch_dir("ejabberd");
        let root = dir.path();
        let sqlite_path = root.join("ejabberd.db");
        load_schema(&storage, &sqlite_path).await;
        for sub in ["logs", "spool", "home"] {
            fs::create_dir(root.join(sub)).expect("create ejabberd dir");
        }
        fs::copy("/etc/ejabberd/inetrc", root.join("inetrc")).expect("copy inetrc");
        let (c2s_port, component_port, dist_port) = (free_port(), free_port(), free_port());
        let pid_file = root.join("ejabberd.pid");
        fs::write(
            root.join("ejabberd.yml"),
            config_yaml(&storage, &sqlite_path, c2s_port, component_port),
        )
        .expect("write ejabberd.yml");
        fs::write(
            root.join("ejabberdctl.cfg"),
            format!(
                "ERLANG_NODE=xb{component_port}@localhost\n\
                 ERL_DIST_PORT={dist_port}\n\
                 INET_DIST_INTERFACE=127.0.0.1\n\
                 EJABBERD_CONFIG_PATH={config}\n\
                 EJABBERD_PID_PATH={pid}\n\
                 EJABBERD_BYPASS_WARNINGS=true\n\
                 ERL_OPTIONS=\"-env ERL_CRASH_DUMP_BYTES 0\"\n",
                config = root.join("ejabberd.yml").display(),
                pid = pid_file.display(),
            ),
        )
        .expect("write ejabberdctl.cfg");
        let status = Command::new("chown")
            .args(["-R", "ejabberd:ejabberd"])
            .arg(root)
            .status()
            .expect("run chown");
        assert!(status.success(), "chown the ejabberd dir");

        let log = LogFile::new(&root.join("logs/ejabberd.log"), "ejabberd log");
        let error_log = LogFile::new(&root.join("launcher.log"), "ejabberd launcher output");
        let child = ejabberdctl(root)
            .arg("--config")
            .arg(root.join("ejabberd.yml"))
            .arg("--logs")
            .arg(root.join("logs"))
            .arg("--spool")
            .arg(root.join("spool"))
            .arg("foreground")
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(error_log.append_handle())
            .stderr(error_log.append_handle())
            .spawn()
            .expect("spawn ejabberdctl foreground");
        let mut ejabberd = Ejabberd {
            child,
            log,
            error_log,
            pid_file,
            c2s_port,
            component_port,
            storage,
            sqlite_path,
            _dir: dir,
        };
        ejabberd.wait_ready().await;
        ejabberd
    }

    async fn wait_ready(&mut self) {
        let addr = self.component_addr();
        let component = (COMPONENT_JID, COMPONENT_SECRET);
        wait_for_handshake(&mut self.child, "ejabberd", &addr, component, START_TIMEOUT).await;
    }

    /// The component listener, `127.0.0.1:PORT` (the product's `component.server`).
    pub fn component_addr(&self) -> String {
        format!("127.0.0.1:{}", self.component_port)
    }

    /// The plaintext client-to-server port on 127.0.0.1.
    pub fn c2s_port(&self) -> u16 {
        self.c2s_port
    }

    /// ejabberd's database as a URL for the product's `[users] url`.
    pub fn users_db_url(&self) -> String {
        match &self.storage {
            EjabberdStorage::Postgres(db) => db.url(),
            EjabberdStorage::Sqlite => format!("sqlite://{}", self.sqlite_path.display()),
            EjabberdStorage::MariaDbNew(db) => db.url(),
        }
    }

    /// The product's `[users]` schema for this server: `ejabberd` (mapped to [`DOMAIN`]) or
    /// `ejabberd_new`.
    pub fn users_schema(&self) -> (&'static str, Option<&'static str>) {
        if self.storage.new_schema() {
            ("ejabberd_new", None)
        } else {
            ("ejabberd", Some(DOMAIN))
        }
    }

    /// Seeds `{prefix}0001` .. `{prefix}{n:04}` on [`DOMAIN`] as SCRAM-SHA-1 rows (what
    /// `auth_password_format: scram` stores) and returns their bare JIDs in order.
    pub async fn register_users(&self, prefix: &str, n: usize, password: &str) -> Vec<String> {
        let names: Vec<String> = (1..=n).map(|i| format!("{prefix}{i:04}")).collect();
        self.insert_accounts(&names, password).await;
        names
            .iter()
            .map(|name| format!("{name}@{DOMAIN}"))
            .collect()
    }

    /// Registers one account on [`DOMAIN`] and returns its bare JID. On SQLite it goes
    /// through `ejabberdctl register`, inside the running server: a second writer on ejabberd's
    /// SQLite file would make ejabberd's own writes fail ("database is locked").
    pub async fn register_user(&self, name: &str, password: &str) -> String {
        if matches!(self.storage, EjabberdStorage::Sqlite) {
            let root = self._dir.path();
            let status = tokio::process::Command::from(ejabberdctl(root))
                .args(["register", name, DOMAIN, password])
                .stdout(Stdio::null())
                .status()
                .await
                .expect("run ejabberdctl register");
            assert!(
                status.success(),
                "ejabberdctl register {name} failed: {status}"
            );
        } else {
            self.insert_accounts(&[name.to_owned()], password).await;
        }
        format!("{name}@{DOMAIN}")
    }

    /// Runs `ejabberdctl ARGS` against this server; panics if it fails.
    pub async fn ctl(&self, args: &[&str]) {
        let output = tokio::process::Command::from(ejabberdctl(self._dir.path()))
            .args(args)
            .output()
            .await
            .expect("run ejabberdctl");
        assert!(
            output.status.success(),
            "ejabberdctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Creates the shared roster group `group` of [`DOMAIN`] with ejabberd's own command
    /// (`mod_shared_roster`, stored in its SQL tables `sr_group` and `sr_user`).
    pub async fn create_group(&self, group: &str) {
        self.ctl(&["srg_create", group, DOMAIN, group, group, group])
            .await;
    }

    /// Adds `user` of [`DOMAIN`] to the shared roster group `group`, as ejabberd does.
    pub async fn add_to_group(&self, user: &str, group: &str) {
        self.ctl(&["srg_user_add", user, DOMAIN, group, DOMAIN])
            .await;
    }

    async fn insert_accounts(&self, names: &[String], password: &str) {
        let (stored_key, server_key, salt) = scram_sha1(password, b"xmpp-broadcast-test-salt");
        let host = if self.storage.new_schema() {
            format!("'{DOMAIN}', ")
        } else {
            String::new()
        };
        let host_column = if self.storage.new_schema() {
            "server_host, "
        } else {
            ""
        };
        let rows: Vec<String> = names
            .iter()
            .map(|name| {
                assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
                format!("({host}'{name}', '{stored_key}', '{server_key}', '{salt}', {ITERATIONS})")
            })
            .collect();
        let sql = format!(
            "INSERT INTO users ({host_column}username, password, serverkey, salt, \
             iterationcount) VALUES {}",
            rows.join(", ")
        );
        self.execute(&sql).await;
    }

    async fn execute(&self, sql: &str) {
        let sql = AssertSqlSafe(sql.to_owned());
        match &self.storage {
            EjabberdStorage::Postgres(db) => {
                let mut conn = PgConnection::connect(&db.url()).await.expect("connect");
                sqlx::query(sql).execute(&mut conn).await.expect("execute");
            }
            EjabberdStorage::Sqlite => {
                let mut conn = self.sqlite().await;
                sqlx::query(sql).execute(&mut conn).await.expect("execute");
                conn.close().await.expect("close");
            }
            EjabberdStorage::MariaDbNew(db) => {
                let mut conn = MySqlConnection::connect(&db.url()).await.expect("connect");
                sqlx::query(sql).execute(&mut conn).await.expect("execute");
            }
        }
    }

    /// Every stored offline message as `(username, stanza XML)`, oldest first (table `spool`).
    pub async fn offline_messages(&self) -> Vec<(String, String)> {
        const SPOOL: &str = "SELECT username, xml FROM spool ORDER BY seq";
        match &self.storage {
            EjabberdStorage::Postgres(db) => {
                let mut conn = PgConnection::connect(&db.url()).await.expect("connect");
                sqlx::query_as(SPOOL).fetch_all(&mut conn).await
            }
            EjabberdStorage::Sqlite => {
                let mut conn = self.sqlite().await;
                let rows = sqlx::query_as(SPOOL).fetch_all(&mut conn).await;
                conn.close().await.expect("close");
                rows
            }
            EjabberdStorage::MariaDbNew(db) => {
                let mut conn = MySqlConnection::connect(&db.url()).await.expect("connect");
                sqlx::query_as(SPOOL).fetch_all(&mut conn).await
            }
        }
        .expect("read ejabberd's spool")
    }

    /// A connection to ejabberd's SQLite file, waiting up to 10 s for ejabberd's locks.
    async fn sqlite(&self) -> SqliteConnection {
        SqliteConnectOptions::new()
            .filename(&self.sqlite_path)
            .busy_timeout(Duration::from_secs(10))
            .connect()
            .await
            .expect("open ejabberd's SQLite file")
    }

    fn beam_pid(&self) -> Option<u32> {
        fs::read_to_string(&self.pid_file).ok()?.trim().parse().ok()
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        // The launcher (ejabberdctl) waits for the Erlang VM, whose PID is in the pid file:
        // stop the VM, then reap the launcher.
        if let Some(pid) = self.beam_pid() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(super::POLL_INTERVAL);
        }
        if self.child.try_wait().ok().flatten().is_none() {
            if let Some(pid) = self.beam_pid() {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
            process::terminate(&mut self.child, Duration::from_secs(2));
        }
        self.error_log.print_if_panicking();
        self.log.print_if_panicking();
    }
}

/// Loads ejabberd's own schema file into its (empty) database.
async fn load_schema(storage: &EjabberdStorage, sqlite_path: &Path) {
    let file = match storage {
        EjabberdStorage::Postgres(_) => "pg.sql",
        EjabberdStorage::Sqlite => "lite.sql",
        EjabberdStorage::MariaDbNew(_) => "mysql.new.sql",
    };
    let path = Path::new(SCHEMA_DIR).join(file);
    let sql = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; install ejabberd", path.display()));
    let sql = AssertSqlSafe(sql);
    match storage {
        EjabberdStorage::Postgres(db) => {
            let mut conn = PgConnection::connect(&db.url()).await.expect("connect");
            sqlx::raw_sql(sql).execute(&mut conn).await.map(drop)
        }
        EjabberdStorage::Sqlite => {
            let mut conn = SqliteConnectOptions::new()
                .filename(sqlite_path)
                .create_if_missing(true)
                .connect()
                .await
                .expect("create ejabberd's SQLite file");
            let loaded = sqlx::raw_sql(sql).execute(&mut conn).await.map(drop);
            conn.close().await.expect("close");
            loaded
        }
        EjabberdStorage::MariaDbNew(db) => {
            db.grant_login(MARIADB_USER, MARIADB_PASSWORD).await;
            let mut conn = MySqlConnection::connect(&db.url()).await.expect("connect");
            sqlx::raw_sql(sql).execute(&mut conn).await.map(drop)
        }
    }
    .unwrap_or_else(|e| panic!("load {}: {e}", path.display()));
}

fn config_yaml(
    storage: &EjabberdStorage,
    sqlite_path: &Path,
    c2s_port: u16,
    component_port: u16,
) -> String {
    let server = |sql_type: &str, port: u16, database: &str, user: &str, password: &str| {
        format!(
            "sql_type: {sql_type}\nsql_server: 127.0.0.1\nsql_port: {port}\n\
             sql_database: {database}\nsql_username: {user}\nsql_password: \"{password}\"\n"
        )
    };
    let sql = match storage {
        EjabberdStorage::Postgres(db) => server("pgsql", 5432, db.name(), "postgres", ""),
        EjabberdStorage::Sqlite => format!(
            "sql_type: sqlite\nsql_database: {}\n",
            sqlite_path.display()
        ),
        EjabberdStorage::MariaDbNew(db) => {
            server("mysql", 3306, db.name(), MARIADB_USER, MARIADB_PASSWORD)
        }
    };
    format!(
        r#"# Written by tests/support/ejabberd.rs
loglevel: info
log_rotate_count: 0
hosts:
  - {DOMAIN}
{sql}sql_pool_size: 4
new_sql_schema: {new_schema}
auth_method: sql
auth_password_format: scram
default_db: sql
listen:
  -
    port: {c2s_port}
    ip: 127.0.0.1
    module: ejabberd_c2s
    max_stanza_size: 262144
    access: c2s
  -
    port: {component_port}
    ip: 127.0.0.1
    module: ejabberd_service
    check_from: false
    hosts:
      {COMPONENT_JID}:
        password: {COMPONENT_SECRET}
acl:
  local:
    user_regexp: ""
access_rules:
  c2s:
    allow: all
shaper_rules:
  # Debian's example config allows non-admins 100 offline messages.
  max_user_offline_messages: 1000000
  max_user_sessions: 10
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
  mod_shared_roster: {{}}
  mod_admin_extra: {{}}
  mod_offline:
    access_max_user_messages: max_user_offline_messages
"#,
        new_schema = storage.new_schema(),
    )
}

/// (StoredKey, ServerKey, salt), base64, as ejabberd stores SCRAM-SHA-1 credentials.
fn scram_sha1(password: &str, salt: &[u8]) -> (String, String, String) {
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac_sha1(password.as_bytes(), &block);
    let mut salted = u;
    for _ in 1..ITERATIONS {
        u = hmac_sha1(password.as_bytes(), &u);
        for (s, x) in salted.iter_mut().zip(u) {
            *s ^= x;
        }
    }
    let client_key = hmac_sha1(&salted, b"Client Key");
    let stored_key = Sha1::digest(client_key);
    let server_key = hmac_sha1(&salted, b"Server Key");
    (
        BASE64.encode(stored_key),
        BASE64.encode(server_key),
        BASE64.encode(salt),
    )
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut padded = [0u8; 64];
    if key.len() > 64 {
        padded[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        padded[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = padded.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = padded.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha1::new()
        .chain_update(&inner_pad)
        .chain_update(data)
        .finalize();
    let outer = Sha1::new()
        .chain_update(&outer_pad)
        .chain_update(inner)
        .finalize();
    outer[..].try_into().expect("SHA-1 is 20 bytes")
}

/// Panics unless `xml` is job `announcement`'s message to `recipient` as ejabberd stores it
/// offline: the same attributes and children, with `xmlns='jabber:client'`, a `<delay/>` added
/// and the children in another order (reference §4.4).
pub fn assert_stored_stanza(announcement: &Announcement, xml: &str, recipient: &str) {
    let message: Element = xml
        .parse()
        .unwrap_or_else(|e| panic!("stored stanza for {recipient} does not parse ({e}): {xml}"));
    let id = message_id(announcement.job_id, recipient);
    assert!(message.is("message", "jabber:client"), "{xml}");
    for (name, value) in [
        ("type", "chat"),
        ("from", announcement.sender.as_str()),
        ("to", recipient),
        ("id", id.as_str()),
    ] {
        assert_eq!(message.attr(name), Some(value), "attribute {name}: {xml}");
    }
    let mut children: Vec<String> = message
        .children()
        .map(|child| match (child.name(), child.ns().as_str()) {
            ("subject", "jabber:client") => {
                assert_eq!(child.text(), announcement.subject, "{xml}");
                "subject".into()
            }
            ("body", "jabber:client") => {
                assert_eq!(child.text(), announcement.body, "{xml}");
                "body".into()
            }
            ("origin-id", "urn:xmpp:sid:0") => {
                assert_eq!(child.attr("id"), Some(id.as_str()), "{xml}");
                "origin-id".into()
            }
            ("delay", "urn:xmpp:delay") => "delay".into(),
            (name, ns) => panic!("unexpected child {{{ns}}}{name}: {xml}"),
        })
        .collect();
    children.sort();
    assert_eq!(children, ["body", "delay", "origin-id", "subject"], "{xml}");
}

/// `ejabberdctl` for the instance in `root`, run as the `ejabberd` user through `setpriv` (no
/// PAM, so the caller's file descriptor limit is kept), with the instance's own ctl config.
fn ejabberdctl(root: &Path) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args([
            "--reuid=ejabberd",
            "--regid=ejabberd",
            "--init-groups",
            "env",
        ])
        .arg(format!("HOME={}", root.join("home").display()))
        .arg("ejabberdctl")
        .arg("--config-dir")
        .arg(root)
        .arg("--ctl-config")
        .arg(root.join("ejabberdctl.cfg"));
    command
}
