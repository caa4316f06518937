//! The stanzas this component sends: the broadcast message, pings and replies. The only place
//! that builds XML.

use jid::{BareJid, Jid};
use sha1::{Digest, Sha1};
use tokio_xmpp::Stanza;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::minidom::rxml::Namespace;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Id, Message, MessageType};
use tokio_xmpp::parsers::message_correct::Replace;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::parsers::stanza_id::OriginId;

use crate::job::{JobId, Translation};

/// The id of the message for `recipient` in job `job_id`, used both as the stanza id and as the
/// XEP-0359 origin-id: `xb-` followed by the lower-case hex SHA-1 of `"{job_id}:{recipient}"`.
/// The same job and recipient always give the same id, so a client can drop repeats.
pub fn message_id(job_id: JobId, recipient: &BareJid) -> String {
    let id = MessageId::new(&id_hasher(job_id), recipient);
    String::from_utf8(id.0.to_vec()).expect("the id is ASCII")
}

/// SHA-1 fed with the part of the id's input that is the same for a whole job: `"{job_id}:"`.
fn id_hasher(job_id: JobId) -> Sha1 {
    Sha1::new().chain_update(format!("{job_id}:"))
}

/// [`message_id`] without an allocation: the id as ASCII bytes.
struct MessageId([u8; 3 + 40]);

impl MessageId {
    /// The id of the message for `recipient`, from the job's [`id_hasher`].
    fn new(job: &Sha1, recipient: &BareJid) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = job.clone().chain_update(recipient.as_str()).finalize();
        let mut id = [0u8; 43];
        id[..3].copy_from_slice(b"xb-");
        for (pair, byte) in id[3..].chunks_exact_mut(2).zip(digest) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0x0f)];
        }
        MessageId(id)
    }
}

/// XEP-0308: the element of a correction that names the message it replaces.
const MESSAGE_CORRECT: &str = "urn:xmpp:message-correct:0";
/// XEP-0424: the element of a retraction that names the message it retracts.
const MESSAGE_RETRACT: &str = "urn:xmpp:message-retract:1";
/// XEP-0428: marks the body as a fallback for clients without retraction.
const FALLBACK: &str = "urn:xmpp:fallback:0";
/// XEP-0334: asks the server to store the message for an offline recipient.
const HINTS: &str = "urn:xmpp:hints";

/// The texts of a message: the default subject and body, their language (the message's
/// `xml:lang`) and the translations, each a `<subject xml:lang>` (unless empty) and a
/// `<body xml:lang>` after the default ones, in the order given.
#[derive(Debug, Clone, Copy)]
pub struct Texts<'a> {
    pub language: Option<&'a str>,
    pub subject: &'a str,
    pub body: &'a str,
    pub translations: &'a [Translation],
}

impl<'a> Texts<'a> {
    /// A subject and a body in no stated language, without translations.
    pub fn plain(subject: &'a str, body: &'a str) -> Self {
        Texts {
            language: None,
            subject,
            body,
            translations: &[],
        }
    }
}

/// What a job's message is: the broadcast itself, or a follow-up naming the message of the
/// broadcast `original` (a job id) that it corrects or retracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// `<subject>`, `<body>`.
    Broadcast,
    /// XEP-0308: `<subject>`, `<body>`, `<replace id='the original message's id'/>`.
    Correction { original: JobId },
    /// XEP-0424: `<retract id='the original's origin-id'/>`, the XEP-0428 fallback marker, the
    /// fallback `<body>`, the XEP-0334 `<store/>` hint.
    Retraction { original: JobId },
}

/// The message every recipient of one job receives.
///
/// Only the recipient, the id and (in a follow-up) the id of the message it amends differ from
/// one message to the next, so the rest is serialised once, here, and
/// [`Announcement::write_message`] writes a message by putting those in between.
/// [`Announcement::message_to`] builds the same message as an element tree; the tests hold the
/// two to each other.
#[derive(Debug, Clone)]
pub struct Announcement {
    job_id: JobId,
    sender: BareJid,
    language: Option<String>,
    subject: String,
    body: String,
    translations: Vec<Translation>,
    content: Content,
    /// [`id_hasher`] of the job.
    ids: Sha1,
    /// `<message type='chat' from='…' to='`
    head: Vec<u8>,
    /// From `'>` after the id to the next id written: the original message's id in a
    /// follow-up, the origin-id's otherwise.
    payload: Vec<u8>,
    /// A follow-up: the [`id_hasher`] of the original job and the text between the original's
    /// id and the origin-id's.
    reference: Option<(Sha1, Vec<u8>)>,
}

