//! Throw-away PostgreSQL databases on the shared server at 127.0.0.1:5432 (user `postgres`,
//! trust authentication), one per test so tests can run in parallel.

use super::{cleanup_blocking, unique_database_name};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The maintenance database used to create and drop test databases.
const SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A uniquely named, empty database; dropped (`WITH (FORCE)`) when this value is dropped.
pub struct PgDatabase {
    name: String,
}

impl PgDatabase {
    /// Creates a fresh database named `xb_<pid>_<time>_<counter>`.
    pub async fn create() -> Self {
        let name = unique_database_name();
        let mut conn = server_connection().await;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        PgDatabase { name }
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `postgres://postgres@127.0.0.1:5432/<name>`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }
}

impl Drop for PgDatabase {
    /// Best effort: a leftover database is harmless and uniquely named.
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        cleanup_blocking(
            format!("drop test database {}", self.name),
            move || async move {
                let mut conn = PgConnection::connect(SERVER_URL).await.ok()?;
                sqlx::query(AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .ok()?;
                Some(())
            },
        );
    }
}

async fn server_connection() -> PgConnection {
    PgConnection::connect(SERVER_URL).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable as {SERVER_URL} ({e}): start it with trust \
             authentication for 127.0.0.1 (`bash .ci/run` does)"
        )
    })
}
