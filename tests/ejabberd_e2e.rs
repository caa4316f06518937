//! End to end against a real ejabberd 23.01, with recipients read from ejabberd's `users`
//! table by creation time: the scenarios of `prosody_e2e.rs` and `resume.rs`
//! ([`scenarios`]) with
//!
//! * ejabberd on PostgreSQL with its default schema (`[users] schema = "ejabberd"`, mapped to
//!   the domain), jobs on PostgreSQL;
//! * ejabberd on MariaDB with `new_sql_schema` (`schema = "ejabberd_new"`), jobs on MariaDB;
//! * ejabberd on SQLite with its default schema, jobs on SQLite (delivery only);
//! * on PostgreSQL and MariaDB also with startBroadcast answering before the accounts are
//!   counted (`count_wait_ms = 0`).
//!
//! Offline delivery is checked in ejabberd's `spool` table, where ejabberd stores the stanza
//! rewritten (namespace, `<delay/>`, another child order).

mod support;

use support::ejabberd::{Ejabberd, EjabberdStorage};
use support::mysql::MySqlDatabase;
use support::pg::PgDatabase;
use support::scenarios;
use support::serve::JobStore;

async fn on_postgres() -> (Ejabberd, JobStore) {
    let ejabberd = Ejabberd::start(EjabberdStorage::Postgres(PgDatabase::create().await)).await;
    (ejabberd, JobStore::Postgres(PgDatabase::create().await))
}

async fn on_mariadb() -> (Ejabberd, JobStore) {
    let storage = EjabberdStorage::MariaDbNew(MySqlDatabase::create().await);
    let ejabberd = Ejabberd::start(storage).await;
    (ejabberd, JobStore::MySql(MySqlDatabase::create().await))
}

#[tokio::test(flavor = "multi_thread")]
async fn broadcast_with_postgres_ejabberd_and_postgres_jobs() {
    let (ejabberd, jobs) = on_postgres().await;
    scenarios::broadcast_reaches_every_account(&ejabberd, jobs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broadcast_with_mariadb_ejabberd_new_schema_and_mariadb_jobs() {
    let (ejabberd, jobs) = on_mariadb().await;
    scenarios::broadcast_reaches_every_account(&ejabberd, jobs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_serve_resumes_with_postgres_ejabberd() {
    let (ejabberd, jobs) = on_postgres().await;
    scenarios::killed_serve_resumes_its_running_job(&ejabberd, jobs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_serve_resumes_with_mariadb_ejabberd() {
    let (ejabberd, jobs) = on_mariadb().await;
    scenarios::killed_serve_resumes_its_running_job(&ejabberd, jobs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broadcast_with_sqlite_ejabberd_and_sqlite_jobs() {
    let ejabberd = Ejabberd::start(EjabberdStorage::Sqlite).await;
    scenarios::broadcast_reaches_every_account(&ejabberd, JobStore::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn answered_before_counting_with_postgres_ejabberd_and_postgres_jobs() {
    let (ejabberd, jobs) = on_postgres().await;
    scenarios::broadcast_answered_before_counting(&ejabberd, jobs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn answered_before_counting_with_mariadb_ejabberd_and_mariadb_jobs() {
    let (ejabberd, jobs) = on_mariadb().await;
    scenarios::broadcast_answered_before_counting(&ejabberd, jobs).await;
}
