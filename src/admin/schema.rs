//! The GraphQL schema: MongooseIM's `broadcast` admin category, field for field.
//!
//! Domain types are converted to GraphQL types here, and domain errors to MongooseIM's error
//! codes and messages (`extensions.code`, plus the operation's arguments as context).

use async_graphql::{
    Context, EmptySubscription, Enum, ErrorExtensions, InputObject, Object, Schema, SimpleObject,
};

use super::auth::Principal;
use super::codes::ErrorCode;
use super::scalars::{BareJid, DateTime, DomainName, Jid, NonNegInt, PosInt};
use crate::broadcast::{
    AbortError, Accepted, BroadcastService, FollowUp, HoldError, QueryError, StartError,
};
use crate::job::spec::Parameter;
use crate::job::{self, BroadcastRequest, InvalidRequest, Job, Translation};
use crate::store::StoreError;

/// Deepest selection accepted: the broadcast queries are three fields deep. The same bound is
/// checked, fragments expanded, before validation (`document`); async-graphql checks it again.
const MAX_DEPTH: usize = super::document::MAX_DEPTH;
/// Largest query complexity accepted (one per selected field); `document` bounds the
/// selections after expansion by the same figure before async-graphql computes this.
const MAX_COMPLEXITY: usize = super::document::MAX_EXPANDED_SELECTIONS;
/// Most jobs one `getBroadcasts` returns; clients page with `limit` and `index`. A larger
/// `limit` is refused (`bad_parameter`) rather than capped, because a client that takes a page
/// shorter than its `limit` for the last one would stop early without a word.
pub const MAX_LIST_LIMIT: i64 = 100;
/// `limit` of `getBroadcasts` when none is given, as in MongooseIM.
const DEFAULT_LIST_LIMIT: i64 = 50;

/// Who sent the request and under which operation name, for permission checks.
pub struct Caller {
    pub principal: Principal,
    /// The request's `operationName`, or `ROOT`.
    pub operation: String,
}

/// The admin schema served at `/api/graphql`.
pub type AdminSchema = Schema<Query, Mutation, EmptySubscription>;

/// Builds the schema; `broadcasts` is `None` only to print the SDL.
pub fn build(broadcasts: Option<BroadcastService>) -> AdminSchema {
    let builder = Schema::build(Query, Mutation, EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY);
    match broadcasts {
        Some(broadcasts) => builder.data(broadcasts).finish(),
        None => builder.finish(),
    }
}

/// Admin queries.
pub struct Query;

#[Object(name = "AdminQuery")]
impl Query {
    /// Message broadcast management
    async fn broadcast(&self) -> Option<BroadcastAdminQuery> {
        Some(BroadcastAdminQuery)
    }
}

/// Admin mutations.
pub struct Mutation;

#[Object(name = "AdminMutation")]
impl Mutation {
    /// Message broadcast management
    async fn broadcast(&self) -> Option<BroadcastAdminMutation> {
        Some(BroadcastAdminMutation)
    }
}

/// Queries about broadcast jobs.
pub struct BroadcastAdminQuery;

#[Object]
impl BroadcastAdminQuery {
    /// Get the broadcast jobs of a domain, newest first
    async fn get_broadcasts(
        &self,
        ctx: &Context<'_>,
        domain: DomainName,
        #[graphql(default_with = "Some(PosInt(DEFAULT_LIST_LIMIT))")] limit: Option<PosInt>,
        #[graphql(default_with = "Some(NonNegInt(0))")] index: Option<NonNegInt>,
    ) -> async_graphql::Result<Option<Vec<BroadcastObject>>> {
        let context = [("domain", domain.0.clone().into())];
        authorize(ctx, &domain, "getBroadcasts")?;
        let limit = limit.map_or(DEFAULT_LIST_LIMIT, |limit| limit.0);
        let jobs = if limit > MAX_LIST_LIMIT {
            let context = [
                ("domain", domain.0.clone().into()),
                ("limit", limit.into()),
                (ARGUMENT, "limit".into()),
            ];
            let message = format!("Invalid parameter: limit (at most {MAX_LIST_LIMIT})");
            Err(operation_error(ErrorCode::BadParameter, message, &context))
        } else {
            service(ctx)
                .list(&domain.0, limit, index.map_or(0, |index| index.0))
                .await
                .map_err(|err| query_error(err, &context))
        };
        let Some(jobs) = reported(ctx, jobs) else {
            return Ok(None);
        };
        Ok(Some(jobs.into_iter().map(BroadcastObject).collect()))
    }

    /// Get a broadcast job by its id
    async fn get_broadcast(
        &self,
        ctx: &Context<'_>,
        domain: DomainName,
        id: i32,
    ) -> async_graphql::Result<Option<BroadcastObject>> {
        let context = [("domain", domain.0.clone().into()), ("id", id.into())];
        authorize(ctx, &domain, "getBroadcast")?;
        let job = service(ctx)
            .get(&domain.0, i64::from(id))
            .await
            .map_err(|err| query_error(err, &context));
        let Some(job) = reported(ctx, job) else {
            return Ok(None);
        };
        Ok(Some(BroadcastObject(job)))
    }

    /// The domains the caller may manage here: every configured domain for the global admin,
    /// its own for a domain admin (xmpp-broadcast's own addition)
    async fn get_broadcast_domains(&self, ctx: &Context<'_>) -> Vec<DomainName> {
        let caller = ctx.data_unchecked::<Caller>();
        service(ctx)
            .domains()
            .into_iter()
            .filter(|domain| caller.principal.may_manage(domain))
            .map(DomainName)
            .collect()
    }

