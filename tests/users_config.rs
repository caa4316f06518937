//! A wrong `[users]` section stops `serve` at start-up, before it listens or connects, with a
//! non-zero exit and a message that names the key to fix: an unknown schema, a users database
//! without the schema's table, the other ejabberd schema variant, a wrong domain mapping, and
//! custom SQL that fails. `check-config` refuses each of them with the same message.

mod support;

use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use support::serve;
use support::{free_port, scratch_dir};

/// `serve` fails in well under this (it reads two local SQLite files).
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `check-config` and `serve` with `users` as the `[users]` section; asserts that they
/// say the same; returns the output of `serve` once it exited.
async fn serve_with_users(dir: &Path, users: &str) -> Output {
    let config = format!(
        "node_name = \"node1\"\n\
         [component]\njid = \"broadcast.example.com\"\nsecret = \"s3cret\"\n\
         server = \"127.0.0.1:{component}\"\n\
         [database]\nurl = \"sqlite://{jobs}\"\n\
         [users]\n{users}\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\nusername = \"admin\"\npassword = \"pw\"\n\
         [domains.\"example.com\"]\n",
        component = free_port(),
        jobs = dir.join("jobs.db").display(),
        admin = free_port(),
    );
    let path = dir.join("component.toml");
    fs::write(&path, config).expect("write config");
    let checked = run_to_end("check-config", &path).await;
    let served = run_to_end("serve", &path).await;
    assert_eq!(
        error_line(&checked),
        error_line(&served),
        "check-config and serve disagree"
    );
    assert_eq!(checked.status.code(), served.status.code());
    served
}

/// Runs `command --config path`; returns its output once it exited.
async fn run_to_end(command: &str, path: &Path) -> Output {
    let mut child = tokio::process::Command::from(serve::command());
    child
        .arg(command)
        .arg("--config")
        .arg(path)
        .kill_on_drop(true);
    tokio::time::timeout(EXIT_TIMEOUT, child.output())
        .await
        .unwrap_or_else(|_| {
            panic!("{command} exits at start-up instead of running half-configured")
        })
        .expect("run the binary")
}

/// The `error: …` lines of a run.
fn error_line(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.starts_with("error: "))
        .map(str::to_owned)
        .collect()
}

/// Asserts that `serve` failed and said each of `needles`.
fn assert_refused(output: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "serve started: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "no {needle:?} in: {stderr}");
    }
}

fn ejabberd_schema(file: &str) -> String {
    let path = format!("/usr/share/ejabberd/sql/{file}");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}; install ejabberd"))
}

#[tokio::test]
async fn an_unknown_schema_is_refused_by_name() {
    let dir = scratch_dir("users-config");
    let url = support::sqlite_database(&dir.path().join("users.db"), "SELECT 1").await;
    let output = serve_with_users(
        dir.path(),
        &format!("schema = \"ejabberd2\"\nurl = \"{url}\""),
    )
    .await;
    assert_refused(
        &output,
        &["`users.schema`", "\"ejabberd_new\"", "\"mongooseim\""],
    );
}

#[tokio::test]
async fn a_users_database_without_the_table_is_refused() {
    let dir = scratch_dir("users-config");
    let url = support::sqlite_database(&dir.path().join("users.db"), "SELECT 1").await;
    let output = serve_with_users(
        dir.path(),
        &format!("schema = \"ejabberd_new\"\nurl = \"{url}\""),
    )
    .await;
    assert_refused(&output, &["users.url", "/usr/share/ejabberd/sql/"]);
}

#[tokio::test]
async fn the_other_ejabberd_schema_is_named() {
    let dir = scratch_dir("users-config");
    let url =
        support::sqlite_database(&dir.path().join("new.db"), &ejabberd_schema("lite.new.sql"))
            .await;
    let output = serve_with_users(
        dir.path(),
        &format!("schema = \"ejabberd\"\ndomain = \"example.com\"\nurl = \"{url}\""),
    )
    .await;
    assert_refused(&output, &["users.schema = \"ejabberd_new\""]);

    let url =
        support::sqlite_database(&dir.path().join("old.db"), &ejabberd_schema("lite.sql")).await;
    let output = serve_with_users(
        dir.path(),
        &format!("schema = \"ejabberd_new\"\nurl = \"{url}\""),
    )
    .await;
    assert_refused(&output, &["users.schema = \"ejabberd\"", "users.domain"]);
}

#[tokio::test]
async fn a_database_mapped_to_a_domain_not_served_is_refused() {
    let dir = scratch_dir("users-config");
    let url =
        support::sqlite_database(&dir.path().join("users.db"), &ejabberd_schema("lite.sql")).await;
    let output = serve_with_users(
        dir.path(),
        &format!("schema = \"ejabberd\"\ndomain = \"example.org\"\nurl = \"{url}\""),
    )
    .await;
    assert_refused(&output, &["`users.domain`", "example.org", "example.com"]);

    let output = serve_with_users(
        dir.path(),
        &format!("schema = \"ejabberd\"\nurl = \"{url}\""),
    )
    .await;
    assert_refused(&output, &["`users.domain`", "ejabberd_new"]);
}

#[tokio::test]
async fn custom_sql_that_fails_is_refused_by_key() {
    let dir = scratch_dir("users-config");
    let url = support::sqlite_database(
        &dir.path().join("users.db"),
        "CREATE TABLE accounts (domain TEXT, name TEXT, created TEXT)",
    )
    .await;
    let users = format!(
        "schema = \"custom\"\nurl = \"{url}\"\n\
         exists_sql = \"SELECT COUNT(*) FROM accounts WHERE domain = $1 AND name = $2\"\n\
         count_sql = \"SELECT COUNT(*) FROM accounts WHERE domain = $1 AND created <= $2\"\n\
         page_sql = \"SELECT name FROM acounts WHERE domain = $1 AND created <= $2 \
         AND name > $3 ORDER BY name LIMIT $4\""
    );
    let output = serve_with_users(dir.path(), &users).await;
    assert_refused(&output, &["users.page_sql", "acounts"]);
}
