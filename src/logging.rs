//! What the log looks like: one line per event on stderr, whatever the values in it.
//!
//! Values logged here come from requests (a job's name, a domain) and from databases (an error
//! text), so a value may hold a line break that would forge a second log line, terminal escape
//! sequences, or 200 KB of text. Every field value and message is therefore written through
//! [`SafeFields`]: control characters (and the Unicode line and paragraph separators) are
//! escaped as `\n`, `\r`, `\t` or `\u{…}`, and each value is cut after [`MAX_VALUE_CHARS`]
//! characters with a note of how much was left out.
//!
//! Two formats ([`LogFormat`]): text, as above, and JSON — one object per line with
//! `timestamp`, `level`, `target`, `message`, the event's fields and those of the spans it is
//! in (a job's `job_id` and `domain`), each value cut as in the text. JSON's own escaping keeps
//! every control character inside its string, so no value can end the line.

use std::fmt::{self, Write as _};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

pub use crate::config::LogFormat;

/// Longest value written whole; a longer one is cut there and marked.
pub const MAX_VALUE_CHARS: usize = 200;

/// The filter when `XMPP_BROADCAST_LOG` is not set.
const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Installs the process' logger: stderr, filtered by `XMPP_BROADCAST_LOG` (tracing's
/// `EnvFilter` syntax); text with colours only on a terminal, values through [`SafeFields`],
/// or JSON lines ([`JsonLines`]).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("XMPP_BROADCAST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second logger cannot be installed (tests run several commands in one process).
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .fmt_fields(SafeFields)
            .try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .try_init(),
    };
}

/// The log format `XMPP_BROADCAST_LOG_FORMAT` asks for (text if unset); for commands that
/// read no config. An unknown value is an error naming the variable.
pub fn format_from_env() -> Result<LogFormat, crate::config::ConfigError> {
    match std::env::var(LogFormat::ENV) {
        Ok(value) => LogFormat::parse(LogFormat::ENV, &value),
        Err(_) => Ok(LogFormat::Text),
    }
}

/// Formats fields as one JSON object, each value cut as [`SafeFields`] cuts it; used for the
/// fields of spans, which [`JsonLines`] merges into each event's object.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = JsonVisitor::default();
        fields.record(&mut visitor);
        write!(writer, "{}", Value::Object(visitor.0))
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut visitor = JsonVisitor(parse_object(&current.fields));
        fields.record(&mut visitor);
        current.fields = Value::Object(visitor.0).to_string();
        Ok(())
    }
}

fn parse_object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// One JSON object per event and line: `timestamp` (UTC, RFC 3339), `level`, `target`,
/// `message`, the fields of the spans the event is in (outermost first), then the event's own.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'writer> FormatFields<'writer> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut object = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                    object.extend(parse_object(fields));
                }
            }
        }
        let mut visitor = JsonVisitor(Map::new());
        event.record(&mut visitor);
        object.extend(visitor.0);
        let metadata = event.metadata();
        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        object.insert("timestamp".into(), Value::String(timestamp));
        object.insert("level".into(), Value::String(metadata.level().to_string()));
        object.insert("target".into(), Value::String(metadata.target().to_owned()));
        writeln!(writer, "{}", Value::Object(object))
    }
}

/// Collects fields as JSON values: numbers and booleans as such, everything else as a string
/// cut after [`MAX_VALUE_CHARS`] characters.
#[derive(Default)]
struct JsonVisitor(Map<String, Value>);

impl JsonVisitor {
    fn text(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        let mut text = String::new();
        let mut cut = Escaped::cut_only(&mut text);
        let _ = cut.write_fmt(value);
        let _ = cut.finish();
        self.0.insert(field.name().to_owned(), Value::String(text));
    }
}

impl Visit for JsonVisitor {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, format_args!("{value:?}"));
    }
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

/// A writer that escapes control characters (unless JSON does it) and stops after
/// [`MAX_VALUE_CHARS`] characters, counting what it left out.
struct Escaped<'a, W: fmt::Write> {
    inner: &'a mut W,
    escape: bool,
    written: usize,
    left_out: usize,
}

impl<'a, W: fmt::Write> Escaped<'a, W> {
    fn new(inner: &'a mut W) -> Self {
        Escaped {
            inner,
            escape: true,
            written: 0,
            left_out: 0,
        }
    }

    /// Keeps the characters as they are (for a JSON string, which escapes them itself).
    fn cut_only(inner: &'a mut W) -> Self {
        Escaped {
            escape: false,
            ..Escaped::new(inner)
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
            if !self.escape {
                self.inner.write_char(c)?;
                continue;
            }
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

    /// What the JSON logger writes for `log`.
    fn logged_json(log: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    /// Each line of `text` parsed as a JSON object.
    fn objects(text: &str) -> Vec<Map<String, Value>> {
        text.lines()
            .map(|line| match serde_json::from_str(line) {
                Ok(Value::Object(object)) => object,
                other => panic!("not a JSON object: {line:?} ({other:?})"),
            })
            .collect()
    }

    #[test]
    fn json_lines_are_one_object_per_event_with_the_spans_fields() {
        let name = "notice\n{\"forged\": true}\r\u{1b}[31m\u{2028}\u{0}\"}";
        let text = logged_json(|| {
            let span = tracing::info_span!("job", job_id = 7_i64, domain = %"example.com");
            let _entered = span.enter();
            tracing::info!(name = %name, processed = 3_u64, done = true, error = ?name, "broadcast started");
            tracing::warn!(job_id = 8_i64, "the event's own field wins");
        });
        assert_eq!(text.lines().count(), 2, "{text}");
        let objects = objects(&text);
        let first = &objects[0];
        assert_eq!(first["message"], "broadcast started");
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["job_id"], 7);
        assert_eq!(first["domain"], "example.com");
        assert_eq!(first["name"], name);
        assert_eq!(first["processed"], 3);
        assert_eq!(first["done"], true);
        assert_eq!(first["error"], format!("{name:?}"));
        assert!(first["target"].as_str().unwrap().contains("logging"));
        chrono::DateTime::parse_from_rfc3339(first["timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(objects[1]["job_id"], 8);
        assert_eq!(objects[1]["domain"], "example.com");
        assert!(!text.contains('\u{1b}'), "{text}");
    }

    #[test]
    fn a_long_json_value_is_cut_and_marked() {
        let name = "é".repeat(200_000);
        let text = logged_json(|| tracing::info!(name = %name, "broadcast started"));
        let objects = objects(&text);
        let expected = format!("{}…[199800 more characters]", "é".repeat(200));
        assert_eq!(objects[0]["name"], expected);
        assert!(text.len() < 1000, "{} bytes logged", text.len());
    }

    #[test]
    fn a_span_field_recorded_later_is_kept() {
        let text = logged_json(|| {
            let span = tracing::info_span!("job", job_id = 1_i64, domain = tracing::field::Empty);
            span.record("domain", "example.org");
            let _entered = span.enter();
            tracing::info!("worker started");
        });
        let objects = objects(&text);
        assert_eq!(objects[0]["domain"], "example.org");
        assert_eq!(objects[0]["job_id"], 1);
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
