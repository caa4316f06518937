//! The served schema (`xmpp-broadcast schema`) matches MongooseIM's `broadcast` admin category
//! field by field: the same types, fields, argument names, argument types and defaults, enum
//! values, and nullability of every result. The expected signatures are MongooseIM's, copied
//! from the reference (mongooseim-broadcast.md §5.2) as data; our SDL is parsed with
//! async-graphql's parser and compared with them. Descriptions are not compared, except the
//! category's.

use std::collections::BTreeMap;
use std::process::Command;

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

/// An argument: name, type, default value (as GraphQL text).
type Arg = (&'static str, &'static str, Option<&'static str>);

/// A field of an object type: name, arguments in order, result type.
struct Field {
    name: &'static str,
    args: &'static [Arg],
    returns: &'static str,
}

const fn field(name: &'static str, returns: &'static str) -> Field {
    Field {
        name,
        args: &[],
        returns,
    }
}

/// `schema { query: AdminQuery mutation: AdminMutation }`; the category is mounted as
/// `broadcast` on both roots (`admin_schema.gql`), nullable as every category is.
const ROOT_QUERY: &str = "AdminQuery";
const ROOT_MUTATION: &str = "AdminMutation";
const CATEGORY_DESCRIPTION: &str = "Message broadcast management";

/// MongooseIM's object types of the category, field by field (§5.2).
const OBJECTS: &[(&str, &[Field])] = &[
    (ROOT_QUERY, &[field("broadcast", "BroadcastAdminQuery")]),
    (
        ROOT_MUTATION,
        &[field("broadcast", "BroadcastAdminMutation")],
    ),
    (
        "BroadcastAdminQuery",
        &[
            Field {
                name: "getBroadcasts",
                args: &[
                    ("domain", "DomainName!", None),
                    ("limit", "PosInt", Some("50")),
                    ("index", "NonNegInt", Some("0")),
                ],
                returns: "[Broadcast!]",
            },
            Field {
                name: "getBroadcast",
                args: &[("domain", "DomainName!", None), ("id", "Int!", None)],
                returns: "Broadcast",
            },
        ],
    ),
    (
        "BroadcastAdminMutation",
        &[
            Field {
                name: "startBroadcast",
                args: &[
                    ("name", "String!", None),
                    ("domain", "DomainName!", None),
                    ("messageSubject", "String!", None),
                    ("messageBody", "String!", None),
                    ("senderJid", "BareJID!", None),
                    ("messageRate", "PosInt!", None),
                    ("recipientGroup", "BroadcastRecipientGroup!", None),
                ],
                returns: "BroadcastMutationResult",
            },
            Field {
                name: "abortBroadcast",
                args: &[("domain", "DomainName!", None), ("id", "Int!", None)],
                returns: "BroadcastMutationResult",
            },
            Field {
                name: "deleteInactiveBroadcastsByIds",
                args: &[("domain", "DomainName!", None), ("ids", "[Int!]!", None)],
                returns: "BroadcastMutationResult",
            },
            Field {
                name: "deleteInactiveBroadcastsByDomain",
                args: &[("domain", "DomainName!", None)],
                returns: "BroadcastMutationResult",
            },
        ],
    ),
    (
        "Broadcast",
        &[
            field("id", "Int!"),
            field("name", "String!"),
            field("domain", "DomainName!"),
            field("messageSubject", "String!"),
            field("messageBody", "String!"),
            field("senderJid", "JID!"),
            field("messageRate", "PosInt!"),
            field("ownerNode", "String!"),
            field("createTimestamp", "DateTime!"),
            field("startTimestamp", "DateTime"),
            field("stopTimestamp", "DateTime"),
            field("executionState", "BroadcastJobState!"),
            field("abortionReason", "String"),
            field("recipientGroup", "BroadcastRecipientGroup!"),
            field("recipientCount", "PosInt!"),
            field("recipientsProcessed", "NonNegInt!"),
        ],
    ),
    (
        "BroadcastMutationResult",
        &[field("message", "String!"), field("ids", "[Int!]!")],
    ),
];

/// MongooseIM's enums of the category, values in declaration order.
const ENUMS: &[(&str, &[&str])] = &[
    ("BroadcastRecipientGroup", &["ALL_USERS_IN_DOMAIN"]),
    (
        "BroadcastJobState",
        &["RUNNING", "FINISHED", "ABORT_ERROR", "ABORT_ADMIN"],
    ),
];

/// MongooseIM's custom scalars the category uses.
const SCALARS: &[&str] = &[
    "BareJID",
    "DateTime",
    "DomainName",
    "JID",
    "NonNegInt",
    "PosInt",
];

/// What our SDL declares, reduced to the compared facts.
#[derive(Default)]
struct Declared {
    query: Option<String>,
    mutation: Option<String>,
    /// Object name → its fields as `(name, [(arg, type, default)], result)`.
    objects: BTreeMap<String, Vec<DeclaredField>>,
    /// Object name → field name → description.
    descriptions: BTreeMap<(String, String), String>,
    enums: BTreeMap<String, Vec<String>>,
    scalars: Vec<String>,
    /// Input object types (MongooseIM's `broadcast` category has none).
    inputs: Vec<String>,
}

type DeclaredArg = (String, String, Option<String>);
type DeclaredField = (String, Vec<DeclaredArg>, String);

fn declared(sdl: &str) -> Declared {
    let document = parse_schema(sdl).unwrap_or_else(|err| panic!("our SDL does not parse: {err}"));
    let mut declared = Declared::default();
    for definition in document.definitions {
        match definition {
            TypeSystemDefinition::Schema(schema) => {
                declared.query = schema.node.query.map(|name| name.node.to_string());
                declared.mutation = schema.node.mutation.map(|name| name.node.to_string());
            }
            TypeSystemDefinition::Type(ty) => {
                let name = ty.node.name.node.to_string();
                match ty.node.kind {
                    TypeKind::Object(object) => {
                        let mut fields = Vec::new();
                        for field in object.fields {
                            let field = field.node;
                            if let Some(description) = field.description {
                                declared.descriptions.insert(
                                    (name.clone(), field.name.node.to_string()),
                                    description.node,
                                );
                            }
                            let args = field
                                .arguments
                                .into_iter()
                                .map(|arg| {
                                    let arg = arg.node;
                                    (
                                        arg.name.node.to_string(),
                                        arg.ty.node.to_string(),
                                        arg.default_value.map(|value| value.node.to_string()),
                                    )
                                })
                                .collect();
                            fields.push((
                                field.name.node.to_string(),
                                args,
                                field.ty.node.to_string(),
                            ));
                        }
                        declared.objects.insert(name, fields);
                    }
                    TypeKind::Enum(enumeration) => {
                        let values = enumeration
                            .values
                            .into_iter()
                            .map(|value| value.node.value.node.to_string())
                            .collect();
                        declared.enums.insert(name, values);
                    }
                    TypeKind::Scalar => declared.scalars.push(name),
                    TypeKind::InputObject(_) => declared.inputs.push(name),
                    other => panic!("unexpected kind of type {name}: {other:?}"),
                }
            }
            TypeSystemDefinition::Directive(_) => {}
        }
    }
    declared
}

fn expected_fields(fields: &[Field]) -> Vec<DeclaredField> {
    fields
        .iter()
        .map(|field| {
            let args = field
                .args
                .iter()
                .map(|(name, ty, default)| {
                    (
                        (*name).to_owned(),
                        (*ty).to_owned(),
                        default.map(str::to_owned),
                    )
                })
                .collect();
            (field.name.to_owned(), args, field.returns.to_owned())
        })
        .collect()
}

/// The SDL the binary serves.
fn served_sdl() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_xmpp-broadcast"))
        .arg("schema")
        .output()
        .expect("run xmpp-broadcast schema");
    assert!(output.status.success(), "xmpp-broadcast schema failed");
    String::from_utf8(output.stdout).expect("the schema is UTF-8")
}

