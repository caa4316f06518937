//! Property tests of the request pipeline: reading the body, the escape rewrite and the document
//! check never panic and keep what they are given; and generated queries against the endpoint,
//! which must always answer JSON with a known status, quickly.

use std::time::{Duration, Instant};

use async_graphql::Variables;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use super::tests::{DOMAIN_ADMIN, GLOBAL, Lab, nested_fragments};
use super::{document, parse_request, source};

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        exact_json_value(),
        any::<f64>().prop_map(|f| json!(f)),
        prop::collection::vec(any::<f64>().prop_map(|f| json!(f)), 1..3).prop_map(Value::Array),
    ]
}

/// Any JSON value without fractions, which serde_json reads back exactly.
fn exact_json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{0,8}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A request body's JSON: the three fields with values of any type, or anything.
fn request_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_value(),
        (json_value(), json_value(), json_value()).prop_map(|(query, name, variables)| {
            json!({ "query": query, "operationName": name, "variables": variables })
        }),
    ]
}

proptest! {
    #[test]
    fn reading_a_body_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_request(&body);
    }

    #[test]
    fn reading_a_body_never_panics_on_json(body in request_json()) {
        let _ = parse_request(body.to_string().as_bytes());
    }

    #[test]
    fn a_valid_request_round_trips(
        query in ".{0,64}",
        name in prop::option::of("[A-Za-z_][A-Za-z0-9_]{0,10}"),
        variables in prop::collection::btree_map("[a-z]{1,6}", exact_json_value(), 0..5),
        encoded in any::<bool>(),
    ) {
        let variables = Value::Object(variables.into_iter().collect());
        let sent = if encoded { Value::from(variables.to_string()) } else { variables.clone() };
        let body = json!({ "query": query, "operationName": name, "variables": sent });
        let request = parse_request(body.to_string().as_bytes()).unwrap();
        prop_assert_eq!(&request.query, &query);
        prop_assert_eq!(&request.operation_name, &name);
        // Variables set to null are dropped, so that defaults apply.
        let mut expected = variables;
        if let Value::Object(map) = &mut expected {
            map.retain(|_, value| !value.is_null());
        }
        prop_assert_eq!(request.variables, Variables::from_json(expected));
    }

    #[test]
    fn the_document_check_never_panics(query in any::<String>()) {
        let _ = document::check(&query, None, &Variables::default());
    }

    #[test]
    fn the_escape_rewrite_never_panics(query in r#"[\\"u{}dDeE80a-f#\n é😀\[\]]{0,48}"#) {
        let _ = source::prepare(&query);
        let _ = document::check(&query, None, &Variables::default());
    }

    /// Any text, written as a string literal with each character escaped in one of the ways
    /// GraphQL allows, reads back as that text.
    #[test]
    fn any_text_round_trips_through_string_escapes(
        text in any::<String>(),
        styles in prop::collection::vec(0..4u8, 64),
    ) {
        let literal: String = text
            .chars()
            .zip(styles.iter().cycle())
            .map(|(character, style)| escaped(character, *style))
            .collect();
        let query = format!("{{ a(x: \"{literal}\") }}");
        let checked = document::check(&query, None, &Variables::default()).unwrap();
        prop_assert_eq!(argument(&checked.document), Some(text));
    }
}

/// `character` in a GraphQL string literal: raw (style 0, where allowed), as fixed-width
/// escapes (1, a surrogate pair above the BMP), variable-width (2), or upper-case hex (3).
fn escaped(character: char, style: u8) -> String {
    let code = u32::from(character);
    let raw_allowed = !matches!(character, '"' | '\\' | '\n' | '\r');
    match style {
        0 if raw_allowed => character.to_string(),
        2 => format!("\\u{{{code:x}}}"),
        _ if code > 0xFFFF => {
            let mut units = [0u16; 2];
            let units = character.encode_utf16(&mut units);
            if style == 3 {
                format!("\\u{:04X}\\u{:04X}", units[0], units[1])
            } else {
                format!("\\u{:04x}\\u{:04x}", units[0], units[1])
            }
        }
        3 => format!("\\u{code:04X}"),
        _ => format!("\\u{code:04x}"),
    }
}

/// The string value of the first argument of the first field.
fn argument(document: &async_graphql::parser::types::ExecutableDocument) -> Option<String> {
    use async_graphql::Value as Literal;
    use async_graphql::parser::types::Selection;
    let (_, operation) = document.operations.iter().next()?;
    let Selection::Field(field) = &operation.node.selection_set.node.items.first()?.node else {
        return None;
    };
    let value = field.node.arguments.first()?.1.node.clone();
    match value.into_const_with(|_| Err(())) {
        Ok(Literal::String(text)) => Some(text),
        _ => None,
    }
}

/// A value for an argument: right, wrong type, out of range, another domain, a variable.
fn argument_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"example.com\"".to_owned()),
        Just("\"Example.COM\"".to_owned()),
        Just("\"other.org\"".to_owned()),
        Just("\"admin@example.com\"".to_owned()),
        Just("\"\"".to_owned()),
        Just("$v".to_owned()),
        Just("ALL_USERS_IN_DOMAIN".to_owned()),
        Just("[1, 2]".to_owned()),
        prop_oneof![Just(0i64), Just(-1), Just(101), Just(i64::MAX), 1..200i64]
            .prop_map(|n| n.to_string()),
        "\"[a-z\\\\u{}0-9D]{0,10}\"",
    ]
}

