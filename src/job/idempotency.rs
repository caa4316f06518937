//! Idempotent requests: a key the client chooses for one request, and the fingerprint of that
//! request's arguments, stored with the job it created (design invariant 11).
//!
//! The same key on the same domain with the same arguments answers with the job created
//! first; the same key with other arguments is refused. The fingerprint is the SHA-256 of a
//! canonical JSON serialisation of the arguments (an object: its keys are written sorted), so
//! two requests match when every argument is equal, whatever their order or escaping.

use sha2::{Digest, Sha256};

use super::spec::{InvalidRequest, Parameter};

/// Allowed length of an idempotency key, in characters. Long enough for a UUID or a hex
/// SHA-256 with a prefix; short enough for an index of MySQL's (with the domain).
pub const KEY_LENGTH: std::ops::RangeInclusive<usize> = 1..=128;

/// A checked idempotency key and the fingerprint of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The client's key: [`KEY_LENGTH`] printable ASCII characters, no space.
    pub key: String,
    /// Lower-case hex SHA-256 of the request's canonical arguments.
    pub fingerprint: String,
}

impl Idempotency {
    /// The key of a request whose arguments are `arguments` (an object naming the operation
    /// and every argument that decides what is sent, the domain aside: it scopes the key).
    /// A key that is empty, longer than [`KEY_LENGTH`] or has a character outside printable
    /// ASCII (`!` to `~`) is `bad_parameter`.
    pub fn new(key: String, arguments: &serde_json::Value) -> Result<Self, InvalidRequest> {
        let printable = key.bytes().all(|byte| byte.is_ascii_graphic());
        if !printable || !KEY_LENGTH.contains(&key.len()) {
            return Err(InvalidRequest::BadParameter(Parameter::IdempotencyKey));
        }
        let digest = Sha256::digest(arguments.to_string().as_bytes());
        let fingerprint = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        Ok(Idempotency { key, fingerprint })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_fingerprint_is_the_arguments_and_only_them() {
        let one = Idempotency::new("k".into(), &json!({"op": "start", "rate": 5})).unwrap();
        let reordered = Idempotency::new("k".into(), &json!({"rate": 5, "op": "start"})).unwrap();
        let other = Idempotency::new("k".into(), &json!({"op": "start", "rate": 6})).unwrap();
        assert_eq!(one, reordered);
        assert_ne!(one.fingerprint, other.fingerprint);
        // printf '%s' '{"op":"start","rate":5}' | sha256sum
        assert_eq!(
            one.fingerprint,
            "19eda321eb82b0adb10ad8bf2c178651aa5267c7b4ce40ddf9431e0d11a88afd"
        );
    }

    #[test]
    fn keys_are_bounded_printable_ascii() {
        let arguments = json!({});
        let max = "k".repeat(*KEY_LENGTH.end());
        assert!(Idempotency::new(max.clone(), &arguments).is_ok());
        assert!(Idempotency::new("3f9a-notice_1:x~".into(), &arguments).is_ok());
        let refused = Err(InvalidRequest::BadParameter(Parameter::IdempotencyKey));
        for bad in [
            String::new(),
            max + "k",
            "a b".into(),
            "é".into(),
            "a\nb".into(),
        ] {
            assert_eq!(
                Idempotency::new(bad.clone(), &arguments),
                refused,
                "{bad:?}"
            );
        }
    }
}
