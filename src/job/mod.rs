//! What a broadcast job is, below every module that handles one (store, directory, xmpp,
//! broadcast): the request and its validation ([`spec`]), and the job as stored.
//!
//! A broadcast job as stored: its definition, state, progress and owner, and the checks that
//! stored data is usable, made where it is turned into these types.

pub mod audience;
pub mod idempotency;
pub mod spec;
pub mod usernames;

pub use audience::{Audience, AudienceRequest, Unknown};
pub use idempotency::Idempotency;
pub use spec::{BroadcastRequest, InvalidRequest, JobSpec, RecipientGroup, Translation};
pub use usernames::Usernames;

use std::num::NonZeroU32;

use chrono::{DateTime, Utc};
use jid::BareJid;

use self::spec::Parameter;

/// Identifier of a job, assigned by the job store.
pub type JobId = i64;

/// The largest job id. The admin API carries ids as MongooseIM does, as GraphQL `Int`s (32-bit
/// signed), so a job with a larger id could be neither shown nor named: the store refuses to
/// create one, and reports a stored one as an [`InvalidRow`].
pub const MAX_JOB_ID: JobId = i32::MAX as JobId;

/// A stored job whose data cannot be used: which job, which column, and why. Reading the row
/// fails with it when a value cannot even be shown (an id beyond [`MAX_JOB_ID`], an unknown
/// state, a negative count); [`Job::sending`] fails with it when the job cannot be sent (a
/// sender that is not a JID of the domain, a rate or text beyond the request's limits). A
/// running job with such data ends as ABORT_ERROR with this as its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored job {job_id} is unusable: its {column} {problem}")]
pub struct InvalidRow {
    pub job_id: JobId,
    /// The column of `xb_jobs` holding the value.
    pub column: String,
    pub problem: RowProblem,
    /// The job's domain, when the row has a readable one: what the metrics of the job's end
    /// are labelled with.
    pub domain: Option<String>,
}

/// What is wrong with a stored value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    #[error("is {value}, outside {min}..={max}")]
    OutOfRange { value: i64, min: i64, max: i64 },
    #[error("is not a known execution state")]
    UnknownState,
    #[error("is not a known job kind")]
    UnknownKind,
    #[error("is not a known hold (scheduled or paused)")]
    UnknownHold,
    /// `amends` and `reach` are set for a correction or retraction, and only then.
    #[error("does not fit the job's kind (a follow-up amends a job, a broadcast none)")]
    KindMismatch,
    #[error("is not a bare JID ({0})")]
    NotABareJid(String),
    #[error("is not an account of the job's domain")]
    NotInDomain,
    /// The text breaks the limits a request's text of this kind is checked against.
    #[error("is not a valid {}: too long, or with a character XML cannot carry", .0.as_str())]
    BadText(Parameter),
    /// The language or the translations break the request's rules (the reason).
    #[error("cannot be sent: {0}")]
    BadLanguages(String),
    /// The message written from the stored texts is larger than the component may send.
    #[error("make a message of {bytes} bytes, over the {limit} bytes the servers accept")]
    MessageTooLarge { bytes: usize, limit: usize },
    #[error("cannot be decoded ({0})")]
    Undecodable(String),
    #[error("is not a known recipient group")]
    UnknownRecipientGroup,
    /// `audience_group` names a valid group for a group job, and only then.
    #[error("does not fit the job's recipient group (a group job names its group, others none)")]
    GroupMismatch,
}

impl InvalidRow {
    pub fn new(job_id: JobId, column: &str, problem: RowProblem) -> Self {
        InvalidRow {
            job_id,
            column: column.to_owned(),
            problem,
            domain: None,
        }
    }

    /// The same fault, of a job of `domain` (if known).
    pub fn in_domain(self, domain: Option<String>) -> Self {
        InvalidRow { domain, ..self }
    }

    /// Checks that a stored integer is within `min..=max`.
    pub fn check_range(
        job_id: JobId,
        column: &str,
        value: i64,
        (min, max): (i64, i64),
    ) -> Result<i64, Self> {
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            let problem = RowProblem::OutOfRange { value, min, max };
            Err(InvalidRow::new(job_id, column, problem))
        }
    }
}

/// What a worker needs to send a job, checked: the sender as a JID of the job's domain, and a
/// rate within the request's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sending {
    pub sender: BareJid,
    pub rate: NonZeroU32,
}

