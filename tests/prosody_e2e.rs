//! End to end against a real Prosody: one broadcast to 200 accounts reaches an online user
//! at once, an offline user when they log in, and every other account's offline store,
//! exactly once and with the deterministic id; the job reports FINISHED with full counts,
//! and an account registered after the start is not a recipient
//! ([`scenarios::broadcast_reaches_every_account`]).
//! Run for Prosody+jobs on SQLite, on PostgreSQL and on MariaDB; on PostgreSQL and MariaDB
//! also with startBroadcast answering before the recipients are listed and counted.

mod support;

use support::mysql::MySqlDatabase;
use support::pg::PgDatabase;
use support::prosody::{Prosody, ProsodyStorage};
use support::scenarios;
use support::serve::JobStore;

#[tokio::test(flavor = "multi_thread")]
async fn broadcast_with_sqlite_prosody_and_sqlite_jobs() {
    let prosody = Prosody::start(ProsodyStorage::Sqlite).await;
    scenarios::broadcast_reaches_every_account(&prosody, JobStore::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broadcast_with_postgres_prosody_and_postgres_jobs() {
    let prosody = Prosody::start(ProsodyStorage::Postgres(PgDatabase::create().await)).await;
    let jobs = JobStore::Postgres(PgDatabase::create().await);
    scenarios::broadcast_reaches_every_account(&prosody, jobs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broadcast_with_mariadb_prosody_and_mariadb_jobs() {
    let prosody = Prosody::start(ProsodyStorage::MariaDb(MySqlDatabase::create().await)).await;
    let jobs = JobStore::MySql(MySqlDatabase::create().await);
    scenarios::broadcast_reaches_every_account(&prosody, jobs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn answered_before_counting_with_postgres_prosody_and_postgres_jobs() {
    let prosody = Prosody::start(ProsodyStorage::Postgres(PgDatabase::create().await)).await;
    let jobs = JobStore::Postgres(PgDatabase::create().await);
    scenarios::broadcast_answered_before_counting(&prosody, jobs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn answered_before_counting_with_mariadb_prosody_and_mariadb_jobs() {
    let prosody = Prosody::start(ProsodyStorage::MariaDb(MySqlDatabase::create().await)).await;
    let jobs = JobStore::MySql(MySqlDatabase::create().await);
    scenarios::broadcast_answered_before_counting(&prosody, jobs).await;
}