    /// The recipient groups configured for the domain, by name: the values of `group` with
    /// `recipientGroup: GROUP` (xmpp-broadcast's own addition)
    async fn get_broadcast_groups(
        &self,
        ctx: &Context<'_>,
        domain: DomainName,
    ) -> async_graphql::Result<Option<Vec<String>>> {
        let context = [("domain", domain.0.clone().into())];
        authorize(ctx, &domain, "getBroadcastGroups")?;
        let groups = service(ctx)
            .groups(&domain.0)
            .map_err(|err| query_error(err, &context));
        Ok(reported(ctx, groups))
    }

    /// Count the users a broadcast to the domain would reach now and list the first few,
    /// without starting anything (a dry run; xmpp-broadcast's own addition)
    #[allow(clippy::too_many_arguments)]
    async fn count_broadcast_recipients(
        &self,
        ctx: &Context<'_>,
        domain: DomainName,
        #[graphql(default_with = "Some(NonNegInt(5))")] sample: Option<NonNegInt>,
        #[graphql(
            desc = "A job of the domain: count who a correction or retraction of it would reach \
                    instead (the recipients its broadcast may have reached)"
        )]
        amends: Option<i32>,
        #[graphql(
            desc = "Who a broadcast would reach (by default every user of the domain), \
                          as startBroadcast takes it"
        )]
        recipient_group: Option<BroadcastRecipientGroup>,
        #[graphql(desc = "The accounts to count, with recipientGroup LISTED, as \
                          startBroadcast takes them")]
        recipients: Option<Vec<BareJid>>,
        #[graphql(desc = "The configured group to count, with recipientGroup GROUP")] group: Option<
            String,
        >,
    ) -> async_graphql::Result<Option<BroadcastRecipientsPreview>> {
        let context = [("domain", domain.0.clone().into())];
        authorize(ctx, &domain, "countBroadcastRecipients")?;
        let sample = sample.map_or(5, |sample| sample.0).min(1000) as usize;
        let audience = audience_request(
            recipient_group.unwrap_or(BroadcastRecipientGroup::AllUsersInDomain),
            recipients,
            group,
        );
        let preview = match amends {
            None => service(ctx)
                .preview(&domain.0, audience, sample)
                .await
                .map_err(|err| match err {
                    // A count creates nothing: the users database's failure as the queries say it.
                    StartError::Directory(err) => query_error(QueryError::Directory(err), &context),
                    err => start_error(err, &context),
                }),
            Some(id) => {
                let context = [("domain", domain.0.clone().into()), ("amends", id.into())];
                service(ctx)
                    .preview_follow_up(&domain.0, i64::from(id), sample)
                    .await
                    .map_err(|err| start_error(err, &context))
            }
        };
        let Some(preview) = reported(ctx, preview) else {
            return Ok(None);
        };
        let (unknown_recipient_count, unknown_recipients) = unknown_fields(preview.unknown);
        Ok(Some(BroadcastRecipientsPreview {
            domain,
            recipient_count: NonNegInt(preview.count),
            sample: preview.sample.into_iter().map(Jid).collect(),
            unknown_recipient_count,
            unknown_recipients,
        }))
    }
}

/// Who a broadcast would reach; not part of MongooseIM's schema.
#[derive(SimpleObject)]
pub struct BroadcastRecipientsPreview {
    /// The domain
    domain: DomainName,
    /// How many users a broadcast started now would reach
    recipient_count: NonNegInt,
    /// The first of them, in sending order
    sample: Vec<Jid>,
    /// For a list: how many of its names are not accounts of the domain
    unknown_recipient_count: Option<NonNegInt>,
    /// For a list: the first names that are not accounts, in byte order (at most 10)
    unknown_recipients: Option<Vec<Jid>>,
}

/// Mutations of broadcast jobs.
pub struct BroadcastAdminMutation;

