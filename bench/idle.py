#!/usr/bin/env python3
"""Idle cost: the statements one instance makes on its job database with 0, 1 and 10 running
jobs, for one or two binaries side by side (e.g. before and after a change).

    python3 bench/idle.py [--binary PATH ...] [--window 60] [--no-write] [--keep]

Needs what bench/cluster.py needs (Python 3.11, Prosody 0.12, PostgreSQL on 127.0.0.1:5432 with
trust for user postgres, `psql`) and MariaDB on 127.0.0.1:3306 (root, no password, `mysql`).

1. A private Prosody (bench/cluster.py's: SQLite storage, 100 offline accounts on each of ten
   load domains).
2. For each binary, each job database (PostgreSQL, MariaDB) and each number of running jobs
   (0, 1, 10): a fresh job database, one `serve` with the default `lease_time` (600 s) reaching
   it through a counting proxy, 20 s to start up; then the jobs are started (1 msg/s each on
   their own domain: a batch of 10 every 10 s, running 100 s) and, 15 s later, the statements
   are counted for `--window` seconds; then `serve` is stopped.
   PostgreSQL: bench/cluster.py's `PgCounter` (Execute and Query messages; Sync messages are
   round trips). MariaDB: `MyCounter` here, which reads the client side of the MySQL protocol
   (`ssl-mode=disabled`) and counts the commands that run a statement (COM_QUERY,
   COM_STMT_EXECUTE) and, apart, COM_PING (sqlx's pings).
3. Each statement is classed as *lease work* (renewal, the reads of own and expired leases and
   of the scheduled jobs, takeover: what an instance does whatever its jobs) or *job work* (the
   workers' pages, progress and ends). Prints the figures and replaces its own section of
   BENCHMARKS.md.
Everything it starts is stopped on exit, Ctrl-C or error (logs are kept on error).
"""

import argparse
import datetime as dt
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster  # noqa: E402
from cluster import (LOAD_DOMAINS, LOAD_RATE, Instance, Lab, PgCounter, fresh_database, git,  # noqa: E402
                     psql, shut, start_prosody)
from rate import replace_block  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- BEGIN bench/idle.py -->", "<!-- END bench/idle.py -->"
MARIADB = ("127.0.0.1", 3306)
DEFAULT_LEASE = 600  # README: lease_time's default
JOB_COUNTS = (0, 1, 10)
GOAL_IDLE = 0.1  # statements per second with no job

# The statements of the lease loop, the ownership check and the scheduler, by their start.
LEASE_WORK = re.compile(
    r"^\s*(UPDATE xb_leases SET expires_at|SELECT job_id, epoch FROM xb_leases WHERE owner"
    r"|SELECT l\.job_id, l\.owner, l\.epoch|SELECT 'expired'|SELECT id, domain, users_database, start_at"
    r"|UPDATE xb_leases SET owner)")


