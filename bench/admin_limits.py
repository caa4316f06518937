#!/usr/bin/env python3
"""Cost of the admin API's worst queries, and whether /health stays fast while they are hammered.

    python3 bench/admin_limits.py [--jobs 100] [--seconds 10] [--clients 4] [--binary PATH]
                                  [--no-write] [--keep]

Needs Python 3.11 (stdlib only), Prosody 0.12 and a release build (`cargo build --release`).
  1. Starts Prosody (SQLite) with 1001 accounts and `xmpp-broadcast serve` with a SQLite job
     database, as bench/rate.py does.
  2. Stores `--jobs` jobs (start, then abort), each with the longest body accepted (16,000
     characters of 4 bytes, or of 1 byte if the server refuses those).
  3. Times (median of 5) the worst query the limits accept, `getBroadcasts` of 100 jobs with
     every field, 11 times under 10 aliases (188 selections, the most the bounds allow with
     every field), and the refused nested-fragment queries (2^24 and 2^29 expansions).
  4. For `--seconds` each: `--clients` threads send one of those queries in a loop while /health
     is probed every 20 ms; reports the /health latency (median, 99th percentile, max) next to
     an idle baseline.
  5. Replaces its own section of BENCHMARKS.md (between the markers).
"""

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rate import (ADMIN_AUTH, DOMAIN, ROOT, Lab, git, logs_kept_on_failure, machine_facts,  # noqa: E402
                  replace_block, start_servers)

BEGIN, END = "<!-- BEGIN bench/admin_limits.py -->", "<!-- END bench/admin_limits.py -->"
JOB_FIELDS = ("id name domain messageSubject messageBody senderJid messageRate ownerNode createTimestamp "
              "startTimestamp stopTimestamp executionState abortionReason recipientGroup recipientCount "
              "recipientsProcessed")


