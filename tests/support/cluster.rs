//! Several `serve` instances sharing one job database, on one real Prosody: the cluster
//! fault tests (`tests/cluster.rs`).
//!
//! Each instance has its own node name (`node1`, `node2`, ...) and its own component JID
//! (`broadcast1.example.com`, ...), and reaches Prosody through its own recording
//! [`TcpProxy`], so a test can count the `<message` stanzas each instance sent and when. All
//! instances reach the job database (PostgreSQL or MariaDB, a fresh database per test)
//! through one more proxy, which a test can cut to make the database unreachable.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::admin::{Admin, BroadcastSpec};
use super::mysql::MySqlDatabase;
use super::pg::PgDatabase;
use super::prosody::{DOMAIN, Prosody, ProsodyStorage};
use super::proxy::TcpProxy;
use super::serve::{JobStore, Serve, ServeConfig};
use super::stanza::Announcement;
use super::{Deadline, scenarios};

/// The lease time of every instance: the minimum `serve` accepts, so that faults are
/// noticed as fast as the product allows.
pub const LEASE_TIME: u64 = 10;
/// Messages per second of the cluster tests' jobs: low, so that a job spans several batches
/// with a few hundred accounts.
pub const RATE: i64 = 10;
/// Recipients per batch (rate × 10): the most a failure may make the cluster send twice.
pub const BATCH: usize = RATE as usize * 10;
/// The password of every account.
pub const PASSWORD: &str = "pw";
/// What counts one message stanza in the bytes an instance sent to Prosody.
const MESSAGE: &str = "<message";

/// The shared job database's server.
#[derive(Clone, Copy, Debug)]
pub enum JobDatabase {
    Postgres,
    MariaDb,
}

/// A fresh database on that server, dropped with the cluster.
enum Database {
    Postgres(PgDatabase),
    MariaDb(MySqlDatabase),
}

impl Database {
    async fn create(kind: JobDatabase) -> Self {
        match kind {
            JobDatabase::Postgres => Database::Postgres(PgDatabase::create().await),
            JobDatabase::MariaDb => Database::MariaDb(MySqlDatabase::create().await),
        }
    }

    /// The database's URL, and the `127.0.0.1:port` of its server in it.
    fn url_and_server(&self) -> (String, &'static str) {
        match self {
            Database::Postgres(db) => (db.url(), "127.0.0.1:5432"),
            Database::MariaDb(db) => (db.url(), "127.0.0.1:3306"),
        }
    }

    /// The server's address.
    fn server(&self) -> SocketAddr {
        self.url_and_server().1.parse().expect("server address")
    }

    /// The database's URL with the server replaced by `proxy`.
    fn url_through(&self, proxy: SocketAddr) -> String {
        let (url, server) = self.url_and_server();
        assert!(url.contains(server), "{url} names {server}");
        url.replacen(server, &proxy.to_string(), 1)
    }
}

/// One `serve` instance of the cluster.
pub struct Node {
    /// `node1`, `node2`, ...: the instance's `node_name`, shown as a job's `ownerNode`.
    pub name: String,
    pub serve: Serve,
    /// The instance's XEP-0114 connection to Prosody passes through this recording proxy.
    pub xmpp: TcpProxy,
    frozen: bool,
}

impl Node {
    pub fn admin(&self) -> &Admin {
        self.serve.admin()
    }

    /// Freezes the instance (SIGSTOP).
    pub fn sigstop(&mut self) {
        self.serve.sigstop();
        self.frozen = true;
    }

    /// Lets the frozen instance run again (SIGCONT).
    pub fn sigcont(&mut self) {
        self.serve.sigcont();
        self.frozen = false;
    }

    /// How many message stanzas this instance has sent to Prosody so far, over all its
    /// connections.
    pub fn messages_sent(&self) -> usize {
        self.xmpp.sent_count(MESSAGE)
    }

    /// The value of one of this instance's metrics for [`DOMAIN`] (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        self.admin().metric(name, DOMAIN).await.unwrap_or_default()
    }

    /// Lets the frozen instance run again (SIGCONT) and polls its `mod_broadcast_live_jobs`
    /// until it runs no job; returns how many seconds that took.
    pub async fn sigcont_until_idle(&mut self) -> f64 {
        self.sigcont();
        let woke = Instant::now();
        let deadline = Deadline::after(Duration::from_secs(10), format!("{} to stop", self.name));
        while self.metric("mod_broadcast_live_jobs").await != 0.0 {
            deadline.tick().await;
        }
        seconds(woke)
    }
}

impl Drop for Node {
    /// A frozen instance would ignore the SIGTERM that stops it.
    fn drop(&mut self) {
        if self.frozen {
            self.serve.sigcont();
        }
    }
}

/// Prosody, the shared job database and the `serve` instances; dropped instances first and
/// Prosody last (fields drop in declaration order).
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// Between every instance and the job database.
    pub database: TcpProxy,
    /// The job database without the proxy, for the test's own queries.
    pub jobs_url: String,
    _jobs: Database,
    pub prosody: Prosody,
    /// Every account of [`DOMAIN`], the sender `admin@example.com` included: the recipients of
    /// any job.
    pub recipients: Vec<String>,
    pub sender: String,
}

