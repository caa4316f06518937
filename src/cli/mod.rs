//! The command line. One binary, two families of commands:
//!
//! * running the component: `serve`, `migrate`, `check-config`, `schema`, `hash-password`
//!   ([`component`]);
//! * operating a running instance through its admin API: `start` ([`start`]), `correct` and
//!   `retract` ([`amend`]), `list`, `show`, `pause`, `resume`, `abort`, `delete`, `count`
//!   ([`jobs`]) and `watch`
//!   ([`watch`]). Which instance, as whom and
//!   for which domain comes from [`instance`]; what they print from [`output`]; a notice's text
//!   from [`message`]; their exit codes, which scripts branch on, from [`exit`].

/// `println!` for every command: a reader that went away (`xmpp-broadcast show 7 | head -1`)
/// ends the command quietly instead of a panic ([`output::write_line`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write_line(format_args!($($arg)*))
    };
}

mod amend;
mod audience;
mod component;
mod exit;
mod instance;
mod jobs;
mod message;
mod output;
mod start;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use component::ConfigArg;

use exit::{CommandError, Exit};

/// Sends announcements to every registered user of an XMPP domain.
///
/// `serve` runs the component. `start`, `correct`, `retract`, `list`, `show`, `watch`, `pause`,
/// `resume`, `abort`, `delete` and `count` operate a running instance over its admin API: give its URL and credentials with --url,
/// --user and --password, with XMPP_BROADCAST_URL, XMPP_BROADCAST_USER and
/// XMPP_BROADCAST_PASSWORD, or with the instance's config file (--config or
/// XMPP_BROADCAST_CONFIG). They print text, or the API's JSON objects with --json.
#[derive(Debug, Parser)]
#[command(name = "xmpp-broadcast", version, about, after_long_help = exit::codes_help())]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the component: connect to the XMPP server, run broadcasts, serve the admin API.
    ///
    /// Example: xmpp-broadcast serve --config /etc/xmpp-broadcast/component.toml
    Serve(ConfigArg),
    /// Create or update the job database's tables, then exit.
    ///
    /// Example: xmpp-broadcast migrate --config /etc/xmpp-broadcast/component.toml
    Migrate(ConfigArg),
    /// Check a configuration file as `serve` does at start, databases included (not with
    /// --offline), and exit: 0 when it is valid.
    ///
    /// Example: xmpp-broadcast check-config --config component.toml
    CheckConfig(component::CheckConfigArgs),
    /// Print the GraphQL schema of the admin API (SDL).
    ///
    /// Example: xmpp-broadcast schema > schema.graphql
    Schema,
    /// Read a domain admin's password from standard input and print the hash to put in
    /// `[domains."<domain>"] admin_password_hash`.
    ///
    /// Example: printf '%s' 'the password' | xmpp-broadcast hash-password
    HashPassword,
    /// Start a broadcast to every user of a domain, now or at a time (--at); --dry-run: only
    /// show who it would reach.
    ///
    /// The subject and body come from a flag, a file, or standard input ('-'), so a
    /// multi-line notice needs no quoting. With --language and --translation, one message
    /// carries the text in several languages and each client shows its user's. With --watch,
    /// follow the job to its end.
    ///
    /// Example: xmpp-broadcast start --config /etc/xmpp-broadcast/component.toml
    /// --domain example.com --name maintenance --sender admin@example.com
    /// --subject 'Maintenance tonight' --body-file notice.txt --rate 100 --watch
    ///
    /// Example: xmpp-broadcast start --url http://127.0.0.1:5551 --user admin
    /// --domain example.com --name maintenance --sender admin@example.com
    /// --body-file - --dry-run < notice.txt
    ///
    /// Example: xmpp-broadcast start --domain example.com --name maintenance
    /// --sender admin@example.com --body-file notice.txt --language en
    /// --translation de=notice.de.txt --translation fr=notice.fr.txt
    #[command(after_long_help = exit::codes_help())]
    Start(start::StartArgs),
    /// Correct what a broadcast sent (XEP-0308): a follow-up job sends everyone the broadcast
    /// reached the new subject and body, as a correction of the message they got. A correction
    /// of a correction corrects the broadcast again. --dry-run shows who would get it.
    ///
    /// The subject and body come as for `start`; without a subject the correction keeps the
    /// corrected job's, and without --language its language. The correction replaces the
    /// whole message: give --translation again for every language. The broadcast must have
    /// ended. With --watch, follow the new job to its
    /// end.
    ///
    /// Example: xmpp-broadcast correct 7 --domain example.com
    /// --body 'The server restarts at 23:00 UTC, not 22:00.' --watch
    ///
    /// Example: xmpp-broadcast correct 7 --domain example.com --body-file - --dry-run
    /// < notice.txt
    #[command(after_long_help = exit::codes_help())]
    Correct(amend::CorrectArgs),
    /// Retract what a broadcast sent (XEP-0424): a follow-up job sends everyone the broadcast
    /// reached a retraction of the message, whose body is a short note for clients that cannot
    /// retract. A retraction of a correction retracts the broadcast. --dry-run shows who would
    /// get it.
    ///
    /// The broadcast must have ended, and a retraction cannot be corrected or retracted. With
    /// --watch, follow the new job to its end.
    ///
    /// Example: xmpp-broadcast retract 7 --domain example.com --watch
    ///
    /// Example: xmpp-broadcast retract 7 --domain example.com --dry-run --sample 10
    #[command(after_long_help = exit::codes_help())]
    Retract(amend::RetractArgs),
    /// List the broadcast jobs of a domain, newest first.
    ///
    /// Example: xmpp-broadcast list --config /etc/xmpp-broadcast/component.toml
    /// --domain example.com --limit 10
    #[command(after_long_help = exit::codes_help())]
    List(jobs::ListArgs),
    /// Show every field of a broadcast job, the body included.
    ///
    /// Example: xmpp-broadcast show 7 --domain example.com --json | jq -r .executionState
    #[command(after_long_help = exit::codes_help())]
    Show(jobs::JobArgs),
    /// Follow a broadcast job until it ends: a progress bar (processed / count, rate, ETA) on
    /// a terminal, progress lines otherwise (the job as JSON with --json); the exit code says
    /// how the job ended.
    ///
    /// Example: xmpp-broadcast watch 7 --domain example.com
    #[command(after_long_help = exit::codes_help())]
    Watch(watch::WatchArgs),
    /// Pause a running broadcast job, whichever instance runs it: it sends nothing from about
    /// a second later (the instance asked stops its own sending before it answers) and holds
    /// no lease until `resume`; its unacknowledged batch is sent again when it resumes. A
    /// paused job is not the domain's running job: another job may run meanwhile.
    ///
    /// Example: xmpp-broadcast pause 7 --domain example.com
    #[command(after_long_help = exit::codes_help())]
    Pause(jobs::JobArgs),
    /// Resume a paused broadcast job from its committed progress, on an instance that serves
    /// the domain (refused with exit 4 while another job of the domain runs).
    ///
    /// Example: xmpp-broadcast resume 7 --domain example.com
    #[command(after_long_help = exit::codes_help())]
    Resume(jobs::JobArgs),
    /// Stop a running broadcast job, whichever instance runs it; with --all, the running job
    /// of the domain, if any (also of a domain no longer configured, for the global admin). The
    /// instance asked stops its own sending of the job before it answers. If the job database
    /// cannot record the abort, the command exits 5 and the message says whether that instance
    /// stopped its sending; the instance retries recording the abort every second (`show`
    /// tells when it is ABORT_ADMIN).
    ///
    /// Example: xmpp-broadcast abort 7 --domain example.com
    ///
    /// Example: xmpp-broadcast abort --all --domain old.example.com
    #[command(after_long_help = exit::codes_help())]
    Abort(jobs::AbortArgs),
    /// Delete finished and aborted broadcast jobs, by id or all of a domain; running jobs, and
    /// broadcasts with a correction or retraction running, are skipped (and named, exit code 0).
    ///
    /// Example: xmpp-broadcast delete 7 8 --domain example.com
    ///
    /// Example: xmpp-broadcast delete --all --domain example.com
    #[command(after_long_help = exit::codes_help())]
    Delete(jobs::DeleteArgs),
    /// Count the users a broadcast to a domain would reach now and list the first few,
    /// without starting anything (a dry run).
    ///
    /// Example: xmpp-broadcast count example.com --sample 10
    #[command(after_long_help = exit::codes_help())]
    Count(jobs::CountArgs),
    /// Write the man pages and shell completions (for packaging).
    #[command(hide = true)]
    Generate(component::GenerateArgs),
}

