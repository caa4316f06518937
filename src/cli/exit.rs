//! Exit codes of the operator commands, which a script can branch on, and the error that
//! carries one.

use std::process::ExitCode;

use crate::admin::client::{ClientError, ErrorCode, Failure};

/// The exit codes, as `--help` lists them: each with the admin API's error codes it stands for
/// ([`ErrorCode::ALL`], where each code's failure kind is defined).
pub fn codes_help() -> String {
    let codes = |failure| {
        ErrorCode::of_failure(failure)
            .map(ErrorCode::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows = [
        (Exit::Success, "success".to_owned()),
        (
            Exit::Unexpected,
            format!(
                "unexpected error: an answer that is not the admin API's, a server certificate \
                 that is not trusted (https://), or a request it does not accept ({})",
                codes(Failure::Other)
            ),
        ),
        (
            Exit::InvalidInput,
            format!(
                "invalid input: bad arguments, {}",
                codes(Failure::InvalidInput)
            ),
        ),
        (
            Exit::NotFound,
            format!("not found: {}", codes(Failure::NotFound)),
        ),
        (
            Exit::Conflict,
            format!("conflict: {}", codes(Failure::Conflict)),
        ),
        (
            Exit::Unavailable,
            format!(
                "unavailable: {}, HTTP 5xx, nothing listening, no answer in time",
                codes(Failure::Unavailable)
            ),
        ),
        (
            Exit::Unauthorized,
            format!(
                "authentication: {} (HTTP 401: missing or wrong credentials, or a domain the \
                 user may not manage)",
                codes(Failure::Unauthorized)
            ),
        ),
    ];
    let mut help = String::from("Exit codes:\n");
    for (exit, meaning) in rows {
        help.push_str(&wrapped(&format!("  {:<4}", exit as u8), &meaning));
    }
    help.push_str("watch and --watch (start, correct, retract) end with how the job ended:\n");
    help.push_str(&wrapped("  0   ", "FINISHED"));
    help.push_str(&wrapped(
        "  10  ",
        "ABORT_ADMIN (aborted by an administrator)",
    ));
    help.push_str(&wrapped("  11  ", "ABORT_ERROR (stopped by an error)"));
    help.trim_end().to_owned()
}

/// Longest line of [`codes_help`].
const HELP_WIDTH: usize = 92;

/// `text` after `lead`, wrapped at word boundaries and indented under its first line.
fn wrapped(lead: &str, text: &str) -> String {
    let indent = " ".repeat(lead.len() + 2);
    let mut out = lead.to_owned();
    let mut line_len = lead.len();
    for (n, word) in text.split_whitespace().enumerate() {
        if n > 0 && line_len + 1 + word.len() > HELP_WIDTH {
            out.push('\n');
            out.push_str(&indent);
            line_len = indent.len();
        } else if n > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.len();
    }
    out.push('\n');
    out
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table of error codes: `(code, HTTP status, exit code)` per row.
    fn readme_codes() -> Vec<(String, u16, u8)> {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("<!-- error codes:")
            .expect("the README has the error code table");
        let end = readme[start..]
            .find("<!-- end of error codes -->")
            .expect("the table's end mark");
        readme[start..start + end]
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let code = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                Some((
                    code.to_owned(),
                    cells[2].parse().ok()?,
                    cells[3].parse().ok()?,
                ))
            })
            .collect()
    }

    #[test]
    fn the_readme_lists_every_code_with_its_status_and_exit_code() {
        let expected: Vec<(String, u16, u8)> = ErrorCode::ALL
            .iter()
            .map(|code| {
                let exit = Exit::from(code.failure()) as u8;
                (code.as_str().to_owned(), code.http_status(), exit)
            })
            .collect();
        assert_eq!(readme_codes(), expected);
    }

    #[test]
    fn help_names_every_code_once() {
        let help = codes_help();
        for code in ErrorCode::ALL {
            let mentions = help
                .split(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .filter(|word| *word == code.as_str())
                .count();
            assert_eq!(mentions, 1, "{code} in\n{help}");
        }
    }
}