/// Where a job is in its life; MongooseIM's `BroadcastJobState`. A job that has not ended is
/// `Running` — also while it is held ([`Hold`]: scheduled or paused), so that a MongooseIM
/// client sees only MongooseIM's states; [`Status`] tells the holds apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionState {
    Running,
    Finished,
    AbortError,
    AbortAdmin,
}

impl ExecutionState {
    /// Every state.
    pub const ALL: [ExecutionState; 4] = [
        ExecutionState::Running,
        ExecutionState::Finished,
        ExecutionState::AbortError,
        ExecutionState::AbortAdmin,
    ];

    /// The name the admin API gives the state (MongooseIM's `BroadcastJobState`), such as
    /// `ABORT_ADMIN`.
    pub fn as_api_str(self) -> &'static str {
        match self {
            ExecutionState::Running => "RUNNING",
            ExecutionState::Finished => "FINISHED",
            ExecutionState::AbortError => "ABORT_ERROR",
            ExecutionState::AbortAdmin => "ABORT_ADMIN",
        }
    }

    /// The state the admin API names `name`.
    pub fn from_api_str(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_api_str() == name)
    }

    /// The value stored in the `execution_state` column.
    pub fn as_db_str(self) -> &'static str {
        match self {
            ExecutionState::Running => "running",
            ExecutionState::Finished => "finished",
            ExecutionState::AbortError => "abort_error",
            ExecutionState::AbortAdmin => "abort_admin",
        }
    }

    /// The state stored as `value`, if it is one.
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

impl std::fmt::Display for ExecutionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_api_str())
    }
}

/// As the admin API writes it (`RUNNING`, …), for clients of the API.
impl serde::Serialize for ExecutionState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_api_str())
    }
}

impl<'de> serde::Deserialize<'de> for ExecutionState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ExecutionState::from_api_str(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown execution state {name:?}")))
    }
}

/// Why a job that has not ended sends nothing (design invariant 12): it waits for its start
/// time, or an administrator paused it. A held job holds no lease anyone runs it under and is
/// not the domain's running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Created with a start time: its recipients are fixed and its sending starts when the time
    /// has come (on whichever instance may run it).
    Scheduled,
    /// Paused by an administrator; it resumes from its committed progress.
    Paused,
}

impl Hold {
    pub const ALL: [Hold; 2] = [Hold::Scheduled, Hold::Paused];

    /// The value stored in the `hold` column.
    pub fn as_db_str(self) -> &'static str {
        match self {
            Hold::Scheduled => "scheduled",
            Hold::Paused => "paused",
        }
    }

    /// The hold stored as `value`, if it is one.
    pub fn from_db_str(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|hold| hold.as_db_str() == value)
    }
}

/// Where a job is in its life, holds included: xmpp-broadcast's `BroadcastStatus`, a
/// superset of [`ExecutionState`] for the clients that schedule or pause jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for its start time.
    Scheduled,
    /// Sending (or waiting for an instance to take it over).
    Running,
    /// Paused by an administrator.
    Paused,
    Finished,
    AbortError,
    AbortAdmin,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Scheduled,
        Status::Running,
        Status::Paused,
        Status::Finished,
        Status::AbortError,
        Status::AbortAdmin,
    ];

    /// The name the admin API gives the status, such as `PAUSED`.
    pub fn as_api_str(self) -> &'static str {
        match self {
            Status::Scheduled => "SCHEDULED",
            Status::Running => "RUNNING",
            Status::Paused => "PAUSED",
            Status::Finished => "FINISHED",
            Status::AbortError => "ABORT_ERROR",
            Status::AbortAdmin => "ABORT_ADMIN",
        }
    }

    /// The status the admin API names `name`.
    pub fn from_api_str(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_api_str() == name)
    }

    /// Of a job in `state` held by `hold`.
    pub fn of(state: ExecutionState, hold: Option<Hold>) -> Self {
        match (state, hold) {
            (ExecutionState::Running, Some(Hold::Scheduled)) => Status::Scheduled,
            (ExecutionState::Running, Some(Hold::Paused)) => Status::Paused,
            (ExecutionState::Running, None) => Status::Running,
            (ExecutionState::Finished, _) => Status::Finished,
            (ExecutionState::AbortError, _) => Status::AbortError,
            (ExecutionState::AbortAdmin, _) => Status::AbortAdmin,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_api_str())
    }
}

/// As the admin API writes it, for clients of the API.
impl serde::Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_api_str())
    }
}

impl<'de> serde::Deserialize<'de> for Status {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Status::from_api_str(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown status {name:?}")))
    }
}

