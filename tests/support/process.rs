//! Child-process plumbing: locating programs, signals, bounded waits, and log files that
//! are printed when a test fails.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use super::{Deadline, POLL_INTERVAL};

/// Panics with `hint` unless `program` is an executable file in `PATH`.
pub fn require_program(program: &str, hint: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    assert!(found, "`{program}` not found in PATH: {hint}");
}

/// Runs `command` with `input` on its standard input and returns its output (status, stdout
/// and stderr).
pub async fn output_with_input(command: Command, input: &[u8]) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = tokio::process::Command::from(command)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("spawn {program}: {err}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(input)
        .await
        .unwrap_or_else(|err| panic!("write to {program}: {err}"));
    drop(stdin);
    child
        .wait_with_output()
        .await
        .unwrap_or_else(|err| panic!("run {program}: {err}"))
}

/// Sends `signal` (a name such as `TERM`) to the process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Polls until `child` exits; panics after `timeout`.
pub async fn wait_exit(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let deadline = Deadline::after(timeout, format!("{what} to exit"));
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        deadline.tick().await;
    }
}

/// Stops `child` from a synchronous context (`Drop`): SIGTERM, then SIGKILL if it has not
/// exited within `grace`. Always reaps the process.
pub fn terminate(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    signal(child.id(), "TERM");
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A process's log file; its contents are printed if the test fails.
pub struct LogFile {
    path: PathBuf,
    label: String,
}

impl LogFile {
    /// Names the log at `path`; `label` heads the printout.
    pub fn new(path: &Path, label: impl Into<String>) -> Self {
        LogFile {
            path: path.to_owned(),
            label: label.into(),
        }
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file for appending (for a child's stdout/stderr), creating it if needed.
    pub fn append_handle(&self) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .expect("open log file")
    }

    /// The log so far (empty if the file does not exist yet).
    pub fn contents(&self) -> String {
        fs::read(&self.path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Prints the whole log to stderr if the current thread is unwinding from a failed
    /// assertion (the test runner shows it with the failure).
    pub fn print_if_panicking(&self) {
        if std::thread::panicking() {
            eprintln!(
                "----- {} ({}) -----\n{}----- end of {} -----",
                self.label,
                self.path.display(),
                self.contents(),
                self.label
            );
        }
    }
}
