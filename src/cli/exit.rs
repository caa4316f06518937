//! Exit codes of the operator commands, which a script can branch on, and the error that
//! carries one.

use std::process::ExitCode;

use crate::admin::client::{ClientError, Failure};

/// The exit codes, as `--help` and the README list them.
pub const CODES_HELP: &str = "Exit codes:
  0   success
  1   unexpected error (an answer that is not the admin API's)
  2   invalid input: bad arguments, bad_parameter, input_coercion, sender_not_found,
      no_recipients
  3   not found: broadcast_not_found, domain_not_found
  4   conflict: running_job_limit_exceeded, not_running
  5   unavailable: temporarily_unavailable, database_error, HTTP 5xx, nothing listening,
      no answer in time
  6   authentication: missing or wrong credentials, or a domain the user may not manage
      (HTTP 401)
watch and start --watch end with how the job ended:
  0   FINISHED
  10  ABORT_ADMIN (aborted by an administrator)
  11  ABORT_ERROR (stopped by an error)";

/// How an operator command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Unexpected = 1,
    InvalidInput = 2,
    NotFound = 3,
    Conflict = 4,
    Unavailable = 5,
    Unauthorized = 6,
    /// The watched job was aborted by an administrator.
    AbortedByAdmin = 10,
    /// The watched job was stopped by an error.
    AbortedByError = 11,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

impl From<Failure> for Exit {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::InvalidInput => Exit::InvalidInput,
            Failure::NotFound => Exit::NotFound,
            Failure::Conflict => Exit::Conflict,
            Failure::Unavailable => Exit::Unavailable,
            Failure::Unauthorized => Exit::Unauthorized,
            Failure::Other => Exit::Unexpected,
        }
    }
}

/// A failed operator command: the message for stderr and the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub exit: Exit,
    pub message: String,
}

impl CommandError {
    /// Wrong or missing arguments, found before anything was sent (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CommandError {
            exit: Exit::InvalidInput,
            message: message.into(),
        }
    }
}

impl From<ClientError> for CommandError {
    fn from(err: ClientError) -> Self {
        let exit = Exit::from(err.failure());
        let hint = match exit {
            Exit::Unauthorized => {
                " (check --user and --password, XMPP_BROADCAST_USER and \
                 XMPP_BROADCAST_PASSWORD, or the config file's [admin] section)"
            }
            Exit::Unavailable if matches!(err, ClientError::Unreachable { .. }) => {
                " (is `xmpp-broadcast serve` running there? check --url or the config file's \
                 admin.listen)"
            }
            _ => "",
        };
        CommandError {
            exit,
            message: format!("{err}{hint}"),
        }
    }
}
