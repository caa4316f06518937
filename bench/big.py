#!/usr/bin/env python3
"""Big: bench/scale.py's run on a 10,000,000-user domain, on ejabberd's or MongooseIM's schema.

    python3 bench/big.py --schema ejabberd_new|mongooseim [--users 10000000] [--window 1800]
                         [--binary PATH] [--no-write]

Everything is bench/scale.py's (the users inserted with one `INSERT ... SELECT generate_series`,
a fresh job database, the statement-counting proxies, the sink, VmRSS every second), with the
number of accounts, the users schema and the window given here. Writes its own block of
BENCHMARKS.md, one per schema.
"""

import argparse
import datetime as dt
import re
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale  # noqa: E402
from cluster import fresh_database, git, psql, stale  # noqa: E402
from rate import replace_block  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# MongooseIM's users table (priv/pg.sql, 5.0 and later).
MONGOOSEIM_USERS = ("CREATE TABLE users (username varchar(250), server varchar(250), password text NOT NULL, "
                    "pass_details text, created_at TIMESTAMP NOT NULL DEFAULT now(), "
                    "PRIMARY KEY (server, username))")


def mongooseim_users(lab):
    """scale.users_database for MongooseIM's table."""
    name = fresh_database(lab, "bigusers")
    psql(MONGOOSEIM_USERS, name)
    started = time.monotonic()
    psql("INSERT INTO users (username, server, password, created_at) "
         "SELECT CASE WHEN i = 0 THEN 'admin' ELSE 'u' || lpad(i::text, 8, '0') END, "
         f"'{scale.DOMAIN}', 'x', now() - interval '1 day' FROM generate_series(0, {scale.USERS - 1}) AS i", name)
    psql("VACUUM ANALYZE users", name)
    count = int(psql("SELECT COUNT(*) FROM users", name))
    if count != scale.USERS:
        raise RuntimeError(f"{count} users inserted, expected {scale.USERS}")
    return name, time.monotonic() - started


def report(args, result):
    r, tg = result["runs"][0], result["targets"]
    rel = args.binary.relative_to(ROOT) if args.binary.is_relative_to(ROOT) else args.binary
    begin, end = markers(args.schema)
    ok = lambda good: "met" if good else "**missed**"
    lines = [begin, f"## {scale.USERS:,} users, `schema = \"{args.schema}\"` (`bench/big.py`)", "",
             f"* Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"* Command: `{shlex.join(['python3', 'bench/big.py', *sys.argv[1:]])}`",
             f"* Binary: `{rel}`, repository at `{git('rev-parse', '--short', 'HEAD')}`{stale(args.binary)}",
             f"* PostgreSQL {psql('SHOW server_version')} for users and jobs; {scale.USERS:,} accounts inserted in "
             f"{result['insert_s']:.0f} s; {scale.RATE} msg/s to bench/scale.py's sink; one run, a {result['window_s']} s "
             "window", "",
             "| | figure | goal |", "|---|---:|---|",
             f"| startBroadcast, s | **{r['start_s']:.3f}** | < {tg['start_s']:.0f} s {ok(r['start_s'] < tg['start_s'])} |",
             f"| first message after the answer, s | {r['first_message_s'] - r['start_s']:.3f} | < 1 s "
             f"{ok(r['first_message_s'] - r['start_s'] < 1)} |",
             f"| recipients counted after the answer (recipientsCounted), s | {r['counted_s']:.3f} | |",
             f"| recipientCount | {r['recipient_count']:,} | {scale.USERS:,} |",
             f"| statements per batch of {scale.BATCH:,} (both databases) | **{r['per_batch']:.1f}** | O(1) |",
             f"| RSS: idle / at 10 s / at the end, MiB | {r['rss_idle_mib']:.1f} / {r['rss_10_mib']:.1f} / "
             f"{r['rss_180_mib']:.1f} | |",
             f"| RSS slope over the second half of the window, MiB/min | **{r['slope_late_mib_min']:+.3f}** | "
             f"flat (≤ {tg['slope_mib_min']}) {ok(abs(r['slope_late_mib_min']) <= tg['slope_mib_min'])} |",
             f"| RSS slope from {result['slope_from_s']} s, MiB/min | {r['slope_mib_min']:+.3f} | |",
             f"| peak RSS (VmHWM), MiB | {r['vmhwm_mib']:.1f} | |",
             f"| messages at the sink / achieved rate, msg/s | {r['sink_messages']:,} / {r['achieved']:.1f} | "
             f"{scale.RATE} |",
             f"| CPU of `serve`, % of one core | {r['cpu_pct']:.1f} | |",
             "",
             "What the figures miss: one run on a 2-core machine shared with PostgreSQL and the sink (a Python "
             "process that parses every message); \"at the end\" is the last second of the window, not the end of "
             "the job, which was aborted then. The start fixes the snapshot's instant and answers; the exact "
             "COUNT of the accounts created up to it runs after the answer, while the first batches are sent "
             "(its statement and the polls of recipientsCounted are counted with the start, not per batch).",
             end]
    return "\n".join(lines)


def markers(schema):
    return f"<!-- BEGIN bench/big.py {schema} -->", f"<!-- END bench/big.py {schema} -->"


def interrupted(*_):
    raise KeyboardInterrupt


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--schema", choices=["ejabberd_new", "mongooseim"], required=True)
    p.add_argument("--users", type=int, default=10_000_000)
    p.add_argument("--window", type=int, default=1800)
    p.add_argument("--binary", type=Path, default=ROOT / "target/release/xmpp-broadcast")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    args.binary = args.binary.resolve()
    if args.users < scale.RATE * (args.window + 60):
        sys.exit(f"--window {args.window} is longer than the job lasts")
    scale.USERS = args.users
    if args.schema == "mongooseim":
        scale.CONFIG = re.sub(r'schema = "ejabberd_new"', 'schema = "mongooseim"', scale.CONFIG)
        scale.users_database = mongooseim_users
    signal.signal(signal.SIGTERM, interrupted)
    result = scale.run(args.binary, 1, Path(tempfile.mkdtemp(prefix="big-bench-")), args.window)
    section = report(args, result)
    print("\n" + section)
    if not args.no_write:
        replace_block(ROOT / "BENCHMARKS.md", *markers(args.schema), section)


if __name__ == "__main__":
    main()
