//! The operator CLI as a script or an operator runs it: the built binary against an instance
//! running in the test process (jobs in SQLite, users in a Prosody-layout SQLite database,
//! the in-process XEP-0114 server) — `start` (flags, files, standard input, `--watch`, `--dry-run`),
//! `watch` to FINISHED and to ABORT_ADMIN, `list`, `show`, `abort`, `delete` and `count`, `correct`
//! and `retract` (dry run, watch, a correction of a correction, what they refuse), each as text
//! and as `--json` (the API's own objects), the ops scripts of `examples/`, and the exit code and
//! message of every error path: invalid input (2), not found (3), conflict (4), unavailable (5),
//! auth (6).
//!
//! One instance (`example.com`: `admin` and `u0001`..`u0019`; domains
//! `example.com` and `empty.example.net`, which has no accounts) are shared by the steps of
//! [`operator_commands_against_a_running_instance`], which run in order: only one job may run
//! per domain. Tests that need no instance run on their own.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::app::{App, AppOptions};
use support::free_port;
use support::prosody::DOMAIN;
use support::serve::{ADMIN_PASSWORD, ADMIN_USER};

/// A configured domain without any account.
const EMPTY_DOMAIN: &str = "empty.example.net";
/// Accounts of `example.com`: `admin` and `u0001`..`u0019`.
const USERS: i64 = 20;
const SENDER: &str = "admin@example.com";
/// 20 messages at this rate are one batch, sent at once.
const FAST: &str = "1000";
/// At this rate a job is still running 20 seconds after it started: long enough to abort it.
const SLOW: &str = "1";
/// How often `watch` looks at the job in these tests.
const INTERVAL: &str = "0.2";
/// A multi-line notice, as an operator would write it in a file (or pipe it in).
const NOTICE: &str =
    "The server restarts at 22:00 UTC.\n\n\"Save your work\" — it's back by 22:15.";

/// Every subcommand, and whether it operates an instance (and lists the exit codes).
const SUBCOMMANDS: [(&str, bool); 14] = [
    ("serve", false),
    ("migrate", false),
    ("check-config", false),
    ("schema", false),
    ("hash-password", false),
    ("start", true),
    ("correct", true),
    ("retract", true),
    ("list", true),
    ("show", true),
    ("watch", true),
    ("abort", true),
    ("delete", true),
    ("count", true),
];

/// One run of the binary, finished.
struct Run {
    line: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The run of `line` that ended with `output`.
    fn of(line: &str, output: std::process::Output) -> Run {
        Run {
            line: line.to_owned(),
            code: output
                .status
                .code()
                .expect("the CLI exits, it is not killed"),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
        }
    }

    /// Asserts the exit code; returns the run for more checks.
    fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "xmpp-broadcast {} exited {} (expected {code})\nstdout:\n{}\nstderr:\n{}",
            self.line, self.code, self.stdout, self.stderr
        );
        self
    }

    /// Asserts the exit code and that stderr is `error: ...` with `text` in it.
    fn fails(self, code: i32, text: &str) -> Run {
        let run = self.expect(code);
        let said = run.stderr.starts_with("error: ") && run.stderr.contains(text);
        assert!(said, "{}: stderr lacks {text:?}:\n{}", run.line, run.stderr);
        run
    }

    /// Stdout as one JSON document.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("{}: not JSON ({err}):\n{}", self.line, self.stdout))
    }

    /// Stdout as one JSON document per line.
    fn json_lines(&self) -> Vec<Value> {
        let parse = |line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"));
        self.stdout.lines().map(parse).collect()
    }

    /// The id in a first line `started job ID on ...`.
    fn started_id(&self) -> i64 {
        self.stdout
            .strip_prefix("started job ")
            .or_else(|| self.stdout.strip_prefix("scheduled job "))
            .and_then(|rest| rest.split_once(' '))
            .and_then(|(id, _)| id.parse().ok())
            .unwrap_or_else(|| panic!("{}: no started job in\n{}", self.line, self.stdout))
    }
}

/// Runs the binary with the words of `line` as arguments (none of them has a space), `env`
/// as its only `XMPP_BROADCAST_*` variables, and `stdin`.
async fn xb(line: &str, env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut command = support::serve::command();
    command
        .args(line.split_whitespace())
        .envs(env.iter().copied());
    let output = support::process::output_with_input(command, stdin).await;
    Run::of(line, output)
}

/// Runs the binary with the words of `line` and a standard output whose reader has gone away
/// (as `xmpp-broadcast show 7 | head -1` once `head` is done).
fn xb_into_closed_pipe(line: &str) -> Run {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = support::serve::command()
        .args(line.split_whitespace())
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .output()
        .expect("run the CLI");
    Run::of(line, output)
}

#[test]
fn a_reader_that_went_away_ends_the_command_quietly() {
    let run = xb_into_closed_pipe("schema").expect(0);
    assert_eq!(run.stderr, "", "no panic, no message");
}

#[tokio::test]
async fn every_subcommand_help_has_an_example() {
    for (subcommand, operator) in SUBCOMMANDS {
        let help = xb(&format!("{subcommand} --help"), &[], b"")
            .await
            .expect(0);
        let example = help.stdout.contains("Example: ") && help.stdout.contains("xmpp-broadcast ");
        assert!(
            example,
            "{subcommand} --help has no example:\n{}",
            help.stdout
        );
        if operator {
            for code in ["Exit codes:", "  3   not found", "  10  ABORT_ADMIN"] {
                assert!(help.stdout.contains(code), "{subcommand} --help: {code}");
            }
        }
    }
    let top = xb("--help", &[], b"").await.expect(0);
    assert!(
        top.stdout.contains("  6   authentication"),
        "{}",
        top.stdout
    );
}

#[tokio::test]
async fn an_instance_that_does_not_answer_is_unavailable() {
    let nowhere = format!("--url http://127.0.0.1:{} --domain {DOMAIN}", free_port());
    let commands = [
        "list",
        "show 1",
        "watch 1",
        "abort 1",
        "delete 1",
        "count",
        "correct 1 --body b",
        "retract 1",
        "retract 1 --dry-run",
    ];
    for command in commands {
        xb(&format!("{command} {nowhere}"), &[], b"")
            .await
            .fails(5, "cannot reach the admin API at http://127.0.0.1:");
    }
}

