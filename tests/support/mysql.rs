//! Throw-away MySQL/MariaDB databases on the shared server at 127.0.0.1:3306 (root without a
//! password), one per test so tests can run in parallel.

use super::{cleanup_blocking, unique_database_name};
use sqlx::{AssertSqlSafe, Connection, MySqlConnection};

/// The server, without a database.
const SERVER_URL: &str = "mysql://root@127.0.0.1:3306";

/// A uniquely named, empty utf8mb4 database; dropped when this value is dropped.
pub struct MySqlDatabase {
    name: String,
}

impl MySqlDatabase {
    /// Creates a fresh database named `xb_<pid>_<time>_<counter>`.
    pub async fn create() -> Self {
        let name = unique_database_name();
        let mut conn = MySqlConnection::connect(SERVER_URL)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "MariaDB is not reachable as {SERVER_URL} ({e}): start it with root allowed \
                     without a password from 127.0.0.1 (`bash .ci/run` does)"
                )
            });
        sqlx::query(AssertSqlSafe(format!(
            "CREATE DATABASE {name} CHARACTER SET utf8mb4"
        )))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        MySqlDatabase { name }
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates (once) the login `user`@127.0.0.1 with `password` and grants it this database:
    /// servers whose drivers always send a password cannot log in as the password-less root.
    pub async fn grant_login(&self, user: &str, password: &str) {
        let mut conn = MySqlConnection::connect(&self.url())
            .await
            .expect("connect");
        let grant = format!(
            "CREATE USER IF NOT EXISTS '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'; \
             GRANT ALL PRIVILEGES ON {}.* TO '{user}'@'127.0.0.1'",
            self.name
        );
        sqlx::raw_sql(AssertSqlSafe(grant))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("create the login {user}: {e}"));
    }

    /// `mysql://root@127.0.0.1:3306/<name>`.
    pub fn url(&self) -> String {
        format!("{SERVER_URL}/{}", self.name)
    }
}

impl Drop for MySqlDatabase {
    /// Best effort: a leftover database is harmless and uniquely named.
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {}", self.name);
        cleanup_blocking(
            format!("drop test database {}", self.name),
            move || async move {
                let mut conn = MySqlConnection::connect(SERVER_URL).await.ok()?;
                sqlx::query(AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .ok()?;
                Some(())
            },
        );
    }
}
