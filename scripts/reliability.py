#!/usr/bin/env python3
"""Process-level reliability checks of fraise-auth: faults, several nodes, soak.

Each part starts what it needs on private loopback ports: its own PostgreSQL cluster (initdb into
a temporary folder, run as the `postgres` user), its own redis-server, and release binaries of
fraise-auth. The machine's shared PostgreSQL (5432) and Redis (6379) are never touched.

    scripts/reliability.py BIN faults        PostgreSQL restarted under load; SIGKILL; Redis stopped
    scripts/reliability.py BIN nodes         three nodes sharing PostgreSQL and Redis
    scripts/reliability.py BIN soak [SECS]   mixed traffic (default 600 s), RSS slope
    scripts/reliability.py BIN memory        anonymous memory per /auth/me after warm-up (SQLite)

Every check prints `ok`/`FAIL`; figures are printed as `SUMMARY<TAB>part<TAB>figure<TAB>result`
lines, which scripts/reliability.sh gathers into its table. Exit status 1 if any check failed.
Standard library only.
"""
import base64
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
PG_PORT = int(os.environ.get("RELIABILITY_PG_PORT", "55432"))
REDIS_PORT = int(os.environ.get("RELIABILITY_REDIS_PORT", "56379"))
BASE_PORT = int(os.environ.get("RELIABILITY_HTTP_PORT", "18301"))
SECRET = "reliability-secret-0123456789-reliability-secret"
PASSWORD = "TestPass123!"

failures = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + (f": {detail}" if detail else ""), flush=True)
    if not ok:
        failures.append(what)


def summary(part, figure, result):
    print(f"SUMMARY\t{part}\t{figure}\t{result}", flush=True)


# ---------------------------------------------------------------------------------------------
# HTTP


