//! Faults in a cluster (issue #5): two or three `serve` instances, each with its own component
//! JID on one real Prosody, sharing one job database (PostgreSQL, and MariaDB for the faults
//! that matter most), with `lease_time = 10`.
//!
//! Every job sends [`RATE`] messages per second to 300 accounts, so it spans three batches of
//! [`BATCH`] (ten seconds each) and a fault lands in the middle of one. No account is online:
//! what reached Prosody is its offline store. What each instance sent is counted at its own
//! recording proxy in front of Prosody.
//!
//! 1. SIGKILL of the owner: another instance takes the job over and finishes it.
//! 2. SIGSTOP of the owner until another instance took the job over: after SIGCONT the old
//!    owner sends nothing more.
//! 3. 50 concurrent `startBroadcast` for one domain over three instances: one job.
//! 4. The job database unreachable for 20 s: sending stops by the safety deadline, starts are
//!    refused, and the job finishes once the database is back.
//! 5. Prosody restarted in the middle of a job: the job finishes, nothing lost.
//! 6. An abort from another instance while the owner is frozen: ABORT_ADMIN at once, nothing
//!    sent after SIGCONT.
//! 7. SIGTERM of the owner: another instance continues at its next renewal round.
//! 8. The job database answering errors until the worker gives up and cannot even record it:
//!    the job must not stay RUNNING with nobody sending it.
//! 9. 20 concurrent `startBroadcast` with one idempotency key over three instances: one job,
//!    every call answered with it, every user gets one message.
//! 10. A job scheduled through one instance that is then killed with SIGKILL: another starts
//!     it on time, with the recipients of that moment, and a real client gets it once.
//! 11. A pause through another instance than the owner: the owner stops within about a
//!     second, nothing reaches the server while paused, and after a resume the job finishes
//!     with every user reached and at most one batch repeated.

mod support;

use std::time::{Duration, Instant};

use support::Deadline;
use support::cluster::{BATCH, Cluster, JobDatabase, LEASE_TIME, RATE, seconds};
use support::stanza::Announcement;
use support::xmpp_client::XmppClient;

/// Accounts in every scenario: three batches.
const ACCOUNTS: usize = 3 * BATCH;
/// How long a lease stays valid after its last renewal; renewals come every third of it,
/// jittered by a fifth (so at most 4 s apart).
const LEASE: Duration = Duration::from_secs(LEASE_TIME);
/// When the safety deadline of an instance has passed at the latest, counted from a moment
/// at which it can no longer renew: `lease_time − lease_time/5` after its last renewal, which
/// began before that moment; one second more for scheduling.
const SAFETY_DEADLINE: Duration = Duration::from_secs(LEASE_TIME - LEASE_TIME / 5 + 1);
/// Upper bound of a takeover after the owner stopped: the lease runs out (at most
/// [`LEASE`] after the kill) and a surviving instance takes it at its next renewal round (at
/// most `lease_time/3 × 1.2` = 4 s later), plus slack for a loaded machine.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(LEASE_TIME + 4 + 6);

/// Declares a module named after `scenario` with one test per job database, each running
/// `scenario` on it: `sigkilled_owner_is_taken_over::postgres`, `...::mariadb`.
macro_rules! on_databases {
    ($scenario:ident, $($test:ident => $kind:ident),+) => {
        mod $scenario {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $test() {
                    super::$scenario(super::JobDatabase::$kind).await;
                }
            )+
        }
    };
}

// ---- 1. SIGKILL of the owner ------------------------------------------------------------

