//! Everything XMPP: the component connection and the stanzas it carries.
//!
//! Only this module builds XML or touches the socket. The rest of the program sees a
//! [`Connection`] that hands out [`Link`]s, and an [`Announcement`] that makes one message per
//! recipient.

mod connection;
mod stanza;

pub use connection::{Connection, HARD_TIMEOUT, Link, LinkDown, SOFT_TIMEOUT};
pub use stanza::{Announcement, Content, Texts, message_id};
