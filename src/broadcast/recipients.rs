//! Where a running job reads its recipients, page by page (design invariant 4).
//!
//! A job whose directory has no creation times (Prosody) listed its usernames in the job store
//! when it was created; a job of a directory with `created_at` (ejabberd, MongooseIM, custom)
//! holds only the snapshot instant and pages the users database itself, with the same instant
//! every time. Either way pages come in the order the cursor is compared in, so a resumed job
//! continues after its last committed recipient. A follow-up (a correction or retraction) pages
//! the snapshot of the broadcast it amends: the same listed usernames, or the same instant.

use crate::directory::{Directory, DirectoryError};
use crate::job::{Job, Usernames};
use crate::store::{Store, StoreError};

/// A failure to read a page of recipients; the worker retries it.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// The recipient snapshot of one job.
pub enum Recipients<'a> {
    /// Usernames listed by this worker, in byte order, while they are being stored
    /// (invariant 4a): the same pages as the job store's once they are.
    InMemory(&'a Usernames),
    /// Usernames listed in the job store.
    Listed { store: &'a Store, job: &'a Job },
    /// Accounts of the job's domain created up to `at`, in the users database.
    CreatedBy {
        directory: &'a Directory,
        job: &'a Job,
        at: &'a str,
    },
}

impl<'a> Recipients<'a> {
    /// The snapshot `job` was created with.
    pub fn of(job: &'a Job, store: &'a Store, directory: &'a Directory) -> Self {
        match job.snapshot_at.as_deref() {
            None => Recipients::Listed { store, job },
            Some(at) => Recipients::CreatedBy { directory, job, at },
        }
    }

    /// The next `limit` usernames after `after` (from the start with `None`).
    pub async fn page(&self, after: Option<&str>, limit: u32) -> Result<Vec<String>, PageError> {
        Ok(match self {
            Recipients::InMemory(names) => names.page(after, limit as usize),
            Recipients::Listed { store, job } => {
                store
                    .snapshot_page(job.snapshot_job(), after, limit)
                    .await?
            }
            Recipients::CreatedBy { directory, job, at } => {
                directory.page(&job.domain, at, after, limit).await?
            }
        })
    }
}
