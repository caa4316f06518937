#!/usr/bin/env bash
# Quickstart: a complete broadcast on this machine, from nothing to verified delivery.
#
#   bash examples/quickstart.sh            (XB_RELEASE=1 for a release build,
#                                           XB_USERS=N and XB_RATE=N to change the run)
#
# 1. installs Prosody and the SQLite tools from Debian if they are missing (needs root);
# 2. in a scratch dir, configures Prosody with SQL storage on SQLite (WAL mode) on free
#    loopback ports and registers XB_USERS users (u0001...) plus the sender `admin`;
# 3. builds and starts `xmpp-broadcast serve` with a generated config;
# 4. starts a broadcast through the GraphQL admin API with curl and shows its progress;
# 5. checks that every account holds exactly the expected message in Prosody's offline store.
# Everything it started is stopped on exit; the scratch dir is removed after a successful
# run and kept (with the logs) after a failure.
set -euo pipefail

cd "$(dirname "$0")/.."
USERS=${XB_USERS:-1000}
RATE=${XB_RATE:-50}  # 50 msg/s: batches of 500, so the progress moves batch by batch
DOMAIN=example.com
COMPONENT=broadcast.example.com
SUBJECT="Planned maintenance"
BODY="The chat service will be down on Sunday from 02:00 to 03:00 UTC."
TIMEOUT=30

log() { printf '[quickstart] %s\n' "$*"; }
die() { printf '[quickstart] error: %s\n' "$*" >&2; exit 1; }

