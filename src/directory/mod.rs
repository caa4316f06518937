//! The user directory: reads the accounts of a domain from the XMPP server's own SQL database
//! (PostgreSQL, MySQL/MariaDB or SQLite). It never writes.
//!
//! Each schema knows how to check that an account exists and how to fix a job's recipient set
//! when the job is created (design invariant 4):
//!
//! * Prosody keeps no creation time, so its snapshot is the list of usernames, read in one short
//!   query and stored with the job ([`Snapshot::Listed`]); the worker then never reads Prosody's
//!   database while sending.
//! * ejabberd, MongooseIM and custom schemas have `created_at`: the snapshot is an instant of
//!   the users database's own clock ([`Snapshot::CreatedBy`], see [`clock`]), and the worker
//!   pages `created_at <= instant AND username > cursor ORDER BY username` in that database.
//!   Nothing is copied, so a domain of a million accounts starts at once.
//!
//! Every statement is written with `$N` placeholders and rewritten for the dialect by
//! [`crate::placeholders::positional`].

mod accounts;
mod clock;
mod identity;
mod prosody;

pub use self::open::{Fixed, Measured, Measuring, OpenList};

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Connection as _};

use crate::config::{ConfigError, EXISTS_SQL, GROUP_MEMBERS_SQL, UsersConfig, UsersSchema};
use crate::database::{ConnectError, Target};
use crate::job::{Snapshot, UsersDatabase};
use crate::placeholders::positional;

use self::accounts::Dated;

/// The users database, as connection errors name it.
const USERS_DATABASE: &str = "the users database";
/// The config key of its URL.
const USERS_DATABASE_KEY: &str = "users.url";
/// How long a statement waits for a free connection of the pool.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Usernames a statement checks at once ([`Directory::existing`]): well below every dialect's
/// limit of bound parameters (SQLite's is 32,766).
const EXISTING_CHUNK: usize = 500;

/// `$2, $3, …`: the placeholders of the [`EXISTING_CHUNK`] usernames, after the domain's `$1`.
fn in_list() -> String {
    let placeholders: Vec<String> = (2..EXISTING_CHUNK + 2).map(|n| format!("${n}")).collect();
    placeholders.join(", ")
}

/// MySQL's error number for a time zone it does not know.
const MYSQL_UNKNOWN_TIME_ZONE: u16 = 1298;

/// A failure to read the server's accounts.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The users database cannot be reached: where, and why.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The `[users]` section is not valid (a hand-made [`UsersConfig`]; a loaded one was
    /// checked already).
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("users database: {0}")]
    Database(#[from] sqlx::Error),
    /// A statement has a placeholder for which it is given no argument.
    #[error(
        "users database: a statement has a placeholder ${number} but is given {given} argument(s)"
    )]
    Placeholder { number: usize, given: usize },
    /// The database does not look as `[users]` says: the message says what to fix.
    #[error("users database: {0}")]
    Layout(String),
}

/// The server's account database, read through the layout of its schema.
#[derive(Debug, Clone)]
pub struct Directory {
    layout: Arc<Layout>,
    pool: UsersPool,
    identity: UsersDatabase,
    /// The named groups, by domain and name: the statement listing each one's members.
    groups: Arc<BTreeMap<String, BTreeMap<String, Query>>>,
}

#[derive(Debug)]
enum Layout {
    Prosody(prosody::Prosody),
    Dated(Dated),
}

/// Runs the same expression on whichever pool the directory holds.
macro_rules! on_pool {
    ($pool:expr, $each:ident => $body:expr) => {
        match $pool {
            UsersPool::Postgres($each) => $body,
            UsersPool::MySql($each) => $body,
            UsersPool::Sqlite($each) => $body,
        }
    };
}

/// A connection pool to the server's database.
#[derive(Debug, Clone)]
enum UsersPool {
    Postgres(PgPool),
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

/// The SQL dialect of the users database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

impl UsersPool {
    fn dialect(&self) -> Dialect {
        match self {
            UsersPool::Postgres(_) => Dialect::Postgres,
            UsersPool::MySql(_) => Dialect::MySql,
            UsersPool::Sqlite(_) => Dialect::Sqlite,
        }
    }
}

/// An argument of a directory statement.
#[derive(Debug, Clone, Copy)]
enum Arg<'a> {
    Text(&'a str),
    Int(i64),
}

/// A statement rewritten for the dialect, with the arguments its placeholders take.
#[derive(Debug, Clone)]
struct Query {
    sql: Arc<str>,
    binds: Vec<usize>,
}

/// Binds `args` (from [`Query::arguments`]) in order.
macro_rules! bound {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for argument in $args {
            query = match argument {
                Arg::Text(text) => query.bind(text),
                Arg::Int(number) => query.bind(number),
            };
        }
        query
    }};
}

