//! The manager: runs one worker per job this instance owns and keeps their leases alive.
//!
//! At start it resumes the running jobs whose lease names this instance (raising each lease's
//! epoch, so that a worker of an earlier life of this instance is fenced out). While it runs it
//! renews its leases every third of the lease time. On shutdown it stops its workers and lets its
//! leases expire at once, so the jobs can continue without waiting (design invariant 7).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broadcast::worker::{Worker, WorkerEnd};
use crate::broadcast::{Job, JobId, Lease};
use crate::store::{Store, StoreError};
use crate::xmpp::Connection;

/// Runs this instance's workers; cheap to clone.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    connection: Connection,
    node: String,
    lease_time: Duration,
    stop: CancellationToken,
    tasks: TaskTracker,
    /// Live workers by job, each with the token that stops it.
    workers: Mutex<HashMap<JobId, CancellationToken>>,
}

impl Manager {
    pub fn new(store: Store, connection: Connection, node: String, lease_time: Duration) -> Self {
        Manager {
            inner: Arc::new(Inner {
                store,
                connection,
                node,
                lease_time,
                stop: CancellationToken::new(),
                tasks: TaskTracker::new(),
                workers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The name written into this instance's leases.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    pub fn lease_time(&self) -> Duration {
        self.inner.lease_time
    }

    /// Resumes every running job this instance owns; returns how many.
    pub async fn resume_owned_jobs(&self) -> Result<usize, StoreError> {
        let inner = &self.inner;
        let jobs = inner.store.running_jobs_owned_by(&inner.node).await?;
        let mut resumed = 0;
        for job in jobs {
            if self.is_running(job.id) {
                continue;
            }
            let lease = inner
                .store
                .reclaim_own_lease(job.id, &inner.node, inner.lease_time)
                .await?;
            if let Some(lease) = lease {
                tracing::info!(
                    job_id = job.id,
                    processed = job.recipients_processed,
                    "resuming job"
                );
                self.launch(job, lease);
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Starts the worker of a job this instance holds the lease of.
    pub fn launch(&self, job: Job, lease: Lease) {
        let inner = &self.inner;
        let stop = inner.stop.child_token();
        let job_id = job.id;
        inner
            .workers
            .lock()
            .expect("worker map lock")
            .insert(job_id, stop.clone());
        let worker = Worker {
            store: inner.store.clone(),
            connection: inner.connection.clone(),
            lease,
            job,
            stop,
        };
        let manager = self.clone();
        inner.tasks.spawn(async move {
            let end = worker.run().await;
            manager
                .inner
                .workers
                .lock()
                .expect("worker map lock")
                .remove(&job_id);
            if end == WorkerEnd::Finished {
                tracing::debug!(job_id, "worker done");
            }
        });
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

    /// Renews this instance's leases every third of the lease time until shutdown.
    pub fn spawn_lease_renewal(&self) {
        let manager = self.clone();
        self.inner.tasks.spawn(async move {
            let inner = &manager.inner;
            let period = inner.lease_time / 3;
            loop {
                tokio::select! {
                    _ = inner.stop.cancelled() => break,
                    _ = tokio::time::sleep(period) => {}
                }
                match inner
                    .store
                    .renew_leases(&inner.node, inner.lease_time)
                    .await
                {
                    Ok(renewed) => tracing::debug!(renewed, "leases renewed"),
                    Err(err) => tracing::error!(error = %err, "cannot renew leases"),
                }
            }
        });
    }

    /// Stops every worker, waits for them, and releases this instance's leases.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.stop.cancel();
        inner.tasks.close();
        inner.tasks.wait().await;
        match inner.store.release_leases(&inner.node).await {
            Ok(released) => tracing::info!(released, "leases released"),
            Err(err) => {
                tracing::warn!(error = %err, "cannot release leases; they expire by themselves")
            }
        }
    }
}