async fn sigkilled_owner_is_taken_over(kind: JobDatabase) {
    let mut cluster = Cluster::start(kind, 3, ACCOUNTS).await;
    let (id, announcement) = cluster.job_in_second_batch("sigkill", BATCH / 4).await;
    let old_owner = cluster.nodes[0].name.clone();

    let killed = Instant::now();
    cluster.nodes[0].serve.sigkill();
    let job = cluster
        .wait_owner_change(1, id, &old_owner, TAKEOVER_LIMIT)
        .await;
    let takeover = seconds(killed);
    let at_takeover = cluster.stored().await;
    let deadline = Deadline::after(Duration::from_secs(20), "sending to resume");
    while cluster.stored().await <= at_takeover {
        deadline.tick().await;
    }
    let resumed = seconds(killed);
    let new_owner = job["ownerNode"].as_str().unwrap_or_default().to_owned();
    assert!(
        new_owner == cluster.nodes[1].name || new_owner == cluster.nodes[2].name,
        "{job}"
    );

    let repeats = cluster
        .assert_finished_and_delivered(1, id, &announcement)
        .await;
    eprintln!(
        "{kind:?}: SIGKILL of {old_owner}: {new_owner} took the job over after {takeover:.1} s \
         (ownerNode), sending resumed after {resumed:.1} s, {repeats} messages repeated"
    );
    // A lease renewed at most 4 s before the kill was still valid for at least 6 s.
    assert!(
        takeover >= (LEASE - Duration::from_secs(5)).as_secs_f64(),
        "taken over after {takeover:.1} s, while the lease was still valid"
    );
    assert!(repeats <= BATCH, "{repeats} repeats, more than one batch");
}

on_databases!(sigkilled_owner_is_taken_over, postgres => Postgres, mariadb => MariaDb);

// ---- 2. SIGSTOP of the owner until it is taken over --------------------------------------

/// The owner is frozen in the middle of a batch until another instance has taken the job
/// over; after SIGCONT it must notice that its safety deadline passed, pause, find the lease
/// gone and stop, without sending one more message or committing anything.
async fn frozen_owner_sends_nothing_after_takeover(kind: JobDatabase) {
    let mut cluster = Cluster::start(kind, 3, ACCOUNTS).await;
    let (id, announcement) = cluster.job_in_second_batch("sigstop", BATCH / 4).await;
    let old_owner = cluster.nodes[0].name.clone();
    let processed_before = cluster.nodes[0]
        .metric("mod_broadcast_recipients_processed_total")
        .await;
    assert_eq!(processed_before, BATCH as f64, "the first batch's count");

    let frozen = Instant::now();
    cluster.nodes[0].sigstop();
    let job = cluster
        .wait_owner_change(1, id, &old_owner, TAKEOVER_LIMIT)
        .await;
    let takeover = seconds(frozen);
    let sent_before = cluster.nodes[0].messages_sent();
    let dropped = cluster.nodes[0].sigcont_until_idle().await;

    let repeats = cluster
        .assert_finished_and_delivered(1, id, &announcement)
        .await;
    let sent_after = cluster.nodes[0].messages_sent() - sent_before;
    eprintln!(
        "{kind:?}: SIGSTOP of {old_owner}: {} took over after {takeover:.1} s; after SIGCONT \
         the old owner dropped the job in {dropped:.1} s and sent {sent_after} messages; \
         {repeats} messages repeated",
        job["ownerNode"]
    );
    assert_eq!(
        sent_after, 0,
        "messages sent by the old owner after SIGCONT"
    );
    assert_eq!(
        cluster.nodes[0]
            .metric("mod_broadcast_recipients_processed_total")
            .await,
        processed_before,
        "the old owner committed a batch after losing the lease"
    );
    assert!(repeats <= BATCH, "{repeats} repeats, more than one batch");
}

on_databases!(frozen_owner_sends_nothing_after_takeover, postgres => Postgres);

// ---- 3. Concurrent starts --------------------------------------------------------------

const CONCURRENT_STARTS: usize = 50;

