#!/usr/bin/env python3
"""Limits of xmpp-broadcast against a real ejabberd: rate accuracy, aggregate ceiling, CPU cost,
what operators do today; then the 1,000,000-user domain of bench/scale.py and the criterion
micro-benchmark of benches/stanza.rs.

    python3 bench/limits.py [--runs 3] [--sections rate,ceiling,cost,ops,scale,micro]
                            [--binary PATH] [--no-write] [--out FILE] [--keep]

Needs Python 3.11 (stdlib only), ejabberd 23.01 (Debian: `ejabberdctl`, `setpriv`), PostgreSQL on
127.0.0.1:5432 with trust auth for `postgres` (`psql`), and a release build.

Setup (sections rate, ceiling, cost, ops). A private ejabberd in a scratch directory on free
loopback ports (started with `setpriv` as user ejabberd so it inherits this shell's file limit),
its SQL database a fresh PostgreSQL database (`pg.new.sql`, `new_sql_schema: true`,
`auth_password_format: plain`), plaintext c2s, a XEP-0114 listener with `check_from: false`,
no mod_offline, no shapers, `max_fsm_queue` raised. Accounts are inserted with SQL (created a day
ago). `xmpp-broadcast serve` runs with its own fresh PostgreSQL job database and reads the users
with `schema = "ejabberd_new"`. Receivers: a separate process of this script (epoll, no asyncio)
logs accounts in over c2s (SASL PLAIN, bind, initial presence) and timestamps every `</message>`
when the bytes are read (CLOCK_MONOTONIC, shared with this process). The broadcast sender of each
domain is its first account (the API wants an existing account; an extra `admin` would be one
more recipient), so every account of the domain is a recipient and online.

  rate     rate.example, 10,000 accounts online. One unrecorded warm-up at 1000 msg/s, then for
           1, 10, 100, 1000 msg/s `--runs` broadcasts: the first N arrivals (N = 60 x rate, and
           10,000 at 1000 msg/s): achieved = (N-1)/(t_N - t_1) and a least-squares fit; the job is
           aborted if still RUNNING; the next run waits until arrivals stop. Beside it, once per
           round, a raw sender paced at 1000 msg/s to the same 10,000 (the path's floor).
  ceiling  rate.example logged out; 20 domains d01..d20.example x 900 accounts online. Per
           round (order alternates): 20 jobs at 1000 msg/s started concurrently; a raw sender (a
           second component, raw.rate.example, pre-built stanzas of the same shape) paced to
           20,000 msg/s on an absolute 1 ms schedule; the same unpaced. Aggregate =
           (total-1)/(last-first arrival) over all 20 domains.
  cost     CPU of the serve process (utime+stime from /proc/PID/stat and schedstat) from just
           before startBroadcast to the last arrival, per message delivered, from the 1000 msg/s
           rate runs and the ceiling runs (runs them if their sections were not selected), the raw
           sender's own CPU/msg beside it.
  ops      ops.example, 100 accounts online: a sequential `ejabberdctl send_message` loop vs one
           startBroadcast at 1000 msg/s and at 100 msg/s (the CLI's default): wall time from
           the first command to the last arrival, messages delivered, CPU.
  scale    `scale.run()` / `scale.render()` from bench/scale.py, if that file exists.
  micro    `cargo bench --bench stanza -- --noplot`, then the criterion estimates it wrote.

Before each measured run the script waits (up to 1 min) for a quiet machine and records the CPU
pressure (/proc/pressure/cpu "some") during the run. Results are printed and written into the
file given by --out (default BENCHMARKS.md) between this script's BEGIN/END markers. Everything it
starts is stopped on exit, Ctrl-C, SIGTERM or error; its databases are dropped unless --keep.
"""

import argparse
import asyncio
import datetime as dt
import glob
import hashlib
import json
import os
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from base64 import b64encode
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rate import (ADMIN_AUTH, ROOT, SECRET, Lab, component_connect, cpu_ns, cpu_pressure, cpu_ticks,  # noqa: E402
                  fit_rate, free_ports, git, graphql, logs_kept_on_failure, replace_block, wait_connected,
                  wait_quiet)

BEGIN, END = "<!-- BEGIN bench/limits.py -->", "<!-- END bench/limits.py -->"
SECTIONS = ["rate", "ceiling", "cost", "ops", "scale", "micro"]
RATE_DOMAIN, OPS_DOMAIN = "rate.example", "ops.example"
CEIL_DOMAINS = [f"d{i:02d}.example" for i in range(1, 21)]
USERS = {RATE_DOMAIN: [f"u{i:05d}" for i in range(1, 10001)],
         **{d: [f"u{i:04d}" for i in range(1, 901)] for d in CEIL_DOMAINS},
         OPS_DOMAIN: [f"u{i:03d}" for i in range(1, 101)]}
COMPONENT, RAW = "broadcast.rate.example", "raw.rate.example"  # under a served host: pings reach it
PASSWORD, SUBJECT, BODY = "pw", "Maintenance tonight", "The server restarts at 22:00 UTC."
RATES, CEIL_RATE = [1, 10, 100, 1000], 1000
PG = "postgres://postgres@127.0.0.1:5432"
# Logins in flight at once. ejabberd 23.01 (SQL auth on PostgreSQL) answered one login at a time
# in ~1 ms, but with 16-100 in flight its SASL answers took 0.13 s on average (idle CPU) and
# some logins stalled: one at a time is ~1000 logins/s here.
LOGIN_CONCURRENCY = 1


def sender(domain):
    return f"{USERS[domain][0]}@{domain}"


def stanza(domain, user, job=0):
    """The stanza xmpp-broadcast sends (src/xmpp/stanza.rs), for the raw sender."""
    mid = "xb-" + hashlib.sha1(f"{job}:{user}@{domain}".encode()).hexdigest()
    return (f"<message type='chat' from='{sender(domain)}' to='{user}@{domain}' id='{mid}'><subject>{SUBJECT}"
            f"</subject><body>{BODY}</body><origin-id xmlns='urn:xmpp:sid:0' id='{mid}'/></message>").encode()


