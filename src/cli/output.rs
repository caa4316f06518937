//! What the operator commands print: aligned text for people, JSON for scripts.
//!
//! The JSON is the API's own objects (`Broadcast`, `BroadcastMutationResult`,
//! `BroadcastRecipientsPreview`), pretty-printed, or one per line where a command prints a
//! stream (`watch`).

use std::io::{ErrorKind, Write as _};

use serde::Serialize;

use crate::admin::client::{ApiJob, ExecutionState, JobKind, RecipientsPreview};

/// Longest job name shown in a table; `show` prints it whole.
const TABLE_NAME_CHARS: usize = 80;

/// What a command is about to create: a broadcast, or a follow-up of job `amends`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planned {
    Broadcast,
    Correction { amends: i64 },
    Retraction { amends: i64 },
}

impl Planned {
    /// The job it amends, if it is a follow-up.
    pub fn amends(self) -> Option<i64> {
        match self {
            Planned::Broadcast => None,
            Planned::Correction { amends } | Planned::Retraction { amends } => Some(amends),
        }
    }

    /// The command that creates it.
    fn command(self) -> &'static str {
        match self {
            Planned::Broadcast => "start",
            Planned::Correction { .. } => "correct",
            Planned::Retraction { .. } => "retract",
        }
    }

    /// `a broadcast started now`, `a correction of job 7 sent now`.
    fn described(self) -> String {
        match self {
            Planned::Broadcast => "a broadcast started now".to_owned(),
            Planned::Correction { amends } => format!("a correction of job {amends} sent now"),
            Planned::Retraction { amends } => format!("a retraction of job {amends} sent now"),
        }
    }

    /// What follows the new job's id in `started job 12 on example.com…`: nothing for a
    /// broadcast, `, correcting job 7` for a follow-up.
    pub fn note(self) -> String {
        match self {
            Planned::Broadcast => String::new(),
            Planned::Correction { amends } => format!(", correcting job {amends}"),
            Planned::Retraction { amends } => format!(", retracting job {amends}"),
        }
    }
}

/// Why a dry run of `planned` fails: it would reach nobody.
pub fn nobody(domain: &str, planned: Planned) -> String {
    let why = match planned {
        Planned::Broadcast => format!("{domain} has no users"),
        Planned::Correction { amends } | Planned::Retraction { amends } => {
            format!("job {amends} reached nobody")
        }
    };
    format!("{why}: {} would fail with no_recipients", planned.command())
}

/// Writes one line on stdout. When the reader has gone away (a closed pipe), the command ends
/// at once with exit code 0: the reader has what it wanted, as with `head`. Any other write
/// error (a full disk) ends it with exit code 1 and a message.
pub fn write_line(line: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(err) if err.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "error: cannot write the output: {err}");
            std::process::exit(1);
        }
    }
}

/// Prints `value` on stdout: as JSON with `--json`, else as the text `describe` makes of it.
pub fn emit<T: Serialize>(json: bool, value: &T, describe: impl FnOnce(&T) -> String) {
    if json {
        print_json(value);
    } else {
        out!("{}", describe(value));
    }
}

/// Prints `value` as indented JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) {
    out!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// `value` as JSON on one line.
