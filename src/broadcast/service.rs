//! The operations behind the admin API: start, read and list broadcasts.
//!
//! Starting validates everything first and writes once: the job, its lease and its recipient
//! snapshot in one transaction; then this instance's manager runs it.
//!
//! Jobs are started and recipients counted only for the domains this instance serves. The
//! other operations also accept a domain that is not configured here but has jobs in the job
//! database (a domain removed from the config, or served by other instances): the HTTP layer
//! lets only the global admin name such a domain, so that it can list, abort and delete jobs
//! that no instance may run any more.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::broadcast::Manager;
use crate::broadcast::progress::with_progress;
use crate::broadcast::worker::Handover;
use crate::directory::{Directory, DirectoryError, Fixed, Measuring};
use crate::job::spec::{self, BroadcastRequest, InvalidRequest, JobSpec, batch_size};
use crate::job::{
    Audience, AudienceRequest, ExecutionState, Idempotency, Job, JobId, JobKind, Lease, MAX_JOB_ID,
    RETRACTION_FALLBACK_BODY, Snapshot, Status, Translation, Unknown,
};
use crate::store::{Created, KeyMatch, Store, StoreError, Unheld};
use crate::xmpp::{Announcement, Content, Texts};

/// Why a broadcast could not be started. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("Domain not found")]
    DomainNotFound,
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    #[error("Sender account does not exist")]
    SenderNotFound,
    #[error("Recipient group is empty")]
    NoRecipients,
    /// The domain has no group of this name in the config.
    #[error("The domain has no recipient group named {0:?}")]
    UnknownGroup(String),
    #[error("Cannot start new broadcast job: running job limit exceeded")]
    RunningJobLimitExceeded,
    /// The job to correct or retract is not a job of the domain (or its original is gone).
    #[error("Broadcast job not found")]
    BroadcastNotFound,
    /// The broadcast to correct or retract is still running.
    #[error(
        "The broadcast job is still running: abort it (its follow-up then reaches whom it may \
         have reached) or wait until it ends"
    )]
    StillRunning,
    /// A retraction cannot be corrected or retracted.
    #[error("A retraction cannot be corrected or retracted")]
    NotAmendable,
    /// The idempotency key was used on the domain for job `id` by a request with other
    /// arguments.
    #[error(
        "The idempotency key was already used for broadcast job {id} with other arguments; \
         nothing was created"
    )]
    IdempotencyKeyReused { id: JobId },
    /// The job database cannot be trusted right now (safety mode).
    #[error("Broadcast manager is temporarily unavailable")]
    TemporarilyUnavailable,
    /// No job id fits the API any more ([`StoreError::JobIdsExhausted`]); nothing was written.
    #[error(transparent)]
    JobIdsExhausted(StoreError),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

impl From<StoreError> for StartError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::RunningJobExists => StartError::RunningJobLimitExceeded,
            StoreError::IdempotencyKeyReused { id } => StartError::IdempotencyKeyReused { id },
            exhausted @ StoreError::JobIdsExhausted { .. } => {
                StartError::JobIdsExhausted(exhausted)
            }
            other => StartError::Store(other),
        }
    }
}

/// Who a new job reaches: its snapshot and, for a list, the names that are not accounts.
struct Reached {
    snapshot: Snapshot,
    unknown: Option<Unknown>,
}

impl Reached {
    fn all(snapshot: Snapshot) -> Self {
        Reached {
            snapshot,
            unknown: None,
        }
    }
}

/// A follow-up of a broadcast: what it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUp {
    /// A XEP-0308 correction with a new subject and body, in `language` and with
    /// `translations` (the correction replaces the whole message).
    Correction {
        subject: String,
        body: String,
        language: Option<String>,
        translations: Vec<Translation>,
    },
    /// A XEP-0424 retraction.
    Retraction,
}

/// Why a job could not be read.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("Domain not found")]
    DomainNotFound,
    #[error("Broadcast job not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// Who a broadcast started now would reach, without starting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// The number of recipients: what `recipientCount` would be.
    pub count: i64,
    /// The first recipients in sending order, as bare JIDs.
    pub sample: Vec<String>,
    /// For a list: the names that are not accounts.
    pub unknown: Option<Unknown>,
}

