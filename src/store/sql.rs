//! The statements of the job store, one [`Statements`] value per dialect.
//!
//! Every statement is written once, with `$N` placeholders that appear in the order
//! `$1, $2, …` (each once), so all dialects bind their arguments in the same order; MySQL's
//! value rewrites them to `?` ([`crate::placeholders`]). The dialects differ only in the
//! arguments of [`statements!`]: the clock, lease arithmetic, JSON expansion and the id of the
//! last insert.

use std::sync::LazyLock;

use crate::placeholders::question_marks_in_order;

/// Columns of a job with its owner and lease, as decoded by `JobRow`; `j` is `xb_jobs`, `l`
/// is `xb_leases`; `$now` is the dialect's clock, so that the lease's expiry is judged in the
/// database's clock.
macro_rules! job_select {
    ($now:literal, $($tail:literal),*) => {
        concat!(
            "SELECT j.id, j.name, j.domain, j.sender_jid, j.subject, j.body, j.message_rate, ",
            "j.recipient_count, j.execution_state, j.abortion_reason, j.created_at, j.started_at, ",
            "j.stopped_at, j.cursor_username, j.recipients_processed, j.snapshot_at, ",
            "j.users_database, j.kind, j.amends, j.reach, j.hold, j.start_at, j.paused_at, ",
            "j.recipient_group, j.audience_group, j.unknown_recipients, j.unknown_sample, ",
            "j.language, j.translations, j.recipients_counted, ",
            "l.owner, ",
            "l.expires_at AS lease_expires_at, ",
            $now,
            " AS database_now FROM xb_jobs j LEFT JOIN xb_leases l ON l.job_id = j.id ",
            $($tail),*
        )
    };
}

/// A worker's write to `xb_jobs` matches only while its lease is current and the job runs
/// (invariant 1).
macro_rules! fenced {
    ($owner:literal, $epoch:literal) => {
        concat!(
            "execution_state = 'running' AND EXISTS (SELECT 1 FROM xb_leases l ",
            "WHERE l.job_id = xb_jobs.id AND l.owner = ",
            $owner,
            " AND l.epoch = ",
            $epoch,
            ")"
        )
    };
}

/// No running follow-up pages this `xb_jobs` row's snapshot. The running follow-ups are read
/// in a derived table (`DISTINCT` keeps MySQL from merging it into a DELETE of the same table).
macro_rules! no_running_follow_up {
    () => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM (SELECT DISTINCT amends FROM xb_jobs ",
            "WHERE execution_state = 'running' AND amends IS NOT NULL) f ",
            "WHERE f.amends = xb_jobs.id)"
        )
    };
}

