#!/usr/bin/env python3
"""Regenerates link/symbol-order.txt, the order in which the linker lays out the release binary's
functions (build.rs hands it to LLD as --symbol-ordering-file).

Why: the kernel maps an executable's code in 64 KiB windows around each page it touches
(fault-around), and the ~2,700 functions a server runs from exec to idle are scattered over
the whole 16 MB .text, so at idle ~10.6 MB of code counted as resident. Laid out together
they fill ~3 MB. Functions of the request path (register, login, /auth/me, refresh, logout)
come next, so that code under load is packed too.

How: the release binary runs under valgrind's callgrind, once on SQLite and once on PostgreSQL:
start, /health/ready, three idle seconds, a dump (callgrind_control), then a few requests, then
stop. Every function of the binary that executed before the dump is listed first, in address
order; the request path's follow. Names are the linker's (mangled) symbols: after a change
to the dependencies or the compiler some no longer exist, and LLD skips them silently
(--no-warn-symbol-ordering); run this again then. It prints how much of the list the current
binary still had of the list it replaces.

Usage: scripts/symbol-order.py [postgres-url]   (needs valgrind; ~2 minutes)
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from http_bench import PASSWORD, SECRET, Server, http  # noqa: E402 (the suite's client and server)

# Absolute: callgrind names each object by its absolute path, and bench/run.sh exports a relative
# CARGO_TARGET_DIR (`target`), which matched nothing and once wrote an empty list.
TARGET = os.path.abspath(os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR", "target")))
BINARY = os.path.join(TARGET, "release", "fraise-auth")
OUT = os.path.join(ROOT, "link", "symbol-order.txt")


def workload():
    email = f"order-{os.getpid()}@example.com"
    s, body = http("POST", "/auth/register", {"email": email, "password": PASSWORD})
    assert s == 201, s
    s, body = http("POST", "/auth/login", {"email": email, "password": PASSWORD})
    assert s == 200, s
    access, refresh = body["access_token"], body["refresh_token"]
    for _ in range(3):
        assert http("GET", "/auth/me", token=access)[0] == 200
        s, body = http("POST", "/auth/refresh", {"refresh_token": refresh})
        assert s == 200, s
        access, refresh = body["access_token"], body["refresh_token"]
    http("GET", "/auth/me", token="not-a-token")
    http("POST", "/auth/login", {"email": email, "password": "wrong"})
    assert http("POST", "/auth/logout", {"refresh_token": refresh}, token=access)[0] in (200, 204)


def profile(env, out):
    """Runs the server under callgrind; returns the callgrind files (idle part, request part)."""
    server = Server(BINARY, env, ready_within=300,
                    wrapper=["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={out}"])
    try:
        time.sleep(3)
        subprocess.run(["callgrind_control", "--dump=idle", str(server.proc.pid)], check=True,
                       capture_output=True)
        workload()
    finally:
        server.stop()
    files = [os.path.join(os.path.dirname(out), f) for f in os.listdir(os.path.dirname(out))
             if f.startswith(os.path.basename(out))]
    return sorted(files, key=part)


def part(callgrind_file):
    """The number of a callgrind dump (its `part:` line): 1 for the first."""
    for line in open(callgrind_file):
        if line.startswith("part:"):
            return int(line.split()[1])
    return 0


def executed(callgrind_file):
    """The binary's functions that executed in one callgrind part."""
    objs, names, owner = {}, {}, {}
    current = None
    for line in open(callgrind_file):
        m = re.match(r"^(c?)ob=\((\d+)\)(?: (.*))?", line)
        if m:
            if m.group(3):
                objs[m.group(2)] = m.group(3).strip()
            if not m.group(1):
                current = objs.get(m.group(2))
            continue
        m = re.match(r"^(c?)fn=\((\d+)\)(?: (.*))?", line)
        if m:
            if m.group(3):
                names[m.group(2)] = re.sub(r"'\d+$", "", m.group(3).strip())
            if not m.group(1):
                owner[m.group(2)] = current
    return {names[i] for i, o in owner.items() if o == BINARY and i in names}


def symbols():
    out = subprocess.run(["nm", "--defined-only", BINARY], capture_output=True, text=True,
                         check=True).stdout
    return {p[2]: int(p[0], 16) for p in (l.split() for l in out.splitlines())
            if len(p) == 3 and p[1] in "tTwW"}


def main():
    pg_url = sys.argv[1] if len(sys.argv) > 1 else "postgres://postgres@127.0.0.1:5432/postgres"
    subprocess.run(["cargo", "build", "--release", "--bin", "fraise-auth"], cwd=ROOT, check=True)
    address = symbols()
    idle, requests = set(), set()
    work = tempfile.mkdtemp(prefix="fraise-order-")
    schema = f"symbol_order_{os.getpid()}"
    try:
        for backend in ("sqlite", "postgres"):
            data = os.path.join(work, backend)
            os.mkdir(data)
            env = dict(os.environ, DATA_DIR=data, JWT_SECRET_KEY=SECRET, LOG_LEVEL="warn")
            if backend == "postgres":
                env.update(DATABASE_URL=pg_url, DEFAULT_SCHEMA=schema)
            first, second = profile(env, os.path.join(data, "callgrind.out"))
            idle |= executed(first)
            requests |= executed(second)
            print(f"{backend}: {len(idle)} functions to idle, {len(requests)} on the request path")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(["psql", "-qAt", pg_url, "-c", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
                       capture_output=True)
    ordered = sorted((n for n in idle if n in address), key=address.get)
    ordered += sorted((n for n in requests - idle if n in address), key=address.get)
    if not ordered:
        sys.exit(f"no function of {BINARY} found in the callgrind runs: keeping {OUT} as it is")
    if os.path.exists(OUT):
        previous = [line.strip() for line in open(OUT) if line.strip()]
        still = sum(1 for n in previous if n in address)
        print(f"the list replaced: {still} of its {len(previous)} symbols were in this build")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(ordered) + "\n")
    print(f"wrote {len(ordered)} symbols to {os.path.relpath(OUT, ROOT)}; rebuild to apply")


if __name__ == "__main__":
    main()