/// Why a job could not be aborted.
#[derive(Debug, thiserror::Error)]
pub enum AbortError {
    #[error("Domain not found")]
    DomainNotFound,
    #[error("Broadcast job not found")]
    NotFound,
    #[error("The broadcast job is not currently running")]
    NotRunning,
    /// The job database failed to record the abort (`source`); this instance keeps it and
    /// retries every second (design invariant 5).
    #[error(
        "The abort is not recorded yet: the job database failed to record it. {}; this \
         instance retries recording the abort every second until it is recorded or the job is no \
         longer running",
        if *.stopped_here {
            "This instance stopped its own sending of the job"
        } else {
            "This instance does not run the job: its owner goes on sending until the abort is \
             recorded"
        }
    )]
    NotRecorded {
        /// This instance ran the job and stopped its worker.
        stopped_here: bool,
        source: StoreError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

impl From<QueryError> for AbortError {
    fn from(err: QueryError) -> Self {
        match err {
            QueryError::DomainNotFound => AbortError::DomainNotFound,
            QueryError::NotFound => AbortError::NotFound,
            QueryError::Store(err) => AbortError::Store(err),
            QueryError::Directory(err) => AbortError::Directory(err),
        }
    }
}

/// Why a job could not be paused or resumed. Nothing changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("Domain not found")]
    DomainNotFound,
    #[error("Broadcast job not found")]
    NotFound,
    /// Only a job that sends can be paused.
    #[error("The broadcast job is not sending (it is {0}); only a RUNNING job can be paused")]
    NotRunning(Status),
    /// Only a paused job can be resumed.
    #[error("The broadcast job is not paused (it is {0})")]
    NotPaused(Status),
    #[error("Cannot resume the broadcast job: another job of the domain is running")]
    RunningJobLimitExceeded,
    /// The job database cannot be trusted right now (safety mode).
    #[error("Broadcast manager is temporarily unavailable")]
    TemporarilyUnavailable,
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

impl From<QueryError> for HoldError {
    fn from(err: QueryError) -> Self {
        match err {
            QueryError::DomainNotFound => HoldError::DomainNotFound,
            QueryError::NotFound => HoldError::NotFound,
            QueryError::Store(err) => HoldError::Store(err),
            QueryError::Directory(err) => HoldError::Directory(err),
        }
    }
}

/// What `startBroadcast` did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The job sends now (or is the one an idempotency key created).
    Started(JobId),
    /// The job waits for its start time.
    Scheduled(JobId),
}

impl Accepted {
    pub fn id(self) -> JobId {
        match self {
            Accepted::Started(id) | Accepted::Scheduled(id) => id,
        }
    }
}

/// What a request's idempotency key decides before anything is checked or written.
enum Once {
    /// The job the key created earlier, with the same arguments: the answer.
    Earlier(JobId),
    /// No job has the key (or the request has none): the key to store with the new job.
    Key(Option<Idempotency>),
}

/// Adds a request's languages to the `arguments` its idempotency fingerprint is made of, only
/// when given, so that a request without them keeps the fingerprint it had before languages
/// existed. No translations and an empty list are the same request.
fn add_languages(
    arguments: &mut serde_json::Value,
    language: Option<&str>,
    translations: &[Translation],
) {
    if let Some(language) = language {
        arguments["language"] = language.into();
    }
    if !translations.is_empty() {
        arguments["translations"] = serde_json::to_value(translations).expect("strings serialise");
    }
}

/// The largest message a job of `spec` sending `content` would write (for the longest
/// recipient address of its domain) must fit what the servers accept from a component.
fn check_message_size(spec: &JobSpec, content: Content) -> Result<(), InvalidRequest> {
    let texts = Texts {
        language: spec.language.as_deref(),
        subject: &spec.subject,
        body: &spec.body,
        translations: &spec.translations,
    };
    // Every id has the same length: the largest job id stands for the job's.
    let announcement = Announcement::with_texts(MAX_JOB_ID, spec.sender.clone(), texts, content);
    spec::check_message_size(announcement.largest_message_len(&spec.domain))
}

