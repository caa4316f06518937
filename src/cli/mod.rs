//! The command line: `serve`, `migrate`, `check-config` and `schema`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::Config;
use crate::store::Store;

/// Sends announcements to every registered user of an XMPP domain.
#[derive(Debug, Parser)]
#[command(name = "xmpp-broadcast", version, about)]
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
    /// Check a configuration file and exit: 0 when it is valid.
    ///
    /// Example: xmpp-broadcast check-config --config component.toml
    CheckConfig(ConfigArg),
    /// Print the GraphQL schema of the admin API (SDL).
    ///
    /// Example: xmpp-broadcast schema > schema.graphql
    Schema,
    /// Read a domain admin's password from standard input and print the hash to put in
    /// `[domains."<domain>"] admin_password_hash`.
    ///
    /// Example: printf '%s' 'the password' | xmpp-broadcast hash-password
    HashPassword,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The configuration file (TOML).
    #[arg(long, short, env = "XMPP_BROADCAST_CONFIG")]
    pub config: PathBuf,
}

/// Runs a parsed command line; the exit code says whether it worked.
pub fn run(cli: Cli) -> ExitCode {
    init_logging();
    let result = match cli.command {
        Command::Schema => {
            print!("{}", crate::admin::build_schema(None).sdl());
            Ok(())
        }
        Command::HashPassword => hash_password_from_stdin(),
        Command::CheckConfig(arg) => Config::load(&arg.config)
            .map(|_| println!("{}: valid", arg.config.display()))
            .map_err(anyhow::Error::from),
        Command::Serve(arg) => with_runtime(async move {
            let config = Config::load(&arg.config)?;
            crate::app::serve(config).await
        }),
        Command::Migrate(arg) => with_runtime(async move {
            let config = Config::load(&arg.config)?;
            Store::connect(config.database.url.expose(), 1).await?;
            println!("job database is up to date");
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn hash_password_from_stdin() -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "no password on standard input");
    let hash = crate::admin::hash_password(password).map_err(anyhow::Error::msg)?;
    println!("{hash}");
    Ok(())
}

fn with_runtime(work: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(work)
}

fn init_logging() {
    let filter = EnvFilter::try_from_env("XMPP_BROADCAST_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
