#!/usr/bin/env python3
"""Cluster figures of xmpp-broadcast: takeover after SIGKILL, repeats per failure, and the load
an instance puts on the job database.

    python3 bench/cluster.py [--runs 5] [--window 60] [--binary PATH] [--no-write] [--keep]

Needs Python 3.11 (stdlib only), Prosody 0.12 (`prosody`, `prosodyctl`), PostgreSQL on
127.0.0.1:5432 with trust for user postgres (`bash .ci/run` sets it up), `psql`, and a release
build (`cargo build --release`).

1. Takeover. A private Prosody (SQLite storage in WAL mode) with 300 accounts on example.com,
   none online, so every message lands in the offline store; three `serve` instances node1..3
   (lease_time = 10, components broadcast1..3.example.com) on a fresh PostgreSQL database.
   `--runs` times: node1 starts a job (10 msg/s, batches of 100); once the first batch is
   committed and part of the second is stored (a different point each run, spread over the
   batch), node1 is killed with SIGKILL. Measured:
   kill -> the job's ownerNode (polled every 50 ms on node2) names another instance, and
   kill -> the offline store grows again (sending resumed). When the job is FINISHED the
   offline store is read back: every account must hold the job's message (ids recomputed
   from the job id), and the messages beyond one per account are the repeats of that failure.
   node1 is started again before the next run.
2. Database load of one instance. A fourth instance, alone on its own fresh database, reaches
   PostgreSQL through a proxy in this script that reads the client side of the wire protocol
   (sslmode=disable) and counts every statement the server executes: Execute messages of the
   extended protocol, attributed to their SQL text through Parse/Bind, and simple Query
   messages; Sync messages count round trips. A cross-check: transactions (xact_commit +
   xact_rollback of pg_stat_database, read from the maintenance database so that reading adds
   nothing; PostgreSQL flushes these counters from idle sessions up to 10 s late). Each window
   is `--window` seconds: first with no job (20 s after start-up), then with 10 running jobs
   (10 domains, 1 msg/s each, 100 accounts each: a batch of 10 every 10 s), 15 s after the
   last start so that starting is not counted.
3. Prints the figures and replaces its own section of BENCHMARKS.md (between its BEGIN/END
   markers), leaving the rest of the file alone.
Everything it starts is stopped on exit, Ctrl-C, SIGTERM or error (logs are kept on error).
"""

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rate import Lab as ProcessLab, replace_block  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- BEGIN bench/cluster.py -->", "<!-- END bench/cluster.py -->"
SECRET, ADMIN = "s3cret", ("admin", "adminpw")
DOMAIN, ACCOUNTS, RATE, LEASE = "example.com", 300, 10, 10
BATCH = RATE * 10
LOAD_DOMAINS = [f"load{i:02d}.example.net" for i in range(1, 11)]
LOAD_RATE, LOAD_ACCOUNTS = 1, 100
PG = ("127.0.0.1", 5432)
POLL = 0.05


# ---------------------------------------------------------------- processes


class Lab(ProcessLab):
    """The scratch directory, the processes started in it and the databases made for it;
    stop() ends the processes, newest first, and drops the databases."""

    def __init__(self, scratch):
        super().__init__(scratch)
        self.databases = []

    def stop(self):
        super().stop()
        for name in self.databases:
            psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def unused_ports(count):
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def until(what, check, timeout):
    """Polls check() every POLL seconds until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(POLL)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def psql(sql, database="postgres"):
    out = subprocess.run(["psql", "-h", PG[0], "-p", str(PG[1]), "-U", "postgres", "-w", "-AtX", "-c", sql,
                          database], capture_output=True, text=True, timeout=60)
    if out.returncode:
        raise RuntimeError(f"psql {sql!r}: {out.stderr.strip()}")
    return out.stdout.strip()


def fresh_database(lab, label):
    name = f"xb_bench_{label}_{os.getpid()}_{int(time.time())}"
    psql(f"CREATE DATABASE {name}")
    lab.databases.append(name)
    return name


def transactions(database):
    return int(psql(f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{database}'"))


# ---------------------------------------------------------------- Prosody


def start_prosody(lab):
    """Prosody with every domain and component this benchmark uses; returns (config, component port)."""
    d = lab.dir
    (d / "data").mkdir()
    (d / "certs").mkdir()
    with sqlite3.connect(d / "data" / "prosody.sqlite") as db:  # WAL before Prosody opens it
        assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    c2s, component = unused_ports(2)
    hosts = "".join(f'VirtualHost "{host}"\n' for host in [DOMAIN, *LOAD_DOMAINS])
    components = "".join(f'Component "{jid}"\n  component_secret = "{SECRET}"\n  validate_from_addresses = false\n'
                         for jid in [f"broadcast{i}.{DOMAIN}" for i in range(1, 5)])
    config = d / "prosody.cfg.lua"
    config.write_text(f"""run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
