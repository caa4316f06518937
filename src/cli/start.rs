//! `start`: creates a broadcast job (scheduled with `--at`), then shows it or follows it
//! (`--watch`); with `--dry-run` it only shows who the broadcast would reach and creates
//! nothing. [`launch`] does the same for
//! the follow-ups that `correct` and `retract` create.

use crate::admin::client::{AdminClient, Audience, ClientError, StartRequest, Status};

use super::audience::AudienceArgs;
use super::exit::{CommandError, Exit};
use super::instance::{DomainArg, InstanceArgs, Target};
use super::message::{LanguageArgs, MessageArgs};
use super::output::{self, Planned};
use super::watch::{self, PollArg};

/// `start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub instance: InstanceArgs,
    #[command(flatten)]
    pub domain: DomainArg,
    /// Name of the job, for the operators (1-250 characters)
    #[arg(long)]
    pub name: String,
    /// The sender, an account of the domain (a bare JID such as admin@example.com)
    #[arg(long, value_name = "JID")]
    pub sender: String,
    #[command(flatten)]
    pub message: MessageArgs,
    #[command(flatten)]
    pub audience: AudienceArgs,
    #[command(flatten)]
    pub languages: LanguageArgs,
    /// Schedule the job instead of starting it now: it starts at this time (RFC 3339, such as
    /// 2026-12-01T22:00:00Z or 2026-12-01T23:00:00+01:00), on whichever instance serves the
    /// domain, and its recipients are fixed then; at most 366 days ahead (`abort` cancels it)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<chrono::DateTime<chrono::FixedOffset>>,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

/// A time as `--at` takes it: RFC 3339, with its offset.
fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
    chrono::DateTime::parse_from_rfc3339(text).map_err(|err| {
        format!("{err}: give a date, a time and an offset, such as 2026-12-01T22:00:00Z")
    })
}

/// How a new job is sent and what the command does once it is created; shared by `start`,
/// `correct` and `retract`.
#[derive(Debug, clap::Args)]
pub struct LaunchArgs {
    /// Messages per second, 1-1000
    #[arg(long, default_value_t = 100)]
    pub rate: i64,
    /// Show how many users would get the messages and the first few, and create nothing
    #[arg(long, conflicts_with = "watch")]
    pub dry_run: bool,
    /// With --dry-run: how many of the recipients to list
    #[arg(long, default_value_t = 5, requires = "dry_run")]
    pub sample: u32,
    /// Then follow the job until it ends, as `watch` does, and exit as `watch` does
    #[arg(long)]
    pub watch: bool,
    /// Makes retries safe: the same key with the same arguments answers with the job the
    /// first attempt created (1-128 printable ASCII characters, such as a UUID made once per
    /// notice); with other arguments it is refused (idempotency_key_reused, exit 4)
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub poll: PollArg,
}

/// Runs `start`.
pub async fn run(args: StartArgs) -> Result<Exit, CommandError> {
    if args.audience.reads_stdin() && (args.message.reads_stdin() || args.languages.reads_stdin()) {
        return Err(CommandError::usage(
            "only one of --recipients-file, --subject-file, --body-file and --translation can \
             be standard input ('-')",
        ));
    }
    let texts = args.message.read()?;
    let audience = args.audience.read()?;
    let translations = args.languages.read(&args.message)?;
    let target = args.instance.target(args.domain.domain.as_deref())?;
    let broadcast = StartRequest {
        name: args.name,
        domain: target.domain.clone(),
        subject: texts.subject.unwrap_or_default(),
        body: texts.body,
        sender: args.sender,
        rate: args.launch.rate,
        idempotency_key: args.launch.idempotency_key.clone(),
        start_at: args.at.map(|at| at.to_rfc3339()),
        language: args.languages.language,
        translations,
        audience,
    };
    let created = target.client.start(&broadcast);
    let json = args.instance.json;
    let planned = Planned::Broadcast;
    launch_to(
        &target,
        planned,
        &broadcast.audience,
        &args.launch,
        json,
        created,
    )
    .await
}

/// Creates a job with `create` (a request not yet sent), then shows it or follows it; with
/// `--dry-run`, sends nothing of `create` and only shows who `planned` would reach (exit 2 when
/// nobody).
pub async fn launch(
    target: &Target,
    planned: Planned,
    options: &LaunchArgs,
    json: bool,
    create: impl Future<Output = Result<i64, ClientError>>,
) -> Result<Exit, CommandError> {
    launch_to(target, planned, &Audience::AllUsers, options, json, create).await
}

/// [`launch`] of a broadcast to `audience`.
async fn launch_to(
    target: &Target,
    planned: Planned,
    audience: &Audience,
    options: &LaunchArgs,
    json: bool,
    create: impl Future<Output = Result<i64, ClientError>>,
) -> Result<Exit, CommandError> {
    let Target { client, domain } = target;
    if options.dry_run {
        return dry_run(client, domain, planned, audience, options, json).await;
    }
    let id = create.await?;
    if options.watch {
        if !json {
            out!("started job {id} on {domain}{}", planned.note());
        }
        return watch::follow(client, domain, id, options.poll.interval, json).await;
    }
    let job = client.get(domain, id).await?;
    if json {
        output::print_json(&job);
    } else if let (Status::Scheduled, Some(at)) = (job.status, &job.start_at) {
        out!(
            "scheduled job {id} on {} for {at}: {} recipients now, at {}/s; they are fixed when it starts",
            job.domain,
            job.recipient_count,
            job.message_rate
        );
        out!(
            "cancel it with: xmpp-broadcast abort {id} --domain {}",
            job.domain
        );
    } else {
        out!(
            "started job {id} on {}{}: {} recipients at {}/s",
            job.domain,
            planned.note(),
            job.recipient_count,
            job.message_rate
        );
        out!(
            "follow it with: xmpp-broadcast watch {id} --domain {}",
            job.domain
        );
    }
    Ok(Exit::Success)
}

/// Shows who `planned` would reach now, and how long sending would take.
async fn dry_run(
    client: &AdminClient,
    domain: &str,
    planned: Planned,
    audience: &Audience,
    options: &LaunchArgs,
    json: bool,
) -> Result<Exit, CommandError> {
    let preview = client
        .count_recipients(domain, options.sample, planned.amends(), audience)
        .await?;
    if json {
        output::print_json(&preview);
    } else {
        out!("dry run: nothing was started");
        out!("{}", output::preview_text(&preview, planned));
        if preview.recipient_count > 0 {
            let seconds = preview.recipient_count as f64 / options.rate.max(1) as f64;
            out!(
                "at {}/s sending would take about {}",
                options.rate,
                output::duration(seconds)
            );
        }
    }
    if preview.recipient_count == 0 {
        return Err(CommandError {
            exit: Exit::InvalidInput,
            message: output::nobody(domain, planned),
        });
    }
    Ok(Exit::Success)
}