/// Logs that a retry was answered with the job its key created earlier; returns its id.
fn earlier(id: JobId, domain: &str) -> JobId {
    tracing::info!(
        job_id = id,
        domain,
        "request with a known idempotency key answered with its job"
    );
    id
}

/// The broadcast operations of this instance.
#[derive(Clone)]
pub struct BroadcastService {
    store: Store,
    directory: Directory,
    manager: Manager,
    /// How long a start waits for its recipients to be counted before it answers
    /// (invariant 4a).
    count_wait: Duration,
}

/// [`BroadcastService::count_wait`] unless configured (`users.count_wait_ms`): long enough to
/// count a domain of a few hundred thousand accounts, short enough to answer within a second.
pub const COUNT_WAIT: Duration = Duration::from_millis(500);

impl BroadcastService {
    /// The operations on `store`, for the domains of `manager`'s scope.
    pub fn new(store: Store, directory: Directory, manager: Manager) -> Self {
        BroadcastService {
            store,
            directory,
            manager,
            count_wait: COUNT_WAIT,
        }
    }

    /// The same operations, a start waiting at most `wait` for its recipients to be counted
    /// before it answers; a larger domain is counted while it is sent to (invariant 4a).
    pub fn with_count_wait(mut self, wait: Duration) -> Self {
        self.count_wait = wait;
        self
    }

    /// Validates a request, fixes its recipients, stores the job and starts sending. With an
    /// idempotency key, a job of the domain created with the same key answers first, whatever
    /// its state since: the same arguments get its id, other arguments
    /// [`StartError::IdempotencyKeyReused`] (design invariant 11).
    ///
    /// With `start_at` in the future the job is scheduled (design invariant 12): everything is
    /// checked now, the job is stored held, with the number of recipients the domain has now,
    /// and its recipients are fixed when it starts; a time that passed at most
    /// [`spec::START_AT_GRACE`] ago starts it at once.
    pub async fn start(
        &self,
        mut request: BroadcastRequest,
        idempotency_key: Option<String>,
        start_at: Option<DateTime<Utc>>,
    ) -> Result<Accepted, StartError> {
        self.check_may_start(&request.domain)?;
        let asked = std::mem::take(&mut request.audience);
        let arguments = || {
            let mut arguments = serde_json::json!({
                "operation": "startBroadcast",
                "name": request.name,
                "subject": request.subject,
                "body": request.body,
                "sender": request.sender.to_string(),
                "rate": request.rate,
                "recipientGroup": asked.group.as_db_str(),
            });
            if let Some(at) = start_at {
                arguments["startAt"] = at.to_rfc3339_opts(SecondsFormat::Micros, true).into();
            }
            if let Some(recipients) = &asked.recipients {
                arguments["recipients"] = recipients.as_slice().into();
            }
            if let Some(group) = &asked.group_name {
                arguments["group"] = group.as_str().into();
            }
            add_languages(
                &mut arguments,
                request.language.as_deref(),
                &request.translations,
            );
            arguments
        };
        let once = self
            .earlier_job(&request.domain, idempotency_key, arguments)
            .await?;
        let start_at = match start_at {
            Some(at) => spec::check_start_at(at, Utc::now()),
            None => Ok(None),
        };
        let scheduled = matches!(start_at, Ok(Some(_)));
        let accepted = |id| {
            if scheduled {
                Accepted::Scheduled(id)
            } else {
                Accepted::Started(id)
            }
        };
        let once = match once {
            Once::Earlier(id) => return Ok(accepted(id)),
            Once::Key(once) => once,
        };
        let start_at = start_at?;
        // MongooseIM's order: rate, sender, recipients, then name, subject and body.
        spec::check_rate(request.rate)?;
        spec::check_sender(&request.sender, &request.domain)?;
        let sender = request
            .sender
            .node()
            .map(|node| node.as_str())
            .unwrap_or("");
        if !self.directory.user_exists(&request.domain, sender).await? {
            return Err(StartError::SenderNotFound);
        }
        let audience = asked.check(&request.domain)?;
        if start_at.is_none() && matches!(audience, Audience::AllUsers) {
            return self.start_uncounted(request, once).await;
        }
        let reading = self.recipients(&request.domain, &audience, start_at.is_some());
        let recipients = with_progress(&request.domain, "reading the recipients", reading).await?;
        if recipients.snapshot.is_empty() {
            return Err(StartError::NoRecipients);
        }
        let mut spec = JobSpec::parse(request)?;
        check_message_size(&spec, Content::Broadcast)?;
        spec.recipient_group = audience.recipient_group();
        spec.group = audience.group().map(str::to_owned);
        let node = self.manager.node();
        let lease_time: Duration = self.manager.lease_time();
        let users_database = self.manager.scope().users_database();
        let unknown = recipients.unknown.as_ref();
        if let Some(at) = start_at {
            // A list is stored now; the other audiences are read when the job starts.
            let listed = match (&audience, &recipients.snapshot) {
                (Audience::Listed(_), Snapshot::Listed(names)) => Some((names.as_slice(), unknown)),
                _ => None,
            };
            let created = self
                .store
                .create_scheduled(
                    once.as_ref(),
                    &spec,
                    at,
                    recipients.snapshot.len(),
                    listed,
                    users_database,
                )
                .await?;
            let id = match created {
                Created::New(id) => id,
                Created::Existing(id) => return Ok(accepted(earlier(id, &spec.domain))),
            };
            tracing::info!(job_id = id, domain = %spec.domain, name = %spec.name, start_at = %at, recipients_now = recipients.snapshot.len(), audience = spec.recipient_group.as_db_str(), rate = spec.rate, "broadcast scheduled");
            self.manager.wake_scheduler();
            return Ok(Accepted::Scheduled(id));
        }
        let storing = self.store.create_job_once(
            once.as_ref(),
            &spec,
            node,
            lease_time,
            &recipients.snapshot,
            unknown,
            users_database,
        );
        let step = format!(
            "storing the job and its {} recipients",
            recipients.snapshot.len()
        );
        let created = with_progress(&spec.domain, &step, storing).await?;
        let id = match created {
            Created::New(id) => id,
            Created::Existing(id) => return Ok(accepted(earlier(id, &spec.domain))),
        };
        tracing::info!(job_id = id, domain = %spec.domain, name = %spec.name, recipients = recipients.snapshot.len(), audience = spec.recipient_group.as_db_str(), unknown = unknown.map_or(0, |unknown| unknown.count), rate = spec.rate, "broadcast started");
        self.manager
            .launch_stored(Lease::first(id, self.manager.node()), true)
            .await;
        Ok(Accepted::Started(id))
    }