/// Fields xmpp-broadcast adds to MongooseIM's types (after theirs), and the types they return.
const OUR_ADDITIONS: &[(&str, &str)] = &[
    ("BroadcastAdminQuery", "getBroadcastDomains"),
    ("BroadcastAdminQuery", "getBroadcastGroups"),
    ("BroadcastAdminQuery", "countBroadcastRecipients"),
    ("BroadcastAdminMutation", "abortBroadcastsByDomain"),
    ("BroadcastAdminMutation", "correctBroadcast"),
    ("BroadcastAdminMutation", "retractBroadcast"),
    ("BroadcastAdminMutation", "pauseBroadcast"),
    ("BroadcastAdminMutation", "resumeBroadcast"),
    ("Broadcast", "waitingReason"),
    ("Broadcast", "kind"),
    ("Broadcast", "amends"),
    ("Broadcast", "status"),
    ("Broadcast", "startAt"),
    ("Broadcast", "pausedAt"),
    ("Broadcast", "language"),
    ("Broadcast", "translations"),
    ("Broadcast", "group"),
    ("Broadcast", "unknownRecipientCount"),
    ("Broadcast", "unknownRecipients"),
    ("Broadcast", "recipientsCounted"),
];
const OUR_TYPES: &[&str] = &[
    "BroadcastRecipientsPreview",
    "BroadcastTranslation",
    "BroadcastTranslationInput",
];
/// Arguments xmpp-broadcast adds to MongooseIM's fields (object, field, argument): optional,
/// after theirs, so that MongooseIM's clients send the same requests.
const OUR_ARGUMENTS: &[(&str, &str, &str)] = &[
    ("BroadcastAdminMutation", "startBroadcast", "idempotencyKey"),
    ("BroadcastAdminMutation", "startBroadcast", "startAt"),
    ("BroadcastAdminMutation", "startBroadcast", "recipients"),
    ("BroadcastAdminMutation", "startBroadcast", "group"),
    ("BroadcastAdminMutation", "startBroadcast", "language"),
    ("BroadcastAdminMutation", "startBroadcast", "translations"),
];

