//! A broadcast job as stored: its definition, state, progress and owner.

use chrono::{DateTime, Utc};

/// Identifier of a job, assigned by the job store.
pub type JobId = i64;

/// Where a job is in its life; MongooseIM's `BroadcastJobState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionState {
    Running,
    Finished,
    AbortError,
    AbortAdmin,
}

impl ExecutionState {
    /// The value stored in the `execution_state` column.
    pub fn as_db_str(self) -> &'static str {
        match self {
            ExecutionState::Running => "running",
            ExecutionState::Finished => "finished",
            ExecutionState::AbortError => "abort_error",
            ExecutionState::AbortAdmin => "abort_admin",
        }
    }

    pub fn from_db_str(value: &str) -> Option<Self> {
        match value {
            "running" => Some(ExecutionState::Running),
            "finished" => Some(ExecutionState::Finished),
            "abort_error" => Some(ExecutionState::AbortError),
            "abort_admin" => Some(ExecutionState::AbortAdmin),
            _ => None,
        }
    }
}

/// A job row with its progress and, while it runs, its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub name: String,
    pub domain: String,
    /// The sender's bare JID as given when the job was started.
    pub sender_jid: String,
    pub subject: String,
    pub body: String,
    pub rate: u32,
    pub recipient_count: i64,
    pub state: ExecutionState,
    pub abortion_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub stopped_at: Option<DateTime<Utc>>,
    /// The last recipient (username) of the last committed batch.
    pub cursor: Option<String>,
    /// Recipients processed in committed batches.
    pub recipients_processed: i64,
    /// The instance holding the lease, while the job runs.
    pub owner: Option<String>,
    /// Where the recipients are read while sending: `None` for a snapshot listed in the job
    /// store, or the instant (in the users database's own clock and rendering) up to which
    /// accounts created in the users database are recipients.
    pub snapshot_at: Option<String>,
}

/// The recipient set of a job, fixed when the job is created (design invariant 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snapshot {
    /// Every username of the domain, in byte order, stored with the job (for directories
    /// without creation times, such as Prosody's).
    Listed(Vec<String>),
    /// The accounts of the domain created at or before `at`, read page by page from the users
    /// database while sending; `count` of them existed when the job was created.
    CreatedBy { at: String, count: i64 },
}

impl Snapshot {
    /// The number of recipients: the job's `recipientCount`.
    pub fn len(&self) -> i64 {
        match self {
            Snapshot::Listed(users) => users.len() as i64,
            Snapshot::CreatedBy { count, .. } => *count,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The right to run one job: every write a worker makes is conditional on it (invariant 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job_id: JobId,
    pub owner: String,
    /// Raised at each claim, so that an older holder's writes match no row.
    pub epoch: i64,
}