pub fn json_line<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Jobs as a table, one line per job, the name last.
pub fn jobs_table(jobs: &[ApiJob]) -> String {
    let header = [
        "ID",
        "STATE",
        "PROCESSED",
        "RATE",
        "CREATED",
        "KIND",
        "AMENDS",
        "NAME",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 8]> = jobs
        .iter()
        .map(|job| {
            [
                job.id.to_string(),
                job.status.to_string(),
                match job.recipients_counted {
                    true => format!("{}/{}", job.recipients_processed, job.recipient_count),
                    false => format!("{}/?", job.recipients_processed),
                },
                format!("{}/s", job.message_rate),
                job.create_timestamp.clone(),
                job.kind.to_string(),
                job.amends
                    .map_or_else(|| "-".to_owned(), |id| id.to_string()),
                shortened(&one_line(&job.name), TABLE_NAME_CHARS),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|cell| cell.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, width)| padded(cell, width))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every field of a job, one per line, the body last and indented.
pub fn job_details(job: &ApiJob) -> String {
    let none = || "-".to_owned();
    let mut fields = vec![
        ("id", job.id.to_string()),
        ("name", one_line(&job.name)),
        ("domain", job.domain.clone()),
        ("state", job.status.to_string()),
        ("kind", kind(job)),
        ("recipients", progress(job)),
        ("audience", audience(job)),
        ("rate", format!("{} messages/s", job.message_rate)),
        ("sender", job.sender_jid.clone()),
        ("owner node", job.owner_node.clone()),
        ("created", job.create_timestamp.clone()),
        ("started", job.start_timestamp.clone().unwrap_or_else(none)),
        ("stopped", job.stop_timestamp.clone().unwrap_or_else(none)),
    ];
    if let Some(at) = &job.start_at {
        fields.push(("scheduled for", at.clone()));
    }
    if let Some(at) = &job.paused_at {
        fields.push(("paused", at.clone()));
    }
    if let Some(reason) = &job.abortion_reason {
        fields.push(("abortion reason", one_line(reason)));
    }
    if let Some(reason) = &job.waiting_reason {
        fields.push(("waiting", one_line(reason)));
    }
    if job.language.is_some() || !job.translations.is_empty() {
        let mut languages = vec![one_line(job.language.as_deref().unwrap_or("-"))];
        languages.extend(job.translations.iter().map(|t| one_line(&t.language)));
        fields.push(("languages", languages.join(", ")));
    }
    fields.push(("subject", one_line(&job.message_subject)));
    let mut text: String = fields
        .into_iter()
        .map(|(label, value)| format!("{:<16}{value}\n", format!("{label}:")))
        .collect();
    let indented = |text: &mut String, label: &str, body: &str| {
        text.push_str(label);
        text.push_str(":\n");
        for line in body.lines() {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
    };
    indented(&mut text, "body", &job.message_body);
    for translation in &job.translations {
        let language = one_line(&translation.language);
        if !translation.message_subject.is_empty() {
            let subject = one_line(&translation.message_subject);
            text.push_str(&format!("subject ({language}): {subject}\n"));
        }
        indented(
            &mut text,
            &format!("body ({language})"),
            &translation.message_body,
        );
    }
    text.trim_end().to_owned()
}

/// `every user`, `group staff`, `listed accounts (3 names were not accounts: a@…, …)`.
pub fn audience(job: &ApiJob) -> String {
    match job.recipient_group.as_str() {
        "LISTED" => match (job.unknown_recipient_count, &job.unknown_recipients) {
            (Some(count), Some(first)) if count > 0 => {
                let more = if count > first.len() as i64 {
                    ", ..."
                } else {
                    ""
                };
                format!(
                    "listed accounts ({count} listed name(s) were not accounts: {}{more})",
                    first.join(", ")
                )
            }
            _ => "listed accounts".to_owned(),
        },
        "GROUP" => format!("group {}", job.group.as_deref().unwrap_or("?")),
        "ALL_USERS_IN_DOMAIN" => "every user of the domain".to_owned(),
        other => other.to_owned(),
    }
}

/// `BROADCAST`, or what a follow-up does to which job: `CORRECTION of job 7`.
pub fn kind(job: &ApiJob) -> String {
    match (job.kind, job.amends) {
        (JobKind::Broadcast, _) | (_, None) => job.kind.to_string(),
        (kind, Some(amends)) => format!("{kind} of job {amends}"),
    }
}

/// `processed/count processed (percent)`.
pub fn progress(job: &ApiJob) -> String {
    if !job.recipients_counted {
        let why = match job.execution_state {
            ExecutionState::Running => "recipients still being counted",
            _ => "recipients not counted: the job ended first",
        };
        return format!("{} processed ({why})", job.recipients_processed);
    }
    let percent = if job.recipient_count > 0 {
        // In i128: whatever the API answers, the percentage cannot overflow.
        i128::from(job.recipients_processed) * 100 / i128::from(job.recipient_count)
    } else {
        100
    };
    format!(
        "{}/{} processed ({percent}%)",
        job.recipients_processed, job.recipient_count
    )
}

/// Who `planned` would reach: the count, then the sample one per line.
pub fn preview_text(preview: &RecipientsPreview, planned: Planned) -> String {
    let RecipientsPreview {
        domain,
        recipient_count,
        sample,
        unknown_recipient_count,
        unknown_recipients,
    } = preview;
    let what = planned.described();
    let unknown = match (unknown_recipient_count, unknown_recipients) {
        (Some(count), Some(first)) if *count > 0 => {
            let mut text = format!("\n{count} listed name(s) are not accounts of {domain}:");
            for jid in first {
                text.push_str("\n  ");
                text.push_str(jid);
            }
            if *count > first.len() as i64 {
                text.push_str("\n  ...");
            }
            text
        }
        _ => String::new(),
    };
    if *recipient_count == 0 {
        let command = planned.command();
        return format!(
            "no user of {domain} would receive {what}: {command} would fail with no_recipients{unknown}"
        );
    }
    let users = if *recipient_count == 1 {
        "user"
    } else {
        "users"
    };
    let mut text = format!("{recipient_count} {users} of {domain} would receive {what}");
    if !sample.is_empty() {
        text.push_str(&format!("; the first {}:", sample.len()));
        for jid in sample {
            text.push_str("\n  ");
            text.push_str(jid);
        }
    }
    text.push_str(&unknown);
    text
}

/// A duration for people: `45s`, `3m05s`, `2h07m`.
pub fn duration(seconds: f64) -> String {
    let seconds = seconds.max(0.0).round() as u64;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

/// `cell` followed by spaces up to `width` characters (formatting widths stop at 65,535).
fn padded(cell: &str, width: usize) -> String {
    let fill = width.saturating_sub(cell.chars().count());
    format!("{cell}{}", " ".repeat(fill))
}

/// `text` cut to `max` characters, the cut marked with `…`.
fn shortened(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `text` with line breaks and other control characters shown as spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::client::Status;

    fn job(id: i64, name: &str) -> ApiJob {
        ApiJob {
            id,
            name: name.into(),
            domain: "example.com".into(),
            message_subject: "Maintenance".into(),
            message_body: "Tonight.\nAt 22:00.".into(),
            sender_jid: "admin@example.com".into(),
            message_rate: 100,
            owner_node: "node1".into(),
            create_timestamp: "2026-03-01T12:00:00Z".into(),
            start_timestamp: Some("2026-03-01T12:00:01Z".into()),
            stop_timestamp: None,
            execution_state: ExecutionState::Running,
            abortion_reason: None,
            recipient_group: "ALL_USERS_IN_DOMAIN".into(),
            recipient_count: 40,
            recipients_counted: true,
            recipients_processed: 10,
            waiting_reason: None,
            kind: JobKind::Broadcast,
            amends: None,
            status: Status::Running,
            start_at: None,
            paused_at: None,
            language: None,
            translations: Vec::new(),
            group: None,
            unknown_recipient_count: None,
            unknown_recipients: None,
        }
    }

    /// Job `id`, a correction of job `amends`.
    fn correction(id: i64, amends: i64) -> ApiJob {
        ApiJob {
            kind: JobKind::Correction,
            amends: Some(amends),
            ..job(id, "fix")
        }
    }

    #[test]
    fn the_table_aligns_columns() {
        let table = jobs_table(&[correction(13, 3), job(12, "two\nlines"), job(3, "x")]);
        assert_eq!(
            table,
            "ID  STATE    PROCESSED  RATE   CREATED               KIND        AMENDS  NAME\n\
             13  RUNNING  10/40      100/s  2026-03-01T12:00:00Z  CORRECTION  3       fix\n\
             12  RUNNING  10/40      100/s  2026-03-01T12:00:00Z  BROADCAST   -       two lines\n\
             3   RUNNING  10/40      100/s  2026-03-01T12:00:00Z  BROADCAST   -       x"
        );
    }

    /// A job answered before its recipients were counted shows what it processed, and that
    /// the count is still to come, in the table and the details.
    #[test]
    fn an_uncounted_job_says_it_is_being_counted() {
        let counting = ApiJob {
            recipients_counted: false,
            recipient_count: 10,
            ..job(4, "big")
        };
        assert_eq!(
            progress(&counting),
            "10 processed (recipients still being counted)"
        );
        let table = jobs_table(std::slice::from_ref(&counting));
        assert!(table.lines().nth(1).unwrap().contains(" 10/?  "), "{table}");
        let aborted = ApiJob {
            execution_state: ExecutionState::AbortAdmin,
            ..counting
        };
        assert_eq!(
            progress(&aborted),
            "10 processed (recipients not counted: the job ended first)"
        );
    }

    #[test]
    fn a_huge_name_is_cut_in_the_table_and_whole_in_the_details() {
        let name = "n".repeat(100_001);
        let table = jobs_table(&[job(1, &name)]);
        let row = table.lines().nth(1).unwrap();
        assert!(row.ends_with(&format!("{}…", "n".repeat(79))), "{row}");
        assert!(table.len() < 300, "{} bytes", table.len());
        let details = job_details(&job(1, &name));
        assert!(details.contains(&name));
        assert_eq!(padded("ab", 70_000).len(), 70_000);
        let mut huge = job(1, "n");
        huge.recipients_processed = i64::MAX;
        let expected = format!("{}/40 processed (23058430092136939517%)", i64::MAX);
        assert_eq!(progress(&huge), expected, "no overflow");
    }

    /// The languages are listed, and each translation follows the default body.
    #[test]
    fn details_show_the_languages_and_each_translation() {
        use crate::admin::client::ApiTranslation;
        let translated = ApiJob {
            language: Some("en".into()),
            translations: vec![
                ApiTranslation {
                    language: "de".into(),
                    message_subject: "Wartung".into(),
                    message_body: "Heute.\nUm 22 Uhr.".into(),
                },
                ApiTranslation {
                    language: "fr".into(),
                    message_subject: String::new(),
                    message_body: "Ce soir.".into(),
                },
            ],
            ..job(7, "notice")
        };
        let details = job_details(&translated);
        assert!(
            details.contains("languages:      en, de, fr\n"),
            "{details}"
        );
        assert!(
            details.ends_with(
                "body:\n  Tonight.\n  At 22:00.\nsubject (de): Wartung\nbody (de):\n  Heute.\n  \
                 Um 22 Uhr.\nbody (fr):\n  Ce soir."
            ),
            "{details}"
        );
        assert!(!job_details(&job(7, "notice")).contains("languages:"));
    }

    #[test]
    fn details_end_with_the_indented_body() {
        let details = job_details(&job(7, "notice"));
        assert!(details.starts_with("id:             7\n"), "{details}");
        assert!(
            details.contains("recipients:     10/40 processed (25%)\n"),
            "{details}"
        );
        assert!(details.contains("stopped:        -\n"), "{details}");
        assert!(details.contains("kind:           BROADCAST\n"), "{details}");
        let retraction = ApiJob {
            kind: JobKind::Retraction,
            ..correction(9, 7)
        };
        let details = job_details(&retraction);
        assert!(
            details.contains("state:          RUNNING\nkind:           RETRACTION of job 7\n"),
            "{details}"
        );
        assert!(
            details.ends_with("body:\n  Tonight.\n  At 22:00."),
            "{details}"
        );
    }

    #[test]
    fn the_preview_names_the_count_and_the_sample() {
        let preview = RecipientsPreview {
            domain: "example.com".into(),
            recipient_count: 20,
            sample: vec!["a@example.com".into(), "b@example.com".into()],
            unknown_recipient_count: None,
            unknown_recipients: None,
        };
        assert_eq!(
            preview_text(&preview, Planned::Broadcast),
            "20 users of example.com would receive a broadcast started now; the first 2:\n  \
             a@example.com\n  b@example.com"
        );
        let one = RecipientsPreview {
            recipient_count: 1,
            sample: Vec::new(),
            ..preview
        };
        assert_eq!(
            preview_text(&one, Planned::Retraction { amends: 7 }),
            "1 user of example.com would receive a retraction of job 7 sent now"
        );
        let none = RecipientsPreview {
            recipient_count: 0,
            ..one
        };
        assert_eq!(
            preview_text(&none, Planned::Correction { amends: 7 }),
            "no user of example.com would receive a correction of job 7 sent now: correct \
             would fail with no_recipients"
        );
        assert_eq!(
            nobody("example.com", Planned::Broadcast),
            "example.com has no users: start would fail with no_recipients"
        );
        assert_eq!(
            nobody("example.com", Planned::Retraction { amends: 7 }),
            "job 7 reached nobody: retract would fail with no_recipients"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(0.4), "0s");
        assert_eq!(duration(59.0), "59s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(7620.0), "2h07m");
    }
}
