//! A whole instance inside the test process: `xmpp_broadcast::app::run` with its admin API on
//! `127.0.0.1:0`, jobs in SQLite, users in a Prosody-layout SQLite database the test fills, and
//! the [`FakeServer`] as its XMPP server. It starts in milliseconds and has no port race, so the
//! admin API, metrics and CLI scenarios run here; what needs a real server (delivery to a
//! client, a server's offline store) runs against Prosody and ejabberd.

use std::time::Duration;

use sqlx::{ConnectOptions, Connection};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xmpp_broadcast::config::Config;

use super::admin::Admin;
use super::fake_server::{COMPONENT_JID, FakeServer, SECRET};
use super::serve::{ADMIN_PASSWORD, ADMIN_USER, domains_toml};
use super::{Deadline, scratch_dir};

/// The instance's config file in its scratch directory, as `--config` takes it.
const CONFIG_FILE: &str = "component.toml";

/// How long the instance may take to connect to the fake server.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the instance serves.
pub struct AppOptions {
    /// `(domain, usernames)`: the configured domains and their accounts.
    pub domains: Vec<(String, Vec<String>)>,
    /// `(domain, argon2 PHC hash)` of domain admins.
    pub domain_admins: Vec<(String, String)>,
    pub node_name: String,
    pub lease_time: u64,
    /// `[database] url`; `None`: `jobs.db` in the instance's scratch directory.
    pub jobs_url: Option<String>,
    /// `[users] database_id`; `None`: the users database's own name (its path here, which
    /// differs from one instance to the next).
    pub users_database_id: Option<String>,
    /// `(domain, name, members_sql)`: named groups.
    pub groups: Vec<(String, String, String)>,
    /// Statements run on the users database once its accounts are in (tables of groups).
    pub users_sql: Vec<String>,
}

impl AppOptions {
    /// One domain with `count` accounts `u0001`… plus the sender `admin`.
    pub fn one_domain(domain: &str, count: usize) -> Self {
        AppOptions {
            domains: vec![(domain.to_owned(), accounts("u", count))],
            domain_admins: Vec::new(),
            node_name: "node1".into(),
            lease_time: 600,
            jobs_url: None,
            users_database_id: None,
            groups: Vec::new(),
            users_sql: Vec::new(),
        }
    }

    /// The same, naming its users database `id`: instances started one after the other in a
    /// test each have a users database of their own, with the same accounts; under one name
    /// they may run each other's jobs, as instances reading one database do.
    pub fn with_users_database_id(mut self, id: &str) -> Self {
        self.users_database_id = Some(id.to_owned());
        self
    }

    /// The same with its jobs in the database at `url`.
    pub fn with_jobs_url(mut self, url: &str) -> Self {
        self.jobs_url = Some(url.to_owned());
        self
    }

    /// Adds a domain with `count` accounts `{prefix}0001`… plus `admin`.
    pub fn with_domain(mut self, domain: &str, prefix: &str, count: usize) -> Self {
        self.domains
            .push((domain.to_owned(), accounts(prefix, count)));
        self
    }
}

/// `{prefix}0001`..`{prefix}{count}` and `admin`.
pub fn accounts(prefix: &str, count: usize) -> Vec<String> {
    let mut users: Vec<String> = (1..=count).map(|i| format!("{prefix}{i:04}")).collect();
    users.push("admin".into());
    users
}

/// A running in-process instance; stopped (gracefully) by [`App::stop`] or when dropped.
pub struct App {
    pub admin: Admin,
    pub server: FakeServer,
    pub admin_address: String,
    users_url: String,
    jobs_url: String,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    dir: TempDir,
}

impl App {
    /// Starts an instance and waits until its component is connected and its job database
    /// is up.
    pub async fn start(options: AppOptions) -> App {
        let app = App::launch(options).await;
        app.wait_job_database_up().await;
        app
    }

