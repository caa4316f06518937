//! `list`, `show`, `pause`, `resume`, `abort`, `delete` and `count`: one API call each, printed
//! as text or, with `--json`, as the API's objects.

use crate::admin::client::AdminClient;

use super::audience::AudienceArgs;
use super::exit::{CommandError, Exit};
use super::instance::{DomainArg, InstanceArgs, Target};
use super::output::{self, Planned};

/// `list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub instance: InstanceArgs,
    #[command(flatten)]
    pub domain: DomainArg,
    /// How many jobs to list, newest first
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// How many of the newest jobs to skip
    #[arg(long, default_value_t = 0)]
    pub index: u32,
}

/// `show ID`.
#[derive(Debug, clap::Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub instance: InstanceArgs,
    #[command(flatten)]
    pub domain: DomainArg,
    /// The job's id
    pub id: i64,
}

impl JobArgs {
    /// The client, and the domain of the job.
    pub fn target(&self) -> Result<Target, CommandError> {
        self.instance.target(self.domain.domain.as_deref())
    }
}

/// `abort ID` and `abort --all`.
#[derive(Debug, clap::Args)]
pub struct AbortArgs {
    #[command(flatten)]
    pub instance: InstanceArgs,
    #[command(flatten)]
    pub domain: DomainArg,
    /// The job's id
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub id: Option<i64>,
    /// Abort the running job of the domain, if one runs
    #[arg(long)]
    pub all: bool,
}

/// `delete ID...` and `delete --all`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub instance: InstanceArgs,
    #[command(flatten)]
    pub domain: DomainArg,
    /// The ids of the jobs to delete
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub ids: Vec<i64>,
    /// Delete every job of the domain that is not running
    #[arg(long)]
    pub all: bool,
}

/// `count [DOMAIN]`.
#[derive(Debug, clap::Args)]
pub struct CountArgs {
    #[command(flatten)]
    pub instance: InstanceArgs,
    /// The XMPP domain, as an argument or with --domain
    #[arg(value_name = "DOMAIN", conflicts_with = "domain")]
    pub domain_argument: Option<String>,
    #[command(flatten)]
    pub domain: DomainArg,
    /// How many of the recipients to list, in sending order
    #[arg(long, default_value_t = 5)]
    pub sample: u32,
    #[command(flatten)]
    pub audience: AudienceArgs,
}

/// Runs `list`: a table of jobs, or a JSON array of job objects.
pub async fn list(args: ListArgs) -> Result<Exit, CommandError> {
    let Target { client, domain } = args.instance.target(args.domain.domain.as_deref())?;
    let jobs = client.list(&domain, args.limit, args.index).await?;
    output::emit(args.instance.json, &jobs, |jobs| match jobs.as_slice() {
        [] => format!("no jobs on {domain}"),
        jobs => output::jobs_table(jobs),
    });
    Ok(Exit::Success)
}

/// Runs `show`: every field of a job.
pub async fn show(args: JobArgs) -> Result<Exit, CommandError> {
    let Target { client, domain } = args.target()?;
    let job = client.get(&domain, args.id).await?;
    output::emit(args.instance.json, &job, output::job_details);
    Ok(Exit::Success)
}

/// Runs `pause`, then shows the job as it is now.
pub async fn pause(args: JobArgs) -> Result<Exit, CommandError> {
    let Target { client, domain } = args.target()?;
    client.pause(&domain, args.id).await?;
    show_state(&client, &domain, args.id, args.instance.json).await
}

/// Runs `resume`, then shows the job as it is now.
pub async fn resume(args: JobArgs) -> Result<Exit, CommandError> {
    let Target { client, domain } = args.target()?;
    client.resume(&domain, args.id).await?;
    show_state(&client, &domain, args.id, args.instance.json).await
}

/// Shows job `id` after an action: `job 7 PAUSED: 40/100 processed (40%)`.
async fn show_state(
    client: &AdminClient,
    domain: &str,
    id: i64,
    json: bool,
) -> Result<Exit, CommandError> {
    let job = client.get(domain, id).await?;
    output::emit(json, &job, |job| {
        format!("job {} {}: {}", job.id, job.status, output::progress(job))
    });
    Ok(Exit::Success)
}

/// Runs `abort`, then shows the job as it is now; with `--all`, names the jobs aborted.
pub async fn abort(args: AbortArgs) -> Result<Exit, CommandError> {
    let Target { client, domain } = args.instance.target(args.domain.domain.as_deref())?;
    let Some(id) = args.id else {
        let result = client.abort_domain(&domain).await?;
        output::emit(args.instance.json, &result, |result| {
            format!("aborted {} of {domain}", jobs_named(&result.ids))
        });
        return Ok(Exit::Success);
    };
    client.abort(&domain, id).await?;
    show_state(&client, &domain, id, args.instance.json).await
}

/// Runs `delete`. Running jobs and ids that are not the domain's are skipped, as the API does;
/// the text output names them, and the exit code is still 0.
pub async fn delete(args: DeleteArgs) -> Result<Exit, CommandError> {
    let Target { client, domain } = args.instance.target(args.domain.domain.as_deref())?;
    let result = if args.all {
        client.delete_all(&domain).await?
    } else {
        client.delete(&domain, &args.ids).await?
    };
    if args.instance.json {
        output::print_json(&result);
        return Ok(Exit::Success);
    }
    out!("deleted {} of {domain}", jobs_named(&result.ids));
    let skipped: Vec<i64> = args
        .ids
        .iter()
        .copied()
        .filter(|id| !result.ids.contains(id))
        .collect();
    if !skipped.is_empty() {
        eprintln!(
            "not deleted (running, with a follow-up running, or not a job of {domain}): {}",
            id_list(&skipped)
        );
    }
    Ok(Exit::Success)
}

/// Runs `count`: who a broadcast to the domain would reach now.
pub async fn count(args: CountArgs) -> Result<Exit, CommandError> {
    let given = args.domain_argument.or(args.domain.domain);
    let Target { client, domain } = args.instance.target(given.as_deref())?;
    let audience = args.audience.read()?;
    let preview = client
        .count_recipients(&domain, args.sample, None, &audience)
        .await?;
    output::emit(args.instance.json, &preview, |preview| {
        output::preview_text(preview, Planned::Broadcast)
    });
    Ok(Exit::Success)
}

/// `no jobs`, `job 3`, `2 jobs: 3, 4`.
fn jobs_named(ids: &[i64]) -> String {
    match ids {
        [] => "no jobs".to_owned(),
        [id] => format!("job {id}"),
        ids => format!("{} jobs: {}", ids.len(), id_list(ids)),
    }
}

fn id_list(ids: &[i64]) -> String {
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_jobs_are_named() {
        assert_eq!(jobs_named(&[]), "no jobs");
        assert_eq!(jobs_named(&[3]), "job 3");
        assert_eq!(jobs_named(&[3, 4]), "2 jobs: 3, 4");
    }
}