/// The statements of one dialect. The comments list the arguments in binding order.
pub struct Statements {
    /// `$1` name … `$8` recipient count, `$9` snapshot instant (or NULL), `$10` users
    /// database, `$11` kind, `$12` amended job, `$13` reach (both NULL for a broadcast),
    /// `$14` idempotency key, `$15` request fingerprint (both NULL without a key), `$16` hold
    /// ('scheduled' or NULL), `$17` start time (or NULL), `$18` language, `$19` translations
    /// (JSON; both NULL when none).
    pub insert_job: &'static str,
    /// `$1` domain, `$2` idempotency key: the job created with the key, and its request's
    /// fingerprint.
    pub select_job_by_key: &'static str,
    /// The id the last insert on this connection generated.
    pub last_insert_id: &'static str,
    /// `$1` job id, `$2` owner, `$3` epoch ([`Lease::FIRST_EPOCH`]), `$4` lease seconds.
    ///
    /// [`Lease::FIRST_EPOCH`]: crate::job::Lease::FIRST_EPOCH
    pub insert_lease: &'static str,
    /// `$1` job id, `$2` JSON array of usernames.
    pub insert_recipients: &'static str,
    /// `$1` job id.
    pub select_job: &'static str,
    /// `$1` domain, `$2` limit, `$3` offset.
    pub select_domain_jobs: &'static str,
    /// `$1` owner.
    pub select_owned_running_jobs: &'static str,
    /// `$1` lease seconds, `$2` job id, `$3` owner: raises the epoch of an own lease.
    pub reclaim_lease: &'static str,
    /// `$1` job id, `$2` owner.
    pub select_lease_epoch: &'static str,
    /// `$1` lease seconds, `$2` owner.
    pub renew_leases: &'static str,
    /// `$1` owner.
    pub release_leases: &'static str,
    /// `$1` no owner, `$2` job id, `$3` owner: hands a lease over to nobody, expired and with
    /// its epoch raised.
    pub disown_lease: &'static str,
    /// `$1` job id, `$2` owner, `$3` epoch.
    pub mark_started: &'static str,
    /// `$1` job id, `$2` last username of the previous page ('' for the first), `$3` limit.
    pub select_recipients_page: &'static str,
    /// `$1` cursor, `$2` processed, `$3` job id, `$4` owner, `$5` epoch.
    pub update_progress: &'static str,
    /// `$1` state, `$2` reason, `$3` processed, `$4` job id, `$5` owner, `$6` epoch.
    pub complete_job: &'static str,
    pub record_count: &'static str,
    /// `$1` reason, `$2` job id, `$3` owner, `$4` epoch: ends a job whose stored data is
    /// unusable as ABORT_ERROR, leaving its other columns as they are.
    pub abandon_job: &'static str,
    /// `$1` job id, `$2` owner, `$3` epoch: deletes a lease only if it is still the one given.
    pub delete_held_lease: &'static str,
    /// `$1` job id, `$2` domain: an administrator's abort, whoever owns the job.
    pub abort_job: &'static str,
    /// `$1` owner: the leases an instance holds, to check that its workers may go on.
    pub select_owned_leases: &'static str,
    /// `$1` job id, `$2` domain: deletes a job that is not running and that no running
    /// follow-up pages.
    pub delete_inactive_job: &'static str,
    /// `$1` job id: the listed snapshot of a job just deleted (PostgreSQL's has no foreign key
    /// to cascade from; elsewhere the cascade has removed it already).
    pub delete_job_recipients: &'static str,
    /// `$1` domain: the jobs `delete_inactive_job` would delete, oldest first.
    pub select_inactive_job_ids: &'static str,
    /// `$1` owner: the running jobs of other owners whose lease expired, oldest expiry
    /// first, with what decides who may take them over.
    pub select_expired_leases: &'static str,
    /// Every running job: what decides who may run it, and its owner.
    pub select_running_jobs: &'static str,
    /// `$1` domain: whether the domain has any job.
    pub select_domain_has_jobs: &'static str,
    /// `$1` domain: the running jobs of a domain.
    pub select_running_job_ids: &'static str,
    /// `$1` new owner, `$2` lease seconds, `$3` job id, `$4` epoch seen expired: takes the
    /// lease only if nobody renewed or took it since.
    pub take_lease: &'static str,
    /// `$1` job id.
    pub delete_lease: &'static str,
    /// `$1` job id, `$2` domain: pauses a job that sends (design invariant 12).
    pub pause_job: &'static str,
    /// `$1` no owner, `$2` job id: the lease of a job just held names nobody, has expired and
    /// its epoch is raised, so that its worker's writes are fenced out.
    pub release_held_lease: &'static str,
    /// `$1` job id, `$2` domain: lifts a pause.
    pub unpause_job: &'static str,
    /// `$1` recipient count (NULL: kept, for a list stored when it was scheduled), `$2`
    /// snapshot instant (or NULL), `$3` users database, `$4` job id: a scheduled job starts,
    /// with its recipients fixed now.
    pub unschedule_job: &'static str,
    /// `$1` owner, `$2` lease seconds, `$3` job id: the lease of a job whose hold was just
    /// lifted (in the same transaction), its epoch raised.
    pub claim_lease: &'static str,
    /// The scheduled jobs, the earliest first, with what decides who may start them.
    pub select_scheduled_jobs: &'static str,
    /// `$1` owner, `$2` owner: one round of the lease loop in one read — the rows of
    /// `select_expired_leases` (kind 'expired'), then of `select_scheduled_jobs` (kind
    /// 'scheduled'), then the leases `$2` holds (kind 'owned'); columns: kind, job id, owner,
    /// epoch, domain, users database, instant (expiry or start time), the database's now.
    pub select_round: &'static str,
    /// `$1` domain: the job of the domain that sends (running, not held; at most one).
    pub select_sending_job_ids: &'static str,
    /// `$1` reason, `$2` job id: ends a scheduled job that cannot start as ABORT_ERROR.
    pub fail_scheduled: &'static str,
}