impl Cluster {
    /// Starts Prosody with `accounts` accounts (`u0001`.. and `admin`) and `nodes` instances
    /// with a [`LEASE_TIME`] lease on a fresh database of `kind`.
    pub async fn start(kind: JobDatabase, nodes: usize, accounts: usize) -> Self {
        let jids: Vec<String> = (1..=nodes)
            .map(|i| format!("broadcast{i}.{DOMAIN}"))
            .collect();
        let components: Vec<&str> = jids.iter().map(String::as_str).collect();
        let prosody = Prosody::start_with_components(ProsodyStorage::Sqlite, &components).await;
        let (mut recipients, sender, jobs) = tokio::join!(
            prosody.register_users("u", accounts - 1, PASSWORD),
            prosody.register_user("admin", PASSWORD),
            Database::create(kind),
        );
        recipients.push(sender.clone());
        let database = TcpProxy::start(jobs.server()).await;
        let jobs_through_proxy = jobs.url_through(database.address());
        let xmpp_server: SocketAddr = prosody.component_addr().parse().expect("address");
        let mut cluster = Cluster {
            nodes: Vec::new(),
            database,
            jobs_url: jobs.url_and_server().0,
            _jobs: jobs,
            prosody,
            recipients,
            sender,
        };
        for (i, jid) in jids.into_iter().enumerate() {
            let xmpp = TcpProxy::start_recording(xmpp_server).await;
            let mut config = ServeConfig::for_prosody(
                &cluster.prosody,
                JobStore::Shared(jobs_through_proxy.clone()),
            );
            config.node_name = format!("node{}", i + 1);
            config.lease_time = LEASE_TIME;
            config.component_jid = jid;
            config.component_server = xmpp.address().to_string();
            let name = config.node_name.clone();
            let serve = Serve::start(config).await;
            cluster.nodes.push(Node {
                name,
                serve,
                xmpp,
                frozen: false,
            });
        }
        cluster
    }

    /// A job of [`RATE`] messages per second for every account, sent by `admin@example.com`.
    pub fn spec(&self, name: &str) -> BroadcastSpec {
        BroadcastSpec {
            name: name.into(),
            sender: self.sender.clone(),
            rate: RATE,
            ..BroadcastSpec::default()
        }
    }

    /// Starts [`Cluster::spec`] on node `node` (which then owns it); returns the job id and
    /// the message every recipient must get.
    pub async fn start_job(&self, node: usize, name: &str) -> (i64, Announcement) {
        let spec = self.spec(name);
        let id = self.nodes[node]
            .admin()
            .start_broadcast(&spec)
            .await
            .expect("startBroadcast");
        let announcement = Announcement {
            job_id: id,
            sender: spec.sender,
            subject: spec.subject,
            body: spec.body,
        };
        (id, announcement)
    }

    /// How many messages Prosody's offline store holds (no account is online).
    pub async fn stored(&self) -> usize {
        self.prosody.offline_messages().await.len()
    }

    /// Polls until the offline store holds at least `count` messages.
    pub async fn wait_stored(&self, count: usize, timeout: Duration) {
        let deadline = Deadline::after(timeout, format!("{count} stored messages"));
        while self.stored().await < count {
            deadline.tick().await;
        }
    }

    /// Starts a job on node 0 and waits until it is in the middle of its second batch: the
    /// first batch is committed, `into_second` messages of the second have reached Prosody.
    pub async fn job_in_second_batch(&self, name: &str, into_second: usize) -> (i64, Announcement) {
        let (id, announcement) = self.start_job(0, name).await;
        let admin = self.nodes[0].admin();
        admin
            .wait_processed(id, BATCH as i64, Duration::from_secs(60))
            .await;
        self.wait_stored(BATCH + into_second, Duration::from_secs(30))
            .await;
        let job = admin.get_broadcast(id).await;
        assert_eq!(
            (
                job["executionState"].as_str(),
                job["recipientsProcessed"].as_i64()
            ),
            (Some("RUNNING"), Some(BATCH as i64)),
            "not in the middle of the second batch: {job}"
        );
        assert_eq!(job["ownerNode"], self.nodes[0].name.as_str(), "{job}");
        (id, announcement)
    }

    /// Polls job `id` through node `via` until its owner is no longer `owner`; returns the job.
    pub async fn wait_owner_change(
        &self,
        via: usize,
        id: i64,
        owner: &str,
        timeout: Duration,
    ) -> Value {
        let deadline = Deadline::after(timeout, format!("job {id} to leave {owner}"));
        loop {
            let job = self.nodes[via].admin().get_broadcast(id).await;
            if job["ownerNode"] != owner {
                return job;
            }
            deadline.tick().await;
        }
    }

    /// Waits through node `via` until job `id` is FINISHED with every recipient processed,
    /// checks that every account got the message, and returns how many were repeats.
    pub async fn assert_finished_and_delivered(
        &self,
        via: usize,
        id: i64,
        announcement: &Announcement,
    ) -> usize {
        let job = self.nodes[via]
            .admin()
            .wait_state(id, "FINISHED", Duration::from_secs(90))
            .await;
        let count = self.recipients.len();
        assert_eq!(job["recipientCount"], count, "{job}");
        assert_eq!(job["recipientsProcessed"], count, "{job}");
        scenarios::assert_delivered(&self.prosody, announcement, &self.recipients).await
    }
}

/// Seconds since `since`, for the tests' printed timings.
pub fn seconds(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}
