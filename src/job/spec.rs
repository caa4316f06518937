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
/// Most translations of one message. A stanza carries them all, so [`MAX_MESSAGE_BYTES`]
/// bounds their texts; this bound keeps a job's list short enough to read and catches a
/// script that appends in a loop. 64 is more than any country's official languages (the EU
/// has 24, India 22 with English) and than the languages large services translate their
/// notices into.
pub const MAX_TRANSLATIONS: usize = 64;
/// Longest language tag, in characters (the `language` column of MySQL/MariaDB is
/// `VARCHAR(64)`). Real tags have a handful of subtags; RFC 5646 asks implementations to
/// support at least 35 characters.
pub const LANGUAGE_TAG_LENGTH: usize = 64;
/// The largest message the component sends, in bytes as written on the stream: Prosody's
/// default `component_stanza_size_limit` (512 KiB). Prosody ends the component's stream with
/// a stream error on a larger stanza, so a job with one would reconnect and fail again for
/// ever; ejabberd's `ejabberd_service` accepts any size unless `max_stanza_size` is set.
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024;

/// A request field that failed validation; the names are MongooseIM's (`bad_parameter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parameter {
    MessageRate,
    Name,
    Subject,
    Body,
    IdempotencyKey,
    /// The language of the default subject and body.
    Language,
    /// The translations: their number, tags and texts.
    Translations,
}

impl Parameter {
    /// The limits of a text parameter: allowed characters (grapheme clusters) and most code
    /// points; `None` for the rate and the idempotency key.
    pub fn text_limits(self) -> Option<(std::ops::RangeInclusive<usize>, usize)> {
        match self {
            Parameter::MessageRate
            | Parameter::IdempotencyKey
            | Parameter::Language
            | Parameter::Translations => None,
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
            Parameter::Language => "language",
            Parameter::Translations => "translations",
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
    /// A language tag or a translation that cannot be sent.
    #[error("Invalid parameter: {} ({problem})", .problem.parameter().as_str())]
    Language { problem: LanguageProblem },
    /// The message, written for the longest address a recipient can have, is larger than
    /// the servers accept from a component.
    #[error(
        "The message would be {bytes} bytes on the XMPP stream (texts escaped, for the \
         longest recipient address), over the {limit} bytes XMPP servers accept from a \
         component (Prosody's default); shorten the texts or send fewer translations"
    )]
    MessageTooLarge { bytes: usize, limit: usize },
}

/// Why a language tag or a translation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LanguageProblem {
    /// `language` is not a well-formed BCP 47 tag.
    #[error("{0:?} is not a BCP 47 language tag such as en, de-CH or zh-Hant")]
    BadDefault(String),
    /// A translation's tag is not a well-formed BCP 47 tag.
    #[error(
        "translation {index}: {tag:?} is not a BCP 47 language tag such as en, de-CH or zh-Hant"
    )]
    BadTag { index: usize, tag: String },
    /// Translations were given without the language of the default text.
    #[error(
        "translations need `language`, the language of the default subject and body, so that \
         clients can tell the texts apart"
    )]
    NoDefault,
    /// A language is given twice (tags compare without case; the default counts).
    #[error(
        "translation {index}: language {tag} is given twice (tags compare without case, and the \
         default language counts)"
    )]
    Duplicate { index: usize, tag: String },
    #[error("{given} translations, at most {MAX_TRANSLATIONS}")]
    TooMany { given: usize },
    /// A translation's subject or body breaks the limits of the default subject or body.
    #[error(
        "translation {index} ({tag}): its {} is outside the default {}'s limits (too long, an \
         empty body, or a character XML cannot carry)",
        .parameter.as_str(),
        .parameter.as_str()
    )]
    BadText {
        index: usize,
        tag: String,
        parameter: Parameter,
    },
}

