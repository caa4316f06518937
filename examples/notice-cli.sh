#!/usr/bin/env bash
# A maintenance notice with the xmpp-broadcast CLI: show who it will reach, send it, follow it
# to the end, and exit with how it ended; or correct or retract a notice sent before. Runs
# against any running instance.
#
#   bash examples/notice-cli.sh DOMAIN SUBJECT NOTICE_FILE     (NOTICE_FILE '-': standard input)
#   bash examples/notice-cli.sh correct JOB_ID DOMAIN SUBJECT NOTICE_FILE
#   bash examples/notice-cli.sh retract JOB_ID DOMAIN
#
#   XMPP_BROADCAST_CONFIG=/etc/xmpp-broadcast/component.toml \
#     bash examples/notice-cli.sh example.com 'Maintenance tonight' notice.txt
#
#   export XMPP_BROADCAST_URL=http://127.0.0.1:5551 XMPP_BROADCAST_USER=admin
#   export XMPP_BROADCAST_PASSWORD=change-me-too
#   bash examples/notice-cli.sh example.com 'Maintenance tonight' - <<'EOF'
#   The chat service will be down on Sunday from 02:00 to 03:00 UTC.
#   Messages sent meanwhile are delivered afterwards.
#   EOF
#
#   # The time was wrong: everyone job 7 reached gets the corrected notice in its place.
#   bash examples/notice-cli.sh correct 7 example.com 'Maintenance tonight' fixed-notice.txt
#   # Or withdraw it altogether (clients that support it remove the message).
#   bash examples/notice-cli.sh retract 7 example.com
#
# The instance: XMPP_BROADCAST_URL, XMPP_BROADCAST_USER and XMPP_BROADCAST_PASSWORD, or its
# config file in XMPP_BROADCAST_CONFIG. Optional: SENDER (default admin@DOMAIN), RATE (messages
# per second, default 100), NAME (the job's name, default maintenance-<date>), XB (the binary;
# default xmpp-broadcast from PATH, else target/debug/xmpp-broadcast), CONFIRM=1 to ask before
# sending (needs a terminal), IDEMPOTENCY_KEY (default: a random key made once per run; give
# one of your own, such as a hash of the notice, to make reruns of the whole script safe too).
# A correction or retraction comes from the sender of job JOB_ID and reaches the users that job
# reached; SENDER and NAME do not apply.
#
# Exit status: the CLI's (xmpp-broadcast --help): 0 delivered to every user, 2 bad input,
# 3 unknown domain or job, 4 another job is running on the domain (or job JOB_ID still runs, or
# it is a retraction, or IDEMPOTENCY_KEY was used for another notice), 5 the instance stayed unreachable, 6 refused credentials, 10 aborted by
# an administrator, 11 stopped by an error.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}
MODE=start
case ${1:-} in
    correct) (($# == 5)) || usage; MODE=$1 ORIGINAL=$2; shift 2 ;;
    retract) (($# == 3)) || usage; MODE=$1 ORIGINAL=$2; shift 2 ;;
    *) (($# == 3)) || usage ;;
esac
DOMAIN=$1
SENDER=${SENDER:-admin@$DOMAIN}
RATE=${RATE:-100}
NAME=${NAME:-maintenance-$(date -u +%Y%m%dT%H%M)}
ATTEMPTS=3      # how often an unreachable instance is tried
RETRY_SECONDS=5 # and how long to wait in between

if [[ -z ${XB:-} ]]; then
    XB=$(command -v xmpp-broadcast || echo "$(dirname "$0")/../target/debug/xmpp-broadcast")
fi
say() { printf '[notice] %s\n' "$*" >&2; }

# The notice is read once, so that a retry does not need standard input again.
NOTICE=$(mktemp)
trap 'rm -f "$NOTICE"' EXIT
if [[ $MODE != retract ]]; then
    SUBJECT=$2
    cat -- "$3" >"$NOTICE"
fi

# One idempotency key for this notice, made once: every attempt to create its job carries it,
# so an attempt after one that did create the job (its answer lost) is answered with that job,
# running or ended, and nothing is sent twice.
KEY=${IDEMPOTENCY_KEY:-notice-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}

# with_retries COMMAND...: runs COMMAND, again while it exits 5 (unavailable). Retrying the
# creation is safe thanks to the idempotency key.
with_retries() {
    local attempt status
    for ((attempt = 1; ; attempt++)); do
        status=0
        "$@" || status=$?
        if ((status != 5 || attempt == ATTEMPTS)); then return "$status"; fi
        say "the instance is unavailable; trying again in ${RETRY_SECONDS}s"
        sleep "$RETRY_SECONDS"
    done
}

case $MODE in
    start)
        create=("$XB" start --domain "$DOMAIN" --name "$NAME" --sender "$SENDER" --rate "$RATE"
                --subject "$SUBJECT" --body-file "$NOTICE")
        what="'$SUBJECT'" done_message="delivered to every user of $DOMAIN" ;;
    correct)
        create=("$XB" correct "$ORIGINAL" --domain "$DOMAIN" --rate "$RATE"
                --subject "$SUBJECT" --body-file "$NOTICE")
        what="the correction of job $ORIGINAL"
        done_message="correction of job $ORIGINAL delivered to everyone it reached" ;;
    retract)
        create=("$XB" retract "$ORIGINAL" --domain "$DOMAIN" --rate "$RATE")
        what="the retraction of job $ORIGINAL"
        done_message="retraction of job $ORIGINAL delivered to everyone it reached" ;;
esac

# 1. Who it will reach (a dry run: nothing is created).
with_retries "${create[@]}" --dry-run

if [[ ${CONFIRM:-0} == 1 ]]; then
    read -r -p "Send $what to them? [y/N] " answer </dev/tty
    [[ $answer == [yY]* ]] || { say "nothing sent"; exit 0; }
fi

# 2. Send it. The job's id comes from the JSON (the API's Broadcast object).
status=0
job=$(with_retries "${create[@]}" --idempotency-key "$KEY" --json) || status=$?
case $status in
    0) ;;
    4)
        say "another job is running on $DOMAIN${ORIGINAL:+, or job $ORIGINAL is still running or cannot be amended}, or the key $KEY was used for another notice; see:"
        "$XB" list --domain "$DOMAIN" --limit 3 >&2 || true
        exit 4
        ;;
    *) exit "$status" ;;
esac
id=$(sed -n 's/^  "id": \([0-9]*\),$/\1/p' <<<"$job")
say "started job $id on $DOMAIN"

# 3. Follow it to the end: a progress bar on a terminal, progress lines otherwise.
status=0
with_retries "$XB" watch "$id" --domain "$DOMAIN" || status=$?
case $status in
    0) say "$done_message" ;;
    10) say "job $id was aborted by an administrator" ;;
    11) say "job $id was stopped by an error: see 'xmpp-broadcast show $id --domain $DOMAIN'" ;;
esac
exit "$status"
