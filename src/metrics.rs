//! The eight metrics of MongooseIM's mod_broadcast, in Prometheus text format, labelled by
//! `host_type` (the domain), plus build information. They are local to this instance: sum them
//! over instances for a cluster-wide figure.
//!
//! Recipients are counted when their batch is committed, that is once the server has
//! acknowledged it, so the counters of a finished job equal its recipients even when a batch
//! had to be sent twice.

use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

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
            registry,
        };
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
            "mod_broadcast_recipients_processed_total{host_type=\"example.com\"} 10",
            "mod_broadcast_recipients_success_total{host_type=\"example.com\"} 9",
            "mod_broadcast_recipients_skipped_total{host_type=\"example.com\"} 1",
            "# TYPE mod_broadcast_live_jobs gauge",
            "# TYPE mod_broadcast_recipients_success_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }
}