#[Object]
impl BroadcastAdminMutation {
    /// Start a broadcast job for a domain. Only one job may run per domain at a time
    #[allow(clippy::too_many_arguments)]
    async fn start_broadcast(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Name of the job, for the operators")] name: String,
        #[graphql(desc = "Domain whose users receive the message")] domain: DomainName,
        #[graphql(desc = "Subject of the message (may be empty)")] message_subject: String,
        #[graphql(desc = "Body of the message")] message_body: String,
        #[graphql(desc = "Bare JID used as the sender; it must be an account of the domain")]
        sender_jid: BareJid,
        #[graphql(desc = "Messages per second, 1-1000")] message_rate: PosInt,
        #[graphql(desc = "Who receives the message")] recipient_group: BroadcastRecipientGroup,
        #[graphql(
            desc = "With recipientGroup LISTED: the accounts of the domain to send to, \
                          1-100000 bare JIDs (repeats count once); the names that are not \
                          accounts are counted in the job, not sent to \
                          (xmpp-broadcast's own addition)"
        )]
        recipients: Option<Vec<BareJid>>,
        #[graphql(
            desc = "With recipientGroup GROUP: the name of a group configured for the \
                          domain; its members when the job starts receive the message \
                          (xmpp-broadcast's own addition)"
        )]
        group: Option<String>,
        #[graphql(desc = "Makes retries safe: the same key on the domain with the same \
                          arguments answers with the job it created first; 1-128 printable \
                          ASCII characters (xmpp-broadcast's own addition)")]
        idempotency_key: Option<String>,
        #[graphql(
            desc = "Schedules the job: it starts at this time, on whichever instance \
                          serves the domain, and its recipients are fixed then; at most 366 \
                          days ahead; a time up to 60 seconds past starts it at once \
                          (xmpp-broadcast's own addition)"
        )]
        start_at: Option<DateTime>,
        #[graphql(
            desc = "BCP 47 language tag of messageSubject and messageBody (such as en \
                          or pt-BR): the message's xml:lang; required with translations \
                          (xmpp-broadcast's own addition)"
        )]
        language: Option<String>,
        #[graphql(
            desc = "The message in other languages, sent in the same stanza after the \
                          default subject and body, each with its xml:lang; at most 64, no \
                          language twice (xmpp-broadcast's own addition)"
        )]
        translations: Option<Vec<BroadcastTranslationInput>>,
    ) -> async_graphql::Result<Option<BroadcastMutationResult>> {
        let context = [
            ("domain", domain.0.clone().into()),
            ("name", name.clone().into()),
        ];
        authorize(ctx, &domain, "startBroadcast")?;
        let request = BroadcastRequest {
            name,
            domain: domain.0,
            subject: message_subject,
            body: message_body,
            sender: sender_jid.0,
            rate: message_rate.0,
            audience: audience_request(recipient_group, recipients, group),
            language,
            translations: translations_of(translations),
        };
        let accepted = service(ctx)
            .start(request, idempotency_key, start_at.map(|at| at.0))
            .await
            .map_err(|err| start_error(err, &context));
        let Some(accepted) = reported(ctx, accepted) else {
            return Ok(None);
        };
        let message = match accepted {
            Accepted::Started(_) => "Broadcast job started",
            Accepted::Scheduled(_) => "Broadcast job scheduled",
        };
        Ok(Some(ids_result(message, vec![accepted.id()])?))
    }

    /// Stop a running broadcast job, whichever instance runs it
    async fn abort_broadcast(
        &self,
        ctx: &Context<'_>,
        domain: DomainName,
        id: i32,
    ) -> async_graphql::Result<Option<BroadcastMutationResult>> {
        let context = [("domain", domain.0.clone().into()), ("id", id.into())];
        authorize(ctx, &domain, "abortBroadcast")?;
        let aborted = service(ctx)
            .abort(&domain.0, i64::from(id))
            .await
            .map_err(|err| abort_error(err, &context));
        if reported(ctx, aborted).is_none() {
            return Ok(None);
        }
        Ok(Some(BroadcastMutationResult {
            message: "Broadcast job aborted".to_owned(),
            ids: vec![id],
        }))
    }

    /// Delete finished and aborted jobs of a domain by id, skipping running ones and ids that
    /// are not the domain's; returns the ids actually deleted
    async fn delete_inactive_broadcasts_by_ids(
        &self,
        ctx: &Context<'_>,
        domain: DomainName,
        ids: Vec<i32>,
    ) -> async_graphql::Result<Option<BroadcastMutationResult>> {
        let context = [
            ("domain", domain.0.clone().into()),
            ("ids", ids.clone().into()),
        ];
        authorize(ctx, &domain, "deleteInactiveBroadcastsByIds")?;
        let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
        let deleted = service(ctx)
            .delete_inactive(&domain.0, &ids)
            .await
            .map_err(|err| query_error(err, &context));
        let Some(deleted) = reported(ctx, deleted) else {
            return Ok(None);
        };
        Ok(Some(ids_result("Inactive broadcasts deleted", deleted)?))
    }

    /// Delete every finished and aborted job of a domain; returns the ids deleted
    async fn delete_inactive_broadcasts_by_domain(
        &self,
        ctx: &Context<'_>,
        domain: DomainName,
    ) -> async_graphql::Result<Option<BroadcastMutationResult>> {
        let context = [("domain", domain.0.clone().into())];
        authorize(ctx, &domain, "deleteInactiveBroadcastsByDomain")?;
        let deleted = service(ctx)
            .delete_inactive_of_domain(&domain.0)
            .await
            .map_err(|err| query_error(err, &context));
        let Some(deleted) = reported(ctx, deleted) else {
            return Ok(None);
        };
        Ok(Some(ids_result("Inactive broadcasts deleted", deleted)?))
    }

    /// Stop the running job of a domain, whichever instance runs it, as MongooseIM does when
    /// a domain is removed; returns the ids aborted, none if no job runs (xmpp-broadcast's own
    /// addition). The global admin may name a domain that is no longer configured but still
    /// has jobs
    async fn abort_broadcasts_by_domain(
        &self,
        ctx: &Context<'_>,
        domain: DomainName,
    ) -> async_graphql::Result<Option<BroadcastMutationResult>> {
        let context = [("domain", domain.0.clone().into())];
        authorize(ctx, &domain, "abortBroadcastsByDomain")?;
        let aborted = service(ctx)
            .abort_domain(&domain.0)
            .await
            .map_err(|err| abort_error(err, &context));
        let Some(aborted) = reported(ctx, aborted) else {
            return Ok(None);
        };
        Ok(Some(ids_result("Broadcasts aborted", aborted)?))
    }

    /// Correct a broadcast after it ended: a follow-up job sends every recipient it may have
    /// reached a XEP-0308 correction (the new subject and body, replacing the original message)
    /// from the same sender. A correction of a correction corrects the original broadcast
    /// (xmpp-broadcast's own addition)
    #[allow(clippy::too_many_arguments)]
    async fn correct_broadcast(
        &self,
        ctx: &Context<'_>,
        domain: DomainName,
        #[graphql(desc = "The job to correct: a broadcast, or a correction of one")] id: i32,
        #[graphql(desc = "The corrected subject (may be empty)")] message_subject: String,
        #[graphql(desc = "The corrected body")] message_body: String,
        #[graphql(desc = "Messages per second, 1-1000")] message_rate: PosInt,
        #[graphql(desc = "Makes retries safe: the same key on the domain with the same \
                          arguments answers with the job it created first; 1-128 printable \
                          ASCII characters (xmpp-broadcast's own addition)")]
        idempotency_key: Option<String>,
        #[graphql(
            desc = "BCP 47 language tag of the corrected subject and body; required \
                          with translations. The correction replaces the whole message: give \
                          every language it should have (xmpp-broadcast's own addition)"
        )]
        language: Option<String>,
        #[graphql(
            desc = "The corrected message in other languages, as in startBroadcast \
                          (xmpp-broadcast's own addition)"
        )]
        translations: Option<Vec<BroadcastTranslationInput>>,
    ) -> async_graphql::Result<Option<BroadcastMutationResult>> {
        let context = [("domain", domain.0.clone().into()), ("id", id.into())];
        authorize(ctx, &domain, "correctBroadcast")?;
        let follow_up = FollowUp::Correction {
            subject: message_subject,
            body: message_body,
            language,
            translations: translations_of(translations),
        };
        let started = service(ctx)
            .amend(
                &domain.0,
                i64::from(id),
                follow_up,
                message_rate.0,
                idempotency_key,
            )
            .await
            .map_err(|err| start_error(err, &context));
        follow_up_started(ctx, started, "Broadcast correction started")
    }

    /// Retract a broadcast after it ended: a follow-up job sends every recipient it may have
    /// reached a XEP-0424 retraction of the original message (with a fallback body for
    /// clients that cannot retract) from the same sender (xmpp-broadcast's own addition)
    async fn retract_broadcast(
        &self,
        ctx: &Context<'_>,
        domain: DomainName,
        #[graphql(desc = "The job to retract: a broadcast, or a correction of one")] id: i32,
        #[graphql(desc = "Messages per second, 1-1000")] message_rate: PosInt,
        #[graphql(desc = "Makes retries safe: the same key on the domain with the same \
                          arguments answers with the job it created first; 1-128 printable \
                          ASCII characters (xmpp-broadcast's own addition)")]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<Option<BroadcastMutationResult>> {
        let context = [("domain", domain.0.clone().into()), ("id", id.into())];
        authorize(ctx, &domain, "retractBroadcast")?;
        let started = service(ctx)
            .amend(
                &domain.0,
                i64::from(id),
                FollowUp::Retraction,
                message_rate.0,
                idempotency_key,
            )
            .await
            .map_err(|err| start_error(err, &context));
        follow_up_started(ctx, started, "Broadcast retraction started")
    }

    /// Pause a running broadcast job, whichever instance runs it: it sends nothing from about
    /// a second later, holds no lease, and resumes from its committed progress. A paused job
    /// is not the domain's running job; it stays RUNNING in `executionState` and is PAUSED in
    /// `status` (xmpp-broadcast's own addition)
    async fn pause_broadcast(
        &self,
        ctx: &Context<'_>,
        domain: DomainName,
        id: i32,
    ) -> async_graphql::Result<Option<BroadcastMutationResult>> {
        change_hold(ctx, domain, id, Hold::Pause).await
    }

    /// Resume a paused broadcast job from its committed progress, on an instance that serves
    /// the domain; refused while another job of the domain runs (xmpp-broadcast's own
    /// addition)
    async fn resume_broadcast(
        &self,
        ctx: &Context<'_>,
        domain: DomainName,
        id: i32,
    ) -> async_graphql::Result<Option<BroadcastMutationResult>> {
        change_hold(ctx, domain, id, Hold::Resume).await
    }
}

