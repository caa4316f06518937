#!/usr/bin/env python3
"""Scale: xmpp-broadcast on a 1,000,000-user domain whose accounts are in PostgreSQL.

    python3 bench/scale.py [--runs 1] [--binary PATH] [--scratch DIR]

Prints a Markdown fragment; `bench/limits.py` imports `run(binary, runs, scratch) -> dict` and
`render(result) -> str`. Needs Python 3.11 (stdlib only), PostgreSQL on 127.0.0.1:5432 with trust
for user postgres, `psql`, ejabberd's schema file /usr/share/ejabberd/sql/pg.new.sql and a release
build. No XMPP server: the component talks to a sink in this script.

1. A fresh users database with ejabberd's `users` table (`new_sql_schema`) and 1,000,000 accounts
   of big.example (admin, u0000001..u0999999, created a day ago), inserted with one
   `INSERT ... SELECT generate_series` and then `VACUUM ANALYZE`d as autovacuum would; shared by
   the runs.
2. The sink: an XEP-0114 server (asyncio, 127.0.0.1, free port) that answers the stream header and
   the handshake, replies to every ping (the component's batch barriers) and counts `</message>`
   with arrival times; nothing else.
3. Per run: a fresh, empty job database (the binary migrates it), `serve` (`schema = "ejabberd_new"`)
   reaching both databases through two `PgCounter` proxies of bench/cluster.py (every statement
   counted, per database); once /health says xmpp connected: the wall time of the startBroadcast
   POST (1000 msg/s, ALL_USERS_IN_DOMAIN), then VmRSS of `serve` every second for 180 s from the
   start, the statements of each database, the messages at the sink and the job's progress;
   then abortBroadcast and `serve` is stopped.
Every process and database it creates is removed on exit, error or Ctrl-C.
"""

import argparse
import asyncio
import hashlib
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import urllib.error
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # cluster.py and rate.py, wherever we are imported from
from cluster import ADMIN, SECRET, Instance, Lab, PgCounter, fresh_database, psql, unused_ports, until  # noqa: E402
from rate import cpu_ticks  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOMAIN, COMPONENT_JID = "big.example", "broadcast.big.example"
USERS, RATE, WINDOW = 1_000_000, 1000, 180
BATCH = RATE * 10  # README: batches of rate x 10 recipients
SLOPE_FROM = 30  # the slope is fitted over WINDOW seconds from here
TARGET_START_S, TARGET_RSS_MIB, TARGET_SLOPE = 1.0, 64.0, 0.1  # slope: |MiB per minute|
SCHEMA_FILE = Path("/usr/share/ejabberd/sql/pg.new.sql")
HEADING = "#### Scale: a 1,000,000-user domain (`bench/scale.py`)"

CONFIG = """node_name = "scale1"
[component]
jid = "{jid}"
secret = "{secret}"
server = "127.0.0.1:{sink}"
[database]
url = "postgres://postgres@127.0.0.1:{jobs_port}/{jobs_db}?sslmode=disable"
[users]
schema = "ejabberd_new"
url = "postgres://postgres@127.0.0.1:{users_port}/{users_db}?sslmode=disable"
[admin]
listen = "127.0.0.1:{admin}"
username = "{auth[0]}"
password = "{auth[1]}"
[domains."{domain}"]
"""


# ---------------------------------------------------------------- the XEP-0114 sink


STREAM_HEAD = re.compile(rb"<stream:stream\b[^>]*>")
HANDSHAKE = re.compile(rb"<handshake>([^<]*)</handshake>")
IQ_COMPLETE = re.compile(rb"<iq\b[^>]*?(?:/>|>.*?</iq>)", re.S)
PING = re.compile(rb"<iq\b([^>]*)>\s*<ping\b")
ATTR = re.compile(rb"""([\w:]+)=(?:'([^']*)'|"([^"]*)")""")


