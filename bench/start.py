#!/usr/bin/env python3
"""Starting a 1,000,000-user domain: startBroadcast to every user of Prosody's table and of
ejabberd's `new_sql_schema` table, on each pair of users and jobs databases, for one or more
binaries side by side.

    python3 bench/start.py [--binary LABEL=PATH ...] [--schemas prosody,ejabberd_new]
                           [--pairs pg-pg,sqlite-sqlite,mariadb-mariadb,pg-mariadb]
                           [--users 1000000] [--no-write] [--keep]

Needs Python 3.11 (stdlib only), PostgreSQL on 127.0.0.1:5432 with trust for user postgres,
`psql`, MariaDB on 127.0.0.1:3306 (root, no password, `mysql`), ejabberd's SQL files in
/usr/share/ejabberd/sql, and release builds. No XMPP server: the component talks to
bench/scale.py's sink.

1. Users, per schema and users database (one each, shared by the runs): Prosody's own
   `prosody` table (mod_storage_sql: host, user, store, key, type, value, and its index on host,
   user, store, key) with `--users` accounts of big.example (admin, u0000001, ...), four
   `accounts` rows each as `internal_hashed` stores them; or ejabberd's `users` table from its
   own schema file, the accounts created a day ago.
2. Per schema, pair (users → jobs) and binary, the binaries taking turns: a fresh, empty job
   database, `serve`, and once /health says connected: the wall time of the startBroadcast POST
   (1000 msg/s, ALL_USERS_IN_DOMAIN), the time from the answer to the first message at the sink
   and to the recipients counted (getBroadcast's recipientsCounted, polled every 0.05 s; a
   binary without that field counted them before answering), VmRSS every 0.1 s from the
   request until they are counted, and VmHWM (the kernel's peak of the process's life, start-up
   included) after 5 more seconds of sending, the job's recipientCount; then abortBroadcast and
   `serve` is stopped; a step that takes over a second must have logged its progress.
3. Prints the figures and replaces its own section of BENCHMARKS.md.
Everything it creates is removed on exit, error or Ctrl-C (logs are kept on error).
"""

import argparse
import datetime as dt
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import ADMIN, SECRET, Lab, fresh_database, git, psql, until  # noqa: E402
from rate import replace_block  # noqa: E402
from scale import COMPONENT_JID, DOMAIN, Serve, Sink, counted, hwm_kib, rss_kib  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- BEGIN bench/start.py -->", "<!-- END bench/start.py -->"
RATE = 1000
TARGET_START_S, TARGET_RSS_MIB = 1.0, 64.0
PAIRS = {"pg-pg": ("PostgreSQL", "PostgreSQL"), "sqlite-sqlite": ("SQLite", "SQLite"),
         "mariadb-mariadb": ("MariaDB", "MariaDB"), "pg-mariadb": ("PostgreSQL", "MariaDB")}
SCHEMAS = {"prosody": "Prosody", "ejabberd_new": "ejabberd new_sql_schema"}
EJABBERD_SQL = Path("/usr/share/ejabberd/sql")
# Prosody's mod_storage_sql table and index (0.12), and the keys internal_hashed stores per account.
PROSODY_TABLE = ('CREATE TABLE "prosody" ("host" TEXT, "user" TEXT, "store" TEXT, "key" TEXT, "type" TEXT, '
                 '"value" TEXT)')
PROSODY_INDEX = 'CREATE INDEX "prosody_index" ON "prosody" ("host", "user", "store", "key")'
KEYS = ("iteration_count", "salt", "server_key", "stored_key")

CONFIG = """node_name = "prosodystart"
[component]
jid = "{jid}"
secret = "{secret}"
server = "127.0.0.1:{sink}"
[database]
url = "{jobs_url}"
[users]
schema = "{schema}"
url = "{users_url}"
[admin]
listen = "127.0.0.1:{{admin}}"
username = "{auth[0]}"
password = "{auth[1]}"
[domains."{domain}"]
"""