    /// Starts a job for every account of the domain (invariant 4a): its recipients are fixed
    /// in the users database ([`Directory::fix`]), the job is stored before they are counted,
    /// and its worker counts them (listing them into the job store where they must be listed)
    /// while this waits at most [`BroadcastService::count_wait`] to answer.
    async fn start_uncounted(
        &self,
        request: BroadcastRequest,
        once: Option<Idempotency>,
    ) -> Result<Accepted, StartError> {
        let fixing = self.directory.fix(&request.domain);
        let Some(fixed) = with_progress(&request.domain, "fixing the recipients", fixing).await?
        else {
            return Err(StartError::NoRecipients);
        };
        let mut spec = JobSpec::parse(request)?;
        check_message_size(&spec, Content::Broadcast)?;
        spec.recipient_group = Audience::AllUsers.recipient_group();
        let at = match &fixed {
            Fixed::CreatedBy { at } => Some(at.clone()),
            Fixed::Listed(_) => None,
        };
        // The set is listed or counted from now on; a failure within the wait changes
        // nothing, as a failure to read the recipients always did.
        let began = tokio::time::Instant::now();
        let directory = self.directory.clone();
        let domain = spec.domain.clone();
        let mut task = tokio::spawn(async move { fixed.measure(&directory, &domain).await });
        let measuring = match tokio::time::timeout(self.count_wait, &mut task).await {
            Ok(Ok(Err(err))) => return Err(err.into()),
            Ok(Ok(Ok(measured))) => Measuring::Done(Ok(measured)),
            Ok(Err(panicked)) => {
                return Err(DirectoryError::Layout(format!(
                    "reading the recipients failed: {panicked}"
                ))
                .into());
            }
            Err(_) => Measuring::Running(task),
        };
        let created = self
            .store
            .create_uncounted(
                once.as_ref(),
                &spec,
                self.manager.node(),
                self.manager.lease_time(),
                at.as_deref(),
                self.manager.scope().users_database(),
            )
            .await?;
        let id = match created {
            Created::New(id) => id,
            Created::Existing(id) => return Ok(Accepted::Started(earlier(id, &spec.domain))),
        };
        tracing::info!(job_id = id, domain = %spec.domain, name = %spec.name, audience = spec.recipient_group.as_db_str(), rate = spec.rate, "broadcast started; counting its recipients");
        let (counted, answer) = tokio::sync::oneshot::channel();
        let handover = Handover {
            measuring: Some(measuring),
            counted: Some(counted),
        };
        self.manager
            .launch_stored_with(Lease::first(id, self.manager.node()), true, handover)
            .await;
        let left = self.count_wait.saturating_sub(began.elapsed());
        if tokio::time::timeout(left, answer).await.is_err() {
            tracing::info!(job_id = id, domain = %spec.domain, waited = ?self.count_wait, "answering before the recipients are counted; the job is sending meanwhile");
        }
        Ok(Accepted::Started(id))
    }

