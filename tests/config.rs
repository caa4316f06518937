//! The operator-facing files stay truthful: the documented example config passes
//! `check-config`, an invalid value is refused by key name, and the committed
//! `schema.graphql` is what `xmpp-broadcast schema` prints. `check-config` and `serve` refuse
//! the same configs with the same message, without a crash, and an unreachable database is
//! named with its address and the cause at once — except that `serve` does not stop for a job
//! database it cannot reach: it serves, says so in `/health`, logs the same cause and keeps
//! trying (`tests/job_database.rs` has it recover).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use support::admin::Admin;
use support::process::{self, LogFile};
use support::serve::{self, BINARY};
use support::{Deadline, free_port, scratch_dir, unique_database_name};

/// `serve` and `check-config` refuse a bad config in well under this.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// A refused connection or an unknown database is reported within this: not after the
/// pool's acquire timeout (10 s).
const PROMPT: Duration = Duration::from_secs(5);
/// Prosody's SQL storage table, as `schema = "prosody"` reads it.
const PROSODY_TABLE: &str =
    "CREATE TABLE prosody (host TEXT, user TEXT, store TEXT, key TEXT, type TEXT, value TEXT)";
/// A users database for `schema = "custom"`.
const ACCOUNTS_TABLE: &str = "CREATE TABLE accounts (domain TEXT, name TEXT, created TEXT)";

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/component.toml.example");
const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");

fn run(args: &[&str]) -> Output {
    serve::command()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {BINARY} {args:?}: {e}"))
}

/// `check-config --offline`: the file only (the examples' databases are not on this machine).
fn check_config(path: &Path) -> Output {
    run(&[
        "check-config",
        "--offline",
        "--config",
        path.to_str().expect("UTF-8 path"),
    ])
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn example_config_passes_check_config() {
    let output = check_config(Path::new(EXAMPLE));
    assert!(
        output.status.success(),
        "check-config on the example: {}",
        text(&output)
    );
}

#[test]
fn every_server_example_passes_check_config() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    for server in ["prosody", "ejabberd", "mongooseim"] {
        let path = Path::new(examples).join(server).join("component.toml");
        let output = check_config(&path);
        assert!(
            output.status.success(),
            "check-config on {}: {}",
            path.display(),
            text(&output)
        );
    }
}

#[test]
fn too_short_lease_time_is_refused_by_name() {
    let example = fs::read_to_string(EXAMPLE).expect("read component.toml.example");
    // Top-level keys precede the first table, so a leading line sets the key (after
    // dropping the example's own setting, which TOML would reject as a duplicate).
    let without: Vec<&str> = example
        .lines()
        .filter(|line| !line.trim_start().starts_with("lease_time"))
        .collect();
    let config = format!("lease_time = 5\n{}\n", without.join("\n"));
    let dir = scratch_dir("config");
    let path = dir.path().join("short-lease.toml");
    fs::write(&path, config).expect("write config");

    let output = check_config(&path);
    assert!(!output.status.success(), "lease_time = 5 was accepted");
    assert!(
        text(&output).contains("lease_time"),
        "the error does not name lease_time: {}",
        text(&output)
    );
}

#[test]
fn committed_schema_matches_the_binary() {
    let output = run(&["schema"]);
    assert!(
        output.status.success(),
        "xmpp-broadcast schema: {}",
        text(&output)
    );
    let committed = fs::read_to_string(SCHEMA).expect("read schema.graphql");
    assert!(
        String::from_utf8_lossy(&output.stdout).trim_end() == committed.trim_end(),
        "schema.graphql is stale: regenerate it with \
         `cargo run -- schema > schema.graphql` and review the diff"
    );
}

/// The settings a test varies; everything else is a config `serve` accepts.
struct Settings {
    top: String,
    database: String,
    users: String,
}

impl Settings {
    /// Jobs in a new SQLite file of `dir`, users in a Prosody-shaped SQLite database.
    async fn valid(dir: &Path) -> Self {
        let users = support::sqlite_database(&dir.join("prosody.sqlite"), PROSODY_TABLE).await;
        Settings {
            top: String::new(),
            database: format!("url = \"sqlite://{}\"", dir.join("jobs.db").display()),
            users: format!("schema = \"prosody\"\nurl = \"{users}\""),
        }
    }

