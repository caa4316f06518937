//! The query text before it is parsed: one linear pass that measures how deeply brackets nest
//! (async-graphql's parser recurses once per level, so a deep document is refused before it
//! reaches the parser) and rewrites the string escapes the parser does not know.
//!
//! GraphQL (October 2021) allows a supplementary character as a surrogate pair of fixed-width
//! escapes (`"\uD83D\uDE00"`), and the current draft adds variable-width escapes
//! (`"\u{1F600}"`); async-graphql's parser refuses both. Inside ordinary string literals only
//! (not in block strings, where a backslash is literal, nor in comments) a pair or a
//! supplementary variable-width escape becomes the character itself, and a variable-width escape
//! of a character of the Basic Multilingual Plane becomes its fixed-width form, which the parser
//! decodes (so `\u{22}` stays a quote inside the string). A lone surrogate is refused.
//!
//! A rewritten escape is shorter than its text, so error columns after it on the same line shift
//! left by the difference.

use std::borrow::Cow;

/// Deepest nesting of `{`, `[` and `(` accepted in a query. The broadcast queries nest five
/// levels (`(` of the variables, then selections); the parser itself stops at 64 selection
/// sets but has no bound on nested list values.
pub const MAX_NESTING: usize = 32;

/// Why a query text was refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// A surrogate escape without its other half.
    #[error(
        "Invalid escape {escape} at line {line}, column {column}: a lone surrogate is not a character"
    )]
    LoneSurrogate {
        escape: String,
        line: usize,
        column: usize,
    },
    /// A variable-width escape that is not a Unicode scalar value.
    #[error(
        "Invalid escape {escape} at line {line}, column {column}: expected \\u{{…}} with 1 to 6 hex digits naming a character"
    )]
    InvalidEscape {
        escape: String,
        line: usize,
        column: usize,
    },
    /// Brackets nest deeper than [`MAX_NESTING`].
    #[error("Query nests {depth} levels of brackets, more than the {MAX_NESTING} accepted")]
    TooDeep { depth: usize },
}

/// What the pass found: the text to parse and how deeply its brackets nest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source<'a> {
    pub text: Cow<'a, str>,
    pub nesting: usize,
}

