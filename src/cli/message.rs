//! The subject and body of a new broadcast or correction: from a flag, from a file, or from
//! standard input (`-`), so that a multi-line notice needs no quoting tricks; their language
//! and the translations, each from a file.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::ArgGroup;

use super::exit::CommandError;
use crate::admin::client::ApiTranslation;

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

/// `--language` and `--translation` of `start` and `correct`.
#[derive(Debug, clap::Args)]
pub struct LanguageArgs {
    /// Language of the subject and body, a BCP 47 tag such as en or pt-BR (the message's
    /// xml:lang); needed with --translation
    #[arg(long, value_name = "TAG")]
    pub language: Option<String>,
    /// The message in another language, read from FILE ('-': standard input): an optional
    /// first line 'Subject: ...' and an empty line, then the body (final line breaks dropped);
    /// repeat for each language, in the order they are sent (at most 64)
    #[arg(long = "translation", value_name = "TAG=FILE", value_parser = parse_translation)]
    pub translations: Vec<(String, PathBuf)>,
}

/// `TAG=FILE` of `--translation`.
fn parse_translation(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((tag, file)) if !tag.is_empty() && !file.is_empty() => {
            Ok((tag.to_owned(), PathBuf::from(file)))
        }
        _ => Err("give a language tag and a file, such as de=notice.de.txt".to_owned()),
    }
}

/// The header line that gives a translation file's subject.
const SUBJECT_HEADER: &str = "Subject:";

impl LanguageArgs {
    /// Whether a translation is read from standard input.
    pub fn reads_stdin(&self) -> bool {
        let stdin = Path::new(STDIN);
        self.translations.iter().any(|(_, file)| file == stdin)
    }

    /// Reads each translation's file; `message` is the subject and body's, so that standard
    /// input is read once at most.
    pub fn read(&self, message: &MessageArgs) -> Result<Vec<ApiTranslation>, CommandError> {
        let stdin = Path::new(STDIN);
        let from_stdin = [&message.subject_file, &message.body_file]
            .into_iter()
            .filter(|file| file.as_deref() == Some(stdin))
            .count()
            + self
                .translations
                .iter()
                .filter(|(_, file)| file == stdin)
                .count();
        if from_stdin > 1 {
            return Err(CommandError::usage(
                "only one of --subject-file, --body-file and --translation can be standard \
                 input ('-')",
            ));
        }
        self.translations
            .iter()
            .map(|(language, file)| {
                let (subject, body) = split_subject(&read_file(file)?);
                Ok(ApiTranslation {
                    language: language.clone(),
                    message_subject: subject,
                    message_body: body,
                })
            })
            .collect()
    }
}

/// A translation file's subject and body: a first line `Subject: …` followed by an empty line
/// gives the subject (trimmed); otherwise the whole text is the body and the subject is empty.
fn split_subject(text: &str) -> (String, String) {
    let header = text
        .strip_prefix(SUBJECT_HEADER)
        .and_then(|rest| rest.split_once('\n'))
        .and_then(|(subject, rest)| {
            let rest = rest
                .strip_prefix("\r\n")
                .or_else(|| rest.strip_prefix('\n'))?;
            Some((subject.trim().to_owned(), rest.to_owned()))
        });
    header.unwrap_or_else(|| (String::new(), text.to_owned()))
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
    fn a_translation_file_may_start_with_its_subject() {
        assert_eq!(
            split_subject("Subject: Wartung \n\nHeute Abend.\nBis 23 Uhr."),
            ("Wartung".to_owned(), "Heute Abend.\nBis 23 Uhr.".to_owned())
        );
        assert_eq!(
            split_subject("Subject: Wartung\r\n\r\nHeute."),
            ("Wartung".to_owned(), "Heute.".to_owned())
        );
        // Without the empty line, or without the header, it is all body.
        assert_eq!(
            split_subject("Subject: x\nHeute."),
            (String::new(), "Subject: x\nHeute.".to_owned())
        );
        assert_eq!(
            split_subject("Heute Abend."),
            (String::new(), "Heute Abend.".to_owned())
        );
        // A body that starts with the header's words follows an empty subject.
        assert_eq!(
            split_subject("Subject:\n\nSubject: nothing"),
            (String::new(), "Subject: nothing".to_owned())
        );
    }

    #[test]
    fn a_translation_is_a_tag_and_a_file() {
        assert_eq!(
            parse_translation("pt-BR=notice.pt.txt"),
            Ok(("pt-BR".to_owned(), PathBuf::from("notice.pt.txt")))
        );
        assert_eq!(
            parse_translation("de=-"),
            Ok(("de".to_owned(), PathBuf::from("-")))
        );
        for bad in ["de", "=file", "de="] {
            assert!(parse_translation(bad).is_err(), "{bad}");
        }
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
