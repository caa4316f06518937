//! The store's contract, run against every dialect: SQLite in a scratch file, PostgreSQL in a
//! fresh database on 127.0.0.1:5432 (override the server with `XB_TEST_POSTGRES`) and
//! MySQL/MariaDB in a fresh database on 127.0.0.1:3306 as root (override with `XB_TEST_MYSQL`).

use std::time::Duration;

use jid::BareJid;

use super::{Created, KeyMatch, Outcome, Store, StoreError, Unheld};
use crate::job::{
    Amends, ExecutionState, Hold, Idempotency, JobKind, JobSpec, Lease, RecipientGroup, Snapshot,
    Status, Unknown, Usernames, UsersDatabase,
};
use crate::job::{InvalidRow, MAX_JOB_ID, RowProblem};
use crate::test_support::Scratch;

const LEASE: Duration = Duration::from_secs(60);

/// A store on a fresh database.
struct Fresh {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    /// A server database to drop when the test is done.
    drop: Option<Scratch>,
}

impl Fresh {
    async fn run<F: Future<Output = ()>>(self, test: impl FnOnce(Store) -> F) {
        test(self.store.clone()).await;
        self.store.close().await;
        if let Some(scratch) = self.drop {
            scratch.drop_database().await;
        }
    }

    async fn on_server(scratch: Scratch) -> Self {
        Fresh {
            store: Store::connect(&scratch.url(), 4).await.unwrap(),
            _dir: None,
            drop: Some(scratch),
        }
    }
}

async fn sqlite() -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/jobs.db", dir.path().display());
    Fresh {
        store: Store::connect(&url, 4).await.unwrap(),
        _dir: Some(dir),
        drop: None,
    }
}

async fn postgres() -> Fresh {
    Fresh::on_server(Scratch::postgres("xb_store").await).await
}

async fn mysql() -> Fresh {
    Fresh::on_server(Scratch::mysql("xb_store").await).await
}

fn spec(domain: &str) -> JobSpec {
    JobSpec {
        name: "maintenance \u{1F527}".into(),
        domain: domain.into(),
        subject: "Ünïcödé e\u{301} \u{1F469}\u{200D}\u{1F4BB}".into(),
        body: "x\u{1F600}".repeat(16_000),
        sender: BareJid::new(&format!("admin@{domain}")).unwrap(),
        rate: 10,
        recipient_group: RecipientGroup::AllUsersInDomain,
        group: None,
        language: None,
        translations: Vec::new(),
    }
}

fn usernames(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("u{i:04}")).collect()
}

/// The users database every job of these tests was created against.
fn users_db() -> UsersDatabase {
    UsersDatabase::new("prosody@sqlite:test")
}

/// What the manager's takeover does: the first expired lease of another owner, taken.
async fn take_over(store: &Store, owner: &str) -> Option<Lease> {
    let expired = store.expired_leases(owner).await.unwrap();
    let first = expired.first()?;
    store.take_lease(&first.lease, owner, LEASE).await.unwrap()
}

fn users(n: usize) -> Snapshot {
    Snapshot::Listed(usernames(n))
}

fn lease(job_id: i64, epoch: i64) -> Lease {
    Lease {
        job_id,
        owner: "node1".into(),
        epoch,
    }
}

macro_rules! on_every_dialect {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test] async fn $name() { super::sqlite().await.run(super::$name).await })*
        }
        mod on_postgres {
            $(#[tokio::test] async fn $name() { super::postgres().await.run(super::$name).await })*
        }
        mod on_mysql {
            $(#[tokio::test] async fn $name() { super::mysql().await.run(super::$name).await })*
        }
    };
}

on_every_dialect!(
    creates_a_running_owned_job_with_its_snapshot,
    one_running_job_per_domain,
    worker_writes_are_fenced_by_the_lease,
    completion_releases_the_lease_and_keeps_the_snapshot,
    lists_newest_first_with_paging,
    concurrent_starts_admit_one,
    abort_is_a_guarded_state_change_from_anywhere,
    expired_leases_of_others_are_taken_over_once,
    deletes_only_inactive_jobs_of_the_domain,
    unicode_at_the_limits_round_trips,
    timestamps_come_from_one_utc_clock_in_order,
    a_dated_snapshot_is_stored_without_usernames,
    rows_that_do_not_fit_their_types_are_reported,
    new_job_ids_stop_at_the_largest_api_int,
    abandoning_a_job_is_fenced_and_keeps_its_progress,
    running_jobs_are_listed_with_their_users_database,
    a_follow_up_pages_its_originals_snapshot_which_outlives_it,
    an_idempotency_key_answers_with_the_job_it_created_first,
    concurrent_creates_with_one_key_make_one_job,
    a_paused_job_is_fenced_out_and_resumes_under_a_new_epoch,
    a_paused_job_frees_its_domain_and_resumes_only_when_it_is_free,
    a_scheduled_job_waits_then_starts_once_with_its_recipients_fixed_then,
    held_jobs_are_aborted_not_deleted_and_not_taken_over,
    audiences_round_trip_and_bad_ones_are_reported,
    languages_round_trip_and_bad_stored_ones_are_reported,
    a_large_listed_snapshot_round_trips_in_byte_order,
    a_deleted_job_takes_its_listed_snapshot_with_it,
    a_lease_round_reads_expired_scheduled_and_owned_in_one_statement,
    an_uncounted_job_is_counted_once_under_its_lease,
);