def call(port, method, path, body=None, token=None, headers=None, timeout=10):
    """(status, json-or-None); status 0 when the connection failed (server down)."""
    h = {"content-type": "application/json"} if body is not None else {}
    if token:
        h["authorization"] = f"Bearer {token}"
    h.update(headers or {})
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request(method, path, body=None if body is None else json.dumps(body), headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        try:
            return r.status, json.loads(data) if data else None
        except ValueError:
            return r.status, None
    except (OSError, http.client.HTTPException):
        return 0, None


def code(body):
    try:
        return body["detail"]["code"]
    except (TypeError, KeyError):
        return ""


def register(port, email, headers=None):
    return call(port, "POST", "/auth/register", {"email": email, "password": PASSWORD}, headers=headers)


def refresh_counter(token):
    """The (session uuid, counter) a refresh token names: base64url(id16 | counter8 | tag32)."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    return raw[:16].hex(), int.from_bytes(raw[16:24], "big", signed=True)


# ---------------------------------------------------------------------------------------------
# Private services


class PrivatePostgres:
    """A PostgreSQL 15 cluster of our own in a temporary folder, on a private port."""

    def __init__(self, port=PG_PORT):
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="fraise-rel-pg-")
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        self._pg("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync", quiet=True)
        self.start()

    def _pg(self, tool, *args, quiet=False):
        out = subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/{tool}", *args],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{tool} failed: {out.stdout}{out.stderr}")
        if not quiet:
            return out.stdout

    def start(self):
        self._pg("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w", "-t", "30", "-o",
                 f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200", "start",
                 quiet=True)

    def stop(self):
        self._pg("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop", quiet=True)

    def url(self, db):
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def sql(self, db, query):
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
                              "-Atq", "-c", query], capture_output=True, text=True, check=True)
        return out.stdout

    def create_db(self, db):
        self.sql("postgres", f'CREATE DATABASE "{db}"')

    def destroy(self):
        try:
            self.stop()
        except RuntimeError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    def __init__(self, port=REDIS_PORT):
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="fraise-rel-redis-")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--dir", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("private redis did not start")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    """One `fraise-auth serve` process."""

    def __init__(self, binary, port, env):
        self.binary, self.port = binary, port
        self.dir = tempfile.mkdtemp(prefix=f"fraise-rel-{port}-")
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "DATA_DIR": self.dir,
            "JWT_SECRET_KEY": SECRET,
            "ARGON2_MEMORY_COST": "8192",
            "ARGON2_TIME_COST": "1",
            "ARGON2_PARALLELISM": "1",
            "HASH_CONCURRENCY": "2",
            "ENABLE_RATE_LIMITING": "false",
            "DATABASE_POOL_TIMEOUT_SECONDS": "1",
            "CLEANUP_INTERVAL_MINUTES": "0",
            "LOG_LEVEL": "warn",
            **env,
        }
        self.proc = None
        self.start()

    def start(self):
        log = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = subprocess.Popen([self.binary, "serve"], env=self.env, stdout=log, stderr=log)
        deadline = time.time() + 30
        while time.time() < deadline:
            if call(self.port, "GET", "/health/ready", timeout=1)[0] == 200:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"server on {self.port} did not become ready:\n{self.log_tail()}")

    def log_tail(self, n=30):
        try:
            with open(os.path.join(self.dir, "server.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def _kib(self, name, field):
        with open(f"/proc/{self.proc.pid}/{name}") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def rss_kib(self):
        return self._kib("status", "VmRSS")

    def anon_kib(self):
        """Anonymous memory (heap, arenas, stacks): what a leak grows; code pages are left out."""
        return self._kib("smaps_rollup", "Anonymous")

    def destroy(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Load


class Load:
    """Worker threads running mixed traffic against `ports` until stopped; every answer recorded
    as (time, operation, status, code)."""

    def __init__(self, ports, threads=4, prefix="load", ops=("register", "login", "refresh", "me")):
        self.ports, self.prefix, self.ops = ports, prefix, ops
        self.records = []
        self.spans = []
        self.local = threading.local()
        self.acked_emails = []
        self.acked_counters = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(threads)]
        for t in self.threads:
            t.start()

    def record(self, op, status, body):
        now = time.time()
        with self.lock:
            self.records.append((now, op, status, code(body)))
            # When the request was sent too: a request sent before PostgreSQL stopped may
            # legitimately succeed, and its record can land late when the thread is descheduled.
            self.spans.append((getattr(self.local, "sent", now), now, status, code(body)))

    def spans_within(self, t0, t1):
        """Requests sent at or after t0 and answered before t1."""
        with self.lock:
            return [(e, "", s, c) for b, e, s, c in self.spans if b >= t0 and e < t1]

    def worker(self, n):
        rnd = random.Random(n)
        seq = 0
        chain = None  # (email, refresh token, access token)
        while not self.stopping.is_set():
            self.local.sent = time.time()
            port = rnd.choice(self.ports)
            op = rnd.choice(self.ops)
            seq += 1
            email = f"{self.prefix}-{n}-{seq}-{os.getpid()}@example.com"
            if op == "register" or (chain is None and op != "register"):
                s, b = register(port, email)
                self.record("register", s, b)
                if s == 201:
                    with self.lock:
                        self.acked_emails.append(email)
                    chain = (email, b["refresh_token"], b["access_token"])
            elif op == "login":
                s, b = call(port, "POST", "/auth/login", {"email": chain[0], "password": PASSWORD})
                self.record("login", s, b)
                if s == 200:
                    chain = (chain[0], b["refresh_token"], b["access_token"])
            elif op == "refresh":
                s, b = call(port, "POST", "/auth/refresh", {"refresh_token": chain[1]})
                self.record("refresh", s, b)
                if s == 200:
                    chain = (chain[0], b["refresh_token"], b["access_token"])
                    sid, counter = refresh_counter(chain[1])
                    with self.lock:
                        self.acked_counters[sid] = max(counter, self.acked_counters.get(sid, 0))
                elif s in (401, 403):
                    chain = None  # chain ended (e.g. theft after an unacknowledged rotation)
            elif op == "me":
                s, b = call(port, "GET", "/auth/me", token=chain[2])
                self.record("me", s, b)
                if s == 401 and code(b) == "TOKEN_EXPIRED":
                    chain = None
            elif op == "logout":
                s, b = call(port, "POST", "/auth/logout", {"refresh_token": chain[1]})
                self.record("logout", s, b)
                chain = None

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(30)

    def between(self, t0, t1):
        with self.lock:
            return [r for r in self.records if t0 <= r[0] < t1]


def counts(records):
    out = {}
    for _, _, s, _ in records:
        out[s] = out.get(s, 0) + 1
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------------------------
# Parts


def pg_restart_under_load(binary, pg):
    pg.create_db("fraise_restart")
    srv = Server(binary, BASE_PORT, {"DATABASE_URL": pg.url("fraise_restart")})
    try:
        pid = srv.proc.pid
        load = Load([srv.port], threads=4, prefix="restart")
        time.sleep(3)
        down_at = time.time()
        pg.stop()
        stopped_at = time.time()
        time.sleep(1)
        ready_down = call(srv.port, "GET", "/health/ready")[0]
        time.sleep(3)
        restart_at = time.time()
        pg.start()
        up_at = time.time()
        # Recovery: the first success of every operation after PostgreSQL is back.
        deadline = up_at + 30
        recovered = None
        while time.time() < deadline:
            after = load.between(up_at, time.time())
            if {op for _, op, s, _ in after if 200 <= s < 300} >= {"register", "login", "refresh", "me"}:
                recovered = max(min(t for t, op, s, _ in after if op == o and 200 <= s < 300)
                                for o in ("register", "login", "refresh", "me"))
                break
            time.sleep(0.1)
        time.sleep(3)
        tail_from = time.time() - 2
        time.sleep(2)
        load.stop()
        ready_up = call(srv.port, "GET", "/health/ready")[0]
        everything = load.between(0, time.time())
        # Sent after PostgreSQL was down and answered before it was started again.
        outage = load.spans_within(stopped_at + 0.2, restart_at)
        tail = load.between(tail_from, time.time() + 1)
        bad_5xx = [r for r in everything if r[2] >= 500 and r[2] != 503]
        check("PostgreSQL restart: no 5xx other than 503, ever", not bad_5xx, f"{counts(bad_5xx)}")
        check("PostgreSQL restart: no dropped connections", not [r for r in everything if r[2] == 0])
        outage_statuses = counts(outage)
        check("during the outage every request is 503 SERVICE_UNAVAILABLE",
              outage and set(outage_statuses) == {503}
              and all(r[3] == "SERVICE_UNAVAILABLE" for r in outage), f"{outage_statuses}")
        check("during the outage /health/ready is 503", ready_down == 503, str(ready_down))
        check("the service recovers without a restart", recovered is not None and srv.proc.poll() is None
              and srv.proc.pid == pid, f"pid {pid}")
        tail_ok = [r for r in tail if 200 <= r[2] < 300]
        check("after recovery every request succeeds", tail and len(tail_ok) == len(tail), f"{counts(tail)}")
        check("after recovery /health/ready is 200", ready_up == 200, str(ready_up))
        rec = f"{recovered - up_at:.1f} s" if recovered else "never"
        summary("faults", "PostgreSQL stopped 4 s under load (4 clients)",
                f"{len(outage)} requests during outage: {outage_statuses}; other 5xx: {len(bad_5xx)}; "
                f"all operations succeeding again {rec} after restart, same process; "
                f"{len(everything)} requests in all ({pg_down_secs(down_at, restart_at)} s down)")
    finally:
        srv.destroy()


def pg_down_secs(a, b):
    return f"{b - a:.1f}"


def sigkill_durability(binary, pg):
    pg.create_db("fraise_kill")
    srv = Server(binary, BASE_PORT + 1, {"DATABASE_URL": pg.url("fraise_kill")})
    try:
        load = Load([srv.port], threads=6, prefix="kill", ops=("register", "refresh", "refresh"))
        time.sleep(3)
        srv.kill9()
        killed_at = time.time()
        load.stop()
        in_flight_lost = len([r for r in load.records if r[2] == 0])
        srv.start()
        emails = list(load.acked_emails)
        present = set()
        if emails:
            rows = pg.sql("fraise_kill", "SELECT email FROM tb_user")
            present = {line.strip() for line in rows.splitlines()}
        missing = [e for e in emails if e.lower() not in present]
        check("SIGKILL: every acknowledged registration is in the database", emails and not missing,
              f"{len(emails)} acknowledged, {len(missing)} missing")
        chains = dict(load.acked_counters)
        behind = []
        if chains:
            rows = pg.sql("fraise_kill", "SELECT replace(pk_session::text, '-', ''), refresh_counter FROM tb_session")
            stored = dict(line.split("|") for line in rows.splitlines() if line)
            behind = [s for s, c in chains.items() if int(stored.get(s, -1)) < c]
        check("SIGKILL: every acknowledged refresh rotation is in the database", chains and not behind,
              f"{len(chains)} chains, {sum(chains.values())} rotations acknowledged, {len(behind)} behind")
        s, _ = call(srv.port, "POST", "/auth/login", {"email": emails[-1], "password": PASSWORD}) if emails else (0, 0)
        check("SIGKILL: after restart the last acknowledged user logs in", s == 200, str(s))
        summary("faults", "SIGKILL during registrations and refreshes (6 clients, 3 s)",
                f"{len(emails)} registrations and {sum(chains.values())} rotations acknowledged; "
                f"{len(missing) + len(behind)} missing after restart; {in_flight_lost} requests failed (reset or refused) around the kill")
        del killed_at
    finally:
        srv.destroy()


def redis_policy(binary, pg):
    pg.create_db("fraise_redis")
    redis = PrivateRedis()
    common = {"DATABASE_URL": pg.url("fraise_redis"), "REDIS_URL": redis.url(), "ENABLE_RATE_LIMITING": "true",
              "RATE_LIMIT_AUTH_REQUESTS_PER_MINUTE": "1000", "RATE_LIMIT_REQUESTS_PER_MINUTE": "10000",
              "RATE_LIMIT_REDIS_PREFIX": f"rel{os.getpid()}:"}
    open_ = Server(binary, BASE_PORT + 2, {**common, "RATE_LIMIT_REDIS_FAILURE": "open"})
    closed = Server(binary, BASE_PORT + 3, {**common, "RATE_LIMIT_REDIS_FAILURE": "closed"})
    seq = iter(range(10**6))

    def bad_login():
        # A new address each time: the account lockout (shared by the nodes) must not answer.
        return {"email": f"nobody{next(seq)}@example.com", "password": "Wrong123!x"}
    try:
        check("Redis up: both nodes answer a bad login with 401",
              [call(p, "POST", "/auth/login", bad_login())[0] for p in (open_.port, closed.port)] == [401, 401])
        redis.stop()
        time.sleep(0.3)
        o = [call(open_.port, "POST", "/auth/login", bad_login())[0] for _ in range(5)]
        c = [call(closed.port, "POST", "/auth/login", bad_login()) for _ in range(5)]
        check("Redis down: RATE_LIMIT_REDIS_FAILURE=open lets requests through", o == [401] * 5, str(o))
        check("Redis down: RATE_LIMIT_REDIS_FAILURE=closed answers 503 SERVICE_UNAVAILABLE",
              [(s, code(b)) for s, b in c] == [(503, "SERVICE_UNAVAILABLE")] * 5, str([s for s, _ in c]))
        hc = call(closed.port, "GET", "/health")[0]
        ho = call(open_.port, "GET", "/health")[0]
        check("Redis down: /health is 503 on the closed node, 200 on the open one", (hc, ho) == (503, 200),
              f"{hc}, {ho}")
        redis.start()
        t0 = time.time()
        back = None
        while time.time() < t0 + 20:
            if call(closed.port, "POST", "/auth/login", bad_login())[0] == 401:
                back = time.time() - t0
                break
            time.sleep(0.1)
        check("Redis back: the closed node serves again without a restart", back is not None, f"{back}")
        summary("faults", "Redis stopped (two nodes, one per policy)",
                f"open: 5/5 let through (401); closed: 5/5 503; closed node serving again "
                f"{back:.1f} s after Redis restarted" if back is not None else "closed node never recovered")
    finally:
        open_.destroy()
        closed.destroy()
        redis.destroy()


def faults(binary):
    pg = PrivatePostgres()
    try:
        pg_restart_under_load(binary, pg)
        sigkill_durability(binary, pg)
        redis_policy(binary, pg)
    finally:
        pg.destroy()


def nodes(binary):
    pg = PrivatePostgres()
    redis = PrivateRedis()
    servers = []
    try:
        pg.create_db("fraise_nodes")
        env = {"DATABASE_URL": pg.url("fraise_nodes"), "REDIS_URL": redis.url(), "ENABLE_RATE_LIMITING": "true",
               "RATE_LIMIT_AUTH_REQUESTS_PER_MINUTE": "5", "RATE_LIMIT_REQUESTS_PER_MINUTE": "10000",
               # Each phase below is its own client, named by X-Forwarded-For from a trusted proxy.
               "TRUSTED_PROXIES": "127.0.0.1/32", "RATE_LIMIT_REDIS_PREFIX": f"reln{os.getpid()}:"}
        for i in range(3):
            servers.append(Server(binary, BASE_PORT + 10 + i, env))
        a, b, c = (s.port for s in servers)
        ip = lambda n: {"x-forwarded-for": f"198.51.100.{n}"}  # noqa: E731

        # Logout on one node: the others refuse the tokens at once.
        s, reg = register(a, "logout@example.com", headers=ip(1))
        check("register on node A", s == 201, str(s))
        check("the access token works on node B", call(b, "GET", "/auth/me", token=reg["access_token"])[0] == 200)
        s, _ = call(c, "POST", "/auth/logout", {"refresh_token": reg["refresh_token"]})
        check("logout on node C", s == 200, str(s))
        after = [call(p, "GET", "/auth/me", token=reg["access_token"])[0] for p in (a, b, c)]
        check("right after, the access token is refused on A, B and C", after == [401] * 3, str(after))
        s, body = call(b, "POST", "/auth/refresh", {"refresh_token": reg["refresh_token"]})
        check("and the refresh token on B", (s, code(body)) == (401, "INVALID_TOKEN"), str(s))

        # Theft across nodes: rotated on B and C, the first token replayed on A.
        s, reg = register(a, "theft@example.com", headers=ip(2))
        rt0 = reg["refresh_token"]
        s1, r1 = call(b, "POST", "/auth/refresh", {"refresh_token": rt0})
        s2, r2 = call(c, "POST", "/auth/refresh", {"refresh_token": r1["refresh_token"]})
        check("rotation on B then C", (s1, s2) == (200, 200))
        s, body = call(a, "POST", "/auth/refresh", {"refresh_token": rt0})
        check("replaying the first token on A is theft", (s, code(body)) == (403, "TOKEN_THEFT_DETECTED"), str(s))
        s, _ = call(b, "POST", "/auth/refresh", {"refresh_token": r2["refresh_token"]})
        m = call(c, "GET", "/auth/me", token=r2["access_token"])[0]
        check("the thief's newest tokens are dead on B and C", (s, m) == (401, 401), f"{s}, {m}")

        # The auth limit (5 a minute) holds in total: 15 attempts spread over three nodes.
        statuses = [call(p, "POST", "/auth/login", {"email": f"x{i}@example.com", "password": "Wrong123!x"},
                         headers=ip(3))[0] for i in range(5) for p in (a, b, c)]
        passed = len([s for s in statuses if s != 429])
        check("auth limit 5/min across three nodes: exactly 5 of 15 attempts pass", passed == 5
              and statuses.count(429) == 10, str(statuses))
        summary("nodes", "3 nodes, shared PostgreSQL + Redis",
                f"logout on C → 401 on A, B, C at once; replay on A after rotations on B, C → 403 and the chain dead "
                f"everywhere; auth limit 5/min: {passed} of 15 attempts over 3 nodes passed")
    finally:
        for s in servers:
            s.destroy()
        redis.destroy()
        pg.destroy()


def soak(binary, seconds):
    pg = PrivatePostgres()
    srv = None
    try:
        pg.create_db("fraise_soak")
        srv = Server(binary, BASE_PORT + 20, {"DATABASE_URL": pg.url("fraise_soak"), "HASH_QUEUE_SIZE": "256"})
        load = Load([srv.port], threads=6, prefix="soak", ops=("register", "login", "refresh", "refresh", "me", "me",
                                                                 "me", "logout"))
        samples = []
        t0 = time.time()
        while time.time() < t0 + seconds:
            samples.append((time.time() - t0, srv.rss_kib()))
            time.sleep(5)
        load.stop()
        samples.append((time.time() - t0, srv.rss_kib()))
        recs = load.records
        errors = [r for r in recs if r[2] >= 500 or r[2] == 0]
        unexpected = [r for r in recs if r[2] not in (200, 201) and not (r[1] == "me" and r[3] == "TOKEN_EXPIRED")]
        # Least-squares slope of RSS over the second half of the run: the first minutes fill
        # what is bounded (pools, allocator arenas, the session cache up to SESSION_CACHE_SIZE),
        # which a leak is not.
        pts = [(t, r) for t, r in samples if t >= seconds / 2]
        mt = sum(t for t, _ in pts) / len(pts)
        mr = sum(r for _, r in pts) / len(pts)
        var = sum((t - mt) ** 2 for t, _ in pts) or 1
        slope = sum((t - mt) * (r - mr) for t, r in pts) / var * 60  # KiB per minute
        check("soak: no 5xx and no dropped connection", not errors, f"{counts(errors)}")
        check("soak: every answer is a success", not unexpected, f"{counts(unexpected)}")
        first, last = samples[0][1], samples[-1][1]
        print(f"rss samples (s, KiB): {samples}")
        summary("soak", f"{seconds} s mixed traffic (6 clients)",
                f"{len(recs)} requests ({len(recs) / seconds:.0f}/s), {len(errors)} errors, "
                f"{len(unexpected)} non-2xx; RSS {first} → {last} KiB, slope {slope:+.0f} KiB/min over the second half")
    finally:
        if srv:
            srv.destroy()
        pg.destroy()


def memory(binary):
    """Bytes of anonymous memory kept per `/auth/me` once warm: the check that would have caught
    the Prometheus histograms keeping every sample until a scrape (~20 bytes per request)."""
    srv = Server(binary, BASE_PORT + 30, {})
    try:
        tokens = [register(srv.port, f"memory-{i}@example.com")[1]["access_token"] for i in range(4)]
        done = threading.Event()
        counts_by_thread = [0] * len(tokens)
        bad = []

        def client(i):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            headers = {"Authorization": f"Bearer {tokens[i]}"}
            while not done.is_set():
                conn.request("GET", "/auth/me", headers=headers)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    bad.append(r.status)
                counts_by_thread[i] += 1

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(tokens))]
        for t in threads:
            t.start()
        time.sleep(10)  # warm-up: arenas, pools, the session cache
        a0, n0, t0 = srv.anon_kib(), sum(counts_by_thread), time.time()
        while sum(counts_by_thread) - n0 < 200_000 and time.time() < t0 + 90:
            time.sleep(1)
        a1, n1 = srv.anon_kib(), sum(counts_by_thread)
        done.set()
        for t in threads:
            t.join(15)
        requests = n1 - n0
        per = (a1 - a0) * 1024 / max(requests, 1)
        check("memory: every /auth/me answered 200", not bad, f"{bad[:5]}")
        # glibc grows an arena in steps of 128 KiB and more, so the window must be long: 100,000
        # requests at 20 bytes each would be 2 MiB, several steps above the noise.
        check("memory: enough requests to see a leak of a few bytes each", requests >= 100_000, f"{requests}")
        check("memory: under 6 bytes of anonymous memory kept per request", per < 6,
              f"{a0} → {a1} KiB over {requests} requests = {per:.1f} B/request")
        summary("memory", f"GET /auth/me, {requests} requests after a 10 s warm-up (SQLite)",
                f"anonymous memory {a0} → {a1} KiB: {per:+.1f} bytes per request")
    finally:
        srv.destroy()


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        sys.exit(2)
    binary, part = sys.argv[1], sys.argv[2]
    if part == "faults":
        faults(binary)
    elif part == "nodes":
        nodes(binary)
    elif part == "memory":
        memory(binary)
    elif part == "soak":
        soak(binary, int(sys.argv[3]) if len(sys.argv) > 3 else 600)
    else:
        print(__doc__)
        sys.exit(2)
    if failures:
        print(f"{len(failures)} check(s) failed: {failures}")
        sys.exit(1)


if __name__ == "__main__":
    main()
