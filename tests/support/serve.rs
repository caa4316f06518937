//! The binary under test: `xmpp-broadcast serve --config FILE`, configured against a
//! [`Prosody`], with its stderr kept in a scratch file and printed if the test fails.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::admin::Admin;
use super::ejabberd::Ejabberd;
use super::mysql::MySqlDatabase;
use super::pg::PgDatabase;
use super::process::{self, LogFile};
use super::prosody::{COMPONENT_JID, COMPONENT_SECRET, DOMAIN, Prosody};
use super::secrets::assert_no_secret;
use super::{Deadline, free_port, scratch_dir};

/// The product binary built by cargo for integration tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_xmpp-broadcast");
/// Admin API username written into every test config.
pub const ADMIN_USER: &str = "admin";
/// Admin API password written into every test config.
pub const ADMIN_PASSWORD: &str = "xbtest-admin-password-K3m8";

/// A command running the product binary, shielded from `XMPP_BROADCAST_*` overrides in
/// the caller's environment so that only the test's config counts.
pub fn command() -> Command {
    let mut command = Command::new(BINARY);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("XMPP_BROADCAST_") {
            command.env_remove(name);
        }
    }
    command
}

/// A domain admin's `admin_password_hash` for `password`, made as the README says:
/// `printf '%s' PASSWORD | xmpp-broadcast hash-password`.
pub async fn hash_password(password: &str) -> String {
    let mut hash_password = command();
    hash_password.arg("hash-password");
    let output = process::output_with_input(hash_password, password.as_bytes()).await;
    assert!(
        output.status.success(),
        "hash-password failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("hash-password prints text")
        .trim()
        .to_owned()
}

/// How long `serve` may take to answer `/health` with `xmpp: connected`.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where `serve` keeps its jobs (`[database] url`).
pub enum JobStore {
    /// `jobs.db` in the instance's scratch dir.
    Sqlite,
    /// A PostgreSQL database, owned by the instance.
    Postgres(PgDatabase),
    /// A MariaDB database, owned by the instance.
    MySql(MySqlDatabase),
    /// A database the test owns and several instances share, by URL.
    Shared(String),
}

/// The settings written to the instance's TOML config.
pub struct ServeConfig {
    pub node_name: String,
    pub lease_time: u64,
    /// `[component] jid`: [`COMPONENT_JID`], or one of its own per instance of a cluster.
    pub component_jid: String,
    /// The XMPP server's XEP-0114 listener, `host:port`.
    pub component_server: String,
    /// The server's SQL database (`[users] url`).
    pub users_url: String,
    /// `[users] schema`, and `[users] domain` for ejabberd's default schema.
    pub users_schema: (&'static str, Option<&'static str>),
    pub jobs: JobStore,
    /// The `[domains."..."]` tables.
    pub domains: Vec<String>,
    /// HTTPS on the admin listener: `admin.tls_certificate`, `admin.tls_key`, and the CA file
    /// the test's clients trust.
    pub admin_tls: Option<AdminTlsFiles>,
    /// Named groups of the first domain: `(name, members_sql)`.
    pub groups: Vec<(String, String)>,
    /// `count_wait_ms`, if not the default.
    pub count_wait_ms: Option<u64>,
}

/// The PEM files of an instance's HTTPS.
#[derive(Clone, Debug)]
pub struct AdminTlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl ServeConfig {
    /// A config for `prosody`'s component and database, serving [`DOMAIN`].
    pub fn for_prosody(prosody: &Prosody, jobs: JobStore) -> Self {
        ServeConfig {
            node_name: "node1".into(),
            lease_time: 600,
            component_jid: COMPONENT_JID.into(),
            component_server: prosody.component_addr(),
            users_url: prosody.users_db_url(),
            users_schema: ("prosody", None),
            jobs,
            domains: vec![DOMAIN.into()],
            admin_tls: None,
            groups: Vec::new(),
            count_wait_ms: None,
        }
    }

    /// A config for `ejabberd`'s component and database, serving [`DOMAIN`].
    pub fn for_ejabberd(ejabberd: &Ejabberd, jobs: JobStore) -> Self {
        ServeConfig {
            node_name: "node1".into(),
            lease_time: 600,
            component_jid: COMPONENT_JID.into(),
            component_server: ejabberd.component_addr(),
            users_url: ejabberd.users_db_url(),
            users_schema: ejabberd.users_schema(),
            jobs,
            domains: vec![DOMAIN.into()],
            admin_tls: None,
            groups: Vec::new(),
            count_wait_ms: None,
        }
    }

    /// The TOML text (strings quoted with Rust's `Debug`, valid TOML for plain text);
    /// `domain_admins` maps a domain to its `admin_password_hash`.
    fn to_toml(
        &self,
        jobs_url: &str,
        admin_listen: &str,
        domain_admins: &[(&str, &str)],
    ) -> String {
        let mut domains = domains_toml(self.domains.iter().map(String::as_str), domain_admins);
        for (name, sql) in &self.groups {
            domains.push_str(&format!(
                "\n[domains.{:?}.groups.{name}]\nmembers_sql = {sql:?}\n",
                self.domains[0]
            ));
        }
        let tls = self
            .admin_tls
            .as_ref()
            .map(|tls| {
                format!(
                    "tls_certificate = {:?}\ntls_key = {:?}\n",
                    tls.certificate.display().to_string(),
                    tls.key.display().to_string()
                )
            })
            .unwrap_or_default();
        format!(
            "node_name = {node:?}\nlease_time = {lease}\nbackend = \"rdbms\"\n{count_wait}\n\
             [component]\njid = {jid:?}\nsecret = {COMPONENT_SECRET:?}\nserver = {server:?}\n\n\
             [database]\nurl = {jobs_url:?}\n\n\
             [users]\nschema = {schema:?}\nurl = {users:?}\n{users_domain}\n\
             [admin]\nlisten = {admin_listen:?}\nusername = {ADMIN_USER:?}\npassword = {ADMIN_PASSWORD:?}\n\
             {tls}{domains}",
            node = self.node_name,
            lease = self.lease_time,
            count_wait = self
                .count_wait_ms
                .map(|ms| format!("count_wait_ms = {ms}\n"))
                .unwrap_or_default(),
            jid = self.component_jid,
            server = self.component_server,
            users = self.users_url,
            schema = self.users_schema.0,
            users_domain = self
                .users_schema
                .1
                .map(|domain| format!("domain = {domain:?}\n"))
                .unwrap_or_default(),
        )
    }
}

/// The `[domains."..."]` tables of `domains`, with the `admin_password_hash` of those in
/// `domain_admins` (`(domain, hash)` pairs).
pub fn domains_toml<'a>(
    domains: impl Iterator<Item = &'a str>,
    domain_admins: &[(&str, &str)],
) -> String {
    domains
        .map(|domain| {
            let hash = domain_admins
                .iter()
                .find(|(admin_domain, _)| *admin_domain == domain)
                .map(|(_, hash)| format!("admin_password_hash = {hash:?}\n"))
                .unwrap_or_default();
            format!("\n[domains.{domain:?}]\n{hash}")
        })
        .collect()
}

