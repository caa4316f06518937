#!/usr/bin/env python3
"""Domains: one instance serving 1,000 domains, with 100 jobs on 100 of them at once.

    python3 bench/domains.py [--binary PATH] [--window 60] [--no-write]

Needs Python 3.11 (stdlib only), PostgreSQL on 127.0.0.1:5432 with trust for user postgres,
`psql` and a release build. No XMPP server: the component talks to the sink of bench/scale.py,
here counting each domain's messages apart.

1. A users database on PostgreSQL in Prosody's layout (`prosody` table) with 1,000 domains
   d0001.example … d1000.example: each has the sender `admin`, and the first 100 also
   `u0001`…`u{ACCOUNTS}`.
2. A config with the 1,000 `[domains."…"]` tables; `serve` is started on a fresh job database
   (reached through the statement-counting proxy of bench/cluster.py) and the time from spawn
   to `/health` saying the component is connected and the job database up is measured.
3. One job per active domain (100 jobs, `RATE` msg/s each), started one after the other (the
   time of each start is kept); then, over `--window` seconds from 10 s after the last start,
   each domain's messages at the sink (its rate), the instance's CPU (utime+stime) and RSS every
   second, and the job database's statements; then every job is aborted and `serve` stopped.
Every process and database it creates is removed on exit, error or Ctrl-C.
"""

import argparse
import datetime as dt
import os
import re
import shlex
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import ADMIN, SECRET, Lab, PgCounter, fresh_database, git, psql, stale  # noqa: E402
from rate import cpu_ticks, replace_block  # noqa: E402
from scale import Serve, Sink, rss_kib  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- BEGIN bench/domains.py -->", "<!-- END bench/domains.py -->"
DOMAINS, ACTIVE, ACCOUNTS, RATE = 1000, 100, 1000, 10
TARGET_READY_S, TARGET_RATE_PCT = 2.0, 2.0
TO_DOMAIN = re.compile(rb"<message\b[^>]*?\bto=['\"][^'\"@]*@([^'\"/]+)")


def domain(i):
    return f"d{i:04d}.example"


class DomainSink(Sink):
    """The sink, with every message's arrival time kept by its recipient's domain."""

    def __init__(self, secret):
        self.by_domain = {}
        super().__init__(secret)

    def consume(self, buf, writer):
        end = buf.rfind(b">") + 1
        now = time.monotonic()
        for match in TO_DOMAIN.finditer(buf, 0, end):
            self.by_domain.setdefault(match.group(1).decode(), []).append(now)
        return super().consume(buf, writer)


def users_database(lab):
    name = fresh_database(lab, "domainsusers")
    psql('CREATE TABLE prosody (host TEXT NOT NULL, "user" TEXT NOT NULL, store TEXT NOT NULL, '
         'key TEXT NOT NULL, type TEXT NOT NULL, value TEXT NOT NULL)', name)
    psql('CREATE INDEX prosody_index ON prosody (host, "user", store, key)', name)
    psql("INSERT INTO prosody SELECT 'd' || lpad(d::text, 4, '0') || '.example', 'admin', 'accounts', "
         f"'password', 'string', 'x' FROM generate_series(1, {DOMAINS}) AS d", name)
    psql("INSERT INTO prosody SELECT 'd' || lpad(d::text, 4, '0') || '.example', 'u' || lpad(u::text, 4, '0'), "
         f"'accounts', 'password', 'string', 'x' FROM generate_series(1, {ACTIVE}) AS d, "
         f"generate_series(1, {ACCOUNTS}) AS u", name)
    psql("VACUUM ANALYZE", name)
    return name


def config(sink, jobs_port, jobs_db, users_db):
    head = (f'node_name = "domains1"\n[component]\njid = "broadcast.example"\nsecret = "{SECRET}"\n'
            f'server = "127.0.0.1:{sink.port}"\n'
            f'[database]\nurl = "postgres://postgres@127.0.0.1:{jobs_port}/{jobs_db}?sslmode=disable"\n'
            f'[users]\nschema = "prosody"\nurl = "postgres://postgres@127.0.0.1:5432/{users_db}?sslmode=disable"\n'
            '[admin]\nlisten = "127.0.0.1:{admin}"\n'
            f'username = "{ADMIN[0]}"\npassword = "{ADMIN[1]}"\n')
    return head + "".join(f'[domains."{domain(i)}"]\n' for i in range(1, DOMAINS + 1))


START = ("mutation S($d: DomainName!, $s: BareJID!) { broadcast { startBroadcast(name: \"bench\", "
         f"domain: $d, messageSubject: \"s\", messageBody: \"b\", senderJid: $s, messageRate: {RATE}, "
         "recipientGroup: ALL_USERS_IN_DOMAIN) { ids } } }")
ABORT = "mutation A($d: DomainName!, $id: Int!) { broadcast { abortBroadcast(domain: $d, id: $id) { ids } } }"


