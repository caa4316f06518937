//! What a broadcast message must look like: the deterministic id and a structural check of
//! a serialized `<message/>` (attribute order and quoting are the server's business).

use sha1::{Digest, Sha1};
use tokio_xmpp::minidom::Element;

/// Lower-case hexadecimal SHA-1 of `text` (UTF-8).
pub fn sha1_hex(text: &str) -> String {
    Sha1::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The id of job `job_id`'s message to `recipient` (a bare JID):
/// `"xb-"` + hex SHA-1 of `"{job_id}:{recipient}"`.
pub fn message_id(job_id: i64, recipient: &str) -> String {
    format!("xb-{}", sha1_hex(&format!("{job_id}:{recipient}")))
}

/// The content every recipient of one job must get.
#[derive(Clone, Debug)]
pub struct Announcement {
    pub job_id: i64,
    pub sender: String,
    pub subject: String,
    pub body: String,
}

impl Announcement {
    /// The stanza the component must send to `recipient` (attribute values and texts are
    /// XML-escaped).
    pub fn stanza(&self, recipient: &str) -> String {
        let id = message_id(self.job_id, recipient);
        format!(
            "<message type='chat' from='{}' to='{}' id='{id}'><subject>{}</subject>\
             <body>{}</body><origin-id xmlns='urn:xmpp:sid:0' id='{id}'/></message>",
            escape(&self.sender),
            escape(recipient),
            escape(&self.subject),
            escape(&self.body),
        )
    }

    /// Panics unless `xml` is exactly this job's message to `recipient`:
    /// `<message type='chat' from= to= id=>` holding `<subject/>`, `<body/>` and
    /// `<origin-id xmlns='urn:xmpp:sid:0' id=/>` in that order and nothing else.
    /// Only namespaced attributes such as `xml:lang` (added by Prosody) may be added.
    pub fn assert_stanza(&self, xml: &str, recipient: &str) {
        if let Err(problem) = self.check_stanza(xml, recipient) {
            panic!("unexpected stanza for {recipient}: {problem}\n{xml}");
        }
    }

    /// Like [`Announcement::assert_stanza`], returning the first difference found.
    pub fn check_stanza(&self, xml: &str, recipient: &str) -> Result<(), String> {
        let message = parse_stored(xml).map_err(|e| format!("parse: {e}"))?;
        let id = message_id(self.job_id, recipient);
        let expected_attrs = [
            ("type", "chat"),
            ("from", self.sender.as_str()),
            ("to", recipient),
            ("id", id.as_str()),
        ];
        if !message.is("message", "jabber:client") {
            return Err("not a <message/>".into());
        }
        for (name, value) in expected_attrs {
            if message.attr(name) != Some(value) {
                return Err(format!("attribute {name} is {:?}", message.attr(name)));
            }
        }
        // Namespaced attributes (Prosody adds xml:lang) are not part of the contract.
        let plain = message.attrs().iter().filter(|((ns, _), _)| ns.is_none());
        if plain.count() != expected_attrs.len() {
            return Err("extra attributes".into());
        }
        let children: Vec<&Element> = message.children().collect();
        let [subject, body, origin] = children[..] else {
            return Err(format!("{} children instead of 3", children.len()));
        };
        if !subject.is("subject", "jabber:client") || subject.text() != self.subject {
            return Err(format!(
                "first child is not <subject>{}</subject>",
                self.subject
            ));
        }
        if !body.is("body", "jabber:client") || body.text() != self.body {
            return Err("second child is not the expected <body/>".into());
        }
        if !origin.is("origin-id", "urn:xmpp:sid:0") || origin.attr("id") != Some(id.as_str()) {
            return Err(format!("third child is not <origin-id id='{id}'/>"));
        }
        Ok(())
    }
}

/// Escapes the five XML special characters.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// A `<message/>` as a server stored it offline. Prosody stores stanzas without their
/// namespace; minidom needs one.
pub fn parse_stored(xml: &str) -> Result<Element, tokio_xmpp::minidom::Error> {
    let start_tag = &xml[..xml.find('>').unwrap_or(xml.len())];
    if start_tag.contains("xmlns=") {
        xml.parse()
    } else {
        xml.replacen("<message", "<message xmlns='jabber:client'", 1)
            .parse()
    }
}