    /// Who a job of `audience` on `domain` reaches if it starts now (invariant 13): every
    /// account (only counted with `count_only`: a dry run, or a scheduled job, whose recipients
    /// are fixed when it starts), the listed names that are accounts (with those that are not),
    /// or the group's members.
    async fn recipients(
        &self,
        domain: &str,
        audience: &Audience,
        count_only: bool,
    ) -> Result<Reached, StartError> {
        Ok(match audience {
            Audience::AllUsers if count_only => {
                Reached::all(self.directory.snapshot(domain).await?)
            }
            Audience::AllUsers => {
                Reached::all(self.directory.recipients_for_new_job(domain).await?)
            }
            Audience::Listed(names) => {
                let found = self.directory.existing(domain, names).await?;
                let unknown = Unknown::of(names, &found, domain);
                Reached {
                    snapshot: Snapshot::Listed(found),
                    unknown: Some(unknown),
                }
            }
            Audience::Group(group) => match self.directory.group_members(domain, group).await? {
                Some(members) => Reached::all(Snapshot::Listed(members)),
                None => return Err(StartError::UnknownGroup(group.clone())),
            },
        })
    }

    /// The job a request with `key` created earlier on `domain`, if any, or the checked key
    /// and the fingerprint of the request's `arguments` to store with the new job (none
    /// without a key). A key used with other arguments is refused.
    async fn earlier_job(
        &self,
        domain: &str,
        key: Option<String>,
        arguments: impl FnOnce() -> serde_json::Value,
    ) -> Result<Once, StartError> {
        let Some(key) = key else {
            return Ok(Once::Key(None));
        };
        let once = Idempotency::new(key, &arguments())?;
        match self.store.job_by_key(domain, &once).await? {
            KeyMatch::Free => Ok(Once::Key(Some(once))),
            KeyMatch::Same(id) => Ok(Once::Earlier(earlier(id, domain))),
            KeyMatch::Reused(id) => Err(StartError::IdempotencyKeyReused { id }),
        }
    }