def post(admin, body, timeout=120):
    """(status, bytes of the answer, seconds) of one GraphQL request."""
    token = base64.b64encode(":".join(ADMIN_AUTH).encode()).decode()
    req = urllib.request.Request(f"http://127.0.0.1:{admin}/api/graphql", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, data = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, data = err.code, err.read()
    return status, data, time.perf_counter() - started


def health(admin):
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/health", timeout=120) as resp:
        resp.read()
    return time.perf_counter() - started


def nested_fragments(depth):
    """The attack: `depth` fragments, each spreading the previous one twice."""
    lines = [f"query {{ broadcast {{ ...F{depth} }} }}",
             f'fragment F1 on BroadcastAdminQuery {{ getBroadcasts(domain: "{DOMAIN}") {{ id }} }}']
    lines += [f"fragment F{n} on BroadcastAdminQuery {{ ...F{n - 1} ...F{n - 1} }}" for n in range(2, depth + 1)]
    return "\n".join(lines)


def worst_accepted():
    lists = [f'a{n}: getBroadcasts(domain: "{DOMAIN}", limit: 100) {{ {JOB_FIELDS} }}' for n in range(10)]
    lists.append(f'getBroadcasts(domain: "{DOMAIN}", limit: 100) {{ {JOB_FIELDS} }}')
    return "{ broadcast { " + " ".join(lists) + " } }"


def store_jobs(admin, count):
    body = "😀" * 16000
    for n in range(count):
        start = ('mutation($b: String!) { broadcast { startBroadcast(name: "bench", domain: "%s", '
                 'messageSubject: "s", messageBody: $b, senderJid: "admin@%s", messageRate: 1, '
                 'recipientGroup: ALL_USERS_IN_DOMAIN) { ids } } }' % (DOMAIN, DOMAIN))
        status, data, _ = post(admin, {"query": start, "variables": {"b": body}})
        answer = json.loads(data)
        if answer.get("errors") and n == 0 and body[0] != "x":
            body = "x" * 16000  # the server bounds bytes too
            status, data, _ = post(admin, {"query": start, "variables": {"b": body}})
            answer = json.loads(data)
        if answer.get("errors"):
            raise RuntimeError(f"start: {status} {answer}")
        job = answer["data"]["broadcast"]["startBroadcast"]["ids"][0]
        abort = f'mutation {{ broadcast {{ abortBroadcast(domain: "{DOMAIN}", id: {job}) {{ ids }} }} }}'
        post(admin, {"query": abort})
    return len(body.encode())


def timed(admin, query, runs=5):
    results = [post(admin, {"query": query}) for _ in range(runs)]
    statuses = {status for status, _, _ in results}
    return {"status": "/".join(map(str, sorted(statuses))), "bytes": len(results[0][1]),
            "median_ms": statistics.median(t for _, _, t in results) * 1000,
            "max_ms": max(t for _, _, t in results) * 1000,
            "code": (json.loads(results[0][1]).get("errors") or [{}])[0].get("extensions", {}).get("code", "")}


def probe_health(admin, seconds, query=None, clients=0):
    """/health latencies (ms) while `clients` threads send `query` in a loop; and requests sent."""
    stop, sent = threading.Event(), [0]

    def hammer():
        while not stop.is_set():
            post(admin, {"query": query})
            sent[0] += 1
    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(0.2 if clients else 0)
    latencies, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        latencies.append(health(admin) * 1000)
        time.sleep(0.02)
    stop.set()
    for thread in threads:
        thread.join()
    latencies.sort()
    return {"median": statistics.median(latencies), "p99": latencies[int(len(latencies) * 0.99) - 1],
            "max": latencies[-1], "probes": len(latencies), "sent": sent[0]}


def report(args, body_bytes, times, probes):
    rows = ["| query | status | code | answer bytes | median ms | max ms |", "|---|---|---|---|---|---|"]
    rows += [f"| {name} | {t['status']} | {t['code'] or '—'} | {t['bytes']:,} | {t['median_ms']:.1f} | "
             f"{t['max_ms']:.1f} |" for name, t in times.items()]
    health_rows = ["| load | requests sent | /health median ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    health_rows += [f"| {name} | {p['sent']} | {p['median']:.2f} | {p['p99']:.2f} | {p['max']:.2f} |"
                    for name, p in probes.items()]
    return "\n".join([
        BEGIN,
        "### Results (this block is rewritten by `python3 bench/admin_limits.py`)",
        "",
        f"{git('log', '-1', '--format=%h %cs')}, release build; {machine_facts()}. Job database SQLite, "
        f"{args.jobs} stored jobs with a {body_bytes:,}-byte body each.",
        "",
        *rows,
        "",
        f"/health probed every 20 ms for {args.seconds} s, {args.clients} clients sending the query in a loop:",
        "",
        *health_rows,
        END])


async def run(lab, args):
    await start_servers(lab, args)
    body_bytes = store_jobs(lab.admin, args.jobs)
    queries = {"worst accepted: 11 × getBroadcasts(limit: 100), every field": worst_accepted(),
               "nested fragments, 2^24 expansions (refused)": nested_fragments(24),
               "nested fragments, 2^29 expansions (refused)": nested_fragments(29)}
    times = {name: timed(lab.admin, query) for name, query in queries.items()}
    probes = {"idle": probe_health(lab.admin, args.seconds)}
    for name, query in queries.items():
        if "2^24" not in name:
            probes[name] = probe_health(lab.admin, args.seconds, query, args.clients)
    return body_bytes, times, probes


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=100, help="jobs stored before measuring (default 100)")
    p.add_argument("--seconds", type=float, default=10, help="length of each /health probe (default 10)")
    p.add_argument("--clients", type=int, default=4, help="threads sending the query (default 4)")
    p.add_argument("--binary", type=Path, default=ROOT / "target/release/xmpp-broadcast")
    p.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args()
    args.binary = args.binary.resolve()
    if not args.binary.exists():
        sys.exit(f"{args.binary} not found: run `cargo build --release` first")
    lab = Lab(Path(tempfile.mkdtemp(prefix="admin-limits-")))
    with logs_kept_on_failure(lab.dir, args):
        try:
            body_bytes, times, probes = asyncio.run(run(lab, args))
        finally:
            lab.stop()
    section = report(args, body_bytes, times, probes)
    print("\n" + section)
    if not args.no_write:
        replace_block(ROOT / "BENCHMARKS.md", BEGIN, END, section)
        print(f"\nwritten to {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