async fn creates_a_running_owned_job_with_its_snapshot(store: Store) {
    let spec = spec("example.com");
    let id = store
        .create_job(&spec, "node1", LEASE, &users(25), &users_db())
        .await
        .unwrap();
    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.state, ExecutionState::Running);
    assert_eq!(job.owner.as_deref(), Some("node1"));
    assert_eq!(job.recipient_count, 25);
    assert_eq!(
        (job.name, job.subject, job.body),
        (spec.name, spec.subject, spec.body)
    );
    assert_eq!(job.sender_jid, "admin@example.com");
    assert_eq!(job.users_database, Some(users_db()));
    assert!(job.lease_expires_at.is_some() && !job.lease_expired);
    assert_eq!((job.recipients_processed, job.cursor), (0, None));
    assert!(job.started_at.is_none() && job.stopped_at.is_none());

    let first = store.snapshot_page(id, None, 10).await.unwrap();
    assert_eq!(first, usernames(10));
    let rest = store.snapshot_page(id, Some("u0010"), 100).await.unwrap();
    assert_eq!(rest, usernames(25)[10..].to_vec());
    assert!(
        store
            .snapshot_page(id, Some("u0025"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.running_jobs_owned_by("node1").await.unwrap().len(), 1);
    assert!(
        store
            .running_jobs_owned_by("node2")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn one_running_job_per_domain(store: Store) {
    let first = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(3), &users_db())
        .await
        .unwrap();
    let again = store
        .create_job(&spec("example.com"), "node2", LEASE, &users(3), &users_db())
        .await;
    assert!(
        matches!(again, Err(StoreError::RunningJobExists)),
        "{again:?}"
    );
    store
        .create_job(&spec("other.org"), "node1", LEASE, &users(3), &users_db())
        .await
        .unwrap();
    assert!(
        store
            .complete(&lease(first, 1), &Outcome::Finished, 3)
            .await
            .unwrap()
    );
    store
        .create_job(&spec("example.com"), "node1", LEASE, &users(3), &users_db())
        .await
        .unwrap();
}

async fn worker_writes_are_fenced_by_the_lease(store: Store) {
    let id = store
        .create_job(
            &spec("example.com"),
            "node1",
            LEASE,
            &users(30),
            &users_db(),
        )
        .await
        .unwrap();
    assert!(store.mark_started(&lease(id, 1)).await.unwrap());
    assert!(
        store
            .commit_progress(&lease(id, 1), "u0010", 10)
            .await
            .unwrap()
    );
    let stranger = Lease {
        owner: "node2".into(),
        ..lease(id, 1)
    };
    assert!(!store.commit_progress(&stranger, "u0020", 20).await.unwrap());

    let reclaimed = store
        .reclaim_own_lease(id, "node1", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reclaimed.epoch, 2);
    assert!(
        !store
            .commit_progress(&lease(id, 1), "u0020", 20)
            .await
            .unwrap()
    );
    assert!(!store.mark_started(&lease(id, 1)).await.unwrap());
    assert!(store.mark_started(&reclaimed).await.unwrap());
    assert!(
        store
            .commit_progress(&reclaimed, "u0020", 20)
            .await
            .unwrap()
    );

    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(
        (job.cursor.as_deref(), job.recipients_processed),
        (Some("u0020"), 20)
    );
    assert!(
        store
            .reclaim_own_lease(id, "node2", LEASE)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.renew_leases("node1", LEASE).await.unwrap(), 1);
    assert_eq!(store.release_leases("node1").await.unwrap(), 1);
}

async fn completion_releases_the_lease_and_keeps_the_snapshot(store: Store) {
    let id = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(5), &users_db())
        .await
        .unwrap();
    store.mark_started(&lease(id, 1)).await.unwrap();
    let failed = Outcome::AbortError {
        reason: "directory gone".into(),
    };
    assert!(!store.complete(&lease(id, 7), &failed, 5).await.unwrap());
    assert!(
        store
            .complete(&lease(id, 1), &Outcome::Finished, 5)
            .await
            .unwrap()
    );
    assert!(!store.complete(&lease(id, 1), &failed, 5).await.unwrap());

    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.state, ExecutionState::Finished);
    assert_eq!(
        (&job.owner, &job.abortion_reason, job.recipients_processed),
        (&None, &None, 5)
    );
    let started = job.started_at.unwrap();
    let stopped = job.stopped_at.unwrap();
    assert!(job.created_at <= started && started <= stopped, "{job:?}");
    // The snapshot is kept for follow-ups as long as the job exists.
    assert_eq!(
        store.snapshot_page(id, None, 10).await.unwrap(),
        usernames(5)
    );
    assert!(
        store
            .running_jobs_owned_by("node1")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn lists_newest_first_with_paging(store: Store) {
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = store
            .create_job(&spec("example.com"), "node1", LEASE, &users(1), &users_db())
            .await
            .unwrap();
        store
            .complete(&lease(id, 1), &Outcome::Finished, 1)
            .await
            .unwrap();
        ids.push(id);
    }
    store
        .create_job(&spec("other.org"), "node1", LEASE, &users(1), &users_db())
        .await
        .unwrap();
    let listed: Vec<_> = store
        .list_jobs("example.com", 50, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(listed, vec![ids[2], ids[1], ids[0]]);
    let page: Vec<_> = store
        .list_jobs("example.com", 1, 1)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(page, vec![ids[1]]);
    assert!(
        store
            .list_jobs("nobody.net", 50, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Eight creates of one job of `example.com` at once, each as another node, all with `once`.
async fn eight_concurrent_creates(
    store: &Store,
    once: Option<&Idempotency>,
) -> Vec<Result<Created, StoreError>> {
    let attempts = (0..8).map(|i| {
        let store = store.clone();
        async move {
            store
                .create_job_once(
                    once,
                    &spec("example.com"),
                    &format!("node{i}"),
                    LEASE,
                    &users(50),
                    None,
                    &users_db(),
                )
                .await
        }
    });
    futures::future::join_all(attempts).await
}

async fn concurrent_starts_admit_one(store: Store) {
    let results = eight_concurrent_creates(&store, None).await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::RunningJobExists)))
        .count();
    assert_eq!((accepted, refused), (1, 7), "{results:?}");
}

async fn abort_is_a_guarded_state_change_from_anywhere(store: Store) {
    let id = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(5), &users_db())
        .await
        .unwrap();
    assert_eq!(store.owned_leases("node1").await.unwrap(), vec![(id, 1)]);
    assert!(
        !store.abort_job(id, "other.org").await.unwrap(),
        "another domain's job"
    );
    assert!(store.abort_job(id, "example.com").await.unwrap());
    assert!(
        !store.abort_job(id, "example.com").await.unwrap(),
        "already stopped"
    );

    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.state, ExecutionState::AbortAdmin);
    assert!(job.stopped_at.is_some() && job.owner.is_none());
    assert!(store.owned_leases("node1").await.unwrap().is_empty());
    // The owner's next write finds nothing: it stops without sending more.
    assert!(
        !store
            .commit_progress(&lease(id, 1), "u0002", 2)
            .await
            .unwrap()
    );
    assert!(
        !store
            .complete(&lease(id, 1), &Outcome::Finished, 5)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_job(id).await.unwrap().unwrap().state,
        ExecutionState::AbortAdmin
    );
}

async fn deletes_only_inactive_jobs_of_the_domain(store: Store) {
    let finished = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(1), &users_db())
        .await
        .unwrap();
    store
        .complete(&lease(finished, 1), &Outcome::Finished, 1)
        .await
        .unwrap();
    let aborted = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(1), &users_db())
        .await
        .unwrap();
    store.abort_job(aborted, "example.com").await.unwrap();
    let running = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(1), &users_db())
        .await
        .unwrap();
    let foreign = store
        .create_job(&spec("other.org"), "node1", LEASE, &users(1), &users_db())
        .await
        .unwrap();
    store
        .complete(&lease(foreign, 1), &Outcome::Finished, 1)
        .await
        .unwrap();

    let asked = [aborted, running, foreign, 9999, aborted, finished];
    let deleted = store
        .delete_inactive_jobs("example.com", &asked)
        .await
        .unwrap();
    assert_eq!(deleted, vec![aborted, finished]);
    assert!(store.get_job(running).await.unwrap().is_some());
    assert!(store.get_job(foreign).await.unwrap().is_some());

    store
        .complete(&lease(running, 1), &Outcome::Finished, 1)
        .await
        .unwrap();
    assert_eq!(
        store
            .delete_inactive_jobs_of_domain("example.com")
            .await
            .unwrap(),
        vec![running]
    );
    assert!(
        store
            .delete_inactive_jobs_of_domain("example.com")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .delete_inactive_jobs_of_domain("other.org")
            .await
            .unwrap(),
        vec![foreign]
    );
}

/// The longest texts the API accepts, in characters that take the most bytes: every field comes
/// back unchanged, and listed recipients with non-ASCII names are paged in byte order.
async fn unicode_at_the_limits_round_trips(store: Store) {
    use crate::job::BroadcastRequest;
    use crate::job::spec::{BODY_LENGTH, NAME_LENGTH, SUBJECT_LENGTH};

    let request = BroadcastRequest {
        // 250 user-perceived characters of 11 bytes each (a ZWJ sequence).
        name: "\u{1F469}\u{200D}\u{1F4BB}".repeat(*NAME_LENGTH.end()),
        domain: "example.com".into(),
        // 1024 flags of two regional indicators (8 bytes each).
        subject: "\u{1F1E9}\u{1F1EA}".repeat(*SUBJECT_LENGTH.end()),
        // 16,000 four-byte emoji.
        body: "\u{1F600}".repeat(*BODY_LENGTH.end()),
        sender: BareJid::new("admin@example.com").unwrap(),
        rate: 1000,
        audience: Default::default(),
        language: None,
        translations: Vec::new(),
    };
    let spec = JobSpec::parse(request).expect("the texts are at the limits, not beyond");
    let recipients: Vec<String> = ["zoë", "Zed", "émile", "ärger", "日本", "u\u{1F600}", "a"]
        .map(String::from)
        .to_vec();
    let id = store
        .create_job(
            &spec,
            "node1",
            LEASE,
            &Snapshot::Listed(recipients.clone()),
            &users_db(),
        )
        .await
        .unwrap();
    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.name, spec.name);
    assert_eq!(job.subject, spec.subject);
    assert_eq!(job.body, spec.body);
    assert_eq!(job.body.len(), 64_000);
    assert_eq!(job.recipient_count, 7);

    let mut in_byte_order = recipients;
    in_byte_order.sort();
    let first = store.snapshot_page(id, None, 4).await.unwrap();
    let rest = store
        .snapshot_page(id, first.last().map(String::as_str), 4)
        .await
        .unwrap();
    assert_eq!([first, rest].concat(), in_byte_order);
    let cursor = "\u{1F600}".repeat(3);
    assert!(
        store
            .commit_progress(&lease(id, 1), &cursor, 3)
            .await
            .unwrap()
    );
    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.cursor.as_deref(), Some(cursor.as_str()));
}

