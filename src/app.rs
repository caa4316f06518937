//! The running component: wires the store, the user directory, the XMPP connection, the manager
//! and the admin API together, and takes them down in order when told to stop.
//!
//! The admin API serves from the start, whether or not the job database answers: the store is
//! opened without connecting (a URL that does not parse stops the start), and the manager
//! reaches it, migrates it and resumes this instance's jobs in the background, retrying until
//! it can; meanwhile `/health` says the job database is down and operations on jobs answer
//! `temporarily_unavailable`. The users database is checked before listening.
//!
//! [`run`] takes its admin listener and its shutdown signal from the caller: the command line
//! binds `admin.listen` and cancels on SIGTERM or SIGINT; tests bind `127.0.0.1:0` and cancel
//! when they are done, so a whole instance runs inside a test process.
//!
//! With `admin.tls_certificate` and `admin.tls_key` the admin API serves HTTPS; the files are
//! read before listening (an error stops the start) and again on SIGHUP ([`reload_tls`]).
//!
//! Under systemd (`Type=notify`, `$NOTIFY_SOCKET`) [`run`] tells the service manager it is
//! ready (`READY=1`) once the admin API listens and the component's stream is up, says what it
//! waits for meanwhile (`STATUS=`), sends `WATCHDOG=1` at half the unit's `WatchdogSec=` from
//! the runtime's one worker (so a stuck runtime gets the service restarted) and `STOPPING=1`
//! when it shuts down. Without `$NOTIFY_SOCKET` nothing is sent.

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminApi, Credentials, GlobalPassword, Tls};
use crate::broadcast::{BroadcastService, Manager, Scope};
use crate::config::{AdminPassword, Config};
use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::xmpp::Connection;

/// What `check-config` says before an error of the job database, and `serve` before a URL
/// that does not parse (it logs the others and keeps trying).
pub const JOB_DATABASE_CONTEXT: &str = "cannot open the job database (database.url)";
/// What `serve` and `check-config` say before an error of the users database.
pub const USERS_CONTEXT: &str = "cannot read the XMPP server's users ([users] section)";
/// What `serve` and `check-config` say before an error of the admin listener's certificate.
pub const TLS_CONTEXT: &str = "cannot serve the admin API over HTTPS";

/// Runs the component with the admin API on `listener` until `shutdown` is cancelled; then
/// stops the workers, lets this instance's leases expire and closes the connections.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = Store::open(
        config.database.url.expose(),
        config.database.max_connections,
    )
    .context(JOB_DATABASE_CONTEXT)?;
    let tls = open_tls(&config)?;
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

    let ready_connection = connection.clone();
    let broadcasts = BroadcastService::new(store.clone(), directory, manager.clone())
        .with_count_wait(config.count_wait);
    let api = AdminApi::new(
        admin::build_schema(Some(broadcasts)),
        Credentials::for_global(
            &config.admin.username,
            match &config.admin.password {
                AdminPassword::Plain(password) => GlobalPassword::Plain(password.expose()),
                AdminPassword::Hash(hash) => GlobalPassword::Hash(hash),
            },
            config.domain_admins.clone(),
        ),
        connection,
        manager.safety().clone(),
        metrics,
    );
    let api = match &tls {
        Some(tls) => api.with_tls(tls.clone()),
        None => api,
    };
    let admin_address = listener
        .local_addr()
        .map_or_else(|_| config.admin.listen.to_string(), |a| a.to_string());
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        node = %config.node_name,
        admin = %format!("{scheme}://{admin_address}"),
        component = %config.component.jid,
        "xmpp-broadcast is serving"
    );
    tokio::spawn(reload_on_hangup(tls, shutdown.clone()));
    let http = tokio::spawn(api.serve(listener, shutdown.clone()));
    manager.spawn_take_up();
    let readiness = tokio::spawn(notify_ready(
        ready_connection,
        config.component.server.clone(),
        shutdown.clone(),
    ));

    shutdown.cancelled().await;
    notify(&[sd_notify::NotifyState::Stopping]);
    readiness.abort();
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

/// The admin listener's certificate and key, read as `serve` reads them before it listens
/// (`None` without `admin.tls_certificate`); `check-config` runs the same.
pub fn open_tls(config: &Config) -> anyhow::Result<Option<Tls>> {
    let Some(files) = &config.admin.tls else {
        return Ok(None);
    };
    let tls = Tls::load(files).context(TLS_CONTEXT)?;
    tracing::info!(
        certificate = %files.certificate.display(),
        key = %files.key.display(),
        sha256 = %tls.fingerprint(),
        "the admin API serves HTTPS"
    );
    Ok(Some(tls))
}

/// Re-reads the admin listener's certificate and key, as SIGHUP does: the next connections are
/// served with them; if they cannot be used, the error is logged and the certificate read last
/// stays in use. Without TLS there is nothing to re-read.
pub fn reload_tls(tls: Option<&Tls>) {
    let Some(tls) = tls else {
        tracing::info!("reload: the admin API has no certificate (plain HTTP), nothing to re-read");
        return;
    };
    let files = tls.files();
    match tls.reload() {
        Ok(fingerprint) => tracing::info!(
            certificate = %files.certificate.display(),
            sha256 = %fingerprint,
            "reload: the admin API serves the certificate read now"
        ),
        Err(err) => tracing::error!(
            %err,
            sha256 = %tls.fingerprint(),
            "reload: the certificate or key cannot be used; the admin API keeps serving the one \
             read before"
        ),
    }
}

/// Calls [`reload_tls`] on every SIGHUP until `stop` fires (SIGHUP would otherwise end the
/// process, as its default action does).
async fn reload_on_hangup(tls: Option<Tls>, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP: the certificate cannot be reloaded");
        return;
    };
    loop {
        tokio::select! {
            received = hangup.recv() => {
                if received.is_none() {
                    return;
                }
                reload_tls(tls.as_ref());
            }
            () = stop.cancelled() => return,
        }
    }
}

/// Tells systemd (if it started us with `$NOTIFY_SOCKET`) that the instance is ready once the
/// component's stream is up — the admin API already listens — then keeps its watchdog fed.
async fn notify_ready(connection: Connection, server: String, shutdown: CancellationToken) {
    notify(&[sd_notify::NotifyState::Status(&format!(
        "admin API listening; connecting to the XMPP server at {server}"
    ))]);
    tokio::select! {
        _ = connection.link() => {}
        _ = shutdown.cancelled() => return,
    }
    tracing::info!("the component is connected: ready");
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("serving"),
    ]);
    if let Some(timeout) = sd_notify::watchdog_enabled() {
        let mut tick = tokio::time::interval(timeout / 2);
        loop {
            tick.tick().await;
            notify(&[sd_notify::NotifyState::Watchdog]);
        }
    }
}

/// Sends `states` to systemd's notification socket, if there is one; a failure is logged.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(error = %err, "cannot notify the service manager");
    }
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