    /// Starts a correction or retraction of job `id` of `domain`: a follow-up job that sends
    /// the recipients the original broadcast may have reached ([`Job::reached`]) a message
    /// amending it, from the same sender, at `rate`. A follow-up of a follow-up amends its
    /// original. Refused while the original runs, and for a retraction.
    pub async fn amend(
        &self,
        domain: &str,
        id: JobId,
        follow_up: FollowUp,
        rate: i64,
        idempotency_key: Option<String>,
    ) -> Result<JobId, StartError> {
        self.check_may_start(domain)?;
        let arguments = || match &follow_up {
            FollowUp::Correction {
                subject,
                body,
                language,
                translations,
            } => {
                let mut arguments = serde_json::json!({
                    "operation": "correctBroadcast",
                    "id": id,
                    "subject": subject,
                    "body": body,
                    "rate": rate,
                });
                add_languages(&mut arguments, language.as_deref(), translations);
                arguments
            }
            FollowUp::Retraction => serde_json::json!({
                "operation": "retractBroadcast",
                "id": id,
                "rate": rate,
            }),
        };
        let once = match self.earlier_job(domain, idempotency_key, arguments).await? {
            Once::Earlier(id) => return Ok(id),
            Once::Key(once) => once,
        };
        let original = self.amendable(domain, id).await?;
        spec::check_rate(rate)?;
        let sender = original.sending().map_err(StoreError::from)?.sender;
        let sender_name = sender.node().map(|node| node.as_str()).unwrap_or("");
        if !self.directory.user_exists(domain, sender_name).await? {
            return Err(StartError::SenderNotFound);
        }
        let reach = original.reached(i64::from(batch_size(original.rate)));
        if reach == 0 {
            return Err(StartError::NoRecipients);
        }
        let (kind, subject, body, language, translations) = match follow_up {
            FollowUp::Correction {
                subject,
                body,
                language,
                translations,
            } => (JobKind::Correction, subject, body, language, translations),
            FollowUp::Retraction => (
                JobKind::Retraction,
                String::new(),
                RETRACTION_FALLBACK_BODY.to_owned(),
                None,
                Vec::new(),
            ),
        };
        let spec = JobSpec::parse(BroadcastRequest {
            name: original.name.clone(),
            domain: domain.to_owned(),
            subject,
            body,
            sender,
            rate,
            audience: Default::default(),
            language,
            translations,
        })?;
        let content = match kind {
            JobKind::Retraction => Content::Retraction {
                original: original.id,
            },
            _ => Content::Correction {
                original: original.id,
            },
        };
        check_message_size(&spec, content)?;
        let node = self.manager.node();
        let created = self
            .store
            .create_follow_up(
                &spec,
                node,
                self.manager.lease_time(),
                &original,
                kind,
                reach,
                once.as_ref(),
            )
            .await?;
        let id = match created {
            Created::New(id) => id,
            Created::Existing(id) => return Ok(earlier(id, domain)),
        };
        tracing::info!(job_id = id, domain, amends = original.id, %kind, recipients = reach, rate = spec.rate, "follow-up started");
        self.manager
            .launch_stored(Lease::first(id, self.manager.node()), true)
            .await;
        Ok(id)
    }

    /// The broadcast a follow-up of job `id` of `domain` amends: the job itself, or the
    /// broadcast that job amends; it must have ended.
    async fn amendable(&self, domain: &str, id: JobId) -> Result<Job, StartError> {
        let of_domain = |job: Option<Job>| job.filter(|job| job.domain == domain);
        let job = of_domain(self.store.get_job(id).await?).ok_or(StartError::BroadcastNotFound)?;
        let original = match (job.kind, job.amends) {
            (JobKind::Retraction, _) => return Err(StartError::NotAmendable),
            (_, Some(amends)) => of_domain(self.store.get_job(amends.job_id).await?)
                .ok_or(StartError::BroadcastNotFound)?,
            (_, None) => job,
        };
        if original.state == ExecutionState::Running {
            return Err(StartError::StillRunning);
        }
        Ok(original)
    }

    /// Who a correction or retraction of job `id` of `domain` would reach now: the count and
    /// the first `sample`, as bare JIDs; nothing is written.
    pub async fn preview_follow_up(
        &self,
        domain: &str,
        id: JobId,
        sample: usize,
    ) -> Result<Preview, StartError> {
        if !self.manager.scope().serves_domain(domain) {
            return Err(StartError::DomainNotFound);
        }
        let original = self.amendable(domain, id).await?;
        let reach = original.reached(i64::from(batch_size(original.rate)));
        let sample = i64::try_from(sample).unwrap_or(i64::MAX);
        let limit = u32::try_from(reach.min(sample)).unwrap_or(u32::MAX);
        let first = match &original.snapshot_at {
            _ if limit == 0 => Vec::new(),
            None => self.store.snapshot_page(original.id, None, limit).await?,
            Some(at) => self.directory.page(domain, at, None, limit).await?,
        };
        Ok(Preview {
            count: reach,
            sample: first
                .into_iter()
                .map(|user| format!("{user}@{domain}"))
                .collect(),
            unknown: None,
        })
    }