/// What a job sends: a broadcast, or a follow-up that amends what a broadcast sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// The message itself.
    Broadcast,
    /// A XEP-0308 correction of the broadcast's message: a new subject and body.
    Correction,
    /// A XEP-0424 retraction of the broadcast's message.
    Retraction,
}

impl JobKind {
    pub const ALL: [JobKind; 3] = [JobKind::Broadcast, JobKind::Correction, JobKind::Retraction];

    /// The value stored in the `kind` column.
    pub fn as_db_str(self) -> &'static str {
        match self {
            JobKind::Broadcast => "broadcast",
            JobKind::Correction => "correction",
            JobKind::Retraction => "retraction",
        }
    }

    /// The kind stored as `value`, if it is one.
    pub fn from_db_str(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_db_str() == value)
    }

    /// The name the admin API gives the kind (`BroadcastKind`).
    pub fn as_api_str(self) -> &'static str {
        match self {
            JobKind::Broadcast => "BROADCAST",
            JobKind::Correction => "CORRECTION",
            JobKind::Retraction => "RETRACTION",
        }
    }

    /// The kind the admin API names `name`.
    pub fn from_api_str(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_api_str() == name)
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_api_str())
    }
}

/// As the admin API writes it, for clients of the API.
impl serde::Serialize for JobKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_api_str())
    }
}

impl<'de> serde::Deserialize<'de> for JobKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        JobKind::from_api_str(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown job kind {name:?}")))
    }
}

/// What a follow-up job amends: the broadcast it corrects or retracts, and how many of that
/// broadcast's recipients, in its sending order, it may have reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amends {
    /// The original broadcast (always a [`JobKind::Broadcast`] job).
    pub job_id: JobId,
    /// The first `reach` recipients of the original's snapshot are the follow-up's.
    pub reach: i64,
}

/// The body of a retraction, for clients that cannot retract (XEP-0428 fallback).
pub const RETRACTION_FALLBACK_BODY: &str = "The previous announcement was withdrawn; please \
    disregard it. (Your client cannot remove it by itself.)";

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
    /// The number of recipients, once counted (0 before: see `recipients_counted`).
    pub recipient_count: i64,
    /// Whether `recipient_count` is known (invariant 4a): a job of a large domain answers
    /// before its fixed recipient set has been counted, and its worker stores the number.
    pub recipients_counted: bool,
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
    /// The users database the recipients were fixed against; `None` for a job stored before
    /// it was recorded.
    pub users_database: Option<UsersDatabase>,
    /// While the job has a lease: when it expires (or expired), in the job database's clock.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Whether the lease had expired when the job was read (in the job database's clock):
    /// no instance is running the job.
    pub lease_expired: bool,
    /// What the job sends.
    pub kind: JobKind,
    /// For a correction or retraction: the broadcast it amends; `None` for a broadcast.
    pub amends: Option<Amends>,
    /// Why the job sends nothing although it has not ended: scheduled or paused.
    pub hold: Option<Hold>,
    /// The time the job was scheduled to start at, if it was (kept once it started).
    pub start_at: Option<DateTime<Utc>>,
    /// When it was paused, while it is.
    pub paused_at: Option<DateTime<Utc>>,
    /// A scheduled job whose start time had come when the job was read (in the job database's
    /// clock).
    pub due: bool,
    /// Who the job is for.
    pub recipient_group: RecipientGroup,
    /// The configured group, for a group job.
    pub group: Option<String>,
    /// For a list: the names that were not accounts of the domain when it was checked.
    pub unknown: Option<Unknown>,
    /// The BCP 47 tag of `subject` and `body` (the message's `xml:lang`), if given.
    pub language: Option<String>,
    /// The message in other languages, sent in the same stanza after the default text.
    pub translations: Vec<Translation>,
}

impl Job {
    /// Where the job is in its life, holds included.
    pub fn status(&self) -> Status {
        Status::of(self.state, self.hold)
    }

    /// The job whose recipient snapshot this job pages: the original for a follow-up.
    pub fn snapshot_job(&self) -> JobId {
        self.amends.map_or(self.id, |amends| amends.job_id)
    }

