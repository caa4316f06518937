//! What an operator asks for: a broadcast request, parsed and validated once into a [`JobSpec`].
//!
//! Every limit of the request is checked here, before anything is written, so that code further
//! down can trust a `JobSpec` (design invariant 9). Lengths count grapheme clusters, the unit
//! operators see, as MongooseIM does; the code points of a text are bounded too, at
//! [`CODE_POINTS_PER_CHARACTER`] per allowed character, so that one cluster (a letter followed
//! by 100,000 combining marks is one) cannot carry hundreds of kilobytes. Characters that XML 1.0
//! cannot carry are refused because a single one would break the component's stream for every
//! job.

use jid::BareJid;
use unicode_segmentation::UnicodeSegmentation;

use super::audience::{AudienceProblem, AudienceRequest};

/// Allowed number of characters in a job name.
pub const NAME_LENGTH: std::ops::RangeInclusive<usize> = 1..=250;
/// Allowed number of characters in a subject (it may be empty).
pub const SUBJECT_LENGTH: std::ops::RangeInclusive<usize> = 0..=1024;
/// Allowed number of characters in a body.
pub const BODY_LENGTH: std::ops::RangeInclusive<usize> = 1..=16_000;
/// Code points allowed per allowed character (grapheme cluster), over a whole text.
///
/// Grapheme clusters have no length limit of their own, so the grapheme limits alone let a
/// 250-character name carry megabytes. Real text averages one to two code points per cluster
/// (an accented letter written with a combining mark has two, a flag two, the longest emoji ZWJ
/// sequences seven to ten), so four per character on average leaves room for any text a person
/// writes, and holds a text to at most 16 UTF-8 bytes per allowed character (a body to 256 KB).
/// Code points rather than bytes, so that the bound does not depend on the script: 16,000 CJK
/// characters (3 bytes each) or emoji (4) fit as easily as 16,000 Latin letters.
pub const CODE_POINTS_PER_CHARACTER: usize = 4;
/// Most code points in a job name: [`CODE_POINTS_PER_CHARACTER`] per character of
/// [`NAME_LENGTH`].
pub const NAME_CODE_POINTS: usize = CODE_POINTS_PER_CHARACTER * *NAME_LENGTH.end();
/// Most code points in a subject: [`CODE_POINTS_PER_CHARACTER`] per character of
/// [`SUBJECT_LENGTH`].
pub const SUBJECT_CODE_POINTS: usize = CODE_POINTS_PER_CHARACTER * *SUBJECT_LENGTH.end();
/// Most code points in a body: [`CODE_POINTS_PER_CHARACTER`] per character of [`BODY_LENGTH`].
pub const BODY_CODE_POINTS: usize = CODE_POINTS_PER_CHARACTER * *BODY_LENGTH.end();
/// Allowed message rate, in messages per second.
pub const RATE: std::ops::RangeInclusive<u32> = 1..=1000;
/// How long ago a start time may have passed and still be taken as "now": a script that
/// computes its time, a clock a little ahead, a retry after a timeout. An older time is
/// refused, because a notice announced for a time long past is a mistake (a wrong date or zone).
pub const START_AT_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// How far ahead a job may be scheduled.
pub const START_AT_HORIZON: chrono::TimeDelta = chrono::TimeDelta::days(366);

/// A request field that failed validation; the names are MongooseIM's (`bad_parameter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parameter {
    MessageRate,
    Name,
    Subject,
    Body,
    IdempotencyKey,
}

impl Parameter {
    /// The limits of a text parameter: allowed characters (grapheme clusters) and most code
    /// points; `None` for the rate and the idempotency key.
    pub fn text_limits(self) -> Option<(std::ops::RangeInclusive<usize>, usize)> {
        match self {
            Parameter::MessageRate | Parameter::IdempotencyKey => None,
            Parameter::Name => Some((NAME_LENGTH, NAME_CODE_POINTS)),
            Parameter::Subject => Some((SUBJECT_LENGTH, SUBJECT_CODE_POINTS)),
            Parameter::Body => Some((BODY_LENGTH, BODY_CODE_POINTS)),
        }
    }