def median(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


# ================================================================ receiver process (epoll)


class ReceiverProcess:
    """Runs in its own process (`--receiver PORT`): commands as JSON lines on stdin, replies on
    stdout. Holds every c2s session and counts `</message>` per session."""

    def __init__(self, port):
        self.port, self.ep = port, select.epoll()
        self.conns = {}  # fd -> [socket, user index, state, buffer]
        self.names, self.domains = [], []  # per user index
        self.counts, self.arrivals, self.last_arrival = [], [], 0.0
        self.run, self.first_by_domain = None, {}  # the armed measurement
        self.pending, self.logins, self.login_reply = [], 0, None
        self.cmd_buf = b""
        self.ep.register(0, select.EPOLLIN)

    def reply(self, obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    # ---- login state machine: 0 head sent, 1 auth sent, 2 head again, 3 bind sent, 4 online
    def head(self, domain):
        return (f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
                f"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>").encode()

    def start_login(self):
        idx = self.pending.pop()
        s = socket.create_connection(("127.0.0.1", self.port))
        s.setblocking(False)
        s.sendall(self.head(self.domains[idx]))
        self.conns[s.fileno()] = [s, idx, 0, b""]
        self.ep.register(s.fileno(), select.EPOLLIN)

    def login_step(self, c, data):
        c[3] += data
        buf, domain = c[3], self.domains[c[1]]
        if b"<failure" in buf or b"stream:error" in buf:
            raise RuntimeError(buf[-300:])
        steps = {0: (b"</stream:features>", lambda: b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism="
                     b"'PLAIN'>" + b64encode(f"\0{self.names[c[1]]}\0{PASSWORD}".encode()) + b"</auth>"),
                 1: (b"<success", lambda: self.head(domain)),
                 2: (b"</stream:features>", lambda: b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:"
                     b"xml:ns:xmpp-bind'><resource>bench</resource></bind></iq>"),
                 3: (b"</iq>", lambda: b"<presence/>")}
        token, nxt = steps[c[2]]
        if token in buf:
            c[0].sendall(nxt())
            c[2], c[3] = c[2] + 1, b""
            if c[2] == 4:
                self.login_done(True)

    def login_done(self, ok):
        self.logins += 1
        self.login_reply["failed"] += not ok
        if self.pending:
            self.start_login()
        if self.logins == self.login_reply["total"]:
            self.login_reply["s"] = time.monotonic() - self.login_reply["s"]
            self.reply(self.login_reply)
            self.login_reply = None

    def close(self, fd):
        c = self.conns.pop(fd)
        self.ep.unregister(fd)
        c[0].close()
        return c

    # ---- commands
    def command(self, cmd):
        op = cmd["op"]
        if op == "login":
            first = len(self.names)
            for domain, names in cmd["users"].items():
                self.names += names
                self.domains += [domain] * len(names)
            self.counts += [0] * (len(self.names) - len(self.counts))
            self.pending = list(range(len(self.names) - 1, first - 1, -1))
            self.logins, self.login_reply = 0, {"total": len(self.pending), "failed": 0, "s": time.monotonic()}
            for _ in range(min(LOGIN_CONCURRENCY, len(self.pending))):
                self.start_login()
        elif op == "logout":
            gone = set(cmd["domains"])
            for fd in [fd for fd, c in self.conns.items() if self.domains[c[1]] in gone]:
                c = self.close(fd)
                try:
                    c[0].send(b"</stream:stream>")
                except OSError:
                    pass
            self.reply({"online": len(self.conns)})
        elif op == "run":  # arm a measurement: expected arrivals, pids to sample at the last one
            self.counts = [0] * len(self.names)
            self.arrivals, self.first_by_domain = [], {}
            self.run = dict(cmd, t0=time.monotonic(), cpu0=sum(os.times()[:2]))
        elif op == "idle":  # reply once nothing arrived for cmd["quiet"] s (at most cmd["max"] s)
            self.run = dict(cmd, idle=True, t0=time.monotonic(), n0=len(self.arrivals))
        elif op == "exit":
            sys.exit(0)

    def sample(self, run):
        pids = run.get("pids", [])
        return dict(t=time.monotonic(), ticks=[cpu_ticks(p) for p in pids], ns=[cpu_ns(p) for p in pids],
                    pressure=cpu_pressure(), rx_cpu=sum(os.times()[:2]))

    def finish(self, complete):
        r, self.run = self.run, None
        if r.get("idle"):
            self.reply({"extra": len(self.arrivals) - r["n0"], "dups": sum(max(c - 1, 0) for c in self.counts),
                        "reached": sum(c > 0 for c in self.counts)})
            return
        end = self.sample(r)
        per_domain = {}
        for i, c in enumerate(self.counts):
            if c:
                per_domain[self.domains[i]] = per_domain.get(self.domains[i], 0) + c
        t0 = r["t0"]
        self.reply(dict(complete=complete, end=end, arrivals=[round(a - t0, 6) for a in self.arrivals], t0=t0,
                        rx_pct=100 * (end["rx_cpu"] - r["cpu0"]) / max(end["t"] - t0, 1e-9),
                        dups=sum(max(c - 1, 0) for c in self.counts), per_domain=per_domain,
                        first_by_domain=self.first_by_domain))

    def loop(self):
        while True:
            timeout = 0.2 if self.run else -1
            events = self.ep.poll(timeout)
            now = time.monotonic()
            for fd, _ in events:
                if fd == 0:
                    data = os.read(0, 1 << 20)
                    if not data:
                        return
                    self.cmd_buf += data
                    while b"\n" in self.cmd_buf:
                        line, self.cmd_buf = self.cmd_buf.split(b"\n", 1)
                        self.command(json.loads(line))
                    continue
                c = self.conns.get(fd)
                if c is None:
                    continue
                try:
                    data = c[0].recv(1 << 16)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    if c[2] < 4:
                        self.close(fd)
                        self.login_done(False)
                    else:
                        self.close(fd)
                    continue
                if c[2] < 4:
                    try:
                        self.login_step(c, data)
                    except RuntimeError as e:
                        print(f"login failed: {e}", file=sys.stderr)
                        self.close(fd)
                        self.login_done(False)
                    continue
                buf = c[3] + data
                c[3] = buf[-9:]  # shorter than b"</message>": a split tag is counted once
                if n := buf.count(b"</message>"):
                    self.counts[c[1]] += n
                    self.arrivals.extend([now] * n)
                    self.last_arrival = now
                    domain = self.domains[c[1]]
                    if domain not in self.first_by_domain:
                        self.first_by_domain[domain] = now - (self.run or {}).get("t0", now)
            r = self.run
            if r is None:
                continue
            if r.get("idle"):
                quiet_since = max(self.last_arrival, r["t0"])
                if now - quiet_since >= r["quiet"] or now - r["t0"] >= r["max"]:
                    self.finish(True)
            elif len(self.arrivals) >= r["expected"]:
                self.finish(True)
            elif now - max(self.last_arrival, r["t0"]) > r["stall"]:
                self.finish(False)


# ================================================================ raw sender process


def raw_sender_main(port, spec_path):
    """`--raw-sender PORT SPEC`: a second component that writes pre-built stanzas on an absolute
    schedule (`rate` msg/s, stanzas due by now written in one go) or as fast as TCP takes them
    (rate 0). Waits for a line on stdin to start; prints its own CPU time and the write span."""
    spec = json.loads(Path(spec_path).read_text())
    rate = spec["rate"]
    order = [(d, u) for row in zip(*[[(d, u) for u in spec["users"][d]] for d in spec["users"]]) for d, u in row]
    stanzas = [stanza(d, u, spec["job"]) for d, u in order]

    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"<stream:stream xmlns='jabber:component:accept' xmlns:stream="
                 f"'http://etherx.jabber.org/streams' to='{RAW}'>".encode())
    buf = b""
    while not (m := re.search(rb"\sid=['\"]([^'\"]+)['\"]", buf)):
        buf += sock.recv(4096)
    sock.sendall(f"<handshake>{hashlib.sha1(m.group(1) + SECRET.encode()).hexdigest()}</handshake>".encode())
    while b"<handshake/>" not in buf:
        if b"stream:error" in buf:
            raise SystemExit(f"handshake refused: {buf!r}")
        buf += sock.recv(4096)
    print("ready", flush=True)
    sys.stdin.readline()
    cpu0, t0 = time.process_time(), time.monotonic()
    n, i = len(stanzas), 0
    if rate == 0:
        while i < n:
            sock.sendall(b"".join(stanzas[i:i + 64]))
            i += 64
    else:
        while i < n:
            due = min(n, int((time.monotonic() - t0) * rate) + 1)
            if due > i:
                sock.sendall(b"".join(stanzas[i:due]))
                i = due
            else:
                time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
    cpu, span = time.process_time() - cpu0, time.monotonic() - t0
    print(json.dumps({"cpu_us": 1e6 * cpu / n, "write_s": span, "n": n}), flush=True)
    sys.stdin.readline()  # stay connected until told to go
    sock.sendall(b"</stream:stream>")
    sock.close()


# ================================================================ the lab (main process)


def psql(db, sql=None, file=None):
    argv = ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", db]
    argv += ["-f", str(file)] if file else ["-c", sql]
    subprocess.run(argv, check=True, capture_output=True, text=True)


class Limits:
    """ejabberd + xmpp-broadcast + the receiver process, and the measurements."""

    def __init__(self, lab, args):
        self.lab, self.args, self.dir = lab, args, lab.dir
        self.ej_db, self.job_db = f"xb_limits_ej_{os.getpid()}", f"xb_limits_jobs_{os.getpid()}"
        self.dbs, self.launcher, self.rx, self.warnings = [], None, None, []

    # ---- ejabberd
    def ctl(self):
        d = self.dir / "ej"
        return ["setpriv", "--reuid=ejabberd", "--regid=ejabberd", "--init-groups", "env", f"HOME={d / 'home'}",
                "ejabberdctl", "--config-dir", str(d), "--ctl-config", str(d / "ejabberdctl.cfg")]

    def beam_pid(self):
        try:
            return int((self.dir / "ej" / "ejabberd.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    async def start_ejabberd(self):
        d = self.dir / "ej"
        self.dir.chmod(0o755)  # mkdtemp's 0700 would keep the ejabberd user out
        for sub in ["logs", "spool", "home"]:
            (d / sub).mkdir(parents=True)
        for db in (self.ej_db, self.job_db):
            psql("test", f"CREATE DATABASE {db}")
            self.dbs.append(db)
        psql(self.ej_db, file="/usr/share/ejabberd/sql/pg.new.sql")
        rows = []
        for domain, names in USERS.items():
            width = len(names[0]) - 1
            rows.append(f"SELECT 'u' || lpad(g::text, {width}, '0'), '{domain}', '{PASSWORD}', "
                        f"(now() AT TIME ZONE 'UTC') - interval '1 day' FROM generate_series(1, {len(names)}) g")
        psql(self.ej_db, "INSERT INTO users (username, server_host, password, created_at) " + " UNION ALL ".join(rows))
        shutil.copy("/etc/ejabberd/inetrc", d / "inetrc")
        self.c2s, self.comp, dist, self.admin = free_ports(4)
        hosts = "\n".join(f"  - {h}" for h in USERS)
        (d / "ejabberd.yml").write_text(EJABBERD_YML.format(hosts=hosts, db=self.ej_db, c2s=self.c2s,
                                                            comp=self.comp, secret=SECRET, component=COMPONENT,
                                                            raw=RAW))
        (d / "ejabberdctl.cfg").write_text(
            f"ERLANG_NODE=xblimits{self.comp}@localhost\nERL_DIST_PORT={dist}\nINET_DIST_INTERFACE=127.0.0.1\n"
            f"EJABBERD_CONFIG_PATH={d / 'ejabberd.yml'}\nEJABBERD_PID_PATH={d / 'ejabberd.pid'}\n"
            f"EJABBERD_BYPASS_WARNINGS=true\nERL_OPTIONS=\"-env ERL_CRASH_DUMP_BYTES 0\"\n")
        subprocess.run(["chown", "-R", "ejabberd:ejabberd", str(d)], check=True)
        self.launcher = self.lab.start("ejabberd", self.ctl() + [
            "--config", str(d / "ejabberd.yml"), "--logs", str(d / "logs"), "--spool", str(d / "spool"), "foreground"])
        t = time.monotonic()
        while time.monotonic() - t < 90:
            if self.launcher.poll() is not None:
                raise RuntimeError(f"ejabberd exited: {(self.dir / 'ejabberd.out').read_text()[-3000:]}")
            try:
                _, w = await component_connect(self.comp, RAW)
                w.write(b"</stream:stream>")
                w.close()
                break
            except (OSError, RuntimeError, AttributeError, asyncio.TimeoutError):
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError("ejabberd did not accept a component handshake within 90 s")
        self.beam = self.beam_pid()
        print(f"ejabberd up in {time.monotonic() - t:.1f} s (beam {self.beam}, c2s {self.c2s}, component "
              f"{self.comp}); {sum(map(len, USERS.values()))} accounts in {self.ej_db}", flush=True)

    def stop_ejabberd(self):
        pid = self.beam_pid()
        if pid and self.launcher and self.launcher.poll() is None:
            try:
                os.kill(pid, signal.SIGTERM)
                self.launcher.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if self.launcher and self.launcher.poll() is None:
            try:
                os.killpg(self.launcher.pid, signal.SIGKILL)  # the launcher's own process group
            except OSError:
                pass
            self.launcher.wait()

    def stop_serve(self):
        serve = getattr(self, "serve", None)
        if serve and serve.poll() is None:
            serve.terminate()
            try:
                serve.wait(15)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()

    def drop_databases(self):
        for db in self.dbs:
            try:
                psql("test", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            except subprocess.CalledProcessError as e:
                print(f"could not drop {db}: {e.stderr}", file=sys.stderr)

    # ---- xmpp-broadcast
    async def start_serve(self):
        domains = "".join(f'[domains."{d}"]\n' for d in USERS)
        toml = self.dir / "component.toml"
        toml.write_text(SERVE_TOML.format(component=COMPONENT, secret=SECRET, comp=self.comp, pg=PG, jobs=self.job_db,
                                          ej=self.ej_db, admin=self.admin, auth=ADMIN_AUTH, domains=domains))
        self.serve = self.lab.start("serve", [str(self.args.binary), "serve", "--config", str(toml)])
        await wait_connected(self.admin, self.serve, self.dir / "serve.out")

    async def start_broadcast(self, domain, rate):
        q = (f'mutation {{ broadcast {{ startBroadcast(name: "limits {rate}", domain: "{domain}", '
             f'messageSubject: "{SUBJECT}", messageBody: "{BODY}", senderJid: "{sender(domain)}", '
             f'messageRate: {rate}, recipientGroup: ALL_USERS_IN_DOMAIN) {{ ids }} }} }}')
        return (await graphql(self.admin, q))["broadcast"]["startBroadcast"]["ids"][0]

    async def job(self, domain, job):
        q = (f'{{ broadcast {{ getBroadcast(domain: "{domain}", id: {job}) {{ executionState recipientCount '
             f'recipientsProcessed }} }} }}')
        return (await graphql(self.admin, q))["broadcast"]["getBroadcast"]

    async def settle(self, domain, job):
        """Aborts the job if it still runs, waits until it has left RUNNING; returns its state."""
        state = await self.job(domain, job)
        if state["executionState"] == "RUNNING":
            try:
                await graphql(self.admin, f'mutation {{ broadcast {{ abortBroadcast(domain: "{domain}", id: {job}) '
                                          f'{{ message }} }} }}')
            except RuntimeError as e:
                if "not_running" not in str(e):  # it finished meanwhile
                    raise
        for _ in range(300):
            if (state := await self.job(domain, job))["executionState"] != "RUNNING":
                return state
            await asyncio.sleep(0.1)
        raise RuntimeError(f"job {job} of {domain} still RUNNING 30 s after the abort")

    # ---- receiver process
    async def rx_call(self, cmd, reply=True):
        self.rx.stdin.write((json.dumps(cmd) + "\n").encode())
        self.rx.stdin.flush()
        if not reply:
            return None
        line = await asyncio.to_thread(self.rx.stdout.readline)
        if not line:
            raise RuntimeError(f"receiver process died: {(self.dir / 'receiver.err').read_text()[-2000:]}")
        return json.loads(line)

    def start_receiver(self):
        err = open(self.dir / "receiver.err", "wb")
        self.rx = subprocess.Popen([sys.executable, __file__, "--receiver", str(self.c2s)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        self.lab.procs.append(self.rx)

    async def login(self, domains):
        n = sum(len(USERS[d]) for d in domains)
        r = await self.rx_call({"op": "login", "users": {d: USERS[d] for d in domains}})
        if r["failed"]:
            raise RuntimeError(f"{r['failed']} of {n} logins failed: {(self.dir / 'receiver.err').read_text()[-1500:]}")
        print(f"  {n} clients of {', '.join(domains) if len(domains) < 3 else f'{len(domains)} domains'} online "
              f"in {r['s']:.1f} s ({n / r['s']:.0f}/s)", flush=True)

    async def logout(self, domains):
        r = await self.rx_call({"op": "logout", "domains": domains})
        for _ in range(600):  # wait until ejabberd has closed the sessions' sockets
            if len(os.listdir(f"/proc/{self.beam}/fd")) < r["online"] + 500:
                break
            await asyncio.sleep(0.1)
        print(f"  logged out {', '.join(domains) if len(domains) < 3 else f'{len(domains)} domains'}; "
              f"{r['online']} online, ejabberd holds {len(os.listdir(f'/proc/{self.beam}/fd'))} files", flush=True)

    async def idle(self):
        """Waits until no message arrived for 2 s (up to 60 s); returns {extra, dups, reached}."""
        return await self.rx_call({"op": "idle", "quiet": 2.0, "max": 60})

    # ---- one measurement
    def mark(self, pids):
        return dict(t=time.monotonic(), ticks=[cpu_ticks(p) for p in pids], ns=[cpu_ns(p) for p in pids],
                    pressure=cpu_pressure())

    async def measure(self, expected, pids, start, stall=30):
        """Arms the receivers, runs `start()` (which starts the sending), waits for `expected`
        arrivals; returns the receiver's reply with the start mark and derived figures."""
        await wait_quiet(30, 60)
        await self.rx_call({"op": "run", "expected": expected, "pids": pids, "stall": stall}, reply=False)
        t_mark = self.mark(pids)
        extra = await start()
        r = await asyncio.to_thread(self.rx.stdout.readline)
        if not r:
            raise RuntimeError("receiver process died")
        r = json.loads(r)
        arr = r["arrivals"][:expected]
        n = len(arr)
        end, wall = r["end"], r["end"]["t"] - t_mark["t"]
        out = dict(expected=expected, received=n, complete=r["complete"], dups=r["dups"],
                   achieved=(n - 1) / (arr[-1] - arr[0]) if n > 1 and arr[-1] > arr[0] else float("nan"),
                   fit=fit_rate(arr), wall=wall, rx_pct=r["rx_pct"],
                   pressure_pct=100 * (end["pressure"] - t_mark["pressure"]) / wall,
                   per_domain=r["per_domain"], first_by_domain=r["first_by_domain"],
                   first_s=(r["t0"] + arr[0] - t_mark["t"]) if arr else float("nan"),
                   span_s=arr[-1] - arr[0] if arr else float("nan"), extra=extra)
        for i, p in enumerate(pids):
            out[f"cpu{i}_us"] = 1e6 * (end["ticks"][i] - t_mark["ticks"][i]) / max(n, 1)
            out[f"cpu{i}_ns_us"] = 1e6 * (end["ns"][i] - t_mark["ns"][i]) / max(n, 1)
            out[f"cpu{i}_pct"] = 100 * (end["ns"][i] - t_mark["ns"][i]) / wall
        return out

    async def ours(self, domains, rate, expected, stall=30):
        """One broadcast per domain (started concurrently) at `rate`; measured at the receivers."""
        jobs = {}

        async def start():
            ids = await asyncio.gather(*(self.start_broadcast(d, rate) for d in domains))
            jobs.update(zip(domains, ids))
            return None

        r = await self.measure(expected, [self.serve.pid, self.beam], start, stall)
        states = [await self.settle(d, j) for d, j in jobs.items()]
        r.update(jobs=list(jobs.values()), states=sorted({s["executionState"] for s in states}),
                 processed=sum(s["recipientsProcessed"] for s in states),
                 recipients=sum(s["recipientCount"] for s in states))
        after = await self.idle()
        r.update(late=after["extra"], dups=after["dups"], reached=after["reached"])
        r["serve_us"], r["serve_ns_us"], r["ej_pct"] = r.pop("cpu0_us"), r.pop("cpu0_ns_us"), r.pop("cpu1_pct")
        return r

    async def raw(self, domains, rate, expected):
        """The raw sender, paced at `rate` (0: unpaced), to every account of `domains`."""
        spec = self.dir / "raw-spec.json"
        spec.write_text(json.dumps({"rate": rate, "job": 0, "users": {d: USERS[d] for d in domains}}))
        proc = subprocess.Popen([sys.executable, __file__, "--raw-sender", str(self.comp), str(spec)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.dir / "raw.err", "ab"),
                                start_new_session=True)
        self.lab.procs.append(proc)
        try:
            if (await asyncio.to_thread(proc.stdout.readline)).strip() != b"ready":
                raise RuntimeError(f"raw sender failed: {(self.dir / 'raw.err').read_text()[-1500:]}")

            async def start():
                proc.stdin.write(b"go\n")
                proc.stdin.flush()

            r = await self.measure(expected, [self.beam, proc.pid], start)
            line = await asyncio.to_thread(proc.stdout.readline)
            r.update(json.loads(line))  # cpu_us, write_s
            r["ej_pct"] = r.pop("cpu0_pct")
            proc.stdin.write(b"bye\n")
            proc.stdin.close()
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        after = await self.idle()
        r.update(late=after["extra"], dups=after["dups"], reached=after["reached"])
        return r

    # ---- sections
    async def rate_section(self, rates, runs):
        await self.login([RATE_DOMAIN])
        n_users = len(USERS[RATE_DOMAIN])
        print("rate: warm-up 1000 msg/s (not recorded)", flush=True)
        await self.ours([RATE_DOMAIN], 1000, n_users)
        results, raws = [], []
        for i in range(runs):
            for rate in rates:
                n = min(60 * rate, n_users) if rate < 1000 else n_users
                print(f"rate {rate} msg/s, run {i + 1}/{runs}: first {n} arrivals (~{n / rate:.0f} s) ...", flush=True)
                r = await self.ours([RATE_DOMAIN], rate, n, stall=max(30, 5 * 10 / rate))
                r["rate"] = rate
                print("  " + describe_rate(r), flush=True)
                results.append(r)
            print(f"rate: raw sender paced at 1000 msg/s, run {i + 1}/{runs} ...", flush=True)
            r = await self.raw([RATE_DOMAIN], 1000, n_users)
            print("  " + describe_raw(r), flush=True)
            raws.append(r)
        await self.logout([RATE_DOMAIN])
        return dict(results=results, raws=raws)

    async def ceiling_section(self, runs):
        await self.login(CEIL_DOMAINS)
        total = sum(len(USERS[d]) for d in CEIL_DOMAINS)
        rounds = []
        for i in range(runs):
            kinds = ["ours", "paced", "unpaced"] if i % 2 == 0 else ["paced", "unpaced", "ours"]
            rnd = {}
            for kind in kinds:
                print(f"ceiling round {i + 1}/{runs}: {kind} ...", flush=True)
                if kind == "ours":
                    r = await self.ours(CEIL_DOMAINS, CEIL_RATE, total)
                else:
                    r = await self.raw(CEIL_DOMAINS, CEIL_RATE * len(CEIL_DOMAINS) if kind == "paced" else 0, total)
                print("  " + (describe_rate(r) if kind == "ours" else describe_raw(r)), flush=True)
                rnd[kind] = r
            rounds.append(rnd)
        await self.logout(CEIL_DOMAINS)
        return dict(rounds=rounds, total=total)

    async def ops_section(self, runs):
        await self.login([OPS_DOMAIN])
        users = USERS[OPS_DOMAIN]
        out = {"ctl": [], "b1000": [], "b100": []}
        for i in range(runs):
            print(f"ops run {i + 1}/{runs}: ejabberdctl send_message loop over {len(users)} users ...", flush=True)

            def loop():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                failed = 0
                for u in users:
                    failed += subprocess.run(self.ctl() + ["send_message", "chat", sender(OPS_DOMAIN),
                                                           f"{u}@{OPS_DOMAIN}", SUBJECT, BODY],
                                             capture_output=True).returncode != 0
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                return dict(cmd_cpu_s=after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                            failed=failed)

            async def start():
                return await asyncio.to_thread(loop)

            r = await self.measure(len(users), [self.beam], start, stall=60)
            r.update(r.pop("extra"))
            r["ej_pct"] = r.pop("cpu0_pct")
            r.update(await self.idle())
            print("  " + describe_ops(r), flush=True)
            out["ctl"].append(r)
            for rate in (1000, 100):
                print(f"ops run {i + 1}/{runs}: one startBroadcast at {rate} msg/s ...", flush=True)
                r = await self.ours([OPS_DOMAIN], rate, len(users))
                print("  " + describe_ops(r), flush=True)
                out[f"b{rate}"].append(r)
        return out

    def log_warnings(self):
        lines = self.lab.log_lines("serve.out", r"\b(WARN|ERROR)\b")
        for f in sorted(glob.glob(str(self.dir / "ej" / "logs" / "*.log"))):
            text = Path(f).read_text(errors="replace")
            lines += [f"{Path(f).name}: {ln}" for ln in text.splitlines() if re.search(r"\[(error|warning)\]", ln)]
        return lines


EJABBERD_YML = """# Written by bench/limits.py
loglevel: warning
log_rotate_count: 0
hosts:
{hosts}
sql_type: pgsql
sql_server: 127.0.0.1
sql_port: 5432
sql_database: {db}
sql_username: postgres
sql_password: ""
sql_pool_size: 2  # one pool per host: 22 hosts x 2 connections (PostgreSQL allows 100)
new_sql_schema: true
auth_method: sql
auth_password_format: plain
auth_cache_size: 50000
default_db: sql
max_fsm_queue: 1000000
listen:
  -
    port: {c2s}
    ip: 127.0.0.1
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: none
    access: c2s
  -
    port: {comp}
    ip: 127.0.0.1
    module: ejabberd_service
    check_from: false
    shaper: none
    hosts:
      {component}:
        password: {secret}
      {raw}:
        password: {secret}
acl:
  local:
    user_regexp: ""
access_rules:
  c2s:
    allow: all
shaper_rules:
  max_user_sessions: 10
modules:
  mod_admin_extra: {{}}
"""

SERVE_TOML = """node_name = "limits1"
lease_time = 60
[component]
jid = "{component}"
secret = "{secret}"
server = "127.0.0.1:{comp}"
[database]
url = "{pg}/{jobs}"
[users]
schema = "ejabberd_new"
url = "{pg}/{ej}"
[admin]
listen = "127.0.0.1:{admin}"
username = "{auth[0]}"
password = "{auth[1]}"
{domains}"""


# ================================================================ text


def describe_rate(r):
    return (f"jobs {r['jobs']} {'/'.join(r['states'])}: {r['received']}/{r['expected']} measured "
            f"({r['reached']} recipients reached, {r['late']} arrived after, dups {r['dups']}), "
            f"achieved {r['achieved']:.2f} msg/s (fit {r['fit']:.2f}), first arrival after {r['first_s']:.3f} s, "
            f"serve {r['serve_us']:.1f} µs/msg (stat) {r['serve_ns_us']:.1f} µs/msg (schedstat), "
            f"ejabberd {r['ej_pct']:.0f} %, receivers {r['rx_pct']:.0f} %, CPU pressure {r['pressure_pct']:.1f} %")


def describe_raw(r):
    return (f"raw: {r['received']}/{r['expected']} (dups {r['dups']}, late {r['late']}), achieved "
            f"{r['achieved']:.2f} msg/s (fit {r['fit']:.2f}), writes took {r['write_s']:.3f} s, sender "
            f"{r['cpu_us']:.2f} µs/msg, ejabberd {r['ej_pct']:.0f} %, receivers {r['rx_pct']:.0f} %, "
            f"CPU pressure {r['pressure_pct']:.1f} %")


def describe_ops(r):
    what = (f"commands CPU {r['cmd_cpu_s']:.1f} s ({r['failed']} failed)" if "cmd_cpu_s" in r
            else f"serve CPU {r['serve_ns_us'] * r['received'] / 1e3:.1f} ms")
    return (f"{r['received']}/{r['expected']} delivered, wall {r['wall']:.2f} s (first arrival "
            f"{r['first_s']:.2f} s), {what}, ejabberd {r['ej_pct']:.1f} %, CPU pressure {r['pressure_pct']:.1f} %")


def runs_of(rs, key, fmt):
    return ", ".join(format(r[key], fmt) for r in rs)


def render_rate(res):
    lines = ["#### Rate accuracy at the receivers (rate.example, 10,000 accounts online)", "",
             "| requested msg/s | measured arrivals | achieved msg/s, median (runs) | error % | fit msg/s | "
             "first arrival after request, s | serve CPU µs/msg (stat / schedstat) | ejabberd % of a core | "
             "CPU pressure % |", "|---:|---:|---|---:|---:|---:|---|---:|---:|"]
    for rate in RATES:
        rs = [r for r in res["results"] if r["rate"] == rate]
        if not rs:
            continue
        a = median(r["achieved"] for r in rs)
        lines.append(f"| {rate} | {rs[0]['expected']} | **{a:.3f}** ({runs_of(rs, 'achieved', '.3f')}) | "
                     f"**{100 * (a - rate) / rate:+.2f}** | {median(r['fit'] for r in rs):.3f} | "
                     f"{median(r['first_s'] for r in rs):.3f} | {median(r['serve_us'] for r in rs):.1f} / "
                     f"{median(r['serve_ns_us'] for r in rs):.1f} | {median(r['ej_pct'] for r in rs):.0f} | "
                     f"{median(r['pressure_pct'] for r in rs):.1f} |")
    raws = res["raws"]
    if raws:
        a = median(r["achieved"] for r in raws)
        lines += ["", f"Raw sender paced at 1000 msg/s to the same 10,000 (the path without xmpp-broadcast): "
                      f"achieved {a:.3f} msg/s ({runs_of(raws, 'achieved', '.3f')}), error {(a - 1000) / 10:+.2f} %, "
                      f"fit {median(r['fit'] for r in raws):.3f}."]
    bad = [r for r in res["results"] if r["dups"] or not r["complete"]]
    lines += ["", "Target: within ±2 %. Delivery: " + (
        "no recipient got a message twice; every run reached its N arrivals." if not bad else
        "PROBLEMS — " + "; ".join(f"{r['rate']} msg/s: {describe_rate(r)}" for r in bad))]
    return lines


def render_ceiling(res):
    rounds = res["rounds"]
    get = lambda kind, key: [rnd[kind][key] for rnd in rounds]
    ours, paced, unpaced = get("ours", "achieved"), get("paced", "achieved"), get("unpaced", "achieved")
    ratio_p = [o / p for o, p in zip(ours, paced)]
    ratio_u = [o / u for o, u in zip(ours, unpaced)]
    fmt = lambda xs, f=".0f": ", ".join(format(x, f) for x in xs)
    lines = [f"#### Aggregate ceiling: 20 domains x 900 online accounts at {CEIL_RATE} msg/s each "
             f"(requested aggregate {CEIL_RATE * 20} msg/s, {res['total']} messages per run)", "",
             "| sender | aggregate msg/s, median (rounds) | fit msg/s | span first→last arrival, s | "
             "sender CPU µs/msg | ejabberd % of a core | receivers % | CPU pressure % |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for kind, label, cpu in (("ours", "xmpp-broadcast, 20 jobs started concurrently", "serve_ns_us"),
                             ("paced", f"raw sender paced to {CEIL_RATE * 20} msg/s (1 ms schedule)", "cpu_us"),
                             ("unpaced", "raw sender unpaced (path ceiling)", "cpu_us")):
        rs = [rnd[kind] for rnd in rounds]
        lines.append(f"| {label} | **{median(r['achieved'] for r in rs):.0f}** ({fmt(r['achieved'] for r in rs)}) | "
                     f"{median(r['fit'] for r in rs):.0f} | {median(r['span_s'] for r in rs):.3f} | "
                     f"{median(r[cpu] for r in rs):.2f} | {median(r['ej_pct'] for r in rs):.0f} | "
                     f"{median(r['rx_pct'] for r in rs):.0f} | {median(r['pressure_pct'] for r in rs):.1f} |")
    o = [rnd["ours"] for rnd in rounds]
    spread = [max(r["first_by_domain"].values()) - min(r["first_by_domain"].values()) for r in o]
    per_dom = [median(r["per_domain"].values()) for r in o]
    lines += ["", f"Ratio xmpp-broadcast / raw paced (same round): **{median(ratio_p):.3f}** ({fmt(ratio_p, '.3f')}); "
                  f"target ≥ 0.9. Ratio xmpp-broadcast / raw unpaced: **{median(ratio_u):.3f}** ({fmt(ratio_u, '.3f')}).",
              f"Spread of the 20 domains' first arrivals (concurrent starts): {median(spread):.3f} s "
              f"({fmt(spread, '.3f')}); messages per domain (median) {median(per_dom):.0f}; jobs ended "
              f"{'/'.join(sorted({s for r in o for s in r['states']}))}; duplicates "
              f"{sum(r['dups'] for rnd in rounds for r in rnd.values())}."]
    return lines


def render_cost(rate_res, ceil_res):
    lines = ["#### CPU per message of the serve process", "",
             "| measurement | messages | serve µs/msg, /proc/PID/stat, median (runs) | serve µs/msg, schedstat | "
             "raw sender µs/msg (same path) | CPU pressure % |", "|---|---:|---|---:|---:|---:|"]
    if rate_res:
        rs = [r for r in rate_res["results"] if r["rate"] == 1000]
        raw = median(r["cpu_us"] for r in rate_res["raws"])
        if rs:
            lines.append(f"| rate.example, 1000 msg/s, 10,000 online | {rs[0]['received']} | "
                         f"**{median(r['serve_us'] for r in rs):.1f}** ({runs_of(rs, 'serve_us', '.1f')}) | "
                         f"**{median(r['serve_ns_us'] for r in rs):.1f}** | {raw:.2f} (paced 1000 msg/s) | "
                         f"{median(r['pressure_pct'] for r in rs):.1f} |")
    if ceil_res:
        rs = [rnd["ours"] for rnd in ceil_res["rounds"]]
        raw = median(rnd["paced"]["cpu_us"] for rnd in ceil_res["rounds"])
        lines.append(f"| 20 domains x 1000 msg/s | {rs[0]['received']} | "
                     f"**{median(r['serve_us'] for r in rs):.1f}** ({runs_of(rs, 'serve_us', '.1f')}) | "
                     f"**{median(r['serve_ns_us'] for r in rs):.1f}** | {raw:.2f} (paced 20,000 msg/s) | "
                     f"{median(r['pressure_pct'] for r in rs):.1f} |")
    lines += ["", "Target: ≤ 2 µs/msg. The interval runs from just before startBroadcast to the last arrival, "
                  "so it includes the GraphQL request, the job-database writes, reading the recipients from "
                  "ejabberd's database, the pings after each batch and the kernel's loopback TCP work in `send`. "
                  "The raw sender's figure is its own CPU while writing pre-built stanzas."]
    return lines


def render_ops(res):
    lines = ["#### What operators do today vs xmpp-broadcast (ops.example, 100 accounts online)", "",
             "| method | delivered | wall s, first command → last arrival, median (runs) | msg/s | "
             "CPU of the commands / of serve | ejabberd % of a core |", "|---|---:|---|---:|---:|---:|"]
    for key, label in (("ctl", "`ejabberdctl send_message chat …` loop, one call per user"),
                       ("b1000", "one `startBroadcast`, messageRate 1000"),
                       ("b100", "one `startBroadcast`, messageRate 100 (the CLI's default)")):
        rs = res[key]
        w = median(r["wall"] for r in rs)
        cpu = (f"{median(r['cmd_cpu_s'] for r in rs):.1f} s" if key == "ctl"
               else f"{median(r['serve_ns_us'] * r['received'] for r in rs) / 1e3:.1f} ms")
        lines.append(f"| {label} | {median(r['received'] for r in rs):.0f}/{rs[0]['expected']} | **{w:.2f}** "
                     f"({runs_of(rs, 'wall', '.2f')}) | {median(r['received'] for r in rs) / w:.1f} | {cpu} | "
                     f"{median(r['ej_pct'] for r in rs):.1f} |")
    return lines


def machine_facts():
    run = lambda *argv: subprocess.run(argv, capture_output=True, text=True).stdout
    model = re.search(r"Model name:\s*(.+)", run("lscpu"))
    mem = run("free", "-h").splitlines()[1].split()
    ver = lambda pkg: run("dpkg-query", "-W", "-f=${Version}", pkg) or "?"
    return (f"{run('nproc').strip()} cores (`nproc`), {model.group(1) if model else '?'} (`lscpu`), memory {mem[1]} "
            f"total / {mem[6]} available (`free -h`), {run('uname', '-sr').strip()}, ejabberd {ver('ejabberd')} "
            f"(Erlang {ver('erlang-base')}), PostgreSQL {ver('postgresql-15')}, open files limit "
            f"{resource.getrlimit(resource.RLIMIT_NOFILE)[1]}")


def report(args, parts, warnings, timings):
    built, digest = args.binary_id
    binary = args.binary.relative_to(ROOT) if args.binary.is_relative_to(ROOT) else args.binary
    lines = [BEGIN, "### Results (this block is rewritten by `python3 bench/limits.py`)", "",
             f"* Date: {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
             f"* Command: `{shlex.join(['python3', 'bench/limits.py', *sys.argv[1:]])}`",
             f"* Binary: `{binary}` (sha256 `{digest}`), built {built:%Y-%m-%d %H:%M %Z}, repository at "
             f"`{git('rev-parse', '--short', 'HEAD')}`"
             f"{' with uncommitted changes' if git('status', '--porcelain') else ''} when the benchmark ran",
             f"* Machine: {machine_facts()}",
             f"* Runs: {args.runs} per measurement (medians shown, all runs in brackets); sections "
             f"{', '.join(args.sections)}; time per section: "
             + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()), ""]
    for part in parts:
        lines += part + [""]
    lines += ["Warnings/errors in serve's and ejabberd's logs: " + (f"{len(warnings)}:" if warnings else "none."),
              *[f"    {w[:300]}" for w in warnings[:20]], END]
    return "\n".join(lines)


def write_block(path, block):
    """Replaces this script's block of `path` (between the markers), or appends it."""
    replace_block(path, BEGIN, END, block)


# ================================================================ scale and micro


def scale_section(args, scratch):
    """The 1,000,000-user domain of bench/scale.py (its fragment has its own heading)."""
    import scale
    try:
        return [scale.render(scale.run(args.binary, args.runs, scratch))]
    except Exception:  # report it, do not lose the other sections
        traceback.print_exc()
        return [scale.HEADING, "", "FAILED: " + traceback.format_exc().strip().splitlines()[-1]]


def micro_section():
    title = ["#### Micro benchmarks (`cargo bench --bench stanza -- --noplot`)", ""]
    started = time.time()
    proc = subprocess.run(["cargo", "bench", "--bench", "stanza", "--", "--noplot"], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode:
        return title + [f"FAILED (exit {proc.returncode}):", "", "```", *(proc.stderr or proc.stdout).splitlines()[-15:],
                        "```"]
    rows = []
    base = ROOT / "target" / "criterion"
    for f in sorted(base.glob("**/new/estimates.json")):
        if f.stat().st_mtime < started:
            continue
        m = json.loads(f.read_text())["median"]
        ci = m["confidence_interval"]
        unit, div = ("µs", 1e3) if m["point_estimate"] >= 1e3 else ("ns", 1)
        bench_id = str(f.parent.parent.relative_to(base))
        rows.append(f"| `{bench_id}` | **{m['point_estimate'] / div:.3g}** {unit} | "
                    f"{ci['lower_bound'] / div:.3g} – {ci['upper_bound'] / div:.3g} {unit} "
                    f"({100 * ci['confidence_level']:.0f} %) |")
    if not rows:
        return title + ["cargo bench ran but wrote no `target/criterion/**/new/estimates.json`."]
    return title + ["| benchmark | median | confidence interval |", "|---|---:|---|", *rows]


# ================================================================ main


async def run_lab(lim, args, timings):
    sel = set(args.sections)
    rate_res = ceil_res = ops_res = None
    t = time.monotonic()
    await lim.start_ejabberd()
    await lim.start_serve()
    lim.start_receiver()
    timings["setup"] = time.monotonic() - t
    if sel & {"rate", "cost"}:
        t = time.monotonic()
        rate_res = await lim.rate_section(RATES if "rate" in sel else [1000], args.runs)
        timings["rate"] = time.monotonic() - t
    if sel & {"ceiling", "cost"}:
        t = time.monotonic()
        ceil_res = await lim.ceiling_section(args.runs)
        timings["ceiling"] = time.monotonic() - t
    if "ops" in sel:
        t = time.monotonic()
        ops_res = await lim.ops_section(args.runs)
        timings["ops"] = time.monotonic() - t
    parts = []
    if "rate" in sel:
        parts.append(render_rate(rate_res))
    if "ceiling" in sel:
        parts.append(render_ceiling(ceil_res))
    if "cost" in sel:
        parts.append(render_cost(rate_res, ceil_res))
    if "ops" in sel:
        parts.append(render_ops(ops_res))
    await lim.rx_call({"op": "exit"}, reply=False)
    return parts


def interrupted(*_):
    raise KeyboardInterrupt


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs (rounds) per measurement; medians reported (default 3)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--binary", type=Path, default=ROOT / "target/release/xmpp-broadcast")
    p.add_argument("--no-write", action="store_true", help="print the results only")
    p.add_argument("--out", type=Path, help="file to write the block into (default BENCHMARKS.md when every "
                   "section runs; a part of them is only printed unless --out is given, since the block "
                   "holds only what ran)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory and the databases")
    p.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    p.add_argument("--raw-sender", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.receiver:  # internal: the receiver process
        return ReceiverProcess(args.receiver).loop()
    if args.raw_sender:  # internal: the raw sender process
        return raw_sender_main(int(args.raw_sender[0]), args.raw_sender[1])
    args.sections = [s for s in args.sections.split(",") if s]
    if unknown := set(args.sections) - set(SECTIONS):
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if args.out is None:
        if set(args.sections) == set(SECTIONS):
            args.out = ROOT / "BENCHMARKS.md"
        else:
            args.no_write = True  # a partial block must not replace the recorded whole one
    args.binary = args.binary.resolve()
    if not args.binary.exists():
        sys.exit(f"{args.binary} not found: run `cargo build --release` first")
    args.binary_id = (dt.datetime.fromtimestamp(args.binary.stat().st_mtime).astimezone(),
                      hashlib.sha256(args.binary.read_bytes()).hexdigest()[:12])
    signal.signal(signal.SIGTERM, interrupted)
    lab = Lab(Path(tempfile.mkdtemp(prefix="limits-bench-")))
    lim, parts, warnings, timings = Limits(lab, args), [], [], {}
    with logs_kept_on_failure(lab.dir, args):
        if set(args.sections) & {"rate", "ceiling", "cost", "ops"}:
            if not shutil.which("ejabberdctl"):
                sys.exit("ejabberdctl not found: apt-get install ejabberd erlang-p1-pgsql")
            try:
                parts += asyncio.run(run_lab(lim, args, timings))
            finally:
                lim.stop_serve()  # before ejabberd: no reconnect warnings in its log
                lim.stop_ejabberd()
                lab.stop()
                warnings = lim.log_warnings()
                if not args.keep:
                    lim.drop_databases()
        if "scale" in args.sections:
            t = time.monotonic()
            (lab.dir / "scale").mkdir(exist_ok=True)
            parts.append(scale_section(args, lab.dir / "scale"))
            timings["scale"] = time.monotonic() - t
        if "micro" in args.sections:
            t = time.monotonic()
            parts.append(micro_section())
            timings["micro"] = time.monotonic() - t
    block = report(args, parts, warnings, timings)
    print("\n" + block)
    if not args.no_write:
        write_block(args.out, block)
        print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
