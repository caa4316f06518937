//! The store's contract, run against every dialect: SQLite in a scratch file and PostgreSQL in a
//! fresh database on 127.0.0.1:5432 (override the server with `XB_TEST_POSTGRES`).

use std::time::Duration;

use jid::BareJid;

use super::{Outcome, Store, StoreError};
use crate::broadcast::{ExecutionState, JobSpec, Lease, RecipientGroup};

const LEASE: Duration = Duration::from_secs(60);

/// A store on a fresh database.
struct Fresh {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    /// The server and the name of a PostgreSQL database to drop when the test is done.
    postgres: Option<(String, String)>,
}

impl Fresh {
    async fn run<F: Future<Output = ()>>(self, test: impl FnOnce(Store) -> F) {
        test(self.store.clone()).await;
        self.store.close().await;
        if let Some((server, name)) = self.postgres {
            let admin = sqlx::PgPool::connect(&format!("{server}/postgres"))
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {name} WITH (FORCE)"
            )))
            .execute(&admin)
            .await
            .unwrap();
        }
    }
}

async fn sqlite() -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/jobs.db", dir.path().display());
    Fresh {
        store: Store::connect(&url, 4).await.unwrap(),
        _dir: Some(dir),
        postgres: None,
    }
}

async fn postgres() -> Fresh {
    let server = std::env::var("XB_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let name = format!(
        "xb_store_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let admin = sqlx::PgPool::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    Fresh {
        store: Store::connect(&format!("{server}/{name}"), 4)
            .await
            .unwrap(),
        _dir: None,
        postgres: Some((server, name)),
    }
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
    }
}

fn users(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("u{i:04}")).collect()
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
    };
}

on_every_dialect!(
    creates_a_running_owned_job_with_its_snapshot,
    one_running_job_per_domain,
    worker_writes_are_fenced_by_the_lease,
    completion_releases_the_lease_and_the_snapshot,
    lists_newest_first_with_paging,
    concurrent_starts_admit_one,
    abort_is_a_guarded_state_change_from_anywhere,
    deletes_only_inactive_jobs_of_the_domain,
);

async fn creates_a_running_owned_job_with_its_snapshot(store: Store) {
    let spec = spec("example.com");
    let id = store
        .create_job(&spec, "node1", LEASE, &users(25))
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
    assert_eq!((job.recipients_processed, job.cursor), (0, None));
    assert!(job.started_at.is_none() && job.stopped_at.is_none());

    let first = store.snapshot_page(id, None, 10).await.unwrap();
    assert_eq!(first, users(10));
    let rest = store.snapshot_page(id, Some("u0010"), 100).await.unwrap();
    assert_eq!(rest, users(25)[10..].to_vec());
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
        .create_job(&spec("example.com"), "node1", LEASE, &users(3))
        .await
        .unwrap();
    let again = store
        .create_job(&spec("example.com"), "node2", LEASE, &users(3))
        .await;
    assert!(
        matches!(again, Err(StoreError::RunningJobExists)),
        "{again:?}"
    );
    store
        .create_job(&spec("other.org"), "node1", LEASE, &users(3))
        .await
        .unwrap();
    assert!(
        store
            .complete(&lease(first, 1), &Outcome::Finished, 3)
            .await
            .unwrap()
    );
    store
        .create_job(&spec("example.com"), "node1", LEASE, &users(3))
        .await
        .unwrap();
}

async fn worker_writes_are_fenced_by_the_lease(store: Store) {
    let id = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(30))
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

async fn completion_releases_the_lease_and_the_snapshot(store: Store) {
    let id = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(5))
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
    assert!(store.snapshot_page(id, None, 10).await.unwrap().is_empty());
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
            .create_job(&spec("example.com"), "node1", LEASE, &users(1))
            .await
            .unwrap();
        store
            .complete(&lease(id, 1), &Outcome::Finished, 1)
            .await
            .unwrap();
        ids.push(id);
    }
    store
        .create_job(&spec("other.org"), "node1", LEASE, &users(1))
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

async fn concurrent_starts_admit_one(store: Store) {
    let attempts = (0..8).map(|i| {
        let store = store.clone();
        async move {
            store
                .create_job(&spec("example.com"), &format!("node{i}"), LEASE, &users(50))
                .await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::RunningJobExists)))
        .count();
    assert_eq!((accepted, refused), (1, 7), "{results:?}");
}

async fn abort_is_a_guarded_state_change_from_anywhere(store: Store) {
    let id = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(5))
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
        .create_job(&spec("example.com"), "node1", LEASE, &users(1))
        .await
        .unwrap();
    store
        .complete(&lease(finished, 1), &Outcome::Finished, 1)
        .await
        .unwrap();
    let aborted = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(1))
        .await
        .unwrap();
    store.abort_job(aborted, "example.com").await.unwrap();
    let running = store
        .create_job(&spec("example.com"), "node1", LEASE, &users(1))
        .await
        .unwrap();
    let foreign = store
        .create_job(&spec("other.org"), "node1", LEASE, &users(1))
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