/// One `serve` instance; SIGTERM (then SIGKILL) on drop.
pub struct Serve {
    child: Option<Child>,
    config_path: PathBuf,
    log: LogFile,
    /// `XMPP_BROADCAST_LOG`, if not the default.
    log_filter: Option<String>,
    admin: Admin,
    _jobs: JobStore,
    _dir: TempDir,
}

impl Serve {
    /// Writes the config, starts `serve` and waits until it is healthy and connected.
    pub async fn start(config: ServeConfig) -> Self {
        Serve::start_with_domain_admins(config, &[]).await
    }

    /// [`Serve::start`] with domain admins: `(domain, argon2 PHC hash)` pairs, written as the
    /// domains' `admin_password_hash` (each domain must be in `config.domains`).
    pub async fn start_with_domain_admins(
        config: ServeConfig,
        domain_admins: &[(&str, &str)],
    ) -> Self {
        let mut serve = Serve::configure(config, domain_admins);
        serve.spawn();
        serve.wait_healthy().await;
        serve
    }

    /// The instance of `config`, its config file written, not started.
    fn configure(config: ServeConfig, domain_admins: &[(&str, &str)]) -> Self {
        let dir = scratch_dir("serve");
        let jobs_url = match &config.jobs {
            JobStore::Sqlite => format!("sqlite://{}", dir.path().join("jobs.db").display()),
            JobStore::Postgres(db) => db.url(),
            JobStore::MySql(db) => db.url(),
            JobStore::Shared(url) => url.clone(),
        };
        let admin_listen = format!("127.0.0.1:{}", free_port());
        let config_path = dir.path().join("xmpp-broadcast.toml");
        fs::write(
            &config_path,
            config.to_toml(&jobs_url, &admin_listen, domain_admins),
        )
        .expect("write config");
        Serve {
            child: None,
            log: LogFile::new(&dir.path().join("serve.log"), "xmpp-broadcast serve stderr"),
            log_filter: None,
            config_path,
            admin: match &config.admin_tls {
                Some(tls) => Admin::https(&admin_listen, &tls.ca, ADMIN_USER, ADMIN_PASSWORD),
                None => Admin::new(&admin_listen, ADMIN_USER, ADMIN_PASSWORD),
            },
            _jobs: config.jobs,
            _dir: dir,
        }
    }

