//! Throw-away databases for the unit tests: a fresh PostgreSQL database on 127.0.0.1:5432
//! (override the server with `XB_TEST_POSTGRES`) or MySQL/MariaDB database on 127.0.0.1:3306 as
//! root (override with `XB_TEST_MYSQL`), dropped by the test when it is done.

/// A database created for one test on a shared server.
pub(crate) struct Scratch {
    /// The server URL without a database.
    pub server: String,
    pub name: String,
}

impl Scratch {
    fn new(server_var: &str, default: &str, prefix: &str) -> Self {
        let server = std::env::var(server_var).unwrap_or_else(|_| default.to_owned());
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        Scratch { server, name }
    }

    /// A fresh PostgreSQL database.
    pub async fn postgres(prefix: &str) -> Self {
        let scratch = Scratch::new(
            "XB_TEST_POSTGRES",
            "postgres://postgres@127.0.0.1:5432",
            prefix,
        );
        scratch
            .execute_on_server(&format!("CREATE DATABASE {}", scratch.name))
            .await;
        scratch
    }

    /// A fresh MySQL/MariaDB database (utf8mb4).
    pub async fn mysql(prefix: &str) -> Self {
        let scratch = Scratch::new("XB_TEST_MYSQL", "mysql://root@127.0.0.1:3306", prefix);
        let create = format!("CREATE DATABASE {} CHARACTER SET utf8mb4", scratch.name);
        scratch.execute_on_server(&create).await;
        scratch
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    pub fn is_mysql(&self) -> bool {
        self.server.starts_with("mysql:")
    }

    async fn execute_on_server(&self, statement: &str) {
        let statement = sqlx::AssertSqlSafe(statement.to_owned());
        if self.is_mysql() {
            let admin = sqlx::MySqlPool::connect(&self.server)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "MySQL/MariaDB at {} ({e}): `bash .ci/run` starts it",
                        self.server
                    )
                });
            sqlx::query(statement).execute(&admin).await.unwrap();
            admin.close().await;
        } else {
            let admin = sqlx::PgPool::connect(&format!("{}/postgres", self.server))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL at {} ({e}): `bash .ci/run` starts it",
                        self.server
                    )
                });
            sqlx::query(statement).execute(&admin).await.unwrap();
            admin.close().await;
        }
    }

    /// Drops the database (closing its other connections first on PostgreSQL).
    pub async fn drop_database(self) {
        if self.is_mysql() {
            self.execute_on_server(&format!("DROP DATABASE {}", self.name))
                .await;
        } else {
            self.execute_on_server(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
                .await;
        }
    }
}
