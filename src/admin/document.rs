//! What a GraphQL request may cost, and which domains it touches, decided on the parsed document
//! before anything is validated or executed.
//!
//! async-graphql's validation expands every fragment spread where it appears, so a few fragments
//! that each spread the previous one twice make it do 2^n work before it refuses the query as too
//! complex. Here each fragment is measured once (memoised), so the whole check is linear in the
//! document: the document's size, then the cost of every operation and fragment after expansion
//! (selections, field depth, aliases), with cycles and unknown fragments refused. Every limit is
//! far above what the broadcast queries need (the largest, `getBroadcasts` with every job field,
//! has 18 selections, depth 3 and no alias).
//!
//! The `domain` arguments of the selected operation (through fragments, literal or from the
//! variables or their defaults) are collected and normalised as the `DomainName` scalar does, so
//! that a caller who may not manage one of them is refused before any field runs.

use std::collections::HashMap;

use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, ScalarType, Value, Variables};

use super::codes::ErrorCode;
use super::scalars::DomainName;
use super::source::{self, SourceError};

/// Largest query text accepted, in bytes: room for a `startBroadcast` with its longest body and
/// subject written as literals with every character escaped (`\uXXXX`, 6 bytes each).
pub const MAX_QUERY_BYTES: usize = 128 * 1024;
/// Most operations and fragments in one document.
pub const MAX_DEFINITIONS: usize = 32;
/// Most selections (fields, fragment spreads, inline fragments) written in one document.
pub const MAX_SELECTIONS: usize = 200;
/// Most arguments written in one document, directives' included.
pub const MAX_ARGUMENTS: usize = 100;
/// Most directives written in one document.
pub const MAX_DIRECTIVES: usize = 20;
/// Most variables defined in one document.
pub const MAX_VARIABLES: usize = 50;
/// Most selections of one operation or fragment once its fragments are expanded: the work of
/// validation and execution grows with it.
pub const MAX_EXPANDED_SELECTIONS: usize = 200;
/// Most aliased fields of one operation or fragment once its fragments are expanded: aliases are
/// what make one request run a field several times (each `getBroadcasts` reads up to its limit of
/// jobs).
pub const MAX_EXPANDED_ALIASES: usize = 10;
/// Deepest nesting of fields once fragments are expanded (async-graphql checks the same bound
/// again during validation).
pub const MAX_DEPTH: usize = 8;

/// Why a request was refused before validation.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The query text is larger than [`MAX_QUERY_BYTES`].
    #[error("Query too large: {size} bytes, at most {MAX_QUERY_BYTES}")]
    TooLarge { size: usize },
    /// The text could not be read (escapes, nesting).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The text is not a GraphQL document.
    #[error("{0}")]
    Parse(#[from] async_graphql::parser::Error),
    /// Over one of the limits above.
    #[error("Query too complex: {what} is {found}, at most {limit}")]
    TooComplex {
        what: &'static str,
        found: u64,
        limit: usize,
    },
    /// A fragment that spreads itself, directly or not.
    #[error("Cannot spread fragment \"{0}\" within itself")]
    FragmentCycle(String),
    /// A spread of a fragment the document does not define.
    #[error("Unknown fragment \"{0}\"")]
    UnknownFragment(String),
}

impl Refusal {
    /// The `extensions.code` of the answer (HTTP 400).
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::TooLarge { .. } | Refusal::TooComplex { .. } => ErrorCode::QueryTooComplex,
            Refusal::Source(SourceError::TooDeep { .. }) => ErrorCode::QueryTooComplex,
            Refusal::Source(_) | Refusal::Parse(_) => ErrorCode::ParserError,
            Refusal::FragmentCycle(_) | Refusal::UnknownFragment(_) => ErrorCode::ValidationError,
        }
    }
}

/// A `domain` argument of the selected operation, normalised, with the field that takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainUse {
    pub domain: String,
    /// The field's name (not its alias), such as `startBroadcast`.
    pub field: String,
}

/// A request's document, checked.
#[derive(Debug)]
pub struct Checked {
    /// The text after the escape rewrite.
    pub query: String,
    pub document: ExecutableDocument,
    /// Every `domain` of the selected operation, in document order.
    pub domains: Vec<DomainUse>,
}