fn field_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "getBroadcasts",
        "getBroadcast",
        "countBroadcastRecipients",
        "startBroadcast",
        "abortBroadcast",
        "deleteInactiveBroadcastsByIds",
        "deleteInactiveBroadcastsByDomain",
        "__typename",
        "nope",
    ])
}

fn argument_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "domain",
        "limit",
        "index",
        "id",
        "ids",
        "sample",
        "name",
        "messageSubject",
        "messageBody",
        "senderJid",
        "messageRate",
        "recipientGroup",
        "bogus",
    ])
}

fn sub_selection() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "",
        "{ id }",
        "{ id name domain executionState recipientCount }",
        "{ message ids }",
        "{ domain recipientCount sample }",
        "{ id { x } }",
        "{ __typename }",
    ])
}

/// One field of `broadcast`, maybe aliased, with arguments drawn from the schema's.
fn broadcast_field() -> impl Strategy<Value = String> {
    (
        prop::option::of("[a-c]"),
        field_name(),
        prop::collection::vec((argument_name(), argument_value()), 0..8),
        sub_selection(),
    )
        .prop_map(|(alias, name, arguments, selection)| {
            let alias = alias.map(|alias| format!("{alias}: ")).unwrap_or_default();
            let arguments: Vec<String> = arguments
                .into_iter()
                .map(|(name, value)| format!("{name}: {value}"))
                .collect();
            let arguments = if arguments.is_empty() {
                String::new()
            } else {
                format!("({})", arguments.join(", "))
            };
            format!("{alias}{name}{arguments} {selection}")
        })
}

/// A whole request: an operation whose `broadcast` selects generated fields, directly, in an
/// inline fragment and through a chain of fragments that each spread the previous `fan_out`
/// times (sometimes with a cycle or an unknown fragment), with or without variables.
fn generated_request() -> impl Strategy<Value = (String, Value)> {
    (
        any::<bool>(),
        prop::collection::vec(broadcast_field(), 1..4),
        0..40usize,
        1..4usize,
        0..4u8,
        prop::option::of(argument_value()),
    )
        .prop_map(|(mutation, fields, chain, fan_out, twist, variable)| {
            let (kind, on) = if mutation {
                ("mutation", "BroadcastAdminMutation")
            } else {
                ("query", "BroadcastAdminQuery")
            };
            let fields = fields.join(" ");
            let mut query = format!(
                "{kind} Op($v: DomainName) {{ broadcast {{ ... on {on} {{ {fields} }} ...F{chain} }} }}\n\
                 fragment F0 on {on} {{ {fields} }}\n"
            );
            for n in 1..=chain {
                let spreads = format!("...F{} ", n - 1).repeat(fan_out);
                query.push_str(&format!("fragment F{n} on {on} {{ {spreads} }}\n"));
            }
            match twist {
                1 => query.push_str(&format!("fragment G on {on} {{ ...F{chain} ...G }}\n")),
                2 => query = query.replace("...F0", "...Missing"),
                _ => {}
            }
            let variables = match variable {
                Some(value) if value.starts_with('"') => json!({ "v": value.trim_matches('"') }),
                Some(value) => json!({ "v": value }),
                None => json!({}),
            };
            let body = json!({ "query": query, "operationName": "Op", "variables": variables });
            (query, body)
        })
}

/// Answers of the endpoint to generated queries: never a panic, always JSON with a known
/// status and codes, each within a bound that exponential work would break.
#[test]
fn the_endpoint_answers_generated_queries_quickly() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let lab = runtime.block_on(Lab::new());
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (generated_request(), any::<bool>());
    runner
        .run(&strategy, |((query, body), global)| {
            let auth = if global { GLOBAL } else { DOMAIN_ADMIN };
            let started = Instant::now();
            let (status, answer) = runtime.block_on(lab.post(auth, body));
            let elapsed = started.elapsed();
            prop_assert!(elapsed < Duration::from_secs(1), "{elapsed:?} for {query}");
            prop_assert!(matches!(status, 200 | 400 | 401), "{status} {answer}");
            let errors = answer.get("errors").and_then(Value::as_array);
            if status != 200 {
                prop_assert!(answer.get("data").is_none(), "{answer}");
                prop_assert!(errors.is_some_and(|e| !e.is_empty()), "{answer}");
            } else {
                prop_assert!(answer.get("data").is_some(), "{answer}");
            }
            for error in errors.into_iter().flatten() {
                let code = error.pointer("/extensions/code").and_then(Value::as_str);
                prop_assert!(code.is_some(), "an error without a code: {answer}");
            }
            Ok(())
        })
        .unwrap();
}

/// The worst shapes of the generator, beyond its random draws: long fragment chains are all
/// refused quickly.
#[test]
fn fragment_chains_of_any_length_are_bounded() {
    for depth in 1..=31 {
        let started = Instant::now();
        let query = nested_fragments(depth);
        let outcome = document::check(&query, None, &Variables::default());
        assert!(started.elapsed() < Duration::from_millis(200), "{depth}");
        // 2^n selections of a two-selection fragment: past 2^6 the bound refuses.
        assert_eq!(outcome.is_ok(), depth <= 6, "{depth}");
    }
}