    /// The parameter's name in error messages, as MongooseIM spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Parameter::MessageRate => "message_rate",
            Parameter::Name => "name",
            Parameter::Subject => "subject",
            Parameter::Body => "body",
            Parameter::IdempotencyKey => "idempotency_key",
        }
    }
}

/// Why a request was refused before anything was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("Invalid parameter: {}", .0.as_str())]
    BadParameter(Parameter),
    /// The sender is not an account of the broadcast domain.
    #[error("Sender account does not exist")]
    SenderNotInDomain,
    /// A start time outside the accepted window.
    #[error("Invalid parameter: start_at ({0})")]
    StartAt(StartAtProblem),
    /// Recipients that cannot be named so.
    #[error("Invalid parameter: {} ({})", .0.argument(), .0)]
    Audience(AudienceProblem),
}

/// Why a start time is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StartAtProblem {
    #[error(
        "it passed more than {} seconds ago; a time up to that far in the past starts the job \
         at once", START_AT_GRACE.num_seconds()
    )]
    Passed,
    #[error("it is more than {} days ahead", START_AT_HORIZON.num_days())]
    TooFar,
}

/// When a job asked to start at `at` starts, judged at `now`: `None` for at once (a time
/// that passed at most [`START_AT_GRACE`] ago), or the time, at most [`START_AT_HORIZON`] ahead.
pub fn check_start_at(
    at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, InvalidRequest> {
    if at < now - START_AT_GRACE {
        Err(InvalidRequest::StartAt(StartAtProblem::Passed))
    } else if at > now + START_AT_HORIZON {
        Err(InvalidRequest::StartAt(StartAtProblem::TooFar))
    } else if at <= now {
        Ok(None)
    } else {
        Ok(Some(at))
    }
}

/// The recipients of a broadcast; MongooseIM's `BroadcastRecipientGroup`, with the audiences
/// of [`super::audience`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecipientGroup {
    #[default]
    AllUsersInDomain,
    /// Accounts named in the request.
    Listed,
    /// A group defined in the config.
    Group,
}

impl RecipientGroup {
    pub const ALL: [RecipientGroup; 3] = [
        RecipientGroup::AllUsersInDomain,
        RecipientGroup::Listed,
        RecipientGroup::Group,
    ];

    /// As `xb_jobs.recipient_group` stores it.
    pub fn as_db_str(self) -> &'static str {
        match self {
            RecipientGroup::AllUsersInDomain => "all_users_in_domain",
            RecipientGroup::Listed => "listed",
            RecipientGroup::Group => "group",
        }
    }

    /// The group `xb_jobs.recipient_group` names, if it is one.
    pub fn from_db_str(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|group| group.as_db_str() == text)
    }
}

/// A broadcast request as it arrives, with the domain already known to be served.
#[derive(Debug, Clone)]
pub struct BroadcastRequest {
    pub name: String,
    pub domain: String,
    pub subject: String,
    pub body: String,
    pub sender: BareJid,
    pub rate: i64,
    /// Who it is for, as the request names them.
    pub audience: AudienceRequest,
}

/// A validated broadcast: every field is within its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub name: String,
    pub domain: String,
    pub subject: String,
    pub body: String,
    pub sender: BareJid,
    pub rate: u32,
    pub recipient_group: RecipientGroup,
    /// The configured group's name, for [`RecipientGroup::Group`].
    pub group: Option<String>,
}

impl JobSpec {
    /// Checks a request in MongooseIM's order: rate, sender, then name, subject and body.
    pub fn parse(request: BroadcastRequest) -> Result<Self, InvalidRequest> {
        let rate = check_rate(request.rate)?;
        check_sender(&request.sender, &request.domain)?;
        check_text(&request.name, Parameter::Name)?;
        check_text(&request.subject, Parameter::Subject)?;
        check_text(&request.body, Parameter::Body)?;
        Ok(JobSpec {
            name: request.name,
            domain: request.domain,
            subject: request.subject,
            body: request.body,
            sender: request.sender,
            rate,
            recipient_group: request.audience.group,
            group: request.audience.group_name,
        })
    }