/// Reads, parses and bounds a request's query, and collects the domains of the operation that
/// would run (`operation_name`, or the only one).
pub fn check(
    query: &str,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Result<Checked, Refusal> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(Refusal::TooLarge { size: query.len() });
    }
    let text = source::prepare(query)?.text;
    let document = async_graphql::parser::parse_query(&text)?;
    bound(&document)?;
    let domains = selected(&document, operation_name)
        .map(|operation| domains(&document, operation, variables))
        .unwrap_or_default();
    Ok(Checked {
        query: text.into_owned(),
        document,
        domains,
    })
}

fn too_complex(what: &'static str, found: u64, limit: usize) -> Result<(), Refusal> {
    if found > limit as u64 {
        Err(Refusal::TooComplex { what, found, limit })
    } else {
        Ok(())
    }
}

/// Checks the document's size as written, then each operation and fragment after expansion.
pub fn bound(document: &ExecutableDocument) -> Result<(), Refusal> {
    let definitions = document.operations.iter().count() + document.fragments.len();
    too_complex(
        "the number of operations and fragments",
        definitions as u64,
        MAX_DEFINITIONS,
    )?;
    let mut written = Written::default();
    for (_, operation) in document.operations.iter() {
        written.variables += operation.node.variable_definitions.len();
        written.directives(&operation.node.directives);
        written.selection_set(&operation.node.selection_set.node);
    }
    for fragment in document.fragments.values() {
        written.directives(&fragment.node.directives);
        written.selection_set(&fragment.node.selection_set.node);
    }
    too_complex(
        "the number of selections",
        written.selections as u64,
        MAX_SELECTIONS,
    )?;
    too_complex(
        "the number of arguments",
        written.arguments as u64,
        MAX_ARGUMENTS,
    )?;
    too_complex(
        "the number of directives",
        written.directives as u64,
        MAX_DIRECTIVES,
    )?;
    too_complex(
        "the number of variables",
        written.variables as u64,
        MAX_VARIABLES,
    )?;

    let mut expansion = Expansion {
        fragments: &document.fragments,
        known: HashMap::new(),
    };
    let operations = document
        .operations
        .iter()
        .map(|(_, operation)| &operation.node.selection_set.node);
    let fragments = document
        .fragments
        .values()
        .map(|fragment| &fragment.node.selection_set.node);
    for selection_set in operations.chain(fragments) {
        let cost = expansion.selection_set(selection_set)?;
        too_complex(
            "the number of selections after expanding fragments",
            cost.selections,
            MAX_EXPANDED_SELECTIONS,
        )?;
        too_complex(
            "the number of aliases after expanding fragments",
            cost.aliases,
            MAX_EXPANDED_ALIASES,
        )?;
        too_complex(
            "the depth after expanding fragments",
            cost.depth as u64,
            MAX_DEPTH,
        )?;
    }
    Ok(())
}

/// Counts of the document as written.
#[derive(Default)]
struct Written {
    selections: usize,
    arguments: usize,
    directives: usize,
    variables: usize,
}

impl Written {
    fn directives(&mut self, directives: &[Positioned<async_graphql::parser::types::Directive>]) {
        self.directives += directives.len();
        for directive in directives {
            self.arguments += directive.node.arguments.len();
        }
    }

    /// Recursion is bounded by the parser's limit on nested selection sets.
    fn selection_set(&mut self, selection_set: &SelectionSet) {
        for selection in &selection_set.items {
            self.selections += 1;
            self.directives(selection.node.directives());
            match &selection.node {
                Selection::Field(field) => {
                    self.arguments += field.node.arguments.len();
                    self.selection_set(&field.node.selection_set.node);
                }
                Selection::InlineFragment(inline) => {
                    self.selection_set(&inline.node.selection_set.node);
                }
                Selection::FragmentSpread(_) => {}
            }
        }
    }
}

/// The cost of a selection set with its fragments expanded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cost {
    /// Fields, spreads and inline fragments, saturating.
    selections: u64,
    /// Aliased fields, saturating.
    aliases: u64,
    /// Deepest nesting of fields.
    depth: usize,
}

impl Cost {
    fn add(&mut self, other: Cost) {
        self.selections = self.selections.saturating_add(other.selections);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.depth = self.depth.max(other.depth);
    }
}

