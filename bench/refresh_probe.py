#!/usr/bin/env python3
"""Where a refresh's time goes: POST /auth/refresh alone, with the figures that explain it.

Usage: bench/refresh_probe.py BINARY [ROUNDS=3] [CONNECTIONS=8]   (BACKEND=sqlite for SQLite)

Starts the release server as bench/http_bench.py does (same settings, PostgreSQL at
BENCH_DATABASE_URL), gives each connection its own session, and runs ROUNDS rounds of DURATION
seconds, each from fresh chains. Per round it prints requests/s and p50/p99 (wrk), and from the
server's /metrics and /proc:

  batch      rotations per batch statement (PostgreSQL group commit)
  busy       share of the round the rotation worker spent running batches; near 100 % the
             node's refreshes queue for its one commit stream, and only a cheaper or larger
             batch raises the rate
  cpu/req    CPU microseconds per refresh of the server, of all PostgreSQL processes and of wrk

CPU time per request moves with the machine's speed as much as with the code on a shared box:
compare two binaries in alternating rounds, not across minutes.
"""
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import http_bench as hb  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(match):
    """User+system ticks of every process whose command name `match` accepts."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if match(pid, name):
            total += int(rest[11]) + int(rest[12])
    return total


def counters():
    with urllib.request.urlopen(f"http://127.0.0.1:{hb.PORT}/metrics") as r:
        text = r.read().decode()
    out = {}
    for name in ("statements", "rotations", "busy_microseconds"):
        m = re.search(rf"^fraise_refresh_batch_{name}_total (\d+)", text, re.M)
        out[name] = int(m.group(1)) if m else 0
    return out


def main():
    binary = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    pg = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    postgres = os.environ.get("BACKEND", "postgres") == "postgres"
    data = tempfile.mkdtemp(prefix="fraise-probe-")
    schema = f"probe_{os.getpid()}"
    server = hb.Server(binary, hb.server_env("postgres" if postgres else "sqlite", data, pg, schema))
    me = str(server.proc.pid)
    processes = {
        "server": lambda pid, name: pid == me,
        "postgres": lambda pid, name: name.startswith("postgres"),
    }
    rates = []
    try:
        emails, _, _ = hb.users(conns, "probe")
        tokens = os.path.join(data, "refresh")
        for _ in range(rounds):
            hb.fresh_chains(emails, tokens)
            before, ticks, started = counters(), {k: cpu_ticks(m) for k, m in processes.items()}, time.monotonic()
            wrk = subprocess.Popen(hb.wrk_command("refresh.lua", conns, hb.DURATION),
                                   env=dict(os.environ, PREFIX="/auth", TOKENS=tokens), stdout=subprocess.PIPE, text=True)
            out = wrk.stdout.read()
            _, _, usage = os.wait4(wrk.pid, 0)  # wrk's CPU time: its /proc entry is gone now
            wrk.returncode = 0
            wall = time.monotonic() - started
            after = counters()
            spent = {k: (cpu_ticks(m) - ticks[k]) / TICK for k, m in processes.items()}
            spent["wrk"] = usage.ru_utime + usage.ru_stime
            run = hb.parse_wrk(out, f"refresh at {conns} connections")
            done = int(re.search(r"(\d+) requests in", out).group(1))
            stmts = after["statements"] - before["statements"]
            batch = (after["rotations"] - before["rotations"]) / stmts if stmts else 0.0
            busy = (after["busy_microseconds"] - before["busy_microseconds"]) / 1e6 / wall
            cpu = ", ".join(f"{k} {v * 1e6 / max(done, 1):.0f}" for k, v in spent.items())
            print(f"{run['rps']:8.0f} req/s  p50 {run['p50_ms']:5.2f} ms  p99 {run['p99_ms']:6.2f} ms  batch {batch:4.1f}  "
                  f"busy {busy:4.0%}  cpu/req µs: {cpu}", flush=True)
            rates.append(run["rps"])
    finally:
        server.stop()
        if postgres:
            subprocess.run(["psql", "-qAt", pg, "-c", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'], capture_output=True)
    rates.sort()
    print(f"median {rates[len(rates) // 2]:.0f} req/s of {rounds} rounds at {conns} connections")


if __name__ == "__main__":
    main()