/// What `pauseBroadcast` and `resumeBroadcast` do.
#[derive(Clone, Copy)]
enum Hold {
    Pause,
    Resume,
}

/// Pauses or resumes job `id` of `domain`; the answer, or the error reported on the field.
async fn change_hold(
    ctx: &Context<'_>,
    domain: DomainName,
    id: i32,
    hold: Hold,
) -> async_graphql::Result<Option<BroadcastMutationResult>> {
    let (field, message) = match hold {
        Hold::Pause => ("pauseBroadcast", "Broadcast job paused"),
        Hold::Resume => ("resumeBroadcast", "Broadcast job resumed"),
    };
    let context = [("domain", domain.0.clone().into()), ("id", id.into())];
    authorize(ctx, &domain, field)?;
    let (domain, id) = (domain.0, i64::from(id));
    let changed = match hold {
        Hold::Pause => service(ctx).pause(&domain, id).await,
        Hold::Resume => service(ctx).resume(&domain, id).await,
    };
    let changed = changed.map_err(|err| hold_error(err, &context));
    if reported(ctx, changed).is_none() {
        return Ok(None);
    }
    Ok(Some(ids_result(message, vec![id])?))
}

/// The answer of a mutation that started a follow-up job, or its error reported on the field.
fn follow_up_started(
    ctx: &Context<'_>,
    started: async_graphql::Result<i64>,
    message: &str,
) -> async_graphql::Result<Option<BroadcastMutationResult>> {
    let Some(id) = reported(ctx, started) else {
        return Ok(None);
    };
    Ok(Some(ids_result(message, vec![id])?))
}

/// A mutation's answer: `message` and the jobs concerned.
fn ids_result(message: &str, ids: Vec<i64>) -> async_graphql::Result<BroadcastMutationResult> {
    Ok(BroadcastMutationResult {
        message: message.to_owned(),
        ids: ids.into_iter().map(graphql_id).collect::<Result<_, _>>()?,
    })
}

/// Refuses a domain admin acting on another domain, as MongooseIM's `@protected` does; the
/// HTTP layer answers such an error with 401.
fn authorize(ctx: &Context<'_>, domain: &DomainName, field: &str) -> async_graphql::Result<()> {
    let caller = ctx.data_unchecked::<Caller>();
    if caller.principal.may_manage(&domain.0) {
        return Ok(());
    }
    let (message, path) = permission_denied(&caller.operation, field);
    Err(
        async_graphql::Error::new(message).extend_with(move |_, extensions| {
            extensions.set("code", ErrorCode::NoPermissions.as_str());
            extensions.set(
                "path",
                async_graphql::Value::List(path.iter().map(|part| part.as_str().into()).collect()),
            );
        }),
    )
}

