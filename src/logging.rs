//! What the log looks like: one line per event on stderr, whatever the values in it.
//!
//! Values logged here come from requests (a job's name, a domain) and from databases (an error
//! text), so a value may hold a line break that would forge a second log line, terminal escape
//! sequences, or 200 KB of text. Every field value and message is therefore written through
//! [`SafeFields`]: control characters (and the Unicode line and paragraph separators) are
//! escaped as `\n`, `\r`, `\t` or `\u{…}`, and each value is cut after [`MAX_VALUE_CHARS`]
//! characters with a note of how much was left out.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// Longest value written whole; a longer one is cut there and marked.
pub const MAX_VALUE_CHARS: usize = 200;

/// The filter when `XMPP_BROADCAST_LOG` is not set.
const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Installs the process' logger: stderr, filtered by `XMPP_BROADCAST_LOG` (tracing's
/// `EnvFilter` syntax), colours only on a terminal, values through [`SafeFields`].
pub fn init() {
    let filter = EnvFilter::try_from_env("XMPP_BROADCAST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .fmt_fields(SafeFields)
        .init();
}

/// Formats an event's fields as `message key=value …`, each value escaped and cut.
#[derive(Debug, Default, Clone, Copy)]
pub struct SafeFields;

impl<'writer> FormatFields<'writer> for SafeFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = SafeVisitor {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct SafeVisitor<'writer> {
    writer: Writer<'writer>,
    result: fmt::Result,
    first: bool,
}

impl SafeVisitor<'_> {
    fn write(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = (|| {
            self.writer.write_str(separator)?;
            if field.name() != "message" {
                write!(self.writer, "{}=", field.name())?;
            }
            let mut escaped = Escaped::new(&mut self.writer);
            escaped.write_fmt(value)?;
            escaped.finish()
        })();
    }
}

impl Visit for SafeVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else {
            self.write(field, format_args!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

/// A writer that escapes control characters and stops after [`MAX_VALUE_CHARS`] characters,
/// counting what it left out.
struct Escaped<'a, W: fmt::Write> {
    inner: &'a mut W,
    written: usize,
    left_out: usize,
}

impl<'a, W: fmt::Write> Escaped<'a, W> {
    fn new(inner: &'a mut W) -> Self {
        Escaped {
            inner,
            written: 0,
            left_out: 0,
        }
    }

    /// Marks a cut value with the number of characters left out.
    fn finish(self) -> fmt::Result {
        if self.left_out > 0 {
            write!(self.inner, "…[{} more characters]", self.left_out)?;
        }
        Ok(())
    }
}

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for c in text.chars() {
            if self.written >= MAX_VALUE_CHARS {
                self.left_out += 1;
                continue;
            }
            self.written += 1;
            match c {
                '\n' => self.inner.write_str("\\n")?,
                '\r' => self.inner.write_str("\\r")?,
                '\t' => self.inner.write_str("\\t")?,
                c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                    write!(self.inner, "\\u{{{:x}}}", u32::from(c))?
                }
                c => self.inner.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the logger writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn logged(log: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(SafeFields)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_line_break_in_a_value_cannot_forge_a_line() {
        let name = "notice\n2026-11-30T00:00:00Z  INFO forged: broadcast finished";
        let text =
            logged(|| tracing::info!(name = %name, debug = ?name, "broadcast started\r\u{1b}[31m"));
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains(r"broadcast started\r\u{1b}[31m name=notice\n2026"),
            "{text}"
        );
        assert!(text.contains(r#"debug="notice\n2026"#), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
    }

    #[test]
    fn a_long_value_is_cut_and_marked() {
        let name = "x".repeat(200_000);
        let text = logged(|| tracing::info!(name = %name, rate = 5, "broadcast started"));
        assert_eq!(text.lines().count(), 1);
        let expected = format!("name={}…[199800 more characters] rate=5", "x".repeat(200));
        assert!(text.contains(&expected), "{}", &text[..400.min(text.len())]);
        assert!(text.len() < 1000, "{} bytes logged", text.len());
    }

    #[test]
    fn separators_and_other_controls_are_escaped() {
        let text = logged(|| tracing::warn!(value = %"a\u{2028}b\u{0}c\u{7f}", "x"));
        assert!(text.contains(r"value=a\u{2028}b\u{0}c\u{7f}"), "{text}");
    }
}
