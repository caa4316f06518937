#!/usr/bin/env python3
"""Audience: what a list of 100,000 recipients costs startBroadcast, side by side with a start
to every account of the same domain.

    python3 bench/audience.py [--binary PATH] [--no-write]

Needs Python 3.11 (stdlib only), PostgreSQL on 127.0.0.1:5432 with trust for user postgres, `psql`,
ejabberd's schema file /usr/share/ejabberd/sql/pg.new.sql and a release build. No XMPP server: the
component talks to the sink of bench/scale.py.

1. Two users databases on PostgreSQL, each with 200,000 accounts of big.example (admin,
   u0000001..u0199999): Prosody's `prosody` table (one row per account, store 'accounts') and
   ejabberd's `users` table (`new_sql_schema`), inserted with `INSERT ... SELECT generate_series`.
2. For each users database, each of these starts runs on a `serve` of its own (so that its
   VmHWM, the peak resident memory, is the start's) and a fresh job database:
   - ALL_USERS_IN_DOMAIN (every one of the 200,000 accounts);
   - LISTED, 100,000 JIDs that are all accounts (every other account);
   - LISTED, 100,000 JIDs of which 10,000 are not accounts.
   Measured: the wall time of the startBroadcast POST (the request body, about 3 MB for a list,
   sent over loopback, included), the same for countBroadcastRecipients with the list (the dry
   run), the recipientCount and unknownRecipientCount the job reports, VmRSS before the request
   and VmHWM after it; then abortBroadcast and `serve` is stopped.
Every process and database it creates is removed on exit, error or Ctrl-C.
"""

import argparse
import datetime as dt
import json
import re
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import ADMIN, SECRET, Lab, fresh_database, git, psql, stale  # noqa: E402
from rate import replace_block  # noqa: E402
from scale import Serve, Sink, hwm_kib, rss_kib  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- BEGIN bench/audience.py -->", "<!-- END bench/audience.py -->"
DOMAIN, COMPONENT_JID = "big.example", "broadcast.big.example"
USERS, LISTED, UNKNOWN, RATE = 200_000, 100_000, 10_000, 1000
SCHEMA_FILE = Path("/usr/share/ejabberd/sql/pg.new.sql")

CONFIG = """node_name = "audience1"
[component]
jid = "{jid}"
secret = "{secret}"
server = "127.0.0.1:{sink}"
[database]
url = "postgres://postgres@127.0.0.1:5432/{jobs_db}?sslmode=disable"
[users]
schema = "{schema}"
url = "postgres://postgres@127.0.0.1:5432/{users_db}?sslmode=disable"
[admin]
listen = "127.0.0.1:{admin}"
username = "{auth[0]}"
password = "{auth[1]}"
[domains."{domain}"]
"""

START = ("mutation S($s: BareJID!, $g: BroadcastRecipientGroup!, $r: [BareJID!]) { broadcast { "
         f'startBroadcast(name: "bench", domain: "{DOMAIN}", messageSubject: "s", messageBody: "b", '
         f"senderJid: $s, messageRate: {RATE}, recipientGroup: $g, recipients: $r) {{ ids }} }} }}")
COUNT = ("query C($g: BroadcastRecipientGroup!, $r: [BareJID!]) { broadcast { "
         f'countBroadcastRecipients(domain: "{DOMAIN}", sample: 1, recipientGroup: $g, recipients: $r) '
         "{ recipientCount unknownRecipientCount } } }")
GET = ("query G($id: Int!) { broadcast { getBroadcast(domain: \"%s\", id: $id) { "
       "recipientCount unknownRecipientCount } } }" % DOMAIN)


def name(i):
    return "admin" if i == 0 else f"u{i:07d}"


