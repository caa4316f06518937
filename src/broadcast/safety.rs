//! Safety mode (design invariant 6): knowing, without asking the database, whether this
//! instance's leases can still be trusted.
//!
//! An instance starts unsafe: nothing is vouched for until its first renewal, after it has
//! reached the job database and resumed its jobs. Each successful renewal of the leases moves a
//! deadline forward: the instant the renewal began, plus the lease time, minus a margin. Past that deadline a lease may have expired and
//! been taken by another instance, so workers must not send; they wait until a renewal succeeds
//! again. The deadline is measured on the monotonic clock, which keeps running while the process
//! is frozen (SIGSTOP) or the host is busy: a worker that wakes up late sees that its deadline
//! has passed before it sends anything.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Whether this instance may act on its leases; cheap to clone.
#[derive(Clone)]
pub struct Safety {
    lease_time: Duration,
    /// Up to when the leases are trusted; `None` before the first renewal.
    deadline: std::sync::Arc<Mutex<Option<Instant>>>,
    /// True while the last renewal succeeded; workers wait on it when paused.
    renewing: watch::Sender<bool>,
}

impl Safety {
    /// Starts vouching for nothing: workers wait and new jobs are refused until the first
    /// [`Safety::renewed`].
    pub fn new(lease_time: Duration) -> Self {
        Safety {
            lease_time,
            deadline: std::sync::Arc::new(Mutex::new(None)),
            renewing: watch::Sender::new(false),
        }
    }

    /// How much of a lease is kept as a margin against clock and scheduling delays.
    fn margin(&self) -> Duration {
        self.lease_time / 5
    }

    /// The leases were renewed by a query that began at `began`.
    pub fn renewed(&self, began: Instant) {
        let deadline = began + self.lease_time - self.margin();
        *self.deadline.lock().expect("deadline lock") = Some(deadline);
        self.renewing.send_replace(true);
    }

    /// A renewal failed: new jobs are refused until one succeeds.
    pub fn renewal_failed(&self) {
        self.renewing.send_replace(false);
    }

    /// Whether new jobs may be started (the last renewal succeeded).
    pub fn accepts_new_jobs(&self) -> bool {
        *self.renewing.borrow() && self.may_send()
    }

    /// Whether a worker may send now: the leases are certainly still ours.
    pub fn may_send(&self) -> bool {
        self.deadline
            .lock()
            .expect("deadline lock")
            .is_some_and(|deadline| Instant::now() < deadline)
    }

    /// Waits until a renewal has made sending safe again.
    pub async fn wait_until_safe(&self) {
        let mut renewing = self.renewing.subscribe();
        loop {
            if self.may_send() {
                return;
            }
            // Marked so that a renewal that lands between the check and the wait is seen.
            renewing.mark_unchanged();
            if self.may_send() {
                return;
            }
            if renewing.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker paused on `safety` is held until a renewal, which wakes it.
    async fn assert_held_until_renewed(safety: &Safety) {
        let waiter = {
            let safety = safety.clone();
            tokio::spawn(async move { safety.wait_until_safe().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a worker waits for a renewal");
        safety.renewed(Instant::now());
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("a renewal wakes paused workers")
            .unwrap();
        assert!(safety.may_send() && safety.accepts_new_jobs());
    }

    #[tokio::test]
    async fn nothing_is_vouched_for_before_the_first_renewal() {
        let safety = Safety::new(Duration::from_secs(600));
        assert!(!safety.may_send() && !safety.accepts_new_jobs());
        assert_held_until_renewed(&safety).await;
    }

    #[tokio::test]
    async fn sending_stops_before_the_lease_could_expire() {
        let lease = Duration::from_secs(10);
        let safety = Safety::new(lease);
        safety.renewed(Instant::now() - Duration::from_secs(9));
        assert!(!safety.may_send(), "8 s of a 10 s lease are usable");
        assert!(!safety.accepts_new_jobs());
        assert_held_until_renewed(&safety).await;

        safety.renewal_failed();
        assert!(safety.may_send(), "still within the renewed lease");
        assert!(
            !safety.accepts_new_jobs(),
            "no new jobs while renewals fail"
        );
    }
}