/// Builds a dialect's [`Statements`]; `finish` turns each `$N` statement into the dialect's
/// text (unchanged, or MySQL's `?`).
macro_rules! statements {
    (
        finish: $finish:expr,
        now: $now:literal,
        later: ($later_open:literal, $later_close:literal),
        instant: ($instant_open:literal, $instant_close:literal),
        json_rows: $json_rows:literal,
        last_insert_id: $last_insert_id:literal
    ) => {
        Statements {
            insert_job: $finish(concat!(
                "INSERT INTO xb_jobs (name, domain, sender_jid, subject, body, message_rate, ",
                "recipient_group, recipient_count, snapshot_at, users_database, kind, amends, ",
                "reach, idempotency_key, request_fingerprint, hold, start_at, audience_group, ",
                "unknown_recipients, unknown_sample, language, translations, recipients_counted) ",
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, ",
                $instant_open,
                "$17",
                $instant_close,
                ", $18, $19, $20, $21, $22, $23)"
            )),
            select_job_by_key: $finish(
                "SELECT id, request_fingerprint FROM xb_jobs \
                 WHERE domain = $1 AND idempotency_key = $2",
            ),
            last_insert_id: $finish($last_insert_id),
            insert_lease: $finish(concat!(
                "INSERT INTO xb_leases (job_id, owner, epoch, expires_at) VALUES ($1, $2, $3, ",
                $later_open,
                "$4",
                $later_close,
                ")"
            )),
            insert_recipients: $finish(concat!(
                "INSERT INTO xb_recipients (job_id, username) SELECT $1, ",
                $json_rows
            )),
            select_job: $finish(job_select!($now, "WHERE j.id = $1")),
            select_domain_jobs: $finish(job_select!(
                $now,
                "WHERE j.domain = $1 ORDER BY j.id DESC LIMIT $2 OFFSET $3"
            )),
            select_owned_running_jobs: $finish(job_select!(
                $now,
                "WHERE l.owner = $1 AND j.execution_state = 'running' ORDER BY j.id"
            )),
            reclaim_lease: $finish(concat!(
                "UPDATE xb_leases SET epoch = epoch + 1, expires_at = ",
                $later_open,
                "$1",
                $later_close,
                " WHERE job_id = $2 AND owner = $3"
            )),
            select_lease_epoch: $finish(
                "SELECT epoch FROM xb_leases WHERE job_id = $1 AND owner = $2",
            ),
            renew_leases: $finish(concat!(
                "UPDATE xb_leases SET expires_at = ",
                $later_open,
                "$1",
                $later_close,
                " WHERE owner = $2 AND job_id IN ",
                "(SELECT id FROM xb_jobs WHERE execution_state = 'running')"
            )),
            release_leases: $finish(concat!(
                "UPDATE xb_leases SET expires_at = ",
                $now,
                " WHERE owner = $1"
            )),
            disown_lease: $finish(concat!(
                "UPDATE xb_leases SET owner = $1, epoch = epoch + 1, expires_at = ",
                $now,
                " WHERE job_id = $2 AND owner = $3"
            )),
            mark_started: $finish(concat!(
                "UPDATE xb_jobs SET started_at = COALESCE(started_at, ",
                $now,
                ") WHERE id = $1 AND ",
                fenced!("$2", "$3")
            )),
            select_recipients_page: $finish(
                "SELECT username FROM xb_recipients \
                 WHERE job_id = $1 AND username > $2 ORDER BY username LIMIT $3",
            ),
            update_progress: $finish(concat!(
                "UPDATE xb_jobs SET cursor_username = $1, recipients_processed = $2 ",
                "WHERE id = $3 AND ",
                fenced!("$4", "$5")
            )),
            complete_job: $finish(concat!(
                "UPDATE xb_jobs SET execution_state = $1, abortion_reason = $2, ",
                "recipients_processed = $3, stopped_at = ",
                $now,
                " WHERE id = $4 AND ",
                fenced!("$5", "$6")
            )),
            record_count: $finish(concat!(
                "UPDATE xb_jobs SET recipient_count = $1, recipients_counted = TRUE ",
                "WHERE id = $2 AND recipients_counted = FALSE AND ",
                fenced!("$3", "$4")
            )),
            abandon_job: $finish(concat!(
                "UPDATE xb_jobs SET execution_state = 'abort_error', abortion_reason = $1, ",
                "stopped_at = ",
                $now,
                " WHERE id = $2 AND ",
                fenced!("$3", "$4")
            )),
            delete_held_lease: $finish(
                "DELETE FROM xb_leases WHERE job_id = $1 AND owner = $2 AND epoch = $3",
            ),
            abort_job: $finish(concat!(
                "UPDATE xb_jobs SET execution_state = 'abort_admin', hold = NULL, stopped_at = ",
                $now,
                " WHERE id = $1 AND domain = $2 AND execution_state = 'running'"
            )),
            select_owned_leases: $finish("SELECT job_id, epoch FROM xb_leases WHERE owner = $1"),
            delete_inactive_job: $finish(concat!(
                "DELETE FROM xb_jobs WHERE id = $1 AND domain = $2 AND execution_state <> 'running' ",
                "AND ",
                no_running_follow_up!()
            )),
            delete_job_recipients: $finish("DELETE FROM xb_recipients WHERE job_id = $1"),
            select_inactive_job_ids: $finish(concat!(
                "SELECT id FROM xb_jobs WHERE domain = $1 AND execution_state <> 'running' AND ",
                no_running_follow_up!(),
                " ORDER BY id"
            )),
            select_expired_leases: $finish(concat!(
                "SELECT l.job_id, l.owner, l.epoch, j.domain, j.users_database, l.expires_at, ",
                $now,
                " AS database_now FROM xb_leases l JOIN xb_jobs j ON j.id = l.job_id ",
                "WHERE l.owner <> $1 AND j.execution_state = 'running' AND j.hold IS NULL ",
                "AND l.expires_at < ",
                $now,
                " ORDER BY l.expires_at, l.job_id"
            )),
            select_round: $finish(concat!(
                "SELECT 'expired' AS kind, l.job_id, l.owner, l.epoch, j.domain, j.users_database, ",
                "l.expires_at AS at, ",
                $now,
                " AS database_now FROM xb_leases l JOIN xb_jobs j ON j.id = l.job_id ",
                "WHERE l.owner <> $1 AND j.execution_state = 'running' AND j.hold IS NULL ",
                "AND l.expires_at < ",
                $now,
                " UNION ALL SELECT 'scheduled', id, NULL, NULL, domain, users_database, start_at, ",
                $now,
                " FROM xb_jobs WHERE execution_state = 'running' AND hold = 'scheduled' ",
                "UNION ALL SELECT 'owned', job_id, owner, epoch, NULL, NULL, NULL, ",
                $now,
                " FROM xb_leases WHERE owner = $2 ",
                "ORDER BY 1, 7, 2"
            )),
            select_running_jobs: $finish(
                "SELECT j.id, j.domain, j.users_database, l.owner FROM xb_jobs j \
                 LEFT JOIN xb_leases l ON l.job_id = j.id \
                 WHERE j.execution_state = 'running' AND j.hold IS NULL ORDER BY j.id",
            ),
            select_domain_has_jobs: $finish(
                "SELECT COUNT(*) FROM (SELECT 1 FROM xb_jobs WHERE domain = $1 LIMIT 1) t",
            ),
            select_running_job_ids: $finish(
                "SELECT id FROM xb_jobs WHERE domain = $1 AND execution_state = 'running' \
                 ORDER BY id",
            ),
            take_lease: $finish(concat!(
                "UPDATE xb_leases SET owner = $1, epoch = epoch + 1, expires_at = ",
                $later_open,
                "$2",
                $later_close,
                " WHERE job_id = $3 AND epoch = $4 AND expires_at < ",
                $now
            )),
            delete_lease: $finish("DELETE FROM xb_leases WHERE job_id = $1"),
            pause_job: $finish(concat!(
                "UPDATE xb_jobs SET hold = 'paused', paused_at = ",
                $now,
                " WHERE id = $1 AND domain = $2 AND execution_state = 'running' AND hold IS NULL"
            )),
            release_held_lease: $finish(concat!(
                "UPDATE xb_leases SET owner = $1, epoch = epoch + 1, expires_at = ",
                $now,
                " WHERE job_id = $2"
            )),
            unpause_job: $finish(
                "UPDATE xb_jobs SET hold = NULL, paused_at = NULL \
                 WHERE id = $1 AND domain = $2 AND execution_state = 'running' AND hold = 'paused'",
            ),
            unschedule_job: $finish(
                "UPDATE xb_jobs SET hold = NULL, recipient_count = COALESCE($1, recipient_count), \
                 snapshot_at = $2, \
                 users_database = $3 \
                 WHERE id = $4 AND execution_state = 'running' AND hold = 'scheduled'",
            ),
            claim_lease: $finish(concat!(
                "UPDATE xb_leases SET owner = $1, epoch = epoch + 1, expires_at = ",
                $later_open,
                "$2",
                $later_close,
                " WHERE job_id = $3"
            )),
            select_scheduled_jobs: $finish(concat!(
                "SELECT id, domain, users_database, start_at, ",
                $now,
                " AS database_now FROM xb_jobs ",
                "WHERE execution_state = 'running' AND hold = 'scheduled' ORDER BY start_at, id"
            )),
            select_sending_job_ids: $finish(
                "SELECT id FROM xb_jobs \
                 WHERE domain = $1 AND execution_state = 'running' AND hold IS NULL ORDER BY id",
            ),
            fail_scheduled: $finish(concat!(
                "UPDATE xb_jobs SET execution_state = 'abort_error', hold = NULL, ",
                "abortion_reason = $1, stopped_at = ",
                $now,
                " WHERE id = $2 AND execution_state = 'running' AND hold = 'scheduled'"
            )),
        }
    };
}

