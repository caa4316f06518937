//! The installed Debian package, run the way its systemd unit runs it, against a real Prosody:
//! the unit's `ExecStart=` as its `User=`/`Group=` (setpriv, without privileges or
//! capabilities, as `NoNewPrivileges=` and the empty `CapabilityBoundingSet=` leave it), its
//! `Environment=`, its `LoadCredential=` secrets in a credentials directory
//! (`$CREDENTIALS_DIRECTORY`), and a notification socket (`$NOTIFY_SOCKET`) for `Type=notify`.
//! The installed conffile is edited as an operator would (the test's Prosody and a free admin
//! port) and restored afterwards.
//!
//! It reads the installed files, so plain `cargo test` leaves it out (`test = false` in
//! Cargo.toml): `.ci/run` runs it as root after `dpkg -i`, with `cargo test --test package`;
//! without the package it fails, saying so.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::admin::{Admin, BroadcastSpec};
use support::process::{self, LogFile};
use support::prosody::{COMPONENT_SECRET, DOMAIN, Prosody, ProsodyStorage};
use support::secrets::assert_no_secret;
use support::serve::ADMIN_PASSWORD;
use support::xmpp_client::XmppClient;
use support::{Deadline, free_port, scratch_dir};

const BINARY: &str = "/usr/bin/xmpp-broadcast";
const CONFIG: &str = "/etc/xmpp-broadcast/component.toml";
const UNITS: [&str; 2] = [
    "/lib/systemd/system/xmpp-broadcast.service",
    "/usr/lib/systemd/system/xmpp-broadcast.service",
];
/// What the packaged config says, which the test replaces with its own Prosody and port.
const PACKAGED_SERVER: &str = "server = \"127.0.0.1:5347\"";
const PACKAGED_USERS_URL: &str = "url = \"sqlite:///var/lib/prosody/prosody.sqlite\"";
const PACKAGED_LISTEN: &str = "listen = \"127.0.0.1:5551\"";
/// How long the service may take to be ready, to deliver, and to stop.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What the test reads from the installed unit's `[Service]` section.
struct Unit {
    exec_start: Vec<String>,
    user: String,
    group: String,
    /// `LoadCredential=name:path`: the names.
    credentials: Vec<String>,
    environment: Vec<(String, String)>,
}

