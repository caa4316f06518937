//! Graceful shutdown: SIGTERM in the middle of a job stops `serve` promptly with exit code 0,
//! leaves the job running with its committed progress, lets the lease expire at once (so any
//! instance can continue it), and a restart finishes it.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::admin::BroadcastSpec;
use support::pg::PgDatabase;
use support::prosody::{Prosody, ProsodyStorage};
use support::serve::{JobStore, Serve, ServeConfig};

const RATE: i64 = 10;
const BATCH: i64 = 100; // rate × 10

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_releases_the_lease_and_a_restart_finishes_the_job() {
    let prosody = Prosody::start(ProsodyStorage::Sqlite).await;
    prosody.register_users("u", 149, "pw").await;
    let sender = prosody.register_user("admin", "pw").await;
    let jobs = PgDatabase::create().await;
    let jobs_url = jobs.url();
    let config = ServeConfig::for_prosody(&prosody, JobStore::Postgres(jobs));
    let node = config.node_name.clone();
    let mut serve = Serve::start(config).await;

    let spec = BroadcastSpec {
        name: "shutdown".into(),
        sender,
        rate: RATE,
        ..BroadcastSpec::default()
    };
    let job_id = serve
        .admin()
        .start_broadcast(&spec)
        .await
        .expect("startBroadcast");
    let job = serve
        .admin()
        .wait_processed(job_id, BATCH, Duration::from_secs(60))
        .await;
    assert_eq!(job["ownerNode"], json!(node), "{job}");

    let asked = Instant::now();
    let status = serve.sigterm().await;
    let took = asked.elapsed();
    assert!(status.success(), "serve exited with {status}");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");

    let pool = sqlx::PgPool::connect(&jobs_url).await.unwrap();
    let (state, processed, owner, expired): (String, i64, String, bool) = sqlx::query_as(
        "SELECT j.execution_state, j.recipients_processed, l.owner, l.expires_at <= now() \
         FROM xb_jobs j JOIN xb_leases l ON l.job_id = j.id WHERE j.id = $1",
    )
    .bind(job_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!((state.as_str(), processed), ("running", BATCH));
    assert_eq!(owner, node);
    assert!(expired, "the lease was not released");

    serve.restart().await;
    let job = serve
        .admin()
        .wait_state(job_id, "FINISHED", Duration::from_secs(60))
        .await;
    assert_eq!(job["recipientsProcessed"], 150, "{job}");
    assert_eq!(job["ownerNode"], "undefined", "{job}");
}