async fn one_of_concurrent_starts_wins(kind: JobDatabase) {
    let cluster = Cluster::start(kind, 3, ACCOUNTS).await;
    let specs: Vec<_> = (0..CONCURRENT_STARTS)
        .map(|i| cluster.spec(&format!("race {i}")))
        .collect();
    let began = Instant::now();
    let answers = futures::future::join_all(specs.iter().enumerate().map(|(i, spec)| {
        let admin = cluster.nodes[i % cluster.nodes.len()].admin();
        admin.start_broadcast(spec)
    }))
    .await;
    let took = seconds(began);

    let accepted: Vec<i64> = answers.iter().filter_map(|a| a.clone().ok()).collect();
    let refusals: Vec<_> = answers.iter().filter_map(|a| a.clone().err()).collect();
    let other: Vec<_> = refusals
        .iter()
        .filter(|e| e.code != "running_job_limit_exceeded")
        .collect();
    eprintln!(
        "{kind:?}: {CONCURRENT_STARTS} concurrent starts answered in {took:.1} s: {} accepted",
        accepted.len()
    );
    assert_eq!(accepted.len(), 1, "accepted: {accepted:?}");
    assert!(other.is_empty(), "refused otherwise: {other:?}");
    for node in &cluster.nodes {
        let jobs = node.admin().get_broadcasts(support::prosody::DOMAIN).await;
        assert_eq!(jobs.len(), 1, "{}: {jobs:?}", node.name);
        assert_eq!(jobs[0]["id"], accepted[0], "{jobs:?}");
        assert_eq!(jobs[0]["executionState"], "RUNNING", "{jobs:?}");
    }
    cluster.nodes[1]
        .admin()
        .abort_broadcast(accepted[0])
        .await
        .expect("abortBroadcast");
}

on_databases!(one_of_concurrent_starts_wins, postgres => Postgres, mariadb => MariaDb);

// ---- 4. The job database unreachable -----------------------------------------------------

/// How long the job database stays unreachable: twice the lease time.
const OUTAGE: Duration = Duration::from_secs(2 * LEASE_TIME);

/// Cuts the job database for [`OUTAGE`] in the middle of the second batch.
///
/// The owner may go on sending the batch it holds (it needs the database only to commit it
/// and to read the next page) until its safety deadline: at most `lease_time − lease_time/5`
/// (8 s) after its last renewal, which began before the cut. So at most 8 s × [`RATE`] = 80
/// messages after the cut, and never past the end of the second batch; after the deadline
/// nothing at all, until the database is back.
async fn database_outage_pauses_and_resumes(kind: JobDatabase) {
    let cluster = Cluster::start(kind, 3, ACCOUNTS).await;
    let (id, announcement) = cluster.job_in_second_batch("outage", BATCH / 5).await;
    let sent =
        |cluster: &Cluster| -> usize { cluster.nodes.iter().map(|n| n.messages_sent()).sum() };

    let cut = Instant::now();
    cluster.database.cut();
    let at_cut = cluster.stored().await;

    // Let time pass on purpose: every instance's safety deadline must pass with the
    // database gone.
    tokio::time::sleep(SAFETY_DEADLINE).await;
    let (at_deadline, sent_at_deadline) = (cluster.stored().await, sent(&cluster));
    let in_flight = at_deadline - at_cut;
    assert!(
        in_flight <= (LEASE_TIME - LEASE_TIME / 5) as usize * RATE as usize,
        "{in_flight} messages stored after the cut"
    );
    assert!(
        at_deadline <= 2 * BATCH,
        "{at_deadline} stored: a batch started without the database"
    );

    // Past the deadline every instance refuses new jobs at once (safety mode), without
    // waiting for the database.
    for node in &cluster.nodes {
        let asked = Instant::now();
        let refused = node
            .admin()
            .start_broadcast(&cluster.spec("during the outage"))
            .await
            .expect_err("startBroadcast while the database is down");
        assert_eq!(refused.code, "temporarily_unavailable", "{refused:?}");
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{}: refused after {:?}",
            node.name,
            asked.elapsed()
        );
        assert!(node.serve.log().contains("safety mode"), "{}", node.name);
    }

    // Until the database is back nothing is sent: watch the rest of the outage.
    while cut.elapsed() < OUTAGE {
        assert_eq!(
            cluster.stored().await,
            at_deadline,
            "stored during the outage"
        );
        assert_eq!(sent(&cluster), sent_at_deadline, "sent during the outage");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cluster.database.restore();
    let restored = Instant::now();
    let deadline = Deadline::after(Duration::from_secs(30), "sending to resume");
    while cluster.stored().await == at_deadline {
        deadline.tick().await;
    }
    let resumed = seconds(restored);

    let repeats = cluster
        .assert_finished_and_delivered(1, id, &announcement)
        .await;
    eprintln!(
        "{kind:?}: database cut for {OUTAGE:?}: {in_flight} messages stored after the cut \
         (in flight), none after the safety deadline; sending resumed {resumed:.1} s after \
         the restore; {repeats} messages repeated"
    );
    assert!(repeats <= BATCH, "{repeats} repeats, more than one batch");
}

