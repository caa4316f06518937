//! The subject and body of a new broadcast or correction: from a flag, from a file, or from
//! standard input (`-`), so that a multi-line notice needs no quoting tricks.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::ArgGroup;

use super::exit::CommandError;

/// The file name that means standard input.
pub const STDIN: &str = "-";

/// The subject and body flags of `start` and `correct`; the body is required.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("body_source").required(true).args(["body", "body_file"])))]
pub struct MessageArgs {
    /// Subject of the message (default: none)
    #[arg(long, conflicts_with = "subject_file")]
    pub subject: Option<String>,
    /// Read the subject from FILE ('-': standard input); final line breaks are dropped
    #[arg(long, value_name = "FILE")]
    pub subject_file: Option<PathBuf>,
    /// Body of the message (1-16000 characters)
    #[arg(long)]
    pub body: Option<String>,
    /// Read the body from FILE ('-': standard input); final line breaks are dropped
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
}

/// A message's texts as given: the subject only if one was.
pub struct Texts {
    pub subject: Option<String>,
    pub body: String,
}

impl MessageArgs {
    /// Whether the subject or the body is read from standard input.
    pub fn reads_stdin(&self) -> bool {
        let stdin = Some(Path::new(STDIN));
        self.subject_file.as_deref() == stdin || self.body_file.as_deref() == stdin
    }

    /// Reads the subject and the body from where they were given; at most one of them may be
    /// standard input.
    pub fn read(&self) -> Result<Texts, CommandError> {
        let stdin = Path::new(STDIN);
        if self.subject_file.as_deref() == Some(stdin) && self.body_file.as_deref() == Some(stdin) {
            return Err(CommandError::usage(
                "only one of --subject-file and --body-file can be standard input ('-')",
            ));
        }
        let subject = read_text(self.subject.as_deref(), self.subject_file.as_deref())?;
        let body = read_text(self.body.as_deref(), self.body_file.as_deref())?;
        Ok(Texts {
            subject,
            body: body.unwrap_or_default(),
        })
    }
}

/// The text given inline or in a file (`-`: standard input); `None` when neither is given.
/// Line breaks at the end of a file are dropped, as `$(cat FILE)` does; inline text is kept
/// as it is.
pub fn read_text(
    inline: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<String>, CommandError> {
    match (inline, file) {
        (Some(text), _) => Ok(Some(text.to_owned())),
        (None, Some(path)) => read_file(path).map(Some),
        (None, None) => Ok(None),
    }
}

pub fn read_file(path: &Path) -> Result<String, CommandError> {
    let bytes = if path == Path::new(STDIN) {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|err| CommandError::usage(format!("cannot read standard input: {err}")))?;
        bytes
    } else {
        std::fs::read(path)
            .map_err(|err| CommandError::usage(format!("cannot read {}: {err}", path.display())))?
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| CommandError::usage(format!("{} is not UTF-8 text", describe(path))))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

fn describe(path: &Path) -> String {
    if path == Path::new(STDIN) {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_text_wins_and_is_kept_as_given() {
        let text = read_text(Some("two\nlines\n"), None).unwrap();
        assert_eq!(text.as_deref(), Some("two\nlines\n"));
        assert_eq!(read_text(None, None).unwrap(), None);
    }

    #[test]
    fn a_file_loses_its_final_line_breaks_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notice.txt");
        std::fs::write(&path, "  Maintenance\r\n\nat 22:00 \n\n").unwrap();
        let text = read_text(None, Some(&path)).unwrap();
        assert_eq!(text.as_deref(), Some("  Maintenance\r\n\nat 22:00 "));
    }

    #[test]
    fn unreadable_or_binary_files_are_invalid_input() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_text(None, Some(&dir.path().join("missing"))).unwrap_err();
        assert!(missing.message.starts_with("cannot read "), "{missing}");
        let binary = dir.path().join("binary");
        std::fs::write(&binary, [0xff, 0xfe]).unwrap();
        let err = read_text(None, Some(&binary)).unwrap_err();
        assert!(err.message.ends_with("is not UTF-8 text"), "{err}");
        assert_eq!(err.exit, super::super::exit::Exit::InvalidInput);
    }
}