def users_databases(lab):
    """The two users databases, each with USERS accounts; returns {schema: database}."""
    prosody = fresh_database(lab, "audprosody")
    psql('CREATE TABLE prosody (host TEXT NOT NULL, "user" TEXT NOT NULL, store TEXT NOT NULL, '
         'key TEXT NOT NULL, type TEXT NOT NULL, value TEXT NOT NULL)', prosody)
    psql("CREATE INDEX prosody_index ON prosody (host, \"user\", store, key)", prosody)
    psql(f"INSERT INTO prosody SELECT '{DOMAIN}', CASE WHEN i = 0 THEN 'admin' ELSE 'u' || lpad(i::text, 7, '0') "
         f"END, 'accounts', 'password', 'string', 'x' FROM generate_series(0, {USERS - 1}) AS i", prosody)
    ejabberd = fresh_database(lab, "audejabberd")
    table = re.search(r"^CREATE TABLE users \(.*?^\);", SCHEMA_FILE.read_text(), re.M | re.S)
    psql(table.group(0), ejabberd)
    psql("INSERT INTO users (username, server_host, password, created_at) "
         "SELECT CASE WHEN i = 0 THEN 'admin' ELSE 'u' || lpad(i::text, 7, '0') END, "
         f"'{DOMAIN}', 'x', now() - interval '1 day' FROM generate_series(0, {USERS - 1}) AS i", ejabberd)
    for database in (prosody, ejabberd):
        psql("VACUUM ANALYZE", database)
    return {"prosody": prosody, "ejabberd_new": ejabberd}


def the_list(unknown):
    """LISTED JIDs: every other account, the last `unknown` of them replaced by names that are
    not accounts."""
    names = [name(i) for i in range(0, 2 * LISTED, 2)]
    names[LISTED - unknown:] = [f"nobody{i:06d}" for i in range(unknown)]
    return [f"{n}@{DOMAIN}" for n in names]


def timed(serve, query, **variables):
    body = {"query": query, "variables": variables}
    size = len(json.dumps(body).encode())
    t0 = time.monotonic()
    data = serve.graphql(query, **variables)
    return data, time.monotonic() - t0, size


def one_start(lab, binary, sink, schema, users_db, case, number):
    """One start of `case` on a fresh `serve` and job database."""
    jobs_db = fresh_database(lab, f"audjobs{number}")
    config = CONFIG.format(jid=COMPONENT_JID, secret=SECRET, sink=sink.port, jobs_db=jobs_db, schema=schema,
                           users_db=users_db, auth=ADMIN, domain=DOMAIN, admin="{admin}")
    serve = Serve(lab, binary, f"serve{number}", config)
    try:
        pid = serve.proc.pid
        time.sleep(1)  # start-up (migrations, first lease round) settled
        recipients = None if case == "all" else the_list(UNKNOWN if case == "unknown" else 0)
        group = "ALL_USERS_IN_DOMAIN" if recipients is None else "LISTED"
        rss_before = rss_kib(pid)
        started, start_s, size = timed(serve, START, s=f"admin@{DOMAIN}", g=group, r=recipients)
        hwm = hwm_kib(pid)
        job = started["startBroadcast"]["ids"][0]
        state = serve.graphql(GET, id=job)["getBroadcast"]
        serve.abort(job)
        count_s = None
        if recipients is not None:  # after the start, so that its memory is not the start's
            counted, count_s, _ = timed(serve, COUNT, g=group, r=recipients)
            counted = counted["countBroadcastRecipients"]
    finally:
        serve.stop()
    return dict(schema=schema, case=case, start_s=start_s, count_s=count_s, body_bytes=size,
                rss_before_mib=rss_before / 1024, vmhwm_mib=hwm / 1024, recipients=state["recipientCount"],
                unknown=state["unknownRecipientCount"],
                counted=None if count_s is None else counted["recipientCount"])


CASES = [("all", f"ALL_USERS_IN_DOMAIN ({USERS:,} accounts)"),
         ("listed", f"LISTED, {LISTED:,} JIDs, all accounts"),
         ("unknown", f"LISTED, {LISTED:,} JIDs, {UNKNOWN:,} not accounts")]
