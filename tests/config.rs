//! The operator-facing files stay truthful: the documented example config passes
//! `check-config`, an invalid value is refused by key name, and the committed
//! `schema.graphql` is what `xmpp-broadcast schema` prints. `check-config` and `serve` refuse
//! the same configs with the same message, without a crash, and an unreachable database is
//! named with its address and the cause at once.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use support::serve::{self, BINARY};
use support::{free_port, scratch_dir, unique_database_name};

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
            admin = free_port(),
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
            "a job database in a missing directory",
            Settings {
                database: "url = \"sqlite:///nonexistent-xb-dir/jobs.db\"".to_owned(),
                ..top("")
            },
            vec![
                "database.url",
                "the directory /nonexistent-xb-dir does not exist",
            ],
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
    let (message, took) = both_refuse(
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
    let (message, took) = both_refuse(
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