/// A fragment being measured (`None`, so that reaching it again is a cycle) or measured.
type Known<'a> = HashMap<&'a str, Option<Cost>>;

/// Measures selection sets, each fragment once.
struct Expansion<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    known: Known<'a>,
}

impl<'a> Expansion<'a> {
    /// Recursion is bounded by the parser's limit on nested selection sets, times the number of
    /// fragments (each is entered once).
    fn selection_set(&mut self, selection_set: &'a SelectionSet) -> Result<Cost, Refusal> {
        let mut cost = Cost::default();
        for selection in &selection_set.items {
            let mut one = match &selection.node {
                Selection::Field(field) => {
                    let mut inner = self.selection_set(&field.node.selection_set.node)?;
                    inner.depth += 1;
                    if field.node.alias.is_some() {
                        inner.aliases = inner.aliases.saturating_add(1);
                    }
                    inner
                }
                Selection::InlineFragment(inline) => {
                    self.selection_set(&inline.node.selection_set.node)?
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str())?
                }
            };
            one.selections = one.selections.saturating_add(1);
            cost.add(one);
        }
        Ok(cost)
    }

    fn fragment(&mut self, name: &'a str) -> Result<Cost, Refusal> {
        match self.known.get(name) {
            Some(Some(cost)) => return Ok(*cost),
            Some(None) => return Err(Refusal::FragmentCycle(name.to_owned())),
            None => {}
        }
        let fragment = self
            .fragments
            .get(name)
            .ok_or_else(|| Refusal::UnknownFragment(name.to_owned()))?;
        self.known.insert(name, None);
        let cost = self.selection_set(&fragment.node.selection_set.node)?;
        self.known.insert(name, Some(cost));
        Ok(cost)
    }
}

/// The operation that would run: the named one, or the only one.
fn selected<'a>(
    document: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    let mut operations = document.operations.iter();
    let operation = match operation_name {
        Some(name) => operations
            .find(|(found, _)| found.map(Name::as_str) == Some(name))
            .map(|(_, operation)| operation),
        None => match (operations.next(), operations.next()) {
            (Some((_, operation)), None) => Some(operation),
            _ => None,
        },
    };
    operation.map(|operation| &operation.node)
}

/// The normalised `domain` arguments of `operation`, each fragment read once. A value that is
/// missing or does not normalise is left out: validation refuses it before anything runs.
fn domains(
    document: &ExecutableDocument,
    operation: &OperationDefinition,
    variables: &Variables,
) -> Vec<DomainUse> {
    let defaults: HashMap<&str, &Value> = operation
        .variable_definitions
        .iter()
        .filter_map(|definition| {
            let default = definition.node.default_value()?;
            Some((definition.node.name.node.as_str(), default))
        })
        .collect();
    let mut collector = Domains {
        document,
        variables,
        defaults,
        visited: Default::default(),
        found: Vec::new(),
    };
    collector.selection_set(&operation.selection_set.node);
    collector.found
}

struct Domains<'a> {
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    defaults: HashMap<&'a str, &'a Value>,
    visited: std::collections::HashSet<&'a str>,
    found: Vec<DomainUse>,
}

impl<'a> Domains<'a> {
    fn selection_set(&mut self, selection_set: &'a SelectionSet) {
        for selection in &selection_set.items {
            match &selection.node {
                Selection::Field(field) => {
                    for (name, value) in &field.node.arguments {
                        if name.node.as_str() != "domain" {
                            continue;
                        }
                        let resolved = value
                            .node
                            .clone()
                            .into_const_with(|name| self.variable(&name).ok_or(()));
                        if let Some(domain) = resolved.ok().and_then(normalised) {
                            self.found.push(DomainUse {
                                domain,
                                field: field.node.name.node.to_string(),
                            });
                        }
                    }
                    self.selection_set(&field.node.selection_set.node);
                }
                Selection::InlineFragment(inline) => {
                    self.selection_set(&inline.node.selection_set.node);
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if let Some(fragment) = self.document.fragments.get(name)
                        && self.visited.insert(name)
                    {
                        self.selection_set(&fragment.node.selection_set.node);
                    }
                }
            }
        }
    }

    /// The value of a variable: given in the request, or its default.
    fn variable(&self, name: &Name) -> Option<Value> {
        self.variables
            .get(name)
            .or_else(|| self.defaults.get(name.as_str()).copied())
            .cloned()
    }
}

