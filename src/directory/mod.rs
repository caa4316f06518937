//! The user directory: reads the accounts of a domain from the XMPP server's own SQL database.
//!
//! It never writes. Each schema knows how to check that an account exists and how to take the
//! recipient snapshot of a domain (design invariant 4). Prosody keeps no creation time, so its
//! snapshot is the list of usernames, read in one short query when a job is created and then
//! materialised in the job store; the worker never reads the server's database while sending.

mod prosody;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use crate::broadcast::Snapshot;
use crate::config::{UsersConfig, UsersSchema};

/// A failure to read the server's accounts.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("users database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("users database: {0}")]
    Layout(String),
}

/// The server's account database, read through the layout of its schema.
#[derive(Debug, Clone)]
pub struct Directory {
    schema: UsersSchema,
    pool: UsersPool,
}

/// Runs the same expression on whichever pool the directory holds.
macro_rules! on_pool {
    ($pool:expr, $each:ident => $body:expr) => {
        match $pool {
            UsersPool::Postgres($each) => $body,
            UsersPool::Sqlite($each) => $body,
        }
    };
}
use on_pool;

/// A connection pool to the server's database.
#[derive(Debug, Clone)]
enum UsersPool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Directory {
    /// Connects to the users database and checks that the schema's tables are there, so that a
    /// wrong setting is reported at start-up instead of at the first broadcast.
    pub async fn connect(config: &UsersConfig) -> Result<Self, DirectoryError> {
        let url = config.url.expose();
        let pool = if url.starts_with("sqlite:") {
            // Read only, and no connection kept open between reads: the server owns this file.
            let options = SqliteConnectOptions::from_str(url)?
                .read_only(true)
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .idle_timeout(Duration::from_secs(1))
                .connect_with(options)
                .await?;
            UsersPool::Sqlite(pool)
        } else {
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            UsersPool::Postgres(pool)
        };
        let directory = Directory {
            schema: config.schema,
            pool,
        };
        directory.check_layout().await?;
        Ok(directory)
    }

    async fn check_layout(&self) -> Result<(), DirectoryError> {
        match self.schema {
            UsersSchema::Prosody => prosody::check_layout(&self.pool).await,
        }
    }

    /// Whether `username@domain` is a stored account.
    pub async fn user_exists(&self, domain: &str, username: &str) -> Result<bool, DirectoryError> {
        match self.schema {
            UsersSchema::Prosody => prosody::user_exists(&self.pool, domain, username).await,
        }
    }

    /// Every username of `domain` at this moment, in byte order.
    pub async fn snapshot(&self, domain: &str) -> Result<Snapshot, DirectoryError> {
        let mut users = match self.schema {
            UsersSchema::Prosody => prosody::usernames(&self.pool, domain).await?,
        };
        users.sort_unstable();
        users.dedup();
        Ok(Snapshot::Listed(users))
    }
}