#[tokio::test]
async fn usage_errors_are_invalid_input_before_anything_is_sent() {
    let nowhere = format!("--url http://127.0.0.1:{}", free_port());
    let usage = |line: String, message: &'static str| async move {
        xb(&line, &[], b"").await.fails(2, message);
    };
    usage(
        format!("list --domain {DOMAIN}"),
        "which instance? give --url",
    )
    .await;
    let ftp = "list --url ftp://127.0.0.1:1 --domain example.com";
    usage(ftp.into(), "ftp is not supported").await;
    let no_ca = "list --url https://127.0.0.1:1 --ca-file /nonexistent/ca.pem --domain example.com";
    usage(
        no_ca.into(),
        "cannot read the trusted certificate authorities from /nonexistent/ca.pem",
    )
    .await;
    usage(format!("list {nowhere}"), "which domain? give --domain").await;
    let start = format!("start {nowhere} --domain {DOMAIN} --sender {SENDER} --name n");
    let missing = "--body-file /nonexistent/notice.txt";
    usage(
        format!("{start} {missing}"),
        "cannot read /nonexistent/notice.txt",
    )
    .await;
    let both = "--body-file - --subject-file -";
    usage(
        format!("{start} {both}"),
        "only one of --subject-file and --body-file",
    )
    .await;
    usage(
        format!("correct 7 {nowhere} --domain {DOMAIN} {both}"),
        "only one of --subject-file and --body-file",
    )
    .await;
    usage(
        "list --config /nonexistent.toml".into(),
        "cannot read config file",
    )
    .await;
    // clap's own errors (a missing argument, two bodies) exit 2 as well.
    xb(&start, &[], b"").await.expect(2);
    xb(&format!("{start} --body b --body-file -"), &[], b"")
        .await
        .expect(2);
}

/// What the steps share.
struct Fixture {
    app: App,
    /// `--url http://<admin.listen> --user ... --password ...`.
    login: String,
}

impl Fixture {
    async fn start() -> Fixture {
        let mut options = AppOptions::one_domain(DOMAIN, USERS as usize - 1);
        options.domains.push((EMPTY_DOMAIN.into(), Vec::new()));
        let app = App::start(options).await;
        let url = format!("http://{}", admin_listen(&app.config_path()));
        Fixture {
            app,
            login: format!("--url {url} --user {ADMIN_USER} --password {ADMIN_PASSWORD}"),
        }
    }

    /// Runs the binary with `line`, logged in to the instance as the global admin.
    async fn xb(&self, line: &str) -> Run {
        self.xb_with_stdin(line, b"").await
    }

    async fn xb_with_stdin(&self, line: &str, stdin: &[u8]) -> Run {
        xb(&format!("{line} {}", self.login), &[], stdin).await
    }

    /// `start` of job `name` on `example.com` from its admin at `rate`, with `more` arguments.
    async fn start_job(&self, name: &str, rate: &str, more: &str) -> Run {
        let start = format!("start --domain {DOMAIN} --name {name} --sender {SENDER}");
        let line = format!("{start} --rate {rate} --interval {INTERVAL} {more}");
        self.xb(&line).await
    }

    /// Starts a slow job and returns its id.
    async fn running_job(&self, name: &str) -> i64 {
        let run = self.start_job(name, SLOW, "--body slow --json").await;
        let job = run.expect(0).json();
        assert_eq!(job["executionState"], "RUNNING", "{job}");
        job["id"].as_i64().expect("id")
    }

    /// The job as the API returns it (`getBroadcast`, every field).
    async fn api_job(&self, id: i64) -> Value {
        self.app.admin().get_broadcast(id).await
    }

    async fn assert_no_jobs(&self) {
        let jobs = self.app.admin().get_broadcasts(DOMAIN).await;
        assert_eq!(jobs, Vec::<Value>::new());
    }

    /// How many messages the XMPP server has received from the instance.
    fn messages_sent(&self) -> usize {
        self.app.server.seen(|seen| seen.messages.len())
    }
}

