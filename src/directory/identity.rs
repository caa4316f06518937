//! What identifies the users database, so that a job records the database its recipients were
//! fixed against and only an instance reading the same database runs it (design invariant 7a).
//!
//! The identity is the schema it is read with and the database as the database itself names
//! it, so that instances reaching one database under other host names agree, and instances
//! reading other databases never do:
//!
//! * PostgreSQL: the cluster's system identifier (made by `initdb`, kept by physical replicas)
//!   and the database's name: `mongooseim@postgresql:7713883130832554123/users`;
//! * MySQL/MariaDB: the server's host name, port and database: `ejabberd_new@mysql:db1:3306/ejabberd`;
//! * SQLite: this machine (its `/etc/machine-id`, or its host name) and the file's absolute
//!   path: a server's SQLite file is only ever shared on one machine.
//!
//! `users.database_id` replaces it where the database's own name does not fit (a MySQL
//! failover to another host, say).

use std::path::PathBuf;
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;

use super::{DirectoryError, UsersPool};
use crate::config::UsersConfig;
use crate::job::UsersDatabase;

/// Where this machine's identity is read, in order; the first readable one counts.
const MACHINE_ID_FILES: [&str; 2] = ["/etc/machine-id", "/proc/sys/kernel/hostname"];

/// The identity of the users database `pool` reads, as `config` reads it.
pub(super) async fn read(
    pool: &UsersPool,
    config: &UsersConfig,
) -> Result<UsersDatabase, DirectoryError> {
    if let Some(id) = &config.database_id {
        return Ok(UsersDatabase::new(id.clone()));
    }
    let place = match pool {
        UsersPool::Postgres(pool) => {
            let (system, database): (i64, String) = sqlx::query_as(
                "SELECT system_identifier, current_database() FROM pg_control_system()",
            )
            .fetch_one(pool)
            .await
            .map_err(unreadable)?;
            format!("postgresql:{system}/{database}")
        }
        UsersPool::MySql(pool) => {
            let (host, port, database): (String, i64, Option<String>) =
                sqlx::query_as("SELECT @@hostname, CAST(@@port AS SIGNED), DATABASE()")
                    .fetch_one(pool)
                    .await
                    .map_err(unreadable)?;
            format!("mysql:{host}:{port}/{}", database.unwrap_or_default())
        }
        UsersPool::Sqlite(_) => {
            let file = SqliteConnectOptions::from_str(config.url.expose())
                .map(|options| options.get_filename().to_owned())
                .unwrap_or_default();
            let file: PathBuf = std::fs::canonicalize(&file).unwrap_or(file);
            format!("sqlite:{}:{}", machine(), file.display())
        }
    };
    Ok(UsersDatabase::new(format!(
        "{}@{place}",
        config.schema.name()
    )))
}

/// A database that does not say what it is: the operator names it instead.
fn unreadable(err: sqlx::Error) -> DirectoryError {
    DirectoryError::Layout(format!(
        "cannot read what identifies the database ({err}); name it with users.database_id"
    ))
}

/// This machine's identity: its machine id, or its host name.
fn machine() -> String {
    MACHINE_ID_FILES
        .iter()
        .find_map(|file| {
            let text = std::fs::read_to_string(file).ok()?;
            let id = text.trim();
            (!id.is_empty()).then(|| id.to_owned())
        })
        .unwrap_or_else(|| "unknown-machine".to_owned())
}
