//! The manager: runs one worker per job this instance owns and keeps their leases alive.
//!
//! At start it takes up the job database in the background, retrying while it cannot be
//! reached (the instance serves meanwhile, but runs and starts nothing: safety mode), then
//! resumes the running jobs whose lease names this instance (raising each lease's
//! epoch, so that a worker of an earlier life of this instance is fenced out). While it runs its
//! lease loop renews its leases every third of the lease time while it may hold any, and every
//! round ([`ROUND`]) reads in one statement the expired leases of others, the scheduled jobs and
//! its own leases; while it runs workers it checks every second that it still holds the lease
//! of each: a job aborted from any instance (its lease deleted) or taken over (its epoch raised)
//! stops sending within about a second. Idle, it makes one statement per round. On shutdown it stops its
//! workers and lets its leases expire at once, so the jobs can continue without waiting
//! (design invariant 7). A job of its own whose stored row cannot be read as a job is ended as
//! ABORT_ERROR wherever it is met (resume, takeover, adoption), never launched.
//!
//! It runs only what this instance serves ([`Scope`], design invariant 7a): a job of its own
//! that it may no longer run (its domain was removed from the config, or the users database
//! changed) is not resumed but handed over to nobody, so that an instance that serves it takes
//! it over; it takes over only jobs it may run; and each round it counts the running jobs
//! that nobody holds (`xmpp_broadcast_waiting_jobs`) and warns about those that wait longer
//! than a lease time, naming why this instance does not take them.
//!
//! It also runs the scheduler ([`super::schedule`]), which starts the scheduled jobs it may
//! run when their time has come (design invariant 12).
//!
//! Each worker runs supervised: one that panics ends its job as ABORT_ERROR with the panic's
//! message (fenced by its lease) and frees its slot. An administrator's abort that the job
//! database refused to record is kept here and retried every second (design invariant 5):
//! meanwhile the job's worker here stays stopped, the job is never launched here again, and its
//! lease, if this instance holds it, is renewed like any other, so that no instance takes the
//! job over.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broadcast::safety::Safety;
use crate::broadcast::scope::{ConflictKind, Scope};
use crate::broadcast::supervise::{Panicked, supervised};
use crate::broadcast::worker::{Handover, Shared, Worker};
use crate::directory::Directory;
use crate::job::{ExecutionState, Hold, InvalidRow, Job, JobEnd, JobId, Lease};
use crate::metrics::Metrics;
use crate::store::{ExpiredLease, Round, ScheduledJob, Store, StoreError};
use crate::xmpp::Connection;

/// Runs this instance's workers; cheap to clone.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// The users database, which workers of dated snapshots page.
    directory: Directory,
    connection: Connection,
    node: String,
    /// What this instance serves: which jobs it may run.
    scope: Scope,
    lease_time: Duration,
    metrics: Metrics,
    safety: Safety,
    stop: CancellationToken,
    tasks: TaskTracker,
    /// Live workers by job.
    workers: Mutex<HashMap<JobId, Running>>,
    /// Administrators' aborts that the job database refused to record, by job. Locked before
    /// `workers` when both are.
    pending_aborts: Mutex<HashMap<JobId, PendingAbort>>,
    /// Wakes the scheduler: a job was scheduled here, or a job of this instance ended.
    wake_scheduler: tokio::sync::Notify,
    /// The scheduled jobs as the last round of the lease loop read them, for the scheduler.
    scheduled: tokio::sync::watch::Sender<Vec<ScheduledJob>>,
    /// Kept so that the scheduler, subscribing after the first round, still sees it.
    scheduled_seen: tokio::sync::watch::Receiver<Vec<ScheduledJob>>,
    /// Whether this instance may hold a lease without a worker: its last read of its leases
    /// found some, or it claimed one since that it may not have launched. Until a read finds
    /// none, the ownership check and the renewal run even with no worker.
    may_hold_leases: AtomicBool,
    /// Wakes the lease loop: a worker started, so its lease is renewed on time.
    wake_lease_loop: tokio::sync::Notify,
}

/// A live worker: the epoch of the lease it runs under and the token that stops it.
struct Running {
    epoch: i64,
    stop: CancellationToken,
    /// Cancelled once the worker has returned (or panicked): it sends nothing more.
    done: CancellationToken,
    /// Stopped for an abort that is not recorded yet: its end is counted when the abort is.
    for_pending_abort: bool,
}

/// An administrator's abort of a running job that the job database has not recorded yet.
struct PendingAbort {
    domain: String,
    /// This instance's worker of the job was stopped for it: this instance counts the abort
    /// once it is recorded (otherwise the owner does, when its worker stops).
    stopped_here: bool,
}

/// How long an abort waits for this instance's worker of the job to stop and for the server to
/// process what it sent, before answering; MongooseIM waits 6 s for its worker.
const STOP_WAIT: Duration = Duration::from_secs(6);

/// How often an instance checks that it still holds the leases of its workers (only while it
/// runs workers or may hold a lease).
const OWNERSHIP_CHECK: Duration = Duration::from_secs(1);
/// The longest usual pause between two reads of the lease loop (expired leases of other
/// instances, scheduled jobs, own leases: one statement), a third of the lease time if that
/// is shorter; each pause is up to a fifth longer, so that instances started together do not
/// act in step. It bounds how late a scheduled job whose instance died starts, and how soon
/// an expired lease is taken over.
pub const ROUND: Duration = Duration::from_secs(10);
/// How often renewal is retried while it fails (safety mode).
const SAFETY_RETRY: Duration = Duration::from_secs(1);
/// Pause after the first failed attempt to take up the job database at start; it doubles
/// after each further failure, up to [`TAKE_UP_MAX_RETRY`].
const TAKE_UP_FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest pause between attempts to take up the job database.
const TAKE_UP_MAX_RETRY: Duration = Duration::from_secs(10);

/// How long the database may keep refusing a worker's call before its job is given up:
/// twice the lease time, and at least 20 seconds.
fn fault_limit(lease_time: Duration) -> Duration {
    (lease_time * 2).max(Duration::from_secs(20))
}

/// The usual pause between two reads of the lease loop with leases of `lease_time`.
fn round_period(lease_time: Duration) -> Duration {
    ROUND.min(lease_time / 3)
}

/// `period` and up to a fifth more, so that instances started together do not act in step.
fn up_to_a_fifth_later(period: Duration) -> Duration {
    jittered(period) + period / 5
}

/// `period` give or take a fifth, so that instances started together do not act in step.
fn jittered(period: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let fifth = period / 5;
    let offset = Duration::from_nanos(random % (2 * fifth.as_nanos() as u64 + 1));
    period - fifth + offset
}

/// The running jobs that nobody holds, as the renewal rounds see them.
#[derive(Default)]
struct Waiting {
    /// The leases (job, epoch) already warned about.
    warned: HashSet<(JobId, i64)>,
}

impl Waiting {
    /// Sets `xmpp_broadcast_waiting_jobs` to the jobs of each domain that wait.
    fn count(&self, metrics: &Metrics, waiting: &[&ExpiredLease]) {
        let mut by_domain: BTreeMap<&str, i64> = BTreeMap::new();
        for expired in waiting {
            *by_domain.entry(expired.domain.as_str()).or_default() += 1;
        }
        metrics.set_waiting_jobs(&by_domain);
    }