/// `admin.listen` of a config file.
fn admin_listen(config: &Path) -> String {
    let text = std::fs::read_to_string(config).expect("read the serve config");
    let config: toml::Table = text.parse().expect("the serve config is TOML");
    let listen = config["admin"]["listen"].as_str().expect("admin.listen");
    listen.to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_commands_against_a_running_instance() {
    let began = Instant::now();
    let fixture = Fixture::start().await;
    eprintln!("fixture ready in {:?}", began.elapsed());
    count_and_dry_run(&fixture).await;
    let notice = start_with_files_and_watch(&fixture).await;
    let (json_watched, quick) = start_then_watch(&fixture).await;
    list_and_show(&fixture, notice, &[quick, json_watched, notice]).await;
    let aborted = abort_and_conflicts(&fixture).await;
    delete(&fixture, notice, &[quick, json_watched, aborted]).await;
    refused_input(&fixture).await;
    not_found_and_auth(&fixture).await;
    instance_from_config_and_environment(&fixture).await;
    example_scripts(&fixture).await;
    corrections_and_retractions(&fixture).await;
    idempotency_keys(&fixture).await;
    schedules_and_pauses(&fixture).await;
    lists_and_groups(&fixture).await;
    languages(&fixture).await;
    eprintln!("all steps done in {:?}", began.elapsed());
}

/// `count` and `start --dry-run`: who would receive it, and no job is created.
async fn count_and_dry_run(f: &Fixture) {
    let count = f.xb(&format!("count {DOMAIN}")).await.expect(0);
    let first_five = ["admin", "u0001", "u0002", "u0003", "u0004"]
        .map(|user| format!("\n  {user}@{DOMAIN}"))
        .concat();
    let expected = "20 users of example.com would receive a broadcast started now; the first 5:";
    assert_eq!(count.stdout, format!("{expected}{first_five}\n"));
    let json = f.xb(&format!("count {DOMAIN} --sample 2 --json")).await;
    let api = f
        .app
        .admin()
        .graphql(
            "{ broadcast { countBroadcastRecipients(domain: \"example.com\", sample: 2) \
             { domain recipientCount sample } } }",
            json!({}),
        )
        .await
        .expect("countBroadcastRecipients");
    assert_eq!(
        json.expect(0).json(),
        api["broadcast"]["countBroadcastRecipients"]
    );
    let empty = f
        .xb(&format!("count --domain {EMPTY_DOMAIN}"))
        .await
        .expect(0);
    assert!(
        empty.stdout.starts_with("no user of empty.example.net"),
        "{}",
        empty.stdout
    );

    let dry = f
        .start_job("dry", FAST, "--body b --dry-run")
        .await
        .expect(0);
    let expected = "dry run: nothing was started\n20 users of example.com";
    assert!(dry.stdout.starts_with(expected), "{}", dry.stdout);
    let dry_json = f
        .start_job("dry", FAST, "--body b --dry-run --json --sample 1")
        .await;
    assert_eq!(
        dry_json.expect(0).json(),
        json!({ "domain": DOMAIN, "recipientCount": USERS, "sample": [SENDER] })
    );
    let empty_domain = format!("--domain {EMPTY_DOMAIN} --sender admin@{EMPTY_DOMAIN}");
    f.xb(&format!("start --dry-run {empty_domain} --name d --body b"))
        .await
        .fails(2, "start would fail with no_recipients");
    f.assert_no_jobs().await;
}

/// `start --watch` with the subject from a file and a multi-line body from standard input:
/// progress lines to FINISHED, exit 0, and the text arrives exactly. Returns the job's id.
async fn start_with_files_and_watch(f: &Fixture) -> i64 {
    let dir = support::scratch_dir("cli-notice");
    let subject_file = dir.path().join("subject.txt");
    std::fs::write(&subject_file, "Maintenance tonight\n").unwrap();
    let files = format!("--subject-file {} --body-file -", subject_file.display());
    let start = format!("start --domain {DOMAIN} --name notice --sender {SENDER} --rate {FAST}");
    let line = format!("{start} --interval {INTERVAL} --watch {files}");
    let stdin = format!("{NOTICE}\n");
    let run = f.xb_with_stdin(&line, stdin.as_bytes()).await.expect(0);
    let id = run.started_id();
    let last = run.stdout.lines().last().unwrap_or_default();
    let finished = format!("job {id} FINISHED: 20/20 processed (100%)");
    assert!(last.starts_with(&finished), "{}", run.stdout);
    let job = f.xb(&format!("show {id} --domain {DOMAIN} --json")).await;
    let job = job.expect(0).json();
    assert_eq!(job["messageBody"], NOTICE);
    assert_eq!(job["messageSubject"], "Maintenance tonight");
    assert_eq!(job, f.api_job(id).await, "show --json is the API's object");
    id
}

/// `start --json --watch` prints the job as JSON lines; `start` then `watch ID` follows a job
/// that is running or done. Returns the two jobs' ids, oldest first.
async fn start_then_watch(f: &Fixture) -> (i64, i64) {
    let run = f
        .start_job("json-watched", FAST, "--body b --json --watch")
        .await;
    let lines = run.expect(0).json_lines();
    let last = lines.last().expect("at least one line");
    assert_eq!(last["executionState"], "FINISHED", "{lines:?}");
    assert_eq!(last["recipientsProcessed"], USERS);
    let json_watched = last["id"].as_i64().expect("id");
    assert!(
        lines.iter().all(|line| line["id"] == json_watched),
        "{lines:?}"
    );

    let started = f.start_job("quick", FAST, "--body b").await.expect(0);
    let id = started.started_id();
    let expected = format!(
        "started job {id} on example.com: 20 recipients at 1000/s\n\
         follow it with: xmpp-broadcast watch {id} --domain example.com\n"
    );
    assert_eq!(started.stdout, expected);
    let watch = format!("watch {id} --domain {DOMAIN} --interval {INTERVAL}");
    let watched = f.xb(&watch).await.expect(0);
    let finished = format!("job {id} FINISHED: 20/20");
    assert!(watched.stdout.contains(&finished), "{}", watched.stdout);
    let json = f.xb(&format!("{watch} --json")).await.expect(0);
    assert_eq!(json.json_lines(), [f.api_job(id).await]);
    (json_watched, id)
}

/// `list` as a table and as JSON (newest first, `--limit`, `--index`), `show` as text.
async fn list_and_show(f: &Fixture, notice: i64, newest_first: &[i64]) {
    let table = f
        .xb(&format!("list --domain {DOMAIN}"))
        .await
        .expect(0)
        .stdout;
    let mut rows = table.lines();
    let header = rows.next().unwrap_or_default();
    assert!(
        header.starts_with("ID  STATE     PROCESSED  RATE"),
        "{table}"
    );
    let first_column = |row: &str| row.split_whitespace().next().unwrap().parse().unwrap();
    let ids: Vec<i64> = rows.map(first_column).collect();
    assert_eq!(ids, newest_first, "{table}");
    assert!(table.contains("FINISHED  20/20      1000/s"), "{table}");
    for line in [
        format!("show {notice} --domain {DOMAIN}"),
        format!("list --domain {DOMAIN}"),
    ] {
        let run = xb_into_closed_pipe(&format!("{line} {}", f.login));
        assert_eq!(run.expect(0).stderr, "", "{line} into a closed pipe");
    }

    let listed = f.xb(&format!("list --domain {DOMAIN} --json")).await;
    let mut api = Vec::new();
    for id in newest_first {
        api.push(f.api_job(*id).await);
    }
    assert_eq!(
        listed.expect(0).json(),
        Value::Array(api),
        "the API's objects"
    );
    let second = f
        .xb(&format!(
            "list --domain {DOMAIN} --json --limit 1 --index 1"
        ))
        .await;
    assert_eq!(second.expect(0).json()[0]["id"], newest_first[1]);
    let empty = f
        .xb(&format!("list --domain {EMPTY_DOMAIN}"))
        .await
        .expect(0);
    assert_eq!(empty.stdout, "no jobs on empty.example.net\n");

    let shown = f.xb(&format!("show {notice} --domain {DOMAIN}")).await;
    let shown = shown.expect(0).stdout;
    for line in [
        format!("id:             {notice}\n"),
        "state:          FINISHED\n".to_owned(),
        "recipients:     20/20 processed (100%)\n".to_owned(),
        "subject:        Maintenance tonight\n".to_owned(),
        "body:\n  The server restarts at 22:00 UTC.\n  \n  \"Save your work\"".to_owned(),
    ] {
        assert!(shown.contains(&line), "show lacks {line:?}:\n{shown}");
    }
}

/// `abort` as text and JSON; a second job on the domain and aborting a stopped job are
/// conflicts (4); `watch` of a job that gets aborted exits 10. Returns an aborted job's id.
async fn abort_and_conflicts(f: &Fixture) -> i64 {
    let id = f.running_job("slow").await;
    let watch = format!(
        "watch {id} --domain {DOMAIN} --interval {INTERVAL} {}",
        f.login
    );
    let watch = tokio::spawn(async move { xb(&watch, &[], b"").await });
    f.start_job("second", FAST, "--body b")
        .await
        .fails(4, "running job limit exceeded (running_job_limit_exceeded)");
    // Let the watcher see the job running before it is aborted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let abort = format!("abort {id} --domain {DOMAIN}");
    let aborted = f.xb(&abort).await.expect(0);
    let stopped = format!("job {id} ABORT_ADMIN: ");
    assert!(aborted.stdout.starts_with(&stopped), "{}", aborted.stdout);
    let watched = watch.await.expect("watch task").expect(10);
    let running = format!("job {id} RUNNING: 0/20 processed (0%), 1.0/s, ETA ");
    assert!(watched.stdout.starts_with(&running), "{}", watched.stdout);
    let last = watched.stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with(&stopped), "{}", watched.stdout);
    f.xb(&abort)
        .await
        .fails(4, "not currently running (not_running)");

    let second = f.running_job("slow-json").await;
    let job = f
        .xb(&format!("abort {second} --domain {DOMAIN} --json"))
        .await;
    let job = job.expect(0).json();
    assert_eq!(job["executionState"], "ABORT_ADMIN");
    assert_eq!(job, f.api_job(second).await);
    let watch = format!("watch {second} --domain {DOMAIN} --json");
    assert_eq!(f.xb(&watch).await.expect(10).json_lines(), [job]);
    f.xb(&format!("delete {second} --domain {DOMAIN}"))
        .await
        .expect(0);
    id
}