    /// Recipients per batch: ten seconds of sending, as in MongooseIM.
    pub fn batch_size(&self) -> u32 {
        batch_size(self.rate)
    }
}

/// The rate, if it is within [`RATE`].
pub fn check_rate(rate: i64) -> Result<u32, InvalidRequest> {
    u32::try_from(rate)
        .ok()
        .filter(|rate| RATE.contains(rate))
        .ok_or(InvalidRequest::BadParameter(Parameter::MessageRate))
}

/// The sender must be a user (not a server) of the broadcast domain.
pub fn check_sender(sender: &BareJid, domain: &str) -> Result<(), InvalidRequest> {
    if sender.node().is_some() && sender.domain().as_str() == domain {
        Ok(())
    } else {
        Err(InvalidRequest::SenderNotInDomain)
    }
}

/// Recipients per batch for a rate: ten seconds of sending.
pub fn batch_size(rate: u32) -> u32 {
    rate * 10
}

/// Whether `text` may be the value of the text parameter `parameter`: within its limits of
/// characters (grapheme clusters) and code points, and made of XML 1.0 characters only.
pub fn check_text(text: &str, parameter: Parameter) -> Result<(), InvalidRequest> {
    let refused = Err(InvalidRequest::BadParameter(parameter));
    let Some((allowed, most_code_points)) = parameter.text_limits() else {
        return refused;
    };
    // A code point takes at least one byte: a longer text is refused without reading it.
    if text.len() > most_code_points * 4 || text.chars().count() > most_code_points {
        return refused;
    }
    if !text.chars().all(is_xml_char) || !allowed.contains(&text.graphemes(true).count()) {
        return refused;
    }
    Ok(())
}

