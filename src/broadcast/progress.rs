//! The progress log of a long step of a start: listing, counting or storing the recipients
//! of a large domain, in the request or in the job's first worker.

use std::future::Future;
use std::time::Duration;

/// How long a step of a start runs before its progress is logged, and then how often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Runs `work`, a `step` of a start on `domain`; if it takes longer than [`PROGRESS_EVERY`],
/// logs every [`PROGRESS_EVERY`] that it is still under way, and how long it took in the end.
pub async fn with_progress<T>(domain: &str, step: &str, work: impl Future<Output = T>) -> T {
    let began = tokio::time::Instant::now();
    let mut work = std::pin::pin!(work);
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        tokio::select! {
            done = &mut work => {
                if began.elapsed() >= PROGRESS_EVERY {
                    tracing::info!(domain, step, took_ms = began.elapsed().as_millis() as u64, "start step done");
                }
                return done;
            }
            _ = ticks.tick() => {
                tracing::info!(domain, step, elapsed_s = began.elapsed().as_secs(), "starting a broadcast: still {step}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log sink for one test.
    #[derive(Clone, Default)]
    struct Logged(Arc<Mutex<Vec<u8>>>);

    impl Write for Logged {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `step` logs when it takes `lasts` (on tokio's paused clock).
    async fn logged_by_a_step_of(lasts: Duration) -> String {
        let logged = Logged::default();
        let sink = logged.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        with_progress(
            "example.com",
            "reading the recipients",
            tokio::time::sleep(lasts),
        )
        .await;
        String::from_utf8(logged.0.lock().expect("log lock").clone()).expect("UTF-8 log")
    }

    /// A step of a start that takes 2.5 s logs that it is still under way at 1 s and 2 s,
    /// then how long it took; one under a second logs nothing.
    #[tokio::test(start_paused = true)]
    async fn a_start_step_longer_than_a_second_logs_its_progress() {
        let long = logged_by_a_step_of(Duration::from_millis(2500)).await;
        assert_eq!(
            long.matches("starting a broadcast: still reading the recipients")
                .count(),
            2,
            "{long}"
        );
        assert!(long.contains("start step done"), "{long}");
        assert!(long.contains("took_ms=2500"), "{long}");
        assert!(
            long.contains("domain=\"example.com\"") || long.contains("domain=example.com"),
            "{long}"
        );

        let short = logged_by_a_step_of(Duration::from_millis(900)).await;
        assert_eq!(short, "", "a step under a second logs nothing");
    }
}