    /// The recipient groups configured for `domain`, which this instance must serve.
    pub fn groups(&self, domain: &str) -> Result<Vec<String>, QueryError> {
        if !self.manager.scope().serves_domain(domain) {
            return Err(QueryError::DomainNotFound);
        }
        Ok(self.directory.groups(domain))
    }

    /// The domains this instance serves, in order.
    pub fn domains(&self) -> Vec<String> {
        self.manager.scope().domains().map(str::to_owned).collect()
    }

    /// A job may be started on `domain` now: it is served here, and this instance's leases
    /// can be trusted.
    fn check_may_start(&self, domain: &str) -> Result<(), StartError> {
        if !self.manager.scope().serves_domain(domain) {
            return Err(StartError::DomainNotFound);
        }
        if !self.manager.safety().accepts_new_jobs() {
            return Err(StartError::TemporarilyUnavailable);
        }
        Ok(())
    }

    /// One job of `domain`.
    pub async fn get(&self, domain: &str, id: JobId) -> Result<Job, QueryError> {
        self.check_known_domain(domain).await?;
        match self.store.get_job(id).await? {
            Some(job) if job.domain == domain => Ok(job),
            _ => Err(QueryError::NotFound),
        }
    }

    /// Jobs of `domain`, newest first, skipping `index` and returning at most `limit`.
    pub async fn list(&self, domain: &str, limit: i64, index: i64) -> Result<Vec<Job>, QueryError> {
        self.check_known_domain(domain).await?;
        Ok(self.store.list_jobs(domain, limit, index).await?)
    }

    /// Stops a running job of `domain`, whichever instance runs it (design invariant 5). The
    /// state changes in the database at once; this instance's worker of the job, if it runs
    /// one, is stopped and awaited before this returns, whatever the write's outcome, and
    /// another owner stops within about a second. A write that fails is
    /// [`AbortError::NotRecorded`]: the manager keeps the abort and retries it.
    pub async fn abort(&self, domain: &str, id: JobId) -> Result<(), AbortError> {
        let job = self.get(domain, id).await?;
        if job.state != ExecutionState::Running {
            return Err(AbortError::NotRunning);
        }
        match self.store.abort_job(id, domain).await {
            Ok(true) => {
                self.manager.stop_and_wait(id).await;
                tracing::info!(job_id = id, domain, "broadcast aborted by an administrator");
                Ok(())
            }
            Ok(false) => Err(AbortError::NotRunning),
            Err(source) => {
                let stopped_here = self.manager.keep_unrecorded_abort(id, domain).await;
                Err(AbortError::NotRecorded {
                    stopped_here,
                    source,
                })
            }
        }
    }

    /// Pauses a job of `domain` that sends, whichever instance runs it (design invariant 12):
    /// one guarded write holds it and hands its lease to nobody; this instance's worker of the
    /// job, if it runs one, is stopped and awaited before this returns, and another owner stops
    /// within about a second (its ownership check), its unacknowledged batch uncommitted.
    pub async fn pause(&self, domain: &str, id: JobId) -> Result<(), HoldError> {
        let job = self.get(domain, id).await?;
        if job.status() != Status::Running {
            return Err(HoldError::NotRunning(job.status()));
        }
        match self.store.pause_job(id, domain).await {
            Ok(true) => {
                self.manager.stop_and_wait(id).await;
                tracing::info!(
                    job_id = id,
                    domain,
                    processed = job.recipients_processed,
                    "broadcast paused by an administrator"
                );
                Ok(())
            }
            // It ended or was paused meanwhile.
            Ok(false) => Err(HoldError::NotRunning(self.get(domain, id).await?.status())),
            Err(err) => Err(HoldError::Store(err)),
        }
    }

