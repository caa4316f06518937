//! The worker: sends one job's messages, batch after batch, at the job's rate.
//!
//! For each batch it reads the next page of the recipient snapshot (from the job store or the
//! users database, see [`Recipients`]), sends one message per
//! recipient, waits for the server to acknowledge everything sent (a ping round trip on the same
//! stream) and only then commits the batch's progress (design invariant 3). If the connection
//! drops before the acknowledgement the whole batch is sent again on the next connection: the
//! ids are deterministic, so repeats can be recognised, and nothing is lost. Every write is fenced
//! by the job's lease; a write that matches nothing means the job is no longer ours, and the
//! worker stops at once. Before each message it checks that this instance's leases can still be
//! trusted ([`Safety`]); if not it pauses, and when renewals succeed again it resumes only if
//! the lease is still its own.
//!
//! A job whose stored data cannot be sent (see [`Job::sending`]) ends as ABORT_ERROR before
//! anything is sent, with the column at fault as the reason. A failed database call is retried
//! with backoff. A connection failure is retried for as long
//! as it lasts (safety mode covers the leases meanwhile); an error the database itself keeps
//! answering, such as a missing table, ends the job as ABORT_ERROR once it has lasted
//! [`Worker::fault_limit`], with the error as the reason.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use jid::BareJid;
use tokio_util::sync::CancellationToken;

use crate::broadcast::Safety;
use crate::broadcast::progress::with_progress;
use crate::broadcast::recipients::{PageError, Recipients};
use crate::directory::Directory;
use crate::directory::{DirectoryError, Measured, Measuring};
use crate::job::spec::{MAX_MESSAGE_BYTES, batch_size};
use crate::job::{InvalidRow, Job, JobEnd, JobKind, Lease, RowProblem, Sending, Usernames};
use crate::metrics::Metrics;
use crate::store::{Outcome, Store, StoreError};
use crate::xmpp::{Announcement, Connection, Content, LinkDown, Texts};

/// Longest pause between retries of a failed database call.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// What the workers of an instance share: its databases, its connection, its metrics and its
/// safety deadline.
#[derive(Clone)]
pub struct Shared {
    pub store: Store,
    /// The users database, for jobs whose snapshot is an instant of it.
    pub directory: Directory,
    pub connection: Connection,
    pub metrics: Metrics,
    pub safety: Safety,
    /// How long the database may keep answering a call with an error before the job is
    /// given up as ABORT_ERROR.
    pub fault_limit: Duration,
}

/// One running job on this instance.
pub struct Worker {
    shared: Shared,
    lease: Lease,
    job: Job,
    stop: CancellationToken,
    /// Recipients processed in committed batches.
    committed: AtomicI64,
    /// Messages sent together: [`chunk_size`] of the job's rate.
    chunk: NonZeroU32,
    /// What the request that created the job hands its first worker.
    handover: Handover,
}

/// What the request that created a job before counting its recipients hands the job's first
/// worker (invariant 4a): the listing or count of the set it fixed, finished or running, and
/// where to say that the recipients are stored and counted (the request waits for it, for a
/// while, before it answers).
#[derive(Default)]
pub struct Handover {
    pub measuring: Option<Measuring>,
    pub counted: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Worker {
    /// The worker of `job` under `lease`, from its committed progress; it stops when `stop` is
    /// cancelled.
    pub fn new(
        shared: Shared,
        job: Job,
        lease: Lease,
        stop: CancellationToken,
        handover: Handover,
    ) -> Worker {
        Worker {
            handover,
            committed: AtomicI64::new(job.recipients_processed),
            chunk: chunk_size(job.rate),
            shared,
            lease,
            job,
            stop,
        }
    }
}

/// The message of `job`: the broadcast, or a correction or retraction of its original's.
fn announcement(job: &Job, sender: BareJid) -> Announcement {
    let content = match (job.kind, job.amends) {
        (JobKind::Correction, Some(amends)) => Content::Correction {
            original: amends.job_id,
        },
        (JobKind::Retraction, Some(amends)) => Content::Retraction {
            original: amends.job_id,
        },
        _ => Content::Broadcast,
    };
    let texts = Texts {
        language: job.language.as_deref(),
        subject: &job.subject,
        body: &job.body,
        translations: &job.translations,
    };
    Announcement::with_texts(job.id, sender, texts, content)
}

/// Chunks a worker sends per second at most: each is one wake-up and one socket write, which
/// on a small virtual machine cost far more CPU than writing the messages themselves.
const CHUNKS_PER_SECOND: u32 = 10;

/// Messages sent together at `rate` messages per second: a [`CHUNKS_PER_SECOND`]th of a
/// second's worth, at least one.
pub fn chunk_size(rate: u32) -> NonZeroU32 {
    NonZeroU32::new(rate / CHUNKS_PER_SECOND).unwrap_or(NonZeroU32::MIN)
}

/// The job's rate, kept by governor's limiter with one chunk of slack: a wait that ends late
/// (timer granularity, a busy machine) lets the next chunk go early, so the lateness is made up
/// instead of lowering the rate. The limiter reads tokio's clock and the waits are tokio timers,
/// on the worker's own thread: one clock for both.
struct Pace {
    limiter: RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<std::time::Instant>>,
}

/// Tokio's clock as governor's: the time the waits are measured in.
#[derive(Debug, Clone, Copy)]
struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        tokio::time::Instant::now().into_std()
    }
}