/// `field` without our arguments, which must be optional and come after MongooseIM's.
fn without_our_arguments(object: &str, field: &DeclaredField) -> DeclaredField {
    let (name, args, returns) = field;
    let is_ours = |arg: &DeclaredArg| OUR_ARGUMENTS.contains(&(object, name, &arg.0));
    let theirs: Vec<DeclaredArg> = args.iter().filter(|arg| !is_ours(arg)).cloned().collect();
    for (position, arg) in args.iter().enumerate().filter(|(_, arg)| is_ours(arg)) {
        assert!(
            !arg.1.ends_with('!'),
            "{object}.{name}({}) is optional",
            arg.0
        );
        assert!(
            position >= theirs.len(),
            "{object}.{name}({}) comes last",
            arg.0
        );
    }
    (name.clone(), theirs, returns.clone())
}
/// Values xmpp-broadcast adds to MongooseIM's enums, after theirs.
const OUR_ENUM_VALUES: &[(&str, &[&str])] = &[("BroadcastRecipientGroup", &["LISTED", "GROUP"])];
/// Enums xmpp-broadcast adds, with their values.
const OUR_ENUMS: &[(&str, &[&str])] = &[
    ("BroadcastKind", &["BROADCAST", "CORRECTION", "RETRACTION"]),
    (
        "BroadcastStatus",
        &[
            "SCHEDULED",
            "RUNNING",
            "PAUSED",
            "FINISHED",
            "ABORT_ERROR",
            "ABORT_ADMIN",
        ],
    ),
];

#[test]
fn the_schema_matches_mongooseim_field_by_field() {
    let declared = declared(&served_sdl());

    assert_eq!(declared.query.as_deref(), Some(ROOT_QUERY), "query root");
    assert_eq!(
        declared.mutation.as_deref(),
        Some(ROOT_MUTATION),
        "mutation root"
    );

    for (object, fields) in OBJECTS {
        let ours = declared
            .objects
            .get(*object)
            .unwrap_or_else(|| panic!("type {object} is missing"));
        let theirs = expected_fields(fields);
        let ours: Vec<DeclaredField> = ours
            .iter()
            .map(|field| without_our_arguments(object, field))
            .collect();
        // Field by field first, for a message that names the field.
        for expected in &theirs {
            let found = ours.iter().find(|field| field.0 == expected.0);
            assert_eq!(found, Some(expected), "{object}.{}", expected.0);
        }
        let is_ours = |name: &str| OUR_ADDITIONS.contains(&(*object, name));
        let (mongooseims, additions): (Vec<_>, Vec<_>) =
            ours.iter().cloned().partition(|field| !is_ours(&field.0));
        assert_eq!(
            mongooseims, theirs,
            "{object}: fields, in MongooseIM's order"
        );
        assert_eq!(
            ours[theirs.len()..],
            additions[..],
            "{object}: our additions come after MongooseIM's fields"
        );
    }
    let expected_objects: Vec<&str> = OBJECTS.iter().map(|(name, _)| *name).collect();
    let extra: Vec<&String> = declared
        .objects
        .keys()
        .filter(|name| !expected_objects.contains(&name.as_str()))
        .filter(|name| !OUR_TYPES.contains(&name.as_str()))
        .collect();
    assert!(extra.is_empty(), "object types MongooseIM lacks: {extra:?}");
    let extra_inputs: Vec<&String> = declared
        .inputs
        .iter()
        .filter(|name| !OUR_TYPES.contains(&name.as_str()))
        .collect();
    assert!(
        extra_inputs.is_empty(),
        "input types MongooseIM lacks: {extra_inputs:?}"
    );

    for root in [ROOT_QUERY, ROOT_MUTATION] {
        let description = declared
            .descriptions
            .get(&(root.to_owned(), "broadcast".to_owned()));
        assert_eq!(
            description.map(String::as_str),
            Some(CATEGORY_DESCRIPTION),
            "{root}.broadcast description"
        );
    }

    let expected_enums: BTreeMap<String, Vec<String>> = ENUMS
        .iter()
        .chain(OUR_ENUMS)
        .map(|(name, values)| {
            let mut values: Vec<String> = values.iter().map(|value| (*value).to_owned()).collect();
            let added = OUR_ENUM_VALUES
                .iter()
                .filter(|(enum_name, _)| enum_name == name);
            for (_, ours) in added {
                values.extend(ours.iter().map(|value| (*value).to_owned()));
            }
            ((*name).to_owned(), values)
        })
        .collect();
    assert_eq!(declared.enums, expected_enums, "enums and their values");

    let mut scalars = declared.scalars.clone();
    scalars.sort();
    assert_eq!(scalars, SCALARS, "custom scalars");
}

#[test]
fn the_comparison_notices_a_difference() {
    // The parity check itself: a schema that differs in one nullability does not pass.
    let sdl = served_sdl().replace("recipientCount: PosInt!", "recipientCount: PosInt");
    let declared = declared(&sdl);
    let broadcast = &declared.objects["Broadcast"];
    let expected = expected_fields(OBJECTS.iter().find(|(n, _)| *n == "Broadcast").unwrap().1);
    assert_ne!(broadcast, &expected);
}