on_databases!(database_outage_pauses_and_resumes, postgres => Postgres, mariadb => MariaDb);

// ---- 5. Prosody restarted ----------------------------------------------------------------

async fn xmpp_server_restart_loses_nothing(kind: JobDatabase) {
    let mut cluster = Cluster::start(kind, 2, ACCOUNTS).await;
    let (id, announcement) = cluster.job_in_second_batch("restart", BATCH / 3).await;

    let began = Instant::now();
    cluster.prosody.restart().await;
    let restarted = seconds(began);

    let repeats = cluster
        .assert_finished_and_delivered(1, id, &announcement)
        .await;
    eprintln!(
        "{kind:?}: Prosody restarted in {restarted:.1} s in the middle of a batch: {repeats} \
         messages repeated"
    );
    assert!(repeats <= BATCH, "{repeats} repeats, more than one batch");
}

on_databases!(xmpp_server_restart_loses_nothing, postgres => Postgres);

// ---- 6. Abort while the owner is frozen --------------------------------------------------

async fn abort_while_owner_is_frozen(kind: JobDatabase) {
    let mut cluster = Cluster::start(kind, 2, ACCOUNTS).await;
    let (id, _) = cluster.start_job(0, "abort").await;
    cluster
        .wait_stored(BATCH / 4, Duration::from_secs(30))
        .await;

    cluster.nodes[0].sigstop();
    let frozen = Instant::now();
    let asked = Instant::now();
    cluster.nodes[1]
        .admin()
        .abort_broadcast(id)
        .await
        .expect("abortBroadcast through the other instance");
    let job = cluster.nodes[1].admin().get_broadcast(id).await;
    let took = seconds(asked);
    assert_eq!(job["executionState"], "ABORT_ADMIN", "{job}");
    assert!(took < 2.0, "abort took {took:.1} s");

    // Let time pass on purpose: keep the owner frozen past its safety deadline, so that on
    // waking it must find that deadline passed before it sends anything.
    tokio::time::sleep(SAFETY_DEADLINE.saturating_sub(frozen.elapsed())).await;
    let (sent_before, stored_before) = (cluster.nodes[0].messages_sent(), cluster.stored().await);
    let stopped = cluster.nodes[0].sigcont_until_idle().await;

    let sent_after = cluster.nodes[0].messages_sent() - sent_before;
    eprintln!(
        "{kind:?}: abort through node2 while node1 was frozen: ABORT_ADMIN in {took:.2} s; node1 \
         stopped {stopped:.1} s after SIGCONT and sent {sent_after} messages"
    );
    assert_eq!(sent_after, 0, "messages sent after SIGCONT");
    assert_eq!(
        cluster.stored().await,
        stored_before,
        "stored after SIGCONT"
    );
    assert_eq!(
        cluster.nodes[0]
            .metric("mod_broadcast_jobs_aborted_admin_total")
            .await,
        1.0,
        "the owner counts the abort"
    );
    let job = cluster.nodes[0].admin().get_broadcast(id).await;
    assert_eq!(job["executionState"], "ABORT_ADMIN", "{job}");
}

on_databases!(abort_while_owner_is_frozen, postgres => Postgres);

// ---- 7. Graceful shutdown of the owner ----------------------------------------------------