    fn write(&self, dir: &Path) -> PathBuf {
        self.write_listening(dir, free_port())
    }

    /// [`Settings::write`] with the admin API on `127.0.0.1:admin`.
    fn write_listening(&self, dir: &Path, admin: u16) -> PathBuf {
        let config = format!(
            "node_name = \"node1\"\n{top}\n\
             [component]\njid = \"broadcast.example.com\"\nsecret = \"s3cret\"\n\
             server = \"127.0.0.1:{component}\"\n\
             [database]\n{database}\n\
             [users]\n{users}\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\nusername = \"admin\"\npassword = \"pw\"\n\
             [domains.\"example.com\"]\n",
            top = self.top,
            database = self.database,
            users = self.users,
            component = free_port(),
        );
        let path = dir.join("component.toml");
        fs::write(&path, config).expect("write config");
        path
    }
}

/// How one run of the binary ended.
struct Ended {
    output: Output,
    took: Duration,
}

impl Ended {
    /// The one `error: …` line the binary printed.
    fn error_line(&self) -> String {
        let stderr = String::from_utf8_lossy(&self.output.stderr);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|line| line.starts_with("error: "))
            .collect();
        assert_eq!(lines.len(), 1, "not one error line in: {stderr}");
        lines[0].to_owned()
    }

    /// Asserts a refusal: exit code 1 (not a panic's 101, an abort's 134, a crash's signal).
    fn assert_refused(&self, what: &str) {
        assert_eq!(
            self.output.status.code(),
            Some(1),
            "{what} did not exit 1 ({}): {}",
            self.output.status,
            String::from_utf8_lossy(&self.output.stderr)
        );
    }
}

/// Runs `command --config path` to its end (it must end: a refused config stops it).
async fn run_to_end(command: &str, path: &Path) -> Ended {
    let mut child = tokio::process::Command::from(serve::command());
    child
        .arg(command)
        .arg("--config")
        .arg(path)
        .kill_on_drop(true);
    let started = Instant::now();
    let output = tokio::time::timeout(EXIT_TIMEOUT, child.output())
        .await
        .unwrap_or_else(|_| {
            panic!("{command} still runs after {EXIT_TIMEOUT:?}: it accepted the config")
        })
        .expect("run the binary");
    Ended {
        output,
        took: started.elapsed(),
    }
}

/// Runs `check-config` and `serve` on `settings`; asserts that both refuse it with the same
/// message, which says each of `needles`; returns that message and the longer time taken.
async fn both_refuse(label: &str, settings: &Settings, needles: &[&str]) -> (String, Duration) {
    let dir = scratch_dir("bad-config");
    let path = settings.write(dir.path());
    let checked = run_to_end("check-config", &path).await;
    checked.assert_refused(&format!("check-config on {label}"));
    let served = run_to_end("serve", &path).await;
    served.assert_refused(&format!("serve on {label}"));
    let message = checked.error_line();
    assert_eq!(
        message,
        served.error_line(),
        "{label}: check-config and serve disagree"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "{label}: no {needle:?} in: {message}"
        );
    }
    (message, checked.took.max(served.took))
}