impl Announcement {
    /// The broadcast message of job `job_id`.
    pub fn new(job_id: JobId, sender: BareJid, subject: &str, body: &str) -> Self {
        Announcement::with_content(job_id, sender, subject, body, Content::Broadcast)
    }

    /// The message of job `job_id`, whose content is `content`; a retraction has no subject.
    pub fn with_content(
        job_id: JobId,
        sender: BareJid,
        subject: &str,
        body: &str,
        content: Content,
    ) -> Self {
        Announcement::with_texts(job_id, sender, Texts::plain(subject, body), content)
    }

    /// The message of job `job_id` with `texts`, whose content is `content`. A retraction
    /// carries only its fallback body (`texts.body`), in no stated language.
    pub fn with_texts(job_id: JobId, sender: BareJid, texts: Texts<'_>, content: Content) -> Self {
        let texts = match content {
            Content::Retraction { .. } => Texts::plain("", texts.body),
            _ => texts,
        };
        let Texts {
            language,
            subject,
            body,
            translations,
        } = texts;
        let mut head = b"<message type='chat'".to_vec();
        if let Some(language) = language {
            head.extend_from_slice(b" xml:lang='");
            escape_into(&mut head, language);
            head.push(b'\'');
        }
        head.extend_from_slice(b" from='");
        escape_into(&mut head, sender.as_str());
        head.extend_from_slice(b"' to='");
        let subject_and_body = |out: &mut Vec<u8>| {
            out.extend_from_slice(b"<subject>");
            escape_into(out, subject);
            out.extend_from_slice(b"</subject><body>");
            escape_into(out, body);
            out.extend_from_slice(b"</body>");
            for translation in translations {
                let open = |out: &mut Vec<u8>, name: &[u8]| {
                    out.push(b'<');
                    out.extend_from_slice(name);
                    out.extend_from_slice(b" xml:lang='");
                    escape_into(out, &translation.language);
                    out.extend_from_slice(b"'>");
                };
                if !translation.subject.is_empty() {
                    open(out, b"subject");
                    escape_into(out, &translation.subject);
                    out.extend_from_slice(b"</subject>");
                }
                open(out, b"body");
                escape_into(out, &translation.body);
                out.extend_from_slice(b"</body>");
            }
        };
        let origin_id = format!("<origin-id xmlns='{}' id='", ns::SID).into_bytes();
        let mut payload = b">".to_vec();
        let reference = match content {
            Content::Broadcast => {
                subject_and_body(&mut payload);
                payload.extend_from_slice(&origin_id);
                None
            }
            Content::Correction { original } => {
                subject_and_body(&mut payload);
                payload.extend_from_slice(
                    format!("<replace xmlns='{MESSAGE_CORRECT}' id='").as_bytes(),
                );
                let mut after = b"'/>".to_vec();
                after.extend_from_slice(&origin_id);
                Some((id_hasher(original), after))
            }
            Content::Retraction { original } => {
                payload.extend_from_slice(
                    format!("<retract xmlns='{MESSAGE_RETRACT}' id='").as_bytes(),
                );
                let mut after =
                    format!("'/><fallback xmlns='{FALLBACK}' for='{MESSAGE_RETRACT}'/><body>")
                        .into_bytes();
                escape_into(&mut after, body);
                after.extend_from_slice(format!("</body><store xmlns='{HINTS}'/>").as_bytes());
                after.extend_from_slice(&origin_id);
                Some((id_hasher(original), after))
            }
        };
        Announcement {
            job_id,
            sender,
            language: language.map(str::to_owned),
            subject: subject.to_owned(),
            body: body.to_owned(),
            translations: translations.to_vec(),
            content,
            ids: id_hasher(job_id),
            head,
            payload,
            reference,
        }
    }

    /// Appends the message for `recipient` to `out`, serialised for a component stream (it
    /// takes the stream's default namespace): type chat, from the sender, then the children of
    /// its [`Content`] in the order given there, and the origin-id last.
    pub fn write_message(&self, recipient: &BareJid, out: &mut Vec<u8>) {
        let id = MessageId::new(&self.ids, recipient);
        out.extend_from_slice(&self.head);
        escape_into(out, recipient.as_str());
        out.extend_from_slice(b"' id='");
        out.extend_from_slice(&id.0);
        out.push(b'\'');
        out.extend_from_slice(&self.payload);
        if let Some((original, after)) = &self.reference {
            out.extend_from_slice(&MessageId::new(original, recipient).0);
            out.extend_from_slice(after);
        }
        out.extend_from_slice(&id.0);
        out.extend_from_slice(b"'/></message>");
    }

