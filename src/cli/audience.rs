//! Who a new broadcast (or a count) is for: every user of the domain, the accounts listed in
//! a file or on standard input (one bare JID a line), or a group configured for the domain.

use std::path::{Path, PathBuf};

use crate::admin::client::Audience;

use super::exit::CommandError;
use super::message::{STDIN, read_file};

/// The recipient flags of `start` and `count`.
#[derive(Debug, clap::Args)]
pub struct AudienceArgs {
    /// Send only to the accounts listed in FILE ('-': standard input): one bare JID of the
    /// domain a line (such as alice@example.com); empty lines and lines starting with '#' are
    /// skipped, repeats count once; at most 100000. Names that are not accounts are counted in
    /// the job and not sent to
    #[arg(long, value_name = "FILE", conflicts_with = "group")]
    pub recipients_file: Option<PathBuf>,
    /// Send only to the members of this group of the domain's configuration
    /// ([domains."DOMAIN".groups.NAME]), as they are when the job starts
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
}

impl AudienceArgs {
    /// Whether the list is read from standard input.
    pub fn reads_stdin(&self) -> bool {
        self.recipients_file.as_deref() == Some(Path::new(STDIN))
    }

    /// Reads the list, if one is given, checking that every line is a bare JID.
    pub fn read(&self) -> Result<Audience, CommandError> {
        if let Some(group) = &self.group {
            return Ok(Audience::Group(group.clone()));
        }
        let Some(path) = &self.recipients_file else {
            return Ok(Audience::AllUsers);
        };
        let text = read_file(path)?;
        parse_list(&text).map(Audience::Listed).map_err(|problem| {
            let source = if path.as_path() == Path::new(STDIN) {
                "standard input".to_owned()
            } else {
                path.display().to_string()
            };
            CommandError::usage(format!("{source}: {problem}"))
        })
    }
}

/// The bare JIDs of a list, one a line, in the order given; empty and `#` lines skipped.
fn parse_list(text: &str) -> Result<Vec<String>, String> {
    let mut list = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match jid::BareJid::new(line) {
            Ok(jid) if jid.node().is_some() => list.push(jid.to_string()),
            _ => {
                return Err(format!(
                    "line {}: {line:?} is not a bare JID such as alice@example.com",
                    index + 1
                ));
            }
        }
    }
    if list.is_empty() {
        return Err("the list names nobody".to_owned());
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_one_bare_jid_a_line() {
        let text = "# staff\nalice@example.com\n\n  bob@example.com  \r\nAlice@Example.com\n";
        assert_eq!(
            parse_list(text).unwrap(),
            ["alice@example.com", "bob@example.com", "alice@example.com"]
        );
        assert_eq!(
            parse_list("alice@example.com\nexample.com\n").unwrap_err(),
            "line 2: \"example.com\" is not a bare JID such as alice@example.com"
        );
        assert!(
            parse_list("a@example.com/phone")
                .unwrap_err()
                .starts_with("line 1:")
        );
        assert_eq!(
            parse_list("# nobody\n\n").unwrap_err(),
            "the list names nobody"
        );
    }
}