#[tokio::test]
async fn check_config_and_serve_refuse_the_same_configs_alike() {
    let data = scratch_dir("bad-config-data");
    let valid = Settings::valid(data.path()).await;
    let accounts = support::sqlite_database(&data.path().join("accounts.db"), ACCOUNTS_TABLE).await;
    let custom = |exists: &str, page: &str| Settings {
        users: format!(
            "schema = \"custom\"\nurl = \"{accounts}\"\n\
             exists_sql = \"{exists}\"\n\
             count_sql = \"SELECT COUNT(*) FROM accounts WHERE domain = $1 AND created <= $2\"\n\
             page_sql = \"{page}\""
        ),
        ..Settings {
            top: valid.top.clone(),
            database: valid.database.clone(),
            users: String::new(),
        }
    };
    let exists = "SELECT COUNT(*) FROM accounts WHERE domain = $1 AND name = $2";
    let page = "SELECT name FROM accounts WHERE domain = $1 AND created <= $2 AND name > $3 \
                ORDER BY name LIMIT $4";
    let top = |line: &str| Settings {
        top: line.to_owned(),
        database: valid.database.clone(),
        users: valid.users.clone(),
    };
    let database = |line: &str| Settings {
        top: String::new(),
        database: format!("{}\n{line}", valid.database),
        users: valid.users.clone(),
    };
    let cases: Vec<(&str, Settings, Vec<&str>)> = vec![
        (
            "lease_time = i64::MAX",
            top("lease_time = 9223372036854775807"),
            vec!["`lease_time`", "between 10 and 3600 seconds"],
        ),
        (
            "lease_time = 10^15",
            top("lease_time = 1000000000000000"),
            vec!["`lease_time`", "between 10 and 3600 seconds"],
        ),
        (
            "max_connections = 10^9",
            database("max_connections = 1000000000"),
            vec!["`database.max_connections`", "between 1 and 100"],
        ),
        (
            "exists_sql with $3",
            custom(&format!("{exists} AND created <= $3"), page),
            vec!["`users.exists_sql`", "$3", "$1 (domain), $2 (username)"],
        ),
        (
            "page_sql with $5",
            custom(exists, &format!("{page} OFFSET $5")),
            vec!["`users.page_sql`", "$5", "$4 (page size)"],
        ),
        (
            "page_sql without $3",
            custom(
                exists,
                "SELECT name FROM accounts WHERE domain = $1 LIMIT $4",
            ),
            vec!["`users.page_sql`", "must use $3"],
        ),
        (
            "page_sql on a missing table",
            custom(exists, &page.replace("FROM accounts", "FROM acounts")),
            vec!["users.page_sql", "acounts"],
        ),
        (
            "a users database without the schema's table",
            Settings {
                users: valid.users.replace("\"prosody\"", "\"mongooseim\""),
                ..top("")
            },
            vec!["users.url", "MongooseIM"],
        ),
        (
            "a job database URL that does not parse",
            Settings {
                database: "url = \"postgres://xb:hunter2@127.0.0.1:notaport/jobs\"".to_owned(),
                ..top("")
            },
            vec!["`database.url`", "is not a valid database URL"],
        ),
        (
            "a users database at a closed port",
            Settings {
                users: format!(
                    "schema = \"mongooseim\"\nurl = \"postgres://u:hunter2@127.0.0.1:{}/users\"",
                    free_port()
                ),
                ..top("")
            },
            vec!["users.url", "127.0.0.1:", "refused"],
        ),
    ];
    for (label, settings, needles) in &cases {
        let (message, _) = both_refuse(label, settings, needles).await;
        assert!(
            !message.contains("hunter2"),
            "{label}: the password is shown: {message}"
        );
    }
}

/// What `check-config` says before the cause of a job database it cannot reach.
const JOB_DATABASE_CONTEXT: &str = "error: cannot open the job database (database.url): ";

