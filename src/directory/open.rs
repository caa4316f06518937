//! A new job's recipients fixed in the users database at the request, counted after the
//! answer (design invariant 4a).
//!
//! Counting a domain of millions of accounts, or listing them, takes seconds; the request only
//! fixes the set and checks that it is not empty, and the job's worker counts (and lists) it:
//!
//! * On a dated schema read through PostgreSQL or MySQL/MariaDB, the set is every account
//!   created up to an instant of the database's clock ([`Fixed::CreatedBy`]); counting it later
//!   gives the same number.
//! * Where the set must be listed (Prosody, which keeps no creation time, and any SQLite file,
//!   which is never paged while sending), it is what one read-only transaction sees
//!   ([`Fixed::Listed`]): REPEATABLE READ on PostgreSQL, a consistent snapshot on MySQL/MariaDB
//!   (both fixed by the request's first read, the check that the domain has an account), a
//!   deferred read transaction on SQLite. An account registered after that first read is not in
//!   it, one registered before is. The worker reads the names in one statement
//!   ([`OpenList::read`]) and closes the transaction at once, so that a server's SQLite file is
//!   read once and briefly, as before (invariant 4).
//!
//! The transaction holds its own connection of the directory's pool, closed when the list is
//! read or dropped, never returned to the pool inside a transaction.

use futures::TryStreamExt as _;
use sqlx::pool::PoolConnection;
use sqlx::{MySql, Postgres, Sqlite};

use crate::job::Usernames;

use super::{Arg, Directory, DirectoryError, Layout, Query, UsersPool};

/// A snapshot instant later than any account: the whole set an open transaction sees.
pub(super) const END_OF_TIME: &str = "9999-12-31 23:59:59";

/// A new job's recipients, fixed but not yet counted.
pub enum Fixed {
    /// The accounts created up to `at` (in the users database's own clock and rendering):
    /// counted with [`Directory::count`], paged while sending.
    CreatedBy { at: String },
    /// The accounts an open read-only transaction sees, listed with [`OpenList::read`].
    Listed(OpenList),
}

/// A fixed set, listed or counted ([`Fixed::measure`]).
pub enum Measured {
    /// The names of a [`Fixed::Listed`] set, in no particular order.
    Listed(Usernames),
    /// The size of a [`Fixed::CreatedBy`] set.
    Counted(i64),
}

/// The measure of a fixed set, finished or still running in a task of its own: the request
/// that fixed the set starts it and hands it to the job's worker if it outlasts the wait.
pub enum Measuring {
    Done(Result<Measured, DirectoryError>),
    Running(tokio::task::JoinHandle<Result<Measured, DirectoryError>>),
}

impl Measuring {
    /// The measure, once finished; `None` if its task ended without one (it panicked).
    pub async fn result(self) -> Option<Result<Measured, DirectoryError>> {
        match self {
            Measuring::Done(result) => Some(result),
            Measuring::Running(task) => task.await.ok(),
        }
    }
}

impl Fixed {
    /// Lists or counts the set, ending a listed set's transaction.
    pub async fn measure(
        self,
        directory: &Directory,
        domain: &str,
    ) -> Result<Measured, DirectoryError> {
        match self {
            Fixed::Listed(list) => list.read().await.map(Measured::Listed),
            Fixed::CreatedBy { at } => directory.count(domain, &at).await.map(Measured::Counted),
        }
    }
}

/// A read-only transaction of the users database that has fixed a domain's accounts.
pub struct OpenList {
    read: OpenRead,
    /// Every username of the domain: `$1` domain, and for a dated schema's page statement
    /// `$2` [`END_OF_TIME`], `$3` no cursor, `$4` no limit.
    names: Query,
    domain: String,
}

/// The connection holding the transaction.
enum OpenRead {
    Postgres(PoolConnection<Postgres>),
    MySql(PoolConnection<MySql>),
    Sqlite(PoolConnection<Sqlite>),
}

/// Runs the same expression on whichever connection an [`OpenRead`] holds.
macro_rules! on_read {
    ($read:expr, $($each:ident)+ => $body:expr) => {
        match $read {
            OpenRead::Postgres($($each)+) => $body,
            OpenRead::MySql($($each)+) => $body,
            OpenRead::Sqlite($($each)+) => $body,
        }
    };
}

/// The arguments of [`OpenList::names`] and of the first-account check.
fn arguments(domain: &str, limit: i64) -> [Arg<'_>; 4] {
    [
        Arg::Text(domain),
        Arg::Text(END_OF_TIME),
        Arg::Text(""),
        Arg::Int(limit),
    ]
}