/// SIGTERM releases the owner's leases (invariant 7, MongooseIM's W21), so another instance
/// takes the job over at its next renewal round instead of waiting for the lease to run out.
async fn sigterm_hands_the_job_over_at_once(kind: JobDatabase) {
    let mut cluster = Cluster::start(kind, 2, ACCOUNTS).await;
    let (id, announcement) = cluster.job_in_second_batch("sigterm", BATCH / 4).await;
    let old_owner = cluster.nodes[0].name.clone();

    let asked = Instant::now();
    let status = cluster.nodes[0].serve.sigterm().await;
    assert!(status.success(), "serve exited with {status}");
    // One renewal round of the other instance: a third of the lease, jittered by a fifth.
    let round = Duration::from_secs(LEASE_TIME) / 3 * 6 / 5;
    let job = cluster
        .wait_owner_change(1, id, &old_owner, round + Duration::from_secs(2))
        .await;
    let takeover = seconds(asked);
    assert_eq!(job["ownerNode"], cluster.nodes[1].name.as_str(), "{job}");

    let repeats = cluster
        .assert_finished_and_delivered(1, id, &announcement)
        .await;
    eprintln!(
        "{kind:?}: SIGTERM of {old_owner}: taken over after {takeover:.1} s, {repeats} \
         messages repeated"
    );
    assert!(repeats <= BATCH, "{repeats} repeats, more than one batch");
}

on_databases!(sigterm_hands_the_job_over_at_once, postgres => Postgres);

// ---- 8. The job database answering errors -------------------------------------------------

