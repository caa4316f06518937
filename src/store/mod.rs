//! The job store: jobs, leases, progress and recipient snapshots in our own tables (`xb_*`).
//!
//! This is the only module that speaks SQL to the job database. One [`Store`] serves every
//! dialect (PostgreSQL, MySQL/MariaDB, SQLite): the statements are written once with `$N`
//! placeholders, and only the clock, lease arithmetic and JSON expansion differ, in [`sql`];
//! MySQL's `?` placeholders are derived from the same text. All times come from the database,
//! never from this process (design invariant 1); MySQL sessions run in UTC.
//!
//! Rows read back are checked where they become [`Job`]s: a value that cannot be shown (an id
//! beyond [`MAX_JOB_ID`], an unknown state, a negative count, a value that does not decode) is
//! an [`InvalidRow`] naming the job and the column, never clamped.

mod sql;
#[cfg(test)]
mod tests;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Connection as _;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::job::{
    Amends, ExecutionState, Hold, Idempotency, InvalidRow, Job, JobId, JobKind, JobSpec, Lease,
    MAX_JOB_ID, RecipientGroup, RowProblem, Snapshot, Translation, Unknown, Usernames,
    UsersDatabase, audience,
};

use crate::database::{ConnectError, Target};

use self::sql::Statements;

/// The job database, as connection errors name it.
const JOB_DATABASE: &str = "the job database";
/// The config key of its URL.
const JOB_DATABASE_KEY: &str = "database.url";
/// How long a statement waits for a free connection of the pool.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
// The pools of PostgreSQL and MySQL do not ping a connection before each use (sqlx's
// `test_before_acquire`): a round trip per statement, most of what an idle instance would
// send. sqlx still pings each connection when it is given back, and closes one that fails, so
// a connection broken while idle (the server restarted) fails one statement, which its caller
// retries like any failure of the database.

/// The job database's SQLite options (WAL, foreign keys, busy timeout), without creating it.
fn sqlite_options(url: &str, target: &Target) -> Result<SqliteConnectOptions, ConnectError> {
    Ok(SqliteConnectOptions::from_str(url)
        .map_err(|err| target.driver_error(err))?
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10)))
}

/// The owner of a lease that no instance holds ([`Store::disown_lease`]): never a node name,
/// which may not be blank. Read back as no owner.
const NO_OWNER: &str = "";

/// The columns of a new job.
struct NewJob<'a> {
    spec: &'a JobSpec,
    recipient_count: i64,
    snapshot_at: Option<&'a str>,
    users_database: Option<&'a UsersDatabase>,
    kind: JobKind,
    amends: Option<Amends>,
    /// The request's idempotency key and fingerprint, if it came with one.
    idempotency: Option<&'a Idempotency>,
    /// For a scheduled job: when it starts.
    start_at: Option<DateTime<Utc>>,
    /// For a list: the names that were not accounts.
    unknown: Option<&'a Unknown>,
    /// Whether `recipient_count` is the number of recipients (invariant 4a).
    counted: bool,
}

/// What a create call did: created the job, or found the one created first with the same
/// idempotency key and arguments (design invariant 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New(JobId),
    Existing(JobId),
}

impl Created {
    /// The job's id, new or not.
    pub fn id(self) -> JobId {
        match self {
            Created::New(id) | Created::Existing(id) => id,
        }
    }
}

/// What a request's idempotency key finds ([`Store::job_by_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMatch {
    /// No job of the domain has the key.
    Free,
    /// The job created with the key by a request with the same arguments.
    Same(JobId),
    /// The job created with the key by a request with other arguments.
    Reused(JobId),
}

/// A value bound to a statement of [`Store::change_job`].
enum Bound<'a> {
    Id(JobId),
    Text(&'a str),
}

/// What becomes of a job's lease when [`Store::change_job`] changed the job.
enum LeaseAfter {
    /// It goes: the job ended.
    Deleted,
    /// It names nobody, has expired and its epoch is raised: the job is held.
    Disowned,
}

/// How often a transaction that lifts a hold is tried again after the database rolled it back
/// to break a deadlock with a twin (MySQL/MariaDB's unique-index locks, when two instances
/// start one scheduled job at once): the next attempt finds the hold lifted.
const CONFLICT_RETRIES: u32 = 3;

/// Whether the database rolled a transaction back to break a deadlock or a serialization
/// conflict (SQLSTATE 40001; PostgreSQL's deadlock, 40P01): trying it again is safe.
fn is_conflict(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("40001" | "40P01")),
        _ => false,
    }
}

/// Rows sent to the database per statement when a recipient snapshot is written.
const SNAPSHOT_CHUNK: usize = 5_000;

/// A failure of the job store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The job database has not answered since this instance started ([`Store::open`]): every
    /// call fails at once until [`Store::reach`] has succeeded.
    #[error("the job database has not been reached since this instance started")]
    NotReached,
    /// The domain already has a running job (the database's unique index said so).
    #[error("the domain already has a running broadcast job")]
    RunningJobExists,
    /// The job database cannot be reached: where, and why.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("job database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("job database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored job that cannot be turned into a [`Job`].
    #[error(transparent)]
    InvalidRow(#[from] InvalidRow),
    /// The idempotency key was used on the domain for job `id`, with other arguments; nothing
    /// was written.
    #[error("the idempotency key was used for job {id} with other arguments")]
    IdempotencyKeyReused { id: JobId },
    /// A new job would get an id beyond [`MAX_JOB_ID`]; nothing was written.
    #[error(
        "cannot create job {id}: job ids beyond {MAX_JOB_ID} do not fit the admin API's 32-bit \
         integers (delete old jobs and restart the id sequence of xb_jobs)"
    )]
    JobIdsExhausted { id: JobId },
}

/// How a job that ran to its end is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    AbortError { reason: String },
}

/// A running job whose lease expired without being renewed: nobody is running it. Taking it
/// over is for an instance that may run it (design invariant 7a).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredLease {
    /// The lease as it is.
    pub lease: Lease,
    /// The instance that let it expire; `None` if it was handed over to nobody.
    pub previous_owner: Option<String>,
    pub domain: String,
    pub users_database: Option<UsersDatabase>,
    /// How long ago it expired, in the job database's clock.
    pub expired_for: Duration,
}

/// A scheduled job, with what decides who may start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledJob {
    pub id: JobId,
    pub domain: String,
    pub users_database: Option<UsersDatabase>,
    /// How long until its start time, in the job database's clock; zero once it has come.
    pub due_in: Duration,
}

/// What one read of the lease loop found ([`Store::lease_round`]).
#[derive(Debug, Default)]
pub struct Round {
    /// As [`Store::expired_leases`].
    pub expired: Vec<ExpiredLease>,
    /// As [`Store::scheduled_jobs`].
    pub scheduled: Vec<ScheduledJob>,
    /// As [`Store::owned_leases`].
    pub owned: Vec<(JobId, i64)>,
}

/// What lifting a job's hold did ([`Store::resume_job`], [`Store::start_scheduled`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unheld {
    /// The job runs again (or starts) under this lease.
    Running(Lease),
    /// The job was not held so (it ended, was lifted by another instance, or was never held).
    NotHeld,
}