impl OpenRead {
    /// A connection of `pool` in a read-only transaction whose snapshot the next read fixes
    /// (MySQL/MariaDB: fixed at once).
    async fn begin(pool: &UsersPool) -> Result<Self, DirectoryError> {
        // A connection left inside the transaction (an error, a dropped list) is closed, never
        // handed to another caller.
        Ok(match pool {
            UsersPool::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                conn.close_on_drop();
                sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *conn)
                    .await?;
                OpenRead::Postgres(conn)
            }
            UsersPool::MySql(pool) => {
                let mut conn = pool.acquire().await?;
                conn.close_on_drop();
                sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .execute(&mut *conn)
                    .await?;
                sqlx::raw_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                    .execute(&mut *conn)
                    .await?;
                OpenRead::MySql(conn)
            }
            UsersPool::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                conn.close_on_drop();
                sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
                OpenRead::Sqlite(conn)
            }
        })
    }

    /// The first column of each row of `query`, streamed into `names`.
    async fn collect(
        &mut self,
        query: &Query,
        args: &[Arg<'_>],
        names: &mut Usernames,
    ) -> Result<(), DirectoryError> {
        let args = query.arguments(args)?;
        on_read!(self, conn => {
            let mut rows = bound!(sqlx::query_scalar::<_, String>(query.text()), args)
                .fetch(&mut **conn);
            while let Some(name) = rows.try_next().await? {
                // An account's rows come together: a repeat of the last name is dropped at
                // once (any other repeat when the names are sorted).
                if names.last() != Some(name.as_str()) {
                    names.push(&name);
                }
            }
        });
        Ok(())
    }

    /// Ends the transaction (it wrote nothing) and closes the connection.
    async fn end(self) -> Result<(), DirectoryError> {
        on_read!(self, mut conn => {
            sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
            conn.close().await?;
        });
        Ok(())
    }
}

impl OpenList {
    /// The usernames the transaction sees, in no particular order (each once after
    /// [`Usernames::sorted`]); the transaction ends.
    pub async fn read(mut self) -> Result<Usernames, DirectoryError> {
        let mut names = Usernames::new();
        self.read
            .collect(&self.names, &arguments(&self.domain, i64::MAX), &mut names)
            .await?;
        self.read.end().await?;
        Ok(names)
    }
}

impl Directory {
    /// Fixes the recipients of a job of `domain` created now, without counting them
    /// (invariant 4a); `None` if the domain has no account.
    pub async fn fix(&self, domain: &str) -> Result<Option<Fixed>, DirectoryError> {
        match (&*self.layout, &self.pool) {
            (Layout::Dated(_), UsersPool::Sqlite(_)) | (Layout::Prosody(_), _) => {
                Ok(self.open_list(domain).await?.map(Fixed::Listed))
            }
            (Layout::Dated(dated), pool) => {
                if !dated.serves(domain) {
                    return Ok(None);
                }
                let at = dated.instant(pool).await?;
                let first = dated.page(pool, domain, &at, None, 1).await?;
                Ok((!first.is_empty()).then_some(Fixed::CreatedBy { at }))
            }
        }
    }

    /// Opens a read-only transaction that fixes the accounts of `domain` for
    /// [`OpenList::read`]; `None` if it sees no account.
    pub async fn open_list(&self, domain: &str) -> Result<Option<OpenList>, DirectoryError> {
        let (names, first) = match &*self.layout {
            Layout::Prosody(prosody) => (prosody.listing.clone(), &prosody.any),
            Layout::Dated(dated) => {
                if !dated.serves(domain) {
                    return Ok(None);
                }
                (dated.page.clone(), &dated.page)
            }
        };
        let mut read = OpenRead::begin(&self.pool).await?;
        let mut found = Usernames::new();
        read.collect(first, &arguments(domain, 1), &mut found)
            .await?;
        if found.is_empty() {
            read.end().await?;
            return Ok(None);
        }
        Ok(Some(OpenList {
            read,
            names,
            domain: domain.to_owned(),
        }))
    }

    /// The number of accounts of `domain` created up to `at` (a [`Fixed::CreatedBy`] instant).
    pub async fn count(&self, domain: &str, at: &str) -> Result<i64, DirectoryError> {
        match &*self.layout {
            Layout::Dated(dated) => dated.count(&self.pool, domain, at).await,
            Layout::Prosody(_) => Err(DirectoryError::Layout(
                "Prosody keeps no creation times: its jobs list their recipients".into(),
            )),
        }
    }
}
