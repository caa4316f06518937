//! `start`: creates a broadcast job, then shows it or follows it (`--watch`); with `--dry-run`
//! it only shows who the broadcast would reach and creates nothing.

use std::path::{Path, PathBuf};

use clap::ArgGroup;

use crate::admin::client::StartRequest;

use super::exit::{CommandError, Exit};
use super::instance::{DomainArg, InstanceArgs, Target};
use super::message::{STDIN, read_text};
use super::output;
use super::watch::{self, PollArg};

/// `start`.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("body_source").required(true).args(["body", "body_file"])))]
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
    /// Subject of the message (default: none)
    #[arg(long, conflicts_with = "subject_file")]
    pub subject: Option<String>,
    /// Read the subject from FILE ('-': standard input); final line breaks are dropped
    #[arg(long, value_name = "FILE")]
    pub subject_file: Option<PathBuf>,
    /// Body of the message (1-16000 characters)
    #[arg(long)]
    pub body: Option<String>,
    /// Read the body from FILE ('-': standard input); final line breaks are dropped
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// Messages per second, 1-1000
    #[arg(long, default_value_t = 100)]
    pub rate: i64,
    /// Show how many users the broadcast would reach and the first few, and start nothing
    #[arg(long, conflicts_with = "watch")]
    pub dry_run: bool,
    /// With --dry-run: how many of the recipients to list
    #[arg(long, default_value_t = 5, requires = "dry_run")]
    pub sample: u32,
    /// Then follow the job until it ends, as `watch` does, and exit as `watch` does
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub poll: PollArg,
}

/// Runs `start`.
pub async fn run(args: StartArgs) -> Result<Exit, CommandError> {
    let stdin = Path::new(STDIN);
    if args.subject_file.as_deref() == Some(stdin) && args.body_file.as_deref() == Some(stdin) {
        return Err(CommandError::usage(
            "only one of --subject-file and --body-file can be standard input ('-')",
        ));
    }
    let subject = read_text(args.subject.as_deref(), args.subject_file.as_deref())?;
    let body = read_text(args.body.as_deref(), args.body_file.as_deref())?;
    let Target { client, domain } = args.instance.target(args.domain.domain.as_deref())?;
    let broadcast = StartRequest {
        name: args.name,
        domain,
        subject: subject.unwrap_or_default(),
        body: body.unwrap_or_default(),
        sender: args.sender,
        rate: args.rate,
    };
    let json = args.instance.json;
    if args.dry_run {
        let preview = client
            .count_recipients(&broadcast.domain, args.sample)
            .await?;
        if json {
            output::print_json(&preview);
        } else {
            out!("dry run: nothing was started");
            out!("{}", output::preview_text(&preview));
            if preview.recipient_count > 0 {
                let seconds = preview.recipient_count as f64 / broadcast.rate.max(1) as f64;
                out!(
                    "at {}/s sending would take about {}",
                    broadcast.rate,
                    output::duration(seconds)
                );
            }
        }
        if preview.recipient_count == 0 {
            return Err(CommandError {
                exit: Exit::InvalidInput,
                message: format!(
                    "{} has no users: start would fail with no_recipients",
                    broadcast.domain
                ),
            });
        }
        return Ok(Exit::Success);
    }
    let id = client.start(&broadcast).await?;
    if args.watch {
        if !json {
            out!("started job {id} on {}", broadcast.domain);
        }
        return watch::follow(&client, &broadcast.domain, id, args.poll.interval, json).await;
    }
    let job = client.get(&broadcast.domain, id).await?;
    if json {
        output::print_json(&job);
    } else {
        out!(
            "started job {id} on {}: {} recipients at {}/s",
            job.domain,
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
