#!/usr/bin/env python3
"""The HTTP load suite of issue 7: every scenario against PostgreSQL and SQLite, with wrk.

Run through bench/run.sh, which builds the release binary first. For each backend a fresh
release server (guide Argon2 parameters: m=102400 KiB, t=2, p=8; HASH_CONCURRENCY = CPU count;
rate limits ON but raised to 100 million a minute so they never trip; session checks on every
bearer request as always) is started and measured:

  me-8, me-64        GET /auth/me, 8 / 64 connections (one wrk thread per connection, one user each)
  refresh-8/64       POST /auth/refresh, each connection rotating its own session's chain
  login              POST /auth/login with the right password, 2x CPU connections
  me-during-login    GET /auth/me at 8 connections while a login flood saturates hashing, RUNS
                     times, each paired with an idle run right before it (once hashing has
                     drained); the pair with the median p99 ratio is reported, with every pair's
                     ratio
  me-beside-argon2   the control for me-during-login: GET /auth/me at 8 connections beside CPU-count
                     Argon2 processes that are not the server (`fraise-auth bench`, same parameters),
                     at the hashing threads' nice 10 and at SCHED_IDLE, each paired with an idle run
                     like the flood: what Argon2 at that priority next to the server costs the p99
                     on this machine, to read the flood ratio against
  rss / ready        idle RSS, peak RSS during the flood, start-to-/health/ready (median of
                     READY_STARTS starts, each on a fresh data folder or PostgreSQL schema)

Each throughput scenario runs RUNS times (default 3) for DURATION seconds; the median run (by
requests/s) is reported with its p50/p99. Any non-2xx response fails the run. Results go to
bench/results.json and bench/RESULTS.md.
"""
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRK = os.path.join(ROOT, "bench", "wrk")
SECRET = "bench-secret-0123456789-bench-secret-0123456789"
PASSWORD = "BenchPass123!"
PORT = 18180
RUNS = int(os.environ.get("RUNS", "3"))
DURATION = int(os.environ.get("DURATION", "10"))
CPUS = os.cpu_count() or 1
READY_STARTS = 5