SCHEMAS = [("prosody", "Prosody (`prosody` table)"), ("ejabberd_new", "ejabberd (`users`, new_sql_schema)")]


def report(binary, results):
    rel = binary.relative_to(ROOT) if binary.is_relative_to(ROOT) else binary
    lines = [BEGIN, "## Audience: a list of 100,000 recipients (`bench/audience.py`)", "",
             f"* Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"* Command: `{shlex.join(['python3', 'bench/audience.py', *sys.argv[1:]])}`",
             f"* Binary: `{rel}`, repository at `{git('rev-parse', '--short', 'HEAD')}`"
             f"{' with uncommitted changes' if git('status', '--porcelain') else ''}{stale(binary)}",
             f"* Users and jobs on PostgreSQL {psql('SHOW server_version')}, one machine "
             f"({__import__('os').cpu_count()} cores); {USERS:,} accounts of the domain; each start on a `serve` "
             "of its own and a fresh job database", "",
             "| users database | recipients | startBroadcast, s | dry run (count), s | request body | "
             "recipientCount | unknown | RSS before, MiB | peak RSS (VmHWM), MiB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        schema = dict(SCHEMAS)[r["schema"]]
        case = dict(CASES)[r["case"]]
        count = "–" if r["count_s"] is None else f"{r['count_s']:.2f}"
        lines.append(f"| {schema} | {case} | **{r['start_s']:.2f}** | {count} | {r['body_bytes'] / 1e6:.1f} MB | "
                     f"{r['recipients']:,} | {r['unknown'] if r['unknown'] is not None else '–'} | "
                     f"{r['rss_before_mib']:.1f} | **{r['vmhwm_mib']:.1f}** |")
    lines += ["",
              "What the figures include: the POST's wall time from this script, so the upload of the list over "
              "loopback, its JSON and GraphQL parsing (every JID checked as a BareJID), the check of the names "
              "against the users database (statements of 500 names), and the insert of the listed recipients "
              "with the job in one transaction. What they miss: a users database on another machine (each "
              "statement of 500 names is one round trip more, 200 for a list of 100,000), and the time the "
              "HTTP client takes to build the 3 MB body. One run of each case, not repeated, on a 2-core machine. The peak "
              "memory of a list (about 45 MiB over the idle instance for 2.4 MB of JSON) is the request held "
              "several times at once: its bytes, the parsed JSON, GraphQL's values and the checked JIDs.",
              END]
    return "\n".join(lines)


def interrupted(*_):
    raise KeyboardInterrupt


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", type=Path, default=ROOT / "target/release/xmpp-broadcast")
    p.add_argument("--no-write", action="store_true", help="print the results only, leave BENCHMARKS.md alone")
    args = p.parse_args()
    binary = args.binary.resolve()
    if not binary.exists():
        sys.exit(f"{binary} not found: run `cargo build --release` first")
    signal.signal(signal.SIGTERM, interrupted)
    lab, sink = Lab(Path(tempfile.mkdtemp(prefix="audience-bench-"))), Sink(SECRET)
    results = []
    try:
        databases = users_databases(lab)
        number = 0
        for schema, _ in SCHEMAS:
            for case, label in CASES:
                number += 1
                print(f"audience: {schema}, {label} ...", file=sys.stderr, flush=True)
                r = one_start(lab, binary, sink, schema, databases[schema], case, number)
                print(f"  start {r['start_s']:.2f} s, {r['recipients']} recipients, peak {r['vmhwm_mib']:.1f} MiB",
                      file=sys.stderr, flush=True)
                results.append(r)
    finally:
        lab.stop()
        sink.close()
    section = report(binary, results)
    print("\n" + section)
    if not args.no_write:
        replace_block(ROOT / "BENCHMARKS.md", BEGIN, END, section)


if __name__ == "__main__":
    main()
