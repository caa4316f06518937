//! Prosody's `mod_storage_sql` layout: one key-value table `prosody(host, user, store, key,
//! type, value)`; an account is the set of rows with `store = 'accounts'`. No creation time.

use super::{Arg, Dialect, DirectoryError, Query, UsersPool};

#[derive(Debug)]
pub(super) struct Prosody {
    check: Query,
    pub(super) exists: Query,
    pub(super) usernames: Query,
    /// Every row's username, for a list read in one go ([`super::OpenList`]): on MySQL/MariaDB
    /// without `DISTINCT`, whose temporary table over a `TEXT` column took 13.8 s for a million
    /// accounts (4 rows each) against 3.0 s for the plain scan; the repeats of an account's
    /// rows are dropped while reading and sorting ([`crate::job::Usernames`]).
    pub(super) listing: Query,
    pub(super) any: Query,
    /// `$1` domain, `$2 …` [`super::EXISTING_CHUNK`] usernames: those that are accounts.
    pub(super) existing: Query,
}

impl Prosody {
    pub(super) fn new(dialect: Dialect) -> Self {
        Prosody {
            check: Query::new(
                r#"SELECT "host", "user", "store" FROM "prosody" LIMIT 0"#,
                dialect,
            ),
            exists: Query::new(
                r#"SELECT COUNT(*) FROM "prosody"
                   WHERE "host" = $1 AND "user" = $2 AND "store" = 'accounts'"#,
                dialect,
            ),
            any: Query::new(
                r#"SELECT "user" FROM "prosody" WHERE "host" = $1 AND "store" = 'accounts' LIMIT 1"#,
                dialect,
            ),
            usernames: Query::new(
                r#"SELECT DISTINCT "user" FROM "prosody" WHERE "host" = $1 AND "store" = 'accounts'"#,
                dialect,
            ),
            listing: Query::new(
                match dialect {
                    Dialect::MySql => {
                        r#"SELECT "user" FROM "prosody" WHERE "host" = $1 AND "store" = 'accounts'"#
                    }
                    Dialect::Postgres | Dialect::Sqlite => {
                        r#"SELECT DISTINCT "user" FROM "prosody" WHERE "host" = $1 AND "store" = 'accounts'"#
                    }
                },
                dialect,
            ),
            existing: Query::new(
                &format!(
                    r#"SELECT DISTINCT "user" FROM "prosody" WHERE "host" = $1 AND "store" = 'accounts' AND "user" IN ({})"#,
                    super::in_list()
                ),
                dialect,
            ),
        }
    }

    pub(super) async fn check_layout(&self, pool: &UsersPool) -> Result<(), DirectoryError> {
        self.check
            .strings(pool, &[])
            .await
            .map(drop)
            .map_err(|err| {
                DirectoryError::Layout(format!(
                    "the table \"prosody\" of Prosody's SQL storage cannot be read ({err}); check \
                 that users.url points at the database Prosody uses with storage = \"sql\""
                ))
            })
    }

    /// Every username of `domain`, in no particular order.
    pub(super) async fn usernames(
        &self,
        pool: &UsersPool,
        domain: &str,
    ) -> Result<Vec<String>, DirectoryError> {
        self.usernames.strings(pool, &[Arg::Text(domain)]).await
    }

    /// Whether `domain` has at least one account (one short read).
    pub(super) async fn has_accounts(
        &self,
        pool: &UsersPool,
        domain: &str,
    ) -> Result<bool, DirectoryError> {
        Ok(!self
            .any
            .strings(pool, &[Arg::Text(domain)])
            .await?
            .is_empty())
    }
}
