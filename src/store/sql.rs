//! The statements of the job store.
//!
//! Statements shared by every dialect are constants; the ones that read the database clock are
//! fields of [`Statements`], one value per dialect. Placeholders are `$N` everywhere.

/// Columns of a job with its owner, as decoded by `JobRow`; `j` is `xb_jobs`, `l` is `xb_leases`.
macro_rules! job_select {
    ($($tail:literal),*) => {
        concat!(
            "SELECT j.id, j.name, j.domain, j.sender_jid, j.subject, j.body, j.message_rate, ",
            "j.recipient_count, j.execution_state, j.abortion_reason, j.created_at, j.started_at, ",
            "j.stopped_at, j.cursor_username, j.recipients_processed, l.owner ",
            "FROM xb_jobs j LEFT JOIN xb_leases l ON l.job_id = j.id ",
            $($tail),*
        )
    };
}

/// A worker's write matches only while its lease is current and the job runs (invariant 1).
macro_rules! fenced {
    ($job:literal, $owner:literal, $epoch:literal) => {
        concat!(
            "execution_state = 'running' AND EXISTS (SELECT 1 FROM xb_leases l WHERE l.job_id = ",
            $job,
            " AND l.owner = ",
            $owner,
            " AND l.epoch = ",
            $epoch,
            ")"
        )
    };
}

/// Statements that differ between dialects.
pub struct Statements {
    /// `$1` job id, `$2` owner, `$3` lease seconds.
    pub insert_lease: &'static str,
    /// `$1` job id, `$2` JSON array of usernames.
    pub insert_recipients: &'static str,
    /// `$1` job id, `$2` owner, `$3` lease seconds; returns the new epoch.
    pub reclaim_lease: &'static str,
    /// `$1` owner, `$2` lease seconds.
    pub renew_leases: &'static str,
    /// `$1` owner.
    pub release_leases: &'static str,
    /// `$1` job id, `$2` owner, `$3` epoch.
    pub mark_started: &'static str,
    /// `$1` state, `$2` reason, `$3` processed, `$4` job id, `$5` owner, `$6` epoch.
    pub complete_job: &'static str,
    /// `$1` job id, `$2` domain: an administrator's abort, whoever owns the job.
    pub abort_job: &'static str,
}

macro_rules! statements {
    (
        now: $now:literal,
        later: ($later_open:literal, $later_close:literal),
        json_rows: $json_rows:literal
    ) => {
        Statements {
            insert_lease: concat!(
                "INSERT INTO xb_leases (job_id, owner, epoch, expires_at) VALUES ($1, $2, 1, ",
                $later_open,
                "$3",
                $later_close,
                ")"
            ),
            insert_recipients: concat!(
                "INSERT INTO xb_recipients (job_id, username) SELECT $1, ",
                $json_rows
            ),
            reclaim_lease: concat!(
                "UPDATE xb_leases SET epoch = epoch + 1, expires_at = ",
                $later_open,
                "$3",
                $later_close,
                " WHERE job_id = $1 AND owner = $2 RETURNING epoch"
            ),
            renew_leases: concat!(
                "UPDATE xb_leases SET expires_at = ",
                $later_open,
                "$2",
                $later_close,
                " WHERE owner = $1 AND job_id IN ",
                "(SELECT id FROM xb_jobs WHERE execution_state = 'running')"
            ),
            release_leases: concat!(
                "UPDATE xb_leases SET expires_at = ",
                $now,
                " WHERE owner = $1"
            ),
            mark_started: concat!(
                "UPDATE xb_jobs SET started_at = COALESCE(started_at, ",
                $now,
                ") WHERE id = $1 AND ",
                fenced!("$1", "$2", "$3")
            ),
            complete_job: concat!(
                "UPDATE xb_jobs SET execution_state = $1, abortion_reason = $2, ",
                "recipients_processed = $3, stopped_at = ",
                $now,
                " WHERE id = $4 AND ",
                fenced!("$4", "$5", "$6")
            ),
            abort_job: concat!(
                "UPDATE xb_jobs SET execution_state = 'abort_admin', stopped_at = ",
                $now,
                " WHERE id = $1 AND domain = $2 AND execution_state = 'running'"
            ),
        }
    };
}

pub static POSTGRES: Statements = statements!(
    now: "now()",
    later: ("now() + make_interval(secs => ", ")"),
    json_rows: "jsonb_array_elements_text($2::jsonb)"
);

pub static SQLITE: Statements = statements!(
    now: "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    later: ("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || ", " || ' seconds')"),
    json_rows: "value FROM json_each($2)"
);

/// `$1` name … `$8` recipient count; returns the id.
pub const INSERT_JOB: &str = "INSERT INTO xb_jobs (name, domain, sender_jid, subject, body, \
     message_rate, recipient_group, recipient_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     RETURNING id";

pub const SELECT_JOB: &str = job_select!("WHERE j.id = $1");

pub const SELECT_DOMAIN_JOBS: &str =
    job_select!("WHERE j.domain = $1 ORDER BY j.id DESC LIMIT $2 OFFSET $3");

pub const SELECT_OWNED_RUNNING_JOBS: &str =
    job_select!("WHERE l.owner = $1 AND j.execution_state = 'running' ORDER BY j.id");

/// `$1` job id, `$2` last username of the previous page ('' for the first), `$3` limit.
pub const SELECT_RECIPIENTS_PAGE: &str = "SELECT username FROM xb_recipients \
     WHERE job_id = $1 AND username > $2 ORDER BY username LIMIT $3";

/// `$1` cursor, `$2` processed, `$3` job id, `$4` owner, `$5` epoch.
pub const UPDATE_PROGRESS: &str = concat!(
    "UPDATE xb_jobs SET cursor_username = $1, recipients_processed = $2 WHERE id = $3 AND ",
    fenced!("$3", "$4", "$5")
);

/// `$1` owner: the leases an instance holds, to check that its workers may go on.
pub const SELECT_OWNED_LEASES: &str = "SELECT job_id, epoch FROM xb_leases WHERE owner = $1";

/// `$1` job id, `$2` domain: deletes a job that is not running.
pub const DELETE_INACTIVE_JOB: &str =
    "DELETE FROM xb_jobs WHERE id = $1 AND domain = $2 AND execution_state <> 'running'";

/// `$1` domain: the jobs `DELETE_INACTIVE_JOB` would delete, oldest first.
pub const SELECT_INACTIVE_JOB_IDS: &str =
    "SELECT id FROM xb_jobs WHERE domain = $1 AND execution_state <> 'running' ORDER BY id";

pub const DELETE_LEASE: &str = "DELETE FROM xb_leases WHERE job_id = $1";

pub const DELETE_RECIPIENTS: &str = "DELETE FROM xb_recipients WHERE job_id = $1";