/// `delete` by id (text: skipped ids named) and `--all` (JSON: the API's result).
async fn delete(f: &Fixture, notice: i64, others: &[i64]) {
    let running = f.running_job("undeletable").await;
    let deleted = f
        .xb(&format!("delete {notice} {running} --domain {DOMAIN}"))
        .await;
    let deleted = deleted.expect(0);
    assert_eq!(
        deleted.stdout,
        format!("deleted job {notice} of example.com\n")
    );
    let skipped = format!(
        "not deleted (running, with a follow-up running, or not a job of example.com): \
         {running}\n"
    );
    assert_eq!(deleted.stderr, skipped);
    f.xb(&format!("show {notice} --domain {DOMAIN}"))
        .await
        .fails(3, "Broadcast job not found (broadcast_not_found)");
    // `abort --all`: the domain's running job, then none.
    let abort_all = format!("abort --all --domain {DOMAIN}");
    let aborted = f.xb(&abort_all).await.expect(0);
    assert_eq!(
        aborted.stdout,
        format!("aborted job {running} of example.com\n")
    );
    let none = f.xb(&abort_all).await.expect(0);
    assert_eq!(none.stdout, "aborted no jobs of example.com\n");
    let mut expected: Vec<i64> = others.iter().copied().chain([running]).collect();
    expected.sort_unstable();
    let all = f
        .xb(&format!("delete --all --domain {DOMAIN} --json"))
        .await;
    let mut all = all.expect(0).json();
    let ids = all["ids"].as_array_mut().expect("ids");
    ids.sort_by_key(|id| id.as_i64());
    assert_eq!(
        all,
        json!({ "message": "Inactive broadcasts deleted", "ids": expected })
    );
    f.assert_no_jobs().await;
}

/// Arguments the server refuses exit 2 with its message and code; nothing is created.
async fn refused_input(f: &Fixture) {
    let refused = |rate: &'static str, message: &'static str| async move {
        f.start_job("refused", rate, "--body b")
            .await
            .fails(2, message);
    };
    refused("0", "(input_coercion)").await;
    refused("1001", "Invalid parameter: message_rate (bad_parameter)").await;
    f.xb(&format!(
        "start --domain {DOMAIN} --name n --sender nobody@{DOMAIN} --body b"
    ))
    .await
    .fails(2, "Sender account does not exist (sender_not_found)");
    f.assert_no_jobs().await;
}

/// Unknown jobs and domains exit 3; missing or wrong credentials exit 6.
async fn not_found_and_auth(f: &Fixture) {
    for line in ["show 999999", "abort 999999", "watch 999999"] {
        let line = format!("{line} --domain {DOMAIN}");
        f.xb(&line).await.fails(3, "(broadcast_not_found)");
    }
    f.xb("list --domain unknown.example.net")
        .await
        .fails(3, "Domain not found (domain_not_found)");
    let url = f.login.split_whitespace().nth(1).expect("the URL");
    let list = format!("list --domain {DOMAIN} --url {url}");
    xb(
        &format!("{list} --user {ADMIN_USER} --password x"),
        &[],
        b"",
    )
    .await
    .fails(6, "The provided credentials are wrong (wrong_credentials)");
    xb(&list, &[], b"").await.fails(6, "(no_permissions)");
}