impl LanguageProblem {
    /// The request parameter at fault.
    pub fn parameter(&self) -> Parameter {
        match self {
            LanguageProblem::BadDefault(_) => Parameter::Language,
            _ => Parameter::Translations,
        }
    }
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

/// The text of a message in one more language, sent in the same stanza after the default
/// subject and body (`xml:lang` = `language`). Also how a job stores it (a JSON array of these
/// in `xb_jobs.translations`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Translation {
    /// A BCP 47 tag, such as `de` or `pt-BR`.
    pub language: String,
    /// May be empty: the message then has no subject in this language.
    pub subject: String,
    pub body: String,
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
    /// The language of `subject` and `body`, if given.
    pub language: Option<String>,
    /// The message in other languages.
    pub translations: Vec<Translation>,
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
    /// The language of `subject` and `body`: a BCP 47 tag, its case normalised (`de-CH`).
    pub language: Option<String>,
    /// Each a BCP 47 tag (case normalised) none of which is another's or `language`, with
    /// texts within the limits of the default subject and body.
    pub translations: Vec<Translation>,
}

impl JobSpec {
    /// Checks a request in MongooseIM's order: rate, sender, then name, subject and body; then
    /// the languages ([`check_languages`]). The size of the whole message is checked where it
    /// is written (`xmpp::stanza`), against [`MAX_MESSAGE_BYTES`] ([`check_message_size`]).
    pub fn parse(request: BroadcastRequest) -> Result<Self, InvalidRequest> {
        let rate = check_rate(request.rate)?;
        check_sender(&request.sender, &request.domain)?;
        check_text(&request.name, Parameter::Name)?;
        check_text(&request.subject, Parameter::Subject)?;
        check_text(&request.body, Parameter::Body)?;
        let (language, translations) =
            check_languages(request.language.as_deref(), request.translations)?;
        Ok(JobSpec {
            name: request.name,
            domain: request.domain,
            subject: request.subject,
            body: request.body,
            sender: request.sender,
            rate,
            recipient_group: request.audience.group,
            group: request.audience.group_name,
            language,
            translations,
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

/// Checks the languages of a message: `language` and each translation's tag well-formed BCP
/// 47 tags of at most [`LANGUAGE_TAG_LENGTH`] characters, translations only with `language`,
/// at most [`MAX_TRANSLATIONS`] of them, no language twice (tags compare without case, the
/// default's included), and every translated text within the default subject's or body's
/// limits ([`check_text`]). Returns the tags with their case normalised (`DE-ch` → `de-CH`),
/// as clients compare them.
pub fn check_languages(
    language: Option<&str>,
    translations: Vec<Translation>,
) -> Result<(Option<String>, Vec<Translation>), InvalidRequest> {
    let refused = |problem| Err(InvalidRequest::Language { problem });
    let language = match language {
        None => None,
        Some(tag) => match normalised_tag(tag) {
            Some(tag) => Some(tag),
            None => return refused(LanguageProblem::BadDefault(tag.to_owned())),
        },
    };
    if translations.is_empty() {
        return Ok((language, translations));
    }
    let Some(default) = &language else {
        return refused(LanguageProblem::NoDefault);
    };
    if translations.len() > MAX_TRANSLATIONS {
        return refused(LanguageProblem::TooMany {
            given: translations.len(),
        });
    }
    let mut seen = vec![default.to_ascii_lowercase()];
    let mut checked = Vec::with_capacity(translations.len());
    for (index, translation) in (1..).zip(translations) {
        let Some(tag) = normalised_tag(&translation.language) else {
            return refused(LanguageProblem::BadTag {
                index,
                tag: translation.language,
            });
        };
        let folded = tag.to_ascii_lowercase();
        if seen.contains(&folded) {
            return refused(LanguageProblem::Duplicate { index, tag });
        }
        seen.push(folded);
        for (text, parameter) in [
            (&translation.subject, Parameter::Subject),
            (&translation.body, Parameter::Body),
        ] {
            if check_text(text, parameter).is_err() {
                return refused(LanguageProblem::BadText {
                    index,
                    tag,
                    parameter,
                });
            }
        }
        checked.push(Translation {
            language: tag,
            ..translation
        });
    }
    Ok((language, checked))
}

/// `tag` with its case normalised, if it is a well-formed BCP 47 language tag of at most
/// [`LANGUAGE_TAG_LENGTH`] characters. Such a tag is ASCII letters, digits and hyphens only:
/// nothing in it needs escaping in XML.
fn normalised_tag(tag: &str) -> Option<String> {
    if tag.len() > LANGUAGE_TAG_LENGTH {
        return None;
    }
    oxilangtag::LanguageTag::parse_and_normalize(tag)
        .ok()
        .map(oxilangtag::LanguageTag::into_inner)
}

/// Whether a message of `bytes` bytes, as written on the stream, may be sent: at most
/// [`MAX_MESSAGE_BYTES`].
pub fn check_message_size(bytes: usize) -> Result<(), InvalidRequest> {
    if bytes > MAX_MESSAGE_BYTES {
        return Err(InvalidRequest::MessageTooLarge {
            bytes,
            limit: MAX_MESSAGE_BYTES,
        });
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
            language: None,
            translations: Vec::new(),
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

    fn translation(language: &str, subject: &str, body: &str) -> Translation {
        Translation {
            language: language.into(),
            subject: subject.into(),
            body: body.into(),
        }
    }

    /// The problem a request changed by `change` is refused for.
    fn language_problem(change: impl FnOnce(&mut BroadcastRequest)) -> LanguageProblem {
        match refused(change) {
            InvalidRequest::Language { problem } => problem,
            other => panic!("refused for {other:?}"),
        }
    }

    #[test]
    fn languages_are_bcp_47_tags_normalised() {
        let mut ok = request();
        ok.language = Some("EN-gb".into());
        ok.translations = vec![
            translation("de-ch", "Wartung", "Heute Abend."),
            translation("zh-hant-tw", "", "今晚"),
            translation("sr-Latn", "", "Večeras."),
        ];
        let spec = JobSpec::parse(ok).unwrap();
        assert_eq!(spec.language.as_deref(), Some("en-GB"));
        let tags: Vec<&str> = spec
            .translations
            .iter()
            .map(|t| t.language.as_str())
            .collect();
        assert_eq!(tags, ["de-CH", "zh-Hant-TW", "sr-Latn"]);
        assert_eq!(spec.translations[0].subject, "Wartung");

        // A language alone, without translations, is fine; no language at all too.
        let mut alone = request();
        alone.language = Some("fr".into());
        assert_eq!(JobSpec::parse(alone).unwrap().translations, []);

        for bad in [
            "",
            "en_US",
            "englishlanguage",
            "e",
            "de-",
            "-de",
            "d e",
            "de\u{0}",
            "x".repeat(65).as_str(),
        ] {
            assert_eq!(
                language_problem(|r| r.language = Some(bad.into())),
                LanguageProblem::BadDefault(bad.into()),
                "{bad:?}"
            );
        }
        let problem = language_problem(|r| {
            r.language = Some("en".into());
            r.translations = vec![translation("de", "", "x"), translation("de_AT", "", "x")];
        });
        assert_eq!(
            problem,
            LanguageProblem::BadTag {
                index: 2,
                tag: "de_AT".into()
            }
        );
        let refusal = refused(|r| r.language = Some("en_US".into()));
        assert_eq!(
            refusal.to_string(),
            "Invalid parameter: language (\"en_US\" is not a BCP 47 language tag such as en, de-CH or zh-Hant)"
        );
    }

    #[test]
    fn no_language_twice_whatever_its_case() {
        let problem = language_problem(|r| {
            r.language = Some("en".into());
            r.translations = vec![translation("de", "", "a"), translation("DE", "", "b")];
        });
        assert_eq!(
            problem,
            LanguageProblem::Duplicate {
                index: 2,
                tag: "de".into()
            }
        );
        let problem = language_problem(|r| {
            r.language = Some("pt-BR".into());
            r.translations = vec![translation("pt-br", "", "a")];
        });
        assert_eq!(
            problem,
            LanguageProblem::Duplicate {
                index: 1,
                tag: "pt-BR".into()
            }
        );
        // Different regions are different languages.
        let mut ok = request();
        ok.language = Some("pt-BR".into());
        ok.translations = vec![translation("pt-PT", "", "a"), translation("pt", "", "b")];
        assert!(JobSpec::parse(ok).is_ok());
    }

    #[test]
    fn translations_need_the_default_language_and_are_bounded() {
        assert_eq!(
            language_problem(|r| r.translations = vec![translation("de", "", "x")]),
            LanguageProblem::NoDefault
        );
        // An empty list is no translations.
        let mut ok = request();
        ok.translations = Vec::new();
        assert!(JobSpec::parse(ok).is_ok());

        let many = |n: usize| {
            (0..n)
                .map(|i| translation(&format!("x-l{i}"), "", "x"))
                .collect::<Vec<_>>()
        };
        let mut most = request();
        most.language = Some("en".into());
        most.translations = many(MAX_TRANSLATIONS);
        assert!(JobSpec::parse(most).is_ok());
        assert_eq!(
            language_problem(|r| {
                r.language = Some("en".into());
                r.translations = many(MAX_TRANSLATIONS + 1);
            }),
            LanguageProblem::TooMany { given: 65 }
        );
        assert_eq!(
            refused(|r| {
                r.language = Some("en".into());
                r.translations = many(MAX_TRANSLATIONS + 1);
            })
            .to_string(),
            "Invalid parameter: translations (65 translations, at most 64)"
        );
    }

    #[test]
    fn translated_texts_obey_the_default_texts_limits() {
        let with = |t: Translation| {
            language_problem(move |r| {
                r.language = Some("en".into());
                r.translations = vec![translation("fr", "", "ok"), t];
            })
        };
        let bad = |parameter| LanguageProblem::BadText {
            index: 2,
            tag: "de".into(),
            parameter,
        };
        assert_eq!(with(translation("de", "", "")), bad(Parameter::Body));
        assert_eq!(
            with(translation("de", "", &"x".repeat(16_001))),
            bad(Parameter::Body)
        );
        assert_eq!(
            with(translation("de", &"x".repeat(1025), "b")),
            bad(Parameter::Subject)
        );
        assert_eq!(
            with(translation("de", "a\u{1B}", "b")),
            bad(Parameter::Subject)
        );
        assert_eq!(
            with(translation(
                "de",
                "",
                &format!("e{}", "\u{301}".repeat(64_000))
            )),
            bad(Parameter::Body)
        );
        let mut ok = request();
        ok.language = Some("en".into());
        ok.translations = vec![translation("de", &"x".repeat(1024), &"y".repeat(16_000))];
        assert!(JobSpec::parse(ok).is_ok());
    }

    #[test]
    fn message_size_is_bounded() {
        assert_eq!(check_message_size(MAX_MESSAGE_BYTES), Ok(()));
        let refused = check_message_size(MAX_MESSAGE_BYTES + 1).unwrap_err();
        assert_eq!(
            refused,
            InvalidRequest::MessageTooLarge {
                bytes: 524_289,
                limit: 524_288
            }
        );
        assert!(
            refused
                .to_string()
                .starts_with("The message would be 524289 bytes"),
            "{refused}"
        );
    }

    #[test]
    fn error_messages_are_mongooseims() {
        assert_eq!(
            InvalidRequest::BadParameter(Parameter::MessageRate).to_string(),
            "Invalid parameter: message_rate"
        );
    }
}
