#!/usr/bin/env python3
"""Rate accuracy and CPU cost of xmpp-broadcast, measured at the receiving end.

    python3 bench/rate.py [--runs 3] [--rates 10,100,1000] [--max-pressure 20] [--no-control]
                          [--binary PATH] [--no-write] [--keep]

Needs Python 3.11 (stdlib only), Prosody 0.12 (`prosody`, `prosodyctl`) and a release build.
  1. Starts a private Prosody (SQLite storage, WAL) in a scratch directory on free loopback ports,
     creates u0001..u1000 plus admin (1001 accounts), and starts `xmpp-broadcast serve`.
  2. Logs every account in as a raw c2s client (one asyncio process, plaintext, SASL PLAIN, bind,
     initial presence), so every recipient is online, and timestamps every `</message>` received.
  3. For each rate, `--runs` times: starts a broadcast through the admin API and measures
       achieved rate = (messages received - 1) / (last arrival - first arrival)
     (plus a least-squares fit of arrival index on time, less sensitive to a late server pause),
     the job time the API reports (stopTimestamp - startTimestamp), and the CPU time of the
     component and of Prosody from just before the start request to the last arrival.
     Component CPU is read two ways: utime+stime from /proc/PID/stat (10 ms ticks) and the sum
     of the threads' run time in /proc/PID/task/*/schedstat (ns).
  4. Control, once per rate: a minimal single-threaded Python sender (this script re-run with
     --control-sender, on a second component) sends the same 1001 stanzas on a fixed schedule;
     its rate is measured the same way and its CPU per message is the floor for this machine.
  5. Prints the medians and replaces its own section of BENCHMARKS.md (between the BEGIN/END
     markers), leaving the rest of the file alone.
One unrecorded warm-up broadcast at 1000 msg/s runs first. Before each run the script waits (up to
2 min) for the machine to be quiet (/proc/stat), and it reports the CPU pressure during each run
(/proc/pressure/cpu "some": share of the time a runnable task waited for a CPU).
Everything it starts is stopped on exit, Ctrl-C, SIGTERM or error (logs are kept on error).

Flags: --runs N (default 3), --rates LIST (default 10,100,1000), --max-pressure P (a run with more
CPU pressure is discarded and redone, at most 3 attempts; default 20), --no-control (skip step 4),
--binary PATH (default target/release/xmpp-broadcast), --no-write (leave BENCHMARKS.md alone),
--keep (keep the scratch directory with the logs and databases).
"""

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import glob
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
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOMAIN, COMPONENT, SECRET, ADMIN_AUTH = "example.com", "broadcast.example.com", "s3cret", ("admin", "adminpw")
CONTROL = "control.example.com"  # the raw Python control sender's component
USERS = [f"u{i:04d}" for i in range(1, 1001)] + ["admin"]
BEGIN, END = "<!-- BEGIN bench/rate.py -->", "<!-- END bench/rate.py -->"
TICK = os.sysconf("SC_CLK_TCK")

PROSODY_CFG = """run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{d}/prosody.log" }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
c2s_interfaces = {{ "127.0.0.1" }}
component_ports = {{ {comp} }}
component_interfaces = {{ "127.0.0.1" }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "posix"; "admin_shell" }}
modules_disabled = {{ "s2s" }}
authentication = "internal_hashed"
storage = "sql"
sql = {{ driver = "SQLite3"; database = "prosody.sqlite" }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
certificates = "{d}/certs"
VirtualHost "{domain}"
Component "{component}"
  component_secret = "{secret}"
  validate_from_addresses = false
Component "{control}"
  component_secret = "{secret}"
  validate_from_addresses = false
"""

COMPONENT_TOML = """node_name = "bench1"
lease_time = 60
[component]
jid = "{component}"
secret = "{secret}"
server = "127.0.0.1:{comp}"
[database]
url = "sqlite://{d}/jobs.db"
[users]
schema = "prosody"
url = "sqlite://{d}/data/prosody.sqlite"
[admin]
listen = "127.0.0.1:{admin}"
username = "{auth[0]}"
password = "{auth[1]}"
[domains."{domain}"]
"""


# ---------------------------------------------------------------- processes and /proc