    /// Resumes a paused job of `domain` from its committed progress: it is the domain's
    /// running job again, run here if this instance may run it, or else handed to an instance
    /// that may (its lease names nobody). Refused while another job of the domain runs.
    pub async fn resume(&self, domain: &str, id: JobId) -> Result<(), HoldError> {
        if !self.manager.scope().serves_domain(domain) {
            return Err(HoldError::DomainNotFound);
        }
        if !self.manager.safety().accepts_new_jobs() {
            return Err(HoldError::TemporarilyUnavailable);
        }
        let job = self.get(domain, id).await?;
        if job.status() != Status::Paused {
            return Err(HoldError::NotPaused(job.status()));
        }
        let runs_here = self
            .manager
            .scope()
            .may_run(&job.domain, job.users_database.as_ref())
            .is_ok();
        let owner = runs_here.then(|| self.manager.node());
        let lease = match self
            .store
            .resume_job(id, domain, owner, self.manager.lease_time())
            .await
        {
            Ok(Unheld::Running(lease)) => lease,
            Ok(Unheld::NotHeld) => {
                return Err(HoldError::NotPaused(self.get(domain, id).await?.status()));
            }
            Err(StoreError::RunningJobExists) => return Err(HoldError::RunningJobLimitExceeded),
            Err(err) => return Err(HoldError::Store(err)),
        };
        tracing::info!(
            job_id = id,
            domain,
            processed = job.recipients_processed,
            runs_here,
            "broadcast resumed by an administrator"
        );
        if runs_here {
            self.manager.launch_stored(lease, false).await;
        }
        Ok(())
    }

    /// Counts the recipients a broadcast to `audience` on `domain` would have now and lists the
    /// first `sample` of them (and, for a list, the names that are not accounts); nothing is
    /// written.
    pub async fn preview(
        &self,
        domain: &str,
        audience: AudienceRequest,
        sample: usize,
    ) -> Result<Preview, StartError> {
        if !self.manager.scope().serves_domain(domain) {
            return Err(StartError::DomainNotFound);
        }
        let audience = audience.check(domain)?;
        let reached = self.recipients(domain, &audience, true).await?;
        let first = match &reached.snapshot {
            Snapshot::Listed(users) => users.iter().take(sample).cloned().collect(),
            Snapshot::CreatedBy { at, .. } if sample > 0 => {
                let limit = u32::try_from(sample).unwrap_or(u32::MAX);
                self.directory.page(domain, at, None, limit).await?
            }
            Snapshot::CreatedBy { .. } => Vec::new(),
        };
        Ok(Preview {
            count: reached.snapshot.len(),
            sample: first
                .into_iter()
                .map(|user| format!("{user}@{domain}"))
                .collect(),
            unknown: reached.unknown,
        })
    }

    /// Deletes the listed jobs of `domain` that are not running; returns the ids deleted.
    pub async fn delete_inactive(
        &self,
        domain: &str,
        ids: &[JobId],
    ) -> Result<Vec<JobId>, QueryError> {
        self.check_known_domain(domain).await?;
        Ok(self.store.delete_inactive_jobs(domain, ids).await?)
    }

    /// Deletes every job of `domain` that is not running; returns the ids deleted.
    pub async fn delete_inactive_of_domain(&self, domain: &str) -> Result<Vec<JobId>, QueryError> {
        self.check_known_domain(domain).await?;
        Ok(self.store.delete_inactive_jobs_of_domain(domain).await?)
    }

    /// Aborts the running jobs of `domain` (at most one), whichever instance runs them, as
    /// MongooseIM does when a domain is removed; returns the ids aborted.
    pub async fn abort_domain(&self, domain: &str) -> Result<Vec<JobId>, AbortError> {
        self.check_known_domain(domain).await?;
        let mut aborted = Vec::new();
        for id in self.store.running_job_ids(domain).await? {
            match self.abort(domain, id).await {
                Ok(()) => aborted.push(id),
                // It ended meanwhile.
                Err(AbortError::NotRunning | AbortError::NotFound) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(aborted)
    }

    /// Why no instance runs `job` now, if it is running and nobody holds its lease.
    pub fn waiting_reason(&self, job: &Job) -> Option<String> {
        self.manager.scope().waiting_reason(job)
    }

    /// A domain served here, or one with jobs in the job database (only the global admin can
    /// name a domain that is not served here).
    async fn check_known_domain(&self, domain: &str) -> Result<(), QueryError> {
        if self.manager.scope().serves_domain(domain) || self.store.domain_has_jobs(domain).await? {
            Ok(())
        } else {
            Err(QueryError::DomainNotFound)
        }
    }
}