/// Creation, start and stop times come from the database clock, in UTC, with sub-second
/// precision, and follow the order of the events.
async fn timestamps_come_from_one_utc_clock_in_order(store: Store) {
    let before = chrono::Utc::now();
    let first = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(1), &users_db())
        .await
        .unwrap();
    assert!(store.mark_started(&lease(first, 1)).await.unwrap());
    assert!(
        store
            .complete(&lease(first, 1), &Outcome::Finished, 1)
            .await
            .unwrap()
    );
    let second = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(1), &users_db())
        .await
        .unwrap();
    let first = store.get_job(first).await.unwrap().unwrap();
    let second = store.get_job(second).await.unwrap().unwrap();
    let (started, stopped) = (first.started_at.unwrap(), first.stopped_at.unwrap());
    assert!(
        first.created_at <= started && started <= stopped && stopped <= second.created_at,
        "{first:?} {second:?}"
    );
    // The database runs on this machine: its UTC clock agrees with ours.
    let skew = (first.created_at - before).num_seconds().abs();
    assert!(
        skew < 60,
        "created_at {} is not UTC now {before}",
        first.created_at
    );
    let sub_second = [first.created_at, started, stopped, second.created_at]
        .iter()
        .any(|t| t.timestamp_subsec_micros() != 0);
    assert!(sub_second, "whole seconds only: {first:?}");
}

/// A snapshot bounded by a creation instant keeps the instant and the count, and lists nobody.
async fn a_dated_snapshot_is_stored_without_usernames(store: Store) {
    let snapshot = Snapshot::CreatedBy {
        at: "2026-11-29 04:39:25.123456".into(),
        count: 1_000_000,
    };
    let id = store
        .create_job(&spec("example.com"), "node1", LEASE, &snapshot, &users_db())
        .await
        .unwrap();
    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.recipient_count, 1_000_000);
    assert_eq!(
        job.snapshot_at.as_deref(),
        Some("2026-11-29 04:39:25.123456")
    );
    assert!(store.snapshot_page(id, None, 10).await.unwrap().is_empty());
    let listed = store
        .create_job(&spec("other.org"), "node1", LEASE, &users(2), &users_db())
        .await
        .unwrap();
    assert_eq!(
        store.get_job(listed).await.unwrap().unwrap().snapshot_at,
        None
    );
}