/// PostgreSQL and SQLite take the `$N` text as it is.
const fn as_written(sql: &'static str) -> &'static str {
    sql
}

pub static POSTGRES: Statements = statements!(
    finish: as_written,
    now: "now()",
    later: ("now() + make_interval(secs => ", ")"),
    instant: ("", ""),
    json_rows: "jsonb_array_elements_text($2::jsonb)",
    last_insert_id: "SELECT lastval()"
);

pub static SQLITE: Statements = statements!(
    finish: as_written,
    now: "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    later: ("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || ", " || ' seconds')"),
    instant: ("strftime('%Y-%m-%dT%H:%M:%fZ', ", ")"),
    json_rows: "value FROM json_each($2)",
    last_insert_id: "SELECT last_insert_rowid()"
);

/// MySQL/MariaDB: `NOW(6)` is UTC because every connection sets `time_zone = '+00:00'`.
pub static MYSQL: LazyLock<Statements> = LazyLock::new(|| {
    fn finish(sql: &'static str) -> &'static str {
        // Built once per process: the few strings live as long as the program anyway.
        question_marks_in_order(sql).leak()
    }
    statements!(
        finish: finish,
        now: "NOW(6)",
        later: ("DATE_ADD(NOW(6), INTERVAL ROUND(", " * 1000000) MICROSECOND)"),
        instant: ("", ""),
        json_rows: "j.username FROM JSON_TABLE($2, '$[*]' COLUMNS (username VARCHAR(700) PATH '$')) j",
        last_insert_id: "SELECT CAST(LAST_INSERT_ID() AS SIGNED)"
    )
});