/// Rewrites the escapes of `query` and measures its nesting; refuses a lone surrogate, an
/// invalid variable-width escape and nesting deeper than [`MAX_NESTING`].
pub fn prepare(query: &str) -> Result<Source<'_>, SourceError> {
    let bytes = query.as_bytes();
    let mut out: Option<String> = None;
    // Start of the text not yet copied into `out`.
    let mut copied = 0;
    let mut depth = 0usize;
    let mut nesting = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i = (i + 3).min(bytes.len());
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && !matches!(bytes[i], b'"' | b'\n' | b'\r') {
                    if bytes[i] != b'\\' {
                        i += 1;
                        continue;
                    }
                    let escape = Escape::read(query, i)?;
                    if let Some(replacement) = escape.replacement {
                        let out = out.get_or_insert_with(|| String::with_capacity(query.len()));
                        out.push_str(&query[copied..i]);
                        out.push_str(&replacement);
                        copied = escape.end;
                    }
                    i = escape.end;
                }
                i += 1;
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                nesting = nesting.max(depth);
                if depth > MAX_NESTING {
                    return Err(SourceError::TooDeep { depth });
                }
                i += 1;
            }
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    let text = match out {
        Some(mut out) => {
            out.push_str(&query[copied..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(query),
    };
    Ok(Source { text, nesting })
}

/// One backslash escape inside a string literal.
struct Escape {
    /// Byte offset just after the escape.
    end: usize,
    /// What to write instead, if the parser would not accept the escape as written.
    replacement: Option<String>,
}

impl Escape {
    /// Reads the escape whose backslash is at `at`.
    fn read(query: &str, at: usize) -> Result<Escape, SourceError> {
        let bytes = query.as_bytes();
        let unchanged = |length: usize| {
            Ok(Escape {
                // Never split a character: the byte after a backslash may start one.
                end: next_boundary(query, (at + length).min(bytes.len())),
                replacement: None,
            })
        };
        if bytes.get(at + 1) != Some(&b'u') {
            return unchanged(2);
        }
        if bytes.get(at + 2) == Some(&b'{') {
            return Self::variable_width(query, at);
        }
        let Some(high) = hex4(bytes, at + 2) else {
            // Not a fixed-width escape: the parser reports it.
            return unchanged(2);
        };
        let lone = || {
            let (line, column) = position(query, at);
            SourceError::LoneSurrogate {
                escape: query[at..at + 6].to_owned(),
                line,
                column,
            }
        };
        match high {
            0xD800..=0xDBFF => {
                let low = (bytes.get(at + 6) == Some(&b'\\') && bytes.get(at + 7) == Some(&b'u'))
                    .then(|| hex4(bytes, at + 8))
                    .flatten()
                    .filter(|low| (0xDC00..=0xDFFF).contains(low))
                    .ok_or_else(lone)?;
                let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                let character = char::from_u32(code).ok_or_else(lone)?;
                Ok(Escape {
                    end: at + 12,
                    replacement: Some(character.to_string()),
                })
            }
            0xDC00..=0xDFFF => Err(lone()),
            _ => unchanged(6),
        }
    }

    /// `\u{…}`: one to six hex digits naming a Unicode scalar value.
    fn variable_width(query: &str, at: usize) -> Result<Escape, SourceError> {
        let bytes = query.as_bytes();
        let digits = at + 3;
        let close = bytes[digits..]
            .iter()
            .take(7)
            .position(|&b| b == b'}')
            .map(|offset| digits + offset);
        let invalid = |end: usize| {
            let (line, column) = position(query, at);
            let end = next_boundary(query, end.min(bytes.len()));
            SourceError::InvalidEscape {
                escape: query[at..end].to_owned(),
                line,
                column,
            }
        };
        let Some(close) = close else {
            return Err(invalid(digits + 1));
        };
        let hex = &query[digits..close];
        let code = (!hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(hex, 16).ok())
            .flatten();
        let Some(code) = code else {
            return Err(invalid(close + 1));
        };
        if (0xD800..=0xDFFF).contains(&code) {
            let (line, column) = position(query, at);
            return Err(SourceError::LoneSurrogate {
                escape: query[at..=close].to_owned(),
                line,
                column,
            });
        }
        let character = char::from_u32(code).ok_or_else(|| invalid(close + 1))?;
        let replacement = if code <= 0xFFFF {
            format!("\\u{code:04X}")
        } else {
            character.to_string()
        };
        Ok(Escape {
            end: close + 1,
            replacement: Some(replacement),
        })
    }
}

/// The value of four hex digits at `at`, if there are four.
fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + 4)?;
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// The first character boundary at or after `at`.
fn next_boundary(text: &str, mut at: usize) -> usize {
    while at < text.len() && !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// Line and column (both from 1, columns in characters) of byte offset `at`.
fn position(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |newline| newline + 1);
    (line, before[start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(query: &str) -> String {
        prepare(query).unwrap().text.into_owned()
    }

    #[test]
    fn surrogate_pairs_and_variable_width_escapes_become_characters() {
        assert_eq!(rewritten(r#"{ a(x: "\uD83D\uDE00") }"#), "{ a(x: \"😀\") }");
        assert_eq!(
            rewritten(r#"{ a(x: "\ud83d\ude00!") }"#),
            "{ a(x: \"😀!\") }"
        );
        assert_eq!(rewritten(r#"{ a(x: "\u{1F600}") }"#), "{ a(x: \"😀\") }");
        // Characters of the BMP keep an escape the parser decodes: a quote stays inside.
        assert_eq!(rewritten(r#"{ a(x: "\u{22}") }"#), r#"{ a(x: "\u0022") }"#);
        assert_eq!(
            rewritten(r#"{ a(x: "\u{e9}\u00e9") }"#),
            r#"{ a(x: "\u00E9\u00e9") }"#
        );
    }

    #[test]
    fn text_without_such_escapes_is_not_copied() {
        let query = r#"{ a(x: "\u00e9 \n \\ \" é") }"#;
        assert!(matches!(prepare(query).unwrap().text, Cow::Borrowed(_)));
    }

    #[test]
    fn only_string_literals_are_rewritten() {
        // An escaped backslash followed by u is not an escape.
        let escaped = r#"{ a(x: "\\uD83D\\uDE00") }"#;
        assert_eq!(rewritten(escaped), escaped);
        // An escaped quote does not end the string.
        assert_eq!(
            rewritten(r#"{ a(x: "\"\uD83D\uDE00\"") }"#),
            "{ a(x: \"\\\"😀\\\"\") }"
        );
        // Block strings take backslashes literally, including after an escaped triple quote.
        let block = r#"{ a(x: """\uD83D \""" \u{1F600}""") }"#;
        assert_eq!(rewritten(block), block);
        // Comments, even with quotes in them, are left alone.
        let comment = "# say \"\\uD83D\" \n{ a(x: \"\\u{1F600}\") } # \"\\u{D800}";
        assert_eq!(
            rewritten(comment),
            "# say \"\\uD83D\" \n{ a(x: \"😀\") } # \"\\u{D800}"
        );
        // A string after a block string is still a string.
        assert_eq!(
            rewritten(r#"{ a(x: """q""", y: "\u{1F600}") }"#),
            r#"{ a(x: """q""", y: "😀") }"#
        );
    }

    #[test]
    fn rewritten_queries_parse_to_the_character() {
        let query = rewritten(r#"{ a(x: "\uD83D\uDE00\u{1F600}\u{22}") }"#);
        let document = async_graphql::parser::parse_query(&query).unwrap();
        let text = format!("{:?}", document);
        assert!(text.contains("😀😀\\\""), "{text}");
    }

    #[test]
    fn lone_surrogates_and_bad_escapes_are_refused() {
        for (query, column) in [
            (r#"{ a(x: "\uD83D") }"#, 9),
            (r#"{ a(x: "\uD83Dx") }"#, 9),
            (r#"{ a(x: "\uDE00\uD83D") }"#, 9),
            (r#"{ a(x: "\uD83D\u0041") }"#, 9),
            (r#"{ a(x: "é\u{D800}") }"#, 10),
        ] {
            match prepare(query) {
                Err(SourceError::LoneSurrogate {
                    line: 1, column: c, ..
                }) => assert_eq!(c, column, "{query}"),
                other => panic!("{query}: {other:?}"),
            }
        }
        for query in [
            r#"{ a(x: "\u{}") }"#,
            r#"{ a(x: "\u{110000}") }"#,
            r#"{ a(x: "\u{1234567}") }"#,
            r#"{ a(x: "\u{12"#,
            r#"{ a(x: "\u{zz}") }"#,
        ] {
            assert!(
                matches!(prepare(query), Err(SourceError::InvalidEscape { .. })),
                "{query}"
            );
        }
        let message = prepare(r#"{ a(x: "\uD83D") }"#).unwrap_err().to_string();
        assert!(message.contains("lone surrogate"), "{message}");
    }

    #[test]
    fn nesting_is_measured_outside_strings_and_comments() {
        assert_eq!(prepare("{ a { b(x: [[1]]) } }").unwrap().nesting, 5);
        assert_eq!(prepare("{ a(x: \"{{{{\") } # {{{{").unwrap().nesting, 2);
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_NESTING + 1),
            "]".repeat(MAX_NESTING + 1)
        );
        assert_eq!(
            prepare(&deep),
            Err(SourceError::TooDeep {
                depth: MAX_NESTING + 1
            })
        );
    }
}
