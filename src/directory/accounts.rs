//! Account tables with a creation time: ejabberd (default schema and `new_sql_schema`),
//! MongooseIM, and the operator's custom statements. They share three statements with the same
//! arguments: exists (`$1` domain, `$2` username), count (`$1` domain, `$2` instant) and page
//! (`$1` domain, `$2` instant, `$3` last username, `$4` limit).

use crate::config::{COUNT_SQL, EXISTS_SQL, PAGE_SQL, PAGE_SQL_CURSOR, UsersSchema};
use crate::job::Snapshot;

use super::clock::Clock;
use super::open::END_OF_TIME;
use super::{Arg, Dialect, DirectoryError, Query, UsersPool};

#[derive(Debug)]
pub(super) struct Dated {
    checks: Vec<Check>,
    pub(super) exists: Query,
    /// `$1` domain, `$2 …` [`super::EXISTING_CHUNK`] usernames: those that are accounts
    /// (built-in schemas; the custom schema asks `exists` for each name).
    pub(super) existing: Option<Query>,
    count: Query,
    pub(super) page: Query,
    /// ejabberd's default schema holds the accounts of this one domain.
    only_domain: Option<String>,
    clock: Clock,
    /// The number of accounts created more than a minute after the database's current time,
    /// as this session renders it (built-in schemas only).
    future: Option<Query>,
}

/// A statement that must (or must not) run for the database to match the configured schema,
/// with what to tell the operator otherwise.
#[derive(Debug)]
struct Check {
    query: Query,
    args: Vec<Arg<'static>>,
    /// Whether the statement returns one integer (a count) instead of usernames.
    integer: bool,
    must_fail: bool,
    advice: String,
}

const EJABBERD_TABLE: &str = "check that users.url points at ejabberd's SQL database \
    (sql_database) and that its schema is loaded (/usr/share/ejabberd/sql/)";