    /// The size in bytes of the largest message of this job, [`Announcement::write_message`]
    /// for a recipient with the longest address an account of `domain` can have: a localpart
    /// of 1023 bytes, the most RFC 7622 allows. A JID has no character XML escapes, so the
    /// address adds its own length, whatever the ids (all of one length).
    pub fn largest_message_len(&self, domain: &str) -> usize {
        /// RFC 7622: a localpart is at most 1023 bytes.
        const LONGEST_LOCALPART: usize = 1023;
        let stand_in = BareJid::new("a@example.com").expect("a valid JID");
        let mut out = Vec::new();
        self.write_message(&stand_in, &mut out);
        out.len() - stand_in.as_str().len() + LONGEST_LOCALPART + "@".len() + domain.len()
    }

    /// The message for one recipient as an element tree, built with the XMPP parsers: the same
    /// message [`Announcement::write_message`] writes.
    pub fn message_to(&self, recipient: BareJid) -> Element {
        let id = message_id(self.job_id, &recipient);
        let mut message =
            Message::new_with_type(MessageType::Chat, Some(Jid::from(recipient.clone())));
        message.from = Some(Jid::from(self.sender.clone()));
        message.id = Some(Id(id.clone()));
        let text =
            |name: &str, text: &str| Element::builder(name, ns::DEFAULT_NS).append(text).build();
        let texts = |payloads: &mut Vec<Element>| {
            payloads.push(text("subject", &self.subject));
            payloads.push(text("body", &self.body));
            for translation in &self.translations {
                let in_language = |name: &str, text: &str| {
                    let mut element = Element::builder(name, ns::DEFAULT_NS).append(text).build();
                    element.attrs_mut().insert(
                        Namespace::XML,
                        "lang".try_into().expect("a name"),
                        translation.language.clone(),
                    );
                    element
                };
                if !translation.subject.is_empty() {
                    payloads.push(in_language("subject", &translation.subject));
                }
                payloads.push(in_language("body", &translation.body));
            }
        };
        match self.content {
            Content::Broadcast => texts(&mut message.payloads),
            Content::Correction { original } => {
                texts(&mut message.payloads);
                let id = Id(message_id(original, &recipient));
                message.payloads.push(Replace { id }.into());
            }
            Content::Retraction { original } => {
                // xmpp-parsers has no types for these two: parsed from their XML.
                let retract = format!(
                    "<retract xmlns='{MESSAGE_RETRACT}' id='{}'/>",
                    message_id(original, &recipient)
                );
                let fallback = format!("<fallback xmlns='{FALLBACK}' for='{MESSAGE_RETRACT}'/>");
                for element in [retract, fallback] {
                    message
                        .payloads
                        .push(element.parse().expect("a well-formed element"));
                }
                message.payloads.push(text("body", &self.body));
                message
                    .payloads
                    .push(Element::builder("store", HINTS).build());
            }
        }
        message.payloads.push(OriginId { id }.into());
        let mut element = Element::from(Stanza::Message(message));
        if let Some(language) = &self.language {
            element.attrs_mut().insert(
                Namespace::XML,
                "lang".try_into().expect("a name"),
                language.clone(),
            );
        }
        element
    }
}

/// Appends `text` with the characters XML gives a meaning to escaped, fit for element text and
/// for attribute values in either quotes.
///
/// A carriage return is written as the character reference `&#13;`: a parser turns a raw one
/// (alone or before a line feed) into a line feed and keeps only a referenced one, so the server
/// receives exactly the operator's text. Tabs and line feeds are written as they are: element
/// text keeps them, and the attribute values written here are JIDs, which cannot contain them.
fn escape_into(out: &mut Vec<u8>, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.find(['&', '<', '>', '\'', '"', '\r']) {
        out.extend_from_slice(&rest.as_bytes()[..at]);
        let entity: &[u8] = match rest.as_bytes()[at] {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'\'' => b"&apos;",
            b'"' => b"&quot;",
            _ => b"&#13;",
        };
        out.extend_from_slice(entity);
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest.as_bytes());
}