/// MongooseIM's message and path for a domain admin's `field` on another domain, under
/// `operation` (the request's operation name, or `ROOT`).
pub fn permission_denied(operation: &str, field: &str) -> (String, Vec<String>) {
    let message = format!(
        "Cannot execute query {operation} without permissions to the given domain. \
         Args with invalid value: domain"
    );
    let path = vec![
        operation.to_owned(),
        "broadcast".to_owned(),
        field.to_owned(),
    ];
    (message, path)
}

/// The outcome of a broadcast mutation.
#[derive(SimpleObject)]
pub struct BroadcastMutationResult {
    /// What was done
    message: String,
    /// The jobs concerned
    ids: Vec<i32>,
}

// A remote of `job::RecipientGroup`, as `BroadcastJobState` is of the states.
/// Recipients of a broadcast.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::job::RecipientGroup")]
pub enum BroadcastRecipientGroup {
    /// Every registered user of the domain when the job is created
    AllUsersInDomain,
    /// The accounts of the domain named in the request (`recipients`) that exist when it is
    /// made (xmpp-broadcast's own addition)
    Listed,
    /// The members of a group configured for the domain (`group`) when the job starts
    /// (xmpp-broadcast's own addition)
    Group,
}

/// What a request names as its recipients.
fn audience_request(
    group: BroadcastRecipientGroup,
    recipients: Option<Vec<BareJid>>,
    group_name: Option<String>,
) -> job::AudienceRequest {
    job::AudienceRequest {
        group: group.into(),
        recipients: recipients.map(|list| list.into_iter().map(|jid| jid.0.to_string()).collect()),
        group_name,
    }
}

/// The unknown names of a list, as the API's two fields show them.
fn unknown_fields(unknown: Option<job::Unknown>) -> (Option<NonNegInt>, Option<Vec<Jid>>) {
    match unknown {
        Some(unknown) => (
            Some(NonNegInt(unknown.count)),
            Some(unknown.sample.into_iter().map(Jid).collect()),
        ),
        None => (None, None),
    }
}

// A remote of `job::ExecutionState`: the compiler checks that the variants are the same, and a
// test that the GraphQL names are the ones the job module gives.
/// The state of a broadcast job.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::job::ExecutionState")]
pub enum BroadcastJobState {
    /// Sending
    Running,
    /// Every recipient was processed
    Finished,
    /// Stopped by an error
    AbortError,
    /// Stopped by an administrator
    AbortAdmin,
}

#[cfg(test)]
#[test]
fn graphql_names_of_the_job_states_are_the_apis() {
    use async_graphql::resolver_utils::EnumType;
    for item in BroadcastJobState::items() {
        let state: crate::job::ExecutionState = item.value.into();
        assert_eq!(item.name, state.as_api_str());
    }
    assert_eq!(
        BroadcastJobState::items().len(),
        crate::job::ExecutionState::ALL.len()
    );
}

/// A broadcast job, as the GraphQL type `Broadcast`.
pub struct BroadcastObject(Job);