impl Dated {
    /// The statements of a schema with creation times (any but Prosody).
    pub(super) fn new(schema: &UsersSchema, dialect: Dialect) -> Self {
        let run = |sql: &str, must_fail: bool, advice: String| Check {
            query: Query::new(sql, dialect),
            args: Vec::new(),
            integer: false,
            must_fail,
            advice,
        };
        let (host_column, checks, only_domain) = match schema {
            UsersSchema::Ejabberd { domain } => (
                None,
                vec![
                    run(
                        "SELECT username, created_at FROM users LIMIT 0",
                        false,
                        format!("ejabberd's table users cannot be read; {EJABBERD_TABLE}"),
                    ),
                    run(
                        "SELECT server_host FROM users LIMIT 0",
                        true,
                        "ejabberd's table users has a server_host column, so ejabberd runs \
                         with new_sql_schema: true; set users.schema = \"ejabberd_new\" and \
                         remove users.domain"
                            .into(),
                    ),
                ],
                Some(domain.clone()),
            ),
            UsersSchema::EjabberdNew => (
                Some("server_host"),
                vec![run(
                    "SELECT username, server_host, created_at FROM users LIMIT 0",
                    false,
                    format!(
                        "ejabberd's table users with a server_host column (new_sql_schema: true) \
                         cannot be read; if ejabberd uses its default schema, set \
                         users.schema = \"ejabberd\" and users.domain; otherwise {EJABBERD_TABLE}"
                    ),
                )],
                None,
            ),
            UsersSchema::MongooseIm => (
                Some("server"),
                vec![run(
                    "SELECT username, server, created_at FROM users LIMIT 0",
                    false,
                    "MongooseIM's table users (username, server, created_at: MongooseIM 5.0 or \
                     later) cannot be read; check that users.url points at MongooseIM's RDBMS \
                     database"
                        .into(),
                )],
                None,
            ),
            UsersSchema::Custom(custom) => {
                // Each statement runs once with harmless arguments, bound as in production: a
                // syntax error, a missing table or a parameter of the wrong type shows now.
                let exists: [Arg; EXISTS_SQL.parameters.len()] = [Arg::Text(""), Arg::Text("")];
                let count: [Arg; COUNT_SQL.parameters.len()] =
                    [Arg::Text(""), Arg::Text(END_OF_TIME)];
                let page: [Arg; PAGE_SQL.parameters.len()] = [
                    Arg::Text(""),
                    Arg::Text(END_OF_TIME),
                    Arg::Text(""),
                    Arg::Int(1),
                ];
                let harmless: [(&str, &str, Vec<Arg<'static>>); 3] = [
                    (EXISTS_SQL.key, &custom.exists, exists.to_vec()),
                    (COUNT_SQL.key, &custom.count, count.to_vec()),
                    (PAGE_SQL.key, &custom.page, page.to_vec()),
                ];
                let checks = harmless
                    .into_iter()
                    .map(|(key, sql, args)| Check {
                        query: Query::operator(sql, dialect),
                        integer: key != PAGE_SQL.key,
                        args,
                        must_fail: false,
                        advice: format!("{key} fails on the users database"),
                    })
                    .collect();
                return Dated {
                    checks,
                    exists: Query::operator(&custom.exists, dialect),
                    existing: None,
                    count: Query::operator(&custom.count, dialect),
                    page: Query::operator(&custom.page, dialect),
                    only_domain: None,
                    clock: Clock::new(dialect),
                    future: None,
                };
            }
            UsersSchema::Prosody => unreachable!("Prosody has no creation times"),
        };
        let host = host_column
            .map(|column| format!("{column} = $1 AND "))
            .unwrap_or_default();
        let at = match dialect {
            Dialect::Postgres => "CAST($2 AS timestamp)",
            Dialect::MySql => "CAST($2 AS DATETIME(6))",
            Dialect::Sqlite => "$2",
        };
        Dated {
            checks,
            exists: Query::new(
                &format!("SELECT COUNT(*) FROM users WHERE {host}username = $2"),
                dialect,
            ),
            existing: Some(Query::new(
                &format!(
                    "SELECT username FROM users WHERE {host}username IN ({})",
                    super::in_list()
                ),
                dialect,
            )),
            count: Query::new(
                &format!("SELECT COUNT(*) FROM users WHERE {host}created_at <= {at}"),
                dialect,
            ),
            page: Query::new(
                &format!(
                    "SELECT username FROM users WHERE {host}created_at <= {at} \
                     AND username > $3 ORDER BY username LIMIT $4"
                ),
                dialect,
            ),
            only_domain,
            clock: Clock::new(dialect),
            future: Some(Query::new(
                &format!(
                    "SELECT COUNT(*) FROM users WHERE created_at > {}",
                    match dialect {
                        Dialect::Postgres => "LOCALTIMESTAMP + interval '1 minute'",
                        Dialect::MySql => "NOW(6) + INTERVAL 1 MINUTE",
                        Dialect::Sqlite => "strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 minute')",
                    }
                ),
                dialect,
            )),
        }
    }

    pub(super) async fn check_layout(&self, pool: &UsersPool) -> Result<(), DirectoryError> {
        for check in &self.checks {
            let result = if check.integer {
                check.query.integer(pool, &check.args).await.map(drop)
            } else {
                check.query.strings(pool, &check.args).await.map(drop)
            };
            match (result, check.must_fail) {
                (Ok(()), false) | (Err(_), true) => {}
                (Err(err), false) => {
                    return Err(DirectoryError::Layout(format!("{} ({err})", check.advice)));
                }
                (Ok(()), true) => return Err(DirectoryError::Layout(check.advice.clone())),
            }
        }
        let future = self.accounts_from_the_future(pool).await?;
        if future > 0 {
            tracing::warn!(
                accounts = future,
                "accounts created more than a minute in the future of the users database's \
                 clock: created_at is written in another time zone than this session's; set \
                 users.time_zone to the zone of the server's database sessions, or accounts \
                 created just before a broadcast may miss it"
            );
        }
        Ok(())
    }

    /// How many accounts have a `created_at` more than a minute ahead of the database's
    /// current time in this session's zone: a sign of a wrong `users.time_zone`.
    pub(super) async fn accounts_from_the_future(
        &self,
        pool: &UsersPool,
    ) -> Result<i64, DirectoryError> {
        match &self.future {
            Some(query) => Ok(query.integer(pool, &[]).await?),
            None => Ok(0),
        }
    }

    /// Whether the database holds accounts of `domain` at all.
    pub(super) fn serves(&self, domain: &str) -> bool {
        self.only_domain
            .as_deref()
            .is_none_or(|only| only == domain)
    }

    pub(super) async fn has_accounts(
        &self,
        pool: &UsersPool,
        domain: &str,
    ) -> Result<bool, DirectoryError> {
        Ok(!self
            .page(pool, domain, END_OF_TIME, None, 1)
            .await?
            .is_empty())
    }

    pub(super) async fn snapshot(
        &self,
        pool: &UsersPool,
        domain: &str,
    ) -> Result<Snapshot, DirectoryError> {
        if !self.serves(domain) {
            return Ok(Snapshot::Listed(Vec::new()));
        }
        let at = self.clock.snapshot_instant(pool).await?;
        let args: [Arg; COUNT_SQL.parameters.len()] = [Arg::Text(domain), Arg::Text(&at)];
        let count = self.count.integer(pool, &args).await?;
        Ok(Snapshot::CreatedBy { at, count })
    }

    /// The current instant of the users database, once its clock has passed it.
    pub(super) async fn instant(&self, pool: &UsersPool) -> Result<String, DirectoryError> {
        self.clock.snapshot_instant(pool).await
    }

    /// The number of accounts of `domain` created up to `at`.
    pub(super) async fn count(
        &self,
        pool: &UsersPool,
        domain: &str,
        at: &str,
    ) -> Result<i64, DirectoryError> {
        if !self.serves(domain) {
            return Ok(0);
        }
        let args: [Arg; COUNT_SQL.parameters.len()] = [Arg::Text(domain), Arg::Text(at)];
        self.count.integer(pool, &args).await
    }

    pub(super) async fn page(
        &self,
        pool: &UsersPool,
        domain: &str,
        at: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, DirectoryError> {
        if !self.serves(domain) {
            return Ok(Vec::new());
        }
        let args: [Arg; PAGE_SQL.parameters.len()] = [
            Arg::Text(domain),
            Arg::Text(at),
            Arg::Text(after.unwrap_or("")),
            Arg::Int(i64::from(limit)),
        ];
        let page = self.page.strings(pool, &args).await?;
        // A page that holds the previous page's last username again does not advance: paging
        // on would send the same page forever.
        if let Some(after) = after.filter(|after| page.iter().any(|user| user == after)) {
            return Err(DirectoryError::Layout(format!(
                "the page after {after:?} contains {after:?} again: {} must return only \
                 usernames after ${}",
                PAGE_SQL.key, PAGE_SQL_CURSOR
            )));
        }
        Ok(page)
    }
}
