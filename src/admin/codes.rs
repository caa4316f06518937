//! The admin API's error codes — the contract a client branches on. Each code is defined once
//! here with the HTTP status it is answered with and the kind of failure a client reports for
//! it ([`Failure`], which the CLI turns into its exit code). The server answers with
//! [`ErrorCode::as_str`]; the client reads codes back with [`ErrorCode::parse`]; `--help` and
//! the README list the codes of each exit code from [`ErrorCode::ALL`].

/// What kind of failure an error is, for a client's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// An argument the server refused.
    InvalidInput,
    /// The domain or the job does not exist.
    NotFound,
    /// The job's state forbids it.
    Conflict,
    /// Try again later: the server cannot do it now (also HTTP 5xx, nothing listening, no
    /// answer in time).
    Unavailable,
    /// Missing or wrong credentials, or a domain the user may not manage (HTTP 401).
    Unauthorized,
    /// Anything else: a request this server does not accept, an answer that is not the admin
    /// API's.
    Other,
}

/// Defines [`ErrorCode`] from one table: variant, code, HTTP status, failure kind.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal, $status:literal, $failure:ident;)*) => {
        /// An `extensions.code` of the admin API.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in the table's order.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as the API writes it, such as `broadcast_not_found`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status of an answer carrying this code.
            pub const fn http_status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }

            /// What a client reports for this code.
            pub const fn failure(self) -> Failure {
                match self {
                    $(ErrorCode::$variant => Failure::$failure,)*
                }
            }
        }
    };
}

error_codes! {
    // The request is refused before anything runs.
    /// No `Authorization` header.
    NoPermissions = "no_permissions", 401, Unauthorized;
    /// Credentials that are not an admin's, or a header in a wrong form.
    WrongCredentials = "wrong_credentials", 401, Unauthorized;
    /// The body is not a JSON object.
    InvalidJsonBody = "invalid_json_body", 400, Other;
    /// `variables` is neither an object nor a JSON text of one.
    VariablesInvalidJson = "variables_invalid_json", 400, Other;
    /// The request has no query.
    NoQuerySupplied = "no_query_supplied", 400, Other;
    /// The query is not GraphQL.
    ParserError = "parser_error", 400, Other;
    /// The query does not fit the schema.
    ValidationError = "validation_error", 400, Other;
    /// An argument's value does not fit its type.
    InputCoercion = "input_coercion", 400, InvalidInput;
    /// The query is over the document bounds (size, nesting, selections with fragments
    /// expanded, aliases, depth); nothing was validated or run.
    QueryTooComplex = "query_too_complex", 400, Other;
    /// A POST that a page of another origin sent (its `Origin` or `Sec-Fetch-Site`).
    CrossOriginRequest = "cross_origin_request", 403, Other;
    /// A POST whose body is not `application/json`.
    UnsupportedMediaType = "unsupported_media_type", 415, Other;
    /// Too many failed logins from the client's address or for the account: wait
    /// (`Retry-After`).
    TooManyLoginFailures = "too_many_login_failures", 429, Unavailable;
    /// Every password verifier is busy: try again shortly (`Retry-After`).
    LoginBusy = "login_busy", 503, Unavailable;
    // An operation failed: its field is null, HTTP 200.
    /// The domain is not served by this instance (nor, for reading, aborting and deleting, a
    /// domain with jobs in the job database).
    DomainNotFound = "domain_not_found", 200, NotFound;
    /// No job of the domain has this id.
    BroadcastNotFound = "broadcast_not_found", 200, NotFound;
    /// An argument is out of its limits.
    BadParameter = "bad_parameter", 200, InvalidInput;
    /// The message, with every language, would be larger than XMPP servers accept from a
    /// component; nothing was created.
    MessageTooLarge = "message_too_large", 200, InvalidInput;
    /// The sender is not an account of the domain.
    SenderNotFound = "sender_not_found", 200, InvalidInput;
    /// The domain has no user to send to.
    NoRecipients = "no_recipients", 200, InvalidInput;
    GroupNotFound = "group_not_found", 200, NotFound;
    /// The users database failed while the recipients were read or counted (`startBroadcast`,
    /// nothing created; `countBroadcastRecipients`).
    CannotCountRecipients = "cannot_count_recipients", 200, Unavailable;
    /// The domain already has a running job.
    RunningJobLimitExceeded = "running_job_limit_exceeded", 200, Conflict;
    /// The job is not running (for `pauseBroadcast`: not sending — scheduled, paused or ended).
    NotRunning = "not_running", 200, Conflict;
    /// The job to resume is not paused.
    NotPaused = "not_paused", 200, Conflict;
    /// The instance cannot start jobs now (its leases cannot be trusted, or the job database
    /// failed), or its job database has not been reached since it started (any operation on
    /// jobs).
    TemporarilyUnavailable = "temporarily_unavailable", 200, Unavailable;
    /// The job database failed, or a stored job cannot be read (the message says which).
    DatabaseError = "database_error", 200, Unavailable;
    /// The broadcast to correct or retract is still running; nothing was created.
    BroadcastStillRunning = "broadcast_still_running", 200, Conflict;
    /// A retraction cannot be corrected or retracted; nothing was created.
    NotAmendable = "not_amendable", 200, Conflict;
    /// The idempotency key was used on the domain for another job's request, with other
    /// arguments; nothing was created.
    IdempotencyKeyReused = "idempotency_key_reused", 200, Conflict;
    /// No job id is left that fits the API's 32-bit integers; nothing was created.
    JobIdsExhausted = "job_ids_exhausted", 200, Conflict;
}

impl ErrorCode {
    /// The code written as `text`, if the API has it.
    pub fn parse(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|code| code.as_str() == text)
    }

    /// The codes a client reports as `failure`, in the table's order.
    pub fn of_failure(failure: Failure) -> impl Iterator<Item = ErrorCode> {
        ErrorCode::ALL
            .iter()
            .copied()
            .filter(move |code| code.failure() == failure)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_and_is_unique() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
            let same = ErrorCode::ALL
                .iter()
                .filter(|c| c.as_str() == code.as_str());
            assert_eq!(same.count(), 1, "{code}");
        }
        assert_eq!(ErrorCode::parse("resolver_crash"), None);
    }

    #[test]
    fn statuses_follow_mongooseim() {
        assert_eq!(ErrorCode::NoPermissions.http_status(), 401);
        assert_eq!(ErrorCode::InputCoercion.http_status(), 400);
        assert_eq!(ErrorCode::BroadcastNotFound.http_status(), 200);
    }
}