def http(method, path, body=None, token=None):
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode())
    if body is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def unit(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    value, u = float(m.group(1)), m.group(2)
    return value / 1000.0 if u == "us" else value if u == "ms" else value * 1000.0


def wrk_command(script, connections, duration, timeout_s=None):
    """wrk with `script`, one thread per connection, latency percentiles on; `timeout_s` replaces
    wrk's 2 s request timeout."""
    timeout = ["--timeout", f"{timeout_s}s"] if timeout_s else []
    return ["wrk", "-t", str(connections), "-c", str(connections), "-d", f"{duration}s", "--latency", *timeout,
            "-s", os.path.join(WRK, script), f"http://127.0.0.1:{PORT}"]


def wrk(script, connections, duration, env):
    out = subprocess.run(wrk_command(script, connections, duration), env=dict(os.environ, PREFIX="/auth", **env),
                         capture_output=True, text=True, check=True).stdout
    return parse_wrk(out, f"{script} at {connections} connections")


def parse_wrk(out, what):
    """requests/s, p50 and p99 (ms) of wrk's report; exits if any request failed (`what` says which run)."""
    found = [re.search(pattern, out) for pattern in (r"Requests/sec:\s+([\d.]+)", r"\s50%\s+(\S+)", r"\s99%\s+(\S+)")]
    if not all(found):
        sys.exit(f"{what}: no wrk report with latencies\n{out}")
    rps, p50, p99 = float(found[0].group(1)), unit(found[1].group(1)), unit(found[2].group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failures = (int(bad.group(1)) if bad else 0) + (sum(int(g) for g in errors.groups()) if errors else 0)
    if failures:
        sys.exit(f"{what}: {failures} failed requests\n{out}")
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99}


def median_run(script, connections, env, prepare=None):
    runs = []
    for _ in range(RUNS):
        if prepare:
            prepare()
        runs.append(wrk(script, connections, DURATION, env))
    runs.sort(key=lambda r: r["rps"])
    best = dict(runs[len(runs) // 2])
    best["runs"] = [round(r["rps"]) for r in runs]
    return best


class Server:
    """The server on PORT, ready; `wrapper` runs it under a tool (scripts/symbol-order.py: valgrind)."""

    def __init__(self, binary, env, wrapper=(), ready_within=30):
        self.started = time.monotonic()
        self.proc = subprocess.Popen([*wrapper, binary, "serve", "--port", str(PORT)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ready_ms = None
        while time.monotonic() - self.started < ready_within and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health/ready", timeout=1) as r:
                    if r.status == 200:
                        self.ready_ms = (time.monotonic() - self.started) * 1000
                        return
            except OSError:  # refused, reset, or timed out (URLError is one)
                time.sleep(0.001)
        self.stop()
        sys.exit(f"server not ready in {ready_within} s (is the port taken?)")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=120)


def users(n, tag):
    emails, access, refresh = [], [], []
    for i in range(n):
        email = f"bench-{tag}-{i}@example.com"
        s, body = http("POST", "/auth/register", {"email": email, "password": PASSWORD})
        if s != 201:
            sys.exit(f"register {email}: HTTP {s}")
        emails.append(email)
        access.append(body["access_token"])
        s, body = http("POST", "/auth/login", {"email": email, "password": PASSWORD})
        refresh.append(body["refresh_token"])
    return emails, access, refresh


def write_lines(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def server_env(backend, data, pg_url, schema):
    """The measured server's settings: data in `data`, rate limits raised so they never trip,
    PostgreSQL's schema `schema` when `backend` is postgres."""
    env = dict(os.environ, DATA_DIR=data, JWT_SECRET_KEY=SECRET, LOG_LEVEL="warn",
               RATE_LIMIT_REQUESTS_PER_MINUTE="100000000", RATE_LIMIT_AUTH_REQUESTS_PER_MINUTE="100000000",
               HASH_QUEUE_SIZE="256")
    if backend == "postgres":
        env.update(DATABASE_URL=pg_url, DEFAULT_SCHEMA=schema)
    return env


def ready_ms(binary, backend, pg_url, schema):
    """Milliseconds from start to /health/ready of a server on a fresh data folder (PostgreSQL: a
    fresh schema `schema`, dropped afterwards), so every start creates its tables. One start is
    one sample, and the machine's disk is shared: the suite reports the median of several."""
    data = tempfile.mkdtemp(prefix=f"fraise-ready-{backend}-")
    try:
        server = Server(binary, server_env(backend, data, pg_url, schema))
        server.stop()
        return server.ready_ms
    finally:
        shutil.rmtree(data, ignore_errors=True)
        if backend == "postgres":
            drop_schema(pg_url, schema)


def drop_schema(pg_url, schema):
    subprocess.run(["psql", "-qAt", pg_url, "-c", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'], capture_output=True)


def fresh_chains(emails, path):
    """Logs each user in and writes the new refresh tokens to `path`, one a line. Every refresh run
    starts from new sessions: the previous run rotated its chains far past the tokens in the file,
    which would now be replays (theft)."""
    chains = []
    for email in emails:
        s, body = http("POST", "/auth/login", {"email": email, "password": PASSWORD})
        if s != 200:
            sys.exit(f"login {email}: HTTP {s}")
        chains.append(body["refresh_token"])
    write_lines(path, chains)


def run_backend(backend, binary, pg_url):
    data = tempfile.mkdtemp(prefix=f"fraise-bench-{backend}-")
    schema = f"bench_{os.getpid()}"
    env = server_env(backend, data, pg_url, schema)
    result = {}
    server = None
    try:
        readies = [ready_ms(binary, backend, pg_url, f"{schema}_ready{i}") for i in range(READY_STARTS)]
        result["ready_ms"] = round(statistics.median(readies), 1)
        result["ready_runs_ms"] = [round(r, 1) for r in readies]
        server = Server(binary, env)
        time.sleep(3)  # the background warm-up hash has run and freed its memory
        result["idle_rss_mb"] = round(status(server.proc.pid, "VmRSS") / 1024, 1)
        emails, access, refresh = users(64, backend)
        files = {name: os.path.join(data, name) for name in ["access", "refresh", "emails"]}
        write_lines(files["access"], access)
        write_lines(files["refresh"], refresh)
        write_lines(files["emails"], emails)
        for c in (8, 64):
            result[f"me-{c}"] = median_run("me.lua", c, {"TOKENS": files["access"]})
            print(backend, f"me-{c}", result[f"me-{c}"], flush=True)
        for c in (8, 64):
            result[f"refresh-{c}"] = median_run("refresh.lua", c, {"TOKENS": files["refresh"]},
                                                lambda: fresh_chains(emails, files["refresh"]))
            print(backend, f"refresh-{c}", result[f"refresh-{c}"], flush=True)
        # Logins (here and in the flood) use users of their own: logins beyond
        # MAX_SESSIONS_PER_USER end the oldest sessions, whose access tokens /auth/me presents.
        flood_emails, _, _ = users(4 * CPUS, f"{backend}-flood")
        write_lines(files["emails"], flood_emails)
        # The hash-bound limit, measured right before the logins it is compared with (the machine's
        # speed drifts within minutes), alone and with every CPU hashing at once.
        result["hash_bound"] = hash_bound(binary)
        result["login"] = median_run("login.lua", 2 * CPUS, {"EMAILS": files["emails"], "PASSWORD": PASSWORD})
        print(backend, "login", result["login"], flush=True)

        # /auth/me while logins saturate the hashing threads, RUNS times, each flood run paired
        # with an idle run right before it (the idle p99 drifts within minutes, like the hash
        # cost); peak RSS sampled throughout.
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set() and server.proc.poll() is None:
                peak[0] = max(peak[0], status(server.proc.pid, "VmRSS"))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            pairs = [loaded_pair(files, login_flood(files)) for _ in range(RUNS)]
        finally:
            stop.set()
            sampler.join()
        result["peak_rss_mb"] = round(peak[0] / 1024, 1)
        result["me-during-login"] = median_pair(pairs)
        print(backend, "me-during-login", result["me-during-login"], flush=True)
        for policy, wrapper in HOG_POLICIES.items():
            cost = result["hash_bound"]["cpu_s_per_hash"]
            hog_pairs = [loaded_pair(files, argon2_beside(binary, wrapper, cost)) for _ in range(RUNS)]
            result[f"me-beside-argon2-{policy}"] = median_pair(hog_pairs)
            print(backend, f"me-beside-argon2-{policy}", result[f"me-beside-argon2-{policy}"], flush=True)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(data, ignore_errors=True)
        if backend == "postgres":
            drop_schema(pg_url, schema)
    return result


def loaded_pair(files, load):
    """One idle /auth/me run at 8 connections (once hashing has drained), then one under `load`, a
    context manager that starts the load, holds it while the run lasts (from 2 s before it) and
    ends it; what it yields is returned beside the pair's runs and their p99 ratio."""
    hashing_drained()
    idle = wrk("me.lua", 8, DURATION, {"TOKENS": files["access"]})
    with load as extra:
        time.sleep(2)
        during = wrk("me.lua", 8, DURATION, {"TOKENS": files["access"]})
    return {"idle": idle, "during": during, "ratio": during["p99_ms"] / idle["p99_ms"], **extra}


@contextlib.contextmanager
def login_flood(files):
    """A login flood (4 x CPUs connections, outlasting the loaded run) that keeps every hashing
    thread busy; yields {"logins": its wrk figures}, filled in once it ends. The flood's logins must
    all succeed: wrk's timeout is raised to 60 s, as queued logins wait seconds by design."""
    flood = subprocess.Popen(wrk_command("login.lua", 4 * CPUS, DURATION + 4, timeout_s=60),
                             env=dict(os.environ, PREFIX="/auth", EMAILS=files["emails"], PASSWORD=PASSWORD),
                             stdout=subprocess.PIPE, text=True)
    extra = {}
    try:
        yield extra
    finally:
        out, _ = flood.communicate()
    if flood.returncode != 0:
        sys.exit(f"the login flood's wrk exited with {flood.returncode}\n{out}")
    extra["logins"] = parse_wrk(out, "the login flood")


# How the control's Argon2 processes run: as the server's hashing threads do (nice 10, absolute:
# `nice -n` adds to this script's own niceness), and at the lowest priority Linux has
# (SCHED_IDLE, util-linux's chrt: they get a CPU only when nothing else wants it).
HOG_POLICIES = {"nice10": ["nice", "-n", str(10 - os.nice(0))], "idle": ["chrt", "--idle", "0"]}


@contextlib.contextmanager
def argon2_beside(binary, wrapper, cpu_s_per_hash):
    """CPU-count processes that are not the server, hashing with its Argon2 parameters under
    `wrapper`. `fraise-auth bench` hashes one at a time first, for its sample count times a hash's
    cost: the count is set for twice the run (from `cpu_s_per_hash`), so each process is one
    hashing thread throughout; they are killed when the run ends. The server computes no hash:
    this is what Argon2 at that priority next to the server costs /auth/me on this machine."""
    samples = str(int(2 * (DURATION + 5) / max(cpu_s_per_hash, 0.001)) + 10)
    hogs = []
    try:
        for _ in range(CPUS):
            hogs.append(subprocess.Popen([*wrapper, binary, "bench", "--samples", samples],
                                         env=dict(os.environ, JWT_SECRET_KEY=SECRET),
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield {}
        if any(h.poll() is not None for h in hogs):
            sys.exit(f"an Argon2 process of the control exited before the run ended ({' '.join(wrapper)})")
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def hashing_drained(within=120):
    """Returns once the server has no hash running or queued (its /metrics), plus 1 s for the
    logins' last writes: wrk exits with logins still in the server, and an "idle" run that
    starts under them is not idle."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=5) as r:
            text = r.read().decode()
        gauges = re.findall(r"^fraise_hash_(?:running|queue_depth) (\S+)$", text, re.M)
        if len(gauges) != 2:
            sys.exit("/metrics has no fraise_hash_running / fraise_hash_queue_depth")
        if all(float(g) == 0 for g in gauges):
            time.sleep(1)
            return
        time.sleep(0.1)
    sys.exit(f"hashing still busy {within} s after the logins ended")


def median_pair(pairs):
    """The pair (idle run, loaded run) with the median p99 ratio, with every pair's ratio beside it."""
    ordered = sorted(pairs, key=lambda p: p["ratio"])
    mid = ordered[len(ordered) // 2]
    out = dict(mid["during"])
    out.update(idle_p99_ms=mid["idle"]["p99_ms"], ratio=round(mid["ratio"], 2),
               ratios=[round(p["ratio"], 2) for p in pairs],
               pairs=[{"idle_p99_ms": p["idle"]["p99_ms"], "during_p99_ms": p["during"]["p99_ms"]} for p in pairs])
    if "logins" in mid:
        out.update(flood_logins_per_s=mid["logins"]["rps"], flood_login_p99_ms=mid["logins"]["p99_ms"])
    return out


def hash_bound(binary):
    run = subprocess.run([binary, "bench", "--samples", "5"], capture_output=True, text=True,
                         env=dict(os.environ, JWT_SECRET_KEY=SECRET))
    out = run.stdout
    if run.returncode != 0:
        sys.exit(f"fraise-auth bench exited with {run.returncode}\n{out}{run.stderr}")
    alone = re.search(r"/ ([\d.]+) CPU-s per hash = ([\d.]+) logins/s", out)
    together = re.search(r"/ ([\d.]+) CPU-s per hash at once = ([\d.]+) logins/s", out)
    if not (alone and together):
        sys.exit(f"fraise-auth bench printed no hash-bound limits\n{out}")
    return {"cpu_s_per_hash": float(alone.group(1)), "limit_per_s": float(alone.group(2)),
            "cpu_s_per_hash_at_once": float(together.group(1)), "limit_at_once_per_s": float(together.group(2))}


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    pg = subprocess.run(["psql", "-qAt", os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
                         "-c", "SHOW server_version"], capture_output=True, text=True).stdout.strip()
    mem_kb = int(open("/proc/meminfo").read().split()[1])
    return {"cpus": CPUS, "cpu": model, "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "postgresql": pg,
            "wrk": subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0].strip()}


def flood_cell(r):
    return (f"{r['ratio']:.2f}x ({r['p99_ms']:.2f} vs {r['idle_p99_ms']:.2f} ms; all pairs: "
            + ", ".join(f"{x:.2f}x" for x in r["ratios"]) + ")")


def markdown(results, info):
    lines = [
        "# HTTP benchmark results",
        "",
        f"Machine: {info['cpus']} CPUs ({info['cpu']}), {info['memory_gb']} GB, Linux {info['kernel']}, "
        f"PostgreSQL {info['postgresql']}, {info['wrk']}; load generator, database and server on the same box.",
        f"Each figure is the median of {RUNS} runs of {DURATION} s (`RUNS`, `DURATION`), but me-during-login and "
        "the control beside Argon2 processes: the second run of the pair (idle run, then loaded run) with the median "
        "p99 ratio. Rate limits on, raised to "
        "100,000,000/min; Argon2id m=102400 KiB, t=2, p=8; HASH_CONCURRENCY = CPUs; PostgreSQL default durability; "
        "SQLite WAL with synchronous=NORMAL.",
        "Reproduce: `bench/run.sh`.",
        "",
        "| scenario | PostgreSQL req/s | p50 ms | p99 ms | SQLite req/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ["me-8", "me-64", "refresh-8", "refresh-64", "login", "me-during-login"]:
        row = [name]
        for backend in ["postgres", "sqlite"]:
            r = results[backend][name]
            row += [f"{r['rps']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "| figure | PostgreSQL | SQLite |",
        "|---|---|---|",
        f"| idle RSS | {results['postgres']['idle_rss_mb']} MB | {results['sqlite']['idle_rss_mb']} MB |",
        f"| peak RSS during the login flood | {results['postgres']['peak_rss_mb']} MB | {results['sqlite']['peak_rss_mb']} MB |",
        f"| start to /health/ready, median of {READY_STARTS} starts (all starts) | "
        + " | ".join(f"{results[b]['ready_ms']} ms ({', '.join(str(x) for x in results[b]['ready_runs_ms'])})"
                     for b in ["postgres", "sqlite"]) + " |",
        f"| /auth/me p99 during the login flood ÷ idle p99 (median of {RUNS} pairs) | "
        + " | ".join(flood_cell(results[b]["me-during-login"]) for b in ["postgres", "sqlite"]) + " |",
        f"| the control: /auth/me p99 beside {CPUS} Argon2 processes at nice 10 (not the server) ÷ idle p99 | "
        + " | ".join(flood_cell(results[b]["me-beside-argon2-nice10"]) for b in ["postgres", "sqlite"]) + " |",
        f"| the control at SCHED_IDLE | "
        + " | ".join(flood_cell(results[b]["me-beside-argon2-idle"]) for b in ["postgres", "sqlite"]) + " |",
        f"| logins/s during the flood (its p99) | "
        + " | ".join(f"{results[b]['me-during-login']['flood_logins_per_s']:.1f} "
                     f"({results[b]['me-during-login']['flood_login_p99_ms'] / 1000:.1f} s)" for b in ["postgres", "sqlite"])
        + " |",
        "",
        "Hash-bound login limit (`fraise-auth bench`, measured right before each backend's logins): CPUs ÷ CPU-s "
        "per hash, with the hash timed alone and with every CPU hashing at once (as in a login flood).",
        "",
        "| backend | logins/s | limit, hash alone | share | limit, all CPUs hashing | share |",
        "|---|---|---|---|---|---|",
    ]
    for backend, label in [("postgres", "PostgreSQL"), ("sqlite", "SQLite")]:
        b, rps = results[backend]["hash_bound"], results[backend]["login"]["rps"]
        lines.append(f"| {label} | {rps:.1f} | {CPUS} / {b['cpu_s_per_hash']:.4f} = {b['limit_per_s']:.1f} | "
                     f"{rps / b['limit_per_s'] * 100:.0f} % | {CPUS} / {b['cpu_s_per_hash_at_once']:.4f} = "
                     f"{b['limit_at_once_per_s']:.1f} | {rps / b['limit_at_once_per_s'] * 100:.0f} % |")
    lines += [
        "",
        "![throughput and p99 per scenario](chart.svg)",
    ]
    return "\n".join(lines) + "\n"


def main():
    binary = sys.argv[1]
    pg_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    info = machine()
    results = {b: run_backend(b, binary, pg_url) for b in ["postgres", "sqlite"]}
    out = {"machine": info, "results": results, "runs": RUNS, "duration_s": DURATION}
    with open(os.path.join(ROOT, "bench", "results.json"), "w") as f:
        json.dump(out, f, indent=2)
    with open(os.path.join(ROOT, "bench", "RESULTS.md"), "w") as f:
        f.write(markdown(results, info))
    print(markdown(results, info))


if __name__ == "__main__":
    main()