impl Pace {
    fn new(rate: NonZeroU32, chunk: NonZeroU32) -> Self {
        let burst = chunk.saturating_mul(NonZeroU32::MIN.saturating_add(1));
        let quota = Quota::per_second(rate).allow_burst(burst);
        let limiter = RateLimiter::direct_with_clock(quota, TokioClock);
        // The slack starts used: the first two chunks are a chunk's time apart, not a burst.
        let _ = limiter.check_n(chunk);
        Pace { limiter }
    }

    /// Waits until `permits` messages (at most one chunk) may go out.
    async fn until_ready(&self, permits: NonZeroU32) {
        // A chunk is half the burst, so the limiter can always grant it: an error cannot occur.
        while let Ok(Err(not_until)) = self.limiter.check_n(permits) {
            let wait = not_until.wait_time_from(TokioClock.now());
            tokio::time::sleep(wait).await;
        }
    }
}

/// Something that ended the current batch early.
enum Interrupt {
    Stop,
    LeaseLost,
    /// A lasting fault, described for the operator.
    Failed(String),
}

/// Whether an error is one the database keeps answering (so retrying may not help), as
/// opposed to the database being unreachable.
pub trait Fault: std::fmt::Display {
    fn is_answered_by_database(&self) -> bool;
}

impl Fault for StoreError {
    fn is_answered_by_database(&self) -> bool {
        matches!(
            self,
            StoreError::Database(sqlx::Error::Database(_)) | StoreError::InvalidRow(_)
        )
    }
}

impl Fault for DirectoryError {
    fn is_answered_by_database(&self) -> bool {
        match self {
            DirectoryError::Database(err) => matches!(err, sqlx::Error::Database(_)),
            DirectoryError::Connect(_) => false,
            DirectoryError::Layout(_)
            | DirectoryError::Config(_)
            | DirectoryError::Placeholder { .. } => true,
        }
    }
}

impl Fault for PageError {
    fn is_answered_by_database(&self) -> bool {
        match self {
            PageError::Store(err) => err.is_answered_by_database(),
            PageError::Directory(err) => err.is_answered_by_database(),
        }
    }
}

impl Worker {
    /// Runs the job until it ends here ([`JobEnd::Finished`], or [`JobEnd::AbortedByError`]
    /// recorded by this worker), or until it stops without ending it (`None`: told to stop, or
    /// the lease is gone; the manager finds out why).
    pub async fn run(mut self) -> Option<JobEnd> {
        let job_id = self.job.id;
        let handover = std::mem::take(&mut self.handover);
        match self.run_batches(handover).await {
            Ok(()) => Some(JobEnd::Finished),
            Err(Interrupt::Stop) => {
                tracing::info!(
                    job_id,
                    "worker stopped; the job resumes from its last batch"
                );
                None
            }
            Err(Interrupt::LeaseLost) => {
                tracing::warn!(job_id, "the job is no longer ours to run; stopped sending");
                None
            }
            Err(Interrupt::Failed(reason)) => self.give_up(reason).await,
        }
    }

    /// Records a job that a lasting fault stopped as ABORT_ERROR, if the database lets us.
    async fn give_up(&self, reason: String) -> Option<JobEnd> {
        let job_id = self.job.id;
        tracing::error!(job_id, %reason, "giving the job up");
        let processed = self.committed.load(Ordering::Relaxed);
        let outcome = Outcome::AbortError { reason };
        match self
            .shared
            .store
            .complete(&self.lease, &outcome, processed)
            .await
        {
            Ok(true) => Some(JobEnd::AbortedByError),
            Ok(false) => None,
            Err(err) => {
                // The job stays running and owned: it is resumed when the database recovers.
                tracing::error!(job_id, error = %err, "cannot record the job as failed");
                None
            }
        }
    }