#[Object(name = "Broadcast")]
impl BroadcastObject {
    async fn id(&self) -> async_graphql::Result<i32> {
        graphql_id(self.0.id)
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn domain(&self) -> DomainName {
        DomainName(self.0.domain.clone())
    }

    async fn message_subject(&self) -> &str {
        &self.0.subject
    }

    async fn message_body(&self) -> &str {
        &self.0.body
    }

    async fn sender_jid(&self) -> Jid {
        Jid(self.0.sender_jid.clone())
    }

    async fn message_rate(&self) -> PosInt {
        PosInt(i64::from(self.0.rate))
    }

    /// The instance running the job, or "undefined" when none does
    async fn owner_node(&self) -> &str {
        self.0.owner.as_deref().unwrap_or("undefined")
    }

    async fn create_timestamp(&self) -> DateTime {
        DateTime(self.0.created_at)
    }

    async fn start_timestamp(&self) -> Option<DateTime> {
        self.0.started_at.map(DateTime)
    }

    async fn stop_timestamp(&self) -> Option<DateTime> {
        self.0.stopped_at.map(DateTime)
    }

    async fn execution_state(&self) -> BroadcastJobState {
        self.0.state.into()
    }

    async fn abortion_reason(&self) -> Option<&str> {
        self.0.abortion_reason.as_deref()
    }

    async fn recipient_group(&self) -> BroadcastRecipientGroup {
        self.0.recipient_group.into()
    }

    /// The number of recipients; while they are being counted (recipientsCounted false),
    /// the recipients processed so far, and at least 1
    async fn recipient_count(&self) -> PosInt {
        let job = &self.0;
        if job.recipients_counted {
            PosInt(job.recipient_count)
        } else {
            PosInt(job.recipients_processed.max(1))
        }
    }

    async fn recipients_processed(&self) -> NonNegInt {
        NonNegInt(self.0.recipients_processed)
    }

    /// Why no instance is running this RUNNING job now (its lease expired): which instance
    /// it waits for, and why the answering instance does not run it; for a SCHEDULED job whose
    /// time has come, that it waits for the domain's running job to end; null while an
    /// instance runs it, while it is paused or not yet due, and for jobs that ended
    /// (xmpp-broadcast's own addition)
    async fn waiting_reason(&self, ctx: &Context<'_>) -> Option<String> {
        service(ctx).waiting_reason(&self.0)
    }

    /// What the job sends: a broadcast, or a correction or retraction of one
    /// (xmpp-broadcast's own addition)
    async fn kind(&self) -> BroadcastKind {
        self.0.kind.into()
    }

    /// The broadcast a correction or retraction amends; null for a broadcast
    /// (xmpp-broadcast's own addition)
    async fn amends(&self) -> async_graphql::Result<Option<i32>> {
        self.0
            .amends
            .map(|amends| graphql_id(amends.job_id))
            .transpose()
    }

    /// Where the job is in its life, holds included: `executionState` (which a scheduled or
    /// paused job shows as RUNNING, as it has not ended) with SCHEDULED and PAUSED
    /// (xmpp-broadcast's own addition)
    async fn status(&self) -> BroadcastStatus {
        self.0.status().into()
    }

    /// The time the job was scheduled to start at; null for a job started at once
    /// (xmpp-broadcast's own addition)
    async fn start_at(&self) -> Option<DateTime> {
        self.0.start_at.map(DateTime)
    }

    /// When the job was paused, while it is PAUSED (xmpp-broadcast's own addition)
    async fn paused_at(&self) -> Option<DateTime> {
        self.0.paused_at.map(DateTime)
    }

    /// The BCP 47 tag of messageSubject and messageBody (the message's xml:lang); null when
    /// none was given (xmpp-broadcast's own addition)
    async fn language(&self) -> Option<&str> {
        self.0.language.as_deref()
    }

    /// The message in other languages, in the order they are sent; empty for none
    /// (xmpp-broadcast's own addition)
    async fn translations(&self) -> Vec<BroadcastTranslation> {
        self.0
            .translations
            .iter()
            .map(|translation| BroadcastTranslation {
                language: translation.language.clone(),
                message_subject: translation.subject.clone(),
                message_body: translation.body.clone(),
            })
            .collect()
    }

    /// The configured group the job is for, with recipientGroup GROUP (xmpp-broadcast's own
    /// addition)
    async fn group(&self) -> Option<&str> {
        self.0.group.as_deref()
    }

    /// With recipientGroup LISTED: how many of the names in the request were not accounts of
    /// the domain when it was made, and were not sent to (xmpp-broadcast's own addition)
    async fn unknown_recipient_count(&self) -> Option<NonNegInt> {
        self.0
            .unknown
            .as_ref()
            .map(|unknown| NonNegInt(unknown.count))
    }

    /// With recipientGroup LISTED: the first of those names, in byte order (at most 10)
    /// (xmpp-broadcast's own addition)
    async fn unknown_recipients(&self) -> Option<Vec<Jid>> {
        self.0
            .unknown
            .as_ref()
            .map(|unknown| unknown.sample.iter().cloned().map(Jid).collect())
    }

    /// Whether recipientCount is the number of recipients: a job for every user of a large
    /// domain answers before they are counted, its set already fixed, and is counted while it
    /// sends, within seconds (xmpp-broadcast's own addition)
    async fn recipients_counted(&self) -> bool {
        self.0.recipients_counted
    }
}

/// The text of a broadcast in one more language.
#[derive(InputObject)]
pub struct BroadcastTranslationInput {
    /// BCP 47 language tag, such as de or pt-BR
    language: String,
    /// Subject in this language; empty (the default) for none
    #[graphql(default)]
    message_subject: String,
    /// Body in this language
    message_body: String,
}

/// The translations of a request: none when absent.
fn translations_of(translations: Option<Vec<BroadcastTranslationInput>>) -> Vec<Translation> {
    translations
        .unwrap_or_default()
        .into_iter()
        .map(|translation| Translation {
            language: translation.language,
            subject: translation.message_subject,
            body: translation.message_body,
        })
        .collect()
}

/// The text of a broadcast in one more language (xmpp-broadcast's own addition).
#[derive(SimpleObject)]
pub struct BroadcastTranslation {
    /// BCP 47 language tag
    language: String,
    /// Subject in this language (may be empty)
    message_subject: String,
    /// Body in this language
    message_body: String,
}

/// Where a broadcast job is in its life: `BroadcastJobState`, with the holds a job can be in
/// before it ends.
// A remote of `job::Status`, as `BroadcastJobState` is of the states.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::job::Status")]
pub enum BroadcastStatus {
    /// Waiting for its start time (or, once due, for the domain's running job to end)
    Scheduled,
    /// Sending
    Running,
    /// Paused by an administrator
    Paused,
    /// Every recipient was processed
    Finished,
    /// Stopped by an error
    AbortError,
    /// Stopped by an administrator
    AbortAdmin,
}

#[cfg(test)]
#[test]
fn graphql_names_of_the_statuses_are_the_apis() {
    use async_graphql::resolver_utils::EnumType;
    for item in BroadcastStatus::items() {
        let status: crate::job::Status = item.value.into();
        assert_eq!(item.name, status.as_api_str());
    }
    assert_eq!(
        BroadcastStatus::items().len(),
        crate::job::Status::ALL.len()
    );
}

// A remote of `job::JobKind`, as `BroadcastJobState` is of the states.
/// What a broadcast job sends.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::job::JobKind")]
pub enum BroadcastKind {
    /// The message itself
    Broadcast,
    /// A XEP-0308 correction of a broadcast's message
    Correction,
    /// A XEP-0424 retraction of a broadcast's message
    Retraction,
}

#[cfg(test)]
#[test]
fn graphql_names_of_the_job_kinds_are_the_apis() {
    use async_graphql::resolver_utils::EnumType;
    for item in BroadcastKind::items() {
        let kind: crate::job::JobKind = item.value.into();
        assert_eq!(item.name, kind.as_api_str());
    }
    assert_eq!(BroadcastKind::items().len(), crate::job::JobKind::ALL.len());
}

/// Reports an operation error on this field alone, as MongooseIM does: the field is null, and
/// its parent and siblings keep their values.
fn reported<T>(ctx: &Context<'_>, result: async_graphql::Result<T>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            ctx.add_error(ctx.set_error_path(error.into_server_error(ctx.item.pos)));
            None
        }
    }
}