/// A XEP-0199 ping from the component to its server; the reply proves that the server has
/// processed everything sent before it on the same stream.
pub fn ping(from: &BareJid, id: &str) -> Stanza {
    let mut iq = Iq::from_get(id, Ping);
    if let Iq::Get {
        from: iq_from, to, ..
    } = &mut iq
    {
        *iq_from = Some(Jid::from(from.clone()));
        *to = Some(Jid::from(server_domain(from)));
    }
    Stanza::Iq(iq)
}

/// The reply to a request the server or a user sent to the component: an empty result for a
/// ping, `service-unavailable` for anything else.
pub fn reply_to(request: &Iq) -> Option<Stanza> {
    let (from, to, id, payload) = match request {
        Iq::Get {
            from,
            to,
            id,
            payload,
        }
        | Iq::Set {
            from,
            to,
            id,
            payload,
        } => (from, to, id, payload),
        Iq::Result { .. } | Iq::Error { .. } => return None,
    };
    let requester = from.clone()?;
    let is_ping = matches!(request, Iq::Get { .. }) && payload.is("ping", ns::PING);
    let reply = if is_ping {
        Iq::Result {
            from: to.clone(),
            to: Some(requester),
            id: id.clone(),
            payload: None,
        }
    } else {
        Iq::Error {
            from: to.clone(),
            to: Some(requester),
            id: id.clone(),
            error: StanzaError::new(
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "en",
                "this component only sends broadcasts",
            ),
            payload: None,
        }
    };
    Some(Stanza::Iq(reply))
}