    async fn run_batches(&self, handover: Handover) -> Result<(), Interrupt> {
        let job = &self.job;
        let lease = &self.lease;
        // Stored data that cannot be sent ends the job at once: retrying cannot mend it.
        let Sending { sender, rate } = job
            .sending()
            .map_err(|bad| Interrupt::Failed(bad.to_string()))?;
        // A message larger than the server accepts would end the stream at every attempt.
        let announcement = announcement(job, sender);
        let bytes = announcement.largest_message_len(&job.domain);
        if bytes > MAX_MESSAGE_BYTES {
            let problem = RowProblem::MessageTooLarge {
                bytes,
                limit: MAX_MESSAGE_BYTES,
            };
            // One language within its limits stays far below the bound: only translations
            // can pass it.
            let bad = InvalidRow::new(job.id, "translations", problem)
                .in_domain(Some(job.domain.clone()));
            return Err(Interrupt::Failed(bad.to_string()));
        }
        let Handover { measuring, counted } = handover;
        // An uncounted listed set is listed first and sent from memory while it is stored;
        // no batch is committed before it is.
        let (listed, measuring) = match (job.recipients_counted, job.snapshot_at.as_deref()) {
            (false, None) => (Some(self.list_recipients(measuring).await?), None),
            _ => (None, measuring),
        };
        let (stored, gate) = tokio::sync::watch::channel(listed.is_none());
        let counting = async {
            if !job.recipients_counted {
                self.record_count(listed.as_ref(), measuring).await?;
                stored.send_replace(true);
            }
            if let Some(counted) = counted {
                // The request may have answered already.
                counted.send(()).ok();
            }
            Ok(())
        };
        self.mark_started().await?;
        let recipients = match &listed {
            Some(names) => Recipients::InMemory(names),
            None => Recipients::of(job, &self.shared.store, &self.shared.directory),
        };
        let sending = self.send_batches(rate, &announcement, recipients, gate);
        let ((), processed) = tokio::try_join!(counting, sending)?;
        if !self
            .retry(|| {
                self.shared
                    .store
                    .complete(lease, &Outcome::Finished, processed)
            })
            .await?
        {
            return Err(Interrupt::LeaseLost);
        }
        tracing::info!(job_id = job.id, processed, "job finished");
        Ok(())
    }

    async fn mark_started(&self) -> Result<(), Interrupt> {
        if self
            .retry(|| self.shared.store.mark_started(&self.lease))
            .await?
        {
            Ok(())
        } else {
            Err(Interrupt::LeaseLost)
        }
    }

    /// Lists the recipients of a job created before they were counted (invariant 4a), in byte
    /// order: the listing its request started, from the read that fixed them. A worker that
    /// resumes such a job without it, or whose listing failed, lists the accounts there are
    /// now: the read ended with the instance or worker that opened it.
    async fn list_recipients(&self, measuring: Option<Measuring>) -> Result<Usernames, Interrupt> {
        let job = &self.job;
        let handed = match measuring {
            Some(measuring) => {
                let listing = measuring.result();
                self.interruptible(with_progress(
                    &job.domain,
                    "listing the recipients",
                    listing,
                ))
                .await?
            }
            None => None,
        };
        let failure = match handed {
            Some(Ok(Measured::Listed(names))) => return Ok(names.sorted()),
            Some(Ok(Measured::Counted(_))) => "it was counted, not listed".to_owned(),
            Some(Err(err)) => err.to_string(),
            None => "the instance or worker that read them stopped first".to_owned(),
        };
        tracing::warn!(
            job_id = job.id,
            reason = %failure,
            "listing the recipients now: the read that fixed them at the request did not list \
             them; accounts registered since are recipients too"
        );
        let directory = &self.shared.directory;
        let listing = self.retry(|| async {
            match directory.open_list(&job.domain).await? {
                Some(list) => list.read().await,
                None => Ok(Usernames::new()),
            }
        });
        let names = with_progress(&job.domain, "listing the recipients", listing).await?;
        Ok(names.sorted())
    }

