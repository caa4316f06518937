#!/usr/bin/env bash
# A maintenance notice with the xmpp-broadcast CLI: show who it will reach, send it, follow it
# to the end, and exit with how it ended. Runs against any running instance.
#
#   bash examples/notice-cli.sh DOMAIN SUBJECT NOTICE_FILE     (NOTICE_FILE '-': standard input)
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
# The instance: XMPP_BROADCAST_URL, XMPP_BROADCAST_USER and XMPP_BROADCAST_PASSWORD, or its
# config file in XMPP_BROADCAST_CONFIG. Optional: SENDER (default admin@DOMAIN), RATE (messages
# per second, default 100), NAME (the job's name, default maintenance-<date>), XB (the binary;
# default xmpp-broadcast from PATH, else target/debug/xmpp-broadcast), CONFIRM=1 to ask before
# sending (needs a terminal).
#
# Exit status: the CLI's (xmpp-broadcast --help): 0 delivered to every user, 2 bad input,
# 3 unknown domain, 4 another broadcast is running on the domain, 5 the instance stayed
# unreachable, 6 refused credentials, 10 aborted by an administrator, 11 stopped by an error.
set -euo pipefail

if (($# != 3)); then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
fi
DOMAIN=$1 SUBJECT=$2 NOTICE_FILE=$3
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
cat -- "$NOTICE_FILE" >"$NOTICE"

# with_retries COMMAND...: runs COMMAND, again while it exits 5 (unavailable). Retrying a
# start is safe: if the first attempt did start the job, the next one exits 4, since only one
# broadcast may run per domain.
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

# 1. Who it will reach (a dry run: nothing is created).
start=("$XB" start --domain "$DOMAIN" --name "$NAME" --sender "$SENDER" --rate "$RATE"
       --subject "$SUBJECT" --body-file "$NOTICE")
with_retries "${start[@]}" --dry-run

if [[ ${CONFIRM:-0} == 1 ]]; then
    read -r -p "Send '$SUBJECT' to them? [y/N] " answer </dev/tty
    [[ $answer == [yY]* ]] || { say "nothing sent"; exit 0; }
fi

# 2. Send it. The job's id comes from the JSON (the API's Broadcast object).
status=0
job=$(with_retries "${start[@]}" --json) || status=$?
case $status in
    0) ;;
    4)
        say "another broadcast is running on $DOMAIN; try again when it has ended:"
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
    0) say "delivered to every user of $DOMAIN" ;;
    10) say "job $id was aborted by an administrator" ;;
    11) say "job $id was stopped by an error: see 'xmpp-broadcast show $id --domain $DOMAIN'" ;;
esac
exit "$status"