certificates = "{d}/certs"
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{d}/prosody.log" }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
component_ports = {{ {component} }}
component_interfaces = {{ "127.0.0.1" }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "posix"; "admin_shell" }}
modules_disabled = {{ "s2s" }}
authentication = "internal_hashed"
default_iteration_count = 4096
storage = "sql"
sql = {{ driver = "SQLite3"; database = "prosody.sqlite" }}
{hosts}{components}""")
    prosody = lab.start("prosody", ["prosody", "--config", str(config), "-F"])

    def listening():
        if prosody.poll() is not None:
            raise RuntimeError(f"prosody exited: {(d / 'prosody.out').read_text()[-2000:]}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", component)) == 0

    until("Prosody's component port", listening, 20)
    accounts = [(DOMAIN, ACCOUNTS - 1)] + [(host, LOAD_ACCOUNTS - 1) for host in LOAD_DOMAINS]
    lua = ">local um = require 'core.usermanager'; " + " ".join(
        f"for i = 1, {n} do um.create_user(string.format('u%04d', i), 'pw', '{host}') end; "
        f"um.create_user('admin', 'pw', '{host}');" for host, n in accounts) + " return 'ok'"
    out = subprocess.run(["prosodyctl", "--config", str(config), "shell", lua], capture_output=True, text=True,
                         timeout=600)
    if "ok" not in out.stdout:
        raise RuntimeError(f"creating accounts failed: {out.stdout}{out.stderr}")
    return component


def recipients(host=DOMAIN, count=ACCOUNTS):
    return [f"u{i:04d}@{host}" for i in range(1, count)] + [f"admin@{host}"]


def stored_ids(lab):
    """The ids of every offline message of example.com, one entry per stored message."""
    uri = f"file:{lab.dir / 'data' / 'prosody.sqlite'}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as db:
        rows = db.execute("SELECT value FROM prosodyarchive WHERE host = ? AND store = 'offline'", (DOMAIN,))
        return [m.group(1) for (value,) in rows for m in [re.search(r"id=['\"](xb-[0-9a-f]{40})['\"]", value)] if m]


def message_ids(job):
    """The id every recipient's message of `job` carries (ARCHITECTURE: Decisions)."""
    return {"xb-" + hashlib.sha1(f"{job}:{jid}".encode()).hexdigest(): jid for jid in recipients()}


# ---------------------------------------------------------------- xmpp-broadcast instances


class Instance:
    """One `serve` with its own config, component JID and admin port."""

    def __init__(self, lab, binary, number, node, component_port, database_url, domains):
        self.lab, self.binary, self.node, self.port = lab, binary, node, unused_ports(1)[0]
        self.config = lab.dir / f"{node}.toml"
        self.config.write_text(
            f'node_name = "{node}"\nlease_time = {LEASE}\nbackend = "rdbms"\n'
            f'[component]\njid = "broadcast{number}.{DOMAIN}"\nsecret = "{SECRET}"\n'
            f'server = "127.0.0.1:{component_port}"\n'
            f'[database]\nurl = "{database_url}"\n'
            f'[users]\nschema = "prosody"\nurl = "sqlite://{lab.dir}/data/prosody.sqlite"\n'
            f'[admin]\nlisten = "127.0.0.1:{self.port}"\nusername = "{ADMIN[0]}"\npassword = "{ADMIN[1]}"\n'
            + "".join(f'[domains."{host}"]\n' for host in domains))
        self.proc = None
        self.start()

    def start(self):
        self.proc = self.lab.start(self.node, [str(self.binary), "serve", "--config", str(self.config)])

        def connected():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.node} exited: {(self.lab.dir / f'{self.node}.out').read_text()[-2000:]}")
            try:
                health = self.request("GET", "/health")
                return health.get("xmpp") == "connected" and health.get("status") == "ok"
            except OSError:
                return False

        until(f"{self.node} to be connected with its job database up", connected, 30)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def request(self, method, path, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": "Basic "
                                              + base64.b64encode(":".join(ADMIN).encode()).decode()})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def graphql(self, query, **variables):
        out = self.request("POST", "/api/graphql", {"query": query, "variables": variables})
        if out.get("errors"):
            raise RuntimeError(f"{self.node}: {out['errors']}")
        return out["data"]["broadcast"]

    def start_job(self, domain, rate):
        query = ("mutation S($d: DomainName!, $s: BareJID!, $r: PosInt!) { broadcast { startBroadcast(name: \"bench\", "
                 "domain: $d, messageSubject: \"s\", messageBody: \"b\", senderJid: $s, messageRate: $r, "
                 "recipientGroup: ALL_USERS_IN_DOMAIN) { ids } } }")
        return self.graphql(query, d=domain, s=f"admin@{domain}", r=rate)["startBroadcast"]["ids"][0]

    def job(self, job, domain=DOMAIN):
        query = ("query G($d: DomainName!, $id: Int!) { broadcast { getBroadcast(domain: $d, id: $id) { "
                 "executionState ownerNode recipientsProcessed recipientCount } } }")
        return self.graphql(query, d=domain, id=job)["getBroadcast"]


