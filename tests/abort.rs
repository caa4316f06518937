//! An administrator's abort while the job database refuses it, with real parts: Prosody, one
//! `serve` instance reaching Prosody through a recording proxy, and a PostgreSQL or MariaDB job
//! database whose `xb_jobs` rejects every update (a BEFORE UPDATE trigger that raises).
//!
//! The answer is `database_error` saying that the instance stopped its own sending; nothing of
//! the job reaches Prosody after it (counted at the proxy, over many chunks at the job's rate);
//! `xmpp-broadcast abort` tells the operator the same, exiting 5; once the database takes
//! writes again the instance records the abort by itself within about a second: ABORT_ADMIN,
//! counted once, and still nothing more sent (design invariant 5).

mod support;

use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection};
use support::Deadline;
use support::cluster::{Cluster, JobDatabase, RATE, seconds};
use support::prosody::DOMAIN;

/// Accounts: at [`RATE`] messages per second, ten seconds of sending, far more than the test
/// needs before its abort.
const ACCOUNTS: usize = 100;
/// Messages sent before the abort: the job is well under way.
const SENT_BEFORE: usize = 5;
/// How long nothing may reach Prosody after the answer: 15 chunks at [`RATE`] (one message
/// every 100 ms).
const QUIET: Duration = Duration::from_millis(1500);
/// How long the instance may take to record the abort once the database takes writes: its
/// one-second retry, and slack for a loaded machine.
const RECORDED_WITHIN: Duration = Duration::from_secs(5);
/// What the answer says when this instance ran the job.
const STOPPED_HERE: &str = "This instance stopped its own sending of the job";

/// The job database refusing every update of `xb_jobs`, until [`Refusal::lift`].
struct Refusal {
    kind: JobDatabase,
    url: String,
}

impl Refusal {
    async fn impose(kind: JobDatabase, url: &str) -> Refusal {
        let refusal = Refusal {
            kind,
            url: url.to_owned(),
        };
        let statements: &[&str] = match kind {
            JobDatabase::Postgres => &[
                "CREATE FUNCTION xb_refuse() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'xb_jobs refuses writes'; END $$",
                "CREATE TRIGGER xb_refuse BEFORE UPDATE ON xb_jobs \
                 FOR EACH ROW EXECUTE FUNCTION xb_refuse()",
            ],
            JobDatabase::MariaDb => &[
                "CREATE TRIGGER xb_refuse BEFORE UPDATE ON xb_jobs FOR EACH ROW \
                 SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'xb_jobs refuses writes'",
            ],
        };
        refusal.run(statements).await;
        refusal
    }

    async fn lift(&self) {
        let statements: &[&str] = match self.kind {
            JobDatabase::Postgres => &["DROP TRIGGER xb_refuse ON xb_jobs"],
            JobDatabase::MariaDb => &["DROP TRIGGER xb_refuse"],
        };
        self.run(statements).await;
    }

    async fn run(&self, statements: &[&str]) {
        for statement in statements {
            let sql = sqlx::raw_sql(AssertSqlSafe(*statement));
            let done = match self.kind {
                JobDatabase::Postgres => {
                    let mut db = sqlx::PgConnection::connect(&self.url).await.unwrap();
                    sql.execute(&mut db).await.map(drop)
                }
                JobDatabase::MariaDb => {
                    let mut db = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
                    sql.execute(&mut db).await.map(drop)
                }
            };
            done.unwrap_or_else(|err| panic!("{statement}: {err}"));
        }
    }
}

async fn abort_while_the_database_refuses_it(kind: JobDatabase) {
    let cluster = Cluster::start(kind, 1, ACCOUNTS).await;
    let node = &cluster.nodes[0];
    let admin = node.admin();
    let (id, _) = cluster.start_job(0, "refused abort").await;
    let deadline = Deadline::after(Duration::from_secs(20), "the job to be sending");
    while node.messages_sent() < SENT_BEFORE {
        deadline.tick().await;
    }

    let refusal = Refusal::impose(kind, &cluster.jobs_url).await;
    let asked = Instant::now();
    let answer = admin.abort_broadcast(id).await;
    let answered_after = seconds(asked);
    let at_answer = node.messages_sent();
    let refused = answer.expect_err("the database refused the abort");
    assert_eq!(refused.code, "database_error", "{refused:?}");
    assert!(
        refused.message.starts_with("The abort is not recorded yet")
            && refused.message.contains(STOPPED_HERE),
        "{refused:?}"
    );
    assert!(
        at_answer < ACCOUNTS,
        "the job ended before the abort: {at_answer} sent"
    );

    // Nothing more reaches Prosody, over many chunks at the job's rate.
    let quiet = Instant::now() + QUIET;
    while Instant::now() < quiet {
        assert_eq!(node.messages_sent(), at_answer, "sent after the answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = admin.get_broadcast(id).await;
    assert_eq!(
        (job["executionState"].as_str(), job["ownerNode"].as_str()),
        (Some("RUNNING"), Some(node.name.as_str())),
        "not recorded, and the lease kept: {job}"
    );
    assert_eq!(node.metric("mod_broadcast_live_jobs").await, 0.0);

    // The operator's command says the same, with the exit code of `database_error`.
    let mut cli = support::serve::command();
    cli.args(["abort", &id.to_string(), "--domain", DOMAIN, "--config"])
        .arg(node.serve.config_path());
    let run = support::process::output_with_input(cli, b"").await;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.starts_with("error: The abort is not recorded yet")
            && stderr.contains(STOPPED_HERE)
            && stderr.trim_end().ends_with("(database_error)"),
        "{stderr}"
    );

    refusal.lift().await;
    let lifted = Instant::now();
    let job = admin.wait_state(id, "ABORT_ADMIN", RECORDED_WITHIN).await;
    let recorded_after = seconds(lifted);
    assert_eq!(job["ownerNode"], "undefined", "the lease is gone: {job}");
    let deadline = Deadline::after(RECORDED_WITHIN, "the abort to be counted");
    while node.metric("mod_broadcast_jobs_aborted_admin_total").await != 1.0 {
        deadline.tick().await;
    }
    assert_eq!(node.metric("mod_broadcast_live_jobs").await, 0.0);
    assert_eq!(node.messages_sent(), at_answer, "sent after the answer");
    eprintln!(
        "{kind:?}: abort answered in {answered_after:.2} s with {at_answer} of {ACCOUNTS} sent \
         at {RATE}/s, nothing sent for {:.1} s after; recorded {recorded_after:.2} s after the \
         database took writes again",
        seconds(asked) - answered_after
    );
}

mod abort_while_the_database_refuses_it {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres() {
        super::abort_while_the_database_refuses_it(JobDatabase::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn mariadb() {
        super::abort_while_the_database_refuses_it(JobDatabase::MariaDb).await;
    }
}