impl Unheld {
    /// Of a transaction that claimed the lease of `job_id` for `owner` at `epoch` (`None`: the
    /// job was not held so).
    fn claimed(job_id: JobId, owner: &str, epoch: Option<i64>) -> Self {
        match epoch {
            Some(epoch) => Unheld::Running(Lease {
                job_id,
                owner: owner.to_owned(),
                epoch,
            }),
            None => Unheld::NotHeld,
        }
    }
}

/// A running job, with what decides who may run it and who holds its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningJob {
    pub id: JobId,
    pub domain: String,
    pub users_database: Option<UsersDatabase>,
    pub owner: Option<String>,
}

/// The job database, whichever dialect it speaks; cheap to clone (the clones share the pool and
/// whether the database has been reached).
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// Set once [`Store::reach`] has connected and migrated; until then every call fails at
    /// once with [`StoreError::NotReached`] instead of waiting for a connection.
    reached: Arc<AtomicBool>,
}

/// The connection pool of one dialect.
#[derive(Debug, Clone)]
enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

/// Runs the same expression on whichever pool the store holds; in a function returning
/// `Result<_, StoreError>`, returns [`StoreError::NotReached`] at once while the database has not
/// been reached. `any` runs it whether or not the database has been reached.
macro_rules! on_pool {
    (any $pool_of:expr, $pool:ident => $body:expr) => {
        match $pool_of {
            Pool::Postgres($pool) => $body,
            Pool::MySql($pool) => $body,
            Pool::Sqlite($pool) => $body,
        }
    };
    ($store:expr, $pool:ident => $body:expr) => {
        on_pool!(any $store.reached_pool()?, $pool => $body)
    };
}

/// Stores `$recipients`, the listed snapshot of job `$id`, in transaction `$tx`
/// ([`WriteSnapshot`]); `?` on failure.
macro_rules! insert_recipients {
    ($tx:ident, $sql:ident, $id:expr, $recipients:expr) => {
        WriteSnapshot::write_snapshot(&mut *$tx, $sql, $id, $recipients).await?
    };
}

/// Writing a listed snapshot into `xb_recipients`, the fastest way each dialect has.
trait WriteSnapshot {
    async fn write_snapshot<'n>(
        &mut self,
        sql: &Statements,
        job_id: JobId,
        usernames: impl ExactSizeIterator<Item = &'n str>,
    ) -> Result<(), sqlx::Error>;
}

/// Writes a listed snapshot on MySQL/MariaDB and SQLite: in chunks of [`SNAPSHOT_CHUNK`]
/// names, each a JSON array that the database expands, one statement per chunk.
macro_rules! write_snapshot_as_json {
    ($connection:ty) => {
        impl WriteSnapshot for $connection {
            async fn write_snapshot<'n>(
                &mut self,
                sql: &Statements,
                job_id: JobId,
                mut usernames: impl ExactSizeIterator<Item = &'n str>,
            ) -> Result<(), sqlx::Error> {
                let mut chunk: Vec<&str> = Vec::with_capacity(SNAPSHOT_CHUNK);
                loop {
                    chunk.clear();
                    chunk.extend(usernames.by_ref().take(SNAPSHOT_CHUNK));
                    if chunk.is_empty() {
                        return Ok(());
                    }
                    let names = serde_json::to_string(&chunk).expect("strings serialise to JSON");
                    sqlx::query(sql.insert_recipients)
                        .bind(job_id)
                        .bind(names)
                        .execute(&mut *self)
                        .await?;
                }
            }
        }
    };
}

write_snapshot_as_json!(sqlx::MySqlConnection);
write_snapshot_as_json!(sqlx::SqliteConnection);

/// Bytes of `COPY` data sent to PostgreSQL at a time.
const COPY_CHUNK: usize = 1 << 20;

/// PostgreSQL: one `COPY ... FROM STDIN` in text format, sent [`COPY_CHUNK`] bytes at a time,
/// so the rows are written without a statement each.
impl WriteSnapshot for sqlx::PgConnection {
    async fn write_snapshot<'n>(
        &mut self,
        _sql: &Statements,
        job_id: JobId,
        usernames: impl ExactSizeIterator<Item = &'n str>,
    ) -> Result<(), sqlx::Error> {
        let expected = usernames.len();
        if expected == 0 {
            return Ok(());
        }
        let mut copy = self
            .copy_in_raw("COPY xb_recipients (job_id, username) FROM STDIN")
            .await?;
        let mut data = String::with_capacity(COPY_CHUNK + 1024);
        for username in usernames {
            copy_row(&mut data, job_id, username);
            if data.len() >= COPY_CHUNK {
                if let Err(err) = copy.send(data.as_bytes()).await {
                    copy.abort("the snapshot could not be sent").await.ok();
                    return Err(err);
                }
                data.clear();
            }
        }
        if !data.is_empty()
            && let Err(err) = copy.send(data.as_bytes()).await
        {
            copy.abort("the snapshot could not be sent").await.ok();
            return Err(err);
        }
        let rows = copy.finish().await?;
        if rows != expected as u64 {
            return Err(sqlx::Error::Protocol(format!(
                "COPY stored {rows} recipients of {expected}"
            )));
        }
        Ok(())
    }
}

/// Appends the row (`job_id`, `username`) to `data` in `COPY`'s text format: a tab between
/// the columns, a line feed after, and the backslash, tab, line feed and carriage return of a
/// name escaped.
fn copy_row(data: &mut String, job_id: JobId, username: &str) {
    use std::fmt::Write as _;
    write!(data, "{job_id}\t").expect("writing to a String");
    for c in username.chars() {
        match c {
            '\\' => data.push_str("\\\\"),
            '\t' => data.push_str("\\t"),
            '\n' => data.push_str("\\n"),
            '\r' => data.push_str("\\r"),
            c => data.push(c),
        }
    }
    data.push('\n');
}

/// Claims the lease of job `$id` for `$owner` for `$lease_time` in transaction `$tx`, its epoch
/// raised, and evaluates to that epoch; `?` on failure.
macro_rules! claim_lease {
    ($tx:ident, $sql:ident, $id:expr, $owner:expr, $lease_time:expr) => {{
        sqlx::query($sql.claim_lease)
            .bind($owner)
            .bind($lease_time.as_secs_f64())
            .bind($id)
            .execute(&mut *$tx)
            .await?;
        let epoch: i64 = sqlx::query_scalar($sql.select_lease_epoch)
            .bind($id)
            .bind($owner)
            .fetch_one(&mut *$tx)
            .await?;
        epoch
    }};
}

/// Runs `attempt`, a transaction that lifts a hold, again while the database rolls it back to
/// break a conflict ([`is_conflict`], at most [`CONFLICT_RETRIES`] times); a unique violation
/// is the domain's running job ([`StoreError::RunningJobExists`]).
async fn retrying_conflicts<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Result<T, sqlx::Error>, StoreError>>,
{
    let mut conflicts = 0;
    loop {
        match attempt().await? {
            Ok(value) => return Ok(value),
            Err(err) if is_conflict(&err) && conflicts < CONFLICT_RETRIES => conflicts += 1,
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return Err(StoreError::RunningJobExists);
            }
            Err(err) => return Err(StoreError::Database(err)),
        }
    }
}