/// The server a component is attached to: its JID without the first label
/// (`broadcast.example.com` → `example.com`), or the JID itself if it has a single label.
fn server_domain(component: &BareJid) -> BareJid {
    let domain = component.domain().as_str();
    domain
        .split_once('.')
        .and_then(|(_, parent)| BareJid::new(parent).ok())
        .unwrap_or_else(|| component.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::MAX_JOB_ID;

    fn xml(stanza: &Stanza) -> String {
        String::from(&Element::from(stanza))
    }

    fn text_of(element: &Element) -> String {
        String::from(element)
    }

    #[test]
    fn message_id_test_vector() {
        // printf '%s' '42:alice@example.com' | sha1sum
        let alice = BareJid::new("alice@example.com").unwrap();
        assert_eq!(
            message_id(42, &alice),
            "xb-dd7725f514be3dcb9497eb4ab3646059abac350b"
        );
    }

    #[test]
    fn message_has_the_broadcast_shape() {
        let sender = BareJid::new("admin@example.com").unwrap();
        let announcement = Announcement::new(7, sender, "Maintenance <tonight>", "a & b");
        let recipient = BareJid::new("u1@example.com").unwrap();
        let id = message_id(7, &recipient);
        let text = text_of(&announcement.message_to(recipient));
        let subject_at = text
            .find("<subject>Maintenance &lt;tonight&gt;</subject>")
            .unwrap();
        let body_at = text.find("<body>a &amp; b</body>").unwrap();
        let origin_at = text
            .find(&format!("<origin-id xmlns='urn:xmpp:sid:0' id='{id}'"))
            .unwrap();
        assert!(subject_at < body_at && body_at < origin_at, "{text}");
        assert!(text.contains("type='chat'"), "{text}");
        assert!(text.contains("from='admin@example.com'"), "{text}");
        assert!(text.contains("to='u1@example.com'"), "{text}");
        assert!(text.contains(&format!(" id='{id}'")), "{text}");
    }

    /// The message as written on the wire, read back as an element of the component stream.
    fn written(announcement: &Announcement, recipient: &BareJid) -> Element {
        let mut out = Vec::new();
        announcement.write_message(recipient, &mut out);
        let text = String::from_utf8(out).unwrap();
        let in_stream = text.replacen(
            "<message ",
            &format!("<message xmlns='{}' ", ns::COMPONENT),
            1,
        );
        in_stream.parse().unwrap()
    }

    #[test]
    fn written_message_is_the_built_message() {
        let sender = BareJid::new("ops@example.com").unwrap();
        let texts = [
            ("Maintenance", "Tonight 22:00-23:00 UTC."),
            ("<b> & 'quotes' \"too\"", "line 1\nline 2\t]]> é 漢字 🎉"),
            ("&amp; is not unescaped", "<body>not a child</body>"),
            ("CR\r, CRLF\r\n", "\r\n\r\nline\rfeed\n\r"),
        ];
        let contents = [
            Content::Broadcast,
            Content::Correction { original: 3 },
            Content::Retraction { original: 3 },
        ];
        for (job_id, (subject, body)) in (10..).zip(texts) {
            for content in contents {
                let announcement =
                    Announcement::with_content(job_id, sender.clone(), subject, body, content);
                for user in ["u1", "x.y_z-1", "\u{e9}l\u{e8}ve"] {
                    let recipient = BareJid::new(&format!("{user}@example.com")).unwrap();
                    let built = announcement.message_to(recipient.clone());
                    assert_eq!(
                        written(&announcement, &recipient),
                        built,
                        "{content:?} {subject:?} to {user}"
                    );
                }
            }
        }
    }

    /// A correction (XEP-0308) has its own id and names the original message's; a retraction
    /// (XEP-0424) names the original's origin-id (the same id), carries the XEP-0428 fallback
    /// marker and body and the XEP-0334 store hint, and no subject.
    #[test]
    fn follow_ups_name_the_original_message() {
        let sender = BareJid::new("admin@example.com").unwrap();
        let recipient = BareJid::new("u1@example.com").unwrap();
        let original = message_id(7, &recipient);
        let own = message_id(9, &recipient);
        assert_ne!(original, own);
        let correction = Announcement::with_content(
            9,
            sender.clone(),
            "Fixed",
            "At 23:00",
            Content::Correction { original: 7 },
        );
        let text = text_of(&correction.message_to(recipient.clone()));
        let parts = [
            "<subject>Fixed</subject>".to_owned(),
            "<body>At 23:00</body>".to_owned(),
            format!("<replace xmlns='urn:xmpp:message-correct:0' id='{original}'/>"),
            format!("<origin-id xmlns='urn:xmpp:sid:0' id='{own}'/>"),
        ];
        assert_in_order(&text, &parts);
        assert!(text.contains(&format!(" id='{own}'")), "{text}");

        let retraction = Announcement::with_content(
            9,
            sender,
            "",
            "withdrawn",
            Content::Retraction { original: 7 },
        );
        let text = text_of(&retraction.message_to(recipient));
        let parts = [
            format!("<retract xmlns='urn:xmpp:message-retract:1' id='{original}'/>"),
            "<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/>".to_owned(),
            "<body>withdrawn</body>".to_owned(),
            "<store xmlns='urn:xmpp:hints'/>".to_owned(),
            format!("<origin-id xmlns='urn:xmpp:sid:0' id='{own}'/>"),
        ];
        assert_in_order(&text, &parts);
        assert!(!text.contains("<subject"), "{text}");
    }

    fn translations() -> Vec<Translation> {
        vec![
            Translation {
                language: "de".into(),
                subject: "Wartung <heute>".into(),
                body: "Heute Abend & morgen.".into(),
            },
            Translation {
                language: "pt-BR".into(),
                subject: String::new(),
                body: "Hoje à noite.\r\n".into(),
            },
        ]
    }

    /// Several languages: the message's `xml:lang` is the default's; the default subject and
    /// body come first, then each translation's subject (unless empty) and body with its
    /// `xml:lang`, in the order given, then the origin-id; the written message is the built
    /// one, for a broadcast and a correction; a retraction keeps its plain fallback.
    #[test]
    fn several_languages_in_one_message() {
        let sender = BareJid::new("admin@example.com").unwrap();
        let recipient = BareJid::new("u1@example.com").unwrap();
        let translations = translations();
        let texts = Texts {
            language: Some("en"),
            subject: "Maintenance",
            body: "Tonight.",
            translations: &translations,
        };
        let id = message_id(7, &recipient);
        for content in [
            Content::Broadcast,
            Content::Correction { original: 3 },
            Content::Retraction { original: 3 },
        ] {
            let announcement = Announcement::with_texts(7, sender.clone(), texts, content);
            let mut out = Vec::new();
            announcement.write_message(&recipient, &mut out);
            let wire = String::from_utf8(out).unwrap();
            assert_eq!(
                written(&announcement, &recipient),
                announcement.message_to(recipient.clone()),
                "{content:?}"
            );
            if let Content::Retraction { .. } = content {
                assert!(!wire.contains("xml:lang"), "{wire}");
                continue;
            }
            assert!(
                wire.starts_with("<message type='chat' xml:lang='en' from='admin@example.com' "),
                "{wire}"
            );
            let parts = [
                "<subject>Maintenance</subject>".to_owned(),
                "<body>Tonight.</body>".to_owned(),
                "<subject xml:lang='de'>Wartung &lt;heute&gt;</subject>".to_owned(),
                "<body xml:lang='de'>Heute Abend &amp; morgen.</body>".to_owned(),
                "<body xml:lang='pt-BR'>Hoje à noite.&#13;\n</body>".to_owned(),
                format!("<origin-id xmlns='urn:xmpp:sid:0' id='{id}'/>"),
            ];
            assert_in_order(&wire, &parts);
            assert!(!wire.contains("<subject xml:lang='pt-BR'"), "{wire}");
            // A parser reads each language's text back.
            let message = written(&announcement, &recipient);
            assert_eq!(message.attr_ns(&Namespace::XML, "lang"), Some("en"));
            let bodies: Vec<(Option<&str>, String)> = message
                .children()
                .filter(|child| child.name() == "body")
                .map(|child| (child.attr_ns(&Namespace::XML, "lang"), child.text()))
                .collect();
            assert_eq!(
                bodies,
                [
                    (None, "Tonight.".to_owned()),
                    (Some("de"), "Heute Abend & morgen.".to_owned()),
                    (Some("pt-BR"), "Hoje à noite.\r\n".to_owned()),
                ]
            );
        }
    }

    /// The largest message is the one to the longest address an account can have, and no
    /// message of the job is larger.
    #[test]
    fn the_largest_message_is_to_the_longest_address() {
        let sender = BareJid::new("admin@example.com").unwrap();
        let translations = translations();
        let texts = Texts {
            language: Some("en"),
            subject: "S",
            body: "B & b",
            translations: &translations,
        };
        let announcement = Announcement::with_texts(12, sender, texts, Content::Broadcast);
        let largest = announcement.largest_message_len("example.com");
        let longest = BareJid::new(&format!("{}@example.com", "x".repeat(1023))).unwrap();
        let mut out = Vec::new();
        announcement.write_message(&longest, &mut out);
        assert_eq!(largest, out.len());
        out.clear();
        announcement.write_message(&BareJid::new("u1@example.com").unwrap(), &mut out);
        assert_eq!(largest - out.len(), 1023 - 2);
        // Job ids of any length give ids of the same length.
        let other = Announcement::with_texts(
            MAX_JOB_ID,
            BareJid::new("admin@example.com").unwrap(),
            texts,
            Content::Broadcast,
        );
        assert_eq!(other.largest_message_len("example.com"), largest);
    }

    /// Each of `parts` is in `text`, in this order.
    fn assert_in_order(text: &str, parts: &[String]) {
        let mut rest = text;
        for part in parts {
            let at = rest
                .find(part.as_str())
                .unwrap_or_else(|| panic!("{part} missing or out of order in {text}"));
            rest = &rest[at + part.len()..];
        }
    }

    /// A parser turns a raw carriage return into a line feed: it is written as a reference,
    /// which the server's parser gives back as it is.
    #[test]
    fn carriage_returns_are_written_as_references() {
        let sender = BareJid::new("ops@example.com").unwrap();
        let announcement = Announcement::new(5, sender, "a\rb", "line 1\r\nline 2\r");
        let recipient = BareJid::new("u1@example.com").unwrap();
        let mut out = Vec::new();
        announcement.write_message(&recipient, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('\r'), "{text:?}");
        assert!(text.contains("<subject>a&#13;b</subject>"), "{text}");
        assert!(
            text.contains("<body>line 1&#13;\nline 2&#13;</body>"),
            "{text}"
        );
        let message = written(&announcement, &recipient);
        assert_eq!(child_text(&message, "subject"), "a\rb");
        assert_eq!(child_text(&message, "body"), "line 1\r\nline 2\r");
    }

    /// The text of the first child named `name`.
    fn child_text(message: &Element, name: &str) -> String {
        message
            .children()
            .find(|child| child.name() == name)
            .unwrap_or_else(|| panic!("no <{name}/> in {message:?}"))
            .text()
    }

    #[test]
    fn written_messages_follow_each_other() {
        let sender = BareJid::new("ops@example.com").unwrap();
        let announcement = Announcement::new(3, sender, "s", "b");
        let mut out = Vec::new();
        for user in ["u1", "u2"] {
            announcement.write_message(
                &BareJid::new(&format!("{user}@example.com")).unwrap(),
                &mut out,
            );
        }
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("<message ").count(), 2, "{text}");
        assert!(text.ends_with("</message>"), "{text}");
        assert!(text.contains("</message><message "), "{text}");
    }

    /// Any text is either refused by the request's validation or written into the message so
    /// that a real XML parser (minidom's) gives it back exactly, with the message's id.
    mod round_trip {
        use proptest::prelude::*;

        use super::*;
        use crate::job::spec::is_xml_char;
        use crate::job::{BroadcastRequest, JobSpec, MAX_JOB_ID};

        /// Text made of any characters and of pieces that XML treats specially.
        fn text() -> impl Strategy<Value = String> {
            let special = [
                "\r",
                "\n",
                "\t",
                "\r\n",
                "\n\r",
                "<",
                ">",
                "&",
                "'",
                "\"",
                "]]>",
                "&amp;",
                "&#13;",
                "&#x0;",
                "<![CDATA[",
                "<!--",
                "\u{1F600}",
                "\u{10FFFF}",
                "e\u{301}",
                "\u{1F469}\u{200D}\u{1F4BB}",
                "\u{0}",
                "\u{1B}",
                "\u{7F}",
                "\u{85}",
                "\u{2028}",
                "\u{FEFF}",
                "\u{FFFE}",
                "\u{FFFF}",
                " ",
            ];
            let piece = prop_oneof![
                2 => any::<char>().prop_map(String::from),
                1 => prop::sample::select(special.to_vec()).prop_map(String::from),
            ];
            prop::collection::vec(piece, 0..48).prop_map(|pieces| pieces.concat())
        }

        /// A username: mostly plain, sometimes any characters (those that make no JID are
        /// skipped, as the worker skips them).
        fn user() -> impl Strategy<Value = String> {
            prop_oneof!["[a-z0-9._-]{1,16}", "\\PC{1,8}"]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1024))]

            #[test]
            fn text_is_refused_or_round_trips(
                subject in text(),
                body in text(),
                job_id in 1..=MAX_JOB_ID,
                user in user(),
            ) {
                let sender = BareJid::new("ops@example.com").unwrap();
                let request = BroadcastRequest {
                    name: "property".into(),
                    domain: "example.com".into(),
                    subject: subject.clone(),
                    body: body.clone(),
                    sender: sender.clone(),
                    rate: 10,
                    audience: Default::default(),
                    language: None,
                    translations: Vec::new(),
                };
                // The texts are far below the length limits: only their characters and an
                // empty body are reasons to refuse them.
                let carried = |text: &str| text.chars().all(is_xml_char);
                let acceptable = carried(&subject) && carried(&body) && !body.is_empty();
                let spec = JobSpec::parse(request);
                prop_assert_eq!(spec.is_ok(), acceptable, "{:?}", spec);
                let Ok(spec) = spec else {
                    return Ok(());
                };
                let Ok(recipient) = BareJid::new(&format!("{user}@example.com")) else {
                    return Ok(());
                };
                let announcement = Announcement::new(job_id, sender, &spec.subject, &spec.body);
                let message = written(&announcement, &recipient);
                prop_assert_eq!(child_text(&message, "subject"), subject);
                prop_assert_eq!(child_text(&message, "body"), body);
                let id = message_id(job_id, &recipient);
                prop_assert_eq!(message.attr("id"), Some(id.as_str()));
                prop_assert_eq!(message.attr("to"), Some(recipient.as_str()));
                prop_assert_eq!(message.attr("from"), Some("ops@example.com"));
                let origin = message.get_child("origin-id", ns::SID).unwrap();
                prop_assert_eq!(origin.attr("id"), Some(id.as_str()));
                // The message built with the XMPP parsers carries the same texts.
                let built = announcement.message_to(recipient);
                prop_assert_eq!(child_text(&built, "subject"), child_text(&message, "subject"));
                prop_assert_eq!(child_text(&built, "body"), child_text(&message, "body"));
            }
        }
    }

    #[test]
    fn ping_goes_to_the_parent_domain() {
        let text = xml(&ping(&BareJid::new("broadcast.example.com").unwrap(), "b1"));
        assert!(text.contains("to='example.com'"), "{text}");
        assert!(text.contains("from='broadcast.example.com'"), "{text}");
        assert!(text.contains("<ping xmlns='urn:xmpp:ping'"), "{text}");
    }
}