# ---------------------------------------------------------------- 1. takeover


def takeover_run(lab, nodes, run, into_batch):
    """One SIGKILL of the owner once `into_batch` messages of its second batch are stored;
    returns the run's figures."""
    owner, witness = nodes[0], nodes[1]
    job = owner.start_job(DOMAIN, RATE)
    ids = message_ids(job)
    of_job = lambda: sum(1 for i in stored_ids(lab) if i in ids)
    until("the first batch", lambda: owner.job(job)["recipientsProcessed"] >= BATCH, 60)
    until("part of the second batch", lambda: of_job() >= BATCH + into_batch, 30)
    killed = time.monotonic()
    owner.kill()
    state = until("another owner", lambda: (s := witness.job(job))["ownerNode"] != owner.node and s, 60)
    takeover = time.monotonic() - killed
    at_takeover = of_job()
    until("sending to resume", lambda: of_job() > at_takeover, 60)
    resumed = time.monotonic() - killed
    final = until("the job to end", lambda: (s := witness.job(job))["executionState"] != "RUNNING" and s, 120)
    stored = [i for i in stored_ids(lab) if i in ids]
    missing = len(set(ids) - set(stored))
    result = dict(run=run, job=job, into_batch=into_batch, takeover=takeover, resumed=resumed, new_owner=state["ownerNode"],
                  repeats=len(stored) - len(ids), missing=missing, state=final["executionState"])
    print(f"  run {run}: job {job}, killed {into_batch} messages into the batch: {result['new_owner']} took over after {takeover:.2f} s, sending resumed after "
          f"{resumed:.2f} s, {result['repeats']} repeats, {missing} missing, {final['executionState']}", flush=True)
    owner.start()
    return result


# ---------------------------------------------------------------- 2. database load