impl Store {
    /// Connects to the job database named by `url` (`postgres://`, `mysql://` or `sqlite:`) and
    /// brings its schema up to date ([`Store::open`], then [`Store::reach`]). A database that
    /// cannot be reached is reported at once, with its address and the cause
    /// ([`StoreError::Connect`]).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let store = Store::open(url, max_connections)?;
        store.reach().await?;
        Ok(store)
    }

    /// The running jobs of the job database named by `url`, read without creating or
    /// migrating anything (`check-config`); `None` if it has no jobs table of this version yet
    /// (a SQLite file that does not exist, a database not migrated).
    pub async fn running_jobs_if_migrated(
        url: &str,
    ) -> Result<Option<Vec<RunningJob>>, StoreError> {
        let target = Target::new(JOB_DATABASE, JOB_DATABASE_KEY);
        if url.starts_with("sqlite:") {
            let options =
                SqliteConnectOptions::from_str(url).map_err(|err| target.driver_error(err))?;
            if !options.get_filename().exists() {
                return Ok(None);
            }
        }
        let store = Store::open(url, 1)?;
        // Read as it is: not migrated, nothing written.
        store.reached.store(true, Ordering::Release);
        let jobs = match store.running_jobs().await {
            Ok(jobs) => Some(jobs),
            Err(StoreError::Database(sqlx::Error::Database(_))) => None,
            Err(err) => return Err(err),
        };
        store.close().await;
        Ok(jobs)
    }

    /// The job database named by `url`, without connecting: a URL that does not parse is an
    /// error now ([`StoreError::Connect`]); every other call answers
    /// [`StoreError::NotReached`] at once until [`Store::reach`] succeeds.
    pub fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let target = Target::new(JOB_DATABASE, JOB_DATABASE_KEY);
        let pool = if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            // UTC sessions: NOW(6) and the DATETIME(6) columns are UTC (sqlx's default too).
            let options = MySqlConnectOptions::from_str(url)
                .map_err(|err| target.driver_error(err))?
                .timezone(Some("+00:00".to_owned()))
                .charset("utf8mb4");
            Pool::MySql(
                MySqlPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .test_before_acquire(false)
                    .connect_lazy_with(options),
            )
        } else if url.starts_with("sqlite:") {
            let options = sqlite_options(url, &target)?.create_if_missing(true);
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .connect_lazy_with(options),
            )
        } else {
            let options =
                PgConnectOptions::from_str(url).map_err(|err| target.driver_error(err))?;
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .test_before_acquire(false)
                    .connect_lazy_with(options),
            )
        };
        Ok(Store {
            pool,
            reached: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Reaches the job database of [`Store::open`]: a first direct connection within
    /// [`crate::database::CONNECT_TIMEOUT`] (so that its error is the cause: refused, unknown
    /// host or database, failed login, a SQLite directory that does not exist), then the
    /// migrations. From then on the store's calls go to the database. Does nothing once it
    /// has succeeded.
    pub async fn reach(&self) -> Result<(), StoreError> {
        if self.is_reached() {
            return Ok(());
        }
        let target = Target::new(JOB_DATABASE, JOB_DATABASE_KEY);
        match &self.pool {
            Pool::Postgres(pool) => {
                let options = pool.connect_options();
                let target = target.postgres(&options);
                target.connect(&*options).await?.close().await.ok();
            }
            Pool::MySql(pool) => {
                let options = pool.connect_options();
                let target = target.mysql(&options);
                target.connect(&*options).await?.close().await.ok();
            }
            Pool::Sqlite(pool) => {
                let options = pool.connect_options();
                let target = target.sqlite(&options);
                target.sqlite_directory(&options)?;
                target.connect(&*options).await?.close().await.ok();
            }
        }
        self.migrate().await?;
        self.reached.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether [`Store::reach`] has succeeded: the store's calls go to the database.
    pub fn is_reached(&self) -> bool {
        self.reached.load(Ordering::Acquire)
    }

    /// The pool, once the database has been reached.
    fn reached_pool(&self) -> Result<&Pool, StoreError> {
        if self.is_reached() {
            Ok(&self.pool)
        } else {
            Err(StoreError::NotReached)
        }
    }

    /// Checks, without changing anything, that [`Store::connect`] can reach the job database,
    /// with the same error if not: one connection to PostgreSQL or MySQL; for SQLite, that the
    /// file's directory exists and, if the file does, that it is a database. The schema is not
    /// migrated.
    pub async fn check(url: &str) -> Result<(), StoreError> {
        let target = Target::new(JOB_DATABASE, JOB_DATABASE_KEY);
        if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            let options =
                MySqlConnectOptions::from_str(url).map_err(|err| target.driver_error(err))?;
            let target = target.mysql(&options);
            target.connect(&options).await?.close().await.ok();
        } else if url.starts_with("sqlite:") {
            // Read only, without the pragmas of `sqlite_options`: nothing is written.
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|err| target.driver_error(err))?
                .read_only(true);
            let target = target.sqlite(&options);
            target.sqlite_directory(&options)?;
            if options.get_filename().exists() {
                let mut connection = target.connect(&options).await?;
                sqlx::query("SELECT COUNT(*) FROM sqlite_master")
                    .execute(&mut connection)
                    .await
                    .map_err(|err| target.driver_error(err))?;
                connection.close().await.ok();
            }
        } else {
            let options =
                PgConnectOptions::from_str(url).map_err(|err| target.driver_error(err))?;
            let target = target.postgres(&options);
            target.connect(&options).await?.close().await.ok();
        }
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await?,
            Pool::MySql(pool) => sqlx::migrate!("migrations/mysql").run(pool).await?,
            Pool::Sqlite(pool) => sqlx::migrate!("migrations/sqlite").run(pool).await?,
        }
        Ok(())
    }

    fn sql(&self) -> &'static Statements {
        match &self.pool {
            Pool::Postgres(_) => &sql::POSTGRES,
            Pool::MySql(_) => &sql::MYSQL,
            Pool::Sqlite(_) => &sql::SQLITE,
        }
    }

    /// Whether the job database is PostgreSQL (tests of its identity sequence).
    #[cfg(test)]
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// Creates a running job owned by `owner`, with its lease ([`Lease::first`]), its
    /// recipient snapshot (the listed usernames, or the instant that bounds them) and the users
    /// database that snapshot was taken of, in one transaction. Fails with
    /// [`StoreError::RunningJobExists`] if the domain has a running job.
    pub async fn create_job(
        &self,
        spec: &JobSpec,
        owner: &str,
        lease_time: Duration,
        snapshot: &Snapshot,
        users_database: &UsersDatabase,
    ) -> Result<JobId, StoreError> {
        self.create_job_once(
            None,
            spec,
            owner,
            lease_time,
            snapshot,
            None,
            users_database,
        )
        .await
        .map(Created::id)
    }

    /// [`Store::create_job`], with the request's `idempotency` key if it has one: a job of the
    /// domain created with the same key answers instead ([`Created::Existing`]) if its request
    /// had the same fingerprint, or [`StoreError::IdempotencyKeyReused`] if not, also when the
    /// two requests race (the database's unique index decides).
    ///
    /// A list's names that were not accounts (`unknown`) are recorded with the job.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_job_once(
        &self,
        idempotency: Option<&Idempotency>,
        spec: &JobSpec,
        owner: &str,
        lease_time: Duration,
        snapshot: &Snapshot,
        unknown: Option<&Unknown>,
        users_database: &UsersDatabase,
    ) -> Result<Created, StoreError> {
        let (recipients, snapshot_at): (&[String], Option<&str>) = match snapshot {
            Snapshot::Listed(users) => (users, None),
            Snapshot::CreatedBy { at, .. } => (&[], Some(at)),
        };
        let row = NewJob {
            spec,
            recipient_count: snapshot.len(),
            snapshot_at,
            users_database: Some(users_database),
            kind: JobKind::Broadcast,
            amends: None,
            idempotency,
            start_at: None,
            unknown,
            counted: true,
        };
        self.insert(&row, owner, lease_time, recipients).await
    }

    /// [`Store::create_job_once`] for a job whose recipients are fixed but not yet counted
    /// (invariant 4a): every account created up to the instant `at` of a dated users database,
    /// or (`at` = `None`) those of an open read of the users database, which the job's worker
    /// lists; its worker stores their number ([`Store::record_recipients`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn create_uncounted(
        &self,
        idempotency: Option<&Idempotency>,
        spec: &JobSpec,
        owner: &str,
        lease_time: Duration,
        at: Option<&str>,
        users_database: &UsersDatabase,
    ) -> Result<Created, StoreError> {
        let row = NewJob {
            spec,
            recipient_count: 0,
            snapshot_at: at,
            users_database: Some(users_database),
            kind: JobKind::Broadcast,
            amends: None,
            idempotency,
            start_at: None,
            unknown: None,
            counted: false,
        };
        self.insert(&row, owner, lease_time, &[]).await
    }

    /// Stores the number of a running job's recipients and, for a set its worker listed, the
    /// names (`listed`), in one transaction fenced by `lease` (invariant 4a). Returns false,
    /// writing nothing, if the lease is lost, the job no longer runs, or it was counted before.
    pub async fn record_recipients(
        &self,
        lease: &Lease,
        count: i64,
        listed: Option<&Usernames>,
    ) -> Result<bool, StoreError> {
        let sql = self.sql();
        let recorded = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            let counted = sqlx::query(sql.record_count)
                .bind(count)
                .bind(lease.job_id)
                .bind(&lease.owner)
                .bind(lease.epoch)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if counted != 1 {
                tx.rollback().await?;
                return Ok::<bool, sqlx::Error>(false);
            }
            if let Some(names) = listed {
                insert_recipients!(tx, sql, lease.job_id, names.iter());
            }
            tx.commit().await?;
            Ok(true)
        }.await)?;
        Ok(recorded)
    }

    /// Creates a job scheduled to start at `start_at` (design invariant 12): held, with a lease
    /// that names nobody, and no recipients yet — they are fixed when it starts
    /// ([`Store::start_scheduled`]); `recipient_count` is the count when it was scheduled. It is
    /// not the domain's running job. With an idempotency key, as [`Store::create_job_once`].
    ///
    /// A list's recipients are the exception (invariant 13): the accounts it named that exist
    /// now, `listed`, are stored at once, and kept when it starts; their number is its
    /// `recipient_count`, and `unknown` the names that were not accounts.
    pub async fn create_scheduled(
        &self,
        idempotency: Option<&Idempotency>,
        spec: &JobSpec,
        start_at: DateTime<Utc>,
        recipient_count: i64,
        listed: Option<(&[String], Option<&Unknown>)>,
        users_database: &UsersDatabase,
    ) -> Result<Created, StoreError> {
        let (recipients, unknown, recipient_count) = match listed {
            Some((names, unknown)) => (names, unknown, names.len() as i64),
            None => (&[][..], None, recipient_count),
        };
        let row = NewJob {
            spec,
            recipient_count,
            snapshot_at: None,
            users_database: Some(users_database),
            kind: JobKind::Broadcast,
            amends: None,
            idempotency,
            start_at: Some(start_at),
            unknown,
            counted: true,
        };
        self.insert(&row, NO_OWNER, Duration::ZERO, recipients)
            .await
    }

    /// Creates a running follow-up of `kind` of the broadcast `original`, owned by `owner`,
    /// with its lease: it sends to the first `amends.reach` recipients of the original's
    /// snapshot, which it pages where the original did (its listed usernames, or the same
    /// instant of the same users database). Fails with [`StoreError::RunningJobExists`] if the
    /// domain has a running job. With an idempotency key, as [`Store::create_job_once`].
    #[allow(clippy::too_many_arguments)]
    pub async fn create_follow_up(
        &self,
        spec: &JobSpec,
        owner: &str,
        lease_time: Duration,
        original: &Job,
        kind: JobKind,
        reach: i64,
        idempotency: Option<&Idempotency>,
    ) -> Result<Created, StoreError> {
        let row = NewJob {
            spec,
            recipient_count: reach,
            snapshot_at: original.snapshot_at.as_deref(),
            users_database: original.users_database.as_ref(),
            kind,
            amends: Some(Amends {
                job_id: original.id,
                reach,
            }),
            idempotency,
            start_at: None,
            unknown: None,
            counted: true,
        };
        self.insert(&row, owner, lease_time, &[]).await
    }

    /// Inserts a job, its first lease and its listed recipients in one transaction.
    ///
    /// A unique violation is the domain's running job (invariant 2) or, for a request with an
    /// idempotency key, the key (invariant 11). The key's job is read back whichever index the
    /// database names: a twin request racing this one may be reported on the running-job index
    /// (PostgreSQL checks the indexes in its own order and waits for the twin's commit on the
    /// first it meets), and is still the twin. No job with the key means the running job.
    async fn insert(
        &self,
        job: &NewJob<'_>,
        owner: &str,
        lease_time: Duration,
        recipients: &[String],
    ) -> Result<Created, StoreError> {
        let sql = self.sql();
        let spec = job.spec;
        // No translations are stored as NULL, as a job stored before there were any.
        let translations = (!spec.translations.is_empty())
            .then(|| serde_json::to_string(&spec.translations).expect("strings serialise"));
        let result: Result<Result<JobId, JobId>, sqlx::Error> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            sqlx::query(sql.insert_job)
                .bind(&spec.name)
                .bind(&spec.domain)
                .bind(spec.sender.to_string())
                .bind(&spec.subject)
                .bind(&spec.body)
                .bind(spec.rate as i32)
                .bind(spec.recipient_group.as_db_str())
                .bind(job.recipient_count)
                .bind(job.snapshot_at)
                .bind(job.users_database.map(UsersDatabase::as_str))
                .bind(job.kind.as_db_str())
                .bind(job.amends.map(|amends| amends.job_id))
                .bind(job.amends.map(|amends| amends.reach))
                .bind(job.idempotency.map(|once| once.key.as_str()))
                .bind(job.idempotency.map(|once| once.fingerprint.as_str()))
                .bind(job.start_at.map(|_| Hold::Scheduled.as_db_str()))
                .bind(job.start_at)
                .bind(spec.group.as_deref())
                .bind(job.unknown.map(|unknown| unknown.count))
                .bind(job.unknown.map(|unknown| {
                    serde_json::Value::from(unknown.sample.clone()).to_string()
                }))
                .bind(spec.language.as_deref())
                .bind(translations.as_deref())
                .bind(job.counted)
                .execute(&mut *tx)
                .await?;
            let id: JobId = sqlx::query_scalar(sql.last_insert_id).fetch_one(&mut *tx).await?;
            if id > MAX_JOB_ID {
                tx.rollback().await?;
                return Ok(Err(id));
            }
            sqlx::query(sql.insert_lease)
                .bind(id)
                .bind(owner)
                .bind(Lease::FIRST_EPOCH)
                .bind(lease_time.as_secs_f64())
                .execute(&mut *tx)
                .await?;
            insert_recipients!(tx, sql, id, recipients.iter().map(String::as_str));
            tx.commit().await?;
            Ok(Ok(id))
        }.await);
        match result {
            Ok(Ok(id)) => Ok(Created::New(id)),
            Ok(Err(id)) => Err(StoreError::JobIdsExhausted { id }),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                let Some(once) = job.idempotency else {
                    return Err(StoreError::RunningJobExists);
                };
                match self.job_by_key(&job.spec.domain, once).await? {
                    KeyMatch::Same(id) => Ok(Created::Existing(id)),
                    KeyMatch::Reused(id) => Err(StoreError::IdempotencyKeyReused { id }),
                    KeyMatch::Free => Err(StoreError::RunningJobExists),
                }
            }
            Err(err) => Err(StoreError::Database(err)),
        }
    }

    /// The job of `domain` created with `once`'s key, and whether its request had the same
    /// fingerprint.
    pub async fn job_by_key(
        &self,
        domain: &str,
        once: &Idempotency,
    ) -> Result<KeyMatch, StoreError> {
        let row: Option<(JobId, Option<String>)> = on_pool!(self, pool => {
            sqlx::query_as(self.sql().select_job_by_key)
                .bind(domain)
                .bind(&once.key)
                .fetch_optional(pool)
                .await?
        });
        Ok(match row {
            None => KeyMatch::Free,
            Some((id, fingerprint)) if fingerprint.as_deref() == Some(&once.fingerprint) => {
                KeyMatch::Same(id)
            }
            Some((id, _)) => KeyMatch::Reused(id),
        })
    }

    /// Reads one job with its progress and owner; a row that cannot be turned into a [`Job`]
    /// is [`StoreError::InvalidRow`].
    pub async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let job = on_pool!(self, pool => {
            let row = sqlx::query(self.sql().select_job).bind(id).fetch_optional(pool).await?;
            row.as_ref().map(decode_job).transpose()?
        });
        Ok(job.transpose()?)
    }

    /// Lists a domain's jobs, newest first.
    pub async fn list_jobs(
        &self,
        domain: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Job>, StoreError> {
        let jobs: Vec<Result<Job, InvalidRow>> = on_pool!(self, pool => {
            let rows = sqlx::query(self.sql().select_domain_jobs)
                .bind(domain)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            rows.iter().map(decode_job).collect::<Result<_, _>>()?
        });
        Ok(jobs.into_iter().collect::<Result<_, _>>()?)
    }

    /// Running jobs whose lease names `owner`, each read on its own: a row that cannot be
    /// turned into a [`Job`] is reported alone, so that the others can go on.
    pub async fn running_jobs_owned_by(
        &self,
        owner: &str,
    ) -> Result<Vec<Result<Job, InvalidRow>>, StoreError> {
        let jobs = on_pool!(self, pool => {
            let rows = sqlx::query(self.sql().select_owned_running_jobs)
                .bind(owner)
                .fetch_all(pool)
                .await?;
            rows.iter().map(decode_job).collect::<Result<_, _>>()?
        });
        Ok(jobs)
    }

    /// Takes up a job this instance already owns (after a restart): raises the epoch so that any
    /// older worker of the same owner is fenced out, and extends the lease.
    pub async fn reclaim_own_lease(
        &self,
        job_id: JobId,
        owner: &str,
        lease_time: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let sql = self.sql();
        let epoch: Result<Option<i64>, sqlx::Error> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(sql.reclaim_lease)
                .bind(lease_time.as_secs_f64())
                .bind(job_id)
                .bind(owner)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated != 1 {
                return Ok(None);
            }
            let epoch = sqlx::query_scalar(sql.select_lease_epoch)
                .bind(job_id)
                .bind(owner)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(epoch))
        }.await);
        let epoch = epoch?;
        Ok(epoch.map(|epoch| Lease {
            job_id,
            owner: owner.to_owned(),
            epoch,
        }))
    }

    /// Extends every lease of `owner` on a running job; returns how many were renewed.
    pub async fn renew_leases(&self, owner: &str, lease_time: Duration) -> Result<u64, StoreError> {
        let sql = self.sql();
        let done = on_pool!(self, pool => {
            sqlx::query(sql.renew_leases)
                .bind(lease_time.as_secs_f64())
                .bind(owner)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done)
    }

    /// Lets every lease of `owner` expire now, so that the jobs can be continued at once.
    pub async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        let sql = self.sql();
        let done = on_pool!(self, pool => {
            sqlx::query(sql.release_leases).bind(owner).execute(pool).await?.rows_affected()
        });
        Ok(done)
    }

    /// Hands a lease of `owner` over to nobody: the lease names [`NO_OWNER`], has expired and
    /// its epoch is raised, so that an instance that may run the job takes it over at its next
    /// round and any worker of `owner` is fenced out. Returns false if `owner` did not hold it.
    pub async fn disown_lease(&self, job_id: JobId, owner: &str) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => {
            sqlx::query(self.sql().disown_lease)
                .bind(NO_OWNER)
                .bind(job_id)
                .bind(owner)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// Records when the worker first started (later starts keep the first time). Returns false
    /// if the lease is lost or the job is no longer running.
    pub async fn mark_started(&self, lease: &Lease) -> Result<bool, StoreError> {
        let sql = self.sql();
        let done = on_pool!(self, pool => {
            sqlx::query(sql.mark_started)
                .bind(lease.job_id)
                .bind(&lease.owner)
                .bind(lease.epoch)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// The next page of a job's recipient snapshot, in username order, after `after`.
    pub async fn snapshot_page(
        &self,
        job_id: JobId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let page = on_pool!(self, pool => {
            sqlx::query_scalar(self.sql().select_recipients_page)
                .bind(job_id)
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        Ok(page)
    }

    /// Commits a delivered batch: the cursor moves to `cursor` and `processed` recipients are
    /// done. Returns false, writing nothing, if the lease is lost or the job is no longer running.
    pub async fn commit_progress(
        &self,
        lease: &Lease,
        cursor: &str,
        processed: i64,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => {
            sqlx::query(self.sql().update_progress)
                .bind(cursor)
                .bind(processed)
                .bind(lease.job_id)
                .bind(&lease.owner)
                .bind(lease.epoch)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// Moves a running job to its terminal state and releases its lease; its snapshot stays,
    /// for follow-ups, as long as the job exists.
    /// Returns false, writing nothing, if the lease is lost or the job is no longer running.
    pub async fn complete(
        &self,
        lease: &Lease,
        outcome: &Outcome,
        processed: i64,
    ) -> Result<bool, StoreError> {
        let sql = self.sql();
        let (state, reason) = match outcome {
            Outcome::Finished => (ExecutionState::Finished, None),
            Outcome::AbortError { reason } => (ExecutionState::AbortError, Some(reason.as_str())),
        };
        let done: Result<bool, sqlx::Error> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(sql.complete_job)
                .bind(state.as_db_str())
                .bind(reason)
                .bind(processed)
                .bind(lease.job_id)
                .bind(&lease.owner)
                .bind(lease.epoch)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated != 1 {
                return Ok(false);
            }
            sqlx::query(sql.delete_lease).bind(lease.job_id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(true)
        }.await);
        Ok(done?)
    }

    /// Ends a running job whose stored data is unusable as ABORT_ERROR with `reason`, fenced by
    /// its lease like every worker write; progress and the other columns stay as stored. The
    /// lease goes in any case if it is still `lease` (a job that no longer runs has no use for
    /// it), so that nothing takes the job up again. Returns false if the job was not running
    /// under `lease`.
    pub async fn abandon(&self, lease: &Lease, reason: &str) -> Result<bool, StoreError> {
        let sql = self.sql();
        let done: Result<bool, sqlx::Error> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(sql.abandon_job)
                .bind(reason)
                .bind(lease.job_id)
                .bind(&lease.owner)
                .bind(lease.epoch)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(sql.delete_held_lease)
                .bind(lease.job_id)
                .bind(&lease.owner)
                .bind(lease.epoch)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(updated == 1)
        }.await);
        Ok(done?)
    }

    /// Stops a running job of `domain` for an administrator, whichever instance owns it: the
    /// state changes, the lease goes (the snapshot stays, for follow-ups), and the owner notices that its lease is
    /// gone. Returns false if no running job of that domain has this id.
    pub async fn abort_job(&self, job_id: JobId, domain: &str) -> Result<bool, StoreError> {
        let args = [Bound::Id(job_id), Bound::Text(domain)];
        self.change_job(self.sql().abort_job, &args, job_id, LeaseAfter::Deleted)
            .await
    }

    /// One transaction: `change`, a guarded update of job `job_id` with `args` bound in order,
    /// and, if it changed the job, what becomes of its lease. Returns whether it changed the
    /// job.
    async fn change_job(
        &self,
        change: &'static str,
        args: &[Bound<'_>],
        job_id: JobId,
        lease: LeaseAfter,
    ) -> Result<bool, StoreError> {
        let sql = self.sql();
        let done: Result<bool, sqlx::Error> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            let mut query = sqlx::query(change);
            for arg in args {
                query = match *arg {
                    Bound::Id(id) => query.bind(id),
                    Bound::Text(text) => query.bind(text),
                };
            }
            if query.execute(&mut *tx).await?.rows_affected() != 1 {
                return Ok(false);
            }
            let lease = match lease {
                LeaseAfter::Deleted => sqlx::query(sql.delete_lease).bind(job_id),
                LeaseAfter::Disowned => {
                    sqlx::query(sql.release_held_lease).bind(NO_OWNER).bind(job_id)
                }
            };
            lease.execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(true)
        }.await);
        Ok(done?)
    }

    /// Deletes the listed jobs of `domain` that are not running; returns the ids deleted, in
    /// the order given, each once. Running jobs, unknown ids and other domains' jobs are skipped.
    pub async fn delete_inactive_jobs(
        &self,
        domain: &str,
        ids: &[JobId],
    ) -> Result<Vec<JobId>, StoreError> {
        let deleted: Result<Vec<JobId>, sqlx::Error> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            let mut deleted = Vec::new();
            for &id in ids {
                let rows = sqlx::query(self.sql().delete_inactive_job)
                    .bind(id)
                    .bind(domain)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if rows == 1 {
                    sqlx::query(self.sql().delete_job_recipients)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    deleted.push(id);
                }
            }
            tx.commit().await?;
            Ok(deleted)
        }.await);
        Ok(deleted?)
    }

    /// Deletes every job of `domain` that is not running; returns their ids, oldest first.
    pub async fn delete_inactive_jobs_of_domain(
        &self,
        domain: &str,
    ) -> Result<Vec<JobId>, StoreError> {
        let ids: Vec<JobId> = on_pool!(self, pool => {
            sqlx::query_scalar(self.sql().select_inactive_job_ids).bind(domain).fetch_all(pool).await?
        });
        self.delete_inactive_jobs(domain, &ids).await
    }

    /// The leases `owner` holds, as (job, epoch) pairs.
    pub async fn owned_leases(&self, owner: &str) -> Result<Vec<(JobId, i64)>, StoreError> {
        let leases = on_pool!(self, pool => {
            sqlx::query_as(self.sql().select_owned_leases).bind(owner).fetch_all(pool).await?
        });
        Ok(leases)
    }

    /// The running jobs of other instances than `owner` whose lease expired, the longest
    /// expired first.
    pub async fn expired_leases(&self, owner: &str) -> Result<Vec<ExpiredLease>, StoreError> {
        type Row = (
            JobId,
            String,
            i64,
            String,
            Option<String>,
            DateTime<Utc>,
            DateTime<Utc>,
        );
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(self.sql().select_expired_leases).bind(owner).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(job_id, owner, epoch, domain, users_database, expires_at, now)| ExpiredLease {
                    previous_owner: (owner != NO_OWNER).then(|| owner.clone()),
                    lease: Lease {
                        job_id,
                        owner,
                        epoch,
                    },
                    domain,
                    users_database: users_database.map(UsersDatabase::new),
                    expired_for: (now - expires_at).to_std().unwrap_or_default(),
                },
            )
            .collect())
    }

    /// Takes over an expired lease for `owner`: the lease names `owner` and its epoch is
    /// raised, so that the old owner's writes are fenced out. A lease renewed or taken by
    /// someone else since it was read is left alone (`None`).
    pub async fn take_lease(
        &self,
        expired: &Lease,
        owner: &str,
        lease_time: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let taken = on_pool!(self, pool => {
            sqlx::query(self.sql().take_lease)
                .bind(owner)
                .bind(lease_time.as_secs_f64())
                .bind(expired.job_id)
                .bind(expired.epoch)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok((taken == 1).then(|| Lease {
            job_id: expired.job_id,
            owner: owner.to_owned(),
            epoch: expired.epoch + 1,
        }))
    }

    /// Every running job, oldest first.
    pub async fn running_jobs(&self) -> Result<Vec<RunningJob>, StoreError> {
        let rows: Vec<(JobId, String, Option<String>, Option<String>)> = on_pool!(self, pool => {
            sqlx::query_as(self.sql().select_running_jobs).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, domain, users_database, owner)| RunningJob {
                id,
                domain,
                users_database: users_database.map(UsersDatabase::new),
                owner: owner.filter(|owner| owner != NO_OWNER),
            })
            .collect())
    }

    /// Pauses job `job_id` of `domain` if it sends (running, not held): it is held as paused
    /// and its lease names nobody, so that its worker, wherever it runs, stops at its next
    /// ownership check (design invariant 12). Returns false if no such job sends.
    pub async fn pause_job(&self, job_id: JobId, domain: &str) -> Result<bool, StoreError> {
        let args = [Bound::Id(job_id), Bound::Text(domain)];
        self.change_job(self.sql().pause_job, &args, job_id, LeaseAfter::Disowned)
            .await
    }

    /// Lifts the pause of job `job_id` of `domain`: it is the domain's running job again, under
    /// a lease of `owner` (epoch raised), or of nobody, expired, when `owner` is `None` (an
    /// instance that may run it takes it over). Fails with [`StoreError::RunningJobExists`]
    /// if another job of the domain runs; nothing changes then.
    pub async fn resume_job(
        &self,
        job_id: JobId,
        domain: &str,
        owner: Option<&str>,
        lease_time: Duration,
    ) -> Result<Unheld, StoreError> {
        let sql = self.sql();
        let (owner, lease_time) = match owner {
            Some(owner) => (owner, lease_time),
            None => (NO_OWNER, Duration::ZERO),
        };
        let epoch = retrying_conflicts(|| async {
            Ok(on_pool!(self, pool => async {
                let mut tx = pool.begin().await?;
                let unpaused = sqlx::query(sql.unpause_job)
                    .bind(job_id)
                    .bind(domain)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if unpaused != 1 {
                    return Ok(None);
                }
                let epoch = claim_lease!(tx, sql, job_id, owner, lease_time);
                tx.commit().await?;
                Ok(Some(epoch))
            }.await))
        })
        .await?;
        Ok(Unheld::claimed(job_id, owner, epoch))
    }

    /// Starts scheduled job `job_id` under a lease of `owner` (epoch raised), with its
    /// recipients fixed now: `snapshot`, taken of `users_database` just before (`None` for a
    /// list, whose recipients were stored when it was scheduled and are kept). One
    /// transaction, guarded by the hold, so that exactly one instance starts it. Fails with
    /// [`StoreError::RunningJobExists`] if another job of the domain runs; nothing changes then.
    pub async fn start_scheduled(
        &self,
        job_id: JobId,
        owner: &str,
        lease_time: Duration,
        snapshot: Option<&Snapshot>,
        users_database: &UsersDatabase,
    ) -> Result<Unheld, StoreError> {
        let sql = self.sql();
        let (recipients, snapshot_at): (&[String], Option<&str>) = match snapshot {
            Some(Snapshot::Listed(users)) => (users, None),
            Some(Snapshot::CreatedBy { at, .. }) => (&[], Some(at)),
            None => (&[], None),
        };
        let epoch = retrying_conflicts(|| async {
            Ok(on_pool!(self, pool => async {
                let mut tx = pool.begin().await?;
                let unscheduled = sqlx::query(sql.unschedule_job)
                    .bind(snapshot.map(Snapshot::len))
                    .bind(snapshot_at)
                    .bind(users_database.as_str())
                    .bind(job_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if unscheduled != 1 {
                    return Ok(None);
                }
                let epoch = claim_lease!(tx, sql, job_id, owner, lease_time);
                insert_recipients!(tx, sql, job_id, recipients.iter().map(String::as_str));
                tx.commit().await?;
                Ok(Some(epoch))
            }.await))
        })
        .await?;
        Ok(Unheld::claimed(job_id, owner, epoch))
    }

    /// Ends scheduled job `job_id` as ABORT_ERROR with `reason`, if it is still scheduled
    /// (its lease goes with it); returns whether it was.
    pub async fn fail_scheduled(&self, job_id: JobId, reason: &str) -> Result<bool, StoreError> {
        let args = [Bound::Text(reason), Bound::Id(job_id)];
        self.change_job(
            self.sql().fail_scheduled,
            &args,
            job_id,
            LeaseAfter::Deleted,
        )
        .await
    }

    /// The scheduled jobs, the earliest first.
    pub async fn scheduled_jobs(&self) -> Result<Vec<ScheduledJob>, StoreError> {
        type Row = (
            JobId,
            String,
            Option<String>,
            Option<DateTime<Utc>>,
            DateTime<Utc>,
        );
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(self.sql().select_scheduled_jobs).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, domain, users_database, start_at, now)| ScheduledJob {
                id,
                domain,
                users_database: users_database.map(UsersDatabase::new),
                // A scheduled job stored without a time is due.
                due_in: start_at
                    .and_then(|at| (at - now).to_std().ok())
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// In one statement, what a round of the lease loop of `owner` reads: the expired leases of
    /// other instances ([`Store::expired_leases`]), the scheduled jobs
    /// ([`Store::scheduled_jobs`]) and the leases `owner` holds ([`Store::owned_leases`]).
    pub async fn lease_round(&self, owner: &str) -> Result<Round, StoreError> {
        type Row = (
            String,
            JobId,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<DateTime<Utc>>,
            DateTime<Utc>,
        );
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(self.sql().select_round)
                .bind(owner)
                .bind(owner)
                .fetch_all(pool)
                .await?
        });
        let mut round = Round::default();
        for (kind, job_id, lease_owner, epoch, domain, users_database, at, now) in rows {
            let users_database = users_database.map(UsersDatabase::new);
            match (kind.as_str(), lease_owner, epoch, domain) {
                ("expired", Some(lease_owner), Some(epoch), Some(domain)) => {
                    round.expired.push(ExpiredLease {
                        previous_owner: (lease_owner != NO_OWNER).then(|| lease_owner.clone()),
                        lease: Lease {
                            job_id,
                            owner: lease_owner,
                            epoch,
                        },
                        domain,
                        users_database,
                        expired_for: at
                            .and_then(|at| (now - at).to_std().ok())
                            .unwrap_or_default(),
                    })
                }
                ("scheduled", _, _, Some(domain)) => round.scheduled.push(ScheduledJob {
                    id: job_id,
                    domain,
                    users_database,
                    // A scheduled job stored without a time is due.
                    due_in: at
                        .and_then(|at| (at - now).to_std().ok())
                        .unwrap_or_default(),
                }),
                ("owned", _, Some(epoch), _) => round.owned.push((job_id, epoch)),
                (kind, ..) => {
                    return Err(StoreError::Database(sqlx::Error::Protocol(format!(
                        "a lease round read a row of kind {kind:?} without its columns"
                    ))));
                }
            }
        }
        Ok(round)
    }

    /// The job of `domain` that sends (running and not held), if any.
    pub async fn sending_job_id(&self, domain: &str) -> Result<Option<JobId>, StoreError> {
        let ids: Vec<JobId> = on_pool!(self, pool => {
            sqlx::query_scalar(self.sql().select_sending_job_ids).bind(domain).fetch_all(pool).await?
        });
        Ok(ids.first().copied())
    }

    /// The running jobs of `domain`, held ones included (at most one sends, by invariant 2).
    pub async fn running_job_ids(&self, domain: &str) -> Result<Vec<JobId>, StoreError> {
        let ids = on_pool!(self, pool => {
            sqlx::query_scalar(self.sql().select_running_job_ids).bind(domain).fetch_all(pool).await?
        });
        Ok(ids)
    }

    /// Whether `domain` has any job, in any state.
    pub async fn domain_has_jobs(&self, domain: &str) -> Result<bool, StoreError> {
        let count: i64 = on_pool!(self, pool => {
            sqlx::query_scalar(self.sql().select_domain_has_jobs).bind(domain).fetch_one(pool).await?
        });
        Ok(count > 0)
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop)?);
        Ok(())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        on_pool!(any &self.pool, pool => pool.close().await)
    }

    /// Runs a statement the tests write themselves (to store rows the store never writes).
    #[cfg(test)]
    pub(crate) async fn execute_for_test(&self, statement: &str) {
        let statement = sqlx::AssertSqlSafe(statement.to_owned());
        on_pool!(any &self.pool, pool => sqlx::query(statement).execute(pool).await.map(drop))
            .unwrap_or_else(|err| panic!("{err}"));
    }

    /// The one text value a test's query selects (`NULL` as `None`).
    #[cfg(test)]
    pub(crate) async fn text_for_test(&self, query: &str) -> Option<String> {
        let query = sqlx::AssertSqlSafe(query.to_owned());
        on_pool!(any &self.pool, pool => sqlx::query_scalar(query).fetch_one(pool).await)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// The number a test's `SELECT COUNT(*)` counts.
    #[cfg(test)]
    pub(crate) async fn count_for_test(&self, query: &str) -> i64 {
        let query = sqlx::AssertSqlSafe(query.to_owned());
        on_pool!(any &self.pool, pool => sqlx::query_scalar(query).fetch_one(pool).await)
            .unwrap_or_else(|err| panic!("{err}"))
    }
}