def username(i):
    return "admin" if i == 0 else f"u{i:07d}"


def ejabberd_table(dialect):
    """ejabberd's own CREATE TABLE users of its new_sql_schema for `dialect` (pg, mysql, lite)."""
    path = EJABBERD_SQL / f"{dialect}.new.sql"
    table = re.search(r"^CREATE TABLE users \(.*?^\)[^;]*;", path.read_text(), re.M | re.S)
    if not table:
        raise RuntimeError(f"no CREATE TABLE users in {path}")
    return table.group(0)


def mariadb(sql, database=None, timeout=600):
    out = subprocess.run(["mysql", "-h", "127.0.0.1", "-P", "3306", "-uroot", "-N", *([database] if database else []),
                          "-e", sql], capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        raise RuntimeError(f"mysql {sql[:200]!r}: {out.stderr.strip()}")
    return out.stdout.strip()


def users_postgres(lab, schema, users):
    name = fresh_database(lab, f"{schema}users")
    name_sql = "CASE WHEN i = 0 THEN 'admin' ELSE 'u' || lpad(i::text, 7, '0') END"
    if schema == "prosody":
        psql(PROSODY_TABLE, name)
        values = ", ".join(f"('{key}')" for key in KEYS)
        psql(f"INSERT INTO prosody SELECT 'big.example', {name_sql}, 'accounts', k.key, 'string', 'x' "
             f"FROM generate_series(0, {users - 1}) AS i, (VALUES {values}) AS k(key)", name)
        psql(PROSODY_INDEX, name)
        psql("VACUUM ANALYZE prosody", name)
    else:
        psql(ejabberd_table("pg"), name)
        psql(f"INSERT INTO users (username, server_host, password, created_at) SELECT {name_sql}, 'big.example', "
             f"'x', now() - interval '1 day' FROM generate_series(0, {users - 1}) AS i", name)
        psql("VACUUM ANALYZE users", name)
    return f"postgres://postgres@127.0.0.1:5432/{name}?sslmode=disable"


def users_mariadb(lab, schema, users):
    name = f"xb_bench_{schema}users_{int(time.time())}"
    mariadb(f"CREATE DATABASE {name}")
    lab.mariadb.append(name)
    name_sql = "IF(seq = 0, 'admin', CONCAT('u', LPAD(seq, 7, '0')))"
    if schema == "prosody":
        # Prosody's MySQL table: TEXT columns, the index on 20-character prefixes.
        mariadb("CREATE TABLE `prosody` (`host` TEXT, `user` TEXT, `store` TEXT, `key` TEXT, `type` TEXT, "
                "`value` MEDIUMTEXT, INDEX `prosody_index` (`host`(20), `user`(20), `store`(20), `key`(20))) "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", name)
        keys = " UNION ALL ".join(f"SELECT '{key}' AS k" for key in KEYS)
        mariadb(f"INSERT INTO prosody SELECT 'big.example', {name_sql}, 'accounts', k.k, 'string', 'x' "
                f"FROM seq_0_to_{users - 1} JOIN ({keys}) k", name)
    else:
        mariadb(ejabberd_table("mysql"), name)
        mariadb(f"INSERT INTO users (username, server_host, password, created_at) SELECT {name_sql}, 'big.example', "
                f"'x', NOW() - INTERVAL 1 DAY FROM seq_0_to_{users - 1}", name)
    mariadb("ANALYZE TABLE " + ("prosody" if schema == "prosody" else "users"), name)
    return f"mysql://root@127.0.0.1:3306/{name}"


def users_sqlite(lab, schema, users):
    path = lab.dir / f"{schema}.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        if schema == "prosody":
            db.execute(PROSODY_TABLE)
            db.executemany("INSERT INTO prosody VALUES ('big.example', ?, 'accounts', ?, 'string', 'x')",
                           ((username(i), key) for i in range(users) for key in KEYS))
            db.execute(PROSODY_INDEX)
        else:
            db.executescript(ejabberd_table("lite"))
            db.executemany("INSERT INTO users (username, server_host, password, created_at) "
                           "VALUES (?, 'big.example', 'x', datetime('now', '-1 day'))",
                           ((username(i),) for i in range(users)))
    return f"sqlite://{path}"


USERS = {"PostgreSQL": users_postgres, "MariaDB": users_mariadb, "SQLite": users_sqlite}


def jobs_database(lab, kind, label):
    if kind == "PostgreSQL":
        return f"postgres://postgres@127.0.0.1:5432/{fresh_database(lab, label)}?sslmode=disable"
    if kind == "SQLite":
        return f"sqlite://{lab.dir / f'{label}.db'}"
    name = f"xb_bench_{label}_{int(time.time())}"
    mariadb(f"CREATE DATABASE {name}")
    lab.mariadb.append(name)
    return f"mysql://root@127.0.0.1:3306/{name}"


def one_start(lab, binary, sink, schema, users_url, jobs_kind, label, users):
    config = CONFIG.format(jid=COMPONENT_JID, secret=SECRET, sink=sink.port, jobs_url=jobs_database(lab, jobs_kind, label),
                           schema=schema, users_url=users_url, auth=ADMIN, domain=DOMAIN)
    serve = Serve(lab, binary, label, config)
    try:
        pid = serve.proc.pid
        time.sleep(2)  # start-up settles
        rss_before = rss_kib(pid)
        sink.reset()
        samples, done = [], threading.Event()

        def sample():
            while not done.is_set():
                samples.append(rss_kib(pid))
                done.wait(0.1)  # the sampling period

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.monotonic()
        try:
            job = serve.start_job(DOMAIN, RATE)
            start_s = time.monotonic() - t0
            counted_s = until("the recipients counted", lambda: counted(serve, job) and time.monotonic(), 120) - t0
        finally:
            done.set()
            sampler.join()
        first = until("the first message", lambda: sink.arrivals and sink.arrivals[0][0], 30) - t0
        time.sleep(5)  # batches go out: VmHWM then includes sending
        hwm = hwm_kib(pid)
        state = serve.job(job, DOMAIN)
        serve.abort(job)
        log = (lab.dir / f"{label}.out").read_text(errors="replace")
    finally:
        serve.stop()
    return dict(start_s=start_s, first_s=first - start_s, counted_s=counted_s - start_s,
                rss_before_mib=rss_before / 1024,
                rss_start_peak_mib=max(samples, default=0) / 1024, vmhwm_mib=hwm / 1024,
                recipient_count=state["recipientCount"], progress_logged="still" in log)


def report(args, results, users):
    met = lambda ok: "yes" if ok else "**no**"
    lines = [BEGIN, f"## Starting a {users:,}-user domain (`bench/start.py`)", "",
             f"* Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"* Command: `{shlex.join(['python3', 'bench/start.py', *sys.argv[1:]])}`",
             f"* Repository at `{git('rev-parse', '--short', 'HEAD')}`"
             f"{' with uncommitted changes' if git('status', '--porcelain') else ''}; release binaries: "
             + "; ".join(f"**{label}** `{path}`" for label, path in args.labelled),
             f"* Users: Prosody's `prosody` table ({len(KEYS)} rows an account) or ejabberd's `users` table "
             f"(`new_sql_schema`), {users:,} accounts; one run per case, the binaries taking turns; a shared "
             "2-core machine", "",
             f"| schema | users → jobs | binary | startBroadcast, s (goal < {TARGET_START_S:g}) | first message "
             f"after the answer, s (goal < 1) | recipients counted after the answer, s | RSS before, MiB | RSS "
             f"peak from the request to the count (0.1 s samples), MiB | VmHWM after 5 s more of sending, MiB "
             f"(goal < {TARGET_RSS_MIB:g}) | recipientCount | progress logged |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for (schema, pair, label), r in results.items():
        users_kind, jobs_kind = PAIRS[pair]
        lines.append(f"| {SCHEMAS[schema]} | {users_kind} → {jobs_kind} | {label} | **{r['start_s']:.2f}** | "
                     f"**{r['first_s']:.2f}** | {r['counted_s']:.2f} | {r['rss_before_mib']:.1f} | "
                     f"{r['rss_start_peak_mib']:.1f} | **{r['vmhwm_mib']:.1f}** | {r['recipient_count']:,} | "
                     f"{'yes' if r['progress_logged'] else 'no'} |")
    last = [r for (_, _, l), r in results.items() if l == args.labelled[-1][0]]
    lines += ["", f"Goals met (every case of the last binary): start < {TARGET_START_S:g} s — "
              + met(all(r["start_s"] < TARGET_START_S for r in last))
              + "; first message < 1 s after the answer — " + met(all(r["first_s"] < 1 for r in last))
              + f"; RSS < {TARGET_RSS_MIB:g} MiB — " + met(all(r["vmhwm_mib"] < TARGET_RSS_MIB for r in last))
              + f"; recipientCount = {users:,} — " + met(all(r["recipient_count"] == users for r in last)),
              "",
              "What the figures miss: one run per case on a loaded shared machine (the same case varies by "
              "tens of per cent from run to run); the users database on this machine (no network between "
              "them); no XMPP server is running, so nothing competes for the users database. The exactness "
              "of the snapshot is not measured here but tested (`src/directory/tests.rs`, every schema and "
              "database; `tests/prosody_e2e.rs`, `tests/ejabberd_e2e.rs`).",
              END]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", action="append", default=[],
                   help="LABEL=PATH of a release build; repeat to compare (default: after=target/release/xmpp-broadcast)")
    p.add_argument("--schemas", default=",".join(SCHEMAS), help=f"of {', '.join(SCHEMAS)}")
    p.add_argument("--pairs", default=",".join(PAIRS), help=f"of {', '.join(PAIRS)}")
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--no-write", action="store_true", help="print the results only, leave BENCHMARKS.md alone")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args()
    args.labelled = []
    for item in args.binary or [f"after={ROOT / 'target/release/xmpp-broadcast'}"]:
        label, _, path = item.partition("=")
        path = Path(path).resolve()
        if not path.exists():
            sys.exit(f"{path} not found: run `cargo build --release` first")
        args.labelled.append((label, path))
    schemas, pairs = args.schemas.split(","), args.pairs.split(",")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    lab, sink = Lab(Path(tempfile.mkdtemp(prefix="start-bench-"))), Sink(SECRET)
    lab.mariadb = []
    results = {}
    try:
        for schema in schemas:
            users_url = {}
            for kind in dict.fromkeys(PAIRS[pair][0] for pair in pairs):
                print(f"{schema} users: {kind} ...", flush=True)
                users_url[kind] = USERS[kind](lab, schema, args.users)
            for pair in pairs:
                for label, binary in args.labelled:
                    print(f"{schema}, {pair}, {label} ...", flush=True)
                    r = one_start(lab, binary, sink, schema, users_url[PAIRS[pair][0]], PAIRS[pair][1],
                                  f"{label}_{schema}_{pair}".replace("-", "_"), args.users)
                    print(f"  start {r['start_s']:.2f} s, first message +{r['first_s']:.2f} s, counted "
                          f"+{r['counted_s']:.2f} s, VmHWM {r['vmhwm_mib']:.1f} MiB, "
                          f"{r['recipient_count']} recipients", flush=True)
                    results[(schema, pair, label)] = r
    except BaseException:
        args.keep = True
        print(f"failed or interrupted; everything started is stopped; logs kept in {lab.dir}", file=sys.stderr)
        raise
    finally:
        lab.stop()
        sink.close()
        for name in lab.mariadb:
            mariadb(f"DROP DATABASE IF EXISTS {name}")
        if not args.keep:
            shutil.rmtree(lab.dir)
    section = report(args, results, args.users)
    print("\n" + section)
    if not args.no_write:
        replace_block(ROOT / "BENCHMARKS.md", BEGIN, END, section)
        print(f"\nwritten to {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