class Sink:
    """The component's server, as little of one as the component needs: stream header with an
    id, handshake checked against the secret, a result for every ping; counts `</message>`.
    Its asyncio loop runs in a thread of its own."""

    def __init__(self, secret):
        self.secret, self.loop, self.tasks = secret, asyncio.new_event_loop(), set()
        self.arrivals, self.messages, self.pings, self.connections, self.problems = [], 0, 0, 0, []
        self.server = self.loop.run_until_complete(asyncio.start_server(self.serve, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def reset(self):
        """Starts counting afresh (called between runs, from the main thread; ints and a list
        swapped whole are safe to hand over under the GIL)."""
        self.arrivals, self.messages = [], 0

    def close(self):
        async def shutdown():
            self.server.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

        if self.thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(10)
        self.loop.close()

    async def serve(self, reader, writer):
        self.tasks.add(asyncio.current_task())
        try:
            buf = await self.read_until(reader, b"", STREAM_HEAD)
            head = STREAM_HEAD.search(buf)
            to = dict((k, a or b) for k, a, b in ATTR.findall(head.group(0))).get(b"to", b"").decode()
            sid = secrets.token_hex(8)
            writer.write(f"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
                         f"xmlns:stream='http://etherx.jabber.org/streams' from='{to}' id='{sid}'>".encode())
            buf = await self.read_until(reader, buf[head.end():], HANDSHAKE)
            shake = HANDSHAKE.search(buf)
            if shake.group(1).decode().strip().lower() != hashlib.sha1((sid + self.secret).encode()).hexdigest():
                self.problems.append("a component sent a wrong handshake")
                writer.write(b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                             b"</stream:error></stream:stream>")
                return
            writer.write(b"<handshake/>")
            self.connections += 1
            buf = buf[shake.end():]
            while True:
                buf = self.consume(buf, writer)
                if not (data := await reader.read(65536)):
                    return
                buf += data
        except (OSError, asyncio.IncompleteReadError, RuntimeError) as err:
            self.problems.append(f"sink connection: {err}")
        finally:
            writer.close()
            self.tasks.discard(asyncio.current_task())

    @staticmethod
    async def read_until(reader, buf, pattern):
        while not pattern.search(buf):
            if not (data := await reader.read(65536)):
                raise RuntimeError(f"closed before {pattern.pattern!r}: {buf[-200:]!r}")
            buf += data
        return buf

    def consume(self, buf, writer):
        """Counts the messages and answers the pings that are complete in `buf`; returns the rest.
        Cut at the last `>`, so no `</message>` is split; an `<iq>` without its end waits."""
        end = buf.rfind(b">") + 1
        chunk, rest = buf[:end], buf[end:]
        if (i := chunk.rfind(b"<iq")) >= 0 and not IQ_COMPLETE.match(chunk, i):
            chunk, rest = chunk[:i], chunk[i:] + rest
        if n := chunk.count(b"</message>"):
            self.messages += n
            self.arrivals.append((time.monotonic(), n))
        for ping in PING.finditer(chunk):
            attrs = {k: (a or b).decode() for k, a, b in ATTR.findall(ping.group(1))}
            if attrs.get(b"type") == "get":
                self.pings += 1
                writer.write(f"<iq type='result' id='{attrs.get(b'id', '')}' from='{attrs.get(b'to', '')}' "
                             f"to='{attrs.get(b'from', '')}'/>".encode())
        return rest


# ---------------------------------------------------------------- measurements


class Serve(Instance):
    """cluster.Instance (start on /health connected, GraphQL) with this benchmark's configuration."""

    def __init__(self, lab, binary, node, config):
        self.lab, self.binary, self.node, self.port = lab, binary, node, unused_ports(1)[0]
        self.config = lab.dir / f"{node}.toml"
        self.config.write_text(config.format(admin=self.port))
        self.proc = None
        self.start()

    def abort(self, job):
        query = ("mutation A($d: DomainName!, $id: Int!) { broadcast { abortBroadcast(domain: $d, id: $id) "
                 "{ ids } } }")
        return self.graphql(query, d=DOMAIN, id=job)["abortBroadcast"]["ids"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def rss_kib(pid):
    return int(re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))


def hwm_kib(pid):
    return int(re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))


def users_database(lab):
    """The shared users database: ejabberd's users table and USERS accounts of DOMAIN."""
    table = re.search(r"^CREATE TABLE users \(.*?^\);", SCHEMA_FILE.read_text(), re.M | re.S)
    if not table:
        raise RuntimeError(f"no CREATE TABLE users in {SCHEMA_FILE}")
    name = fresh_database(lab, "scaleusers")
    psql(table.group(0), name)
    started = time.monotonic()
    psql("INSERT INTO users (username, server_host, password, created_at) "
         "SELECT CASE WHEN i = 0 THEN 'admin' ELSE 'u' || lpad(i::text, 7, '0') END, "
         f"'{DOMAIN}', 'x', now() - interval '1 day' FROM generate_series(0, {USERS - 1}) AS i", name)
    psql("VACUUM ANALYZE users", name)
    count = int(psql("SELECT COUNT(*) FROM users", name))
    if count != USERS:
        raise RuntimeError(f"{count} users inserted, expected {USERS}")
    return name, time.monotonic() - started


def peak_reached(samples):
    """Seconds after the start at which RSS first came within 256 KiB of its highest sample: tells
    steps that stop (allocator arenas, buffers reaching their size) from a leak (the peak keeps
    moving to the end of the window)."""
    top = max(kib for _, kib in samples)
    return next(t for t, kib in samples if kib >= top - 256)


def delta(before, after):
    return {text: n - before.get(text, 0) for text, n in after.items() if n > before.get(text, 0)}


def counted(serve, job):
    """Whether the job's recipients are counted (a binary without recipientsCounted counted them first)."""
    query = ("query G($d: DomainName!, $id: Int!) { broadcast { getBroadcast(domain: $d, id: $id) { "
             "recipientsCounted } } }")
    try:
        return serve.graphql(query, d=DOMAIN, id=job)["getBroadcast"]["recipientsCounted"]
    except urllib.error.HTTPError as err:
        if err.code == 400:  # an unknown field: a binary that counted before answering
            return True
        raise


def one_run(lab, binary, sink, users_db, number, window):
    """One `serve` on a fresh job database; returns the run's raw figures."""
    jobs_db = fresh_database(lab, f"scalejobs{number}")
    counters = {"jobs": PgCounter(), "users": PgCounter()}
    config = CONFIG.format(jid=COMPONENT_JID, secret=SECRET, sink=sink.port, jobs_port=counters["jobs"].port,
                           jobs_db=jobs_db, users_port=counters["users"].port, users_db=users_db,
                           auth=ADMIN, domain=DOMAIN, admin="{admin}")
    serve = Serve(lab, binary, f"serve{number}", config)
    try:
        pid = serve.proc.pid
        rss_idle = rss_kib(pid)
        time.sleep(2)  # let start-up (migrations, first lease round) settle before counting
        sink.reset()
        snaps = [{db: c.snapshot() for db, c in counters.items()}]
        cpu0 = cpu_ticks(pid)
        t0 = time.monotonic()
        job = serve.start_job(DOMAIN, RATE)
        start_s = time.monotonic() - t0
        # A large domain answers before its recipients are counted: until they are, the
        # count and these polls are the start's statements.
        counted_s = until("the recipients counted", lambda: counted(serve, job) and time.monotonic(), 300) - t0
        snaps.append({db: c.snapshot() for db, c in counters.items()})
        samples = []
        for second in range(window + 1):
            if (wait := t0 + second - time.monotonic()) > 0:
                time.sleep(wait)  # the sampling schedule: one VmRSS reading per second
            if serve.proc.poll() is not None:
                raise RuntimeError(f"serve exited during the run: {(lab.dir / f'{serve.node}.out').read_text()[-2000:]}")
            samples.append((round(time.monotonic() - t0, 3), rss_kib(pid)))
        snaps.append({db: c.snapshot() for db, c in counters.items()})
        cpu1, t1 = cpu_ticks(pid), time.monotonic()
        state = serve.job(job, DOMAIN)  # after the last snapshot: reading it is not counted
        arrivals = [(t - t0, n) for t, n in sink.arrivals if t - t0 <= window]
        hwm = hwm_kib(pid)
        serve.abort(job)
        final = until("the job to stop", lambda: (s := serve.job(job, DOMAIN))["executionState"] != "RUNNING" and s, 30)
    finally:
        serve.stop()
    statements = {db: {"start": delta(snaps[0][db][0], snaps[1][db][0]),
                       "sending": delta(snaps[1][db][0], snaps[2][db][0]),
                       "syncs": snaps[2][db][1] - snaps[1][db][1]} for db in counters}
    batches = state["recipientsProcessed"] // BATCH
    sent = sum(n for _, n in arrivals)
    span = arrivals[-1][0] - arrivals[0][0] if len(arrivals) > 1 else 0
    slope = lambda since: statistics.linear_regression(
        *zip(*[(t / 60, kib / 1024) for t, kib in samples if t >= since])).slope
    at = lambda second: min(samples, key=lambda s: abs(s[0] - second))[1] / 1024
    total_sending = sum(sum(s["sending"].values()) for s in statements.values())
    return dict(
        run=number, job=job, start_s=start_s, counted_s=counted_s - start_s, recipient_count=state["recipientCount"],
        processed=state["recipientsProcessed"], batches=batches, state_at_end=state["executionState"],
        state_after_abort=final["executionState"], rss_idle_mib=rss_idle / 1024, rss_samples_kib=samples,
        rss_10_mib=at(10), rss_180_mib=at(window), rss_peak_mib=max(kib for _, kib in samples) / 1024,
        vmhwm_mib=hwm / 1024, slope_mib_min=slope(SLOPE_FROM), slope_late_mib_min=slope(window // 2),
        peak_at_s=peak_reached(samples),
        statements=statements,
        start_statements=sum(sum(s["start"].values()) for s in statements.values()),
        sending_statements=total_sending,
        per_batch=total_sending / batches if batches else float("nan"),
        per_batch_jobs=sum(statements["jobs"]["sending"].values()) / batches if batches else float("nan"),
        per_batch_users=sum(statements["users"]["sending"].values()) / batches if batches else float("nan"),
        syncs_per_batch=sum(s["syncs"] for s in statements.values()) / batches if batches else float("nan"),
        sink_messages=sent, achieved=(sent - 1) / span if span > 0 else float("nan"),
        first_message_s=arrivals[0][0] if arrivals else float("nan"),
        cpu_pct=100 * (cpu1 - cpu0) / (t1 - t0), sink_pings=sink.pings,
    )


MEDIANS = ["start_s", "rss_idle_mib", "rss_10_mib", "rss_180_mib", "rss_peak_mib", "vmhwm_mib", "slope_mib_min", "slope_late_mib_min",
           "peak_at_s",
           "per_batch", "per_batch_jobs", "per_batch_users", "syncs_per_batch", "start_statements", "batches",
           "achieved", "first_message_s", "cpu_pct", "recipient_count"]


def run(binary: Path, runs: int, scratch: Path, window: int = WINDOW) -> dict:
    """Measures `runs` times (each with its own `serve` and job database, memory sampled for
    `window` seconds); returns every run's raw figures and the medians. Everything started is stopped and dropped before it returns."""
    binary, scratch = Path(binary).resolve(), Path(scratch)
    if not binary.exists():
        raise FileNotFoundError(f"{binary} not found: run `cargo build --release` first")
    scratch.mkdir(parents=True, exist_ok=True)
    lab, sink = Lab(scratch), Sink(SECRET)
    try:
        users_db, insert_s = users_database(lab)
        results = []
        for number in range(1, runs + 1):
            print(f"scale: run {number}/{runs} ({window} s) ...", file=sys.stderr, flush=True)
            r = one_run(lab, binary, sink, users_db, number, window)
            print(f"  start {r['start_s']:.3f} s, {r['recipient_count']} recipients, RSS peak "
                  f"{r['rss_peak_mib']:.1f} MiB, slope {r['slope_mib_min']:+.3f} MiB/min, "
                  f"{r['per_batch']:.1f} statements/batch, {r['achieved']:.1f} msg/s",
                  file=sys.stderr, flush=True)
            results.append(r)
    finally:
        lab.stop()
        sink.close()
    return dict(users=USERS, domain=DOMAIN, rate=RATE, batch=BATCH, window_s=window, slope_from_s=SLOPE_FROM,
                insert_s=insert_s, job_db="a new one per run", users_db="one for all runs", runs=results,
                sink_problems=sink.problems,
                median={k: statistics.median(r[k] for r in results) for k in MEDIANS},
                targets=dict(start_s=TARGET_START_S, rss_mib=TARGET_RSS_MIB, slope_mib_min=TARGET_SLOPE))


# ---------------------------------------------------------------- report


def render(result: dict) -> str:
    runs, med, tg = result["runs"], result["median"], result["targets"]
    each = lambda key, fmt: ", ".join(format(r[key], fmt) for r in runs)
    met = lambda ok: "yes" if ok else "**no**"
    start_ok = all(r["start_s"] < tg["start_s"] for r in runs)
    rss_ok = all(r["rss_peak_mib"] < tg["rss_mib"] for r in runs)
    # Flat once warm: the first minutes include the pools' and the allocator's growth to their
    # working size, so the verdict is on the second half of the window; both slopes are shown.
    flat_ok = all(abs(r["slope_late_mib_min"]) <= tg["slope_mib_min"] for r in runs)
    w, n = result["window_s"], len(runs)
    lines = [
        HEADING, "",
        f"Method: {result['users']:,} accounts of `{result['domain']}` in ejabberd's PostgreSQL `users` table "
        f"(`new_sql_schema`, `[users] schema = \"ejabberd_new\"`), inserted with one `INSERT ... SELECT "
        f"generate_series` ({result['insert_s']:.0f} s with `VACUUM ANALYZE`), {result['users_db']}; the job "
        f"database is {result['job_db']}, empty before `serve` migrates it. `serve` reaches both databases "
        f"through the statement-counting proxies of `bench/cluster.py` and sends to a sink in the script "
        f"(an XEP-0114 server that answers the handshake and every ping barrier and counts messages; no XMPP "
        f"server). Each of the {n} run(s): a fresh `serve`, the wall time of the `startBroadcast` POST "
        f"({result['rate']} msg/s, ALL_USERS_IN_DOMAIN), then VmRSS of `serve` (`/proc/PID/status`) every "
        f"second for {w} s from the start; the slope is a least-squares line over {result['slope_from_s']}..{w} s. "
        f"Statements per batch = statements executed from the end of the start request to {w} s, divided by "
        f"the batches of {result['batch']:,} committed by then (`recipientsProcessed` from `getBroadcast`, "
        f"read after the count); the start request's own statements are counted apart. Then `abortBroadcast`.",
        "",
        f"| | target | median | runs | met |", "|---|---|---:|---|---|",
        f"| startBroadcast latency, s | < {tg['start_s']:g} | **{med['start_s']:.3f}** | {each('start_s', '.3f')} | "
        f"{met(start_ok)} |",
        f"| recipientCount | {result['users']:,} | {med['recipient_count']:,.0f} | {each('recipient_count', ',d')} | "
        f"{met(all(r['recipient_count'] == result['users'] for r in runs))} |",
        f"| RSS before the job, MiB | | {med['rss_idle_mib']:.1f} | {each('rss_idle_mib', '.1f')} | |",
        f"| RSS at 10 s, MiB | | {med['rss_10_mib']:.1f} | {each('rss_10_mib', '.1f')} | |",
        f"| RSS at {w} s, MiB | | {med['rss_180_mib']:.1f} | {each('rss_180_mib', '.1f')} | |",
        f"| RSS peak of the 1 s samples, MiB | < {tg['rss_mib']:g} | **{med['rss_peak_mib']:.1f}** | "
        f"{each('rss_peak_mib', '.1f')} | {met(rss_ok)} |",
        f"| VmHWM (kernel's peak) at {w} s, MiB | | {med['vmhwm_mib']:.1f} | {each('vmhwm_mib', '.1f')} | |",
        f"| RSS slope {result['slope_from_s']}..{w} s (warm-up included), MiB/min | | "
        f"{med['slope_mib_min']:+.3f} | {each('slope_mib_min', '+.3f')} | |",
        f"| RSS slope {w // 2}..{w} s, MiB/min | flat (\\|slope\\| ≤ {tg['slope_mib_min']:g}) | "
        f"**{med['slope_late_mib_min']:+.3f}** | {each('slope_late_mib_min', '+.3f')} | {met(flat_ok)} |",
        f"| RSS within 0.25 MiB of its peak from, s | | {med['peak_at_s']:.0f} | {each('peak_at_s', '.0f')} | |",
        f"| batches committed in {w} s | | {med['batches']:.0f} | {each('batches', 'd')} | |",
        f"| statements per batch, both databases | | **{med['per_batch']:.1f}** | {each('per_batch', '.1f')} | |",
        f"| — job database | | {med['per_batch_jobs']:.1f} | {each('per_batch_jobs', '.1f')} | |",
        f"| — users database | | {med['per_batch_users']:.1f} | {each('per_batch_users', '.1f')} | |",
        f"| round trips (Sync) per batch | | {med['syncs_per_batch']:.1f} | {each('syncs_per_batch', '.1f')} | |",
        f"| statements of the start request | | {med['start_statements']:.0f} | {each('start_statements', 'd')} | |",
        f"| start → first message at the sink, s | | {med['first_message_s']:.3f} | {each('first_message_s', '.3f')} | |",
        f"| achieved rate at the sink, msg/s | {result['rate']} | {med['achieved']:.1f} | {each('achieved', '.1f')} | |",
        f"| `serve` CPU over the window, % of a core | | {med['cpu_pct']:.1f} | {each('cpu_pct', '.1f')} | |",
        "",
        f"Targets: start < {tg['start_s']:g} s — {met(start_ok)}; RSS < {tg['rss_mib']:g} MiB — {met(rss_ok)}; "
        f"flat over {w // 2}..{w} s (\\|slope\\| ≤ {tg['slope_mib_min']:g} MiB/min, i.e. at most "
        f"{tg['slope_mib_min'] * result['users'] / result['rate'] / 60:.1f} MiB over the whole "
        f"{result['users'] / result['rate'] / 60:.0f}-minute job) — {met(flat_ok)}.",
        "",
        f"Statements by text (run {', '.join(str(r['run']) for r in runs)}; start request / from then to {w} s):",
        "", "| database | statement | start | sending | per batch (median) | per second (median) |",
        "|---|---|---|---|---:|---:|"]
    keys = sorted({(db, text) for r in runs for db, s in r["statements"].items()
                   for text in (*s["start"], *s["sending"])},
                  key=lambda k: (k[0], -statistics.median(r["statements"][k[0]]["sending"].get(k[1], 0) for r in runs)))
    for db, text in keys:
        short = re.sub(r"\s+", " ", text).strip()
        short = (short if len(short) <= 120 else short[:117] + "...").replace("|", "\\|")
        counts = lambda part: ", ".join(str(r["statements"][db][part].get(text, 0)) for r in runs)
        per = statistics.median(r["statements"][db]["sending"].get(text, 0) / r["batches"] if r["batches"] else 0
                                for r in runs)
        per_s = statistics.median(r["statements"][db]["sending"].get(text, 0) / (w - r["start_s"]) for r in runs)
        lines.append(f"| {db} | `{short}` | {counts('start')} | {counts('sending')} | {per:.2f} | {per_s:.3f} |")
    odd = [f"run {r['run']}: job {r['state_at_end']} at {w} s, {r['state_after_abort']} after the abort"
           for r in runs if r["state_at_end"] != "RUNNING" or r["state_after_abort"] != "ABORT_ADMIN"]
    if odd or result["sink_problems"]:
        lines += ["", "Problems: " + "; ".join(odd + result["sink_problems"])]
    return "\n".join(lines)


def interrupted(*_):
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1, help="runs, medians are reported (default 1)")
    p.add_argument("--binary", type=Path, default=ROOT / "target/release/xmpp-broadcast")
    p.add_argument("--scratch", type=Path, help="directory for configs and logs (default: a new temporary one)")
    p.add_argument("--window", type=int, default=WINDOW,
                   help=f"seconds of the job during which memory is sampled (default {WINDOW}; at most 990)")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, interrupted)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="scale-bench-"))
    print(f"scale: logs in {scratch}", file=sys.stderr, flush=True)
    result = run(args.binary, args.runs, scratch, args.window)  # on failure the logs stay for a look
    if not args.scratch:
        shutil.rmtree(scratch)
    print(render(result))


if __name__ == "__main__":
    main()