# --- 1. Prerequisites -----------------------------------------------------------------------
install_prerequisites() {
    local missing=() package
    for package in prosody lua-dbi-sqlite3 sqlite3 curl; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    ((${#missing[@]} == 0)) && return
    ((EUID == 0)) || die "missing packages (${missing[*]}): run as root or apt-get install them"
    log "installing ${missing[*]}"
    # Do not let the package start a system-wide Prosody: this script runs its own.
    local own_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" </dev/null
    if [[ -n $own_policy ]]; then rm -f /usr/sbin/policy-rc.d; fi
}
install_prerequisites
command -v cargo >/dev/null || die "cargo not found (install Rust with rustup)"

# --- Scratch dir and clean-up -------------------------------------------------------------
WORK=$(mktemp -d /tmp/xmpp-broadcast-quickstart.XXXXXX)
PROSODY_PID=
SERVE_PID=
cleanup() {
    local status=$?
    for pid in $SERVE_PID $PROSODY_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            wait "$pid" 2>/dev/null || true
        fi
    done
    if ((status == 0)); then
        rm -rf "$WORK"
    else
        log "failed; logs kept in $WORK (serve.log, prosody.log)"
    fi
}
trap cleanup EXIT

# A TCP port on 127.0.0.1 that nothing listens on and this run has not taken yet.
TAKEN=" "
free_port() {
    local port
    while true; do
        port=$((20000 + RANDOM % 40000))
        [[ $TAKEN == *" $port "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            TAKEN+="$port "
            echo "$port"
            return
        fi
    done
}

# until_ok WHAT COMMAND...: polls COMMAND until it succeeds; fails after TIMEOUT seconds or
# as soon as a process started here has exited.
until_ok() {
    local what=$1 deadline=$((SECONDS + TIMEOUT)) pid
    shift
    until "$@" >/dev/null 2>&1; do
        for pid in $PROSODY_PID $SERVE_PID; do
            kill -0 "$pid" 2>/dev/null || die "process $pid exited while waiting for $what"
        done
        ((SECONDS < deadline)) || die "$what did not happen within ${TIMEOUT}s"
        sleep 0.2
    done
}

random_secret() { head -c 18 /dev/urandom | base64 | tr -d '/+='; }

# --- 2. Prosody ---------------------------------------------------------------------------
C2S_PORT=$(free_port)
COMPONENT_PORT=$(free_port)
ADMIN_PORT=$(free_port)
COMPONENT_SECRET=$(random_secret)
ADMIN_PASSWORD=$(random_secret)
mkdir -p "$WORK/data" "$WORK/certs"
# WAL mode persists in the file. Prosody's SQLite driver has no busy timeout: in the default
# rollback-journal mode, any concurrent reader (such as the component) can make its commits fail.
sqlite3 "$WORK/data/prosody.sqlite" 'PRAGMA journal_mode=WAL;' >/dev/null

cat >"$WORK/prosody.cfg.lua" <<EOF
run_as_root = true
pidfile = "$WORK/prosody.pid"
data_path = "$WORK/data"
log = { { levels = { min = "info" }, to = "file", filename = "$WORK/prosody.log" } }
certificates = "$WORK/certs"
interfaces = { "127.0.0.1" }
c2s_ports = { $C2S_PORT }
c2s_interfaces = { "127.0.0.1" }
component_ports = { $COMPONENT_PORT }
component_interfaces = { "127.0.0.1" }
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "posix"; "admin_shell" }
modules_disabled = { "s2s" }
authentication = "internal_hashed"
storage = "sql"
sql = { driver = "SQLite3"; database = "prosody.sqlite" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true

VirtualHost "$DOMAIN"

Component "$COMPONENT"
  component_secret = "$COMPONENT_SECRET"
  -- lets the component send as admin@$DOMAIN
  validate_from_addresses = false
EOF

prosody_shell() { prosodyctl --config "$WORK/prosody.cfg.lua" shell ">$1" </dev/null; }

log "starting Prosody (c2s 127.0.0.1:$C2S_PORT, component 127.0.0.1:$COMPONENT_PORT) in $WORK"
prosody --config "$WORK/prosody.cfg.lua" -F >>"$WORK/prosody.log" 2>&1 &
PROSODY_PID=$!
until_ok "Prosody start-up" prosody_shell 'return "ready"'

log "registering $USERS users and the sender admin@$DOMAIN (one shell call)"
registered=$(prosody_shell "local um = require 'core.usermanager'; local n = 0;
    for i = 1, $USERS do if um.create_user(string.format('u%04d', i), 'pw', '$DOMAIN') then n = n + 1 end end;
    if um.create_user('admin', 'adminpw', '$DOMAIN') then n = n + 1 end; return 'created=' .. n")
[[ $registered == *"created=$((USERS + 1))"* ]] || die "registration failed: $registered"
RECIPIENTS=$((USERS + 1))

# --- 3. xmpp-broadcast --------------------------------------------------------------------
if [[ ${XB_RELEASE:-0} == 1 ]]; then
    log "building (release)"
    cargo build --release --bin xmpp-broadcast
    BINARY=target/release/xmpp-broadcast
else
    log "building (debug; XB_RELEASE=1 for release)"
    cargo build --bin xmpp-broadcast
    BINARY=target/debug/xmpp-broadcast
fi

cat >"$WORK/xmpp-broadcast.toml" <<EOF
node_name = "quickstart"
lease_time = 600
backend = "rdbms"

[component]
jid = "$COMPONENT"
secret = "$COMPONENT_SECRET"
server = "127.0.0.1:$COMPONENT_PORT"

[database]
url = "sqlite://$WORK/jobs.db"

[users]
schema = "prosody"
url = "sqlite://$WORK/data/prosody.sqlite"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"
username = "admin"
password = "$ADMIN_PASSWORD"

[domains."$DOMAIN"]
EOF

log "starting xmpp-broadcast serve (admin API on 127.0.0.1:$ADMIN_PORT)"
"$BINARY" serve --config "$WORK/xmpp-broadcast.toml" >>"$WORK/serve.log" 2>&1 </dev/null &
SERVE_PID=$!
connected() { curl -fsS "http://127.0.0.1:$ADMIN_PORT/health" | grep -q '"xmpp":"connected"'; }
until_ok "xmpp-broadcast connecting to Prosody" connected

# --- 4. The broadcast ---------------------------------------------------------------------
# graphql QUERY: posts QUERY (double quotes allowed, no backslashes) as the admin.
graphql() {
    local query
    query=$(tr '\n' ' ' <<<"$1" | sed 's/"/\\"/g')
    curl -sS -u "admin:$ADMIN_PASSWORD" -H 'Content-Type: application/json' \
        --data "{\"query\": \"$query\"}" "http://127.0.0.1:$ADMIN_PORT/api/graphql"
}
# json_field NAME: the first value of NAME (a string or number) in the JSON on stdin.
json_field() { grep -o "\"$1\":\"\\?[A-Za-z0-9_]*" | head -n1 | sed 's/.*:"\?//'; }

log "starting the broadcast: $RECIPIENTS recipients at $RATE msg/s"
started=$(graphql "mutation { broadcast { startBroadcast(name: \"quickstart\", domain: \"$DOMAIN\",
    messageSubject: \"$SUBJECT\", messageBody: \"$BODY\", senderJid: \"admin@$DOMAIN\",
    messageRate: $RATE, recipientGroup: ALL_USERS_IN_DOMAIN) { message ids } } }")
JOB_ID=$(grep -o '"ids":\[[0-9]*' <<<"$started" | grep -o '[0-9]*$') || die "start failed: $started"
START_TIME=$SECONDS

state=RUNNING
while [[ $state == RUNNING ]]; do
    sleep 1
    job=$(graphql "{ broadcast { getBroadcast(domain: \"$DOMAIN\", id: $JOB_ID)
        { executionState recipientCount recipientsProcessed } } }")
    state=$(json_field executionState <<<"$job")
    log "job $JOB_ID: $state, $(json_field recipientsProcessed <<<"$job")/$(json_field recipientCount <<<"$job") processed"
done
[[ $state == FINISHED ]] || die "job ended in state $state: $job"
ELAPSED=$((SECONDS - START_TIME))

# --- 5. Verification ------------------------------------------------------------------------
log "checking Prosody's offline store"
expected="$WORK/expected.txt"
for user in admin $(seq -f 'u%04g' 1 "$USERS"); do
    id=$(printf '%s' "$JOB_ID:$user@$DOMAIN" | sha1sum | cut -c1-40)
    printf '%s|xb-%s\n' "$user" "$id"
done | sort >"$expected"
sqlite3 -separator '|' "$WORK/data/prosody.sqlite" \
    "SELECT \"user\", \"value\" FROM prosodyarchive WHERE host = '$DOMAIN' AND store = 'offline'" \
    | sort >"$WORK/stored.txt"
problems=$(awk -F'|' -v subject="<subject>$SUBJECT</subject>" -v body="<body>$BODY</body>" \
    -v from="from='admin@$DOMAIN'" '
    NR == FNR { want[$1] = $2; next }
    {
        if (!($1 in want)) { print "unexpected recipient " $1; next }
        seen[$1]++
        copy = $2
        ids = gsub("id='\''" want[$1] "'\''", "", copy)   # message id and origin-id
        if (ids != 2 || index($2, subject) == 0 || index($2, body) == 0 ||
            index($2, from) == 0 || index($2, "type='\''chat'\''") == 0 ||
            index($2, "urn:xmpp:sid:0") == 0)
            print "wrong message for " $1 ": " $2
    }
    END {
        for (user in want) if (seen[user] != 1) print user " holds " seen[user] + 0 " messages"
    }' "$expected" "$WORK/stored.txt")
[[ -z $problems ]] || die "offline store check failed:
$(head -n 20 <<<"$problems")"

log "done: job $JOB_ID delivered '$SUBJECT' to $RECIPIENTS accounts in ${ELAPSED}s" \
    "(rate $RATE msg/s); each holds exactly one message with its id xb-sha1(\"$JOB_ID:user@$DOMAIN\")"