/// `check-config` refuses `settings`, whose job database cannot be reached, at once with a
/// message that says each of `needles`; `serve` starts anyway: at once its `/health` says the
/// job database is down and its log has the same cause, and SIGTERM stops it cleanly. Returns
/// the message and the longer time taken.
async fn check_refuses_and_serve_waits(
    label: &str,
    settings: &Settings,
    needles: &[&str],
) -> (String, Duration) {
    let dir = scratch_dir("unreachable-jobs");
    let admin_port = free_port();
    let path = settings.write_listening(dir.path(), admin_port);
    let checked = run_to_end("check-config", &path).await;
    checked.assert_refused(&format!("check-config on {label}"));
    let message = checked.error_line();
    for needle in needles {
        assert!(
            message.contains(needle),
            "{label}: no {needle:?} in: {message}"
        );
    }
    let cause = message
        .strip_prefix(JOB_DATABASE_CONTEXT)
        .unwrap_or_else(|| panic!("{label}: not a job database error: {message}"));

    let log = LogFile::new(&dir.path().join("serve.log"), format!("serve on {label}"));
    let started = Instant::now();
    let mut child = serve::command()
        .args(["serve", "--config", path.to_str().expect("UTF-8 path")])
        .stdout(log.append_handle())
        .stderr(log.append_handle())
        .spawn()
        .expect("spawn serve");
    let admin = Admin::new(&format!("127.0.0.1:{admin_port}"), "admin", "pw");
    let deadline = Deadline::after(PROMPT, format!("serve on {label} to say why"));
    let health = loop {
        if let Some(status) = child.try_wait().expect("try_wait serve") {
            panic!("{label}: serve exited with {status}:\n{}", log.contents());
        }
        if let Some(health) = admin.health().await
            && log.contents().contains(cause)
        {
            break health;
        }
        deadline.tick().await;
    };
    let took = started.elapsed();
    assert_eq!(
        (health["status"].as_str(), health["job_database"].as_str()),
        (Some("degraded"), Some("down")),
        "{label}: /health: {health}"
    );
    process::signal(child.id(), "TERM");
    let status = process::wait_exit(&mut child, EXIT_TIMEOUT, "serve after SIGTERM").await;
    assert!(status.success(), "{label}: serve ended with {status}");
    log.print_if_panicking();
    (message, checked.took.max(took))
}

#[tokio::test]
async fn unreachable_job_databases_are_named_with_their_cause_at_once() {
    let data = scratch_dir("unreachable");
    let valid = Settings::valid(data.path()).await;
    let port = free_port();
    let closed = Settings {
        top: String::new(),
        database: format!("url = \"postgres://xb:hunter2@127.0.0.1:{port}/jobs\""),
        users: valid.users.clone(),
    };
    let (message, took) = check_refuses_and_serve_waits(
        "a job database at a closed port",
        &closed,
        &[
            "database.url",
            &format!("postgres://xb@127.0.0.1:{port}/jobs"),
            "refused",
        ],
    )
    .await;
    assert!(
        !message.contains("hunter2"),
        "the password is shown: {message}"
    );
    assert!(
        took < PROMPT,
        "a refused connection took {took:?}: {message}"
    );

    let missing = unique_database_name();
    let unknown = Settings {
        top: String::new(),
        database: format!("url = \"postgres://postgres@127.0.0.1:5432/{missing}\""),
        users: valid.users.clone(),
    };
    let (message, took) = check_refuses_and_serve_waits(
        "an unknown PostgreSQL database",
        &unknown,
        &[
            "database.url",
            "127.0.0.1:5432",
            &format!("database \"{missing}\" does not exist"),
        ],
    )
    .await;
    assert!(
        took < PROMPT,
        "an unknown database took {took:?}: {message}"
    );

    let missing_directory = Settings {
        top: String::new(),
        database: "url = \"sqlite:///nonexistent-xb-dir/jobs.db\"".to_owned(),
        users: valid.users.clone(),
    };
    check_refuses_and_serve_waits(
        "a job database in a missing directory",
        &missing_directory,
        &[
            "database.url",
            "the directory /nonexistent-xb-dir does not exist",
        ],
    )
    .await;
}

#[tokio::test]
async fn check_config_reaches_the_databases_of_a_valid_config() {
    let data = scratch_dir("reachable");
    let valid = Settings::valid(data.path()).await;
    let path = valid.write(data.path());
    let output = run(&[
        "check-config",
        "--config",
        path.to_str().expect("UTF-8 path"),
    ]);
    assert!(output.status.success(), "check-config: {}", text(&output));
    assert!(
        text(&output).contains("databases reached"),
        "{}",
        text(&output)
    );
    assert!(
        !data.path().join("jobs.db").exists(),
        "check-config created the job database"
    );
}

