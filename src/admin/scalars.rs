//! MongooseIM's custom scalars: `DomainName`, `BareJID`, `JID`, `PosInt`, `NonNegInt` and its
//! `DateTime` output (`YYYY-MM-DDTHH:MM:SSZ`). Input rules are enforced while the request is
//! validated, before anything runs, so a resolver only ever sees valid values.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{DateTime as ChronoDateTime, Utc};

/// A normalised XMPP domain name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainName(pub String);

#[Scalar(name = "DomainName")]
impl ScalarType for DomainName {
    /// Checked while the request is validated, so a bad value stops the whole request.
    fn is_valid(value: &Value) -> bool {
        Self::parse(value.clone()).is_ok()
    }

    fn parse(value: Value) -> InputValueResult<Self> {
        let Value::String(text) = &value else {
            return Err(InputValueError::expected_type(value));
        };
        if text.is_empty() {
            return Err(InputValueError::custom("empty_domain_name"));
        }
        match jid::BareJid::new(text) {
            Ok(jid) if jid.node().is_none() => Ok(DomainName(jid.to_string())),
            _ => Err(InputValueError::custom("failed_to_parse_domain_name")),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// A JID with a local part and no resource, as an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BareJid(pub jid::BareJid);

#[Scalar(name = "BareJID")]
impl ScalarType for BareJid {
    /// Checked while the request is validated, so a bad value stops the whole request.
    fn is_valid(value: &Value) -> bool {
        Self::parse(value.clone()).is_ok()
    }

    fn parse(value: Value) -> InputValueResult<Self> {
        let Value::String(text) = &value else {
            return Err(InputValueError::expected_type(value));
        };
        let jid =
            jid::Jid::new(text).map_err(|_| InputValueError::custom("failed_to_parse_jid"))?;
        if jid.node().is_none() {
            return Err(InputValueError::custom("jid_without_local_part"));
        }
        if jid.resource().is_some() {
            return Err(InputValueError::custom("jid_with_resource"));
        }
        Ok(BareJid(jid.to_bare()))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// A JID, as an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jid(pub String);

#[Scalar(name = "JID")]
impl ScalarType for Jid {
    /// Checked while the request is validated, so a bad value stops the whole request.
    fn is_valid(value: &Value) -> bool {
        Self::parse(value.clone()).is_ok()
    }

    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => jid::Jid::new(text)
                .map(|jid| Jid(jid.to_string()))
                .map_err(|_| InputValueError::custom("failed_to_parse_jid")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// An integer greater than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosInt(pub i64);

#[Scalar(name = "PosInt")]
impl ScalarType for PosInt {
    /// Checked while the request is validated, so a bad value stops the whole request.
    fn is_valid(value: &Value) -> bool {
        Self::parse(value.clone()).is_ok()
    }

    fn parse(value: Value) -> InputValueResult<Self> {
        match integer(&value) {
            Some(n) if n > 0 => Ok(PosInt(n)),
            _ => Err(InputValueError::custom("Value is not a positive integer")),
        }
    }

    fn to_value(&self) -> Value {
        Value::from(self.0)
    }
}

/// An integer of zero or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonNegInt(pub i64);

#[Scalar(name = "NonNegInt")]
impl ScalarType for NonNegInt {
    /// Checked while the request is validated, so a bad value stops the whole request.
    fn is_valid(value: &Value) -> bool {
        Self::parse(value.clone()).is_ok()
    }

    fn parse(value: Value) -> InputValueResult<Self> {
        match integer(&value) {
            Some(n) if n >= 0 => Ok(NonNegInt(n)),
            _ => Err(InputValueError::custom(
                "Value is not a non-negative integer",
            )),
        }
    }

    fn to_value(&self) -> Value {
        Value::from(self.0)
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        _ => None,
    }
}

/// A point in time, written `YYYY-MM-DDTHH:MM:SSZ` (whole seconds, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime(pub ChronoDateTime<Utc>);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    /// Checked while the request is validated, so a bad value stops the whole request.
    fn is_valid(value: &Value) -> bool {
        Self::parse(value.clone()).is_ok()
    }

    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => ChronoDateTime::parse_from_rfc3339(text)
                .map(|time| DateTime(time.with_timezone(&Utc)))
                .map_err(|_| InputValueError::custom("failed_to_parse_datetime")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%dT%H:%M:%SZ").to_string())
    }
}

/// Why `value` is not a valid `scalar`, in the scalar's own words; `None` if it is valid or
/// the scalar is not one of ours.
pub fn coercion_failure(scalar: &str, value: &Value) -> Option<String> {
    fn reason<T: ScalarType + async_graphql::InputType>(value: &Value) -> Option<String> {
        // The error's text is `Failed to parse "Type": reason`.
        let error = <T as ScalarType>::parse(value.clone()).err()?;
        let message = error.into_server_error(Default::default()).message;
        Some(match message.split_once("\": ") {
            Some((_, reason)) => reason.to_owned(),
            None => message,
        })
    }
    match scalar {
        "DomainName" => reason::<DomainName>(value),
        "BareJID" => reason::<BareJid>(value),
        "JID" => reason::<Jid>(value),
        "PosInt" => reason::<PosInt>(value),
        "NonNegInt" => reason::<NonNegInt>(value),
        "DateTime" => reason::<DateTime>(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> Value {
        Value::String(value.to_owned())
    }

    #[test]
    fn domain_names_are_normalised_and_checked() {
        assert_eq!(
            DomainName::parse(text("Example.COM")).unwrap().0,
            "example.com"
        );
        assert!(DomainName::parse(text("")).is_err());
        assert!(DomainName::parse(text("user@example.com")).is_err());
    }

    #[test]
    fn bare_jids_need_a_local_part_and_no_resource() {
        assert_eq!(
            BareJid::parse(text("Admin@Example.com"))
                .unwrap()
                .0
                .to_string(),
            "admin@example.com"
        );
        assert!(BareJid::parse(text("example.com")).is_err());
        assert!(BareJid::parse(text("a@example.com/res")).is_err());
        assert!(BareJid::parse(text("@@")).is_err());
    }

    #[test]
    fn integers_keep_their_bounds() {
        assert!(PosInt::parse(Value::from(0)).is_err());
        assert_eq!(PosInt::parse(Value::from(1)).unwrap(), PosInt(1));
        assert!(NonNegInt::parse(Value::from(-1)).is_err());
        assert_eq!(NonNegInt::parse(Value::from(0)).unwrap(), NonNegInt(0));
        assert!(PosInt::parse(text("5")).is_err());
    }

    #[test]
    fn date_times_are_whole_seconds_in_utc() {
        let time = ChronoDateTime::parse_from_rfc3339("2026-11-29T04:02:36.987+01:00").unwrap();
        let value = DateTime(time.with_timezone(&Utc)).to_value();
        assert_eq!(value, text("2026-11-29T03:02:36Z"));
    }
}