/// Whether XML 1.0 allows this character in a document (the `Char` production).
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> BroadcastRequest {
        BroadcastRequest {
            name: "maintenance".into(),
            domain: "example.com".into(),
            subject: "Tonight".into(),
            body: "The server restarts at 22:00.".into(),
            sender: BareJid::new("admin@example.com").unwrap(),
            rate: 100,
            audience: AudienceRequest::default(),
        }
    }

    /// A start time is "now" up to a minute late, refused beyond it, and taken up to a year
    /// ahead.
    #[test]
    fn start_times_are_bounded() {
        let now = chrono::Utc::now();
        let seconds = chrono::TimeDelta::seconds;
        assert_eq!(check_start_at(now, now), Ok(None));
        assert_eq!(check_start_at(now - seconds(59), now), Ok(None));
        let refused = check_start_at(now - seconds(61), now);
        assert_eq!(
            refused,
            Err(InvalidRequest::StartAt(StartAtProblem::Passed))
        );
        assert!(
            refused
                .unwrap_err()
                .to_string()
                .starts_with("Invalid parameter: start_at (it passed more than 60 seconds ago"),
        );
        let soon = now + seconds(5);
        assert_eq!(check_start_at(soon, now), Ok(Some(soon)));
        let far = now + START_AT_HORIZON;
        assert_eq!(check_start_at(far, now), Ok(Some(far)));
        assert_eq!(
            check_start_at(far + seconds(1), now),
            Err(InvalidRequest::StartAt(StartAtProblem::TooFar))
        );
    }

    fn refused(change: impl FnOnce(&mut BroadcastRequest)) -> InvalidRequest {
        let mut request = request();
        change(&mut request);
        JobSpec::parse(request).unwrap_err()
    }

    #[test]
    fn accepts_a_valid_request() {
        let spec = JobSpec::parse(request()).unwrap();
        assert_eq!(spec.rate, 100);
        assert_eq!(spec.batch_size(), 1000);
    }

    #[test]
    fn rate_limits() {
        let bad = InvalidRequest::BadParameter(Parameter::MessageRate);
        assert_eq!(refused(|r| r.rate = 0), bad);
        assert_eq!(refused(|r| r.rate = 1001), bad);
        assert_eq!(refused(|r| r.rate = -5), bad);
        assert_eq!(refused(|r| r.rate = i64::from(u32::MAX) + 1), bad);
        for rate in [1, 1000] {
            let mut ok = request();
            ok.rate = rate;
            assert!(JobSpec::parse(ok).is_ok());
        }
    }

    #[test]
    fn sender_must_belong_to_the_domain() {
        let foreign = BareJid::new("admin@other.org").unwrap();
        assert_eq!(
            refused(|r| r.sender = foreign),
            InvalidRequest::SenderNotInDomain
        );
        let no_local = BareJid::new("example.com").unwrap();
        assert_eq!(
            refused(|r| r.sender = no_local),
            InvalidRequest::SenderNotInDomain
        );
    }

    #[test]
    fn length_limits_count_grapheme_clusters() {
        let name = |p| InvalidRequest::BadParameter(p);
        assert_eq!(refused(|r| r.name = String::new()), name(Parameter::Name));
        assert_eq!(refused(|r| r.name = "x".repeat(251)), name(Parameter::Name));
        assert_eq!(
            refused(|r| r.subject = "x".repeat(1025)),
            name(Parameter::Subject)
        );
        assert_eq!(refused(|r| r.body = String::new()), name(Parameter::Body));
        assert_eq!(
            refused(|r| r.body = "x".repeat(16_001)),
            name(Parameter::Body)
        );

        let mut ok = request();
        ok.name = "e\u{301}".repeat(250); // 500 code points, 250 user-perceived characters
        ok.subject = String::new();
        ok.body = "\u{1F469}\u{200D}\u{1F4BB}".repeat(16_000);
        assert!(JobSpec::parse(ok).is_ok());
    }

    #[test]
    fn code_points_are_bounded_as_well_as_characters() {
        // One letter and 100,000 combining marks: one character, 200 KB.
        let heavy = format!("e{}", "\u{301}".repeat(100_000));
        assert_eq!(heavy.graphemes(true).count(), 1);
        let bad = |p| InvalidRequest::BadParameter(p);
        assert_eq!(refused(|r| r.name = heavy.clone()), bad(Parameter::Name));
        assert_eq!(
            refused(|r| r.subject = heavy.clone()),
            bad(Parameter::Subject)
        );
        assert_eq!(refused(|r| r.body = heavy), bad(Parameter::Body));

        // At the bound, in few characters: accepted; one code point more: refused.
        let marks = |n| format!("e{}", "\u{301}".repeat(n - 1));
        for (parameter, most) in [
            (Parameter::Name, NAME_CODE_POINTS),
            (Parameter::Subject, SUBJECT_CODE_POINTS),
            (Parameter::Body, BODY_CODE_POINTS),
        ] {
            assert_eq!(check_text(&marks(most), parameter), Ok(()), "{parameter:?}");
            assert_eq!(
                check_text(&marks(most + 1), parameter),
                Err(bad(parameter)),
                "{parameter:?}"
            );
        }
        assert_eq!(
            (NAME_CODE_POINTS, SUBJECT_CODE_POINTS, BODY_CODE_POINTS),
            (1000, 4096, 64_000)
        );
    }

    #[test]
    fn characters_xml_cannot_carry_are_refused() {
        assert_eq!(
            refused(|r| r.subject = "a\u{0}b".into()),
            InvalidRequest::BadParameter(Parameter::Subject)
        );
        assert_eq!(
            refused(|r| r.body = "esc \u{1B}[0m".into()),
            InvalidRequest::BadParameter(Parameter::Body)
        );
        assert_eq!(
            refused(|r| r.name = "\u{FFFE}".into()),
            InvalidRequest::BadParameter(Parameter::Name)
        );
        let mut ok = request();
        ok.body = "tab\tnew\nline\r\n\u{10FFFF}".into();
        assert!(JobSpec::parse(ok).is_ok());
    }

    #[test]
    fn error_messages_are_mongooseims() {
        assert_eq!(
            InvalidRequest::BadParameter(Parameter::MessageRate).to_string(),
            "Invalid parameter: message_rate"
        );
    }
}