    /// Starts an instance and waits until its component is connected, whether or not its job
    /// database is up.
    pub async fn launch(options: AppOptions) -> App {
        let dir = scratch_dir("app");
        let users_url = format!("sqlite://{}/users.db", dir.path().display());
        create_prosody_users(&users_url, &options.domains).await;
        for sql in &options.users_sql {
            App::run_on_users(&users_url, sql).await;
        }
        let server = FakeServer::start(None).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_address = listener.local_addr().unwrap().to_string();
        let jobs_url = options
            .jobs_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}/jobs.db", dir.path().display()));
        let toml = config_toml(
            &options,
            &jobs_url,
            &users_url,
            &server.address,
            &admin_address,
        );
        std::fs::write(dir.path().join(CONFIG_FILE), &toml).unwrap();
        let config = Config::from_toml(&toml, &[]).expect("test config is valid");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(xmpp_broadcast::app::run(config, listener, shutdown.clone()));
        let admin = Admin::new(&admin_address, ADMIN_USER, ADMIN_PASSWORD);
        let app = App {
            admin,
            server,
            admin_address,
            users_url,
            jobs_url,
            shutdown,
            task: Some(task),
            dir,
        };
        app.wait_connected().await;
        app
    }

    async fn wait_connected(&self) {
        self.wait_health(
            "the in-process instance to connect",
            READY_TIMEOUT,
            |health| health["xmpp"] == "connected",
        )
        .await;
    }

    /// Waits until `/health` says the job database is up (and `status` is `ok`).
    pub async fn wait_job_database_up(&self) {
        self.wait_health("the job database to be up", READY_TIMEOUT, |health| {
            health["job_database"] == "up" && health["status"] == "ok"
        })
        .await;
    }

    /// Polls `/health` until `accept` holds; returns that answer.
    pub async fn wait_health(
        &self,
        what: &str,
        timeout: Duration,
        accept: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Deadline::after(timeout, what);
        loop {
            if let Some(health) = self.admin.health().await
                && accept(&health)
            {
                return health;
            }
            deadline.tick().await;
        }
    }

    /// The admin API client, logged in as the global admin.
    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    /// The instance's config file (its `admin.listen` is the bound address).
    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join(CONFIG_FILE)
    }

    /// The instance's scratch directory (jobs.db, users.db).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The job database's URL.
    pub fn jobs_url(&self) -> String {
        self.jobs_url.clone()
    }

    /// Runs `sql` on the users database.
    pub async fn users_sql(&self, sql: &str) {
        App::run_on_users(&self.users_url, sql).await;
    }

    async fn run_on_users(url: &str, sql: &str) {
        let mut conn = connect(url).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }

    /// Registers `user@domain` in the users database.
    pub async fn register(&self, domain: &str, user: &str) {
        let mut conn = connect(&self.users_url).await;
        insert_account(&mut conn, domain, user).await;
        conn.close().await.unwrap();
    }

    /// Messages the fake server received for `jid`.
    pub fn messages_to(&self, jid: &str) -> usize {
        self.server
            .seen(|seen| seen.messages.iter().filter(|m| m.to == jid).count())
    }

    /// Stops the instance as SIGTERM would and waits for it; returns what `run` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.take().unwrap().await.expect("app task")
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn config_toml(
    options: &AppOptions,
    jobs_url: &str,
    users_url: &str,
    server: &str,
    admin_listen: &str,
) -> String {
    let admins: Vec<(&str, &str)> = options
        .domain_admins
        .iter()
        .map(|(domain, hash)| (domain.as_str(), hash.as_str()))
        .collect();
    let mut domains = domains_toml(options.domains.iter().map(|(d, _)| d.as_str()), &admins);
    for (domain, name, sql) in &options.groups {
        domains.push_str(&format!(
            "\n[domains.{domain:?}.groups.{name}]\nmembers_sql = {sql:?}\n"
        ));
    }
    let database_id = options
        .users_database_id
        .as_ref()
        .map(|id| format!("database_id = {id:?}\n"))
        .unwrap_or_default();
    format!(
        "node_name = {node:?}\nlease_time = {lease}\nbackend = \"rdbms\"\n\n\
         [component]\njid = {COMPONENT_JID:?}\nsecret = {SECRET:?}\nserver = {server:?}\n\n\
         [database]\nurl = {jobs_url:?}\n\n\
         [users]\nschema = \"prosody\"\nurl = {users_url:?}\n{database_id}\n\
         [admin]\nlisten = {admin_listen:?}\nusername = {ADMIN_USER:?}\n\
         password = {ADMIN_PASSWORD:?}\n{domains}",
        node = options.node_name,
        lease = options.lease_time,
    )
}

async fn connect(url: &str) -> sqlx::SqliteConnection {
    <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
        .unwrap()
        .create_if_missing(true)
        .connect()
        .await
        .unwrap()
}

/// Prosody's `prosody` table (mod_storage_sql) with an `accounts` row per user.
async fn create_prosody_users(url: &str, domains: &[(String, Vec<String>)]) {
    let mut conn = connect(url).await;
    sqlx::query(
        "CREATE TABLE prosody (host TEXT NOT NULL, user TEXT NOT NULL, store TEXT NOT NULL, \
         key TEXT NOT NULL, type TEXT NOT NULL, value TEXT NOT NULL)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let mut transaction = conn.begin().await.unwrap();
    for (domain, users) in domains {
        for user in users {
            insert_account(&mut transaction, domain, user).await;
        }
    }
    transaction.commit().await.unwrap();
    conn.close().await.unwrap();
}

async fn insert_account(conn: &mut sqlx::SqliteConnection, domain: &str, user: &str) {
    sqlx::query(
        "INSERT INTO prosody (host, user, store, key, type, value) \
         VALUES ($1, $2, 'accounts', 'password', 'string', 'pw')",
    )
    .bind(domain)
    .bind(user)
    .execute(conn)
    .await
    .unwrap();
}
