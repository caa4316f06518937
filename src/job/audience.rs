//! Who a broadcast is for (design invariant 13): every user of the domain (MongooseIM's only
//! recipient group), the accounts named in the request, or a group the operator defined in the
//! config. Checked here, before anything is read or written; the directory then decides which
//! named accounts exist and who a group's members are.

use std::collections::BTreeSet;

use super::spec::{InvalidRequest, RecipientGroup};

/// Most accounts a request may name. A list travels in one request (about 3.5 MB for 100,000
/// JIDs of 30 bytes, within the admin API's body limit) and is held in memory while it is
/// checked against the users database, a chunk at a time, and stored with the job.
pub const MAX_LISTED: usize = 100_000;

/// Most names of a list that are not accounts a job keeps to show (`unknownRecipients`); the
/// rest are only counted.
pub const UNKNOWN_SAMPLE: usize = 10;

/// Allowed length of a group's name, in bytes.
pub const GROUP_NAME_LENGTH: std::ops::RangeInclusive<usize> = 1..=64;

/// Whether `name` may name a group: 1 to 64 ASCII letters, digits, `_`, `-` and `.`, so that it
/// is the same in the config, the API, the command line and the log.
pub fn is_group_name(name: &str) -> bool {
    GROUP_NAME_LENGTH.contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Who a request asks to reach, checked against its domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every account of the domain when the job starts.
    AllUsers,
    /// The accounts of the domain with these usernames (distinct, in byte order), those that
    /// exist when the request is checked.
    Listed(Vec<String>),
    /// The members of the domain's group of this name when the job starts.
    Group(String),
}

impl Audience {
    /// The recipient group a job of this audience records.
    pub fn recipient_group(&self) -> RecipientGroup {
        match self {
            Audience::AllUsers => RecipientGroup::AllUsersInDomain,
            Audience::Listed(_) => RecipientGroup::Listed,
            Audience::Group(_) => RecipientGroup::Group,
        }
    }

    /// The group's name, for a group.
    pub fn group(&self) -> Option<&str> {
        match self {
            Audience::Group(name) => Some(name),
            _ => None,
        }
    }
}

/// What a request names: its recipient group and, as that group needs, the JIDs it lists or
/// the name of a configured group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AudienceRequest {
    pub group: RecipientGroup,
    /// Bare JIDs (`user@domain`), for [`RecipientGroup::Listed`].
    pub recipients: Option<Vec<String>>,
    /// A group of the domain's config, for [`RecipientGroup::Group`].
    pub group_name: Option<String>,
}

/// Why an audience is refused (`bad_parameter`, naming the argument).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudienceProblem {
    #[error("recipientGroup LISTED needs the recipients argument")]
    MissingList,
    #[error("the recipients argument needs recipientGroup LISTED")]
    ListWithoutListed,
    #[error("the recipient list is empty")]
    EmptyList,
    #[error("the recipient list names {0} accounts; at most {MAX_LISTED} are allowed")]
    TooMany(usize),
    #[error("{jid} is not an account of {domain} (entry {position} of the list)")]
    NotOfDomain {
        jid: String,
        domain: String,
        position: usize,
    },
    #[error("recipientGroup GROUP needs the group argument")]
    MissingGroup,
    #[error("the group argument needs recipientGroup GROUP")]
    GroupWithoutGroup,
    #[error("{0:?} is not a group name (1-64 ASCII letters, digits, '_', '-' or '.')")]
    BadGroupName(String),
}

impl AudienceProblem {
    /// The argument of `startBroadcast` the problem concerns.
    pub fn argument(&self) -> &'static str {
        match self {
            AudienceProblem::MissingList
            | AudienceProblem::EmptyList
            | AudienceProblem::TooMany(_)
            | AudienceProblem::NotOfDomain { .. } => "recipients",
            AudienceProblem::ListWithoutListed | AudienceProblem::GroupWithoutGroup => {
                "recipientGroup"
            }
            AudienceProblem::MissingGroup | AudienceProblem::BadGroupName(_) => "group",
        }
    }
}

impl AudienceRequest {
    /// Checks what the request names against `domain`: a list of 1 to [`MAX_LISTED`] bare
    /// JIDs of the domain (repeats counted once), or a well-formed group name, each only with
    /// its recipient group.
    pub fn check(self, domain: &str) -> Result<Audience, InvalidRequest> {
        let refused = |problem| Err(InvalidRequest::Audience(problem));
        match (self.group, self.recipients, self.group_name) {
            (_, Some(_), Some(_)) | (RecipientGroup::Listed, _, Some(_)) => {
                refused(AudienceProblem::GroupWithoutGroup)
            }
            (RecipientGroup::AllUsersInDomain, None, None) => Ok(Audience::AllUsers),
            (RecipientGroup::Listed, Some(list), None) => check_list(list, domain),
            (RecipientGroup::Listed, None, None) => refused(AudienceProblem::MissingList),
            (RecipientGroup::Group, None, Some(name)) if is_group_name(&name) => {
                Ok(Audience::Group(name))
            }
            (RecipientGroup::Group, None, Some(name)) => {
                refused(AudienceProblem::BadGroupName(name))
            }
            (RecipientGroup::Group, None, None) => refused(AudienceProblem::MissingGroup),
            (_, Some(_), None) => refused(AudienceProblem::ListWithoutListed),
            (RecipientGroup::AllUsersInDomain, None, Some(_)) => {
                refused(AudienceProblem::GroupWithoutGroup)
            }
        }
    }
}

