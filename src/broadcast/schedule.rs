//! Scheduled starts (design invariant 12): each instance watches the scheduled jobs it may run
//! and starts each when its time has come, exactly once across the instances.
//!
//! The scheduler is handed the scheduled jobs by each round of the lease loop (which reads
//! them in its one statement, every [`ROUND`] at most and up to a fifth more), and reads them
//! itself when this instance scheduled a job or one of its jobs ended
//! ([`Manager::wake_scheduler`]) and when the earliest start time it knows has come: with no
//! scheduled job it makes no statement of its own. A due job starts if no other job of its domain
//! sends: its recipients are fixed then (the users database is read at that moment, as for a
//! job started by a request) and one transaction guarded by the hold lifts it, claims its lease
//! for this instance and stores the snapshot, so that of several instances racing, one starts
//! it. A due job whose domain is busy is tried again every [`BUSY_RETRY`] (a cheap check of the
//! domain first, so the users database is read only when it can start), and starts after the
//! running job, the oldest due first. A job scheduled by another instance that then died is
//! seen at the next round, so it starts on time if it was scheduled at least [`ROUND`] and a
//! fifth (12 s) ahead.

use std::time::Duration;

use crate::job::{JobEnd, JobId, RecipientGroup, Snapshot};
use crate::store::{ScheduledJob, StoreError, Unheld};

use super::Manager;
#[cfg(doc)]
use super::manager::ROUND;
/// How soon a due job whose domain has a running job, or that failed to start, is tried again.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// The reason of a scheduled job that found nobody to send to when its time came.
pub const NO_RECIPIENTS_AT_START: &str =
    "The domain had no user to send to when the job's start time came";
/// The `abortionReason` of a scheduled job whose group is no longer configured when its time
/// comes, before the group's name.
pub const NO_GROUP_AT_START: &str =
    "The domain had no recipient group of this name when the job's start time came:";

/// What one attempt to start a due job did.
enum Attempt {
    /// Started here, or by another instance, or ended meanwhile: nothing more to do.
    Done,
    /// Not now (its domain has a running job, or a database failed): try again soon.
    Later,
}

impl Manager {
    /// Runs the scheduler until shutdown.
    pub(super) fn spawn_scheduler(&self) {
        let manager = self.clone();
        let mut rounds = self.scheduled_rounds();
        self.tasks().spawn(async move {
            let mut failing = false;
            // Until when to wait before reading the scheduled jobs here; `None`: until the
            // next round of the lease loop, or a wake-up.
            let mut pause: Option<Duration> = None;
            loop {
                let read = tokio::select! {
                    _ = manager.stopping() => break,
                    _ = tokio::time::sleep(pause.unwrap_or_default()), if pause.is_some() => None,
                    _ = manager.scheduler_woken() => None,
                    changed = rounds.changed() => match changed {
                        Ok(()) => Some(rounds.borrow_and_update().clone()),
                        Err(_) => break,
                    },
                };
                let jobs = match read {
                    Some(jobs) => Ok(jobs),
                    None => manager.store().scheduled_jobs().await,
                };
                pause = match jobs {
                    Ok(jobs) => {
                        if failing {
                            tracing::info!("scheduled jobs readable again");
                            failing = false;
                        }
                        manager.start_due(&jobs).await
                    }
                    Err(err) => {
                        if !failing {
                            tracing::warn!(error = %err, "cannot read the scheduled jobs; retrying every second");
                            failing = true;
                        }
                        Some(BUSY_RETRY)
                    }
                };
            }
        });
    }

    /// Starts the due jobs among `jobs` that this instance may run; returns how long to wait
    /// before looking again, `None` if nothing is to be done before the next round.
    async fn start_due(&self, jobs: &[ScheduledJob]) -> Option<Duration> {
        let mut pause: Option<Duration> = None;
        let mut sooner = |wait: Duration| pause = Some(pause.map_or(wait, |p| p.min(wait)));
        let mine = jobs.iter().filter(|job| {
            self.scope()
                .may_run(&job.domain, job.users_database.as_ref())
                .is_ok()
        });
        for job in mine {
            if !job.due_in.is_zero() {
                sooner(job.due_in);
                continue;
            }
            if !self.safety().accepts_new_jobs() {
                sooner(BUSY_RETRY);
                continue;
            }
            match self.start_scheduled(job).await {
                Attempt::Done => {}
                Attempt::Later => sooner(BUSY_RETRY),
            }
        }
        pause
    }

    /// Starts one due job, if its domain has no running job.
    async fn start_scheduled(&self, job: &ScheduledJob) -> Attempt {
        let job_id = job.id;
        match self.store().sending_job_id(&job.domain).await {
            Ok(None) => {}
            Ok(Some(_)) => return Attempt::Later,
            Err(err) => return self.later(job_id, &err),
        }
        let stored = match self.store().get_job(job_id).await {
            Ok(Some(stored)) => stored,
            // Deleted meanwhile.
            Ok(None) => return Attempt::Done,
            Err(err) => return self.later(job_id, &err),
        };
        // Its recipients, fixed now: every account, or the group's members; a list's were
        // stored when it was scheduled (invariant 13).
        let snapshot = match (stored.recipient_group, stored.group.as_deref()) {
            (RecipientGroup::Listed, _) => None,
            (RecipientGroup::Group, Some(group)) => {
                match self.directory().group_members(&job.domain, group).await {
                    Ok(Some(members)) => Some(Snapshot::Listed(members)),
                    Ok(None) => {
                        let reason = format!("{NO_GROUP_AT_START} {group:?}");
                        return self.fail(job, &reason).await;
                    }
                    Err(err) => return self.later(job_id, &err),
                }
            }
            _ => match self.directory().recipients_for_new_job(&job.domain).await {
                Ok(snapshot) => Some(snapshot),
                Err(err) => return self.later(job_id, &err),
            },
        };
        if snapshot.as_ref().is_some_and(Snapshot::is_empty) {
            return self.fail(job, NO_RECIPIENTS_AT_START).await;
        }
        let users_database = self.scope().users_database();
        let lease = match self
            .store()
            .start_scheduled(
                job_id,
                self.node(),
                self.lease_time(),
                snapshot.as_ref(),
                users_database,
            )
            .await
        {
            Ok(Unheld::Running(lease)) => lease,
            Ok(Unheld::NotHeld) => return Attempt::Done,
            Err(StoreError::RunningJobExists) => return Attempt::Later,
            Err(err) => return self.later(job_id, &err),
        };
        let recipients = snapshot
            .as_ref()
            .map_or(stored.recipient_count, Snapshot::len);
        tracing::info!(job_id, domain = %job.domain, recipients, "scheduled broadcast started");
        self.launch_stored(lease, true).await;
        Attempt::Done
    }

    /// Ends a scheduled job that cannot start as ABORT_ERROR with `reason`.
    async fn fail(&self, job: &ScheduledJob, reason: &str) -> Attempt {
        match self.store().fail_scheduled(job.id, reason).await {
            Ok(true) => {
                tracing::warn!(job_id = job.id, domain = %job.domain, reason, "scheduled job ended: it had nobody to send to when its time came");
                self.metrics()
                    .job_ended(&job.domain, JobEnd::AbortedByError);
                Attempt::Done
            }
            Ok(false) => Attempt::Done,
            Err(err) => self.later(job.id, &err),
        }
    }

    fn later(&self, job_id: JobId, err: &dyn std::fmt::Display) -> Attempt {
        tracing::warn!(job_id, error = %err, "cannot start a scheduled job now; retrying in a second");
        Attempt::Later
    }
}
