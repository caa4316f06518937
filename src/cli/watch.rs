//! `watch` (and `start --watch`): follows a job until it ends and exits with how it ended.
//!
//! On a terminal it draws a live progress bar (processed / count, rate, ETA); otherwise, and
//! with `--json`, it prints a line each time the job changes: text, or the job object as JSON.
//! A job's progress moves in batches (ten seconds of sending each), so the rate is measured
//! between two observed batches; until then it is the job's configured rate.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::admin::client::{AdminClient, ApiJob, ClientError, ExecutionState, Failure, Status};

use super::exit::{CommandError, Exit};
use super::instance::{DomainArg, InstanceArgs, Target};
use super::output;

/// How long the instance may stay unreachable while a job is watched, for example while it
/// restarts, before `watch` gives up with exit 5.
const PATIENCE: Duration = Duration::from_secs(30);
/// How often the bar redraws between two looks at the job.
const TICK: Duration = Duration::from_millis(200);

/// `watch ID`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub instance: InstanceArgs,
    #[command(flatten)]
    pub domain: DomainArg,
    /// The job's id
    pub id: i64,
    #[command(flatten)]
    pub poll: PollArg,
}

/// How often to look at a watched job.
#[derive(Debug, Clone, clap::Args)]
pub struct PollArg {
    /// Seconds between two looks at the job (at least 0.1)
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_interval)]
    pub interval: Duration,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text.parse().map_err(|_| format!("not a number: {text}"))?;
    if !(0.1..=3600.0).contains(&seconds) {
        return Err("between 0.1 and 3600 seconds".to_owned());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Runs `watch`.
pub async fn run(args: WatchArgs) -> Result<Exit, CommandError> {
    let Target { client, domain } = args.instance.target(args.domain.domain.as_deref())?;
    follow(
        &client,
        &domain,
        args.id,
        args.poll.interval,
        args.instance.json,
    )
    .await
}

/// Follows job `id` of `domain` until it is no longer running; the exit code says how it
/// ended: 0 FINISHED, 10 ABORT_ADMIN, 11 ABORT_ERROR.
pub async fn follow(
    client: &AdminClient,
    domain: &str,
    id: i64,
    interval: Duration,
    json: bool,
) -> Result<Exit, CommandError> {
    let mut job = client.get(domain, id).await?;
    let mut view = View::new(&job, json);
    let mut outage: Option<Instant> = None;
    while job.execution_state == ExecutionState::Running {
        view.show(&job);
        tokio::time::sleep(interval).await;
        match client.get(domain, id).await {
            Ok(next) => {
                outage = None;
                job = next;
            }
            Err(err) if err.failure() == Failure::Unavailable => {
                let since = *outage.get_or_insert_with(|| {
                    view.warn(&err);
                    Instant::now()
                });
                if since.elapsed() >= PATIENCE {
                    return Err(err.into());
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
    view.finish(&job);
    Ok(ending(job.execution_state))
}

/// The exit code for how a job ended.
fn ending(state: ExecutionState) -> Exit {
    match state {
        ExecutionState::Running | ExecutionState::Finished => Exit::Success,
        ExecutionState::AbortAdmin => Exit::AbortedByAdmin,
        ExecutionState::AbortError => Exit::AbortedByError,
    }
}

/// Where the progress goes.
enum View {
    /// A live bar on a terminal.
    Bar {
        bar: ProgressBar,
        estimate: Estimate,
    },
    /// A text line per change.
    Lines {
        estimate: Estimate,
        last: Option<(i64, Status)>,
    },
    /// The job object as JSON, a line per change; the last line printed.
    Json { last: String },
}

impl View {
    fn new(job: &ApiJob, json: bool) -> View {
        let estimate = Estimate::new(job);
        if json {
            View::Json {
                last: String::new(),
            }
        } else if std::io::stdout().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                Some(job.recipient_count.max(0) as u64),
                ProgressDrawTarget::stdout(),
            );
            let style = ProgressStyle::with_template(
                "{spinner} job {prefix} [{bar:40}] {pos}/{len} ({percent}%) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(job.id.to_string());
            bar.enable_steady_tick(TICK);
            View::Bar { bar, estimate }
        } else {
            View::Lines {
                estimate,
                last: None,
            }
        }
    }

    fn show(&mut self, job: &ApiJob) {
        match self {
            View::Bar { bar, estimate } => {
                estimate.observe(job);
                bar.set_length(job.recipient_count.max(0) as u64);
                bar.set_position(job.recipients_processed.max(0) as u64);
                bar.set_message(estimate.describe(job));
            }
            View::Lines { estimate, last } => {
                estimate.observe(job);
                let now = (job.recipients_processed, job.status);
                if *last != Some(now) {
                    *last = Some(now);
                    out!(
                        "job {} {}: {}, {}",
                        job.id,
                        job.status,
                        output::progress(job),
                        estimate.describe(job)
                    );
                }
            }
            View::Json { last } => {
                let line = output::json_line(job);
                if *last != line {
                    out!("{line}");
                    *last = line;
                }
            }
        }
    }

    fn warn(&self, err: &ClientError) {
        let message = format!(
            "warning: {err}; trying again for up to {}",
            output::duration(PATIENCE.as_secs_f64())
        );
        match self {
            View::Bar { bar, .. } => bar.suspend(|| eprintln!("{message}")),
            View::Lines { .. } | View::Json { .. } => eprintln!("{message}"),
        }
    }

    /// Shows the final state: the last JSON line, or a summary line.
    fn finish(&mut self, job: &ApiJob) {
        match self {
            View::Bar { bar, .. } => {
                bar.set_position(job.recipients_processed.max(0) as u64);
                bar.set_message(job.status.to_string());
                bar.finish();
            }
            View::Json { .. } => return self.show(job),
            View::Lines { .. } => {}
        }
        out!("{}", summary(job));
    }
}

/// `job 7 FINISHED: 20/20 processed (100%) in 2s`, with the reason of an ABORT_ERROR.
fn summary(job: &ApiJob) -> String {
    let mut text = format!("job {} {}: {}", job.id, job.status, output::progress(job));
    let parse = |stamp: &Option<String>| {
        stamp
            .as_deref()
            .and_then(|stamp| chrono::DateTime::parse_from_rfc3339(stamp).ok())
    };
    if let (Some(start), Some(stop)) = (parse(&job.start_timestamp), parse(&job.stop_timestamp)) {
        let seconds = (stop - start).num_milliseconds() as f64 / 1000.0;
        text.push_str(&format!(" in {}", output::duration(seconds)));
    }
    if let Some(reason) = &job.abortion_reason {
        text.push_str(&format!(": {reason}"));
    }
    text
}

/// The rate and the time left, from the batches seen so far.
struct Estimate {
    /// The job's configured rate, used until two batches have been seen.
    configured: f64,
    /// When the first batch was seen to complete, and the count then.
    first_batch: Option<(Instant, i64)>,
    /// When the count last changed (or watching began), and the count then.
    last_change: (Instant, i64),
    /// Recipients per second between the first and the last batch seen.
    measured: Option<f64>,
}

impl Estimate {
    fn new(job: &ApiJob) -> Estimate {
        Estimate {
            configured: job.message_rate.max(1) as f64,
            first_batch: None,
            last_change: (Instant::now(), job.recipients_processed),
            measured: None,
        }
    }

    fn observe(&mut self, job: &ApiJob) {
        let processed = job.recipients_processed;
        if processed == self.last_change.1 {
            return;
        }
        let now = Instant::now();
        match self.first_batch {
            None => self.first_batch = Some((now, processed)),
            Some((then, before)) => {
                let seconds = now.duration_since(then).as_secs_f64();
                if seconds > 0.0 && processed > before {
                    self.measured = Some((processed - before) as f64 / seconds);
                }
            }
        }
        self.last_change = (now, processed);
    }

    fn rate(&self) -> f64 {
        self.measured.unwrap_or(self.configured)
    }

    /// `12.5/s, ETA 1m20s`: the time left counts down between batches.
    fn describe(&self, job: &ApiJob) -> String {
        let remaining = (job.recipient_count - job.recipients_processed).max(0) as f64;
        let since_change = self.last_change.0.elapsed().as_secs_f64();
        let eta = (remaining / self.rate() - since_change).max(0.0);
        format!("{:.1}/s, ETA {}", self.rate(), output::duration(eta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_says_how_the_job_ended() {
        assert_eq!(ending(ExecutionState::Finished), Exit::Success);
        assert_eq!(ending(ExecutionState::AbortAdmin) as u8, 10);
        assert_eq!(ending(ExecutionState::AbortError) as u8, 11);
    }

    #[test]
    fn intervals_are_bounded() {
        assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("soon").is_err());
    }
}
