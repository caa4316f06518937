//! The stanzas this component sends: the broadcast message, pings and replies. The only place
//! that builds XML.

use jid::{BareJid, Jid};
use sha1::{Digest, Sha1};
use tokio_xmpp::Stanza;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Id, Message, MessageType};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::parsers::stanza_id::OriginId;

use crate::broadcast::JobId;

/// The id of the message for `recipient` in job `job_id`, used both as the stanza id and as the
/// XEP-0359 origin-id: `xb-` followed by the lower-case hex SHA-1 of `"{job_id}:{recipient}"`.
/// The same job and recipient always give the same id, so a client can drop repeats.
pub fn message_id(job_id: JobId, recipient: &BareJid) -> String {
    let digest = Sha1::digest(format!("{job_id}:{recipient}").as_bytes());
    let mut id = String::with_capacity(3 + 2 * digest.len());
    id.push_str("xb-");
    for byte in digest {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// The content every recipient of one job receives.
#[derive(Debug, Clone)]
pub struct Announcement {
    pub job_id: JobId,
    pub sender: BareJid,
    pub subject: String,
    pub body: String,
}

impl Announcement {
    /// The message for one recipient: type chat, from the sender, children subject, body and
    /// origin-id in that order.
    pub fn message_to(&self, recipient: BareJid) -> Stanza {
        let id = message_id(self.job_id, &recipient);
        let mut message = Message::new_with_type(MessageType::Chat, Some(Jid::from(recipient)));
        message.from = Some(Jid::from(self.sender.clone()));
        message.id = Some(Id(id.clone()));
        message.payloads.push(
            Element::builder("subject", ns::DEFAULT_NS)
                .append(self.subject.as_str())
                .build(),
        );
        message.payloads.push(
            Element::builder("body", ns::DEFAULT_NS)
                .append(self.body.as_str())
                .build(),
        );
        message.payloads.push(OriginId { id }.into());
        Stanza::Message(message)
    }
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

    fn xml(stanza: &Stanza) -> String {
        String::from(&Element::from(stanza))
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
        let announcement = Announcement {
            job_id: 7,
            sender: BareJid::new("admin@example.com").unwrap(),
            subject: "Maintenance <tonight>".into(),
            body: "a & b".into(),
        };
        let recipient = BareJid::new("u1@example.com").unwrap();
        let id = message_id(7, &recipient);
        let text = xml(&announcement.message_to(recipient));
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

    #[test]
    fn ping_goes_to_the_parent_domain() {
        let text = xml(&ping(&BareJid::new("broadcast.example.com").unwrap(), "b1"));
        assert!(text.contains("to='example.com'"), "{text}");
        assert!(text.contains("from='broadcast.example.com'"), "{text}");
        assert!(text.contains("<ping xmlns='urn:xmpp:ping'"), "{text}");
    }
}