fn service<'a>(ctx: &Context<'a>) -> &'a BroadcastService {
    ctx.data_unchecked::<BroadcastService>()
}

/// Job ids are GraphQL `Int`s, as in MongooseIM. The store creates none beyond
/// `broadcast::MAX_JOB_ID`, so every id fits; one that does not is an error, never clamped.
fn graphql_id(id: i64) -> async_graphql::Result<i32> {
    i32::try_from(id)
        .map_err(|_| async_graphql::Error::new(format!("job id {id} does not fit a GraphQL Int")))
}

type ErrorContext<'a> = [(&'static str, async_graphql::Value)];

fn operation_error(
    code: ErrorCode,
    message: String,
    context: &ErrorContext<'_>,
) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, extensions| {
        extensions.set("code", code.as_str());
        for (key, value) in context {
            extensions.set(*key, value.clone());
        }
    })
}

fn start_error(err: StartError, context: &ErrorContext<'_>) -> async_graphql::Error {
    let code = match &err {
        StartError::DomainNotFound => ErrorCode::DomainNotFound,
        StartError::Invalid(
            InvalidRequest::BadParameter(_)
            | InvalidRequest::StartAt(_)
            | InvalidRequest::Language { .. },
        ) => ErrorCode::BadParameter,
        StartError::Invalid(InvalidRequest::MessageTooLarge { .. }) => ErrorCode::MessageTooLarge,
        StartError::Invalid(InvalidRequest::SenderNotInDomain) | StartError::SenderNotFound => {
            ErrorCode::SenderNotFound
        }
        StartError::Invalid(InvalidRequest::Audience(_)) => ErrorCode::BadParameter,
        StartError::UnknownGroup(_) => ErrorCode::GroupNotFound,
        StartError::NoRecipients => ErrorCode::NoRecipients,
        StartError::RunningJobLimitExceeded => ErrorCode::RunningJobLimitExceeded,
        StartError::TemporarilyUnavailable => ErrorCode::TemporarilyUnavailable,
        StartError::BroadcastNotFound => ErrorCode::BroadcastNotFound,
        StartError::StillRunning => ErrorCode::BroadcastStillRunning,
        StartError::NotAmendable => ErrorCode::NotAmendable,
        StartError::IdempotencyKeyReused { .. } => ErrorCode::IdempotencyKeyReused,
        StartError::JobIdsExhausted(_) => {
            tracing::error!(error = %err, "startBroadcast refused");
            ErrorCode::JobIdsExhausted
        }
        StartError::Directory(_) => {
            tracing::error!(error = %err, "startBroadcast cannot count the recipients");
            return operation_error(
                ErrorCode::CannotCountRecipients,
                format!("{CANNOT_COUNT}; no job was created"),
                context,
            );
        }
        StartError::Store(_) => {
            tracing::error!(error = %err, "startBroadcast failed");
            return operation_error(
                ErrorCode::TemporarilyUnavailable,
                "Broadcast manager is temporarily unavailable".to_owned(),
                context,
            );
        }
    };
    match argument_of(&err) {
        Some(argument) => {
            let mut context = context.to_vec();
            context.push((ARGUMENT, argument.into()));
            operation_error(code, err.to_string(), &context)
        }
        None => operation_error(code, err.to_string(), context),
    }
}

/// The key of an operation error's extensions that names the argument it concerns, as the
/// request wrote it (`messageBody`, `senderJid`), so that a form can show the error at its
/// field (xmpp-broadcast's own addition; MongooseIM's message stays as it is).
pub const ARGUMENT: &str = "argument";

/// The argument of `startBroadcast`, `correctBroadcast` or `retractBroadcast` a refusal
/// concerns, if it concerns one.
fn argument_of(err: &StartError) -> Option<&'static str> {
    match err {
        StartError::Invalid(InvalidRequest::BadParameter(parameter)) => Some(match parameter {
            Parameter::MessageRate => "messageRate",
            Parameter::Name => "name",
            Parameter::Subject => "messageSubject",
            Parameter::Body => "messageBody",
            Parameter::IdempotencyKey => "idempotencyKey",
            Parameter::Language => "language",
            Parameter::Translations => "translations",
        }),
        StartError::Invalid(InvalidRequest::Language { problem }) => {
            Some(match problem.parameter() {
                Parameter::Language => "language",
                _ => "translations",
            })
        }
        StartError::Invalid(InvalidRequest::SenderNotInDomain) | StartError::SenderNotFound => {
            Some("senderJid")
        }
        StartError::Invalid(InvalidRequest::StartAt(_)) => Some("startAt"),
        StartError::Invalid(InvalidRequest::Audience(problem)) => Some(problem.argument()),
        StartError::UnknownGroup(_) => Some("group"),
        StartError::IdempotencyKeyReused { .. } => Some("idempotencyKey"),
        _ => None,
    }
}

/// The message of `cannot_count_recipients`: the users database failed (its error is in the
/// log only, as it may name the database's address).
const CANNOT_COUNT: &str = "Cannot count the recipients: the users database failed (the \
                            instance's log has the error)";

fn abort_error(err: AbortError, context: &ErrorContext<'_>) -> async_graphql::Error {
    let code = match &err {
        AbortError::DomainNotFound => ErrorCode::DomainNotFound,
        AbortError::NotFound => ErrorCode::BroadcastNotFound,
        AbortError::NotRunning => ErrorCode::NotRunning,
        AbortError::Store(StoreError::NotReached) => return not_reached(context),
        AbortError::NotRecorded { source, .. } => {
            tracing::error!(error = %source, "the job database cannot record an abort");
            return operation_error(ErrorCode::DatabaseError, err.to_string(), context);
        }
        AbortError::Store(_) | AbortError::Directory(_) => return database_error(&err, context),
    };
    operation_error(code, err.to_string(), context)
}