    /// How many of its original's recipients, in sending order, a follow-up of this job may
    /// reach: every recipient of a finished job; of one that stopped early, those of its
    /// committed batches and of the batch it was sending (some of it may have been sent),
    /// unless it never started; `batch` is the job's batch size.
    pub fn reached(&self, batch: i64) -> i64 {
        let reached = match self.state {
            ExecutionState::Finished => self.recipient_count,
            _ if self.started_at.is_none() => self.recipients_processed,
            _ => self.recipients_processed.saturating_add(batch),
        };
        // Before its recipients are counted, a job has not reached past what it processed.
        if self.recipients_counted {
            reached.min(self.recipient_count)
        } else {
            reached
        }
    }
}

/// What identifies a users database: the schema it is read with and the database itself, as
/// the database names itself (see `directory::identity`), or the operator's
/// `users.database_id`. A job records the one it was created against, and only an instance
/// reading the same one may run it (design invariant 7a).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsersDatabase(String);

impl UsersDatabase {
    pub fn new(id: impl Into<String>) -> Self {
        UsersDatabase(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UsersDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Job {
    /// The sender and the rate of a stored job, after checking every stored value that goes
    /// into its messages against the limits its request was checked against when it was
    /// started: the sender (`sender_jid`), the rate (`message_rate`), the subject and the body,
    /// the language and the translations. A job that fails cannot be sent as it is.
    pub fn sending(&self) -> Result<Sending, InvalidRow> {
        let bad = |column: &str, problem| {
            InvalidRow::new(self.id, column, problem).in_domain(Some(self.domain.clone()))
        };
        let sender = BareJid::new(&self.sender_jid)
            .map_err(|err| bad("sender_jid", RowProblem::NotABareJid(err.to_string())))?;
        spec::check_sender(&sender, &self.domain)
            .map_err(|_| bad("sender_jid", RowProblem::NotInDomain))?;
        let rate = spec::check_rate(i64::from(self.rate))
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| {
                let (min, max) = (*spec::RATE.start(), *spec::RATE.end());
                let problem = RowProblem::OutOfRange {
                    value: i64::from(self.rate),
                    min: i64::from(min),
                    max: i64::from(max),
                };
                bad("message_rate", problem)
            })?;
        for (column, text, parameter) in [
            ("subject", &self.subject, Parameter::Subject),
            ("body", &self.body, Parameter::Body),
        ] {
            spec::check_text(text, parameter)
                .map_err(|_| bad(column, RowProblem::BadText(parameter)))?;
        }
        spec::check_languages(self.language.as_deref(), self.translations.clone()).map_err(
            |err| {
                let column = match &err {
                    InvalidRequest::Language {
                        problem: spec::LanguageProblem::BadDefault(_),
                    } => "language",
                    _ => "translations",
                };
                bad(column, RowProblem::BadLanguages(err.to_string()))
            },
        )?;
        Ok(Sending { sender, rate })
    }
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

/// How a job ended: recorded in the job database, counted in the metrics. A worker that stops
/// without ending its job (shutdown, lease taken) reports no end: the job goes on elsewhere or
/// later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// Every recipient was processed: FINISHED.
    Finished,
    /// An administrator aborted it: ABORT_ADMIN.
    AbortedByAdmin,
    /// A lasting fault or unusable stored data ended it: ABORT_ERROR.
    AbortedByError,
}

/// The right to run one job: every write a worker makes is conditional on it (invariant 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job_id: JobId,
    pub owner: String,
    /// Raised at each claim, so that an older holder's writes match no row.
    pub epoch: i64,
}

impl Lease {
    /// The epoch of the lease a job is created with.
    pub const FIRST_EPOCH: i64 = 1;

    /// The lease a new job is created with, held by its creator.
    pub fn first(job_id: JobId, owner: &str) -> Lease {
        Lease {
            job_id,
            owner: owner.to_owned(),
            epoch: Lease::FIRST_EPOCH,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            id: 7,
            name: "maintenance".into(),
            domain: "example.com".into(),
            sender_jid: "admin@example.com".into(),
            subject: "Tonight".into(),
            body: "line 1\r\nline 2".into(),
            rate: 50,
            recipient_count: 10,
            recipients_counted: true,
            state: ExecutionState::Running,
            abortion_reason: None,
            created_at: Utc::now(),
            started_at: None,
            stopped_at: None,
            cursor: None,
            recipients_processed: 0,
            owner: Some("node1".into()),
            snapshot_at: None,
            users_database: None,
            lease_expires_at: None,
            lease_expired: false,
            kind: JobKind::Broadcast,
            amends: None,
            hold: None,
            start_at: None,
            paused_at: None,
            due: false,
            recipient_group: RecipientGroup::AllUsersInDomain,
            group: None,
            unknown: None,
            language: None,
            translations: Vec::new(),
        }
    }