    /// Writes the config, starts `serve` with its log filtered by `log_filter`
    /// (`XMPP_BROADCAST_LOG`) and waits until its component is connected, whether or not its
    /// job database is up.
    pub async fn launch(config: ServeConfig, log_filter: &str) -> Self {
        let mut serve = Serve::configure(config, &[]);
        serve.log_filter = Some(log_filter.to_owned());
        serve.spawn();
        serve
            .wait_health("serve to listen and connect", |health| {
                health["xmpp"] == "connected"
            })
            .await;
        serve
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "serve is already running");
        let mut command = command();
        if let Some(filter) = &self.log_filter {
            command.env("XMPP_BROADCAST_LOG", filter);
        }
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(self.log.append_handle())
            .stderr(self.log.append_handle())
            .spawn()
            .expect("spawn xmpp-broadcast serve");
        self.child = Some(child);
    }

    /// The admin API client of this instance.
    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    /// The instance's config file, as `serve --config` reads it.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// Polls `/health` until `status` is `ok` (the job database is up) and `xmpp` is
    /// `connected`; panics (with the log) if `serve` exits.
    pub async fn wait_healthy(&mut self) {
        self.wait_health("serve to be healthy and connected", |health| {
            health["status"] == "ok" && health["xmpp"] == "connected"
        })
        .await;
    }

    /// Polls `/health` until `accept` holds; returns that answer. Panics (with the log) if
    /// `serve` exits.
    pub async fn wait_health(
        &mut self,
        what: &str,
        accept: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Deadline::after(HEALTHY_TIMEOUT, what);
        loop {
            let child = self.child.as_mut().expect("serve is running");
            if let Some(status) = child.try_wait().expect("try_wait serve") {
                panic!("xmpp-broadcast serve exited with {status}");
            }
            if let Some(health) = self.admin.health().await
                && accept(&health)
            {
                return health;
            }
            deadline.tick().await;
        }
    }

    /// Kills `serve` with SIGKILL (no chance to clean up) and reaps it.
    pub fn sigkill(&mut self) {
        let mut child = self.child.take().expect("serve is running");
        child.kill().expect("SIGKILL serve");
        child.wait().expect("reap serve");
    }

    /// The process id of the running `serve`.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("serve is running").id()
    }

    /// Freezes `serve` (SIGSTOP): it keeps its sockets but runs nothing until [`Serve::sigcont`].
    pub fn sigstop(&self) {
        process::signal(self.pid(), "STOP");
    }

    /// Sends SIGHUP: `serve` re-reads its admin certificate and key.
    pub fn sighup(&self) {
        process::signal(self.pid(), "HUP");
    }

    /// Lets a frozen `serve` run again (SIGCONT).
    pub fn sigcont(&self) {
        process::signal(self.pid(), "CONT");
    }

    /// What `serve` has logged so far (stdout and stderr).
    pub fn log(&self) -> String {
        self.log.contents()
    }

    /// Sends SIGTERM and waits for `serve` to exit.
    pub async fn sigterm(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("serve is running");
        process::signal(child.id(), "TERM");
        process::wait_exit(&mut child, Duration::from_secs(30), "serve after SIGTERM").await
    }

    /// Starts `serve` again with the same config (stopping it first if it runs) and waits
    /// until it is healthy.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.sigterm().await;
        }
        self.spawn();
        self.wait_healthy().await;
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            process::terminate(child, Duration::from_secs(10));
        }
        self.log.print_if_panicking();
        if !std::thread::panicking() {
            assert_no_secret("the log of xmpp-broadcast serve", &self.log());
        }
    }
}
