//! The broadcast domain: requests and their validation, jobs, the worker that sends one job, the
//! manager that runs this instance's workers, and the operations the admin API calls.

mod job;
mod manager;
mod recipients;
mod safety;
mod service;
pub mod spec;
mod worker;

pub use job::{
    ExecutionState, InvalidRow, Job, JobId, Lease, MAX_JOB_ID, RowProblem, Sending, Snapshot,
};
pub use manager::Manager;
pub use safety::Safety;
pub use service::{AbortError, Broadcasts, Preview, QueryError, StartError};
pub use spec::{BroadcastRequest, InvalidRequest, JobSpec, Parameter, RecipientGroup};
pub use worker::WorkerEnd;
