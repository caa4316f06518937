//! The commands that run the component itself: `serve`, `migrate`, `check-config`, `schema`
//! and `hash-password`. Errors exit 1.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::app::JOB_DATABASE_CONTEXT;
use crate::broadcast::Scope;
use crate::config::Config;
use crate::store::Store;

/// The configuration file of `serve`, `migrate` and `check-config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The configuration file (TOML).
    #[arg(long, short, env = "XMPP_BROADCAST_CONFIG")]
    pub config: PathBuf,
}

/// `serve`: binds `admin.listen` and runs the component until SIGTERM or SIGINT.
pub fn serve_command(arg: ConfigArg) -> anyhow::Result<()> {
    let config = Config::load(&arg.config)?;
    crate::logging::init(config.log_format);
    with_runtime(async move {
        let shutdown = crate::app::shutdown_on_signal();
        let listener = crate::admin::bind(config.admin.listen).await?;
        crate::app::run(config, listener, shutdown).await
    })
}

/// `migrate`: creates or updates the job database's tables.
pub fn migrate(arg: ConfigArg) -> anyhow::Result<()> {
    with_runtime(async move {
        let config = Config::load(&arg.config)?;
        Store::connect(config.database.url.expose(), 1).await?;
        out!("job database is up to date");
        Ok(())
    })
}

/// The arguments of `check-config`.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Check the file only, without connecting to the databases or reading the certificate
    /// (e.g. on another machine).
    #[arg(long)]
    pub offline: bool,
}

/// `check-config`: what `serve` checks at start, with the same messages: the file
/// (every key), then, unless `--offline`, the admin listener's certificate and key if given
/// (read and matched), and the databases — the job database answers (it is not
/// migrated; `serve` logs the same error but serves and keeps trying), and the users database
/// has the tables of `users.schema` and runs the custom statements. Running jobs that conflict
/// with this instance's view (its own jobs of domains it no longer serves, jobs of its domains
/// created against another users database) are printed as warnings, as `serve` logs them; they
/// do not make the config invalid. Not checked: whether `admin.listen` is free (a running
/// instance holds it) and the XMPP server (`serve` waits for it).
pub fn check_config(args: CheckConfigArgs) -> anyhow::Result<()> {
    let path = args.config.config;
    let config = Config::load(&path)?;
    if args.offline {
        out!("{}: valid (databases not checked)", path.display());
        return Ok(());
    }
    crate::app::open_tls(&config)?;
    with_runtime(check_databases(&config))?;
    out!("{}: valid, databases reached", path.display());
    Ok(())
}

/// The start-up checks of `serve` that need the databases, in its order and with its errors.
async fn check_databases(config: &Config) -> anyhow::Result<()> {
    let url = config.database.url.expose();
    Store::check(url).await.context(JOB_DATABASE_CONTEXT)?;
    let directory = crate::app::open_users(config).await?;
    let jobs = Store::running_jobs_if_migrated(url)
        .await
        .context(JOB_DATABASE_CONTEXT)?
        .unwrap_or_default();
    let scope = Scope::new(&config.domains, directory.identity().clone());
    for conflict in scope.conflicts(&config.node_name, &jobs) {
        eprintln!("warning: {conflict}");
    }
    Ok(())
}

/// The arguments of `generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// The directory to write into: `man/` (one page per command) and `completions/` (bash,
    /// zsh, fish) are made in it.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
}

/// `generate`: the man pages and shell completions, from the command line's own definition
/// (the Debian package ships them).
pub fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    use clap::CommandFactory as _;
    use clap_complete::Shell;
    let man = args.out_dir.join("man");
    let completions = args.out_dir.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let command = super::Cli::command();
    clap_mangen::generate_to(command.clone(), &man)
        .with_context(|| format!("cannot write the man pages into {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut command = command.clone();
        let name = command.get_name().to_owned();
        clap_complete::generate_to(shell, &mut command, name, &completions).with_context(|| {
            format!(
                "cannot write the {shell} completions into {}",
                completions.display()
            )
        })?;
    }
    out!(
        "man pages in {}, completions in {}",
        man.display(),
        completions.display()
    );
    Ok(())
}

/// `schema`: prints the admin API's SDL.
pub fn schema() -> anyhow::Result<()> {
    out!("{}", crate::admin::build_schema(None).sdl().trim_end());
    Ok(())
}

/// `hash-password`: reads a password from standard input and prints its argon2 hash.
pub fn hash_password_from_stdin() -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "no password on standard input");
    let hash = crate::admin::hash_password(password).map_err(anyhow::Error::msg)?;
    out!("{hash}");
    Ok(())
}

/// One worker thread: the component waits on sockets and timers, and blocking work (password
/// hashing) goes to the blocking pool. A second worker only added cross-thread wake-ups (about
/// 10 % more CPU per message) and a second malloc arena, whose fragmentation made the resident
/// memory creep up during a long job (BENCHMARKS.md).
fn with_runtime(work: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(work)
}
