//! `correct` and `retract`: a follow-up job that sends everyone a broadcast reached a
//! correction (XEP-0308) or a retraction (XEP-0424) of it. They create, show, follow and dry-run
//! their job as `start` does ([`launch`]).

use crate::admin::client::CorrectRequest;

use super::exit::{CommandError, Exit};
use super::instance::Target;
use super::jobs::JobArgs;
use super::message::{LanguageArgs, MessageArgs};
use super::output::Planned;
use super::start::{LaunchArgs, launch};

/// `correct ID`.
#[derive(Debug, clap::Args)]
#[command(mut_arg("id", |arg| arg.help("The job to correct: a broadcast, or a correction of one")))]
#[command(mut_arg("subject", |arg| arg.help(
    "Subject of the correction (default: the corrected job's subject; '' for none)"
)))]
pub struct CorrectArgs {
    #[command(flatten)]
    pub job: JobArgs,
    #[command(flatten)]
    pub message: MessageArgs,
    #[command(flatten)]
    pub languages: LanguageArgs,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

/// `retract ID`.
#[derive(Debug, clap::Args)]
#[command(mut_arg("id", |arg| arg.help("The job to retract: a broadcast, or a correction of one")))]
pub struct RetractArgs {
    #[command(flatten)]
    pub job: JobArgs,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

/// Runs `correct`. Without a subject, the correction keeps the subject of job `ID`; without
/// `--language`, its language. Its translations are never kept (they translate the text being
/// corrected): a warning names them when the correction has none.
pub async fn correct(args: CorrectArgs) -> Result<Exit, CommandError> {
    let texts = args.message.read()?;
    let translations = args.languages.read(&args.message)?;
    let target = args.job.target()?;
    let Target { client, domain } = &target;
    let id = args.job.id;
    let (rate, idempotency_key) = (args.launch.rate, args.launch.idempotency_key.clone());
    let language = args.languages.language;
    let created = async move {
        let corrected = match (&texts.subject, &language) {
            (Some(_), Some(_)) if !translations.is_empty() => None,
            _ => Some(client.get(domain, id).await?),
        };
        if let Some(corrected) = &corrected
            && translations.is_empty()
            && !corrected.translations.is_empty()
        {
            let tags: Vec<&str> = corrected
                .translations
                .iter()
                .map(|translation| translation.language.as_str())
                .collect();
            eprintln!(
                "warning: job {id} has translations ({}); a correction replaces the whole \
                 message, and this one has none (give --translation for each language)",
                tags.join(", ")
            );
        }
        let subject = match (texts.subject, &corrected) {
            (Some(subject), _) => subject,
            (None, Some(corrected)) => corrected.message_subject.clone(),
            (None, None) => String::new(),
        };
        let language = language.or_else(|| corrected.and_then(|corrected| corrected.language));
        let correction = CorrectRequest {
            domain: domain.clone(),
            id,
            subject,
            body: texts.body,
            rate,
            idempotency_key,
            language,
            translations,
        };
        client.correct(&correction).await
    };
    let planned = Planned::Correction { amends: id };
    let json = args.job.instance.json;
    launch(&target, planned, &args.launch, json, created).await
}

/// Runs `retract`.
pub async fn retract(args: RetractArgs) -> Result<Exit, CommandError> {
    let target = args.job.target()?;
    let id = args.job.id;
    let planned = Planned::Retraction { amends: id };
    let key = args.launch.idempotency_key.as_deref();
    let created = target
        .client
        .retract(&target.domain, id, args.launch.rate, key);
    let json = args.job.instance.json;
    launch(&target, planned, &args.launch, json, created).await
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::super::{Cli, Command};

    fn parse(line: &str) -> Result<Command, clap::Error> {
        let words = std::iter::once("xmpp-broadcast").chain(line.split_whitespace());
        Cli::try_parse_from(words).map(|cli| cli.command)
    }

    #[test]
    fn correct_takes_the_message_and_the_launch_flags_of_start() {
        let Ok(Command::Correct(args)) = parse("correct 7 --body-file - --rate 5 --watch") else {
            panic!("correct parses");
        };
        assert_eq!((args.job.id, args.launch.rate), (7, 5));
        assert!(args.launch.watch && !args.launch.dry_run);
        assert_eq!(args.message.subject, None, "the original's subject is kept");
        assert!(parse("correct 7").is_err(), "a body is required");
        assert!(parse("correct 7 --body b --dry-run --watch").is_err());
        let help = Cli::command()
            .find_subcommand_mut("correct")
            .expect("correct")
            .render_long_help()
            .to_string();
        assert!(
            help.contains("default: the corrected job's subject"),
            "{help}"
        );
    }

    #[test]
    fn retract_takes_no_message() {
        let Ok(Command::Retract(args)) = parse("retract 7 --dry-run --sample 2") else {
            panic!("retract parses");
        };
        assert_eq!(
            (args.job.id, args.launch.sample, args.launch.rate),
            (7, 2, 100)
        );
        assert!(parse("retract 7 --body b").is_err());
        assert!(
            parse("retract 7 --sample 2").is_err(),
            "--sample needs --dry-run"
        );
        assert!(parse("retract").is_err(), "the job's id is required");
    }
}