/// The URL, credentials and domain from the config file, and from the environment; a flag
/// wins over both.
async fn instance_from_config_and_environment(f: &Fixture) {
    let config_path = f.app.config_path();
    let config = config_path.to_str().expect("UTF-8 path");
    let listed = xb(
        &format!("list --config {config} --domain {EMPTY_DOMAIN}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(listed.expect(0).stdout, "no jobs on empty.example.net\n");
    xb(&format!("count --config {config}"), &[], b"")
        .await
        .fails(
            2,
            "the config file serves empty.example.net, example.com: give --domain",
        );
    let env = [
        ("XMPP_BROADCAST_CONFIG", config),
        ("XMPP_BROADCAST_DOMAIN", DOMAIN),
    ];
    let counted = xb("count --json", &env, b"").await.expect(0).json();
    assert_eq!(counted["recipientCount"], USERS);
    let url = f.login.split_whitespace().nth(1).expect("the URL");
    let env = [
        ("XMPP_BROADCAST_URL", url),
        ("XMPP_BROADCAST_USER", ADMIN_USER),
        ("XMPP_BROADCAST_PASSWORD", ADMIN_PASSWORD),
        ("XMPP_BROADCAST_DOMAIN", DOMAIN),
    ];
    assert_eq!(
        xb("list --json", &env, b"").await.expect(0).json(),
        json!([])
    );
    // The wrong password of the flag is used, not the config file's, and refused.
    let line = format!("list --config {config} --domain {DOMAIN} --password x");
    xb(&line, &[], b"").await.fails(6, "(wrong_credentials)");
    xb("list --password x", &env, b"")
        .await
        .fails(6, "(wrong_credentials)");
}

/// The ops scripts of `examples/` send a multi-line notice from standard input, follow it to
/// FINISHED and exit 0, and the notice arrives exactly; run again with the same idempotency
/// key they are answered with that job and send nothing; then they correct it (the new text
/// from standard input) and retract it, each followed to FINISHED.
async fn example_scripts(f: &Fixture) {
    for script in ["notice-cli.sh", "notice-curl.sh"] {
        let notice = format!("{NOTICE}\n");
        let args = [DOMAIN, "Maintenance tonight", "-"];
        let key = format!("{script}-notice");
        let stderr = run_script(f, script, &args, &notice, &key).await;
        assert!(
            stderr.contains("delivered to every user of example.com"),
            "{script}: {stderr}"
        );
        let job = newest_job(f).await;
        let sent = f.messages_sent();
        let again = run_script(f, script, &args, &notice, &key).await;
        let started = format!("started job {} on {DOMAIN}", job["id"]);
        assert!(again.contains(&started), "{script} again: {again}");
        assert_eq!(newest_job(f).await["id"], job["id"], "{script}: no new job");
        assert_eq!(f.messages_sent(), sent, "{script}: nothing sent again");
        assert_eq!(
            (&job["name"], &job["messageSubject"], &job["messageBody"]),
            (
                &json!(script),
                &json!("Maintenance tonight"),
                &json!(NOTICE)
            ),
            "{script}"
        );
        assert_eq!(job["executionState"], "FINISHED", "{script}");

        let id = job["id"].to_string();
        let words = ["correct", &id, DOMAIN, "Maintenance at 23:00", "-"];
        let expected = json!({
            "kind": "CORRECTION",
            "amends": job["id"],
            "messageSubject": "Maintenance at 23:00",
            "messageBody": "Corrected.",
            "executionState": "FINISHED",
        });
        follow_up_by_script(f, script, &words, "Corrected.\n", expected).await;
        let expected = json!({
            "kind": "RETRACTION",
            "amends": job["id"],
            "executionState": "FINISHED",
            "recipientsProcessed": USERS,
        });
        follow_up_by_script(f, script, &["retract", &id, DOMAIN], "", expected).await;
    }
}

/// `start --idempotency-key` twice: the second is answered with the first job (running or not)
/// and sends nothing; the key with another body exits 4 (`idempotency_key_reused`); `retract`
/// takes a key too.
async fn idempotency_keys(f: &Fixture) {
    let first = f
        .start_job("keyed", FAST, "--body b --idempotency-key cli-1")
        .await;
    let id = first.expect(0).started_id();
    f.xb(&format!(
        "watch {id} --domain {DOMAIN} --interval {INTERVAL}"
    ))
    .await
    .expect(0);
    let sent = f.messages_sent();
    let again = f
        .start_job("keyed", FAST, "--body b --idempotency-key cli-1")
        .await;
    assert_eq!(again.expect(0).started_id(), id);
    assert_eq!(f.messages_sent(), sent, "nothing sent again");
    let other = f
        .start_job("keyed", FAST, "--body c --idempotency-key cli-1")
        .await;
    other.fails(4, "idempotency_key_reused");
    let retract = format!("retract {id} --domain {DOMAIN} --rate {FAST} --idempotency-key cli-2");
    let retraction = f.xb(&retract).await.expect(0).started_id();
    assert_eq!(f.xb(&retract).await.expect(0).started_id(), retraction);
}

/// `start --at` schedules (and a time that does not parse is refused before anything is
/// sent), `abort` cancels a scheduled job; `pause` and `resume` of a running job, and what
/// they refuse.
async fn schedules_and_pauses(f: &Fixture) {
    let at = (chrono::Utc::now() + chrono::TimeDelta::hours(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let scheduled = f
        .start_job("later", FAST, &format!("--body b --at {at}"))
        .await
        .expect(0);
    let id = scheduled.started_id();
    let said = format!("scheduled job {id} on {DOMAIN} for {at}: ");
    assert!(scheduled.stdout.starts_with(&said), "{}", scheduled.stdout);
    let shown = f
        .xb(&format!("show {id} --domain {DOMAIN}"))
        .await
        .expect(0);
    assert!(
        shown.stdout.contains("state:          SCHEDULED\n"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains(&format!("scheduled for:  {at}\n")),
        "{}",
        shown.stdout
    );
    f.xb(&format!("pause {id} --domain {DOMAIN}"))
        .await
        .fails(4, "it is SCHEDULED");
    let cancelled = f
        .xb(&format!("abort {id} --domain {DOMAIN}"))
        .await
        .expect(0);
    assert!(
        cancelled
            .stdout
            .starts_with(&format!("job {id} ABORT_ADMIN: ")),
        "{}",
        cancelled.stdout
    );
    f.start_job("never", FAST, "--body b --at tomorrow")
        .await
        .fails(2, "--at");

    let id = f.running_job("pausable").await;
    let paused = f
        .xb(&format!("pause {id} --domain {DOMAIN}"))
        .await
        .expect(0);
    assert!(
        paused.stdout.starts_with(&format!("job {id} PAUSED: ")),
        "{}",
        paused.stdout
    );
    let sent = f.messages_sent();
    f.xb(&format!("pause {id} --domain {DOMAIN}"))
        .await
        .fails(4, "(not_running)");
    let resumed = f
        .xb(&format!("resume {id} --domain {DOMAIN} --json"))
        .await
        .expect(0)
        .json();
    assert_eq!(
        (&resumed["status"], &resumed["executionState"]),
        (&json!("RUNNING"), &json!("RUNNING")),
        "{resumed}"
    );
    f.xb(&format!("resume {id} --domain {DOMAIN}"))
        .await
        .fails(4, "(not_paused)");
    let deadline = support::Deadline::after(Duration::from_secs(10), "sending after the resume");
    while f.messages_sent() == sent {
        deadline.tick().await;
    }
    f.xb(&format!("abort {id} --domain {DOMAIN}"))
        .await
        .expect(0);
}

/// `count` and `start` with `--recipients-file` (a file or standard input) and `--group`: the
/// listed accounts only, the names that are not accounts shown; a line that is not a JID and
/// an unknown group refused with nothing created.
async fn lists_and_groups(f: &Fixture) {
    let list = format!("# on call\nu0003@{DOMAIN}\n\nghost@{DOMAIN}\nu0001@{DOMAIN}\n");
    let count = f
        .xb_with_stdin(
            &format!("count {DOMAIN} --recipients-file -"),
            list.as_bytes(),
        )
        .await
        .expect(0);
    assert_eq!(
        count.stdout,
        format!(
            "2 users of {DOMAIN} would receive a broadcast started now; the first 2:\n  \
             u0001@{DOMAIN}\n  u0003@{DOMAIN}\n1 listed name(s) are not accounts of {DOMAIN}:\n  \
             ghost@{DOMAIN}\n"
        )
    );
    let dir = support::scratch_dir("cli-list");
    let file = dir.path().join("on-call.txt");
    std::fs::write(&file, &list).unwrap();
    let listed = format!("--body b --watch --recipients-file {}", file.display());
    let run = f.start_job("on-call", FAST, &listed).await.expect(0);
    let id = run.started_id();
    let last = run.stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("job {id} FINISHED: 2/2 processed (100%)")),
        "{}",
        run.stdout
    );
    let shown = f
        .xb(&format!("show {id} --domain {DOMAIN}"))
        .await
        .expect(0);
    let audience = format!(
        "audience:       listed accounts (1 listed name(s) were not accounts: ghost@{DOMAIN})\n"
    );
    assert!(shown.stdout.contains(&audience), "{}", shown.stdout);
    let before = f.app.admin().get_broadcasts(DOMAIN).await.len();
    std::fs::write(&file, format!("u0001@{DOMAIN}\nu0002@{DOMAIN}/phone\n")).unwrap();
    f.start_job("bad-list", FAST, &listed)
        .await
        .fails(2, "line 2:");
    f.start_job("no-group", FAST, "--body b --group staff")
        .await
        .fails(3, "(group_not_found)");
    f.xb_with_stdin(
        &format!(
            "start --domain {DOMAIN} --name both --sender {SENDER} --recipients-file - \
             --body-file -"
        ),
        b"x",
    )
    .await
    .fails(2, "standard input");
    assert_eq!(f.app.admin().get_broadcasts(DOMAIN).await.len(), before);
}

/// Runs `script` with `words` (`correct ID …` or `retract ID …`): it says that the follow-up
/// reached everyone job ID reached, and the newest job has the fields of `expected`.
async fn follow_up_by_script(
    f: &Fixture,
    script: &str,
    words: &[&str],
    stdin: &str,
    expected: Value,
) {
    let key = format!("{script}-{}-{}", words[0], words[1]);
    let stderr = run_script(f, script, words, stdin, &key).await;
    let (mode, id) = (words[0], words[1]);
    let noun = if mode == "correct" {
        "correction"
    } else {
        "retraction"
    };
    let done = format!("{noun} of job {id} delivered to everyone it reached");
    assert!(stderr.contains(&done), "{script} {mode}: {stderr}");
    let job = newest_job(f).await;
    assert_eq!(fields_of(&job, &expected), expected, "{script} {mode}");
}

/// Runs `examples/<script>` with `args` and `stdin` and the idempotency key `key`, against the
/// instance as the global admin through the environment; asserts that it exits 0 and returns
/// its stderr.
async fn run_script(f: &Fixture, script: &str, args: &[&str], stdin: &str, key: &str) -> String {
    let url = f.login.split_whitespace().nth(1).expect("the URL");
    let mut command = Command::new("bash");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("XMPP_BROADCAST_") {
            command.env_remove(name);
        }
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(script);
    command.arg(&path).args(args);
    command.envs([
        ("XMPP_BROADCAST_URL", url),
        ("XMPP_BROADCAST_USER", ADMIN_USER),
        ("XMPP_BROADCAST_PASSWORD", ADMIN_PASSWORD),
        ("XB", support::serve::BINARY),
        ("NAME", script),
        ("POLL_SECONDS", INTERVAL),
        ("IDEMPOTENCY_KEY", key),
    ]);
    let output = support::process::output_with_input(command, stdin.as_bytes()).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{script} {args:?} exited {}\nstdout:\n{}\nstderr:\n{stderr}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

/// The newest job of `example.com`, every field.
async fn newest_job(f: &Fixture) -> Value {
    let newest = &f.app.admin().get_broadcasts(DOMAIN).await[0];
    f.api_job(newest["id"].as_i64().expect("id")).await
}

/// The fields of `job` that `expected` names.
fn fields_of(job: &Value, expected: &Value) -> Value {
    let names = expected.as_object().expect("an object").keys();
    names
        .map(|name| (name.clone(), job[name].clone()))
        .collect()
}

/// `correct` and `retract`: the dry run names who the original reached (not a user registered
/// since), `--watch` and `--json` as for `start`, a correction keeps the original's subject
/// unless given one, a follow-up of a correction amends the broadcast, `list` and `show` say
/// what each job is; a running original, a retraction and an unknown job are refused and
/// nothing is created. Runs last: it registers a user.
async fn corrections_and_retractions(f: &Fixture) {
    let original = f
        .start_job(
            "wrong",
            FAST,
            "--subject Maintenance --body 22:00 --json --watch",
        )
        .await
        .expect(0)
        .json_lines()
        .last()
        .expect("the job's last state")["id"]
        .as_i64()
        .expect("id");
    let sent_to_admin = f.app.messages_to(SENDER);
    let late = format!("late@{DOMAIN}");
    f.app.register(DOMAIN, "late").await;
    let dry = f
        .xb(&format!(
            "correct {original} --domain {DOMAIN} --body b --dry-run"
        ))
        .await
        .expect(0);
    let expected = format!(
        "dry run: nothing was started\n20 users of example.com would receive a correction of \
         job {original} sent now; the first 5:\n  admin@example.com\n"
    );
    assert!(dry.stdout.starts_with(&expected), "{}", dry.stdout);
    let line = format!("retract {original} --domain {DOMAIN} --dry-run --sample 1 --json");
    let preview = f.xb(&line).await.expect(0).json();
    assert_eq!(
        preview,
        json!({ "domain": DOMAIN, "recipientCount": USERS, "sample": [SENDER] })
    );
    let count = f
        .xb(&format!("count {DOMAIN} --json"))
        .await
        .expect(0)
        .json();
    assert_eq!(
        count["recipientCount"],
        USERS + 1,
        "the late user is a user"
    );
    let jobs_before = f.app.admin().get_broadcasts(DOMAIN).await.len();

    // A correction from standard input, followed to its end; the subject is the original's.
    let correct = format!("correct {original} --domain {DOMAIN} --interval {INTERVAL}");
    let run = f
        .xb_with_stdin(&format!("{correct} --body-file - --watch"), b"23:00\n")
        .await
        .expect(0);
    let first = run.stdout.lines().next().unwrap_or_default();
    let correction = run.started_id();
    let started = format!("started job {correction} on {DOMAIN}, correcting job {original}");
    assert_eq!(first, started, "{}", run.stdout);
    let finished = format!("job {correction} FINISHED: 20/20 processed (100%)");
    let last = run.stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with(&finished), "{}", run.stdout);
    let job = f.api_job(correction).await;
    assert_eq!(
        (
            &job["kind"],
            &job["amends"],
            &job["messageSubject"],
            &job["messageBody"]
        ),
        (
            &json!("CORRECTION"),
            &json!(original),
            &json!("Maintenance"),
            &json!("23:00")
        ),
        "{job}"
    );
    assert_eq!(f.app.messages_to(&late), 0, "the late user got nothing");

    // A correction of the correction amends the broadcast; as JSON, the new job.
    let again = format!("{correct} --subject Update --body 23:30 --json");
    let again = again.replace(
        &format!("correct {original}"),
        &format!("correct {correction}"),
    );
    let second = f.xb(&again).await.expect(0).json();
    let second_id = second["id"].as_i64().expect("id");
    assert_eq!(
        (
            &second["kind"],
            &second["amends"],
            &second["messageSubject"]
        ),
        (&json!("CORRECTION"), &json!(original), &json!("Update")),
        "{second}"
    );
    let watch = format!("watch {second_id} --domain {DOMAIN} --interval {INTERVAL} --json");
    let lines = f.xb(&watch).await.expect(0).json_lines();
    assert_eq!(lines.last(), Some(&f.api_job(second_id).await));

    // The retraction, as JSON lines to its end.
    let retract = format!("retract {second_id} --domain {DOMAIN} --interval {INTERVAL}");
    let lines = f
        .xb(&format!("{retract} --json --watch"))
        .await
        .expect(0)
        .json_lines();
    let last = lines.last().expect("at least one line");
    let retraction = last["id"].as_i64().expect("id");
    assert_eq!(
        (&last["kind"], &last["amends"], &last["executionState"]),
        (&json!("RETRACTION"), &json!(original), &json!("FINISHED")),
        "{lines:?}"
    );
    assert_eq!(last["recipientsProcessed"], USERS);
    assert_eq!(f.app.messages_to(&late), 0, "the late user got nothing");
    let follow_ups = f.app.messages_to(SENDER) - sent_to_admin;
    assert_eq!(follow_ups, 3, "two corrections and a retraction");

    // What `list` and `show` say of them.
    let table = f.xb(&format!("list --domain {DOMAIN} --limit 4")).await;
    let table = table.expect(0).stdout;
    let kinds: Vec<(String, String)> = table
        .lines()
        .skip(1)
        .map(|row| {
            let cells: Vec<&str> = row.split_whitespace().collect();
            (cells[5].to_owned(), cells[6].to_owned())
        })
        .collect();
    let amends = original.to_string();
    let expected = [
        ("RETRACTION", amends.as_str()),
        ("CORRECTION", amends.as_str()),
        ("CORRECTION", amends.as_str()),
        ("BROADCAST", "-"),
    ]
    .map(|(kind, amends)| (kind.to_owned(), amends.to_owned()));
    assert_eq!(kinds, expected, "{table}");
    let shown = f.xb(&format!("show {retraction} --domain {DOMAIN}")).await;
    let kind = format!("\nkind:           RETRACTION of job {original}\n");
    assert!(
        shown.expect(0).stdout.contains(&kind),
        "show lacks {kind:?}"
    );

    // Refused, and nothing created: a retraction, an unknown job, a running broadcast.
    let jobs_after = f.app.admin().get_broadcasts(DOMAIN).await.len();
    assert_eq!(jobs_after, jobs_before + 3);
    let refusals = [
        (format!("retract {retraction}"), 4, "(not_amendable)"),
        (
            format!("correct {retraction} --body b"),
            4,
            "(not_amendable)",
        ),
        ("retract 999999".to_owned(), 3, "(broadcast_not_found)"),
        (
            "correct 999999 --body b".to_owned(),
            3,
            "(broadcast_not_found)",
        ),
        (
            "correct 999999 --subject s --body b".to_owned(),
            3,
            "(broadcast_not_found)",
        ),
        (
            "retract 999999 --dry-run".to_owned(),
            3,
            "(broadcast_not_found)",
        ),
    ];
    for (command, code, message) in refusals {
        let line = format!("{command} --domain {DOMAIN}");
        f.xb(&line).await.fails(code, message);
    }
    let running = f.running_job("still-running").await;
    for command in [
        format!("retract {running}"),
        format!("retract {running} --dry-run"),
        format!("correct {running} --subject s --body b"),
    ] {
        let line = format!("{command} --domain {DOMAIN}");
        f.xb(&line).await.fails(4, "(broadcast_still_running)");
    }
    f.xb(&format!("abort {running} --domain {DOMAIN}"))
        .await
        .expect(0);
    let jobs_now = f.app.admin().get_broadcasts(DOMAIN).await.len();
    assert_eq!(
        jobs_now,
        jobs_after + 1,
        "only the running broadcast was created"
    );

    // A broadcast is not deleted while a follow-up of it runs.
    let slow = format!("retract {original} --domain {DOMAIN} --rate {SLOW} --json");
    let slow = f.xb(&slow).await.expect(0).json();
    assert_eq!(slow["executionState"], "RUNNING", "{slow}");
    let deleted = f.xb(&format!("delete {original} --domain {DOMAIN}")).await;
    let skipped = format!("with a follow-up running, or not a job of example.com): {original}\n");
    assert!(deleted.expect(0).stderr.ends_with(&skipped));
    let abort = format!("abort {} --domain {DOMAIN}", slow["id"]);
    f.xb(&abort).await.expect(0);
    let deleted = f.xb(&format!("delete {original} --domain {DOMAIN}")).await;
    let expected = format!("deleted job {original} of example.com\n");
    assert_eq!(deleted.expect(0).stdout, expected);
}

/// `start --language --translation TAG=FILE`: a translation file may begin with its subject;
/// one may come from standard input; `show` lists the languages and each translation; the
/// message sent carries every body with its `xml:lang`. `correct` keeps the language, and warns
/// that it drops the translations it was not given. A bad tag is refused, nothing created.
async fn languages(f: &Fixture) {
    let dir = support::scratch_dir("cli-languages");
    let german = dir.path().join("notice.de.txt");
    std::fs::write(&german, "Subject: Wartung\n\nHeute Abend.\nBis 23 Uhr.\n").unwrap();
    let line = format!(
        "--subject Maintenance --body Tonight. --language en --translation de={} \
         --translation fr=- --watch",
        german.display()
    );
    let start = format!("start --domain {DOMAIN} --name languages --sender {SENDER}");
    let line = format!("{start} --rate {FAST} --interval {INTERVAL} {line}");
    let run = f.xb_with_stdin(&line, b"Ce soir.\n").await.expect(0);
    let id = run.started_id();
    let job = f.api_job(id).await;
    assert_eq!(job["language"], "en");
    assert_eq!(
        job["translations"],
        json!([
            {"language": "de", "messageSubject": "Wartung", "messageBody": "Heute Abend.\nBis 23 Uhr."},
            {"language": "fr", "messageSubject": "", "messageBody": "Ce soir."},
        ])
    );
    let shown = f
        .xb(&format!("show {id} --domain {DOMAIN}"))
        .await
        .expect(0);
    assert!(
        shown.stdout.contains("languages:      en, de, fr\n"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.ends_with(
            "body:\n  Tonight.\nsubject (de): Wartung\nbody (de):\n  Heute Abend.\n  Bis 23 \
             Uhr.\nbody (fr):\n  Ce soir.\n"
        ),
        "{}",
        shown.stdout
    );
    let sent = f.app.server.seen(|seen| {
        let message = seen.messages.last().expect("a message");
        message.xml.clone()
    });
    assert!(sent.contains("xml:lang='en'"), "{sent}");
    assert!(
        sent.contains("<body xml:lang='fr'>Ce soir.</body>"),
        "{sent}"
    );

    let correct = format!("correct {id} --domain {DOMAIN} --body Midnight. --json");
    let run = f.xb(&correct).await.expect(0);
    assert!(
        run.stderr.contains(&format!(
            "warning: job {id} has translations (de, fr); a correction replaces the whole message"
        )),
        "{}",
        run.stderr
    );
    let correction = run.json()["id"].as_i64().expect("id");
    let job = f.api_job(correction).await;
    assert_eq!(
        (&job["language"], &job["translations"]),
        (&json!("en"), &json!([]))
    );

    let jobs = f.app.admin().get_broadcasts(DOMAIN).await.len();
    let bad = format!(
        "--body b --language en_US --translation de={}",
        german.display()
    );
    let run = f.start_job("bad", FAST, &bad).await.expect(2);
    assert!(run.stderr.contains("(bad_parameter)"), "{}", run.stderr);
    assert!(run.stderr.contains("en_US"), "{}", run.stderr);
    let run = f
        .start_job(
            "missing",
            FAST,
            "--body b --language en --translation de=/nonexistent",
        )
        .await
        .expect(2);
    assert!(
        run.stderr.contains("cannot read /nonexistent"),
        "{}",
        run.stderr
    );
    assert_eq!(f.app.admin().get_broadcasts(DOMAIN).await.len(), jobs);
}