def measure(lab, binary, sink, users_db, window):
    counter = PgCounter()
    jobs_db = fresh_database(lab, "domainsjobs")
    text = config(sink, counter.port, jobs_db, users_db)
    spawned = time.monotonic()
    serve = Serve(lab, binary, "serve1", text)  # returns once /health: connected, job database up
    ready_s = time.monotonic() - spawned
    pid = serve.proc.pid
    try:
        time.sleep(2)
        idle_rss = rss_kib(pid)
        jobs, start_s = [], []
        for i in range(1, ACTIVE + 1):
            t = time.monotonic()
            data = serve.graphql(START, d=domain(i), s=f"admin@{domain(i)}")
            start_s.append(time.monotonic() - t)
            jobs.append(data["startBroadcast"]["ids"][0])
        time.sleep(10)  # every job past its first chunks
        before = counter.snapshot()
        cpu0, t0 = cpu_ticks(pid), time.monotonic()
        rss = []
        for second in range(1, window + 1):
            if (wait := t0 + second - time.monotonic()) > 0:
                time.sleep(wait)
            rss.append(rss_kib(pid))
        t1, cpu1 = time.monotonic(), cpu_ticks(pid)
        after = counter.snapshot()
        rates = []
        for i in range(1, ACTIVE + 1):
            times = [t for t in sink.by_domain.get(domain(i), []) if t0 <= t < t1]
            rates.append(len(times) / (t1 - t0))
        for i, job in enumerate(jobs, start=1):
            serve.graphql(ABORT, d=domain(i), id=job)
    finally:
        serve.stop()
    statements = sum(after[0].values()) - sum(before[0].values())
    return dict(ready_s=ready_s, idle_rss_mib=idle_rss / 1024, start_median_s=statistics.median(start_s),
                start_max_s=max(start_s), start_total_s=sum(start_s), window_s=t1 - t0,
                cpu_pct=100 * (cpu1 - cpu0) / (t1 - t0), rss_max_mib=max(rss) / 1024, rss_min_mib=min(rss) / 1024,
                statements_per_s=statements / (t1 - t0), syncs_per_s=(after[1] - before[1]) / (t1 - t0),
                rates=rates)


def report(binary, r):
    rel = binary.relative_to(ROOT) if binary.is_relative_to(ROOT) else binary
    rates = r["rates"]
    off = [100 * (rate - RATE) / RATE for rate in rates]
    worst = max(abs(x) for x in off)
    lines = [BEGIN, f"## {DOMAINS:,} domains on one instance, {ACTIVE} jobs at once (`bench/domains.py`)", "",
             f"* Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"* Command: `{shlex.join(['python3', 'bench/domains.py', *sys.argv[1:]])}`",
             f"* Binary: `{rel}`, repository at `{git('rev-parse', '--short', 'HEAD')}`"
             f"{' with uncommitted changes' if git('status', '--porcelain') else ''}{stale(binary)}",
             f"* Users (Prosody's layout) and jobs on PostgreSQL {psql('SHOW server_version')}, {os.cpu_count()} "
             f"cores; {DOMAINS:,} domains configured, {ACTIVE} of them with {ACCOUNTS:,} accounts; jobs at {RATE} msg/s "
             f"each; the job database reached through the statement-counting proxy of bench/cluster.py", "",
             "| | figure | goal |", "|---|---:|---|",
             f"| spawn → `/health` connected, job database up, s | **{r['ready_s']:.2f}** | < {TARGET_READY_S:.0f} s "
             f"{'met' if r['ready_s'] < TARGET_READY_S else 'MISSED'} |",
             f"| RSS with {DOMAINS:,} domains and no job, MiB | {r['idle_rss_mib']:.1f} | |",
             f"| startBroadcast, median / slowest of the {ACTIVE}, s | {r['start_median_s']:.3f} / "
             f"{r['start_max_s']:.3f} | |",
             f"| rate of each job over {r['window_s']:.0f} s, msg/s: min / median / max | "
             f"**{min(rates):.2f} / {statistics.median(rates):.2f} / {max(rates):.2f}** | {RATE} ± "
             f"{TARGET_RATE_PCT:.0f} % {'met' if worst <= TARGET_RATE_PCT else 'MISSED'} (worst {worst:.1f} %) |",
             f"| CPU of `serve` with {ACTIVE} jobs, % of one core | {r['cpu_pct']:.1f} | |",
             f"| RSS with {ACTIVE} jobs, MiB: min / max over the window | {r['rss_min_mib']:.1f} / "
             f"{r['rss_max_mib']:.1f} | |",
             f"| job-database statements/s with {ACTIVE} jobs | {r['statements_per_s']:.1f} | |",
             f"| job-database round trips (Sync)/s | {r['syncs_per_s']:.1f} | |",
             "",
             "What the figures miss: one run, on a 2-core machine that also runs PostgreSQL and this script "
             "(whose sink parses every message); a rate is the messages a domain's job delivered in the window "
             f"divided by the window, so a job's batch boundaries (a ping barrier and a commit every {RATE * 10} "
             "messages) are inside it; the ready time includes the migrations of a fresh job database and "
             "the first lease round.",
             END]
    return "\n".join(lines)


def interrupted(*_):
    raise KeyboardInterrupt


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", type=Path, default=ROOT / "target/release/xmpp-broadcast")
    p.add_argument("--window", type=int, default=60, help="seconds of measurement with every job running")
    p.add_argument("--no-write", action="store_true", help="print the results only, leave BENCHMARKS.md alone")
    args = p.parse_args()
    binary = args.binary.resolve()
    if not binary.exists():
        sys.exit(f"{binary} not found: run `cargo build --release` first")
    if ACCOUNTS < RATE * (args.window + 30):
        sys.exit(f"--window {args.window} is longer than the jobs last")
    signal.signal(signal.SIGTERM, interrupted)
    lab, sink = Lab(Path(tempfile.mkdtemp(prefix="domains-bench-"))), DomainSink(SECRET)
    try:
        users_db = users_database(lab)
        print(f"domains: {DOMAINS} domains, {ACTIVE} jobs ...", file=sys.stderr, flush=True)
        result = measure(lab, binary, sink, users_db, args.window)
    finally:
        lab.stop()
        sink.close()
    section = report(binary, result)
    print("\n" + section)
    if not args.no_write:
        replace_block(ROOT / "BENCHMARKS.md", BEGIN, END, section)


if __name__ == "__main__":
    main()
