//! The eight metrics of MongooseIM's mod_broadcast, in Prometheus text format, labelled by
//! `host_type` (the domain), plus build information and whether the job database is usable.
//! They are local to this instance: sum them over instances for a cluster-wide figure. One
//! more is a view of the shared job database: `xmpp_broadcast_waiting_jobs`, the running jobs
//! that no instance holds, which every instance reports alike (take the maximum over
//! instances, not the sum).
//!
//! Recipients are counted when their batch is committed, that is once the server has
//! acknowledged it, so the counters of a finished job equal its recipients even when a batch
//! had to be sent twice.

use prometheus::{Encoder, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::job::JobEnd;

/// This instance's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    live_jobs: IntGaugeVec,
    jobs_started: IntCounterVec,
    jobs_finished: IntCounterVec,
    jobs_aborted_admin: IntCounterVec,
    jobs_aborted_error: IntCounterVec,
    recipients_processed: IntCounterVec,
    recipients_success: IntCounterVec,
    recipients_skipped: IntCounterVec,
    waiting_jobs: IntGaugeVec,
    /// The configured domains, whose series are always shown.
    domains: Vec<String>,
    job_database_up: IntGauge,
}

impl Metrics {
    /// Registers every metric, with a zero series for each served domain.
    pub fn new(domains: &[String]) -> Self {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let gauge =
                IntGaugeVec::new(Opts::new(name, help), &["host_type"]).expect("valid gauge");
            registry
                .register(Box::new(gauge.clone()))
                .expect("unique metric");
            gauge
        };
        let counter = |name: &str, help: &str| {
            let counter =
                IntCounterVec::new(Opts::new(name, help), &["host_type"]).expect("valid counter");
            registry
                .register(Box::new(counter.clone()))
                .expect("unique metric");
            counter
        };
        let metrics = Metrics {
            live_jobs: gauge(
                "mod_broadcast_live_jobs",
                "Number of currently running broadcast jobs on the local node.",
            ),
            jobs_started: counter(
                "mod_broadcast_jobs_started_total",
                "Broadcast jobs started.",
            ),
            jobs_finished: counter(
                "mod_broadcast_jobs_finished_total",
                "Broadcast jobs finished successfully.",
            ),
            jobs_aborted_admin: counter(
                "mod_broadcast_jobs_aborted_admin_total",
                "Broadcast jobs aborted by an administrator.",
            ),
            jobs_aborted_error: counter(
                "mod_broadcast_jobs_aborted_error_total",
                "Broadcast jobs aborted automatically due to an error.",
            ),
            recipients_processed: counter(
                "mod_broadcast_recipients_processed_total",
                "Recipients processed (attempted deliveries).",
            ),
            recipients_success: counter(
                "mod_broadcast_recipients_success_total",
                "Successful per-recipient routes.",
            ),
            recipients_skipped: counter(
                "mod_broadcast_recipients_skipped_total",
                "Per-recipient routes that failed and were skipped.",
            ),
            waiting_jobs: gauge(
                "xmpp_broadcast_waiting_jobs",
                "Running jobs of the shared job database that no instance holds: they wait for \
                 an instance that serves their domain with their users database (the same on \
                 every instance: take the maximum, not the sum).",
            ),
            job_database_up: IntGauge::new(
                "xmpp_broadcast_job_database_up",
                "1 while the job database is usable (reached, and this instance's leases renewed), \
                 0 otherwise.",
            )
            .expect("valid gauge"),
            registry,
            domains: domains.to_vec(),
        };
        metrics
            .registry
            .register(Box::new(metrics.job_database_up.clone()))
            .expect("unique metric");
        let build = IntGaugeVec::new(
            Opts::new(
                "xmpp_broadcast_build_info",
                "Version of the running xmpp-broadcast.",
            ),
            &["version"],
        )
        .expect("valid gauge");
        metrics
            .registry
            .register(Box::new(build.clone()))
            .expect("unique metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for domain in domains {
            metrics.live_jobs.with_label_values(&[domain]).set(0);
            metrics.waiting_jobs.with_label_values(&[domain]).set(0);
            for counter in metrics.counters() {
                counter.with_label_values(&[domain]).reset();
            }
        }
        metrics
    }

    fn counters(&self) -> [&IntCounterVec; 7] {
        [
            &self.jobs_started,
            &self.jobs_finished,
            &self.jobs_aborted_admin,
            &self.jobs_aborted_error,
            &self.recipients_processed,
            &self.recipients_success,
            &self.recipients_skipped,
        ]
    }

    /// A new job's worker started here (not a resumed one).
    pub fn job_started(&self, domain: &str) {
        self.jobs_started.with_label_values(&[domain]).inc();
    }

    /// A worker began running on this instance.
    pub fn worker_up(&self, domain: &str) {
        self.live_jobs.with_label_values(&[domain]).inc();
    }

    /// A worker stopped running on this instance; `end` says why, if the job ended.
    pub fn worker_down(&self, domain: &str, end: Option<JobEnd>) {
        self.live_jobs.with_label_values(&[domain]).dec();
        if let Some(end) = end {
            self.job_ended(domain, end);
        }
    }

    /// A job ended here without a worker going down with it: one whose stored row is
    /// unusable, or whose abort this instance recorded after stopping its worker.
    pub fn job_ended(&self, domain: &str, end: JobEnd) {
        let counter = match end {
            JobEnd::Finished => &self.jobs_finished,
            JobEnd::AbortedByAdmin => &self.jobs_aborted_admin,
            JobEnd::AbortedByError => &self.jobs_aborted_error,
        };
        counter.with_label_values(&[domain]).inc();
    }

    /// A batch was acknowledged: `sent` recipients got their message, `skipped` could not
    /// be addressed.
    pub fn batch_committed(&self, domain: &str, sent: u64, skipped: u64) {
        self.recipients_processed
            .with_label_values(&[domain])
            .inc_by(sent + skipped);
        self.recipients_success
            .with_label_values(&[domain])
            .inc_by(sent);
        self.recipients_skipped
            .with_label_values(&[domain])
            .inc_by(skipped);
    }

    /// The running jobs that no instance holds, by domain (any domain of the job database:
    /// a removed one included); every other domain's series is 0 or gone.
    pub fn set_waiting_jobs(&self, by_domain: &std::collections::BTreeMap<&str, i64>) {
        self.waiting_jobs.reset();
        for domain in &self.domains {
            self.waiting_jobs.with_label_values(&[domain]).set(0);
        }
        for (domain, count) in by_domain {
            self.waiting_jobs.with_label_values(&[domain]).set(*count);
        }
    }

    /// Whether the job database is usable now.
    pub fn job_database_up(&self, up: bool) {
        self.job_database_up.set(i64::from(up));
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("text encoding cannot fail");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_domain() {
        let metrics = Metrics::new(&["example.com".to_owned()]);
        metrics.job_started("example.com");
        metrics.worker_up("example.com");
        metrics.batch_committed("example.com", 9, 1);
        metrics.worker_down("example.com", Some(JobEnd::Finished));
        let text = metrics.render();
        for line in [
            "mod_broadcast_jobs_started_total{host_type=\"example.com\"} 1",
            "mod_broadcast_jobs_finished_total{host_type=\"example.com\"} 1",
            "mod_broadcast_jobs_aborted_admin_total{host_type=\"example.com\"} 0",
            "mod_broadcast_live_jobs{host_type=\"example.com\"} 0",
            "xmpp_broadcast_waiting_jobs{host_type=\"example.com\"} 0",
            "mod_broadcast_recipients_processed_total{host_type=\"example.com\"} 10",
            "mod_broadcast_recipients_success_total{host_type=\"example.com\"} 9",
            "mod_broadcast_recipients_skipped_total{host_type=\"example.com\"} 1",
            "# TYPE mod_broadcast_live_jobs gauge",
            "# TYPE mod_broadcast_recipients_success_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn waiting_jobs_are_shown_for_any_domain_and_cleared() {
        let metrics = Metrics::new(&["example.com".to_owned()]);
        let waiting = std::collections::BTreeMap::from([("example.org", 1)]);
        metrics.set_waiting_jobs(&waiting);
        let text = metrics.render();
        for line in [
            "xmpp_broadcast_waiting_jobs{host_type=\"example.com\"} 0",
            "xmpp_broadcast_waiting_jobs{host_type=\"example.org\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        metrics.set_waiting_jobs(&std::collections::BTreeMap::new());
        let text = metrics.render();
        assert!(!text.contains("example.org"), "{text}");
        assert!(text.contains("xmpp_broadcast_waiting_jobs{host_type=\"example.com\"} 0"));
    }

    #[test]
    fn says_whether_the_job_database_is_usable() {
        let metrics = Metrics::new(&["example.com".to_owned()]);
        let value = |metrics: &Metrics| {
            let text = metrics.render();
            text.lines()
                .find_map(|line| line.strip_prefix("xmpp_broadcast_job_database_up "))
                .map(str::to_owned)
                .unwrap_or_else(|| panic!("no job database gauge in\n{text}"))
        };
        assert_eq!(value(&metrics), "0", "not usable before anything says so");
        metrics.job_database_up(true);
        assert_eq!(value(&metrics), "1");
        metrics.job_database_up(false);
        assert_eq!(value(&metrics), "0");
    }
}
