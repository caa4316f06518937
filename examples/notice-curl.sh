#!/usr/bin/env bash
# A maintenance notice with curl and jq against the GraphQL admin API, without the CLI: show
# who it will reach (countBroadcastRecipients), send it (startBroadcast), poll getBroadcast
# until it ends, and exit with how it ended; or correct (correctBroadcast) or retract
# (retractBroadcast) a notice sent before. Runs against any running instance.
#
#   bash examples/notice-curl.sh DOMAIN SUBJECT NOTICE_FILE    (NOTICE_FILE '-': standard input)
#   bash examples/notice-curl.sh correct JOB_ID DOMAIN SUBJECT NOTICE_FILE
#   bash examples/notice-curl.sh retract JOB_ID DOMAIN
#
#   export XMPP_BROADCAST_URL=http://127.0.0.1:5551 XMPP_BROADCAST_USER=admin
#   export XMPP_BROADCAST_PASSWORD=change-me-too
#   bash examples/notice-curl.sh example.com 'Maintenance tonight' notice.txt
#   bash examples/notice-curl.sh correct 7 example.com 'Maintenance tonight' fixed-notice.txt
#   bash examples/notice-curl.sh retract 7 example.com
#
# The instance: XMPP_BROADCAST_URL (http://<admin.listen>), XMPP_BROADCAST_USER and
# XMPP_BROADCAST_PASSWORD. Optional: SENDER (default admin@DOMAIN), RATE (messages per second,
# default 100), NAME (default maintenance-<date>), POLL_SECONDS (default 1), IDEMPOTENCY_KEY
# (default: a random key made once per run; give one of your own, such as a hash of the notice,
# to make reruns of the whole script safe too). A correction or retraction comes from the
# sender of job JOB_ID and reaches the users that job reached; SENDER and NAME do not apply.
# Needs curl and jq. Every value travels as a GraphQL variable, so the notice may hold quotes,
# backslashes and newlines.
#
# Exit status, as the CLI's: 0 delivered to every user, 2 bad input (bad_parameter,
# input_coercion, sender_not_found, no_recipients), 3 not found (domain_not_found,
# broadcast_not_found), 4 conflict (running_job_limit_exceeded, broadcast_still_running,
# not_amendable, idempotency_key_reused, job_ids_exhausted), 5 unavailable (temporarily_unavailable, database_error,
# cannot_count_recipients, no connection), 6 refused credentials (HTTP 401), 10 aborted by an
# administrator (ABORT_ADMIN), 11 stopped by an error (ABORT_ERROR).
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}
MODE=start ORIGINAL=null
case ${1:-} in
    correct) (($# == 5)) || usage; MODE=$1 ORIGINAL=$2; shift 2 ;;
    retract) (($# == 3)) || usage; MODE=$1 ORIGINAL=$2; shift 2 ;;
    *) (($# == 3)) || usage ;;
esac
[[ $ORIGINAL =~ ^([0-9]+|null)$ ]] || { printf 'JOB_ID is a number: %s\n' "$ORIGINAL" >&2; exit 2; }
DOMAIN=$1
: "${XMPP_BROADCAST_URL:?set XMPP_BROADCAST_URL, e.g. http://127.0.0.1:5551}"
: "${XMPP_BROADCAST_USER:?set XMPP_BROADCAST_USER}" "${XMPP_BROADCAST_PASSWORD:?set XMPP_BROADCAST_PASSWORD}"
SENDER=${SENDER:-admin@$DOMAIN}
RATE=${RATE:-100}
NAME=${NAME:-maintenance-$(date -u +%Y%m%dT%H%M)}
POLL_SECONDS=${POLL_SECONDS:-1}
# One idempotency key for this notice, made once: every attempt to create its job carries it,
# so an attempt after one that did create the job (its answer lost) is answered with that job,
# running or ended, and nothing is sent twice.
KEY=${IDEMPOTENCY_KEY:-notice-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}
ATTEMPTS=3      # how often an unavailable instance is tried
RETRY_SECONDS=5 # and how long to wait in between
ENDPOINT=${XMPP_BROADCAST_URL%/}/api/graphql

say() { printf '[notice] %s\n' "$*" >&2; }

# graphql QUERY VARIABLES: posts the request; prints data.broadcast. On an error prints its
# message and code and exits with the matching status.
graphql() {
    local request response code credentials
    request=$(jq -n --arg query "$1" --argjson variables "$2" \
        '{query: $query, variables: $variables}')
    # The password goes to curl on standard input (a config line, \ and " escaped), not on
    # its command line, where `ps` would show it.
    credentials=$XMPP_BROADCAST_USER:$XMPP_BROADCAST_PASSWORD
    credentials=${credentials//\\/\\\\}
    credentials=${credentials//\"/\\\"}
    response=$(printf 'user = "%s"\n' "$credentials" |
        curl -sS --max-time 60 -K - -H 'content-type: application/json' \
            --data-binary "$request" "$ENDPOINT") || { say "cannot reach $ENDPOINT"; exit 5; }
    code=$(jq -r '.errors[0].extensions.code // empty' <<<"$response" 2>/dev/null) ||
        { say "not the admin API's answer: $response"; exit 1; }
    if [[ -n $code ]]; then
        say "error: $(jq -r '.errors[0].message' <<<"$response") ($code)"
        case $code in
            bad_parameter | input_coercion | sender_not_found | no_recipients) exit 2 ;;
            domain_not_found | broadcast_not_found) exit 3 ;;
            running_job_limit_exceeded | not_running | broadcast_still_running | \
                not_amendable | idempotency_key_reused | job_ids_exhausted) exit 4 ;;
            temporarily_unavailable | database_error | cannot_count_recipients) exit 5 ;;
            no_permissions | wrong_credentials) exit 6 ;;
            *) exit 1 ;;
        esac
    fi
    jq '.data.broadcast' <<<"$response"
}