/// The job database answers the worker's statements with an error (its recipients table is
/// renamed away) for longer than the fault limit (twice the lease time, at least 20 s), so the
/// worker gives the job up; recording that fails too (a trigger refuses every update of
/// `xb_jobs`, while the leases are still renewed), so the worker stops and leaves the job
/// running and owned, "resumed when the database recovers" (`Worker::give_up`).
/// Once the database answers again, the job must not stay RUNNING with nobody sending it: it
/// must be sent again (or end), here or on another instance.
async fn job_given_up_during_database_errors_is_not_orphaned(kind: JobDatabase) {
    let cluster = Cluster::start(kind, 2, ACCOUNTS).await;
    let (id, announcement) = cluster.start_job(0, "errors").await;
    cluster
        .wait_stored(BATCH / 5, Duration::from_secs(30))
        .await;
    let pool = sqlx::PgPool::connect(&cluster.jobs_url).await.unwrap();
    let rename = async |from: &str, to: &str| {
        let sql = format!("ALTER TABLE {from} RENAME TO {to}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    };
    let run = async |statements: &[&str]| {
        for statement in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*statement))
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    run(&[
        "CREATE FUNCTION xb_refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'xb_jobs refuses writes'; END $$",
        "CREATE TRIGGER xb_refuse BEFORE UPDATE ON xb_jobs \
         FOR EACH ROW EXECUTE FUNCTION xb_refuse()",
    ])
    .await;
    rename("xb_recipients", "xb_recipients_away").await;

    let deadline = Deadline::after(Duration::from_secs(90), "the worker to give the job up");
    while !cluster.nodes[0]
        .serve
        .log()
        .contains("cannot record the job as failed")
    {
        deadline.tick().await;
    }
    rename("xb_recipients_away", "xb_recipients").await;
    run(&["DROP TRIGGER xb_refuse ON xb_jobs"]).await;
    pool.close().await;
    let back = Instant::now();
    let given_up = cluster.nodes[1].admin().get_broadcast(id).await;
    assert_eq!(
        (
            given_up["executionState"].as_str(),
            given_up["ownerNode"].as_str()
        ),
        (Some("RUNNING"), Some(cluster.nodes[0].name.as_str())),
        "the failure could not be recorded: {given_up}"
    );

    // Two lease times: any renewal round, takeover or resumption has had its chance.
    let deadline = back + 2 * LEASE;
    let (job, live) = loop {
        let job = cluster.nodes[1].admin().get_broadcast(id).await;
        let mut live = Vec::new();
        for node in &cluster.nodes {
            live.push((
                node.name.clone(),
                node.metric("mod_broadcast_live_jobs").await,
            ));
        }
        if job["executionState"] != "RUNNING" || live.iter().any(|(_, jobs)| *jobs > 0.0) {
            break (job, live);
        }
        assert!(
            Instant::now() < deadline,
            "job {id} still RUNNING, owned and sent by nobody {:.0} s after the database \
             answers again: {job}; live jobs per instance: {live:?}",
            seconds(back)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "{kind:?}: a job given up during database errors moved on {:.1} s after the database \
         answered again: {}, live jobs per instance {live:?}",
        seconds(back),
        job["executionState"]
    );
    if job["executionState"] == "RUNNING" {
        let repeats = cluster
            .assert_finished_and_delivered(1, id, &announcement)
            .await;
        assert!(repeats <= BATCH, "{repeats} repeats, more than one batch");
    }
}

on_databases!(job_given_up_during_database_errors_is_not_orphaned, postgres => Postgres);

// ---- 9. Concurrent idempotent starts -----------------------------------------------------

/// How many times the same idempotent start is sent at once.
const IDEMPOTENT_STARTS: usize = 20;
/// Accounts of the idempotent starts' job: few, so that it ends within a second.
const IDEMPOTENT_ACCOUNTS: usize = 20;
/// Its rate: every message in one chunk.
const IDEMPOTENT_RATE: i64 = 1000;

/// The same `startBroadcast` with one idempotency key, sent [`IDEMPOTENT_STARTS`] times at
/// once over three instances: every call is answered with the one job (whether it still runs
/// or has ended by then), and Prosody's offline store holds exactly one message per user.
async fn concurrent_idempotent_starts_make_one_job(kind: JobDatabase) {
    let cluster = Cluster::start(kind, 3, IDEMPOTENT_ACCOUNTS).await;
    let spec = support::admin::BroadcastSpec {
        rate: IDEMPOTENT_RATE,
        ..cluster.spec("idempotent")
    };
    let began = Instant::now();
    let answers = futures::future::join_all((0..IDEMPOTENT_STARTS).map(|i| {
        let admin = cluster.nodes[i % cluster.nodes.len()].admin();
        admin.start_broadcast_once(&spec, "notice-2026-03-01")
    }))
    .await;
    let took = seconds(began);
    let ids: Vec<i64> = answers
        .into_iter()
        .map(|answer| answer.unwrap_or_else(|err| panic!("every start is answered: {err:?}")))
        .collect();
    eprintln!("{kind:?}: {IDEMPOTENT_STARTS} concurrent idempotent starts answered in {took:.1} s");
    let id = ids[0];
    assert!(ids.iter().all(|other| *other == id), "one job: {ids:?}");
    for node in &cluster.nodes {
        let jobs = node.admin().get_broadcasts(support::prosody::DOMAIN).await;
        assert_eq!(jobs.len(), 1, "{}: {jobs:?}", node.name);
    }
    let announcement = Announcement {
        job_id: id,
        sender: spec.sender.clone(),
        subject: spec.subject.clone(),
        body: spec.body.clone(),
    };
    let repeats = cluster
        .assert_finished_and_delivered(1, id, &announcement)
        .await;
    assert_eq!(repeats, 0, "every user gets one message");
    let sent: usize = cluster.nodes.iter().map(|node| node.messages_sent()).sum();
    assert_eq!(sent, IDEMPOTENT_ACCOUNTS, "messages sent by the instances");
}

on_databases!(concurrent_idempotent_starts_make_one_job, postgres => Postgres, mariadb => MariaDb);

// ---- 10. A scheduled job whose instance is killed ----------------------------------------

/// How far ahead the job is scheduled: more than the scheduler's scan period, so that the
/// surviving instance has seen the job before its time whatever the phase of its scans.
const SCHEDULED_AHEAD: Duration = Duration::from_secs(13);
/// How late after its time a scheduled job may send its first message: "within a second",
/// plus slack for a loaded machine.
const START_LATENESS: Duration = Duration::from_millis(1500);

/// A job scheduled through node 1, which is killed with SIGKILL right after answering: node 2
/// starts it on time. An account registered after the job was scheduled but before its time
/// is a recipient (recipients are fixed when it starts); a client online as one of the users
/// gets the message once, live; every account gets exactly one message.
async fn scheduled_job_starts_on_time_without_its_instance(kind: JobDatabase) {
    let mut cluster = Cluster::start(kind, 2, IDEMPOTENT_ACCOUNTS).await;
    let mut client = XmppClient::login(
        &format!("u0001@{}", support::prosody::DOMAIN),
        support::cluster::PASSWORD,
        cluster.prosody.c2s_port(),
    );
    client.wait_online(Duration::from_secs(20)).await;
    let spec = support::admin::BroadcastSpec {
        rate: IDEMPOTENT_RATE,
        ..cluster.spec("scheduled")
    };
    let at = chrono::Utc::now() + chrono::TimeDelta::from_std(SCHEDULED_AHEAD).unwrap();
    let at_text = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let at = chrono::DateTime::parse_from_rfc3339(&at_text)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let (id, message) = cluster.nodes[0]
        .admin()
        .start_broadcast_at(&spec, &at_text)
        .await
        .expect("a scheduled startBroadcast");
    assert_eq!(message, "Broadcast job scheduled");
    cluster.nodes[0].serve.sigkill();

    let job = cluster.nodes[1].admin().get_broadcast(id).await;
    assert_eq!(
        (job["executionState"].as_str(), job["status"].as_str()),
        (Some("RUNNING"), Some("SCHEDULED")),
        "{job}"
    );
    assert_eq!(job["startAt"], at_text.as_str(), "{job}");
    assert_eq!(job["ownerNode"], "undefined", "{job}");
    assert!(
        job["startTimestamp"].is_null() && job["waitingReason"].is_null(),
        "{job}"
    );
    let late = cluster
        .prosody
        .register_user("late", support::cluster::PASSWORD)
        .await;
    let mut recipients = cluster.recipients.clone();
    recipients.push(late);

    let first = client
        .next_message(SCHEDULED_AHEAD + Duration::from_secs(10))
        .await
        .expect("the scheduled message");
    let arrived = chrono::Utc::now();
    let lateness = (arrived - at).to_std().unwrap_or_default();
    let early = (at - arrived).to_std().unwrap_or_default();
    let announcement = Announcement {
        job_id: id,
        sender: spec.sender.clone(),
        subject: spec.subject.clone(),
        body: spec.body.clone(),
    };
    assert_eq!(first.body, announcement.body);
    assert_eq!(
        first.id,
        support::stanza::message_id(id, first.to.split('/').next().unwrap_or_default())
    );
    let job = cluster.nodes[1]
        .admin()
        .wait_state(id, "FINISHED", Duration::from_secs(30))
        .await;
    eprintln!(
        "{kind:?}: job scheduled through node1 (killed) started by node2: first message \
         {:.2} s after its time",
        lateness.as_secs_f64()
    );
    assert!(early.is_zero(), "arrived {early:?} before its time");
    assert!(
        lateness <= START_LATENESS,
        "arrived {lateness:?} after its time"
    );
    assert_eq!(job["ownerNode"], "undefined", "{job}");
    assert_eq!(job["status"], "FINISHED", "{job}");
    assert_eq!(
        job["recipientCount"],
        recipients.len(),
        "fixed at the start: {job}"
    );
    let repeats = support::scenarios::assert_delivered(
        &cluster.prosody,
        &announcement,
        &recipients
            .iter()
            .filter(|jid| !jid.starts_with("u0001@"))
            .cloned()
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(repeats, 0, "every user gets one message");
    let again = client.messages_within(Duration::from_secs(1)).await;
    assert!(
        again.is_empty(),
        "the client got the message again: {again:?}"
    );
    assert_eq!(
        cluster.nodes[0].messages_sent(),
        0,
        "the killed instance sent"
    );
}

on_databases!(scheduled_job_starts_on_time_without_its_instance, postgres => Postgres, mariadb => MariaDb);

// ---- 11. A pause through another instance ------------------------------------------------

/// How long the pause is held while nothing may reach the server.
const PAUSE_HELD: Duration = Duration::from_secs(5);
/// How long the owner may go on sending after the pause is answered: its next ownership
/// check (every second), plus slack for a loaded machine.
const PAUSE_STOPS_WITHIN: Duration = Duration::from_millis(2500);

/// The owner (node 1) is in the middle of its second batch when node 2 pauses the job: the
/// owner stops within about a second, nothing reaches Prosody while the job is paused, a
/// second pause is refused, and after a resume through node 2 the job finishes there with
/// every user reached and at most one batch repeated.
async fn pause_through_another_instance(kind: JobDatabase) {
    let cluster = Cluster::start(kind, 2, ACCOUNTS).await;
    let (id, announcement) = cluster.job_in_second_batch("pause", BATCH / 4).await;
    let asked = Instant::now();
    cluster.nodes[1]
        .admin()
        .hold_broadcast(id, false)
        .await
        .expect("pauseBroadcast through node2");
    let answered = seconds(asked);
    // The owner stops at its next ownership check: wait until it has sent nothing for a
    // second, and note when its last message went out.
    let mut last = (cluster.nodes[0].messages_sent(), Instant::now());
    let deadline = Deadline::after(
        PAUSE_STOPS_WITHIN + Duration::from_secs(5),
        "the owner to stop",
    );
    while last.1.elapsed() < Duration::from_secs(1) {
        deadline.tick().await;
        let sent = cluster.nodes[0].messages_sent();
        if sent != last.0 {
            last = (sent, Instant::now());
        }
    }
    let stopped_after = last.1.saturating_duration_since(asked);
    let job = cluster.nodes[1].admin().get_broadcast(id).await;
    assert_eq!(
        (
            job["executionState"].as_str(),
            job["status"].as_str(),
            job["ownerNode"].as_str()
        ),
        (Some("RUNNING"), Some("PAUSED"), Some("undefined")),
        "{job}"
    );
    assert!(job["pausedAt"].is_string(), "{job}");
    assert_eq!(
        cluster.nodes[0].metric("mod_broadcast_live_jobs").await,
        0.0,
        "a paused job is not live"
    );
    let (sent, stored) = (cluster.nodes[0].messages_sent(), cluster.stored().await);
    tokio::time::sleep(PAUSE_HELD).await;
    assert_eq!(
        cluster.stored().await,
        stored,
        "stored at the server while paused"
    );
    let sent_while_paused = cluster
        .nodes
        .iter()
        .map(|node| node.messages_sent())
        .sum::<usize>()
        - sent;
    assert_eq!(sent_while_paused, 0, "messages sent while paused");
    let again = cluster.nodes[0].admin().hold_broadcast(id, false).await;
    assert_eq!(again.map_err(|err| err.code), Err("not_running".to_owned()));
    let processed = job["recipientsProcessed"].as_i64().unwrap_or_default();

    cluster.nodes[1]
        .admin()
        .hold_broadcast(id, true)
        .await
        .expect("resumeBroadcast through node2");
    let resumed = cluster.nodes[1].admin().get_broadcast(id).await;
    assert_eq!(resumed["status"], "RUNNING", "{resumed}");
    assert_eq!(
        resumed["ownerNode"],
        cluster.nodes[1].name.as_str(),
        "{resumed}"
    );
    let again = cluster.nodes[1].admin().hold_broadcast(id, true).await;
    assert_eq!(again.map_err(|err| err.code), Err("not_paused".to_owned()));
    let repeats = cluster
        .assert_finished_and_delivered(1, id, &announcement)
        .await;
    eprintln!(
        "{kind:?}: pause through node2 answered in {answered:.2} s; node1 sent its last message \
         {:.2} s after the request; paused at {processed} committed; {repeats} messages repeated",
        stopped_after.as_secs_f64()
    );
    assert!(
        stopped_after <= PAUSE_STOPS_WITHIN,
        "the owner sent {stopped_after:?} after the pause was asked"
    );
    assert!(repeats <= BATCH, "{repeats} repeats, more than one batch");
}

on_databases!(pause_through_another_instance, postgres => Postgres, mariadb => MariaDb);