/// A value as the `DomainName` scalar reads it, if it does.
fn normalised(value: Value) -> Option<String> {
    <DomainName as ScalarType>::parse(value)
        .ok()
        .map(|domain| domain.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(query: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(query).unwrap()
    }

    /// `depth` fragments, each spreading the previous one twice: 2^depth expansions.
    pub fn nested_fragments(depth: usize) -> String {
        let mut query = String::from("query { broadcast { ...F0 } }\n");
        query.push_str(
            "fragment F1 on BroadcastAdminQuery { getBroadcasts(domain: \"a\") { id } }\n",
        );
        for n in 2..=depth {
            let previous = n - 1;
            query.push_str(&format!(
                "fragment F{n} on BroadcastAdminQuery {{ ...F{previous} ...F{previous} }}\n"
            ));
        }
        query.replace("...F0", &format!("...F{depth}"))
    }

    fn refused(query: &str) -> Refusal {
        check(query, None, &Variables::default()).unwrap_err()
    }

    #[test]
    fn the_broadcast_queries_fit_easily() {
        let jobs = "id name domain messageSubject messageBody senderJid messageRate ownerNode \
            createTimestamp startTimestamp stopTimestamp executionState abortionReason \
            recipientGroup recipientCount recipientsProcessed";
        let list = format!(
            "query List($domain: DomainName!, $limit: PosInt, $index: NonNegInt) {{ broadcast {{ \
             getBroadcasts(domain: $domain, limit: $limit, index: $index) {{ {jobs} }} }} }}"
        );
        let checked = check(
            &list,
            Some("List"),
            &Variables::from_json(json!({"domain": "A.org"})),
        );
        assert_eq!(
            checked.unwrap().domains,
            vec![DomainUse {
                domain: "a.org".into(),
                field: "getBroadcasts".into()
            }]
        );
    }

    #[test]
    fn nested_fragments_are_refused_in_linear_time() {
        for depth in [24, 29] {
            let started = std::time::Instant::now();
            let refusal = refused(&nested_fragments(depth));
            assert!(
                started.elapsed() < std::time::Duration::from_millis(100),
                "{depth}: {:?}",
                started.elapsed()
            );
            assert_eq!(refusal.code(), ErrorCode::QueryTooComplex);
            assert!(
                refusal.to_string().contains("after expanding fragments"),
                "{refusal}"
            );
        }
        assert_eq!(
            refused(&nested_fragments(60)).code(),
            ErrorCode::QueryTooComplex
        );
        // Six levels (2^6 = 64 spreads of a 3-selection fragment) stay under the bound.
        check(&nested_fragments(6), None, &Variables::default()).unwrap();
    }

    #[test]
    fn spreads_count_even_without_fields() {
        // Spreads of a fragment whose only selection is an inline fragment still cost.
        let mut query = String::from(
            "query { broadcast { ...F9 } }\nfragment F1 on BroadcastAdminQuery { ... { __typename } }\n",
        );
        for n in 2..=9 {
            let p = n - 1;
            query.push_str(&format!(
                "fragment F{n} on BroadcastAdminQuery {{ ...F{p} ...F{p} }}\n"
            ));
        }
        assert!(matches!(refused(&query), Refusal::TooComplex { .. }));
    }

    #[test]
    fn cycles_and_unknown_fragments_are_refused() {
        let cycle =
            "query { broadcast { ...A } } fragment A on T { ...B } fragment B on T { x ...A }";
        assert!(matches!(refused(cycle), Refusal::FragmentCycle(_)));
        let own = "query { broadcast { ...A } } fragment A on T { x { ...A } }";
        assert!(matches!(refused(own), Refusal::FragmentCycle(_)));
        assert_eq!(refused(cycle).code(), ErrorCode::ValidationError);
        let unknown = "query { broadcast { ...Nope } }";
        assert!(matches!(refused(unknown), Refusal::UnknownFragment(_)));
    }

    #[test]
    fn written_size_is_bounded() {
        let many_aliases: String = (0..=MAX_EXPANDED_ALIASES)
            .map(|n| format!("a{n}: broadcast {{ __typename }} "))
            .collect();
        let refusal = refused(&format!("{{ {many_aliases} }}"));
        assert!(refusal.to_string().contains("aliases"), "{refusal}");

        let many_fields = "x ".repeat(MAX_SELECTIONS + 1);
        let refusal = refused(&format!("{{ {many_fields} }}"));
        assert!(refusal.to_string().contains("selections"), "{refusal}");

        let many_definitions: String = (0..MAX_DEFINITIONS)
            .map(|n| format!("fragment F{n} on T {{ x }} "))
            .collect();
        let refusal = refused(&format!("{{ x }} {many_definitions}"));
        assert!(refusal.to_string().contains("fragments"), "{refusal}");

        let arguments: String = (0..=MAX_ARGUMENTS).map(|n| format!("a{n}: 1 ")).collect();
        let refusal = refused(&format!("{{ x({arguments}) }}"));
        assert!(refusal.to_string().contains("arguments"), "{refusal}");

        let directives = "@skip(if: false) ".repeat(MAX_DIRECTIVES + 1);
        let refusal = refused(&format!("{{ x {directives} }}"));
        assert!(refusal.to_string().contains("directives"), "{refusal}");

        let variables: String = (0..=MAX_VARIABLES)
            .map(|n| format!("$v{n}: Int "))
            .collect();
        let refusal = refused(&format!("query({variables}) {{ x }}"));
        assert!(refusal.to_string().contains("variables"), "{refusal}");

        let deep = format!("{}x{}", "a { ".repeat(MAX_DEPTH), " }".repeat(MAX_DEPTH));
        let refusal = refused(&format!("{{ {deep} }}"));
        assert!(refusal.to_string().contains("depth"), "{refusal}");

        let large = format!("{{ x(a: \"{}\") }}", "y".repeat(MAX_QUERY_BYTES));
        assert!(matches!(refused(&large), Refusal::TooLarge { .. }));
        assert_eq!(refused(&large).code(), ErrorCode::QueryTooComplex);
    }

    #[test]
    fn domains_are_collected_through_fragments_variables_and_defaults() {
        let query = r#"
            mutation M($d: DomainName!, $e: DomainName = "E.org") {
                broadcast {
                    first: startBroadcast(domain: "Own.org") { ids }
                    ... on BroadcastAdminMutation { abortBroadcast(domain: $d, id: 1) { ids } }
                    ...Delete
                    ...Delete
                }
            }
            fragment Delete on BroadcastAdminMutation {
                deleteInactiveBroadcastsByDomain(domain: $e) { ids }
            }
            query Other { broadcast { getBroadcasts(domain: "other.org") { id } } }
        "#;
        let variables = Variables::from_json(json!({"d": "D.org"}));
        let checked = check(query, Some("M"), &variables).unwrap();
        let found: Vec<(&str, &str)> = checked
            .domains
            .iter()
            .map(|d| (d.domain.as_str(), d.field.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("own.org", "startBroadcast"),
                ("d.org", "abortBroadcast"),
                ("e.org", "deleteInactiveBroadcastsByDomain"),
            ]
        );
        // A variable given overrides the default; values that do not normalise are left out.
        let variables = Variables::from_json(json!({"d": "not a domain@", "e": "F.org"}));
        let checked = check(query, Some("M"), &variables).unwrap();
        let domains: Vec<&str> = checked.domains.iter().map(|d| d.domain.as_str()).collect();
        assert_eq!(domains, ["own.org", "f.org"]);
        // No operation selected: nothing to collect (async-graphql refuses the request).
        assert!(check(query, None, &variables).unwrap().domains.is_empty());
    }

    #[test]
    fn escapes_are_rewritten_before_parsing() {
        let checked = check(
            r#"{ broadcast { getBroadcasts(domain: "\u{1F600}\uD83D\uDE00") { id } } }"#,
            None,
            &Variables::default(),
        );
        assert!(checked.unwrap().query.contains("😀😀"));
        let refusal = refused(r#"{ broadcast { getBroadcasts(domain: "\uD83D") { id } } }"#);
        assert_eq!(refusal.code(), ErrorCode::ParserError);
    }

    #[test]
    fn bound_alone_accepts_a_plain_document() {
        bound(&parsed(
            "{ broadcast { getBroadcasts(domain: \"a\") { id } } }",
        ))
        .unwrap();
    }
}