mod open;

impl Query {
    /// `sql` uses `$1 … $N`; on MySQL the identifiers it quotes with `"` get backquotes.
    fn new(sql: &str, dialect: Dialect) -> Self {
        let rewritten = match dialect {
            Dialect::MySql => positional(&sql.replace('"', "`"), true),
            Dialect::Postgres | Dialect::Sqlite => positional(sql, false),
        };
        Query {
            sql: rewritten.sql.into(),
            binds: rewritten.binds,
        }
    }

    /// An operator's statement: taken as written, apart from the placeholders.
    fn operator(sql: &str, dialect: Dialect) -> Self {
        let rewritten = positional(sql, dialect == Dialect::MySql);
        Query {
            sql: rewritten.sql.into(),
            binds: rewritten.binds,
        }
    }

    fn text(&self) -> AssertSqlSafe<Arc<str>> {
        AssertSqlSafe(self.sql.clone())
    }

    /// The arguments to bind, in the order of the statement's placeholders; an error (never a
    /// panic) for a placeholder beyond `args`.
    fn arguments<'a>(&self, args: &[Arg<'a>]) -> Result<Vec<Arg<'a>>, DirectoryError> {
        self.binds
            .iter()
            .map(|&index| {
                args.get(index).copied().ok_or(DirectoryError::Placeholder {
                    number: index.saturating_add(1),
                    given: args.len(),
                })
            })
            .collect()
    }

    /// The first column of every row, as text.
    async fn strings(
        &self,
        pool: &UsersPool,
        args: &[Arg<'_>],
    ) -> Result<Vec<String>, DirectoryError> {
        let args = self.arguments(args)?;
        Ok(on_pool!(pool, pool => {
            bound!(sqlx::query_scalar(self.text()), args).fetch_all(pool).await?
        }))
    }

    /// The first column of the one row, as an integer.
    async fn integer(&self, pool: &UsersPool, args: &[Arg<'_>]) -> Result<i64, DirectoryError> {
        let args = self.arguments(args)?;
        Ok(on_pool!(pool, pool => {
            bound!(sqlx::query_scalar(self.text()), args).fetch_one(pool).await?
        }))
    }

    /// The first row, as (text, integer).
    async fn text_and_integer(
        &self,
        pool: &UsersPool,
        args: &[Arg<'_>],
    ) -> Result<(String, i64), DirectoryError> {
        let args = self.arguments(args)?;
        Ok(on_pool!(pool, pool => {
            bound!(sqlx::query_as(self.text()), args).fetch_one(pool).await?
        }))
    }
}

impl Directory {
    /// Connects to the users database and checks that the schema's tables are there (and, for
    /// `custom`, that the statements prepare), so that a wrong setting is reported at start-up
    /// instead of at the first broadcast.
    pub async fn connect(config: &UsersConfig) -> Result<Self, DirectoryError> {
        if let UsersSchema::Custom(custom) = &config.schema {
            custom.check()?;
        }
        let pool = connect_pool(config).await?;
        let layout = match &config.schema {
            UsersSchema::Prosody => Layout::Prosody(prosody::Prosody::new(pool.dialect())),
            schema => Layout::Dated(Dated::new(schema, pool.dialect())),
        };
        let identity = identity::read(&pool, config).await?;
        let groups = config
            .groups
            .iter()
            .map(|(domain, groups)| {
                let queries = groups
                    .iter()
                    .map(|(name, sql)| (name.clone(), Query::operator(sql, pool.dialect())))
                    .collect();
                (domain.clone(), queries)
            })
            .collect();
        let directory = Directory {
            layout: Arc::new(layout),
            pool,
            identity,
            groups: Arc::new(groups),
        };
        match &*directory.layout {
            Layout::Prosody(prosody) => prosody.check_layout(&directory.pool).await?,
            Layout::Dated(dated) => dated.check_layout(&directory.pool).await?,
        }
        directory.check_groups(config).await?;
        Ok(directory)
    }

    /// What identifies the database this directory reads: recorded with every job, so that
    /// only an instance reading the same database runs it.
    pub fn identity(&self) -> &UsersDatabase {
        &self.identity
    }

    /// Logs a warning for every domain with no account at all: usually a wrong `[domains]`
    /// entry or a `users.url` that points at another server's database.
    pub async fn warn_about_empty_domains(&self, domains: &[String]) -> Result<(), DirectoryError> {
        for domain in domains {
            let empty = match &*self.layout {
                Layout::Prosody(prosody) => !prosody.has_accounts(&self.pool, domain).await?,
                Layout::Dated(dated) => !dated.has_accounts(&self.pool, domain).await?,
            };
            if empty {
                tracing::warn!(
                    domain,
                    "the users database has no account of this domain; check [domains] and users.url"
                );
            }
        }
        Ok(())
    }

    /// Whether `username@domain` is a stored account.
    pub async fn user_exists(&self, domain: &str, username: &str) -> Result<bool, DirectoryError> {
        let exists = match &*self.layout {
            Layout::Prosody(prosody) => &prosody.exists,
            Layout::Dated(dated) if dated.serves(domain) => &dated.exists,
            Layout::Dated(_) => return Ok(false),
        };
        let args: [Arg; EXISTS_SQL.parameters.len()] = [Arg::Text(domain), Arg::Text(username)];
        Ok(exists.integer(&self.pool, &args).await? > 0)
    }

    /// The accounts of `domain` among `usernames` (distinct, in byte order), in byte order:
    /// a few statements of [`EXISTING_CHUNK`] names each, or (custom schema) one `exists_sql`
    /// per name. A name is an account only if the database returns it as written: a
    /// case-insensitive collation's other spelling of it is not taken for it.
    pub async fn existing(
        &self,
        domain: &str,
        usernames: &[String],
    ) -> Result<Vec<String>, DirectoryError> {
        let in_list = match &*self.layout {
            Layout::Prosody(prosody) => Some(&prosody.existing),
            Layout::Dated(dated) if !dated.serves(domain) => return Ok(Vec::new()),
            Layout::Dated(dated) => dated.existing.as_ref(),
        };
        let mut found = Vec::new();
        match in_list {
            Some(query) => {
                for chunk in usernames.chunks(EXISTING_CHUNK) {
                    // The last chunk repeats its first name to fill the statement's list.
                    let mut args = Vec::with_capacity(EXISTING_CHUNK + 1);
                    args.push(Arg::Text(domain));
                    args.extend(chunk.iter().map(|name| Arg::Text(name)));
                    args.resize(EXISTING_CHUNK + 1, Arg::Text(&chunk[0]));
                    found.extend(query.strings(&self.pool, &args).await?);
                }
            }
            None => {
                for name in usernames {
                    if self.user_exists(domain, name).await? {
                        found.push(name.clone());
                    }
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        found.retain(|name| usernames.binary_search(name).is_ok());
        Ok(found)
    }

    /// The members of `domain`'s group `group`, in byte order, read in one statement (so the
    /// list is what the database held at one instant); `None` if the domain has no such group.
    pub async fn group_members(
        &self,
        domain: &str,
        group: &str,
    ) -> Result<Option<Vec<String>>, DirectoryError> {
        let Some(query) = self.groups.get(domain).and_then(|groups| groups.get(group)) else {
            return Ok(None);
        };
        let mut members = query.strings(&self.pool, &[Arg::Text(domain)]).await?;
        members.sort_unstable();
        members.dedup();
        Ok(Some(members))
    }

    /// The names of `domain`'s groups.
    pub fn groups(&self, domain: &str) -> Vec<String> {
        self.groups
            .get(domain)
            .map(|groups| groups.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Runs each group's statement with nothing to return, so that a syntax error or a
    /// missing table is reported at start-up, naming its key.
    async fn check_groups(&self, config: &UsersConfig) -> Result<(), DirectoryError> {
        for (domain, groups) in &config.groups {
            for (name, sql) in groups {
                let probe = format!("SELECT * FROM ({sql}) xb_group_probe LIMIT 0");
                let query = Query::operator(&probe, self.pool.dialect());
                if let Err(err) = query.strings(&self.pool, &[Arg::Text(domain)]).await {
                    return Err(DirectoryError::Layout(format!(
                        "domains.\"{domain}\".groups.\"{name}\".{} fails on the users database ({err})",
                        GROUP_MEMBERS_SQL.key
                    )));
                }
            }
        }
        Ok(())
    }

    /// Fixes the recipients of a new job of `domain`: its usernames now, in byte order
    /// (Prosody), or the current instant of the users database and the number of accounts
    /// created up to it.
    pub async fn snapshot(&self, domain: &str) -> Result<Snapshot, DirectoryError> {
        match &*self.layout {
            Layout::Prosody(prosody) => {
                let mut users = prosody.usernames(&self.pool, domain).await?;
                users.sort_unstable();
                users.dedup();
                Ok(Snapshot::Listed(users))
            }
            Layout::Dated(dated) => dated.snapshot(&self.pool, domain).await,
        }
    }

    /// The recipients of a job created now: [`Directory::snapshot`], except that a server's
    /// SQLite file is read at creation only, in one go, and listed with the job. Paging it while
    /// the server stores offline messages in it makes the server's own writes fail ("database
    /// is locked"), losing messages.
    pub async fn recipients_for_new_job(&self, domain: &str) -> Result<Snapshot, DirectoryError> {
        match (&self.pool, self.snapshot(domain).await?) {
            (UsersPool::Sqlite(_), Snapshot::CreatedBy { at, .. }) => {
                let mut users: Vec<String> = Vec::new();
                loop {
                    let after = users.last().map(String::as_str);
                    let page = self.page(domain, &at, after, 10_000).await?;
                    if page.is_empty() {
                        break;
                    }
                    users.extend(page);
                }
                Ok(Snapshot::Listed(users))
            }
            (_, snapshot) => Ok(snapshot),
        }
    }

    /// The next `limit` accounts of `domain` created at or before `at` (a
    /// [`Snapshot::CreatedBy`] instant), after the username `after`, in the database's order.
    pub async fn page(
        &self,
        domain: &str,
        at: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, DirectoryError> {
        match &*self.layout {
            Layout::Prosody(_) => Err(DirectoryError::Layout(
                "Prosody keeps no creation times: its jobs list their recipients".into(),
            )),
            Layout::Dated(dated) => dated.page(&self.pool, domain, at, after, limit).await,
        }
    }
}

/// Opens the users database: read only where the driver allows, with sessions in the
/// configured time zone. One direct connection comes first, so that an unreachable database or
/// an unknown zone is reported at once with its cause (the pool would only time out).
async fn connect_pool(config: &UsersConfig) -> Result<UsersPool, DirectoryError> {
    let url = config.url.expose();
    let target = Target::new(USERS_DATABASE, USERS_DATABASE_KEY);
    let zone = config.time_zone.clone();
    let bad_zone = |err: sqlx::Error| {
        DirectoryError::Layout(format!(
            "users.time_zone = {:?} is not accepted by the users database ({err})",
            zone.as_deref().unwrap_or_default()
        ))
    };
    if url.starts_with("sqlite:") {
        // Read only, and no connection kept open between reads: the server owns this file.
        // SQLite's CURRENT_TIMESTAMP is UTC; users.time_zone does not apply.
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|err| target.driver_error(err))?
            .read_only(true)
            .busy_timeout(Duration::from_secs(5));
        let target = target.sqlite(&options);
        target.sqlite_directory(&options)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(Duration::from_secs(1))
            .connect_with(options)
            .await
            .map_err(|err| target.driver_error(err))?;
        Ok(UsersPool::Sqlite(pool))
    } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
        let zone = config.time_zone.clone().unwrap_or_else(|| "+00:00".into());
        let options = MySqlConnectOptions::from_str(url)
            .map_err(|err| target.driver_error(err))?
            .timezone(Some(zone))
            .charset("utf8mb4");
        let target = target.mysql(&options);
        match target.connect(&options).await {
            Ok(conn) => conn.close().await?,
            Err(ConnectError {
                cause: crate::database::Cause::Driver(sqlx::Error::Database(err)),
                ..
            }) if err
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .is_some_and(|err| err.number() == MYSQL_UNKNOWN_TIME_ZONE) =>
            {
                return Err(bad_zone(sqlx::Error::Database(err)));
            }
            Err(err) => return Err(err.into()),
        }
        let pool = MySqlPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|err| target.driver_error(err))?;
        Ok(UsersPool::MySql(pool))
    } else {
        // sqlx starts every PostgreSQL session in UTC; `timestamp` columns are compared in the
        // zone the server's own sessions write them in.
        let zone: Arc<str> = config.time_zone.as_deref().unwrap_or("UTC").into();
        let options = PgConnectOptions::from_str(url).map_err(|err| target.driver_error(err))?;
        let target = target.postgres(&options);
        let mut conn = target.connect(&options).await?;
        sqlx::query("SELECT set_config('TimeZone', $1, false)")
            .bind(&*zone)
            .execute(&mut conn)
            .await
            .map_err(bad_zone)?;
        conn.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _| {
                let zone = zone.clone();
                Box::pin(async move {
                    sqlx::query("SELECT set_config('TimeZone', $1, false)")
                        .bind(&*zone)
                        .execute(conn)
                        .await
                        .map(drop)
                })
            })
            .connect_with(options)
            .await
            .map_err(|err| target.driver_error(err))?;
        Ok(UsersPool::Postgres(pool))
    }
}

#[cfg(test)]
mod tests;