# create QUERY VARIABLES FIELD: runs the mutation that creates the job, again while the
# instance is unavailable (exit 5; safe with the idempotency key in VARIABLES); prints the
# job's id.
create() {
    local attempt status started
    for ((attempt = 1; ; attempt++)); do
        status=0
        started=$(graphql "$1" "$2") || status=$?
        if ((status == 0)); then
            jq -r ".$3.ids[0]" <<<"$started"
            return
        fi
        if ((status != 5 || attempt == ATTEMPTS)); then exit "$status"; fi
        say "the instance is unavailable; trying again in ${RETRY_SECONDS}s"
        sleep "$RETRY_SECONDS"
    done
}

# 1. Who it will reach (nothing is created); for a correction or retraction, who job JOB_ID
#    reached.
preview=$(graphql 'query Count($domain: DomainName!, $amends: Int) { broadcast {
    countBroadcastRecipients(domain: $domain, sample: 5, amends: $amends) {
      recipientCount sample } } }' \
    "$(jq -n --arg domain "$DOMAIN" --argjson amends "$ORIGINAL" \
        '{domain: $domain, amends: $amends}')")
say "$(jq -r '.countBroadcastRecipients | "\(.recipientCount) users will receive it, such as \(.sample | join(", "))"' <<<"$preview")"

# 2. Send it: the notice's final line breaks are dropped, as the CLI does.
case $MODE in
    start)
        variables=$(jq -n --arg name "$NAME" --arg domain "$DOMAIN" --arg subject "$2" \
            --rawfile body <(cat -- "$3") --arg sender "$SENDER" --argjson rate "$RATE" \
            --arg key "$KEY" \
            '{name: $name, domain: $domain, subject: $subject,
              body: ($body | sub("[\r\n]+$"; "")), sender: $sender, rate: $rate, key: $key}')
        id=$(create 'mutation Start($name: String!, $domain: DomainName!,
            $subject: String!, $body: String!, $sender: BareJID!, $rate: PosInt!,
            $key: String) { broadcast {
            startBroadcast(name: $name, domain: $domain, messageSubject: $subject,
              messageBody: $body, senderJid: $sender, messageRate: $rate,
              recipientGroup: ALL_USERS_IN_DOMAIN, idempotencyKey: $key) { ids } } }' \
            "$variables" startBroadcast)
        done_message="delivered to every user of $DOMAIN" ;;
    correct)
        variables=$(jq -n --arg domain "$DOMAIN" --argjson id "$ORIGINAL" --arg subject "$2" \
            --rawfile body <(cat -- "$3") --argjson rate "$RATE" --arg key "$KEY" \
            '{domain: $domain, id: $id, subject: $subject,
              body: ($body | sub("[\r\n]+$"; "")), rate: $rate, key: $key}')
        id=$(create 'mutation Correct($domain: DomainName!, $id: Int!,
            $subject: String!, $body: String!, $rate: PosInt!, $key: String) { broadcast {
            correctBroadcast(domain: $domain, id: $id, messageSubject: $subject,
              messageBody: $body, messageRate: $rate, idempotencyKey: $key) { ids } } }' \
            "$variables" correctBroadcast)
        done_message="correction of job $ORIGINAL delivered to everyone it reached" ;;
    retract)
        variables=$(jq -n --arg domain "$DOMAIN" --argjson id "$ORIGINAL" \
            --argjson rate "$RATE" --arg key "$KEY" \
            '{domain: $domain, id: $id, rate: $rate, key: $key}')
        id=$(create 'mutation Retract($domain: DomainName!, $id: Int!, $rate: PosInt!,
            $key: String) { broadcast { retractBroadcast(domain: $domain, id: $id,
              messageRate: $rate, idempotencyKey: $key) { ids } } }' \
            "$variables" retractBroadcast)
        done_message="retraction of job $ORIGINAL delivered to everyone it reached" ;;
esac
say "started job $id on $DOMAIN"

# 3. Poll until the job is no longer running.
get_job=$(jq -n --arg domain "$DOMAIN" --argjson id "$id" '{domain: $domain, id: $id}')
while true; do
    job=$(graphql 'query Get($domain: DomainName!, $id: Int!) { broadcast {
        getBroadcast(domain: $domain, id: $id) {
          executionState recipientCount recipientsProcessed abortionReason } } }' "$get_job")
    state=$(jq -r '.getBroadcast.executionState' <<<"$job")
    say "job $id $state: $(jq -r '.getBroadcast | "\(.recipientsProcessed)/\(.recipientCount) processed"' <<<"$job")"
    [[ $state == RUNNING ]] || break
    sleep "$POLL_SECONDS"
done
case $state in
    FINISHED) say "$done_message"; exit 0 ;;
    ABORT_ADMIN) say "job $id was aborted by an administrator"; exit 10 ;;
    *) say "job $id was stopped by an error: $(jq -r '.getBroadcast.abortionReason' <<<"$job")"; exit 11 ;;
esac