/// A job as selected by the statements' `job_select!`.
#[derive(sqlx::FromRow)]
struct JobRow {
    id: i64,
    name: String,
    domain: String,
    sender_jid: String,
    subject: String,
    body: String,
    message_rate: i32,
    recipient_count: i64,
    execution_state: String,
    abortion_reason: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    stopped_at: Option<DateTime<Utc>>,
    cursor_username: Option<String>,
    recipients_processed: i64,
    snapshot_at: Option<String>,
    users_database: Option<String>,
    kind: String,
    amends: Option<i64>,
    reach: Option<i64>,
    hold: Option<String>,
    start_at: Option<DateTime<Utc>>,
    paused_at: Option<DateTime<Utc>>,
    recipient_group: String,
    audience_group: Option<String>,
    unknown_recipients: Option<i64>,
    unknown_sample: Option<String>,
    language: Option<String>,
    translations: Option<String>,
    recipients_counted: bool,
    owner: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    database_now: DateTime<Utc>,
}

impl JobRow {
    /// The job, if every value fits its type: an id within `1..=MAX_JOB_ID`, a known state,
    /// a rate and counts that are not negative.
    fn into_job(self) -> Result<Job, InvalidRow> {
        let domain = self.domain.clone();
        self.checked().map_err(|bad| bad.in_domain(Some(domain)))
    }