/// `database_error`: the job database failed (the details in the log only).
fn hold_error(err: HoldError, context: &ErrorContext<'_>) -> async_graphql::Error {
    let code = match &err {
        HoldError::DomainNotFound => ErrorCode::DomainNotFound,
        HoldError::NotFound => ErrorCode::BroadcastNotFound,
        HoldError::NotRunning(_) => ErrorCode::NotRunning,
        HoldError::NotPaused(_) => ErrorCode::NotPaused,
        HoldError::RunningJobLimitExceeded => ErrorCode::RunningJobLimitExceeded,
        HoldError::TemporarilyUnavailable | HoldError::Store(StoreError::NotReached) => {
            ErrorCode::TemporarilyUnavailable
        }
        HoldError::Store(StoreError::InvalidRow(bad)) => {
            tracing::error!(error = %bad, "unusable stored job");
            return operation_error(ErrorCode::DatabaseError, bad.to_string(), context);
        }
        HoldError::Store(_) | HoldError::Directory(_) => return database_error(&err, context),
    };
    operation_error(code, err.to_string(), context)
}

fn database_error(err: &dyn std::fmt::Display, context: &ErrorContext<'_>) -> async_graphql::Error {
    tracing::error!(error = %err, "job database error");
    operation_error(
        ErrorCode::DatabaseError,
        "The job database cannot be reached; try again".to_owned(),
        context,
    )
}

/// `temporarily_unavailable`, at once: the job database has not been reached since this
/// instance started (it is tried again in the background, its cause logged there).
fn not_reached(context: &ErrorContext<'_>) -> async_graphql::Error {
    operation_error(
        ErrorCode::TemporarilyUnavailable,
        format!(
            "Broadcast manager is temporarily unavailable: {}",
            StoreError::NotReached
        ),
        context,
    )
}

fn query_error(err: QueryError, context: &ErrorContext<'_>) -> async_graphql::Error {
    let code = match &err {
        QueryError::DomainNotFound => ErrorCode::DomainNotFound,
        QueryError::NotFound => ErrorCode::BroadcastNotFound,
        // A stored job that cannot be read: the answer names the job and the column, so that
        // the operator can delete it.
        QueryError::Store(StoreError::InvalidRow(bad)) => {
            tracing::error!(error = %bad, "unusable stored job");
            return operation_error(ErrorCode::DatabaseError, bad.to_string(), context);
        }
        QueryError::Store(StoreError::NotReached) => return not_reached(context),
        QueryError::Directory(_) => {
            tracing::error!(error = %err, "cannot count the recipients");
            return operation_error(
                ErrorCode::CannotCountRecipients,
                CANNOT_COUNT.to_owned(),
                context,
            );
        }
        QueryError::Store(_) => return database_error(&err, context),
    };
    operation_error(code, err.to_string(), context)
}

#[cfg(test)]
mod error_mapping {
    use super::*;
    use crate::directory::DirectoryError;

    /// The code and message an operation error carries.
    fn answered(error: async_graphql::Error) -> (String, String) {
        let code = error
            .extensions
            .as_ref()
            .and_then(|extensions| extensions.get("code"))
            .and_then(|code| code.clone().into_json().ok())
            .and_then(|code| code.as_str().map(str::to_owned))
            .unwrap_or_default();
        (code, error.message)
    }

    fn job_database_failure() -> StoreError {
        StoreError::Database(sqlx::Error::PoolTimedOut)
    }

    fn users_database_failure() -> DirectoryError {
        DirectoryError::Database(sqlx::Error::Protocol("connection reset".into()))
    }

    /// A users database that fails while a start reads or counts the recipients answers
    /// MongooseIM's `cannot_count_recipients`, and so does the dry run; the job database's
    /// failures keep their codes.
    #[test]
    fn a_failing_users_database_cannot_count_recipients() {
        let start = start_error(StartError::Directory(users_database_failure()), &[]);
        assert_eq!(
            answered(start),
            (
                "cannot_count_recipients".to_owned(),
                format!("{CANNOT_COUNT}; no job was created")
            )
        );
        let count = query_error(QueryError::Directory(users_database_failure()), &[]);
        assert_eq!(
            answered(count),
            (
                "cannot_count_recipients".to_owned(),
                CANNOT_COUNT.to_owned()
            )
        );
        assert!(
            !CANNOT_COUNT.contains("connection reset"),
            "details stay in the log"
        );
        let jobs = start_error(StartError::Store(job_database_failure()), &[]);
        assert_eq!(answered(jobs).0, "temporarily_unavailable");
        let read = query_error(QueryError::Store(job_database_failure()), &[]);
        assert_eq!(answered(read).0, "database_error");
    }

    /// An abort the job database did not record answers `database_error` with a message that
    /// says whether this instance stopped its sending and that the abort is retried.
    #[test]
    fn an_unrecorded_abort_says_what_happened() {
        for (stopped_here, says) in [
            (true, "This instance stopped its own sending of the job"),
            (
                false,
                "its owner goes on sending until the abort is recorded",
            ),
        ] {
            let err = AbortError::NotRecorded {
                stopped_here,
                source: job_database_failure(),
            };
            let (code, message) = answered(abort_error(err, &[]));
            assert_eq!(code, "database_error");
            assert!(
                message.starts_with("The abort is not recorded yet"),
                "{message}"
            );
            assert!(message.contains(says), "{message}");
            assert!(
                message.contains("retries recording the abort every second"),
                "{message}"
            );
        }
    }
}