class MyCounter:
    """A TCP proxy in front of MariaDB that counts the commands its clients send."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.statements, self.pings = {}, 0
        threading.Thread(target=self.accept, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return dict(self.statements), self.pings

    def accept(self):
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(MARIADB)
            connection = {"pending": [], "named": {}, "lock": threading.Lock()}
            threading.Thread(target=self.read_server, args=(server, client, connection), daemon=True).start()
            threading.Thread(target=self.read_client, args=(client, server, connection), daemon=True).start()

    @staticmethod
    def packets(sock, sink):
        """Yields each whole packet (sequence, payload) of `sock`, then forwards its bytes to
        `sink`: a prepare is noted before the server can answer it."""
        buffer = b""
        try:
            while data := sock.recv(65536):
                buffer += data
                while len(buffer) >= 4 and len(buffer) >= 4 + (size := int.from_bytes(buffer[:3], "little")):
                    yield buffer[3], buffer[4:4 + size]
                    buffer = buffer[4 + size:]
                sink.sendall(data)
        except OSError:
            pass
        shut(sock, sink)

    def read_server(self, server, client, connection):
        """The server's answer to COM_STMT_PREPARE (the first packet after it, sequence 1) is
        COM_STMT_PREPARE_OK, 12 bytes from 0x00, with the statement id the server chose."""
        for seq, body in self.packets(server, client):
            with connection["lock"]:
                if seq != 1 or not connection["pending"]:
                    continue
                text = connection["pending"].pop(0)
                if len(body) == 12 and body[0] == 0:
                    connection["named"][struct.unpack("<I", body[1:5])[0]] = text

    def read_client(self, client, server, connection):
        """Parses the client's packets: a packet with sequence number 0 starts a command;
        COM_STMT_PREPARE (0x16) names a statement, COM_STMT_EXECUTE (0x17) runs one, COM_QUERY
        (0x03) is a text statement, COM_PING (0x0e) a ping. The handshake response (sequence 1)
        is skipped."""
        for seq, body in self.packets(client, server):
            if seq != 0 or not body:
                continue
            command, text = body[0], None
            if command == 0x16:
                with connection["lock"]:
                    connection["pending"].append(body[1:].decode(errors="replace"))
            elif command == 0x17:
                with connection["lock"]:
                    text = connection["named"].get(struct.unpack("<I", body[1:5])[0], "?")
            elif command == 0x03:
                text = body[1:].decode(errors="replace")
            elif command == 0x0E:
                with self.lock:
                    self.pings += 1
            if text is not None:
                with self.lock:
                    self.statements[text] = self.statements.get(text, 0) + 1


def mysql(sql):
    out = subprocess.run(["mysql", "-h", MARIADB[0], "-P", str(MARIADB[1]), "-uroot", "-N", "-e", sql],
                         capture_output=True, text=True, timeout=60)
    if out.returncode:
        raise RuntimeError(f"mysql {sql!r}: {out.stderr.strip()}")
    return out.stdout.strip()


def job_database(lab, kind, label):
    """A fresh job database of `kind` behind a counting proxy: (counter, url)."""
    if kind == "PostgreSQL":
        name = fresh_database(lab, label)
        counter = PgCounter()
        return counter, f"postgres://postgres@127.0.0.1:{counter.port}/{name}?sslmode=disable"
    name = f"xb_bench_{label}_{int(time.time())}"
    mysql(f"CREATE DATABASE {name}")
    lab.mariadb.append(name)
    counter = MyCounter()
    return counter, f"mysql://root@127.0.0.1:{counter.port}/{name}?ssl-mode=disabled"


def count(lab, binary, component, kind, jobs, window, label):
    """One instance of `binary` on a fresh job database of `kind` with `jobs` running jobs:
    statements per second during `window` seconds, by statement, and pings (round trips)."""
    counter, url = job_database(lab, kind, label)
    cluster.LEASE = DEFAULT_LEASE  # Instance writes cluster.LEASE into its config
    instance = Instance(lab, binary, 4, f"idle-{label}", component, url, LOAD_DOMAINS)
    try:
        time.sleep(20)  # start-up (migrations, take-up) falls outside the window
        started = [(host, instance.start_job(host, LOAD_RATE)) for host in LOAD_DOMAINS[:jobs]]
        if started:
            time.sleep(15)  # the starts and first pages fall outside the window
        before, pings_before = counter.snapshot()
        time.sleep(window)  # the measurement window: time must pass
        after, pings_after = counter.snapshot()
        states = {instance.job(job, host)["executionState"] for host, job in started}
        if states - {"RUNNING"}:
            raise RuntimeError(f"the jobs did not run through the whole window: {states}")
    finally:
        instance.kill()
    per_statement = {text: (n - before.get(text, 0)) / window for text, n in after.items()
                     if n > before.get(text, 0)}
    lease = sum(rate for text, rate in per_statement.items() if LEASE_WORK.match(text))
    return dict(total=sum(per_statement.values()), lease=lease, pings=(pings_after - pings_before) / window,
                per_statement=per_statement)


def report(args, results):
    """results: {(binary label, kind, jobs): figures}."""
    labels = list(dict.fromkeys(label for label, _, _ in results))
    kinds = list(dict.fromkeys(kind for _, kind, _ in results))
    lines = [BEGIN, "## Idle cost: job-database statements with 0, 1 and 10 running jobs (`bench/idle.py`)", "",
             f"* Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"* Command: `{shlex.join(['python3', 'bench/idle.py', *sys.argv[1:]])}`",
             f"* Repository at `{git('rev-parse', '--short', 'HEAD')}`"
             f"{' with uncommitted changes' if git('status', '--porcelain') else ''}; binaries: "
             + "; ".join(f"**{label}** `{path}`" for label, path in args.labelled),
             f"* `lease_time = {DEFAULT_LEASE}` (the default); jobs at {LOAD_RATE} msg/s, 100 recipients each "
             f"(a batch of 10 every 10 s); {args.window} s windows; PostgreSQL {psql('SHOW server_version')}, "
             f"MariaDB {mysql('SELECT VERSION()')}",
             f"* Goal: ≤ {GOAL_IDLE} statements/s with no job; lease work O(1) in the number of jobs", "",
             "Statements per second (lease work in brackets: renewal, own/expired leases, scheduled jobs, "
             "takeover; the rest is the workers' pages and progress), and pings per second:", "",
             "| job database | binary | no job | 1 job | 10 jobs | pings/s: no job, 1, 10 |",
             "|---|---|---:|---:|---:|---|"]
    for kind in kinds:
        for label in labels:
            cells = []
            for jobs in JOB_COUNTS:
                r = results.get((label, kind, jobs))
                cells.append("—" if r is None else
                             (f"**{r['total']:.2f}**" if jobs == 0 else f"{r['total']:.2f} ({r['lease']:.2f})"))
            pings = ", ".join("—" if (r := results.get((label, kind, jobs))) is None else f"{r['pings']:.2f}"
                              for jobs in JOB_COUNTS)
            lines.append(f"| {kind} | {label} | {' | '.join(cells)} | {pings} |")
    lines += ["", "Lease-work statements per 10 s (one round of the new lease loop), by statement:", "",
              "| job database | binary | statement | no job | 1 job | 10 jobs |", "|---|---|---|---:|---:|---:|"]
    for kind in kinds:
        for label in labels:
            texts = sorted({t for jobs in JOB_COUNTS if (r := results.get((label, kind, jobs)))
                            for t in r["per_statement"] if LEASE_WORK.match(t)})
            for text in texts:
                short = re.sub(r"\s+", " ", text).strip()
                short = (short if len(short) <= 70 else short[:67] + "...").replace("|", "\\|")
                rates = [f"{results[(label, kind, jobs)]['per_statement'].get(text, 0) * 10:.2f}"
                         if (label, kind, jobs) in results else "—" for jobs in JOB_COUNTS]
                lines.append(f"| {kind} | {label} | `{short}` | {' | '.join(rates)} |")
    lines += ["",
              "Method: each instance reaches its job database through a proxy in the script that parses the client "
              "side of the wire protocol and counts every statement the server runs (PostgreSQL: Execute and Query "
              "messages; MariaDB: COM_STMT_EXECUTE and COM_QUERY), by SQL text. Pings: PostgreSQL's are Sync "
              "messages (sqlx's ping is a Sync alone, and every statement ends with one, so the column counts all "
              "round trips); MariaDB's are COM_PING. What the figures miss: one window per case (no repeat), on a "
              "shared 2-core machine; the jitter of the rounds (up to a fifth) makes a 60 s window hold 5 or 6 "
              "rounds; start-up and the starts themselves are outside the windows.",
              END]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", action="append", default=[],
                   help="LABEL=PATH of a release build; repeat to compare (default: after=target/release/xmpp-broadcast)")
    p.add_argument("--window", type=int, default=60, help="seconds of each window (default 60)")
    p.add_argument("--databases", default="PostgreSQL,MariaDB", help="job databases (default PostgreSQL,MariaDB)")
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
    if args.window + 15 + 10 > 100:
        sys.exit("--window is longer than the jobs last (100 s)")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    lab = Lab(Path(tempfile.mkdtemp(prefix="idle-bench-")))
    lab.mariadb = []
    results = {}
    try:
        component = start_prosody(lab)
        for kind in args.databases.split(","):
            for jobs in JOB_COUNTS:
                # Side by side: the binaries take turns for each case.
                for label, binary in args.labelled:
                    print(f"{kind}, {label}, {jobs} jobs, {args.window} s ...", flush=True)
                    results[(label, kind, jobs)] = count(lab, binary, component, kind, jobs, args.window,
                                                         f"{label}{jobs}".replace("-", "_"))
    except BaseException:
        args.keep = True
        print(f"failed or interrupted; everything started is stopped; logs kept in {lab.dir}", file=sys.stderr)
        raise
    finally:
        lab.stop()
        for name in lab.mariadb:
            mysql(f"DROP DATABASE IF EXISTS {name}")
        if not args.keep:
            shutil.rmtree(lab.dir)
    section = report(args, results)
    print("\n" + section)
    if not args.no_write:
        replace_block(ROOT / "BENCHMARKS.md", BEGIN, END, section)
        print(f"\nwritten to {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
