//! Crash recovery on a real Prosody: a `serve` killed with SIGKILL during the second batch and
//! started again resumes its job from the committed progress and finishes it, with repeats
//! bounded by one batch ([`scenarios::killed_serve_resumes_its_running_job`]).

mod support;

use support::prosody::{Prosody, ProsodyStorage};
use support::scenarios;
use support::serve::JobStore;

#[tokio::test(flavor = "multi_thread")]
async fn killed_serve_resumes_its_running_job() {
    let prosody = Prosody::start(ProsodyStorage::Sqlite).await;
    scenarios::killed_serve_resumes_its_running_job(&prosody, JobStore::Sqlite).await;
}