/// A job created before its recipients were counted (invariant 4a) shows as uncounted until
/// its worker records the number, with the listed names in the same transaction; the record is
/// fenced by the lease and made once.
async fn an_uncounted_job_is_counted_once_under_its_lease(store: Store) {
    let create = |domain: &'static str, at: Option<&'static str>| {
        let store = store.clone();
        async move {
            store
                .create_uncounted(None, &spec(domain), "node1", LEASE, at, &users_db())
                .await
                .unwrap()
                .id()
        }
    };
    let listed = create("example.com", None).await;
    let job = store.get_job(listed).await.unwrap().unwrap();
    assert!(!job.recipients_counted);
    assert_eq!((job.recipient_count, job.snapshot_at), (0, None));
    let names: Usernames = ["zed", "alice", "bob"].into_iter().collect();
    // Another epoch (a worker fenced out) writes nothing.
    assert!(
        !store
            .record_recipients(&lease(listed, 2), 3, Some(&names))
            .await
            .unwrap()
    );
    assert!(
        store
            .snapshot_page(listed, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let first = Lease::first(listed, "node1");
    assert!(
        store
            .record_recipients(&first, 3, Some(&names))
            .await
            .unwrap()
    );
    let job = store.get_job(listed).await.unwrap().unwrap();
    assert!(job.recipients_counted);
    assert_eq!(job.recipient_count, 3);
    assert_eq!(
        store.snapshot_page(listed, None, 10).await.unwrap(),
        ["alice", "bob", "zed"]
    );
    // Counted once: a second record changes nothing.
    assert!(
        !store
            .record_recipients(&first, 9, Some(&names))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .get_job(listed)
            .await
            .unwrap()
            .unwrap()
            .recipient_count,
        3
    );

    let dated = create("other.org", Some("2026-11-29 04:39:25.123456")).await;
    let lease = Lease::first(dated, "node1");
    assert!(
        store
            .record_recipients(&lease, 10_000_000, None)
            .await
            .unwrap()
    );
    let job = store.get_job(dated).await.unwrap().unwrap();
    assert!(job.recipients_counted);
    assert_eq!(job.recipient_count, 10_000_000);
    assert!(
        store
            .snapshot_page(dated, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A job that ended is not counted any more.
    let ended = create("third.net", Some("2026-11-29 04:39:25.123456")).await;
    let lease = Lease::first(ended, "node1");
    assert!(store.complete(&lease, &Outcome::Finished, 0).await.unwrap());
    assert!(!store.record_recipients(&lease, 5, None).await.unwrap());
}

/// MySQL sessions are UTC whatever the URL or the server's zone say: `NOW(6)` fills DATETIME
/// columns, which carry no zone.
#[tokio::test]
async fn mysql_sessions_are_utc_whatever_the_url_says() {
    let scratch = Scratch::mysql("xb_store").await;
    let url = format!("{}?timezone=%2B05:00", scratch.url());
    let store = Store::connect(&url, 2).await.unwrap();
    let before = chrono::Utc::now();
    let id = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(1), &users_db())
        .await
        .unwrap();
    let job = store.get_job(id).await.unwrap().unwrap();
    store.close().await;
    scratch.drop_database().await;
    let skew = (job.created_at - before).num_seconds().abs();
    assert!(
        skew < 60,
        "created_at {} is not UTC now {before}",
        job.created_at
    );
}

async fn expired_leases_of_others_are_taken_over_once(store: Store) {
    let short = Duration::from_millis(300);
    let id = store
        .create_job(&spec("example.com"), "node1", short, &users(3), &users_db())
        .await
        .unwrap();
    assert_eq!(take_over(&store, "node2").await, None, "not expired yet");
    assert_eq!(take_over(&store, "node1").await, None, "not from itself");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let taken = loop {
        let expired = store.expired_leases("node2").await.unwrap();
        if let [expired] = expired.as_slice() {
            assert_eq!(
                (expired.lease.owner.as_str(), expired.lease.epoch),
                ("node1", 1)
            );
            assert_eq!(expired.domain, "example.com");
            assert_eq!(expired.users_database, Some(users_db()));
            let job = store.get_job(id).await.unwrap().unwrap();
            assert!(job.lease_expired, "{job:?}");
            if let Some(lease) = store
                .take_lease(&expired.lease, "node2", LEASE)
                .await
                .unwrap()
            {
                break lease;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        taken,
        Lease {
            job_id: id,
            owner: "node2".into(),
            epoch: 2
        }
    );
    assert_eq!(take_over(&store, "node3").await, None, "taken once");
    assert_eq!(
        store.get_job(id).await.unwrap().unwrap().owner.as_deref(),
        Some("node2")
    );
    // The old owner is fenced out; the new one writes.
    assert!(
        !store
            .commit_progress(&lease(id, 1), "u0001", 1)
            .await
            .unwrap()
    );
    assert_eq!(store.renew_leases("node1", LEASE).await.unwrap(), 0);
    assert!(store.commit_progress(&taken, "u0001", 1).await.unwrap());
}

/// Stores a finished job of other.org with the given id, as no code of ours would.
async fn insert_finished_job(store: &Store, id: i64) {
    store
        .execute_for_test(&format!(
            "INSERT INTO xb_jobs (id, name, domain, sender_jid, subject, body, message_rate, \
             recipient_count, execution_state) VALUES ({id}, 'old', 'other.org', \
             'admin@other.org', '', 'b', 10, 1, 'finished')"
        ))
        .await;
}

/// The [`InvalidRow`] a read of a job fails with.
fn invalid_row<T: std::fmt::Debug>(read: Result<T, StoreError>) -> InvalidRow {
    match read {
        Err(StoreError::InvalidRow(bad)) => bad,
        other => panic!("expected an invalid row, got {other:?}"),
    }
}

/// Values a running job's row cannot hold are reported with the job and the column, by every
/// read, and never clamped; a resuming owner gets the bad row alone, beside the good ones.
async fn rows_that_do_not_fit_their_types_are_reported(store: Store) {
    let good = store
        .create_job(&spec("other.org"), "node1", LEASE, &users(2), &users_db())
        .await
        .unwrap();
    let id = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(3), &users_db())
        .await
        .unwrap();
    for (column, value) in [
        ("recipients_processed", -5),
        ("recipient_count", -1),
        ("message_rate", -1),
    ] {
        store
            .execute_for_test(&format!(
                "UPDATE xb_jobs SET {column} = {value} WHERE id = {id}"
            ))
            .await;
        let bad = invalid_row(store.get_job(id).await);
        assert_eq!((bad.job_id, bad.column.as_str()), (id, column), "{bad}");
        assert_eq!(bad.domain.as_deref(), Some("example.com"), "{bad}");
        assert!(
            matches!(bad.problem, RowProblem::OutOfRange { value: v, min: 0, .. } if v == value),
            "{bad}"
        );
        assert!(bad.to_string().contains(column), "{bad}");
        assert_eq!(
            invalid_row(store.list_jobs("example.com", 10, 0).await),
            bad
        );
        let owned = store.running_jobs_owned_by("node1").await.unwrap();
        assert_eq!(owned.len(), 2);
        assert_eq!(owned[0].as_ref().unwrap().id, good);
        assert_eq!(owned[1].as_ref().unwrap_err(), &bad);
        // Put right for the next column.
        store
            .execute_for_test(&format!("UPDATE xb_jobs SET {column} = 3 WHERE id = {id}"))
            .await;
    }
    assert_eq!(store.get_job(id).await.unwrap().unwrap().rate, 3);

    // A stored id beyond what the API carries is an error, not i32::MAX.
    let huge = 3_000_000_000;
    insert_finished_job(&store, huge).await;
    let bad = invalid_row(store.get_job(huge).await);
    assert_eq!((bad.job_id, bad.column.as_str()), (huge, "id"));
    assert_eq!(
        bad.problem,
        RowProblem::OutOfRange {
            value: huge,
            min: 1,
            max: MAX_JOB_ID
        }
    );
    assert_eq!(invalid_row(store.list_jobs("other.org", 10, 0).await), bad);
}

/// The last id the API can carry is given out; the next start is refused before anything is
/// committed.
async fn new_job_ids_stop_at_the_largest_api_int(store: Store) {
    insert_finished_job(&store, MAX_JOB_ID - 1).await;
    if store.is_postgres() {
        // An explicit id does not move PostgreSQL's identity sequence.
        store
            .execute_for_test(&format!(
                "SELECT setval(pg_get_serial_sequence('xb_jobs', 'id'), {})",
                MAX_JOB_ID - 1
            ))
            .await;
    }
    let last = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(2), &users_db())
        .await
        .unwrap();
    assert_eq!(last, MAX_JOB_ID);
    assert_eq!(store.get_job(last).await.unwrap().unwrap().id, MAX_JOB_ID);

    let refused = store
        .create_job(&spec("nobody.net"), "node1", LEASE, &users(2), &users_db())
        .await;
    assert!(
        matches!(refused, Err(StoreError::JobIdsExhausted { id }) if id > MAX_JOB_ID),
        "{refused:?}"
    );
    let beyond = |table: &str, column: &str| {
        format!("SELECT COUNT(*) FROM {table} WHERE {column} > {MAX_JOB_ID}")
    };
    assert_eq!(store.count_for_test(&beyond("xb_jobs", "id")).await, 0);
    assert_eq!(
        store.count_for_test(&beyond("xb_leases", "job_id")).await,
        0
    );
    assert_eq!(
        store
            .count_for_test(&beyond("xb_recipients", "job_id"))
            .await,
        0
    );
    assert!(
        store
            .list_jobs("nobody.net", 10, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Ending a job whose data is unusable is a worker write like the others: fenced by the lease,
/// once; the progress stays as stored and the lease goes.
async fn abandoning_a_job_is_fenced_and_keeps_its_progress(store: Store) {
    let id = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(5), &users_db())
        .await
        .unwrap();
    assert!(
        store
            .commit_progress(&lease(id, 1), "u0002", 2)
            .await
            .unwrap()
    );
    let reason = "stored job is unusable: its sender_jid is not a bare JID";
    let stranger = Lease {
        owner: "node2".into(),
        ..lease(id, 1)
    };
    assert!(!store.abandon(&stranger, reason).await.unwrap());
    assert!(!store.abandon(&lease(id, 2), reason).await.unwrap());
    assert_eq!(store.owned_leases("node1").await.unwrap(), vec![(id, 1)]);

    assert!(store.abandon(&lease(id, 1), reason).await.unwrap());
    assert!(!store.abandon(&lease(id, 1), reason).await.unwrap(), "once");
    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.state, ExecutionState::AbortError);
    assert_eq!(job.abortion_reason.as_deref(), Some(reason));
    assert_eq!(
        (job.recipients_processed, job.cursor.as_deref()),
        (2, Some("u0002"))
    );
    assert!(job.stopped_at.is_some() && job.owner.is_none());
    assert!(store.owned_leases("node1").await.unwrap().is_empty());
    // Kept for follow-ups, as long as the job exists.
    assert_eq!(
        store.snapshot_page(id, None, 10).await.unwrap(),
        usernames(5)
    );
}

/// SQLite keeps any text in a time column: a value that does not decode is reported with its
/// job and column like any other unusable value.
#[tokio::test]
async fn an_undecodable_value_is_reported_with_its_column() {
    sqlite()
        .await
        .run(|store| async move {
            let id = store
                .create_job(&spec("example.com"), "node1", LEASE, &users(1), &users_db())
                .await
                .unwrap();
            store
                .execute_for_test(&format!(
                    "UPDATE xb_jobs SET created_at = 'yesterday' WHERE id = {id}"
                ))
                .await;
            let bad = invalid_row(store.get_job(id).await);
            assert_eq!(
                (bad.job_id, bad.column.as_str()),
                (id, "created_at"),
                "{bad}"
            );
            assert!(matches!(bad.problem, RowProblem::Undecodable(_)), "{bad}");
            assert_eq!(bad.domain.as_deref(), Some("example.com"), "{bad}");
            assert_eq!(
                invalid_row(store.list_jobs("example.com", 10, 0).await),
                bad
            );
            let owned = store.running_jobs_owned_by("node1").await.unwrap();
            assert_eq!(owned, vec![Err(bad)]);
        })
        .await;
}

/// What a takeover and `serve`'s start-up check read: the running jobs with their domain,
/// users database and owner; a domain's running job; whether a domain has jobs at all.
async fn running_jobs_are_listed_with_their_users_database(store: Store) {
    let other_db = UsersDatabase::new("mongooseim@postgresql:1/users");
    let com = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(2), &users_db())
        .await
        .unwrap();
    let org = store
        .create_job(&spec("example.org"), "node2", LEASE, &users(2), &other_db)
        .await
        .unwrap();
    let done = store
        .create_job(&spec("example.net"), "node1", LEASE, &users(1), &users_db())
        .await
        .unwrap();
    assert!(
        store
            .complete(&lease(done, 1), &Outcome::Finished, 1)
            .await
            .unwrap()
    );

    let running = store.running_jobs().await.unwrap();
    let seen: Vec<_> = running
        .iter()
        .map(|job| {
            (
                job.id,
                job.domain.as_str(),
                job.users_database.clone(),
                job.owner.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (com, "example.com", Some(users_db()), Some("node1")),
            (org, "example.org", Some(other_db), Some("node2")),
        ]
    );
    assert_eq!(
        store.running_job_ids("example.org").await.unwrap(),
        vec![org]
    );
    assert!(
        store
            .running_job_ids("example.net")
            .await
            .unwrap()
            .is_empty()
    );
    for (domain, has) in [
        ("example.net", true),
        ("example.com", true),
        ("nobody.test", false),
    ] {
        assert_eq!(
            store.domain_has_jobs(domain).await.unwrap(),
            has,
            "{domain}"
        );
    }
    assert!(
        store.expired_leases("node3").await.unwrap().is_empty(),
        "none expired"
    );
}

/// A store opened on a database it cannot reach answers every call at once with
/// [`StoreError::NotReached`], without waiting for a connection; once it is reached (here: the
/// SQLite file's directory created) it is migrated and its calls go to the database.
#[tokio::test]
async fn an_unreached_store_answers_at_once_until_reached() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("later");
    let store = Store::open(&format!("sqlite://{}/jobs.db", missing.display()), 2).unwrap();
    let began = std::time::Instant::now();
    assert!(matches!(
        store.get_job(1).await,
        Err(StoreError::NotReached)
    ));
    let renewed = store.renew_leases("node1", LEASE).await;
    assert!(
        matches!(renewed, Err(StoreError::NotReached)),
        "{renewed:?}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );

    let err = store.reach().await.unwrap_err().to_string();
    let cause = format!("the directory {} does not exist", missing.display());
    assert!(err.contains(&cause), "{err}");
    assert!(!store.is_reached());
    assert!(matches!(
        store.get_job(1).await,
        Err(StoreError::NotReached)
    ));

    std::fs::create_dir(&missing).unwrap();
    store.reach().await.unwrap();
    assert!(store.is_reached());
    assert!(store.get_job(1).await.unwrap().is_none());
    store.close().await;
}

/// Reaching PostgreSQL at a closed port fails at once with the target and the cause; a URL
/// that does not parse is refused when the store is opened.
#[tokio::test]
async fn reaching_a_closed_port_names_the_target_and_the_cause() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let store = Store::open(&format!("postgres://xb:hunter2@127.0.0.1:{port}/jobs"), 2).unwrap();
    let began = std::time::Instant::now();
    let err = store.reach().await.unwrap_err().to_string();
    assert!(began.elapsed() < Duration::from_secs(2), "{err}");
    assert!(
        err.contains(&format!(
            "postgres://xb@127.0.0.1:{port}/jobs (database.url)"
        )) && err.contains("refused")
            && !err.contains("hunter2"),
        "{err}"
    );
    assert!(matches!(
        store.get_job(1).await,
        Err(StoreError::NotReached)
    ));

    let err = Store::open("postgres://xb@127.0.0.1:notaport/jobs", 2).unwrap_err();
    assert!(err.to_string().contains("invalid URL"), "{err}");
}

/// A follow-up records what it amends and for how many recipients, reuses its original's
/// snapshot (kept after the original ended), and keeps the original from being deleted while
/// it runs; once it ended, the original can go.
async fn a_follow_up_pages_its_originals_snapshot_which_outlives_it(store: Store) {
    let original = store
        .create_job(
            &spec("example.com"),
            "node1",
            LEASE,
            &users(30),
            &users_db(),
        )
        .await
        .unwrap();
    assert!(store.mark_started(&lease(original, 1)).await.unwrap());
    assert!(
        store
            .commit_progress(&lease(original, 1), "u0010", 10)
            .await
            .unwrap()
    );
    assert!(store.abort_job(original, "example.com").await.unwrap());
    let original_job = store.get_job(original).await.unwrap().unwrap();
    assert_eq!(
        original_job.reached(10),
        20,
        "ten processed and the batch in flight"
    );

    let correction = spec("example.com");
    let id = store
        .create_follow_up(
            &correction,
            "node1",
            LEASE,
            &original_job,
            JobKind::Correction,
            20,
            None,
        )
        .await
        .unwrap()
        .id();
    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!((job.kind, job.recipient_count), (JobKind::Correction, 20));
    assert_eq!(
        job.amends,
        Some(Amends {
            job_id: original,
            reach: 20
        })
    );
    assert_eq!(job.snapshot_job(), original);
    assert_eq!(job.users_database, Some(users_db()));
    assert_eq!(
        store
            .snapshot_page(job.snapshot_job(), Some("u0018"), 100)
            .await
            .unwrap(),
        usernames(30)[18..].to_vec()
    );
    assert!(matches!(
        store
            .create_follow_up(
                &correction,
                "node1",
                LEASE,
                &original_job,
                JobKind::Retraction,
                20,
                None
            )
            .await,
        Err(StoreError::RunningJobExists)
    ));

    // The original stays while its follow-up runs, and can go once it ended.
    let domain_jobs = |store: Store| async move {
        store
            .delete_inactive_jobs("example.com", &[original])
            .await
            .unwrap()
    };
    assert!(
        domain_jobs(store.clone()).await.is_empty(),
        "a follow-up runs"
    );
    assert!(
        store
            .delete_inactive_jobs_of_domain("example.com")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .complete(&lease(id, 1), &Outcome::Finished, 20)
            .await
            .unwrap()
    );
    assert_eq!(domain_jobs(store.clone()).await, vec![original]);
    assert!(
        store
            .snapshot_page(original, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let orphan = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(orphan.amends.map(|amends| amends.job_id), Some(original));
}

/// An idempotency key with the fingerprint of `arguments`.
fn key(key: &str, arguments: &str) -> Idempotency {
    Idempotency::new(
        key.to_owned(),
        &serde_json::json!({ "arguments": arguments }),
    )
    .unwrap()
}

async fn create_once(
    store: &Store,
    domain: &str,
    once: &Idempotency,
) -> Result<Created, StoreError> {
    store
        .create_job_once(
            Some(once),
            &spec(domain),
            "node1",
            LEASE,
            &users(3),
            None,
            &users_db(),
        )
        .await
}

async fn an_idempotency_key_answers_with_the_job_it_created_first(store: Store) {
    let once = key("notice-1", "a");
    let Created::New(first) = create_once(&store, "example.com", &once).await.unwrap() else {
        panic!("the first request creates its job");
    };
    // While the job runs: the same job, not the running job's refusal.
    assert_eq!(
        create_once(&store, "example.com", &once).await.unwrap(),
        Created::Existing(first)
    );
    assert_eq!(
        store.job_by_key("example.com", &once).await.unwrap(),
        KeyMatch::Same(first)
    );
    // Other arguments under the same key: refused, nothing written.
    let other = key("notice-1", "b");
    assert!(matches!(
        create_once(&store, "example.com", &other).await,
        Err(StoreError::IdempotencyKeyReused { id }) if id == first
    ));
    assert_eq!(
        store.job_by_key("example.com", &other).await.unwrap(),
        KeyMatch::Reused(first)
    );
    // After the job ended, too.
    assert!(
        store
            .complete(&lease(first, 1), &Outcome::Finished, 3)
            .await
            .unwrap()
    );
    assert_eq!(
        create_once(&store, "example.com", &once).await.unwrap(),
        Created::Existing(first)
    );
    assert!(matches!(
        create_once(&store, "example.com", &other).await,
        Err(StoreError::IdempotencyKeyReused { id }) if id == first
    ));
    // Keys are per domain; a request without a key still meets the running job.
    let Created::New(elsewhere) = create_once(&store, "example.org", &once).await.unwrap() else {
        panic!("another domain's key is another key");
    };
    assert_ne!(elsewhere, first);
    assert!(matches!(
        store
            .create_job(&spec("example.org"), "node1", LEASE, &users(3), &users_db())
            .await,
        Err(StoreError::RunningJobExists)
    ));
    // A follow-up's key works the same way.
    let original = store.get_job(first).await.unwrap().unwrap();
    let retraction = key("retract-1", "r");
    let retraction_spec = spec("example.com");
    let follow_up = || {
        store.create_follow_up(
            &retraction_spec,
            "node1",
            LEASE,
            &original,
            JobKind::Retraction,
            3,
            Some(&retraction),
        )
    };
    let Created::New(retracting) = follow_up().await.unwrap() else {
        panic!("the follow-up is created");
    };
    assert_eq!(follow_up().await.unwrap(), Created::Existing(retracting));
    assert!(store.abort_job(retracting, "example.com").await.unwrap());
    // Deleting the job frees its key.
    assert_eq!(
        store
            .delete_inactive_jobs("example.com", &[first])
            .await
            .unwrap(),
        vec![first]
    );
    assert_eq!(
        store.job_by_key("example.com", &once).await.unwrap(),
        KeyMatch::Free
    );
    let Created::New(again) = create_once(&store, "example.com", &other).await.unwrap() else {
        panic!("a freed key creates a new job");
    };
    assert!(again > first);
}

async fn concurrent_creates_with_one_key_make_one_job(store: Store) {
    let once = key("notice-2", "a");
    let results = eight_concurrent_creates(&store, Some(&once)).await;
    let created: Vec<Created> = results
        .into_iter()
        .map(|result| result.unwrap_or_else(|err| panic!("every twin is answered: {err}")))
        .collect();
    let new: Vec<_> = created
        .iter()
        .filter(|c| matches!(c, Created::New(_)))
        .collect();
    assert_eq!(new.len(), 1, "{created:?}");
    let id = new[0].id();
    assert!(created.iter().all(|c| c.id() == id), "{created:?}");
    assert_eq!(
        store.list_jobs("example.com", 10, 0).await.unwrap().len(),
        1
    );
}

/// The lease a lifted hold gives, or a panic.
fn running(unheld: Unheld) -> Lease {
    match unheld {
        Unheld::Running(lease) => lease,
        Unheld::NotHeld => panic!("the hold was not lifted"),
    }
}

async fn a_paused_job_is_fenced_out_and_resumes_under_a_new_epoch(store: Store) {
    let id = store
        .create_job(
            &spec("example.com"),
            "node1",
            LEASE,
            &users(30),
            &users_db(),
        )
        .await
        .unwrap();
    let first = lease(id, 1);
    assert!(store.mark_started(&first).await.unwrap());
    assert!(store.commit_progress(&first, "u0010", 10).await.unwrap());
    assert!(
        !store.pause_job(id, "other.org").await.unwrap(),
        "another domain's job"
    );
    assert!(store.pause_job(id, "example.com").await.unwrap());
    assert!(
        !store.pause_job(id, "example.com").await.unwrap(),
        "already paused"
    );

    let paused = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(paused.state, ExecutionState::Running, "MongooseIM's state");
    assert_eq!(
        (paused.status(), paused.hold),
        (Status::Paused, Some(Hold::Paused))
    );
    assert!(paused.paused_at.is_some() && paused.owner.is_none());
    assert_eq!(paused.recipients_processed, 10);
    // The worker's lease is gone: its next write finds nothing, and no renewal, ownership
    // check or takeover round sees the job.
    assert!(!store.commit_progress(&first, "u0020", 20).await.unwrap());
    assert!(store.owned_leases("node1").await.unwrap().is_empty());
    assert_eq!(store.renew_leases("node1", LEASE).await.unwrap(), 0);
    assert!(store.expired_leases("node2").await.unwrap().is_empty());
    assert!(
        store
            .running_jobs_owned_by("node1")
            .await
            .unwrap()
            .is_empty()
    );

    let resumed = running(
        store
            .resume_job(id, "example.com", Some("node2"), LEASE)
            .await
            .unwrap(),
    );
    assert_eq!((resumed.owner.as_str(), resumed.epoch), ("node2", 3));
    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!((job.status(), job.paused_at), (Status::Running, None));
    assert_eq!(
        (job.owner.as_deref(), job.cursor.as_deref()),
        (Some("node2"), Some("u0010"))
    );
    assert!(!store.commit_progress(&first, "u0020", 20).await.unwrap());
    assert!(store.commit_progress(&resumed, "u0020", 20).await.unwrap());
    assert_eq!(
        store
            .resume_job(id, "example.com", Some("node2"), LEASE)
            .await
            .unwrap(),
        Unheld::NotHeld,
        "not paused"
    );

    // Resumed for nobody: expired at once, for an instance that may run it to take over.
    assert!(store.pause_job(id, "example.com").await.unwrap());
    let nobody = running(
        store
            .resume_job(id, "example.com", None, LEASE)
            .await
            .unwrap(),
    );
    assert_eq!((nobody.owner.as_str(), nobody.epoch), ("", 5));
    let taken = take_over(&store, "node3").await.unwrap();
    assert_eq!((taken.owner.as_str(), taken.epoch), ("node3", 6));
}

async fn a_paused_job_frees_its_domain_and_resumes_only_when_it_is_free(store: Store) {
    let paused = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(5), &users_db())
        .await
        .unwrap();
    assert!(store.pause_job(paused, "example.com").await.unwrap());
    assert_eq!(store.sending_job_id("example.com").await.unwrap(), None);
    assert_eq!(
        store.running_job_ids("example.com").await.unwrap(),
        vec![paused]
    );
    let urgent = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(5), &users_db())
        .await
        .unwrap();
    assert_eq!(
        store.sending_job_id("example.com").await.unwrap(),
        Some(urgent)
    );
    let refused = store
        .resume_job(paused, "example.com", Some("node1"), LEASE)
        .await;
    assert!(
        matches!(refused, Err(StoreError::RunningJobExists)),
        "{refused:?}"
    );
    let still = store.get_job(paused).await.unwrap().unwrap();
    assert_eq!(
        still.status(),
        Status::Paused,
        "a refused resume changes nothing"
    );
    assert!(
        store
            .complete(&lease(urgent, 1), &Outcome::Finished, 5)
            .await
            .unwrap()
    );
    running(
        store
            .resume_job(paused, "example.com", Some("node1"), LEASE)
            .await
            .unwrap(),
    );
    assert_eq!(
        store.sending_job_id("example.com").await.unwrap(),
        Some(paused)
    );
}

async fn a_scheduled_job_waits_then_starts_once_with_its_recipients_fixed_then(store: Store) {
    let at = chrono::Utc::now() + chrono::TimeDelta::seconds(2);
    let id = store
        .create_scheduled(None, &spec("example.com"), at, 3, None, &users_db())
        .await
        .unwrap()
        .id();
    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.status()),
        (ExecutionState::Running, Status::Scheduled)
    );
    assert_eq!((job.recipient_count, job.owner.as_deref()), (3, None));
    let stored_at = job.start_at.unwrap();
    assert!(
        (stored_at - at).num_milliseconds().abs() <= 1,
        "{stored_at} {at}"
    );
    assert!(!job.due);
    // Not the domain's running job: another can start meanwhile.
    assert_eq!(store.sending_job_id("example.com").await.unwrap(), None);
    assert!(store.expired_leases("node1").await.unwrap().is_empty());
    assert!(store.running_jobs().await.unwrap().is_empty());

    let scheduled = store.scheduled_jobs().await.unwrap();
    assert_eq!(scheduled.len(), 1);
    assert_eq!(
        (scheduled[0].id, scheduled[0].domain.as_str()),
        (id, "example.com")
    );
    assert!(
        scheduled[0].due_in > Duration::from_millis(500)
            && scheduled[0].due_in <= Duration::from_secs(2),
        "{:?}",
        scheduled[0].due_in
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !store.scheduled_jobs().await.unwrap()[0].due_in.is_zero() {
        assert!(std::time::Instant::now() < deadline, "never due");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(store.get_job(id).await.unwrap().unwrap().due);

    // Two instances race to start it: one does.
    let (fixed, db) = (users(7), users_db());
    let (a, b) = tokio::join!(
        store.start_scheduled(id, "node1", LEASE, Some(&fixed), &db),
        store.start_scheduled(id, "node2", LEASE, Some(&fixed), &db),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let started = match (a, b) {
        (Unheld::Running(lease), Unheld::NotHeld) | (Unheld::NotHeld, Unheld::Running(lease)) => {
            lease
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(started.epoch, 2);
    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.status(), Status::Running);
    assert_eq!(
        job.recipient_count, 7,
        "the recipients fixed when it started"
    );
    assert_eq!(job.owner.as_deref(), Some(started.owner.as_str()));
    assert_eq!(
        store.snapshot_page(id, None, 100).await.unwrap(),
        usernames(7)
    );
    assert!(store.scheduled_jobs().await.unwrap().is_empty());
    assert!(store.mark_started(&started).await.unwrap());

    // A scheduled job of a busy domain does not start.
    let later = store
        .create_scheduled(
            None,
            &spec("example.com"),
            chrono::Utc::now(),
            2,
            None,
            &users_db(),
        )
        .await
        .unwrap()
        .id();
    let busy = store
        .start_scheduled(later, "node1", LEASE, Some(&users(2)), &users_db())
        .await;
    assert!(
        matches!(busy, Err(StoreError::RunningJobExists)),
        "{busy:?}"
    );
    assert_eq!(
        store.get_job(later).await.unwrap().unwrap().status(),
        Status::Scheduled
    );
    // One that cannot start ends as an error, once.
    assert!(
        store
            .fail_scheduled(later, "nobody to send to")
            .await
            .unwrap()
    );
    assert!(
        !store
            .fail_scheduled(later, "nobody to send to")
            .await
            .unwrap()
    );
    let failed = store.get_job(later).await.unwrap().unwrap();
    assert_eq!(failed.status(), Status::AbortError);
    assert_eq!(failed.abortion_reason.as_deref(), Some("nobody to send to"));
}

async fn held_jobs_are_aborted_not_deleted_and_not_taken_over(store: Store) {
    let at = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let scheduled = store
        .create_scheduled(None, &spec("example.com"), at, 3, None, &users_db())
        .await
        .unwrap()
        .id();
    let paused = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(5), &users_db())
        .await
        .unwrap();
    assert!(store.pause_job(paused, "example.com").await.unwrap());
    assert!(take_over(&store, "node2").await.is_none());
    assert!(
        store
            .delete_inactive_jobs("example.com", &[scheduled, paused])
            .await
            .unwrap()
            .is_empty(),
        "held jobs have not ended"
    );
    let mut live = store.running_job_ids("example.com").await.unwrap();
    live.sort();
    assert_eq!(live, vec![scheduled, paused]);
    for id in [scheduled, paused] {
        assert!(store.abort_job(id, "example.com").await.unwrap());
        let job = store.get_job(id).await.unwrap().unwrap();
        assert_eq!((job.status(), job.hold), (Status::AbortAdmin, None));
    }
    assert!(store.scheduled_jobs().await.unwrap().is_empty());
    assert_eq!(
        store
            .resume_job(paused, "example.com", Some("node1"), LEASE)
            .await
            .unwrap(),
        Unheld::NotHeld
    );
}

/// A list job keeps its unknown names, a group job its group, a scheduled list its recipients
/// (kept when it starts); a stored audience that does not fit is an [`InvalidRow`].
async fn audiences_round_trip_and_bad_ones_are_reported(store: Store) {
    let mut listed = spec("example.com");
    listed.recipient_group = RecipientGroup::Listed;
    let unknown = Unknown {
        count: 12,
        sample: vec!["ghost@example.com".into(), "zoë@example.com".into()],
    };
    let id = store
        .create_job_once(
            None,
            &listed,
            "node1",
            LEASE,
            &users(3),
            Some(&unknown),
            &users_db(),
        )
        .await
        .unwrap()
        .id();
    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(
        (
            job.recipient_group,
            job.group.as_deref(),
            job.unknown.as_ref()
        ),
        (RecipientGroup::Listed, None, Some(&unknown))
    );
    assert_eq!(
        store.snapshot_page(id, None, 10).await.unwrap(),
        usernames(3)
    );
    store.abort_job(id, "example.com").await.unwrap();

    let mut grouped = spec("example.com");
    grouped.recipient_group = RecipientGroup::Group;
    grouped.group = Some("staff-2.b".into());
    let at = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let group_job = store
        .create_scheduled(None, &grouped, at, 7, None, &users_db())
        .await
        .unwrap()
        .id();
    let job = store.get_job(group_job).await.unwrap().unwrap();
    assert_eq!(
        (
            job.recipient_group,
            job.group.as_deref(),
            job.unknown,
            job.recipient_count
        ),
        (RecipientGroup::Group, Some("staff-2.b"), None, 7)
    );
    assert!(
        store
            .snapshot_page(group_job, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A scheduled list stores its recipients at once and keeps them when it starts.
    let names = usernames(4);
    let scheduled_list = store
        .create_scheduled(None, &listed, at, 99, Some((&names, None)), &users_db())
        .await
        .unwrap()
        .id();
    assert_eq!(
        store
            .get_job(scheduled_list)
            .await
            .unwrap()
            .unwrap()
            .recipient_count,
        4
    );
    assert_eq!(
        store.snapshot_page(scheduled_list, None, 10).await.unwrap(),
        names
    );
    store.abort_job(group_job, "example.com").await.unwrap();
    let started = store
        .start_scheduled(scheduled_list, "node1", LEASE, None, &users_db())
        .await
        .unwrap();
    assert!(matches!(started, Unheld::Running(_)), "{started:?}");
    let job = store.get_job(scheduled_list).await.unwrap().unwrap();
    assert_eq!((job.hold, job.recipient_count), (None, 4));
    assert_eq!(
        store.snapshot_page(scheduled_list, None, 10).await.unwrap(),
        names
    );

    for (update, column) in [
        ("recipient_group = 'friends'", "recipient_group"),
        ("audience_group = 'staff'", "audience_group"),
        ("unknown_sample = 'not json'", "unknown_sample"),
        ("unknown_recipients = -1", "unknown_recipients"),
    ] {
        store
            .execute_for_test(&format!("UPDATE xb_jobs SET {update} WHERE id = {id}"))
            .await;
        let bad = invalid_row(store.get_job(id).await);
        assert_eq!((bad.job_id, bad.column.as_str()), (id, column), "{bad}");
        store
            .execute_for_test(&format!(
                "UPDATE xb_jobs SET recipient_group = 'listed', audience_group = NULL, \
                 unknown_recipients = 1, unknown_sample = '[]' WHERE id = {id}"
            ))
            .await;
        assert!(store.get_job(id).await.unwrap().is_some());
    }
    // A group job without its group's name.
    store
        .execute_for_test(&format!(
            "UPDATE xb_jobs SET audience_group = NULL WHERE id = {group_job}"
        ))
        .await;
    let bad = invalid_row(store.get_job(group_job).await);
    assert_eq!(bad.column, "audience_group");
}

/// A job's language and translations are stored and read back as given (texts at their
/// limits, in any script); a job without them stores NULLs. A stored value that is not a JSON
/// array of translations is an [`InvalidRow`] naming `translations`; one that decodes but breaks
/// the request's rules (a bad tag) is read, and refused by `Job::sending`.
async fn languages_round_trip_and_bad_stored_ones_are_reported(store: Store) {
    use crate::job::Translation;

    let plain = store
        .create_job(&spec("other.org"), "node1", LEASE, &users(1), &users_db())
        .await
        .unwrap();
    let job = store.get_job(plain).await.unwrap().unwrap();
    assert_eq!((job.language, job.translations), (None, Vec::new()));
    let stored = |column: &str, id: i64| {
        let query = format!("SELECT {column} FROM xb_jobs WHERE id = {id}");
        let store = store.clone();
        async move { store.text_for_test(&query).await }
    };
    assert_eq!(stored("translations", plain).await, None);
    assert_eq!(stored("language", plain).await, None);

    let mut languages = spec("example.com");
    languages.body = "Tonight.".into();
    languages.language = Some("pt-BR".into());
    languages.translations = vec![
        Translation {
            language: "de-CH".into(),
            subject: "\u{1F1E9}\u{1F1EA}".repeat(1024),
            body: "\u{1F600}".repeat(16_000),
        },
        Translation {
            language: "zh-Hant".into(),
            subject: String::new(),
            body: "今晚維護 \"quoted\" \\ back\\slash\r\n".into(),
        },
    ];
    let id = store
        .create_job(&languages, "node1", LEASE, &users(2), &users_db())
        .await
        .unwrap();
    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.language.as_deref(), Some("pt-BR"));
    assert_eq!(job.translations, languages.translations);
    assert!(job.sending().is_ok());

    for bad_json in ["not json", "[{\"language\": 1}]", "{}"] {
        store
            .execute_for_test(&format!(
                "UPDATE xb_jobs SET translations = '{bad_json}' WHERE id = {id}"
            ))
            .await;
        let bad = invalid_row(store.get_job(id).await);
        assert_eq!((bad.job_id, bad.column.as_str()), (id, "translations"));
        assert!(matches!(bad.problem, RowProblem::Undecodable(_)), "{bad}");
    }
    store
        .execute_for_test(&format!(
            "UPDATE xb_jobs SET translations = \
             '[{{\"language\": \"de_CH\", \"subject\": \"\", \"body\": \"b\"}}]' WHERE id = {id}"
        ))
        .await;
    let job = store.get_job(id).await.unwrap().unwrap();
    let bad = job.sending().unwrap_err();
    assert_eq!(bad.column, "translations", "{bad}");
    assert!(bad.to_string().contains("de_CH"), "{bad}");
}

/// Names that a bulk load must carry unchanged: the escapes of PostgreSQL's `COPY` text format
/// (backslash, tab, line feed, carriage return, `\N` and `\.`), quotes, separators and
/// characters of one to four bytes. No trailing space: MySQL's PAD SPACE collation would make
/// `a ` and `a` one key.
const UNUSUAL_NAMES: [&str; 16] = [
    "back\\slash",
    "\\",
    "\\N",
    "\\.",
    ".",
    "tab\tinside",
    "line\nfeed",
    "carriage\rreturn",
    "quote'single",
    "quote\"double",
    "comma,semicolon;",
    "[bracket]{brace}",
    "\u{e9}t\u{e9}",
    "\u{65e5}\u{672c}",
    "\u{1F600}emoji",
    "\u{7f}delete",
];

/// 250,000 listed recipients (and names that need escaping in a bulk load) are stored in the
/// job's transaction and paged back complete, each once, in byte order, whichever way the
/// dialect writes them; the count is the snapshot's.
async fn a_large_listed_snapshot_round_trips_in_byte_order(store: Store) {
    let mut names: Vec<String> = (0..250_000 - UNUSUAL_NAMES.len())
        .map(|i| format!("user{:07}", (i * 7_919) % 1_000_003))
        .collect();
    names.extend(UNUSUAL_NAMES.iter().map(|name| (*name).to_owned()));
    let mut expected = names.clone();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    expected.dedup();
    assert_eq!(expected.len(), names.len(), "the test's names are distinct");

    let id = store
        .create_job(
            &spec("example.com"),
            "node1",
            LEASE,
            &Snapshot::Listed(names),
            &users_db(),
        )
        .await
        .unwrap();
    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.recipient_count, 250_000);

    let mut paged: Vec<String> = Vec::with_capacity(expected.len());
    loop {
        let page = store
            .snapshot_page(id, paged.last().map(String::as_str), 10_000)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        paged.extend(page);
    }
    assert_eq!(paged.len(), expected.len());
    let first_difference = paged.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "paged out of byte order or changed");
}

/// Deleting a job deletes its listed recipients in the same transaction (PostgreSQL's have no
/// foreign key to cascade from); the recipients of other jobs stay.
async fn a_deleted_job_takes_its_listed_snapshot_with_it(store: Store) {
    let first = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(3), &users_db())
        .await
        .unwrap();
    store.abort_job(first, "example.com").await.unwrap();
    let second = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(5), &users_db())
        .await
        .unwrap();
    store.abort_job(second, "example.com").await.unwrap();
    let count = |id: i64| format!("SELECT COUNT(*) FROM xb_recipients WHERE job_id = {id}");
    assert_eq!(store.count_for_test(&count(first)).await, 3);

    let deleted = store
        .delete_inactive_jobs("example.com", &[first])
        .await
        .unwrap();
    assert_eq!(deleted, vec![first]);
    assert_eq!(store.count_for_test(&count(first)).await, 0);
    assert_eq!(store.count_for_test(&count(second)).await, 5);
}

/// One read of the lease loop answers what the three reads it replaces answer.
async fn a_lease_round_reads_expired_scheduled_and_owned_in_one_statement(store: Store) {
    let empty = store.lease_round("node1").await.unwrap();
    assert!(empty.expired.is_empty() && empty.scheduled.is_empty() && empty.owned.is_empty());

    let mine = store
        .create_job(&spec("a.example"), "node1", LEASE, &users(1), &users_db())
        .await
        .unwrap();
    let theirs = store
        .create_job(
            &spec("b.example"),
            "node2",
            Duration::ZERO,
            &users(1),
            &users_db(),
        )
        .await
        .unwrap();
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let scheduled = store
        .create_scheduled(None, &spec("c.example"), later, 4, None, &users_db())
        .await
        .unwrap()
        .id();
    // The expired lease is seen expired by the database's clock.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.expired_leases("node1").await.unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let round = store.lease_round("node1").await.unwrap();
    assert_eq!(round.owned, store.owned_leases("node1").await.unwrap());
    assert_eq!(round.owned, vec![(mine, 1)]);
    let expired = store.expired_leases("node1").await.unwrap();
    assert_eq!(round.expired.len(), 1);
    assert_eq!(round.expired[0].lease, expired[0].lease);
    assert_eq!(round.expired[0].lease.job_id, theirs);
    assert_eq!(round.expired[0].domain, "b.example");
    assert_eq!(round.expired[0].previous_owner.as_deref(), Some("node2"));
    assert_eq!(round.expired[0].users_database, Some(users_db()));
    assert_eq!(round.scheduled.len(), 1);
    assert_eq!(round.scheduled[0].id, scheduled);
    assert_eq!(round.scheduled[0].domain, "c.example");
    let due_in = round.scheduled[0].due_in;
    assert!(
        due_in > Duration::from_secs(3500) && due_in <= Duration::from_secs(3600),
        "{due_in:?}"
    );
}