    /// Stores the number of recipients of a job created before they were counted (invariant
    /// 4a) and, for a listed set, the names; a dated set's count is the one its request
    /// started, or is taken again (the same instant, the same number).
    async fn record_count(
        &self,
        listed: Option<&Usernames>,
        measuring: Option<Measuring>,
    ) -> Result<(), Interrupt> {
        let job = &self.job;
        let count = match (listed, job.snapshot_at.as_deref()) {
            (Some(names), _) => names.len() as i64,
            (None, Some(at)) => {
                let handed = match measuring {
                    Some(measuring) => {
                        let counting = measuring.result();
                        let step = "counting the recipients";
                        self.interruptible(with_progress(&job.domain, step, counting))
                            .await?
                    }
                    None => None,
                };
                match handed {
                    Some(Ok(Measured::Counted(count))) => count,
                    other => {
                        if let Some(Err(err)) = other {
                            tracing::warn!(job_id = job.id, error = %err, "counting the recipients again");
                        }
                        let directory = &self.shared.directory;
                        let counting = self.retry(|| directory.count(&job.domain, at));
                        with_progress(&job.domain, "counting the recipients", counting).await?
                    }
                }
            }
            (None, None) => {
                // run_batches lists such a set first; reaching here is a defect, reported.
                let problem = "a listed set must be listed before it is counted";
                return Err(Interrupt::Failed(problem.into()));
            }
        };
        let store = &self.shared.store;
        let step = format!("storing the {count} recipients");
        let recording = self.retry(|| store.record_recipients(&self.lease, count, listed));
        if !with_progress(&job.domain, &step, recording).await? {
            return Err(Interrupt::LeaseLost);
        }
        tracing::info!(job_id = job.id, recipients = count, "recipients counted");
        Ok(())
    }

    /// Sends every batch from the job's committed progress on; returns the recipients
    /// processed.
    /// `gate` turns true once the recipients are stored: no batch is committed before.
    async fn send_batches(
        &self,
        rate: NonZeroU32,
        announcement: &Announcement,
        recipients: Recipients<'_>,
        mut gate: tokio::sync::watch::Receiver<bool>,
    ) -> Result<i64, Interrupt> {
        let job = &self.job;
        let lease = &self.lease;
        let domain = job.domain.as_str();
        let pace = Pace::new(rate, self.chunk);
        let mut cursor = job.cursor.clone();
        let mut processed = job.recipients_processed;
        tracing::info!(job_id = job.id, processed, cursor = ?cursor, "worker started");
        loop {
            // A follow-up sends to the first recipients of its original only.
            let left = job
                .amends
                .map_or(i64::MAX, |amends| amends.reach - processed);
            let Ok(limit @ 1..) = u32::try_from(left.min(i64::from(batch_size(rate.get())))) else {
                break;
            };
            let page = self
                .retry(|| recipients.page(cursor.as_deref(), limit))
                .await?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            let messages: Vec<_> = page
                .iter()
                .filter_map(|user| match BareJid::new(&format!("{user}@{domain}")) {
                    Ok(jid) => Some(jid),
                    Err(err) => {
                        tracing::warn!(job_id = job.id, user, error = %err, "skipping a username that is not a valid JID");
                        None
                    }
                })
                .collect();
            loop {
                match self.deliver(announcement, &messages, &pace).await? {
                    Ok(()) => break,
                    Err(LinkDown) => {
                        tracing::warn!(
                            job_id = job.id,
                            "connection lost during a batch; sending the batch again"
                        );
                    }
                }
            }
            processed += page.len() as i64;
            if self
                .interruptible(gate.wait_for(|stored| *stored))
                .await?
                .is_err()
            {
                // The count was given up: its error ends the job.
                return Err(Interrupt::Stop);
            }
            if !self
                .retry(|| self.shared.store.commit_progress(lease, &last, processed))
                .await?
            {
                return Err(Interrupt::LeaseLost);
            }
            self.committed.store(processed, Ordering::Relaxed);
            let sent = messages.len() as u64;
            self.shared
                .metrics
                .batch_committed(domain, sent, page.len() as u64 - sent);
            tracing::debug!(job_id = job.id, processed, "batch committed");
            cursor = Some(last);
        }
        Ok(processed)
    }