fn installed_unit() -> Unit {
    assert!(
        Path::new(BINARY).is_file(),
        "{BINARY} is not installed: this test checks the installed Debian package; build and \
         install it first (debian/build-deb, then dpkg -i), as .ci/run does"
    );
    let path = UNITS
        .iter()
        .find(|path| Path::new(path).is_file())
        .unwrap_or_else(|| panic!("the package installed no unit at {UNITS:?}"));
    let text = fs::read_to_string(path).expect("read the unit");
    let values = |key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|line| line.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    let one = |key: &str| {
        let found = values(key);
        assert_eq!(found.len(), 1, "{key}= in {path}: {found:?}");
        found[0].clone()
    };
    assert_eq!(one("Type"), "notify");
    Unit {
        exec_start: one("ExecStart")
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        user: one("User"),
        group: one("Group"),
        credentials: values("LoadCredential")
            .iter()
            .map(|entry| entry.split(':').next().unwrap_or_default().to_owned())
            .collect(),
        environment: values("Environment")
            .iter()
            .filter_map(|entry| entry.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
    }
}

/// The numeric id `id -u`/`id -g` gives for `name`.
fn id_of(flag: &str, name: &str) -> u32 {
    let output = Command::new("id").args([flag, name]).output().expect("id");
    assert!(
        output.status.success(),
        "no system account {name}: the package's postinst makes it"
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a number")
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|err| panic!("chmod {}: {err}", path.display()));
}

/// Lets the service's user reach `path`'s directory through every ancestor.
fn traversable(path: &Path) {
    for ancestor in path.ancestors().skip(1) {
        if ancestor == Path::new("/") || ancestor == Path::new("/tmp") {
            break;
        }
        let mode = fs::metadata(ancestor).expect("stat").permissions().mode();
        set_mode(ancestor, mode | 0o011);
    }
}

/// The installed conffile, edited for the test; put back as it was when dropped.
struct EditedConfig {
    original: String,
}

impl EditedConfig {
    fn point_at(prosody: &Prosody, users_url: &str, admin_listen: &str) -> Self {
        let original = fs::read_to_string(CONFIG).expect("read the installed config");
        let mut edited = original.clone();
        for (packaged, ours) in [
            (
                PACKAGED_SERVER,
                format!("server = {:?}", prosody.component_addr()),
            ),
            (PACKAGED_USERS_URL, format!("url = {users_url:?}")),
            (PACKAGED_LISTEN, format!("listen = {admin_listen:?}")),
        ] {
            assert!(
                edited.contains(packaged),
                "the packaged config has no `{packaged}`"
            );
            edited = edited.replace(packaged, &ours);
        }
        fs::write(CONFIG, edited).expect("edit the installed config");
        EditedConfig { original }
    }
}

impl Drop for EditedConfig {
    fn drop(&mut self) {
        let _ = fs::write(CONFIG, &self.original);
    }
}

/// The service process, stopped on drop.
struct Service {
    child: Child,
    log: LogFile,
}

impl Drop for Service {
    fn drop(&mut self) {
        process::terminate(&mut self.child, Duration::from_secs(10));
        self.log.print_if_panicking();
    }
}

/// Waits for a notification datagram containing `wanted` (e.g. `READY=1`); returns all the
/// datagrams received until then. Panics if the service exits or the deadline passes.
async fn wait_notification(
    socket: &tokio::net::UnixDatagram,
    service: &mut Service,
    wanted: &str,
) -> Vec<String> {
    let deadline = Deadline::after(TIMEOUT, format!("{wanted} on the notification socket"));
    let mut received = Vec::new();
    let mut buffer = vec![0; 4096];
    loop {
        if let Some(status) = service.child.try_wait().expect("try_wait") {
            panic!("the service exited with {status} before sending {wanted}: {received:?}");
        }
        let wait = deadline.remaining().min(Duration::from_millis(200));
        if let Ok(Ok(length)) = tokio::time::timeout(wait, socket.recv(&mut buffer)).await {
            let datagram = String::from_utf8_lossy(&buffer[..length]).into_owned();
            let done = datagram.lines().any(|line| line == wanted);
            received.push(datagram);
            if done {
                return received;
            }
        }
        assert!(
            !deadline.expired(),
            "no {wanted} within {TIMEOUT:?}: {received:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installed_package_runs_as_its_unit_and_delivers_a_broadcast() {
    let unit = installed_unit();
    let uid = id_of("-u", &unit.user);
    let gid = id_of("-g", &unit.group);
    assert_eq!(
        unit.exec_start[0], BINARY,
        "ExecStart runs the installed binary"
    );
    assert!(
        unit.credentials.contains(&"component-secret".to_owned())
            && unit.credentials.contains(&"admin-password".to_owned()),
        "the unit loads the secrets as credentials: {:?}",
        unit.credentials
    );

    let prosody = Prosody::start(ProsodyStorage::Sqlite).await;
    let sender = prosody.register_user("admin", "sender-pw").await;
    let alice = prosody.register_user("alice", "alice-pw").await;
    assert_eq!(sender, format!("admin@{DOMAIN}"));
    let mut client = XmppClient::login(&alice, "alice-pw", prosody.c2s_port());
    client.wait_online(TIMEOUT).await;

    // Prosody's SQLite file (WAL: the reader writes its -shm file) open to the service's
    // user, as the unit's comment says to do with SupplementaryGroups= and ReadWritePaths=.
    let users_url = prosody.users_db_url();
    let sqlite = PathBuf::from(users_url.trim_start_matches("sqlite://"));
    let data = sqlite.parent().expect("data dir");
    traversable(&sqlite);
    set_mode(data, 0o777);
    for entry in fs::read_dir(data).expect("list data dir") {
        set_mode(&entry.expect("entry").path(), 0o666);
    }

    // The credentials directory as systemd makes it: the service's user reads it, nobody else.
    let dir = scratch_dir("package");
    set_mode(dir.path(), 0o711);
    let credentials = dir.path().join("credentials");
    fs::create_dir(&credentials).expect("mkdir credentials");
    for name in &unit.credentials {
        let secret = match name.as_str() {
            "component-secret" => COMPONENT_SECRET,
            "admin-password" => ADMIN_PASSWORD,
            other => panic!("the test has no value for the credential {other}"),
        };
        let path = credentials.join(name);
        fs::write(&path, format!("{secret}\n")).expect("write credential");
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown credential");
        set_mode(&path, 0o400);
    }
    std::os::unix::fs::chown(&credentials, Some(uid), Some(gid)).expect("chown credentials");
    set_mode(&credentials, 0o500);

    let notify_path = dir.path().join("notify");
    let notify = tokio::net::UnixDatagram::bind(&notify_path).expect("bind notify socket");
    set_mode(&notify_path, 0o777);

    let admin_listen = format!("127.0.0.1:{}", free_port());
    let _config = EditedConfig::point_at(&prosody, &users_url, &admin_listen);

    let log = LogFile::new(
        &dir.path().join("service.log"),
        "the installed service's stderr",
    );
    let mut command = Command::new("setpriv");
    command
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--init-groups",
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ])
        .args(&unit.exec_start)
        .current_dir("/")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("CREDENTIALS_DIRECTORY", &credentials)
        .env("NOTIFY_SOCKET", &notify_path)
        // WatchdogSec= as systemd passes it, shorter than the unit's so the test need not
        // wait 15 s for the first WATCHDOG=1.
        .env("WATCHDOG_USEC", "2000000")
        .envs(unit.environment.iter().map(|(name, value)| (name, value)))
        // As a drop-in would set it: JSON lines, which the test reads below.
        .env("XMPP_BROADCAST_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(log.append_handle())
        .stderr(log.append_handle());
    let mut service = Service {
        child: command.spawn().expect("spawn setpriv"),
        log,
    };

    let before_ready = wait_notification(&notify, &mut service, "READY=1").await;
    assert!(
        before_ready[0].contains("STATUS=admin API listening; connecting to the XMPP server"),
        "{before_ready:?}"
    );
    wait_notification(&notify, &mut service, "WATCHDOG=1").await;
    let status = fs::read_to_string(format!("/proc/{}/status", service.child.id()))
        .expect("the service's status");
    assert!(
        status.lines().any(|line| line.starts_with("Uid:")
            && line
                .split_whitespace()
                .skip(1)
                .all(|id| id == uid.to_string())),
        "the service runs as {}: {status}",
        unit.user
    );
    let admin = Admin::new(&admin_listen, "admin", ADMIN_PASSWORD);
    let health = admin
        .health()
        .await
        .expect("the admin API listens once READY=1 is sent");
    assert_eq!(
        health["xmpp"], "connected",
        "{health} after {before_ready:?}"
    );
    // The job database (SQLite in the state directory) is taken up in the background.
    let deadline = Deadline::after(TIMEOUT, "the job database to be up");
    while admin.health().await.expect("/health")["job_database"] != "up" {
        deadline.tick().await;
    }

    let spec = BroadcastSpec::default();
    let id = admin
        .start_broadcast(&spec)
        .await
        .expect("start a broadcast");
    let message = client
        .next_message(TIMEOUT)
        .await
        .expect("the broadcast reaches the client");
    assert_eq!(message.body, spec.body);
    admin.wait_state(id, "FINISHED", TIMEOUT).await;

    // Reload (ExecReload=: SIGHUP) keeps the service running; SIGTERM stops it cleanly.
    process::signal(service.child.id(), "HUP");
    let deadline = Deadline::after(TIMEOUT, "the reload to be logged");
    while !service
        .log
        .contents()
        .contains("reload: the admin API has no certificate")
    {
        deadline.tick().await;
    }
    assert!(
        service.child.try_wait().expect("try_wait").is_none(),
        "SIGHUP ended the service"
    );
    process::signal(service.child.id(), "TERM");
    wait_notification(&notify, &mut service, "STOPPING=1").await;
    let exit = process::wait_exit(&mut service.child, TIMEOUT, "the service").await;
    assert!(exit.success(), "the service stopped with {exit}");

    // Its log: JSON lines, the job's events with its id and domain, no secret anywhere.
    let text = service.log.contents();
    assert_no_secret("the installed service's log", &text);
    let events: Vec<Value> = text
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
        })
        .collect();
    let finished = events
        .iter()
        .find(|event| event["message"] == "job finished")
        .unwrap_or_else(|| panic!("no `job finished` event: {text}"));
    assert_eq!(finished["job_id"], id, "{finished}");
    assert_eq!(finished["domain"], DOMAIN, "{finished}");
    for event in events.iter().filter(|event| event.get("job_id").is_some()) {
        assert!(
            event.get("domain").is_some(),
            "a job event without its domain: {event}"
        );
    }
}