/// Runs a parsed command line; the exit code says whether it worked.
pub fn run(cli: Cli) -> ExitCode {
    // `serve` logs in the format of its config file (or the environment's), once it has read it.
    if !matches!(cli.command, Command::Serve(_)) {
        match crate::logging::format_from_env() {
            Ok(format) => crate::logging::init(format),
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(2);
            }
        }
    }
    let result = match cli.command {
        Command::Serve(arg) => component::serve_command(arg),
        Command::Generate(args) => component::generate(args),
        Command::Migrate(arg) => component::migrate(arg),
        Command::CheckConfig(arg) => component::check_config(arg),
        Command::Schema => component::schema(),
        Command::HashPassword => component::hash_password_from_stdin(),
        Command::Start(args) => return operate(start::run(args)),
        Command::Correct(args) => return operate(amend::correct(args)),
        Command::Retract(args) => return operate(amend::retract(args)),
        Command::List(args) => return operate(jobs::list(args)),
        Command::Show(args) => return operate(jobs::show(args)),
        Command::Watch(args) => return operate(watch::run(args)),
        Command::Pause(args) => return operate(jobs::pause(args)),
        Command::Resume(args) => return operate(jobs::resume(args)),
        Command::Abort(args) => return operate(jobs::abort(args)),
        Command::Delete(args) => return operate(jobs::delete(args)),
        Command::Count(args) => return operate(jobs::count(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an operator command on a single-threaded runtime; errors go to stderr and choose the
/// exit code.
fn operate(command: impl Future<Output = Result<Exit, CommandError>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(command),
        Err(err) => Err(CommandError {
            exit: Exit::Unexpected,
            message: format!("cannot start the runtime: {err}"),
        }),
    };
    match outcome {
        Ok(exit) => exit.into(),
        Err(err) => {
            eprintln!("error: {err}");
            err.exit.into()
        }
    }
}