    /// Sends one batch on one connection and waits for the server's acknowledgement.
    async fn deliver(
        &self,
        announcement: &Announcement,
        recipients: &[BareJid],
        pace: &Pace,
    ) -> Result<Result<(), LinkDown>, Interrupt> {
        let Some(link) = self.interruptible(self.shared.connection.link()).await? else {
            return Err(Interrupt::Stop);
        };
        // Messages go out in chunks: one wake-up, one queue operation and one socket write per
        // chunk, not per message.
        let chunk = usize::try_from(self.chunk.get()).unwrap_or(1);
        for recipients in recipients.chunks(chunk) {
            let permits = NonZeroU32::new(recipients.len() as u32).expect("chunks are not empty");
            self.interruptible(pace.until_ready(permits)).await?;
            self.hold_while_unsafe().await?;
            let mut messages = Vec::with_capacity(recipients.len() * 512);
            for recipient in recipients {
                announcement.write_message(recipient, &mut messages);
            }
            if let Err(down) = self.interruptible(link.send_serialised(messages)).await? {
                return Ok(Err(down));
            }
        }
        self.interruptible(link.barrier()).await
    }

    /// Runs `future` unless the worker is told to stop first.
    async fn interruptible<T>(&self, future: impl Future<Output = T>) -> Result<T, Interrupt> {
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => Err(Interrupt::Stop),
            value = future => Ok(value),
        }
    }

    /// Pauses while this instance's leases cannot be trusted; afterwards goes on only if the
    /// lease is still this worker's.
    async fn hold_while_unsafe(&self) -> Result<(), Interrupt> {
        if self.shared.safety.may_send() {
            return Ok(());
        }
        let job_id = self.job.id;
        tracing::warn!(
            job_id,
            "pausing: the leases of this instance are not renewed"
        );
        self.interruptible(self.shared.safety.wait_until_safe())
            .await?;
        let lease = &self.lease;
        let held = self
            .retry(|| self.shared.store.owned_leases(&lease.owner))
            .await?;
        if !held.contains(&(lease.job_id, lease.epoch)) {
            return Err(Interrupt::LeaseLost);
        }
        tracing::info!(job_id, "leases renewed; resuming");
        Ok(())
    }

    /// Retries a database call until it succeeds, pausing longer after each failure; gives up
    /// when the database has kept answering with an error for [`Worker::fault_limit`].
    async fn retry<T, E, F>(&self, call: impl Fn() -> F) -> Result<T, Interrupt>
    where
        E: Fault,
        F: Future<Output = Result<T, E>>,
    {
        let mut pause = Duration::from_millis(200);
        let mut failing_since: Option<Instant> = None;
        loop {
            match self.interruptible(call()).await? {
                Ok(value) => return Ok(value),
                Err(err) => {
                    if err.is_answered_by_database() {
                        let since = *failing_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= self.shared.fault_limit {
                            return Err(Interrupt::Failed(err.to_string()));
                        }
                    } else {
                        failing_since = None;
                    }
                    tracing::warn!(job_id = self.job.id, error = %err, retry_in = ?pause, "database call failed");
                    self.interruptible(tokio::time::sleep(pause)).await?;
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const RATE: u32 = 100;

    fn nonzero(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    /// Sends `chunks` chunks, each followed by `late` of extra time (a wake-up that ends late,
    /// the write itself); returns when each chunk was let out, from the start.
    async fn paced(chunks: usize, late: Duration) -> Vec<Duration> {
        let chunk = chunk_size(RATE);
        let pace = Pace::new(nonzero(RATE), chunk);
        let start = Instant::now();
        let mut out = Vec::new();
        for _ in 0..chunks {
            pace.until_ready(chunk).await;
            out.push(start.elapsed());
            tokio::time::advance(late).await;
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn chunks_are_a_chunk_apart_from_the_first() {
        let chunk = Duration::from_secs(1) * chunk_size(RATE).get() / RATE;
        let times = paced(3, Duration::ZERO).await;
        assert_eq!(times[0], Duration::ZERO);
        assert_eq!(
            times[1], chunk,
            "the slack must not let the second chunk out at once"
        );
        assert_eq!(times[2], 2 * chunk);
    }

    #[tokio::test(start_paused = true)]
    async fn late_chunks_are_made_up() {
        // 100 chunks of 10 at 100 msg/s, each 30 ms late: without slack the lateness adds up
        // to 3 s; with it the last chunk still leaves on its slot, 9.9 s after the first.
        let times = paced(100, Duration::from_millis(30)).await;
        let last = *times.last().unwrap();
        let slot = Duration::from_millis(9_900);
        assert!(
            last >= slot && last <= slot + Duration::from_millis(31),
            "last chunk at {last:?}, its slot is {slot:?}"
        );
    }
}