fn check_list(list: Vec<String>, domain: &str) -> Result<Audience, InvalidRequest> {
    let refused = |problem| Err(InvalidRequest::Audience(problem));
    if list.is_empty() {
        return refused(AudienceProblem::EmptyList);
    }
    if list.len() > MAX_LISTED {
        return refused(AudienceProblem::TooMany(list.len()));
    }
    let mut usernames = BTreeSet::new();
    for (index, jid) in list.iter().enumerate() {
        match jid.split_once('@') {
            Some((user, host)) if !user.is_empty() && host == domain => {
                usernames.insert(user.to_owned());
            }
            _ => {
                return refused(AudienceProblem::NotOfDomain {
                    jid: jid.clone(),
                    domain: domain.to_owned(),
                    position: index + 1,
                });
            }
        }
    }
    Ok(Audience::Listed(usernames.into_iter().collect()))
}

/// The names of a list that were not accounts of the domain when it was checked: how many,
/// and the first [`UNKNOWN_SAMPLE`] of them in byte order, as bare JIDs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unknown {
    pub count: i64,
    pub sample: Vec<String>,
}

impl Unknown {
    /// The usernames of `asked` (distinct, in byte order) that are not in `found` (also in
    /// byte order), as JIDs of `domain`.
    pub fn of(asked: &[String], found: &[String], domain: &str) -> Unknown {
        let mut found = found.iter().peekable();
        let mut unknown = Unknown::default();
        for name in asked {
            while found.next_if(|known| *known < name).is_some() {}
            if found.next_if(|known| *known == name).is_none() {
                unknown.count += 1;
                if unknown.sample.len() < UNKNOWN_SAMPLE {
                    unknown.sample.push(format!("{name}@{domain}"));
                }
            }
        }
        unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        group: RecipientGroup,
        recipients: Option<&[&str]>,
        group_name: Option<&str>,
    ) -> AudienceRequest {
        AudienceRequest {
            group,
            recipients: recipients.map(|list| list.iter().map(|s| s.to_string()).collect()),
            group_name: group_name.map(str::to_owned),
        }
    }

    fn problem(request: AudienceRequest) -> AudienceProblem {
        match request.check("example.com") {
            Err(InvalidRequest::Audience(problem)) => problem,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_list_is_jids_of_the_domain_counted_once_in_byte_order() {
        let list = ["bob@example.com", "alice@example.com", "bob@example.com"];
        assert_eq!(
            request(RecipientGroup::Listed, Some(&list), None).check("example.com"),
            Ok(Audience::Listed(vec!["alice".into(), "bob".into()]))
        );
        let foreign = ["alice@example.com", "eve@example.org"];
        let refused = problem(request(RecipientGroup::Listed, Some(&foreign), None));
        assert_eq!(
            refused.to_string(),
            "eve@example.org is not an account of example.com (entry 2 of the list)"
        );
        assert_eq!(refused.argument(), "recipients");
        assert_eq!(
            problem(request(
                RecipientGroup::Listed,
                Some(&["example.com"]),
                None
            ))
            .argument(),
            "recipients"
        );
        assert_eq!(
            problem(request(RecipientGroup::Listed, Some(&[]), None)),
            AudienceProblem::EmptyList
        );
        let many: Vec<String> = (0..=MAX_LISTED)
            .map(|i| format!("u{i}@example.com"))
            .collect();
        let too_many = AudienceRequest {
            group: RecipientGroup::Listed,
            recipients: Some(many),
            group_name: None,
        };
        assert_eq!(problem(too_many), AudienceProblem::TooMany(MAX_LISTED + 1));
    }

    #[test]
    fn each_argument_goes_with_its_recipient_group() {
        assert_eq!(
            request(RecipientGroup::AllUsersInDomain, None, None).check("example.com"),
            Ok(Audience::AllUsers)
        );
        assert_eq!(
            request(RecipientGroup::Group, None, Some("staff")).check("example.com"),
            Ok(Audience::Group("staff".into()))
        );
        let list: &[&str] = &["a@example.com"];
        for (request, expected) in [
            (
                request(RecipientGroup::Listed, None, None),
                AudienceProblem::MissingList,
            ),
            (
                request(RecipientGroup::AllUsersInDomain, Some(list), None),
                AudienceProblem::ListWithoutListed,
            ),
            (
                request(RecipientGroup::Group, Some(list), None),
                AudienceProblem::ListWithoutListed,
            ),
            (
                request(RecipientGroup::Group, None, None),
                AudienceProblem::MissingGroup,
            ),
            (
                request(RecipientGroup::AllUsersInDomain, None, Some("staff")),
                AudienceProblem::GroupWithoutGroup,
            ),
            (
                request(RecipientGroup::Listed, Some(list), Some("staff")),
                AudienceProblem::GroupWithoutGroup,
            ),
            (
                request(RecipientGroup::Group, None, Some("no spaces")),
                AudienceProblem::BadGroupName("no spaces".into()),
            ),
            (
                request(RecipientGroup::Group, None, Some(&"g".repeat(65))),
                AudienceProblem::BadGroupName("g".repeat(65)),
            ),
        ] {
            assert_eq!(problem(request), expected);
        }
    }

    #[test]
    fn unknown_names_are_counted_and_the_first_shown() {
        let asked: Vec<String> = (10..40).map(|i| format!("u{i}")).collect();
        let found: Vec<String> = asked.iter().skip(1).step_by(2).cloned().collect();
        let unknown = Unknown::of(&asked, &found, "example.com");
        assert_eq!(unknown.count, 15);
        assert_eq!(unknown.sample.len(), UNKNOWN_SAMPLE);
        assert_eq!(unknown.sample[0], "u10@example.com");
        assert_eq!(unknown.sample[1], "u12@example.com");
        assert_eq!(
            Unknown::of(&asked, &asked, "example.com"),
            Unknown::default()
        );
    }
}