def free_ports(n):
    """n distinct free loopback TCP ports."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def cpu_ticks(pid):
    """utime+stime of a whole process, in seconds (10 ms resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_ns(pid):
    """Sum of the on-CPU time of the live threads of a process, in seconds (ns resolution)."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            total += int(Path(path).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # thread exited meanwhile
    return total / 1e9


def machine_busy():
    """(busy, total) jiffies of all cores from /proc/stat."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(v[:8]) - v[3] - v[4], sum(v[:8])


def cpu_pressure():
    """PSI: total seconds during which some runnable task waited for a CPU (contention)."""
    try:
        return int(re.search(r"^some .*total=(\d+)", Path("/proc/pressure/cpu").read_text()).group(1)) / 1e6
    except (OSError, AttributeError):
        return float("nan")


class Lab:
    """The processes this benchmark starts; stop() ends them all, newest first."""

    def __init__(self, scratch):
        self.dir, self.procs = scratch, []

    def start(self, name, argv):
        log = open(self.dir / f"{name}.out", "ab")  # a process started again under its name adds to its log
        proc = subprocess.Popen(argv, cwd=self.dir, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def log_lines(self, name, pattern):
        path = self.dir / name
        text = path.read_text(errors="replace") if path.exists() else ""
        return [f"{name}: {line}" for line in text.splitlines() if re.search(pattern, line)]

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


# ---------------------------------------------------------------- XMPP (raw sockets)


async def read_until(reader, buf, pattern, timeout=30):
    """Reads until the regex `pattern` matches the buffer; returns (buffer, match)."""
    async def loop(buf):
        while not (match := re.search(pattern, buf)):
            if b"<failure" in buf or b"stream:error" in buf:
                raise RuntimeError(f"XMPP error: {buf[-300:]!r}")
            data = await reader.read(65536)
            if not data:
                raise RuntimeError(f"connection closed, last data: {buf[-300:]!r}")
            buf += data
        return buf, match
    return await asyncio.wait_for(loop(buf), timeout)


async def component_connect(port, jid):
    """An XEP-0114 stream to Prosody, after a successful handshake: (reader, writer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"<stream:stream xmlns='jabber:component:accept' xmlns:stream="
                     f"'http://etherx.jabber.org/streams' to='{jid}'>".encode())
        head, sid = await read_until(reader, b"", rb"\sid=['\"]([^'\"]+)['\"]", timeout=5)
        digest = hashlib.sha1(sid.group(1) + SECRET.encode()).hexdigest()
        writer.write(f"<handshake>{digest}</handshake>".encode())
        await read_until(reader, head, rb"<handshake/>", timeout=5)
        return reader, writer
    except BaseException:
        writer.close()
        raise


async def component_ready(port):
    """True once Prosody accepts a component handshake (the readiness check)."""
    try:
        _, writer = await component_connect(port, CONTROL)
    except (OSError, RuntimeError, AttributeError, asyncio.TimeoutError):
        return False
    writer.write(b"</stream:stream>")
    writer.close()
    return True


async def control_sender(port, rate):
    """The control: a minimal single-threaded sender, one stanza per timer tick on a fixed
    schedule, same stanza shape as the component's. Prints its own CPU time per message."""
    _, writer = await component_connect(port, CONTROL)
    cpu, start = time.process_time(), time.monotonic()
    for i, user in enumerate(USERS):
        if (delay := start + i / rate - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        mid = "xb-" + hashlib.sha1(f"0:{user}@{DOMAIN}".encode()).hexdigest()
        writer.write(f"<message type='chat' from='admin@{DOMAIN}' to='{user}@{DOMAIN}' id='{mid}'><subject>s"
                     f"</subject><body>b</body><origin-id xmlns='urn:xmpp:sid:0' id='{mid}'/></message>".encode())
        await writer.drain()
    print(json.dumps({"cpu_us": 1e6 * (time.process_time() - cpu) / len(USERS)}), flush=True)
    writer.write(b"</stream:stream>")
    await writer.drain()


class Receivers:
    """All accounts logged in over c2s; counts `</message>` per client with arrival times."""

    def __init__(self):
        self.writers, self.tasks = [], []
        self.new_run(0, lambda: None)

    def new_run(self, expected, on_complete):
        self.arrivals, self.counts = [], [0] * len(USERS)
        self.expected, self.on_complete, self.disconnected = expected, on_complete, 0

    async def login(self, port, index, user, gate):
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head = (f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' "
                    f"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>").encode()
            writer.write(head)
            await read_until(reader, b"", rb"</stream:features>")
            plain = base64.b64encode(f"\0{user}\0pw".encode()).decode()
            writer.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>".encode())
            await read_until(reader, b"", rb"<success")
            writer.write(head)
            await read_until(reader, b"", rb"</stream:features>")
            writer.write(b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                         b"<resource>bench</resource></bind></iq>")
            await read_until(reader, b"", rb"</iq>")
            writer.write(b"<presence/>")
            self.writers.append(writer)
            self.tasks.append(asyncio.create_task(self.count(index, reader)))

    async def count(self, index, reader):
        tail = b""
        while data := await reader.read(65536):
            now = time.monotonic()
            buf = tail + data
            tail = buf[-9:]  # shorter than b"</message>": a split tag is counted exactly once
            if n := buf.count(b"</message>"):
                self.counts[index] += n
                self.arrivals.extend([now] * n)
                if len(self.arrivals) >= self.expected:
                    self.on_complete()
        self.disconnected += 1

    async def login_all(self, port):
        gate = asyncio.Semaphore(50)
        await asyncio.gather(*(self.login(port, i, u, gate) for i, u in enumerate(USERS)))

    async def close(self):
        """Ends every stream and waits (up to 5 s) for Prosody to close its side."""
        for w in self.writers:
            w.write(b"</stream:stream>")
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)
        for t in self.tasks:
            t.cancel()
        for w in self.writers:
            w.close()


# ---------------------------------------------------------------- admin API


def http(url, body=None):
    req = urllib.request.Request(url, data=body and json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    token = base64.b64encode(":".join(ADMIN_AUTH).encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


async def graphql(admin, query):
    out = await asyncio.to_thread(http, f"http://127.0.0.1:{admin}/api/graphql", {"query": query})
    if out.get("errors"):
        raise RuntimeError(f"GraphQL errors: {out['errors']}")
    return out["data"]


async def job_state(admin, job):
    fields = "executionState recipientsProcessed recipientCount startTimestamp stopTimestamp"
    data = await graphql(admin, f'{{ broadcast {{ getBroadcast(domain: "{DOMAIN}", id: {job}) {{ {fields} }} }} }}')
    return data["broadcast"]["getBroadcast"]


# ---------------------------------------------------------------- one measured broadcast


async def wait_quiet(limit_pct=30, max_wait=120):
    """Waits until the whole machine is below limit_pct (of one core) for one second."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        b0, t0 = machine_busy()
        await asyncio.sleep(1)
        b1, t1 = machine_busy()
        if 100 * os.cpu_count() * (b1 - b0) / max(t1 - t0, 1) < limit_pct:
            return
    print("  (machine still busy after 2 min; measuring anyway)", flush=True)


async def broadcast(lab, rx, rate):
    """Runs one broadcast at `rate`; returns its measurements."""
    await wait_quiet()
    loop, done, marks = asyncio.get_running_loop(), asyncio.Event(), {}

    def sample(key):
        marks[key] = (time.monotonic(), cpu_ticks(lab.serve.pid), cpu_ns(lab.serve.pid),
                      cpu_ticks(lab.prosody.pid), time.process_time(), cpu_pressure())

    def complete():
        if "end" not in marks:
            sample("end")
            loop.call_soon(done.set)

    rx.new_run(len(USERS), complete)
    sample("start")
    data = await graphql(lab.admin, f'mutation {{ broadcast {{ startBroadcast(name: "bench {rate}", '
                                    f'domain: "{DOMAIN}", messageSubject: "s", messageBody: "b", '
                                    f'senderJid: "admin@{DOMAIN}", messageRate: {rate}, '
                                    f"recipientGroup: ALL_USERS_IN_DOMAIN) {{ message ids }} }} }}")
    job = data["broadcast"]["startBroadcast"]["ids"][0]
    seen, still_since = -1, time.monotonic()
    while not done.is_set():  # no API polling while messages flow: it would cost component CPU
        try:
            await asyncio.wait_for(done.wait(), 5)
        except asyncio.TimeoutError:
            if len(rx.arrivals) != seen:
                seen, still_since = len(rx.arrivals), time.monotonic()
            elif time.monotonic() - still_since > 15:  # stalled: has the job ended, or given up?
                state = (await job_state(lab.admin, job))["executionState"]
                if state != "RUNNING" or time.monotonic() - still_since > 120:
                    print(f"  incomplete: job {state}, {len(rx.arrivals)} of {len(USERS)} received", flush=True)
                    if not rx.arrivals:
                        raise RuntimeError(f"no message arrived for job {job} ({state})")
                    complete()
                    await done.wait()
    for _ in range(600):
        state = await job_state(lab.admin, job)
        if state["executionState"] != "RUNNING":
            break
        await asyncio.sleep(0.1)
    (t0, ct0, cn0, pt0, st0, ps0), (t1, ct1, cn1, pt1, st1, ps1) = marks["start"], marks["end"]
    n, span = len(rx.arrivals), rx.arrivals[-1] - rx.arrivals[0]
    gaps = sorted(b - a for a, b in zip(rx.arrivals, rx.arrivals[1:]))
    wall = t1 - t0
    stamp = lambda s: dt.datetime.fromisoformat(s) if s else None
    start, stop = stamp(state["startTimestamp"]), stamp(state["stopTimestamp"])
    return dict(rate=rate, job=job, state=state["executionState"], received=n,
                recipients=state["recipientCount"], processed=state["recipientsProcessed"],
                missing=sum(c == 0 for c in rx.counts), dups=sum(max(c - 1, 0) for c in rx.counts),
                achieved=(n - 1) / span if span > 0 else float("nan"), fit=fit_rate(rx.arrivals),
                gap_ms=1e3 * gaps[len(gaps) // 2] if gaps else 0, max_gap_ms=1e3 * gaps[-1] if gaps else 0,
                job_s=(stop - start).total_seconds() if start and stop else float("nan"),
                comp_us=1e6 * (ct1 - ct0) / n, comp_ns_us=1e6 * (cn1 - cn0) / n,
                prosody_pct=100 * (pt1 - pt0) / wall, bench_pct=100 * (st1 - st0) / wall,
                pressure_pct=100 * (ps1 - ps0) / wall)


async def control(lab, rx, rate):
    """The same measurement at the receivers with the control sender in place of the component."""
    await wait_quiet()
    loop, done = asyncio.get_running_loop(), asyncio.Event()
    marks = [(time.monotonic(), cpu_pressure())]

    def complete():
        marks.append((time.monotonic(), cpu_pressure()))
        loop.call_soon(done.set)

    rx.new_run(len(USERS), complete)
    argv = [sys.executable, __file__, "--control-sender", str(lab.comp), str(rate)]
    proc = lab.start(f"control-{rate}", argv)
    while proc.poll() is None:
        await asyncio.sleep(0.2)
    out = (lab.dir / f"control-{rate}.out").read_text()
    if proc.returncode:
        raise RuntimeError(f"control sender failed: {out[-2000:]}")
    await asyncio.wait_for(done.wait(), 30)
    achieved = (len(rx.arrivals) - 1) / (rx.arrivals[-1] - rx.arrivals[0])
    (t0, p0), (t1, p1) = marks
    return dict(achieved=achieved, fit=fit_rate(rx.arrivals), pressure_pct=100 * (p1 - p0) / (t1 - t0),
                cpu_us=json.loads(out.splitlines()[-1])["cpu_us"])


def fit_rate(arrivals):
    """Messages per second as the slope of a least-squares line through (arrival time, index):
    unlike the end points, barely moved by a server pause that happens to hit the last message."""
    if len(arrivals) < 3:
        return float("nan")
    return statistics.linear_regression(arrivals, range(len(arrivals))).slope


def describe_control(c):
    return (f"control sender: achieved {c['achieved']:.2f} msg/s (fit {c['fit']:.2f}), "
            f"{c['cpu_us']:.1f} µs/msg, CPU pressure {c['pressure_pct']:.1f} %")


def describe(r):
    return (f"job {r['job']} {r['state']}: {r['received']}/{r['recipients']} received "
            f"(missing {r['missing']}, dup {r['dups']}), achieved {r['achieved']:.2f} msg/s "
            f"(fit {r['fit']:.2f}), gap median {r['gap_ms']:.2f} ms max {r['max_gap_ms']:.1f} ms, "
            f"API job time {r['job_s']:.0f} s, component {r['comp_us']:.1f} µs/msg (stat) "
            f"{r['comp_ns_us']:.1f} µs/msg (schedstat), Prosody {r['prosody_pct']:.1f} %, "
            f"receivers {r['bench_pct']:.1f} %, CPU pressure {r['pressure_pct']:.1f} %")


# ---------------------------------------------------------------- report


def machine_facts():
    run = lambda *argv: subprocess.run(argv, capture_output=True, text=True).stdout
    model = re.search(r"Model name:\s*(.+)", run("lscpu"))
    mem = run("free", "-h").splitlines()[1].split()  # Mem: total used free shared buff/cache available
    prosody = run("dpkg-query", "-W", "-f=${Version}", "prosody") or "?"
    return (f"{run('nproc').strip()} cores (`nproc`), {model.group(1) if model else '?'} (`lscpu`), "
            f"memory {mem[1]} total / {mem[6]} available (`free -h`), {run('uname', '-sr').strip()}, "
            f"Prosody {prosody} with SQLite storage in WAL mode")


def git(*argv):
    return subprocess.run(["git", *argv], capture_output=True, text=True, cwd=ROOT).stdout.strip()


def report(results, controls, args, warnings):
    """The Markdown section with the medians, the machine and the method's parameters."""
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    binary = args.binary.relative_to(ROOT) if args.binary.is_relative_to(ROOT) else args.binary
    built, digest = args.binary_id
    lines = [BEGIN, "### Results (this block is rewritten by `python3 bench/rate.py`)", "",
             f"* Date: {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
             f"* Command: `{shlex.join(['python3', 'bench/rate.py', *sys.argv[1:]])}`",
             f"* Binary: `{binary}` (sha256 `{digest}`), built {built:%Y-%m-%d %H:%M %Z}, "
             f"repository at `{git('rev-parse', '--short', 'HEAD')}`"
             f"{' with uncommitted changes' if git('status', '--porcelain') else ''} when the benchmark ran",
             f"* Machine: {machine_facts()}",
             f"* Recipients: {len(USERS)} accounts, all online; {args.runs} run(s) per rate, medians shown",
             "",
             "| requested msg/s | achieved msg/s, median (runs) | error % | achieved, fit | API job time, s | "
             "component CPU µs/msg, /proc/PID/stat (runs) | component CPU µs/msg, schedstat | "
             "Prosody CPU % of a core | CPU pressure % | control sender: msg/s (fit), µs/msg |",
             "|---:|---|---:|---:|---:|---|---:|---:|---:|---|"]
    for rate in args.rates:
        rs = [r for r in results if r["rate"] == rate and not r.get("discarded")]
        runs = lambda k, fmt: ", ".join(format(r[k], fmt) for r in rs)
        a, c = med(rs, "achieved"), controls.get(rate)
        lines.append(
            f"| {rate} | **{a:.2f}** ({runs('achieved', '.2f')}) | {100 * (a - rate) / rate:+.2f} | "
            f"{med(rs, 'fit'):.2f} | {med(rs, 'job_s'):.0f} | "
            f"**{med(rs, 'comp_us'):.1f}** ({runs('comp_us', '.1f')}) | {med(rs, 'comp_ns_us'):.1f} | "
            f"{med(rs, 'prosody_pct'):.1f} | {med(rs, 'pressure_pct'):.1f} | "
            + (f"{c['achieved']:.2f} ({c['fit']:.2f}), {c['cpu_us']:.1f} |" if c else "— |"))
    bad = [r for r in results if r["missing"] or r["dups"] or r["state"] != "FINISHED"
           or not r["received"] == r["recipients"] == r["processed"]]
    delivery = ("every run delivered exactly one message to every recipient and ended FINISHED." if not bad
                else "PROBLEMS — " + "; ".join(describe(r) for r in bad))
    mark = lambda r: ("(discarded: disturbed) " if r.get("discarded")
                      else "(kept although disturbed) " if r.get("disturbed") else "")
    lines += ["", f"Delivery: {delivery}", "",
              "Warnings/errors in the component's and Prosody's logs: "
              + (f"{len(warnings)}:" if warnings else "none."),
              *[f"    {w}" for w in warnings[:20]],
              "", "<details><summary>All runs</summary>", "",
              *[f"* {r['rate']} msg/s — {mark(r)}{describe(r)}" for r in results],
              *[f"* {rate} msg/s — {describe_control(c)}" for rate, c in controls.items()],
              "", "</details>", END]
    return "\n".join(lines)


def replace_block(path, begin, end, block):
    """Puts `block` (which starts with `begin` and ends with `end`) in place of what is between
    those markers in the file at `path`, or appends it when the markers are not there yet."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def write_section(section):
    """Replaces this script's section of BENCHMARKS.md (between the markers), or appends it."""
    replace_block(ROOT / "BENCHMARKS.md", BEGIN, END, section)


@contextlib.contextmanager
def logs_kept_on_failure(scratch, args):
    """Runs a benchmark's body (which stops what it started, whatever happens); on Ctrl-C or
    an error keeps the scratch directory and says where, otherwise removes it unless --keep."""
    try:
        yield
    except KeyboardInterrupt:
        args.keep = True
        sys.exit(f"interrupted; everything started was stopped; logs kept in {scratch}")
    except BaseException:
        print(f"failed; everything started was stopped; logs kept in {scratch}", file=sys.stderr)
        args.keep = True
        raise
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


async def wait_connected(admin_port, process, output):
    """Waits until `serve` (the `process`, logging to `output`) says on /health that it is
    connected to the XMPP server and its job database is up; raises if it exits or takes more
    than 30 s."""
    for _ in range(300):
        try:
            health = await asyncio.to_thread(http, f"http://127.0.0.1:{admin_port}/health")
            if health.get("xmpp") == "connected" and health.get("status") == "ok":
                return
        except OSError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"xmpp-broadcast exited: {output.read_text()[-2000:]}")
        await asyncio.sleep(0.1)
    raise RuntimeError("xmpp-broadcast /health did not report xmpp connected and status ok within 30 s")


# ---------------------------------------------------------------- main


async def start_servers(lab, args):
    """Prosody with 1001 accounts, then xmpp-broadcast connected to it; returns the c2s port."""
    d = lab.dir
    c2s, comp, lab.admin = free_ports(3)
    (d / "data").mkdir()
    (d / "certs").mkdir()
    cfg = d / "prosody.cfg.lua"
    cfg.write_text(PROSODY_CFG.format(d=d, c2s=c2s, comp=comp, domain=DOMAIN, component=COMPONENT, control=CONTROL,
                                      secret=SECRET))
    lab.comp = comp
    lab.prosody = lab.start("prosody", ["prosody", "--config", str(cfg), "-F"])
    for _ in range(200):
        if await component_ready(comp):
            break
        if lab.prosody.poll() is not None:
            raise RuntimeError(f"prosody exited: {(d / 'prosody.out').read_text()[-2000:]}")
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError("prosody did not accept the component handshake within 10 s")
    with sqlite3.connect(d / "data" / "prosody.sqlite", timeout=10) as db:
        assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    print(f"prosody up (c2s {c2s}, component {comp}); creating {len(USERS)} accounts ...", flush=True)
    lua = ('>local um=require"core.usermanager"; for i=1,1000 do um.create_user(string.format("u%04d",i),"pw",'
           f'"{DOMAIN}") end; um.create_user("admin","pw","{DOMAIN}"); return 1')
    subprocess.run(["prosodyctl", "--config", str(cfg), "shell", lua], check=True, capture_output=True, timeout=300)
    toml = d / "component.toml"
    toml.write_text(COMPONENT_TOML.format(d=d, comp=comp, admin=lab.admin, domain=DOMAIN, component=COMPONENT,
                                          secret=SECRET, auth=ADMIN_AUTH))
    lab.serve = lab.start("serve", [str(args.binary), "serve", "--config", str(toml)])
    await wait_connected(lab.admin, lab.serve, d / "serve.out")
    return c2s


async def run(lab, args):
    """Everything: servers, receivers, warm-up, the measured runs; returns (results, controls)."""
    c2s = await start_servers(lab, args)
    rx = Receivers()
    try:
        t = time.monotonic()
        await rx.login_all(c2s)
        print(f"component connected; {len(USERS)} clients online in {time.monotonic() - t:.1f} s", flush=True)
        print("warm-up: 1000 msg/s (not recorded)", flush=True)
        await broadcast(lab, rx, 1000)
        results, controls = [], {}
        for rate in args.rates:
            for i in range(args.runs):
                print(f"rate {rate} msg/s, run {i + 1}/{args.runs} (~{len(USERS) / rate:.0f} s) ...", flush=True)
                results += await undisturbed(lambda: broadcast(lab, rx, rate), args.max_pressure, describe)
                if rx.disconnected:
                    raise RuntimeError(f"{rx.disconnected} clients were disconnected")
            if not args.no_control:
                print(f"rate {rate} msg/s, control sender ...", flush=True)
                controls[rate] = (await undisturbed(lambda: control(lab, rx, rate), args.max_pressure,
                                                    describe_control))[-1]
        return results, controls
    finally:
        await rx.close()


async def undisturbed(measure, max_pressure, show, attempts=3):
    """Repeats a measurement while other work disturbed it (CPU pressure above max_pressure %),
    at most `attempts` times; returns every attempt, the discarded ones marked."""
    done = []
    for attempt in range(attempts):
        r = await measure()
        print("  " + show(r), flush=True)
        done.append(r)
        if r["pressure_pct"] <= max_pressure:
            break
        if attempt < attempts - 1:
            r["discarded"] = True
            print(f"  discarded (CPU pressure {r['pressure_pct']:.1f} % > {max_pressure} %), measuring again", flush=True)
        else:
            r["disturbed"] = True
            print(f"  kept although disturbed: {attempts} attempts were", flush=True)
    return done


def interrupted(*_):
    raise KeyboardInterrupt  # SIGTERM: stop everything like Ctrl-C does


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs per rate; medians are reported (default 3)")
    p.add_argument("--rates", default="10,100,1000", help="comma-separated msg/s, 1..1000 (default 10,100,1000)")
    p.add_argument("--binary", type=Path, default=ROOT / "target/release/xmpp-broadcast",
                   help="the binary to measure (default target/release/xmpp-broadcast)")
    p.add_argument("--no-write", action="store_true", help="print the results only, leave BENCHMARKS.md alone")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, databases)")
    p.add_argument("--no-control", action="store_true", help="skip the control sender runs")
    p.add_argument("--max-pressure", type=float, default=20,
                   help="redo a run (up to 2 times) when CPU pressure exceeded this %% (default 20)")
    p.add_argument("--control-sender", nargs=2, type=int, metavar=("PORT", "RATE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.control_sender:  # internal: this script re-runs itself as the control sender
        return asyncio.run(control_sender(*args.control_sender))
    args.rates = [int(x) for x in args.rates.split(",")]
    args.binary = args.binary.resolve()
    if not args.binary.exists():
        sys.exit(f"{args.binary} not found: run `cargo build --release` first")
    # what the measured process runs, even if the file is rebuilt meanwhile
    args.binary_id = (dt.datetime.fromtimestamp(args.binary.stat().st_mtime).astimezone(),
                      hashlib.sha256(args.binary.read_bytes()).hexdigest()[:12])
    signal.signal(signal.SIGTERM, interrupted)
    lab = Lab(Path(tempfile.mkdtemp(prefix="rate-bench-")))
    with logs_kept_on_failure(lab.dir, args):
        try:
            results, controls = asyncio.run(run(lab, args))
        finally:
            lab.stop()
            warnings = lab.log_lines("serve.out", r"\b(WARN|ERROR)\b") + [
                line for line in lab.log_lines("prosody.log", r"\t(warn|error)\t")
                if "Received SIGTERM" not in line]  # that one is our own stop
    section = report(results, controls, args, warnings)
    print("\n" + section)
    if not args.no_write:
        write_section(section)
        print(f"\nwritten to {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