    fn checked(self) -> Result<Job, InvalidRow> {
        let id = self.id;
        InvalidRow::check_range(id, "id", id, (1, MAX_JOB_ID))?;
        let state = ExecutionState::from_db_str(&self.execution_state)
            .ok_or_else(|| InvalidRow::new(id, "execution_state", RowProblem::UnknownState))?;
        let not_negative =
            |column, value| InvalidRow::check_range(id, column, value, (0, i64::MAX));
        let rate = u32::try_from(self.message_rate).map_err(|_| {
            let value = i64::from(self.message_rate);
            let problem = RowProblem::OutOfRange {
                value,
                min: 0,
                max: i64::from(i32::MAX),
            };
            InvalidRow::new(id, "message_rate", problem)
        })?;
        let recipient_count = not_negative("recipient_count", self.recipient_count)?;
        let recipients_processed = not_negative("recipients_processed", self.recipients_processed)?;
        let kind = JobKind::from_db_str(&self.kind)
            .ok_or_else(|| InvalidRow::new(id, "kind", RowProblem::UnknownKind))?;
        // A broadcast amends nothing; a follow-up amends one job, for a number of recipients.
        let amends = match (kind, self.amends, self.reach) {
            (JobKind::Broadcast, None, None) => None,
            (JobKind::Correction | JobKind::Retraction, Some(amends), Some(reach)) => {
                Some(Amends {
                    job_id: InvalidRow::check_range(id, "amends", amends, (1, MAX_JOB_ID))?,
                    reach: not_negative("reach", reach)?,
                })
            }
            _ => return Err(InvalidRow::new(id, "amends", RowProblem::KindMismatch)),
        };
        let hold = match self.hold.as_deref() {
            None => None,
            Some(hold) => Some(
                Hold::from_db_str(hold)
                    .ok_or_else(|| InvalidRow::new(id, "hold", RowProblem::UnknownHold))?,
            ),
        };
        let recipient_group =
            RecipientGroup::from_db_str(&self.recipient_group).ok_or_else(|| {
                InvalidRow::new(id, "recipient_group", RowProblem::UnknownRecipientGroup)
            })?;
        // A group job names its group, and only a group job does.
        let group = match (recipient_group, self.audience_group) {
            (RecipientGroup::Group, Some(name)) if audience::is_group_name(&name) => Some(name),
            (RecipientGroup::Group, _) | (_, Some(_)) => {
                return Err(InvalidRow::new(
                    id,
                    "audience_group",
                    RowProblem::GroupMismatch,
                ));
            }
            (_, None) => None,
        };
        let unknown = match (self.unknown_recipients, self.unknown_sample) {
            (None, None) => None,
            (Some(count), sample) => {
                let sample = match sample {
                    None => Vec::new(),
                    Some(text) => serde_json::from_str::<Vec<String>>(&text).map_err(|err| {
                        InvalidRow::new(
                            id,
                            "unknown_sample",
                            RowProblem::Undecodable(err.to_string()),
                        )
                    })?,
                };
                Some(Unknown {
                    count: not_negative("unknown_recipients", count)?,
                    sample,
                })
            }
            (None, Some(_)) => {
                return Err(InvalidRow::new(
                    id,
                    "unknown_recipients",
                    RowProblem::Undecodable("a sample without a count".into()),
                ));
            }
        };
        // The tags and texts are checked before sending (`Job::sending`); a value that is not
        // a JSON array of translations cannot even be shown.
        let translations = match self.translations.as_deref() {
            None => Vec::new(),
            Some(json) => serde_json::from_str::<Vec<Translation>>(json).map_err(|err| {
                InvalidRow::new(id, "translations", RowProblem::Undecodable(err.to_string()))
            })?,
        };
        Ok(Job {
            id,
            name: self.name,
            domain: self.domain,
            sender_jid: self.sender_jid,
            subject: self.subject,
            body: self.body,
            rate,
            recipient_count,
            recipients_counted: self.recipients_counted,
            state,
            abortion_reason: self.abortion_reason,
            created_at: self.created_at,
            started_at: self.started_at,
            stopped_at: self.stopped_at,
            cursor: self.cursor_username,
            recipients_processed,
            owner: self.owner.filter(|owner| owner != NO_OWNER),
            snapshot_at: self.snapshot_at,
            users_database: self.users_database.map(UsersDatabase::new),
            lease_expires_at: self.lease_expires_at,
            lease_expired: self
                .lease_expires_at
                .is_some_and(|expires| expires < self.database_now),
            kind,
            amends,
            due: hold == Some(Hold::Scheduled)
                && self.start_at.is_none_or(|at| at <= self.database_now),
            hold,
            start_at: self.start_at,
            paused_at: self.paused_at,
            recipient_group,
            group,
            unknown,
            language: self.language,
            translations,
        })
    }
}

/// Turns a row of `job_select!` into a [`Job`]: `Err` only when the database fails; a row
/// whose values do not fit (or do not decode) is an [`InvalidRow`] naming the column.
fn decode_job<'r, R>(row: &'r R) -> Result<Result<Job, InvalidRow>, sqlx::Error>
where
    R: sqlx::Row,
    JobRow: sqlx::FromRow<'r, R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'static str: sqlx::ColumnIndex<R>,
{
    match <JobRow as sqlx::FromRow<'r, R>>::from_row(row) {
        Ok(job) => Ok(job.into_job()),
        Err(sqlx::Error::ColumnDecode { index, source }) => {
            let id: i64 = row.try_get("id")?;
            let column = index.trim_matches('"');
            let problem = RowProblem::Undecodable(source.to_string());
            let domain = row.try_get("domain").ok();
            Ok(Err(InvalidRow::new(id, column, problem).in_domain(domain)))
        }
        Err(err) => Err(err),
    }
}