    /// Warns once about each job that has waited longer than `lease_time`: by then every
    /// live instance that may run it has had a round to take it.
    fn warn(&mut self, scope: &Scope, lease_time: Duration, waiting: &[&ExpiredLease]) {
        self.warned.retain(|warned| {
            waiting
                .iter()
                .any(|expired| (expired.lease.job_id, expired.lease.epoch) == *warned)
        });
        for expired in waiting {
            let lease = &expired.lease;
            if expired.expired_for < lease_time || !self.warned.insert((lease.job_id, lease.epoch))
            {
                continue;
            }
            let here = match scope.may_run(&expired.domain, expired.users_database.as_ref()) {
                Ok(()) => "this instance may run it but cannot start jobs now".to_owned(),
                Err(why) => why.to_string(),
            };
            tracing::warn!(
                job_id = lease.job_id,
                domain = %expired.domain,
                users_database = expired.users_database.as_ref().map_or("unrecorded", |db| db.as_str()),
                previous_owner = expired.previous_owner.as_deref().unwrap_or("none"),
                waiting_s = expired.expired_for.as_secs(),
                reason = %here,
                "a running job waits: no instance that serves its domain with its users database has taken it over"
            );
        }
    }
}

impl Manager {
    /// The manager of instance `node`, which runs the jobs `scope` allows.
    pub fn new(
        store: Store,
        directory: Directory,
        connection: Connection,
        metrics: Metrics,
        node: String,
        scope: Scope,
        lease_time: Duration,
    ) -> Self {
        let (scheduled, scheduled_seen) = tokio::sync::watch::channel(Vec::new());
        Manager {
            inner: Arc::new(Inner {
                store,
                directory,
                connection,
                node,
                scope,
                lease_time,
                metrics,
                safety: Safety::new(lease_time),
                stop: CancellationToken::new(),
                tasks: TaskTracker::new(),
                workers: Mutex::new(HashMap::new()),
                pending_aborts: Mutex::new(HashMap::new()),
                wake_scheduler: tokio::sync::Notify::new(),
                scheduled,
                scheduled_seen,
                may_hold_leases: AtomicBool::new(true),
                wake_lease_loop: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The name written into this instance's leases.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// What this instance serves.
    pub fn scope(&self) -> &Scope {
        &self.inner.scope
    }

    pub fn lease_time(&self) -> Duration {
        self.inner.lease_time
    }

    /// Whether this instance's leases can be trusted right now.
    pub fn safety(&self) -> &Safety {
        &self.inner.safety
    }

    /// Has the scheduler look at the scheduled jobs now (one was scheduled here).
    pub fn wake_scheduler(&self) {
        self.inner.wake_scheduler.notify_one();
    }

    pub(super) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(super) fn directory(&self) -> &Directory {
        &self.inner.directory
    }

    pub(super) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(super) fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    /// Resolves when the manager shuts down.
    pub(super) async fn stopping(&self) {
        self.inner.stop.cancelled().await
    }

    /// The scheduled jobs as each round of the lease loop reads them.
    pub(super) fn scheduled_rounds(&self) -> tokio::sync::watch::Receiver<Vec<ScheduledJob>> {
        self.inner.scheduled_seen.clone()
    }

    /// Resolves when [`Manager::wake_scheduler`] is called (or was, since the last time).
    pub(super) async fn scheduler_woken(&self) {
        self.inner.wake_scheduler.notified().await
    }

    /// Resumes every running job this instance owns and may run; hands the others over
    /// ([`Manager::hand_over`]). Returns how many were resumed.
    pub async fn resume_owned_jobs(&self) -> Result<usize, StoreError> {
        let inner = &self.inner;
        let jobs = inner.store.running_jobs_owned_by(&inner.node).await?;
        let mut resumed = 0;
        for job in jobs {
            let job_id = match &job {
                Ok(job) => job.id,
                Err(bad) => bad.job_id,
            };
            if self.is_running(job_id) {
                continue;
            }
            if let Ok(job) = &job
                && !self.hand_over_if_not_served(job).await
            {
                continue;
            }
            let lease = inner
                .store
                .reclaim_own_lease(job_id, &inner.node, inner.lease_time)
                .await?;
            let Some(lease) = lease else {
                continue;
            };
            match job {
                Ok(job) => {
                    let processed = job.recipients_processed;
                    let domain = job.domain.clone();
                    if self.launch(job, lease, false) {
                        tracing::info!(job_id, %domain, processed, "resuming job");
                        resumed += 1;
                    }
                }
                Err(bad) => self.end_unusable(&lease, &bad).await,
            }
        }
        self.warn_about_conflicts().await?;
        Ok(resumed)
    }

    /// Warns about the running jobs of this instance's domains that it will never run,
    /// because they were created against another users database.
    async fn warn_about_conflicts(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let jobs = inner.store.running_jobs().await?;
        for conflict in inner.scope.conflicts(&inner.node, &jobs) {
            if matches!(conflict.kind, ConflictKind::OtherUsersDatabase(_)) {
                tracing::warn!(job_id = conflict.job_id, "{conflict}");
            }
        }
        Ok(())
    }

    /// Starts the worker of a job this instance holds the lease of; `new` for a job just
    /// created here (counted as started), false for a resumed one. A job whose abort is
    /// waiting to be recorded, or that has a worker here already, is not launched: returns
    /// whether a worker started.
    pub fn launch(&self, job: Job, lease: Lease, new: bool) -> bool {
        self.launch_with(job, lease, new, Handover::default())
    }

    /// [`Manager::launch`], handing the worker what the request that created the job holds
    /// for it.
    fn launch_with(&self, job: Job, lease: Lease, new: bool, handover: Handover) -> bool {
        let inner = &self.inner;
        let Some(stop) = self.register(job.id, &job.domain, lease.epoch, new) else {
            return false;
        };
        let shared = Shared {
            store: inner.store.clone(),
            directory: inner.directory.clone(),
            connection: inner.connection.clone(),
            metrics: inner.metrics.clone(),
            safety: inner.safety.clone(),
            fault_limit: fault_limit(inner.lease_time),
        };
        let domain = job.domain.clone();
        let worker = Worker::new(shared, job, lease.clone(), stop, handover);
        self.supervise(lease, domain, worker.run());
        true
    }

    /// Reads back a job this instance has just claimed under `lease` (created, resumed or
    /// started from its schedule here) and launches its worker ([`Manager::launch`]). If it
    /// cannot be read, the lease stays this instance's and the ownership check adopts the job.
    pub async fn launch_stored(&self, lease: Lease, new: bool) {
        self.launch_stored_with(lease, new, Handover::default())
            .await
    }

    /// [`Manager::launch_stored`] for a job created here before its recipients were counted
    /// (invariant 4a), handing its worker what the request holds for it.
    pub async fn launch_stored_with(&self, lease: Lease, new: bool, handover: Handover) {
        let job_id = lease.job_id;
        match self.inner.store.get_job(job_id).await {
            Ok(Some(job)) => {
                self.launch_with(job, lease, new, handover);
            }
            Ok(None) => {}
            Err(err) => {
                self.may_hold_unattended_lease();
                tracing::warn!(
                    job_id,
                    error = %err,
                    "cannot read a job just claimed back; the ownership check resumes it"
                )
            }
        }
    }

    /// Notes that this instance may hold a lease without a worker (one it claimed but could
    /// not launch), so that the ownership check looks for it.
    fn may_hold_unattended_lease(&self) {
        self.inner.may_hold_leases.store(true, Ordering::Release);
    }

    /// Whether this instance may hold a lease: it runs a worker, an abort waits to be
    /// recorded, or its last read of its leases found one (or it claimed one since).
    fn may_hold_leases(&self) -> bool {
        self.inner.may_hold_leases.load(Ordering::Acquire)
            || self.live_jobs() > 0
            || !self
                .inner
                .pending_aborts
                .lock()
                .expect("pending abort lock")
                .is_empty()
    }

    /// Enters a worker of `job_id` under a lease of `epoch` in the map and counts it live;
    /// returns the token that stops it, or `None` if the job already has a worker here or its
    /// abort is waiting to be recorded.
    fn register(
        &self,
        job_id: JobId,
        domain: &str,
        epoch: i64,
        new: bool,
    ) -> Option<CancellationToken> {
        let inner = &self.inner;
        let stop = inner.stop.child_token();
        {
            let pending = inner.pending_aborts.lock().expect("pending abort lock");
            if pending.contains_key(&job_id) {
                tracing::warn!(
                    job_id,
                    domain,
                    "not running the job: an administrator's abort of it waits to be recorded"
                );
                return None;
            }
            let mut workers = inner.workers.lock().expect("worker map lock");
            if workers.contains_key(&job_id) {
                tracing::debug!(job_id, "the job already has a worker here");
                return None;
            }
            let running = Running {
                epoch,
                stop: stop.clone(),
                done: CancellationToken::new(),
                for_pending_abort: false,
            };
            workers.insert(job_id, running);
        }
        // Its lease is renewed from now on.
        inner.wake_lease_loop.notify_one();
        if new {
            inner.metrics.job_started(domain);
        }
        inner.metrics.worker_up(domain);
        Some(stop)
    }

    /// Runs `work`, the worker of a registered job, in a task until it returns or panics; then
    /// frees its slot and counts how the job ended. A panic ends the job as ABORT_ERROR with
    /// the panic's message, fenced by `lease`.
    fn supervise(
        &self,
        lease: Lease,
        domain: String,
        work: impl Future<Output = Option<JobEnd>> + Send + 'static,
    ) {
        let manager = self.clone();
        // Every event of the job's worker and of its end carries the job's id and domain.
        let span = tracing::info_span!("job", job_id = lease.job_id, domain = %domain);
        let task = async move {
            let end = supervised(work).await;
            let inner = &manager.inner;
            let job_id = lease.job_id;
            let running = inner
                .workers
                .lock()
                .expect("worker map lock")
                .remove(&job_id);
            let for_pending_abort = running.as_ref().is_some_and(|r| r.for_pending_abort);
            if let Some(running) = running {
                running.done.cancel();
            }
            let job_end = match end {
                Ok(Some(end)) => Some(end),
                Ok(None) if inner.stop.is_cancelled() => None,
                Ok(None) if for_pending_abort => {
                    tracing::info!(
                        job_id,
                        "worker stopped for an administrator's abort that waits to be recorded"
                    );
                    None
                }
                Ok(None) => manager.why_stopped(job_id).await,
                Err(panicked) => manager.end_panicked(&lease, panicked).await,
            };
            inner.metrics.worker_down(&domain, job_end);
            if job_end.is_some() {
                // A scheduled job of the domain may be waiting for this one to end.
                manager.wake_scheduler();
            }
        };
        self.inner
            .tasks
            .spawn(tracing::Instrument::instrument(task, span));
    }

    /// Ends the job of a worker that panicked as ABORT_ERROR with the panic's message, fenced
    /// by its lease. If the database cannot record it, the lease stays and the job is resumed
    /// like any job of this instance without a worker.
    async fn end_panicked(&self, lease: &Lease, panicked: Panicked) -> Option<JobEnd> {
        let job_id = lease.job_id;
        tracing::error!(job_id, error = %panicked, "ending the job of a worker that panicked");
        match self.inner.store.abandon(lease, &panicked.to_string()).await {
            Ok(true) => Some(JobEnd::AbortedByError),
            Ok(false) => {
                tracing::warn!(job_id, "the job was no longer this instance's to end");
                None
            }
            Err(err) => {
                tracing::error!(job_id, error = %err, "cannot record the job as failed; it resumes");
                None
            }
        }
    }

    /// How a job that this instance stopped running ended, if it did.
    async fn why_stopped(&self, job_id: JobId) -> Option<JobEnd> {
        match self.inner.store.get_job(job_id).await {
            Ok(Some(job)) => match job.state {
                ExecutionState::AbortAdmin => {
                    tracing::info!(
                        job_id,
                        "job aborted by an administrator; its worker stopped"
                    );
                    Some(JobEnd::AbortedByAdmin)
                }
                ExecutionState::AbortError => Some(JobEnd::AbortedByError),
                ExecutionState::Finished => Some(JobEnd::Finished),
                ExecutionState::Running if job.hold == Some(Hold::Paused) => {
                    tracing::info!(job_id, "job paused by an administrator; its worker stopped");
                    None
                }
                ExecutionState::Running => {
                    tracing::warn!(
                        job_id,
                        "job taken over by another instance; its worker stopped"
                    );
                    None
                }
            },
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(job_id, error = %err, "cannot read a stopped job");
                None
            }
        }
    }

    /// Stops this instance's worker of a job, if it runs one, and waits (at most
    /// [`STOP_WAIT`]) until it has returned and the server has processed everything it sent:
    /// then nothing more of the job goes out from this instance.
    pub async fn stop_and_wait(&self, job_id: JobId) {
        let done = {
            let workers = self.inner.workers.lock().expect("worker map lock");
            let Some(running) = workers.get(&job_id) else {
                return;
            };
            running.stop.cancel();
            running.done.clone()
        };
        let stopped = async {
            done.cancelled().await;
            self.inner.connection.flush().await;
        };
        if tokio::time::timeout(STOP_WAIT, stopped).await.is_err() {
            tracing::warn!(
                job_id,
                wait = ?STOP_WAIT,
                "the job's worker was told to stop, but its end or the server's acknowledgement \
                 of what it sent did not come in time"
            );
        }
    }

    /// Keeps an administrator's abort of a running job of `domain` that the job database
    /// refused to record: this instance's worker of the job, if it runs one, is stopped and
    /// awaited ([`Manager::stop_and_wait`]), the job is not launched here any more, and the
    /// abort is recorded by the ownership check, which retries it every second until it is
    /// recorded or the job is no longer running. Returns whether this instance stopped a
    /// worker of the job for it (now or for an earlier attempt).
    pub async fn keep_unrecorded_abort(&self, job_id: JobId, domain: &str) -> bool {
        let stopped_here = {
            let mut pending = self
                .inner
                .pending_aborts
                .lock()
                .expect("pending abort lock");
            let mut workers = self.inner.workers.lock().expect("worker map lock");
            let runs_here = match workers.get_mut(&job_id) {
                Some(running) => {
                    running.for_pending_abort = true;
                    true
                }
                None => false,
            };
            let abort = pending.entry(job_id).or_insert_with(|| PendingAbort {
                domain: domain.to_owned(),
                stopped_here: false,
            });
            abort.stopped_here |= runs_here;
            abort.stopped_here
        };
        self.stop_and_wait(job_id).await;
        stopped_here
    }

    /// Tries again to record the administrators' aborts that the job database refused. One
    /// that is recorded is counted here if this instance's worker was stopped for it.
    async fn record_pending_aborts(&self) {
        let inner = &self.inner;
        let pending: Vec<(JobId, String)> = inner
            .pending_aborts
            .lock()
            .expect("pending abort lock")
            .iter()
            .map(|(job_id, abort)| (*job_id, abort.domain.clone()))
            .collect();
        for (job_id, domain) in pending {
            let recorded = match inner.store.abort_job(job_id, &domain).await {
                Ok(recorded) => recorded,
                Err(err) => {
                    tracing::warn!(job_id, error = %err, "cannot record an administrator's abort yet; retrying in a second");
                    continue;
                }
            };
            {
                let mut pending = inner.pending_aborts.lock().expect("pending abort lock");
                let stopped_here = pending
                    .remove(&job_id)
                    .is_some_and(|abort| abort.stopped_here);
                // Counted before the abort leaves the set: whoever sees it gone sees it counted.
                if recorded && stopped_here {
                    inner.metrics.job_ended(&domain, JobEnd::AbortedByAdmin);
                }
            }
            if recorded {
                tracing::info!(job_id, %domain, "broadcast aborted by an administrator (recorded after a retry)");
            } else {
                tracing::info!(
                    job_id,
                    "the job is no longer running; its pending abort is dropped"
                );
            }
        }
    }

    /// Whether an administrator's abort of the job waits to be recorded.
    fn abort_pending(&self, job_id: JobId) -> bool {
        self.inner
            .pending_aborts
            .lock()
            .expect("pending abort lock")
            .contains_key(&job_id)
    }

    /// Checks every second that this instance still holds the lease of each of its workers,
    /// and stops the workers whose lease is gone or was taken.
    pub fn spawn_ownership_check(&self) {
        let manager = self.clone();
        self.inner.tasks.spawn(async move {
            let inner = &manager.inner;
            // Leases held with no worker, and for how many checks in a row.
            let mut unattended: HashMap<JobId, u32> = HashMap::new();
            loop {
                tokio::select! {
                    _ = inner.stop.cancelled() => break,
                    _ = tokio::time::sleep(OWNERSHIP_CHECK) => {}
                }
                // Idle: no worker to stop, no lease to adopt, no abort to record.
                if !manager.may_hold_leases() {
                    unattended.clear();
                    continue;
                }
                manager.record_pending_aborts().await;
                let held = match inner.store.owned_leases(&inner.node).await {
                    Ok(held) => held,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot check this instance's leases");
                        continue;
                    }
                };
                inner
                    .may_hold_leases
                    .store(!held.is_empty(), Ordering::Release);
                let mut orphans = Vec::new();
                {
                    manager.stop_workers_without(&held);
                    let workers = inner.workers.lock().expect("worker map lock");
                    unattended.retain(|job_id, _| !workers.contains_key(job_id));
                    for &(job_id, epoch) in &held {
                        // A job whose abort waits to be recorded keeps its lease, unsent.
                        if workers.contains_key(&job_id) || manager.abort_pending(job_id) {
                            continue;
                        }
                        // Seen twice, so that a job being launched right now is not adopted.
                        let checks = unattended.entry(job_id).or_insert(0);
                        *checks += 1;
                        if *checks >= 2 {
                            orphans.push(Lease {
                                job_id,
                                owner: inner.node.clone(),
                                epoch,
                            });
                        }
                    }
                }
                for lease in orphans {
                    unattended.remove(&lease.job_id);
                    manager.adopt(lease).await;
                }
            }
        });
    }

    /// Stops the workers whose lease is not among `held` (job, epoch) pairs.
    fn stop_workers_without(&self, held: &[(JobId, i64)]) {
        let workers = self.inner.workers.lock().expect("worker map lock");
        for (job_id, running) in workers.iter() {
            if !held.contains(&(*job_id, running.epoch)) {
                running.stop.cancel();
            }
        }
    }

    /// Whether this instance may run `job` of its own; if not, hands its lease over to
    /// nobody with a warning, so that an instance that serves it takes it over (or, if none
    /// does, it waits, visible, for one or for the global admin's abort).
    async fn hand_over_if_not_served(&self, job: &Job) -> bool {
        let inner = &self.inner;
        let Err(why) = inner
            .scope
            .may_run(&job.domain, job.users_database.as_ref())
        else {
            return true;
        };
        tracing::warn!(
            job_id = job.id,
            domain = %job.domain,
            reason = %why,
            "not running a job of this instance's: it is handed over to an instance that serves it, or waits for one (the global admin can abort it)"
        );
        if let Err(err) = inner.store.disown_lease(job.id, &inner.node).await {
            tracing::warn!(job_id = job.id, error = %err, "cannot hand the job's lease over; it expires by itself");
        }
        false
    }

    /// Resumes a running job whose lease this instance holds but whose worker stopped without
    /// ending it (it gave up while the database could not even record that).
    async fn adopt(&self, lease: Lease) {
        if !self.inner.safety.accepts_new_jobs() {
            return;
        }
        match self.inner.store.get_job(lease.job_id).await {
            Ok(Some(job))
                if job.state == ExecutionState::Running
                    && self.hand_over_if_not_served(&job).await =>
            {
                let (job_id, processed) = (job.id, job.recipients_processed);
                if self.launch(job, lease, false) {
                    tracing::warn!(
                        job_id,
                        processed,
                        "resumed a job of this instance that had no worker"
                    );
                }
            }
            Ok(_) => {}
            Err(StoreError::InvalidRow(bad)) => self.end_unusable(&lease, &bad).await,
            Err(err) => {
                tracing::warn!(job_id = lease.job_id, error = %err, "cannot read a job to resume")
            }
        }
    }

    /// Ends a job of this instance whose stored row cannot be read as a job: ABORT_ERROR with
    /// the row's fault as the reason, fenced by `lease`, and the lease gone, so that no round
    /// takes the job up again. If the database fails meanwhile, the lease stays and the next
    /// ownership check tries again.
    async fn end_unusable(&self, lease: &Lease, bad: &InvalidRow) {
        let job_id = lease.job_id;
        tracing::error!(job_id, error = %bad, "ending a job whose stored data is unusable");
        match self.inner.store.abandon(lease, &bad.to_string()).await {
            Ok(true) => match &bad.domain {
                Some(domain) => self.inner.metrics.job_ended(domain, JobEnd::AbortedByError),
                None => tracing::warn!(job_id, "the job's domain is unreadable; not counted"),
            },
            Ok(false) => tracing::warn!(job_id, "the job was no longer this instance's to end"),
            Err(err) => tracing::warn!(job_id, error = %err, "cannot record the job as failed"),
        }
    }

    fn is_running(&self, job_id: JobId) -> bool {
        self.inner
            .workers
            .lock()
            .expect("worker map lock")
            .contains_key(&job_id)
    }

    /// Number of workers alive on this instance.
    pub fn live_jobs(&self) -> usize {
        self.inner.workers.lock().expect("worker map lock").len()
    }

    /// Runs the lease loop until shutdown. While this instance may hold leases it renews them
    /// every third of the lease time; every [`round_period`] it reads, in one statement, the
    /// expired leases of other instances (of which it takes over one it may run), the scheduled
    /// jobs (for the scheduler) and its own leases. An instance that holds no lease and runs no
    /// worker thus makes one statement per round, and that read is what vouches for the job
    /// database (safety mode): with nothing held, a read that succeeds is all a renewal would
    /// prove. While renewal (or, with nothing held, the read) fails the instance is in safety
    /// mode: it retries every second, refuses new jobs, and its workers pause before their
    /// leases could expire.
    pub fn spawn_lease_loop(&self) {
        let manager = self.clone();
        self.inner.tasks.spawn(async move {
            let inner = &manager.inner;
            let mut renewal_failing = false;
            let mut read_failing = false;
            let mut waiting = Waiting::default();
            // `take_up_jobs` has just renewed; the first read is now.
            let mut next_renewal = Instant::now() + jittered(inner.lease_time / 3);
            let mut next_read = Instant::now();
            loop {
                let wake_at = if renewal_failing || read_failing {
                    Instant::now() + SAFETY_RETRY
                } else if manager.may_hold_leases() {
                    next_read.min(next_renewal)
                } else {
                    next_read
                };
                tokio::select! {
                    _ = inner.stop.cancelled() => break,
                    _ = tokio::time::sleep_until(wake_at.into()) => {}
                    // A worker started: its lease's renewal may now be due.
                    _ = inner.wake_lease_loop.notified() => continue,
                }
                let now = Instant::now();
                if renewal_failing || (manager.may_hold_leases() && now >= next_renewal) {
                    match manager.renew().await {
                        Ok(renewed) => {
                            if renewal_failing {
                                tracing::warn!(renewed, "job database reachable again; leaving safety mode");
                            }
                            renewal_failing = false;
                            next_renewal = now + jittered(inner.lease_time / 3);
                        }
                        Err(err) => {
                            if !renewal_failing {
                                tracing::error!(error = %err, "cannot renew leases; safety mode: new jobs are refused and sending pauses before the leases could expire");
                            }
                            renewal_failing = true;
                            inner.safety.renewal_failed();
                            continue;
                        }
                    }
                }
                if read_failing || now >= next_read {
                    match manager.read_round(&mut waiting).await {
                        Ok(()) => {
                            if read_failing {
                                tracing::warn!("job database readable again");
                            }
                            read_failing = false;
                            next_read = now + up_to_a_fifth_later(round_period(inner.lease_time));
                        }
                        Err(err) => {
                            if !read_failing {
                                tracing::error!(error = %err, "cannot read the leases and scheduled jobs; retrying every second (with no lease held: safety mode, new jobs are refused)");
                            }
                            read_failing = true;
                        }
                    }
                }
            }
        });
    }

    /// One read of the lease loop ([`Store::lease_round`]): with no lease held and no worker it
    /// vouches for the job database; it takes over one expired lease, hands the scheduled jobs
    /// to the scheduler and notes whether this instance holds leases.
    async fn read_round(&self, waiting: &mut Waiting) -> Result<(), StoreError> {
        let inner = &self.inner;
        let began = Instant::now();
        let round: Round = match inner.store.lease_round(&inner.node).await {
            Ok(round) => round,
            Err(err) => {
                if !self.may_hold_leases() {
                    inner.safety.renewal_failed();
                }
                return Err(err);
            }
        };
        inner
            .may_hold_leases
            .store(!round.owned.is_empty(), Ordering::Release);
        if !self.may_hold_leases() {
            // Nothing held when the read began, and a lease claimed since expires a lease
            // time after its claim: later than any deadline this read sets.
            inner.safety.renewed(began);
        }
        self.take_over_one(round.expired, waiting).await;
        inner.scheduled.send_replace(round.scheduled);
        Ok(())
    }

    /// Renews this instance's leases once; returns how many. Workers whose lease was taken
    /// meanwhile stop before the safety deadline moves: a renewal vouches only for the leases
    /// still held.
    async fn renew(&self) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let began = std::time::Instant::now();
        let renewed = inner
            .store
            .renew_leases(&inner.node, inner.lease_time)
            .await?;
        let held = inner.store.owned_leases(&inner.node).await?;
        inner
            .may_hold_leases
            .store(!held.is_empty(), Ordering::Release);
        self.stop_workers_without(&held);
        inner.safety.renewed(began);
        Ok(renewed)
    }

    /// Takes up the job database in the background, so that the instance serves from its first
    /// second with or without it: attempts [`Manager::take_up_jobs`] until it succeeds, pausing
    /// [`TAKE_UP_FIRST_RETRY`] after the first failure and twice as long after each next one, up
    /// to [`TAKE_UP_MAX_RETRY`]. Each distinct failure is logged once. Until it succeeds the
    /// instance is in safety mode: no job runs or starts.
    pub fn spawn_take_up(&self) {
        let manager = self.clone();
        self.inner.tasks.spawn(async move {
            let stop = &manager.inner.stop;
            let mut pause = TAKE_UP_FIRST_RETRY;
            let mut last_failure: Option<String> = None;
            loop {
                let attempt = tokio::select! {
                    _ = stop.cancelled() => return,
                    attempt = manager.take_up_jobs() => attempt,
                };
                let err = match attempt {
                    Ok(resumed) if last_failure.is_some() => {
                        tracing::warn!(resumed, "job database reached; this instance's jobs are resumed and new ones accepted");
                        return;
                    }
                    Ok(resumed) => {
                        tracing::info!(resumed, "job database reached");
                        return;
                    }
                    Err(err) => err.to_string(),
                };
                if last_failure.as_ref() != Some(&err) {
                    tracing::error!(error = %err, retry_in = ?pause, "the job database is not usable; it is tried again in the background, and jobs are refused meanwhile");
                } else {
                    tracing::debug!(error = %err, retry_in = ?pause, "the job database is still not usable");
                }
                last_failure = Some(err);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(TAKE_UP_MAX_RETRY);
            }
        });
    }

    /// Takes up the job database: reaches it and runs its migrations ([`Store::reach`]),
    /// resumes this instance's jobs, renews its leases — the first renewal, from which the
    /// safety deadline counts — and starts the lease renewal, the ownership check and the
    /// scheduler. Returns
    /// how many jobs were resumed. On failure nothing more is started and it may be called
    /// again: workers resumed meanwhile wait for the first renewal.
    pub async fn take_up_jobs(&self) -> Result<usize, StoreError> {
        self.inner.store.reach().await?;
        let resumed = self.resume_owned_jobs().await?;
        self.renew().await?;
        self.spawn_lease_loop();
        self.spawn_ownership_check();
        self.spawn_scheduler();
        Ok(resumed)
    }

    /// Takes over at most one job whose owner stopped renewing its lease and that this
    /// instance may run, so that the jobs of a lost instance spread over the instances that
    /// remain instead of all going to the first. Counts the jobs that nobody holds, and warns
    /// once about each that waits longer than a lease time for an instance that may run it.
    async fn take_over_one(&self, expired: Vec<ExpiredLease>, waiting: &mut Waiting) {
        let inner = &self.inner;
        let taken = if inner.safety.accepts_new_jobs() {
            let mine = expired.iter().find(|expired| {
                inner
                    .scope
                    .may_run(&expired.domain, expired.users_database.as_ref())
                    .is_ok()
            });
            match mine {
                Some(expired) => self.take_over(expired).await,
                None => None,
            }
        } else {
            None
        };
        let still_waiting: Vec<&ExpiredLease> = expired
            .iter()
            .filter(|expired| Some(expired.lease.job_id) != taken)
            .collect();
        waiting.count(&inner.metrics, &still_waiting);
        waiting.warn(&inner.scope, inner.lease_time, &still_waiting);
    }

    /// Takes over one expired lease and runs its job; returns the job's id if the lease was
    /// taken.
    async fn take_over(&self, expired: &ExpiredLease) -> Option<JobId> {
        let inner = &self.inner;
        let lease = match inner
            .store
            .take_lease(&expired.lease, &inner.node, inner.lease_time)
            .await
        {
            Ok(Some(lease)) => lease,
            Ok(None) => return None,
            Err(err) => {
                tracing::warn!(job_id = expired.lease.job_id, error = %err, "cannot take over a job");
                return None;
            }
        };
        match inner.store.get_job(lease.job_id).await {
            Ok(Some(job)) => {
                let (job_id, processed) = (job.id, job.recipients_processed);
                let domain = job.domain.clone();
                if self.launch(job, lease, false) {
                    tracing::warn!(
                        job_id,
                        %domain,
                        previous_owner = expired.previous_owner.as_deref().unwrap_or("none"),
                        processed,
                        "took over a job whose owner stopped renewing its lease"
                    );
                }
            }
            Ok(None) => {}
            Err(StoreError::InvalidRow(bad)) => self.end_unusable(&lease, &bad).await,
            // The lease is ours: the next ownership round resumes the job.
            Err(err) => {
                self.may_hold_unattended_lease();
                tracing::warn!(job_id = lease.job_id, error = %err, "cannot read a job taken over")
            }
        }
        Some(expired.lease.job_id)
    }

    /// Stops every worker, waits for them, and releases this instance's leases.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.stop.cancel();
        inner.tasks.close();
        inner.tasks.wait().await;
        self.record_pending_aborts().await;
        for (job_id, abort) in inner
            .pending_aborts
            .lock()
            .expect("pending abort lock")
            .iter()
        {
            tracing::error!(job_id, domain = %abort.domain, "stopping with an administrator's abort not recorded: the job goes on wherever it is resumed; abort it again");
        }
        match inner.store.release_leases(&inner.node).await {
            Ok(released) => tracing::info!(released, "leases released"),
            // Never reached since the start: this instance has taken up no lease.
            Err(StoreError::NotReached) => {}
            Err(err) => {
                tracing::warn!(error = %err, "cannot release leases; they expire by themselves")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use jid::BareJid;

    use super::*;
    use crate::config::{ComponentConfig, Secret, UsersConfig, UsersSchema};
    use crate::job::{JobSpec, RecipientGroup, Snapshot};

    const LEASE_TIME: Duration = Duration::from_secs(60);
    /// How long a test waits for a job to end.
    const DEADLINE: Duration = Duration::from_secs(10);

    /// The job of the tests: a broadcast to every user of example.com.
    fn job_spec() -> JobSpec {
        JobSpec {
            name: "maintenance".into(),
            domain: "example.com".into(),
            subject: "Tonight".into(),
            body: "The server restarts at 22:00.".into(),
            sender: BareJid::new("admin@example.com").unwrap(),
            rate: 100,
            recipient_group: RecipientGroup::AllUsersInDomain,
            group: None,
            language: None,
            translations: Vec::new(),
        }
    }

    /// A manager of `node1` on a job store in a scratch SQLite file, which is also its (Prosody)
    /// users database, with a component connection to a port nothing listens on: the jobs here
    /// end before they would send.
    struct Instance {
        manager: Manager,
        store: Store,
        metrics: Metrics,
        stop_connection: CancellationToken,
        _dir: tempfile::TempDir,
    }

    impl Instance {
        async fn new() -> Self {
            Instance::with_lease_time(LEASE_TIME).await
        }

        async fn with_lease_time(lease_time: Duration) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/jobs.db", dir.path().display());
            let store = Store::connect(&url, 4).await.unwrap();
            store
                .execute_for_test(
                    "CREATE TABLE prosody (host TEXT NOT NULL, \"user\" TEXT NOT NULL, \
                     store TEXT NOT NULL, key TEXT NOT NULL, type TEXT NOT NULL, \
                     value TEXT NOT NULL)",
                )
                .await;
            let directory = Directory::connect(&UsersConfig {
                schema: UsersSchema::Prosody,
                url: Secret::new(url),
                time_zone: None,
                database_id: None,
                groups: Default::default(),
            })
            .await
            .unwrap();
            let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .unwrap()
                .port();
            let stop_connection = CancellationToken::new();
            let (connection, _) = Connection::start(
                ComponentConfig {
                    jid: BareJid::new("broadcast.example.com").unwrap(),
                    secret: Secret::new("secret"),
                    server: format!("127.0.0.1:{closed_port}"),
                },
                stop_connection.clone(),
            );
            let metrics = Metrics::new(&["example.com".to_owned()]);
            let scope = Scope::new(&["example.com".to_owned()], directory.identity().clone());
            let manager = Manager::new(
                store.clone(),
                directory,
                connection,
                metrics.clone(),
                "node1".to_owned(),
                scope,
                lease_time,
            );
            Instance {
                manager,
                store,
                metrics,
                stop_connection,
                _dir: dir,
            }
        }

        /// A running job of example.com owned by node1, with `corruption` applied to its row
        /// (an assignment of the `UPDATE … SET` clause).
        async fn job_stored_with(&self, corruption: &str) -> JobId {
            self.job_of("node1", LEASE_TIME, corruption).await
        }

        /// A running job of example.com owned by `owner` for `lease_time`, with `corruption`
        /// applied to its row.
        async fn job_of(&self, owner: &str, lease_time: Duration, corruption: &str) -> JobId {
            let spec = job_spec();
            let users = Snapshot::Listed(vec!["u1".into(), "u2".into(), "u3".into()]);
            let id = self
                .store
                .create_job(
                    &spec,
                    owner,
                    lease_time,
                    &users,
                    &self.manager.scope().users_database().clone(),
                )
                .await
                .unwrap();
            self.store
                .execute_for_test(&format!("UPDATE xb_jobs SET {corruption} WHERE id = {id}"))
                .await;
            id
        }

        /// The stored state and reason of a job, read with SQL (the row may not make a `Job`).
        async fn stored_end(&self, id: JobId) -> (String, Option<String>) {
            let column = |name: &str| format!("SELECT {name} FROM xb_jobs WHERE id = {id}");
            let state = self.store.text_for_test(&column("execution_state")).await;
            let reason = self.store.text_for_test(&column("abortion_reason")).await;
            (state.unwrap(), reason)
        }

        /// Waits until the job is no longer running; returns its state and reason.
        async fn ended(&self, id: JobId) -> (String, Option<String>) {
            let deadline = std::time::Instant::now() + DEADLINE;
            loop {
                let end = self.stored_end(id).await;
                if end.0 != "running" {
                    return end;
                }
                assert!(std::time::Instant::now() < deadline, "job {id} still runs");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        /// Nothing of this instance can take the job up again: no lease, no worker, and a
        /// resume finds nothing to run.
        async fn assert_never_taken_up_again(&self, id: JobId) {
            assert!(self.store.owned_leases("node1").await.unwrap().is_empty());
            assert_eq!(self.manager.resume_owned_jobs().await.unwrap(), 0);
            let deadline = std::time::Instant::now() + DEADLINE;
            while self.manager.live_jobs() > 0 {
                assert!(std::time::Instant::now() < deadline, "a worker still runs");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(self.stored_end(id).await.0, "abort_error");
            assert_eq!(self.metric("mod_broadcast_live_jobs"), "0");
            // Counted once, whether a worker ended it or the manager did without one.
            assert_eq!(self.metric("mod_broadcast_jobs_aborted_error_total"), "1");
        }

        /// A valid running job of example.com owned by node1, and its lease.
        async fn valid_job(&self) -> (Job, Lease) {
            let id = self.job_stored_with("name = name").await;
            let job = self.store.get_job(id).await.unwrap().unwrap();
            (job, Lease::first(id, "node1"))
        }

        /// The value of a metric series of example.com.
        fn metric(&self, name: &str) -> String {
            let text = self.metrics.render();
            let series = format!("{name}{{host_type=\"example.com\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(series.as_str()))
                .unwrap_or_else(|| panic!("no {series} in {text}"))
                .to_owned()
        }

        async fn shut_down(self) {
            self.manager.shutdown().await;
            self.stop_connection.cancel();
            self.store.close().await;
        }
    }

    /// A job whose instance stopped between answering and storing its recipients (invariant
    /// 4a) is listed and counted by the worker that resumes it, from the accounts there are
    /// then, before it sends anything.
    #[tokio::test]
    async fn a_resumed_uncounted_job_lists_its_recipients_then() {
        let instance = Instance::new().await;
        for user in ["u2", "u1"] {
            instance
                .store
                .execute_for_test(&format!(
                    "INSERT INTO prosody VALUES ('example.com', '{user}', 'accounts', 'salt', \
                     'string', 'x')"
                ))
                .await;
        }
        let spec = job_spec();
        let users_database = instance.manager.scope().users_database().clone();
        let id = instance
            .store
            .create_uncounted(None, &spec, "node1", LEASE_TIME, None, &users_database)
            .await
            .unwrap()
            .id();
        assert_eq!(instance.manager.resume_owned_jobs().await.unwrap(), 1);
        let deadline = std::time::Instant::now() + DEADLINE;
        let job = loop {
            let job = instance.store.get_job(id).await.unwrap().unwrap();
            if job.recipients_counted {
                break job;
            }
            assert!(std::time::Instant::now() < deadline, "job {id} not counted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(job.recipient_count, 2);
        assert_eq!(job.recipients_processed, 0, "nothing sent: no server");
        assert_eq!(
            instance.store.snapshot_page(id, None, 10).await.unwrap(),
            ["u1", "u2"]
        );
        instance.shut_down().await;
    }

    /// A stored sender that no longer parses ends the job as ABORT_ERROR, naming the column,
    /// once: before, the worker reported a lost lease and the job was launched again every
    /// two seconds.
    #[tokio::test]
    async fn a_stored_sender_that_does_not_parse_ends_the_job_once() {
        let instance = Instance::new().await;
        let id = instance
            .job_stored_with("sender_jid = '@example.com'")
            .await;
        assert_eq!(instance.manager.resume_owned_jobs().await.unwrap(), 1);
        let (state, reason) = instance.ended(id).await;
        assert_eq!(state, "abort_error");
        let reason = reason.unwrap();
        assert!(
            reason.contains("sender_jid") && reason.contains("not a bare JID"),
            "{reason}"
        );
        instance.assert_never_taken_up_again(id).await;
        let job = instance.store.get_job(id).await.unwrap().unwrap();
        assert!(job.started_at.is_none(), "nothing was started: {job:?}");
        assert_eq!(
            instance.metric("mod_broadcast_jobs_aborted_error_total"),
            "1"
        );
        instance.shut_down().await;
    }

    /// A stored rate of 0 made batches of no recipients, and the job FINISHED with nothing sent.
    #[tokio::test]
    async fn a_stored_rate_of_zero_is_an_error_not_a_finished_job() {
        for rate in [0, 1001] {
            let instance = Instance::new().await;
            let id = instance
                .job_stored_with(&format!("message_rate = {rate}"))
                .await;
            assert_eq!(instance.manager.resume_owned_jobs().await.unwrap(), 1);
            let (state, reason) = instance.ended(id).await;
            assert_eq!(state, "abort_error", "rate {rate}");
            let reason = reason.unwrap();
            assert!(
                reason.contains(&format!("message_rate is {rate}, outside 1..=1000")),
                "{reason}"
            );
            instance.assert_never_taken_up_again(id).await;
            let job = instance.store.get_job(id).await.unwrap().unwrap();
            assert_eq!(job.recipients_processed, 0);
            instance.shut_down().await;
        }
    }

    /// Stored translations that make a message larger than Prosody takes from a component would
    /// end the component's stream at every attempt: the job ends as ABORT_ERROR before sending.
    /// A stored language that breaks the request's rules ends it alike, naming the column.
    #[tokio::test]
    async fn a_stored_message_over_the_size_limit_ends_the_job_before_sending() {
        let translations: Vec<serde_json::Value> = (0..8)
            .map(|n| {
                let body = "&".repeat(16_000);
                serde_json::json!({"language": format!("x-l{n}"), "subject": "", "body": body})
            })
            .collect();
        let translations = serde_json::to_string(&translations).unwrap();
        for (corruption, column, problem) in [
            (
                format!("language = 'en', translations = '{translations}'"),
                "translations",
                "make a message of",
            ),
            ("language = 'en_US'".to_owned(), "language", "en_US"),
        ] {
            let instance = Instance::new().await;
            let id = instance.job_stored_with(&corruption).await;
            assert_eq!(instance.manager.resume_owned_jobs().await.unwrap(), 1);
            let (state, reason) = instance.ended(id).await;
            assert_eq!(state, "abort_error");
            let reason = reason.unwrap();
            assert!(
                reason.contains(&format!("its {column}")) && reason.contains(problem),
                "{reason}"
            );
            instance.assert_never_taken_up_again(id).await;
            let job = instance.store.get_job(id).await.unwrap().unwrap();
            assert!(job.started_at.is_none(), "nothing was started: {job:?}");
            instance.shut_down().await;
        }
    }

    /// A row that cannot even be read as a job is ended at resume, without a worker, and
    /// `serve` still starts (the resume does not fail).
    #[tokio::test]
    async fn an_unreadable_job_is_ended_when_resumed() {
        let instance = Instance::new().await;
        let id = instance.job_stored_with("recipients_processed = -1").await;
        assert_eq!(instance.manager.resume_owned_jobs().await.unwrap(), 0);
        assert_eq!(instance.manager.live_jobs(), 0);
        let (state, reason) = instance.stored_end(id).await;
        assert_eq!(state, "abort_error");
        let reason = reason.unwrap();
        assert!(reason.contains("recipients_processed is -1"), "{reason}");
        instance.assert_never_taken_up_again(id).await;
        instance.shut_down().await;
    }

    /// The same, met when taking over the job of an instance that stopped renewing its lease.
    #[tokio::test]
    async fn an_unreadable_job_is_ended_when_taken_over() {
        let instance = Instance::with_lease_time(Duration::from_secs(3)).await;
        let expired = Duration::from_millis(100);
        let id = instance
            .job_of("node2", expired, "recipients_processed = -2")
            .await;
        instance.manager.spawn_lease_loop();
        let (state, reason) = instance.ended(id).await;
        assert_eq!(state, "abort_error");
        assert!(reason.unwrap().contains("recipients_processed is -2"));
        instance.assert_never_taken_up_again(id).await;
        instance.shut_down().await;
    }

    /// The same, met by the ownership check (a held lease without a worker): before, it logged
    /// that the job could not be read, every second, for ever.
    #[tokio::test]
    async fn an_unreadable_job_is_ended_by_the_ownership_check() {
        let instance = Instance::new().await;
        let id = instance.job_stored_with("recipient_count = -3").await;
        instance.manager.safety().renewed(std::time::Instant::now());
        instance.manager.spawn_ownership_check();
        let (state, reason) = instance.ended(id).await;
        assert_eq!(state, "abort_error");
        assert!(reason.unwrap().contains("recipient_count is -3"));
        instance.assert_never_taken_up_again(id).await;
        instance.shut_down().await;
    }

    /// A worker that panics ends its job as ABORT_ERROR with the panic's message and frees its
    /// slot: before, the job stayed RUNNING, in the worker map and counted live, for ever.
    #[tokio::test]
    async fn a_worker_that_panics_ends_its_job_and_frees_its_slot() {
        let instance = Instance::new().await;
        let (job, lease) = instance.valid_job().await;
        let manager = &instance.manager;
        let stop = manager.register(job.id, &job.domain, lease.epoch, false);
        assert!(stop.is_some());
        assert_eq!(instance.metric("mod_broadcast_live_jobs"), "1");
        manager.supervise(lease, job.domain.clone(), async move {
            tokio::task::yield_now().await;
            panic!("batch {} went wrong", 2)
        });
        let (state, reason) = instance.ended(job.id).await;
        assert_eq!(state, "abort_error");
        assert_eq!(
            reason.as_deref(),
            Some("the worker panicked: batch 2 went wrong")
        );
        instance.assert_never_taken_up_again(job.id).await;
        instance.shut_down().await;
    }

    /// An abort that the job database refuses: the worker here is stopped and awaited, the job
    /// is not run here again while the abort waits (neither launched nor adopted by the
    /// ownership check, its lease kept), and the abort is recorded, and counted once, as soon
    /// as the database takes it.
    #[tokio::test]
    async fn an_abort_the_database_refuses_is_kept_and_retried() {
        let instance = Instance::new().await;
        let (job, lease) = instance.valid_job().await;
        let manager = &instance.manager;
        assert!(manager.launch(job.clone(), lease.clone(), false));
        assert_eq!(manager.live_jobs(), 1);
        instance
            .store
            .execute_for_test(
                "CREATE TRIGGER refuse BEFORE UPDATE ON xb_jobs \
                 BEGIN SELECT RAISE(ABORT, 'writes refused'); END",
            )
            .await;
        assert!(instance.store.abort_job(job.id, &job.domain).await.is_err());
        assert!(manager.keep_unrecorded_abort(job.id, &job.domain).await);
        assert_eq!(
            manager.live_jobs(),
            0,
            "the worker is stopped before this returns"
        );
        assert_eq!(instance.metric("mod_broadcast_live_jobs"), "0");

        assert!(!manager.launch(job.clone(), lease.clone(), false));
        assert_eq!(manager.live_jobs(), 0, "launched while its abort waits");
        manager.spawn_ownership_check();
        // The ownership check adopts a held lease without a worker at its second round.
        let window = std::time::Instant::now() + OWNERSHIP_CHECK * 2 + OWNERSHIP_CHECK / 2;
        while std::time::Instant::now() < window {
            assert_eq!(manager.live_jobs(), 0, "adopted while its abort waits");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            instance.store.owned_leases("node1").await.unwrap(),
            vec![(job.id, lease.epoch)]
        );
        assert_eq!(instance.stored_end(job.id).await.0, "running");

        instance.store.execute_for_test("DROP TRIGGER refuse").await;
        let (state, _) = instance.ended(job.id).await;
        assert_eq!(state, "abort_admin");
        assert!(
            instance
                .store
                .owned_leases("node1")
                .await
                .unwrap()
                .is_empty()
        );
        // Counted right after the write returns.
        let deadline = std::time::Instant::now() + DEADLINE;
        while manager.abort_pending(job.id) {
            assert!(
                std::time::Instant::now() < deadline,
                "the abort still waits"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            instance.metric("mod_broadcast_jobs_aborted_admin_total"),
            "1"
        );
        assert_eq!(instance.metric("mod_broadcast_live_jobs"), "0");
        instance.shut_down().await;
    }

    /// A job of this instance's whose domain was removed from the config is not resumed: its
    /// lease goes to nobody, expired, so that an instance serving the domain takes it over,
    /// and the API says why it waits.
    #[tokio::test]
    async fn an_own_job_of_a_domain_not_served_is_handed_over() {
        let instance = Instance::new().await;
        let id = instance.job_stored_with("domain = 'example.org'").await;
        assert_eq!(instance.manager.resume_owned_jobs().await.unwrap(), 0);
        assert_eq!(instance.manager.live_jobs(), 0);
        assert!(
            instance
                .store
                .owned_leases("node1")
                .await
                .unwrap()
                .is_empty()
        );
        let job = instance.store.get_job(id).await.unwrap().unwrap();
        assert_eq!(
            (job.state, job.owner.as_deref()),
            (ExecutionState::Running, None)
        );
        assert!(job.lease_expired, "{job:?}");
        let reason = instance.manager.scope().waiting_reason(&job).unwrap();
        assert!(reason.contains("does not serve example.org"), "{reason}");
        let expired = instance.store.expired_leases("node2").await.unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].previous_owner, None);
        instance.shut_down().await;
    }

    /// An expired job created against another users database is counted as waiting and never
    /// taken over; once it names this instance's users database, it is.
    #[tokio::test]
    async fn only_jobs_of_the_same_users_database_are_taken_over() {
        let instance = Instance::with_lease_time(Duration::from_secs(3)).await;
        let expired = Duration::from_millis(100);
        let id = instance
            .job_of("node2", expired, "users_database = 'prosody@elsewhere'")
            .await;
        instance.manager.spawn_lease_loop();
        let deadline = std::time::Instant::now() + DEADLINE;
        while instance.metric("xmpp_broadcast_waiting_jobs") != "1" {
            assert!(
                std::time::Instant::now() < deadline,
                "never counted as waiting"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let job = instance.store.get_job(id).await.unwrap().unwrap();
        assert_eq!(job.owner.as_deref(), Some("node2"), "taken over: {job:?}");
        let reason = instance.manager.scope().waiting_reason(&job).unwrap();
        assert!(reason.contains("prosody@elsewhere"), "{reason}");

        let ours = instance.manager.scope().users_database().clone();
        instance
            .store
            .execute_for_test(&format!(
                "UPDATE xb_jobs SET users_database = '{ours}' WHERE id = {id}"
            ))
            .await;
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let job = instance.store.get_job(id).await.unwrap().unwrap();
            if job.owner.as_deref() == Some("node1") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never taken over: {job:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        instance.shut_down().await;
    }
}
