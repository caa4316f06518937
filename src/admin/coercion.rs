//! Input coercion errors in MongooseIM's words: "Input coercion failed for type PosInt with
//! value 0. The reason it failed is: Value is not a positive integer".
//!
//! async-graphql reports a value that its scalar refuses as `Invalid value for argument "x",
//! expected type "PosInt"` at the argument's position; this finds that argument in the document,
//! resolves its variables and asks the scalar why.

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Pos, Positioned, Value, Variables};

use super::scalars::coercion_failure;

/// MongooseIM's message for the refused argument at `position`, whose type is `scalar`; for
/// a list, the element at `index` (async-graphql names it `argument.index`).
pub fn explain(
    document: &ExecutableDocument,
    variables: &Variables,
    position: Pos,
    scalar: &str,
    index: Option<usize>,
) -> Option<String> {
    let value = find_argument(document, position, variables)?;
    let value = match (index, value) {
        (Some(index), Value::List(mut items)) if index < items.len() => items.swap_remove(index),
        (_, value) => value,
    };
    let reason = coercion_failure(scalar, &value)?;
    Some(format!(
        "Input coercion failed for type {scalar} with value {value}. The reason it failed is: {reason}"
    ))
}

/// The scalar type named by an async-graphql argument error, if it is one.
pub fn refused_scalar(message: &str) -> Option<&str> {
    let (_, tail) = message.split_once("expected type \"")?;
    let scalar = tail.split('"').next()?;
    message
        .starts_with("Invalid value for argument")
        .then_some(scalar)
}

/// The argument named by an async-graphql argument error (`Invalid value for argument
/// "messageRate", …`, or `"recipients.1"` for an element of a list), if it is one.
pub fn refused_argument(message: &str) -> Option<&str> {
    let tail = message.strip_prefix("Invalid value for argument \"")?;
    let path = tail.split('"').next()?;
    path.split('.').next().filter(|name| !name.is_empty())
}

/// The index of the refused element, when the refused argument is a list's element.
pub fn refused_index(message: &str) -> Option<usize> {
    let tail = message.strip_prefix("Invalid value for argument \"")?;
    let path = tail.split('"').next()?;
    path.split('.').nth(1)?.parse().ok()
}

/// The value, with its variables resolved, of the argument whose name is at `position`.
fn find_argument(
    document: &ExecutableDocument,
    position: Pos,
    variables: &Variables,
) -> Option<Value> {
    let operations = document
        .operations
        .iter()
        .map(|(_, operation)| &operation.node.selection_set);
    let fragments = document
        .fragments
        .values()
        .map(|fragment| &fragment.node.selection_set);
    operations
        .chain(fragments)
        .find_map(|selections| in_selection_set(selections, position, variables))
}

fn in_selection_set(
    selections: &Positioned<SelectionSet>,
    position: Pos,
    variables: &Variables,
) -> Option<Value> {
    selections
        .node
        .items
        .iter()
        .find_map(|selection| match &selection.node {
            Selection::Field(field) => {
                let argument = field
                    .node
                    .arguments
                    .iter()
                    .find(|(name, _)| name.pos == position);
                match argument {
                    Some((_, value)) => {
                        let resolve = |name| variables.get(&name).cloned().ok_or(());
                        value.node.clone().into_const_with(resolve).ok()
                    }
                    None => in_selection_set(&field.node.selection_set, position, variables),
                }
            }
            Selection::InlineFragment(fragment) => {
                in_selection_set(&fragment.node.selection_set, position, variables)
            }
            Selection::FragmentSpread(_) => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_literals_and_variables() {
        let query =
            "query($r: PosInt!) { broadcast { getBroadcasts(domain: \"\", limit: $r) { id } } }";
        let document = async_graphql::parser::parse_query(query).unwrap();
        let variables = Variables::from_json(serde_json::json!({ "r": 0 }));
        let domain_at = Pos {
            line: 1,
            column: 48,
        };
        let limit_at = Pos {
            line: 1,
            column: 60,
        };
        assert_eq!(
            explain(&document, &variables, domain_at, "DomainName", None).as_deref(),
            Some(
                "Input coercion failed for type DomainName with value \"\". The reason it failed is: empty_domain_name"
            )
        );
        assert_eq!(
            explain(&document, &variables, limit_at, "PosInt", None).as_deref(),
            Some(
                "Input coercion failed for type PosInt with value 0. The reason it failed is: Value is not a positive integer"
            )
        );
        assert_eq!(
            refused_scalar("Invalid value for argument \"limit\", expected type \"PosInt\""),
            Some("PosInt")
        );
    }
}
