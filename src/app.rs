//! The running component: wires the store, the user directory, the XMPP connection, the manager
//! and the admin API together, and takes them down in order when told to stop.
//!
//! [`run`] takes its admin listener and its shutdown signal from the caller: the command line
//! binds `admin.listen` and cancels on SIGTERM or SIGINT; tests bind `127.0.0.1:0` and cancel
//! when they are done, so a whole instance runs inside a test process.

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminApi, Credentials};
use crate::broadcast::{BroadcastService, Manager, Scope};
use crate::config::Config;
use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::xmpp::Connection;

/// What `serve` (and `check-config`, which runs the same checks) says before an error of the
/// job database.
pub const JOB_DATABASE_CONTEXT: &str = "cannot open the job database (database.url)";
/// What `serve` and `check-config` say before an error of the users database.
pub const USERS_CONTEXT: &str = "cannot read the XMPP server's users ([users] section)";

/// Runs the component with the admin API on `listener` until `shutdown` is cancelled; then
/// stops the workers, lets this instance's leases expire and closes the connections.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = Store::connect(
        config.database.url.expose(),
        config.database.max_connections,
    )
    .await
    .context(JOB_DATABASE_CONTEXT)?;
    let directory = open_users(&config).await?;

    let connection_stop = CancellationToken::new();
    let (connection, connection_task) =
        Connection::start(config.component.clone(), connection_stop.clone());
    let metrics = Metrics::new(&config.domains);
    let scope = Scope::new(&config.domains, directory.identity().clone());
    tracing::info!(domains = %config.domains.join(", "), users_database = %scope.users_database(), "this instance runs the jobs of these domains created against this users database");
    let manager = Manager::new(
        store.clone(),
        directory.clone(),
        connection.clone(),
        metrics.clone(),
        config.node_name.clone(),
        scope,
        config.lease_time,
    );
    let resumed = manager
        .resume_owned_jobs()
        .await
        .context("cannot resume this instance's jobs")?;
    manager.spawn_lease_renewal();
    manager.spawn_ownership_check();

    let broadcasts = BroadcastService::new(store.clone(), directory, manager.clone());
    let api = AdminApi::new(
        admin::build_schema(Some(broadcasts)),
        Credentials::new(
            &config.admin.username,
            config.admin.password.expose(),
            config.domain_admins.clone(),
        ),
        connection,
        metrics,
    );
    let admin_address = listener
        .local_addr()
        .map_or_else(|_| config.admin.listen.to_string(), |a| a.to_string());
    tracing::info!(
        node = %config.node_name,
        admin = %admin_address,
        component = %config.component.jid,
        resumed,
        "xmpp-broadcast is serving"
    );
    let http = tokio::spawn(api.serve(listener, shutdown.clone()));

    shutdown.cancelled().await;
    tracing::info!("shutting down");
    manager.shutdown().await;
    connection_stop.cancel();
    let _ = connection_task.await;
    let _ = http.await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The XMPP server's users database as `serve` opens it before it listens: its layout checked
/// (`[users]`), and configured domains without an account logged. `check-config` runs the same.
pub async fn open_users(config: &Config) -> anyhow::Result<Directory> {
    let directory = Directory::connect(&config.users)
        .await
        .context(USERS_CONTEXT)?;
    directory
        .warn_about_empty_domains(&config.domains)
        .await
        .context(USERS_CONTEXT)?;
    Ok(directory)
}

/// A token cancelled on the first SIGTERM or SIGINT.
pub fn shutdown_on_signal() -> CancellationToken {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    shutdown
}

async fn cancel_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for termination signals");
        return;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    stop.cancel();
}