    /// The column `sending` blames for a job changed by `change`.
    fn blamed(change: impl FnOnce(&mut Job)) -> InvalidRow {
        let mut job = job();
        change(&mut job);
        job.sending().unwrap_err()
    }

    /// Who a follow-up reaches: all of a finished job; of a stopped one, its committed batches
    /// and the batch in flight (capped by its recipients); nobody of one that never started.
    #[test]
    fn a_follow_up_reaches_whom_the_original_may_have_reached() {
        let mut original = job();
        original.recipient_count = 95;
        original.recipients_processed = 40;
        original.state = ExecutionState::AbortAdmin;
        original.started_at = Some(Utc::now());
        assert_eq!(original.reached(20), 60);
        assert_eq!(original.reached(100), 95, "capped by the recipients");
        original.state = ExecutionState::Finished;
        assert_eq!(original.reached(20), 95);
        original.state = ExecutionState::AbortError;
        original.started_at = None;
        original.recipients_processed = 0;
        assert_eq!(original.reached(20), 0, "never started: nothing was sent");
    }

    #[test]
    fn a_valid_job_can_be_sent() {
        let sending = job().sending().unwrap();
        assert_eq!(sending.sender.as_str(), "admin@example.com");
        assert_eq!(sending.rate.get(), 50);
    }

    #[test]
    fn stored_values_that_cannot_be_sent_name_their_column() {
        let bad = blamed(|job| job.sender_jid = "@example.com".into());
        assert_eq!((bad.job_id, bad.column.as_str()), (7, "sender_jid"));
        assert_eq!(bad.domain.as_deref(), Some("example.com"));
        assert!(matches!(bad.problem, RowProblem::NotABareJid(_)), "{bad}");
        let foreign = blamed(|job| job.sender_jid = "admin@other.org".into());
        assert_eq!(foreign.problem, RowProblem::NotInDomain);
        for rate in [0, 1001, u32::MAX] {
            let bad = blamed(|job| job.rate = rate);
            assert_eq!(bad.column, "message_rate");
            assert_eq!(
                bad.problem,
                RowProblem::OutOfRange {
                    value: i64::from(rate),
                    min: 1,
                    max: 1000
                }
            );
        }
        assert_eq!(
            blamed(|job| job.rate = 0).to_string(),
            "stored job 7 is unusable: its message_rate is 0, outside 1..=1000"
        );
        let nul = blamed(|job| job.subject = "a\u{0}b".into());
        assert_eq!(
            (nul.column.as_str(), nul.problem),
            ("subject", RowProblem::BadText(Parameter::Subject))
        );
        let long = blamed(|job| job.body = "x".repeat(16_001));
        assert_eq!(long.column, "body");
        let heavy = blamed(|job| job.body = format!("e{}", "\u{301}".repeat(100_000)));
        assert_eq!(heavy.column, "body");
    }

    /// Stored languages are checked as a request's: a bad default tag blames `language`,
    /// anything wrong with the translations blames `translations`.
    #[test]
    fn stored_languages_that_cannot_be_sent_name_their_column() {
        let translation = |language: &str, body: &str| Translation {
            language: language.into(),
            subject: String::new(),
            body: body.into(),
        };
        let mut ok = job();
        ok.language = Some("en".into());
        ok.translations = vec![translation("de", "Heute Abend.")];
        assert!(ok.sending().is_ok());
        let bad_tag = blamed(|job| job.language = Some("en_US".into()));
        assert_eq!(bad_tag.column, "language");
        assert!(
            matches!(bad_tag.problem, RowProblem::BadLanguages(_)),
            "{bad_tag}"
        );
        for change in [
            // Translations without a default language.
            Box::new(|job: &mut Job| job.translations = vec![translation("de", "x")])
                as Box<dyn FnOnce(&mut Job)>,
            Box::new(|job: &mut Job| {
                job.language = Some("en".into());
                job.translations = vec![translation("EN", "x")];
            }),
            Box::new(|job: &mut Job| {
                job.language = Some("en".into());
                job.translations = vec![translation("de", "a\u{0}b")];
            }),
            Box::new(|job: &mut Job| {
                job.language = Some("en".into());
                job.translations = vec![translation("d e", "x")];
            }),
        ] {
            let bad = blamed(change);
            assert_eq!(bad.column, "translations", "{bad}");
        }
    }
}
