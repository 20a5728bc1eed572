#!/usr/bin/env python3
"""Cost of tenants: time to create and migrate each, and what a server holds as it serves more.

For each backend (SQLite, PostgreSQL): creates N tenants with `fraise-auth tenant create` (one
run, as an operator would), starts a release server with TENANT_RESOLUTION_METHOD=header, sends
one registration and one login to the first 10 tenants, then to all N, then to all N again
(evictions past TENANT_MAX_OPEN), and reports the server's RSS and, on PostgreSQL, its
connections after each step. Prints a Markdown table.

Usage: python3 scripts/bench_tenants.py [--tenants 200] [--binary PATH]
Needs PostgreSQL at BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/fraise_bench;
the database is created if missing). Argon2 is set light (m=8 MiB, t=1, p=1) because this
measures tenancy, not hashing; rate limits are off because one client sends everything.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

SECRET = "bench-secret-0123456789-bench-secret-0123456789"
PORT = 18150


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pg_connections(url, app_name):
    out = subprocess.run(
        ["psql", "-qAt", url, "-c", f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app_name}'"],
        capture_output=True, text=True, check=True)
    return int(out.stdout.strip() or 0)


def post(path, body, tenant):
    req = urllib.request.Request(
        f"http://127.0.0.1:{PORT}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"content-type": "application/json", "x-tenant-id": tenant})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def touch(tenants, round_no):
    for t in tenants:
        email = f"u{round_no}@example.com"
        s = post("/auth/register", {"email": email, "password": "BenchPass123!"}, t)
        if s != 201:
            sys.exit(f"register in {t}: HTTP {s}")
        s = post("/auth/login", {"email": email, "password": "BenchPass123!"}, t)
        if s != 200:
            sys.exit(f"login in {t}: HTTP {s}")


def wait_ready(proc):
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit("server exited early")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.05)
    sys.exit("server not ready")


def run(backend, binary, n, pg_base):
    data = tempfile.mkdtemp(prefix=f"bench-tenants-{backend}-")
    app_name = f"bench_tenants_{os.getpid()}"
    env = dict(os.environ, DATA_DIR=data, JWT_SECRET_KEY=SECRET, TENANT_RESOLUTION_METHOD="header",
               ARGON2_MEMORY_COST="8192", ARGON2_TIME_COST="1", ARGON2_PARALLELISM="1",
               ENABLE_RATE_LIMITING="false", PORT=str(PORT), LOG_LEVEL="warn")
    schema = f"bench_ctl_{os.getpid()}"
    names = [f"t{i:03d}" if backend == "sqlite" else f"bt{os.getpid()}_{i:03d}" for i in range(n)]
    if backend == "postgres":
        env.update(DATABASE_URL=f"{pg_base}?application_name={app_name}", DEFAULT_SCHEMA=schema)
    try:
        subprocess.run([binary, "migrate"], env=env, check=True, capture_output=True)
        t0 = time.monotonic()
        out = subprocess.run([binary, "tenant", "create", *names], env=env, capture_output=True, text=True)
        created = time.monotonic() - t0
        if out.returncode != 0:
            sys.exit(f"tenant create failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        summary = [l for l in out.stdout.splitlines() if l.startswith("created ")][-1]
        per = float(re.search(r"\(([\d.]+) ms per tenant\)", summary).group(1))
        server = subprocess.Popen([binary, "serve"], env=env)
        try:
            wait_ready(server)
            time.sleep(1.5)  # the warm-up hash runs and frees its memory
            rows = [("idle, 0 tenants served", rss_kib(server.pid))]
            conns = [pg_connections(pg_base, app_name) if backend == "postgres" else None]
            for label, group, rnd in [("10 tenants served", names[:10], 1), (f"{n} tenants served", names, 2),
                                      (f"{n} tenants served again", names, 3)]:
                touch(group, rnd)
                rows.append((label, rss_kib(server.pid)))
                conns.append(pg_connections(pg_base, app_name) if backend == "postgres" else None)
        finally:
            server.terminate()
            server.wait(timeout=30)
        return per, created, rows, conns
    finally:
        shutil.rmtree(data, ignore_errors=True)
        if backend == "postgres":
            drops = "; ".join(f'DROP SCHEMA IF EXISTS "{s}" CASCADE' for s in [schema, *names])
            subprocess.run(["psql", "-qAt", pg_base, "-c", drops], capture_output=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=200)
    ap.add_argument("--binary", default=None)
    args = ap.parse_args()
    binary = args.binary
    if binary is None:
        target = os.environ.get("CARGO_TARGET_DIR", "target")
        subprocess.run(["cargo", "build", "--release", "--quiet"], check=True)
        binary = os.path.join(target, "release", "fraise-auth")
    pg_base = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fraise_bench")
    admin = re.sub(r"/[^/]*$", "/postgres", pg_base)
    db = pg_base.rsplit("/", 1)[1]
    subprocess.run(["psql", "-qAt", admin, "-c", f'CREATE DATABASE "{db}"'], capture_output=True)
    print(f"| backend | create+migrate per tenant | step | server RSS | PG connections |")
    print(f"|---|---|---|---|---|")
    for backend in ["sqlite", "postgres"]:
        per, _, rows, conns = run(backend, binary, args.tenants, pg_base)
        for (label, kib), c in zip(rows, conns):
            print(f"| {backend} | {per:.1f} ms | {label} | {kib / 1024:.1f} MB | {'-' if c is None else c} |")


if __name__ == "__main__":
    main()