class PgCounter:
    """A TCP proxy in front of PostgreSQL that counts the statements its clients execute."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.statements, self.syncs = {}, 0
        threading.Thread(target=self.accept, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return dict(self.statements), self.syncs

    def accept(self):
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(PG)
            threading.Thread(target=self.pipe, args=(server, client), daemon=True).start()
            threading.Thread(target=self.read_client, args=(client, server), daemon=True).start()

    @staticmethod
    def pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        shut(source, sink)

    def read_client(self, client, server):
        """Forwards the client's bytes and parses its messages: Parse names a statement, Bind
        picks one, Execute runs it, Query is a simple statement, Sync ends a round trip."""
        buffer, started, named, bound = b"", False, {}, ""
        try:
            while data := client.recv(65536):
                server.sendall(data)
                buffer += data
                while True:
                    if not started:  # the startup message has no type byte
                        if len(buffer) < 4 or len(buffer) < (size := struct.unpack("!I", buffer[:4])[0]):
                            break
                        buffer, started = buffer[size:], True
                        continue
                    if len(buffer) < 5 or len(buffer) < 1 + (size := struct.unpack("!I", buffer[1:5])[0]):
                        break
                    kind, body, buffer = buffer[:1], buffer[5:1 + size], buffer[1 + size:]
                    if kind == b"P":
                        name, query = body.split(b"\0")[:2]
                        named[name] = query.decode(errors="replace")
                    elif kind == b"B":
                        bound = named.get(body.split(b"\0")[1], "?")
                    elif kind in (b"E", b"Q"):
                        text = bound if kind == b"E" else body.rstrip(b"\0").decode(errors="replace")
                        with self.lock:
                            self.statements[text] = self.statements.get(text, 0) + 1
                    elif kind == b"S":
                        with self.lock:
                            self.syncs += 1
        except OSError:
            pass
        shut(client, server)


def shut(*sockets):
    """Ends both directions of a proxied connection when either side is done."""
    for s in sockets:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def measure_window(counter, database, seconds):
    """Statements, round trips and transactions of `database` during `seconds`."""
    before, syncs_before, xacts_before = *counter.snapshot(), transactions(database)
    time.sleep(seconds)  # the measurement window: time must pass
    after, syncs_after, xacts_after = *counter.snapshot(), transactions(database)
    per_statement = {text: (n - before.get(text, 0)) / seconds for text, n in after.items()
                     if n > before.get(text, 0)}
    return dict(statements=sum(per_statement.values()), syncs=(syncs_after - syncs_before) / seconds,
                xacts=(xacts_after - xacts_before) / seconds, per_statement=per_statement)


def database_load(lab, binary, component_port, window):
    database = fresh_database(lab, "load")
    counter = PgCounter()
    url = f"postgres://postgres@127.0.0.1:{counter.port}/{database}?sslmode=disable"
    instance = Instance(lab, binary, 4, "load1", component_port, url, LOAD_DOMAINS)
    time.sleep(20)  # let start-up (migrations) fall outside the window, and its statistics be flushed
    print(f"database load: no job, {window} s ...", flush=True)
    idle = measure_window(counter, database, window)
    jobs = [(host, instance.start_job(host, LOAD_RATE)) for host in LOAD_DOMAINS]
    time.sleep(15)  # the starts and the jobs' first pages fall outside the window
    print(f"database load: {len(jobs)} running jobs, {window} s ...", flush=True)
    busy = measure_window(counter, database, window)
    states = {instance.job(job, host)["executionState"] for host, job in jobs}
    if states != {"RUNNING"}:
        raise RuntimeError(f"the jobs did not run through the whole window: {states}")
    return idle, busy


# ---------------------------------------------------------------- report


def git(*argv):
    return subprocess.run(["git", *argv], capture_output=True, text=True, cwd=ROOT).stdout.strip()


def stale(binary):
    """A warning if the binary is older than the last commit that changed what it is built from."""
    commit, when = (git("log", "-1", "--format=%h %ct", "--", "src", "migrations", "Cargo.toml", "Cargo.lock")
                    .split() or ["?", "0"])
    if binary.stat().st_mtime >= int(when):
        return ""
    return f" (**the binary is older than commit `{commit}`, which changed its sources**)"


def report(args, runs, idle, busy):
    med = lambda key: statistics.median(r[key] for r in runs)
    each = lambda key, fmt: ", ".join(format(r[key], fmt) for r in runs)
    binary = args.binary.relative_to(ROOT) if args.binary.is_relative_to(ROOT) else args.binary
    cores = os.cpu_count()
    pg = psql("SHOW server_version")
    lines = [
        BEGIN, "## Cluster: takeover, repeats, database load (`bench/cluster.py`)", "",
        f"* Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"* Command: `{shlex.join(['python3', 'bench/cluster.py', *sys.argv[1:]])}`",
        f"* Binary: `{binary}`, built {dt.datetime.fromtimestamp(args.binary.stat().st_mtime, dt.timezone.utc):%Y-%m-%d %H:%M} "
        f"UTC, repository at `{git('rev-parse', '--short', 'HEAD')}`"
        f"{' with uncommitted changes' if git('status', '--porcelain') else ''} when the benchmark ran{stale(args.binary)}",
        f"* Machine: {cores} cores, PostgreSQL {pg}, Prosody with SQLite storage (WAL); `lease_time = {LEASE}`",
        "",
        f"### Takeover after SIGKILL of the owner ({len(runs)} runs, 3 instances)", "",
        f"Job: {ACCOUNTS} offline accounts at {RATE} msg/s (batches of {BATCH}); node1 killed once the first batch "
        f"was committed and part of the second was stored ({each('into_batch', 'd')} messages in the runs).", "",
        "| | median | runs |", "|---|---:|---|",
        f"| kill → ownerNode changes, s | **{med('takeover'):.2f}** | {each('takeover', '.2f')} |",
        f"| kill → sending resumes (offline store grows), s | **{med('resumed'):.2f}** | {each('resumed', '.2f')} |",
        f"| messages repeated per failure | **{med('repeats'):.0f}** | {each('repeats', 'd')} |",
        "",
        "Every run ended " + ("FINISHED with every account holding the message."
                              if all(r["state"] == "FINISHED" and not r["missing"] for r in runs)
                              else "— PROBLEMS: " + "; ".join(str(r) for r in runs if r["state"] != "FINISHED"
                                                              or r["missing"])),
        f"Expected: the lease runs out {LEASE - LEASE / 3 * 1.2:.0f}–{LEASE} s after the kill (renewed every "
        f"lease_time/3 ± 20 %), then a survivor takes the job at its next renewal round (up to "
        f"{LEASE / 3 * 1.2:.1f} s later); the repeats are the part of the uncommitted batch that had been sent "
        f"when the owner died (at most one batch of {BATCH}).",
        "",
        f"### Job database load of one instance ({args.window} s windows)", "",
        "| | statements/s | round trips/s (Sync) | transactions/s (pg_stat_database) |", "|---|---:|---:|---:|",
        f"| no job | **{idle['statements']:.2f}** | {idle['syncs']:.2f} | {idle['xacts']:.2f} |",
        f"| {len(LOAD_DOMAINS)} running jobs ({LOAD_RATE} msg/s each) | **{busy['statements']:.2f}** | "
        f"{busy['syncs']:.2f} | {busy['xacts']:.2f} |",
        "", "By statement (per second):", "", "| statement | no job | 10 jobs |", "|---|---:|---:|"]
    texts = sorted(set(idle["per_statement"]) | set(busy["per_statement"]),
                   key=lambda t: -busy["per_statement"].get(t, 0))
    for text in texts:
        short = re.sub(r"\s+", " ", text).strip()
        short = (short if len(short) <= 110 else short[:107] + "...").replace("|", "\\|")
        lines.append(f"| `{short}` | {idle['per_statement'].get(text, 0):.2f} | "
                     f"{busy['per_statement'].get(text, 0):.2f} |")
    lines += ["",
              "Method: the instance reaches PostgreSQL through a proxy in the script that parses the client side of "
              "the wire protocol and counts Execute (extended protocol) and Query (simple protocol) messages, so "
              "every statement the server runs is counted once, with its SQL text from the Parse message. Sync "
              "messages are the round trips: sqlx pings a pooled connection (a Sync alone) before each use and "
              "closes each statement's portal (Close + Sync) after it, so a statement costs three. The "
              "transactions column is the delta of xact_commit + xact_rollback of the instance's own fresh "
              "database, read from another database; PostgreSQL flushes those counters from idle sessions up to "
              "10 s late, so it is a cross-check, not the figure.",
              END]
    return "\n".join(lines)


def publish(section, write):
    """Prints the section and, if `write`, puts it in BENCHMARKS.md in place of its previous
    version (between the markers) or at the end."""
    print("\n" + section)
    if not write:
        return
    path = ROOT / "BENCHMARKS.md"
    replace_block(path, BEGIN, END, section)
    print(f"\nwritten to {path}")


# ---------------------------------------------------------------- main


def interrupted(*_):
    raise KeyboardInterrupt  # SIGTERM stops everything as Ctrl-C does


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="SIGKILL runs; medians are reported (default 5)")
    p.add_argument("--window", type=int, default=60, help="seconds of each database load window (default 60)")
    p.add_argument("--binary", type=Path, default=ROOT / "target/release/xmpp-broadcast")
    p.add_argument("--no-write", action="store_true", help="print the results only, leave BENCHMARKS.md alone")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, Prosody's data)")
    args = p.parse_args()
    args.binary = args.binary.resolve()
    if not args.binary.exists():
        sys.exit(f"{args.binary} not found: run `cargo build --release` first")
    if LOAD_ACCOUNTS < LOAD_RATE * (args.window + 40):
        sys.exit(f"--window {args.window} is longer than the load jobs last")
    signal.signal(signal.SIGTERM, interrupted)
    lab = Lab(Path(tempfile.mkdtemp(prefix="cluster-bench-")))
    try:
        component = start_prosody(lab)
        database = fresh_database(lab, "takeover")
        url = f"postgres://postgres@127.0.0.1:5432/{database}"
        nodes = [Instance(lab, args.binary, i, f"node{i}", component, url, [DOMAIN]) for i in range(1, 4)]
        print(f"takeover: {args.runs} runs ...", flush=True)
        # Kill points spread over the batch: the repeats depend on how much of it was sent.
        runs = [takeover_run(lab, nodes, run, BATCH * run // (args.runs + 1)) for run in range(1, args.runs + 1)]
        idle, busy = database_load(lab, args.binary, component, args.window)
    except BaseException:
        args.keep = True
        print(f"failed or interrupted; everything started is stopped; logs kept in {lab.dir}", file=sys.stderr)
        raise
    finally:
        lab.stop()
        if not args.keep:
            shutil.rmtree(lab.dir)
    publish(report(args, runs, idle, busy), write=not args.no_write)


if __name__ == "__main__":
    main()