/// `check-config` names the running jobs that conflict with the instance's view, as warnings
/// that do not make the config invalid: a job of its own of a domain it no longer serves, and
/// a job of a domain it serves that was created against another users database.
#[tokio::test(flavor = "multi_thread")]
async fn check_config_warns_about_running_jobs_the_instance_may_not_run() {
    use support::admin::BroadcastSpec;
    use support::app::{App, AppOptions};

    let options = AppOptions::one_domain("example.com", 3).with_domain("example.org", "o", 3);
    let app = App::start(options).await;
    let slow = BroadcastSpec {
        domain: "example.org".into(),
        sender: "admin@example.org".into(),
        rate: 1,
        ..BroadcastSpec::default()
    };
    let id = app.admin().start_broadcast(&slow).await.expect("start");
    let config = fs::read_to_string(app.config_path()).expect("read config");
    let check = |name: &str, config: String| {
        let path = app.dir().join(name);
        fs::write(&path, config).expect("write config");
        run(&["check-config", "--config", path.to_str().expect("UTF-8")])
    };

    let removed = check(
        "removed.toml",
        config.replace("[domains.\"example.org\"]", ""),
    );
    assert!(removed.status.success(), "{}", text(&removed));
    let stderr = String::from_utf8_lossy(&removed.stderr);
    assert!(
        stderr.contains(&format!("warning: running job {id} is this instance's"))
            && stderr.contains("does not serve example.org"),
        "{stderr}"
    );

    let other_users = config
        .replace("[users]\n", "[users]\ndatabase_id = \"another-server\"\n")
        .replace("node_name = \"node1\"", "node_name = \"node2\"");
    let other = check("other-users.toml", other_users);
    assert!(other.status.success(), "{}", text(&other));
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(
        stderr.contains(&format!("warning: running job {id}:"))
            && stderr.contains("reads the users database another-server")
            && stderr.contains("never runs it"),
        "{stderr}"
    );

    let same = check("same.toml", config);
    assert!(same.status.success(), "{}", text(&same));
    assert!(
        !String::from_utf8_lossy(&same.stderr).contains("warning"),
        "{}",
        text(&same)
    );
    app.stop().await.expect("stop");
}

/// The lines of a TOML file that are not comments or blank.
fn effective_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

#[test]
fn the_packaged_config_is_the_example_without_its_secrets() {
    let packaged_path = concat!(env!("CARGO_MANIFEST_DIR"), "/debian/component.toml");
    let packaged = fs::read_to_string(packaged_path).expect("read debian/component.toml");
    let example = fs::read_to_string(EXAMPLE).expect("read the example");
    let secrets = ["secret = ", "password = "];
    let expected: Vec<&str> = effective_lines(&example)
        .into_iter()
        .filter(|line| !secrets.iter().any(|secret| line.starts_with(secret)))
        .collect();
    assert_eq!(effective_lines(&packaged), expected);

    // Without the unit's credentials it says where the secret may come from; with them
    // (as systemd hands them over) it is valid.
    let output = check_config(Path::new(packaged_path));
    assert!(!output.status.success(), "{}", text(&output));
    let message = text(&output);
    assert!(message.contains("`component.secret`"), "{message}");
    assert!(message.contains("credential component-secret"), "{message}");
    let credentials = scratch_dir("credentials");
    fs::write(
        credentials.path().join("component-secret"),
        "xbtest-component-secret-Q7v2\n",
    )
    .expect("write credential");
    fs::write(
        credentials.path().join("admin-password"),
        "xbtest-admin-password-K3m8\n",
    )
    .expect("write credential");
    let output = serve::command()
        .args(["check-config", "--offline", "--config", packaged_path])
        .env("CREDENTIALS_DIRECTORY", credentials.path())
        .output()
        .expect("run check-config");
    assert!(output.status.success(), "{}", text(&output));
    support::secrets::assert_no_secret("check-config", &text(&output));
}

#[test]
fn an_unreadable_secret_file_stops_serve_naming_its_key_and_path() {
    let dir = scratch_dir("secret-file");
    let missing = dir.path().join("no-such-secret");
    let example = fs::read_to_string(EXAMPLE).expect("read the example");
    let config = example.replace(
        "secret = \"change-me\"",
        &format!("secret_file = {:?}", missing.display().to_string()),
    );
    let path = dir.path().join("component.toml");
    fs::write(&path, config).expect("write config");
    let output = run(&["serve", "--config", path.to_str().expect("UTF-8")]);
    assert!(!output.status.success());
    let message = text(&output);
    assert!(message.contains("`component.secret_file`"), "{message}");
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
}
