//! Running broadcasts: the worker that sends one job, the manager that runs this instance's
//! workers, and the operations the admin API calls. What a job is lives in [`crate::job`].

mod manager;
mod progress;
mod recipients;
mod safety;
mod schedule;
mod scope;
mod service;
mod supervise;
mod worker;

pub use manager::Manager;
pub use safety::Safety;
pub use scope::{Conflict, ConflictKind, NotServed, Scope};
pub use service::{
    AbortError, Accepted, BroadcastService, COUNT_WAIT, FollowUp, HoldError, Preview, QueryError,
    StartError,
};
