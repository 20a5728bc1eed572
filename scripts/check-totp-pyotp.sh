#!/usr/bin/env bash
# TOTP against an independent implementation: a started server, and PyOTP (PyPI) computing the
# codes from the secret the server hands out. Enrolls, logs in with the second step, checks that
# the same code is refused the second time, logs in with a recovery code, and checks that the
# otpauth:// URI parses back (issuer, account, secret) in PyOTP.
#
# Usage: scripts/check-totp-pyotp.sh [path/to/fraise-auth]   (default: target/release/fraise-auth)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-${CARGO_TARGET_DIR:-target}/release/fraise-auth}
port=${TOTP_CHECK_PORT:-18091}

python3 -c 'import pyotp' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check 'pyotp>=2.9'

data=$(mktemp -d)
DATA_DIR="$data" PORT="$port" HOST=127.0.0.1 RATE_LIMIT_AUTH_REQUESTS_PER_MINUTE=100 ARGON2_MEMORY_COST=8192 ARGON2_TIME_COST=1 ARGON2_PARALLELISM=1 \
  "$bin" serve >"$data/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$port/health/ready" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$data/server.log" >&2; echo "server exited" >&2; exit 1; }
  sleep 0.1
done

python3 - "http://127.0.0.1:$port" <<'PY'
import json, sys, time, urllib.error, urllib.request
import pyotp

base = sys.argv[1]

def call(method, path, body=None, bearer=None):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body or {}).encode())
    req.add_header("content-type", "application/json")
    if bearer:
        req.add_header("authorization", "Bearer " + bearer)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)

def expect(got, status, code=None):
    assert got[0] == status, got
    if code:
        assert got[1]["detail"]["code"] == code, got
    return got[1]

email, password = "pyotp@example.com", "TestPass123!"
access = expect(call("POST", "/auth/register", {"email": email, "password": password}), 201)["access_token"]
setup = expect(call("POST", "/auth/mfa/totp/setup", bearer=access), 200)
parsed = pyotp.parse_uri(setup["otpauth_uri"])
assert parsed.secret == setup["secret"] and parsed.name == email and parsed.issuer == "fraise-auth", vars(parsed)
assert parsed.digits == 6 and parsed.interval == 30, vars(parsed)
totp = pyotp.TOTP(setup["secret"])

def fresh_code(after=None):
    """A code of a step later than `after` (waits for the next step when needed)."""
    while True:
        step = int(time.time()) // 30
        if after is None or step > after:
            return step, totp.at(step * 30)
        time.sleep(30 - time.time() % 30 + 0.2)

step, code = fresh_code()
codes = expect(call("POST", "/auth/mfa/totp/confirm", {"code": code}, bearer=access), 200)["recovery_codes"]
assert len(codes) == 10
me = expect(call("GET", "/auth/me", bearer=access), 200)
assert me["mfa_enabled"] is True and me["mfa_methods"] == ["totp"], me

login = expect(call("POST", "/auth/login", {"email": email, "password": password}), 200)
assert login["mfa_required"] is True and "access_token" not in login, login
# The confirming code is spent: the same step is refused (replay).
expect(call("POST", "/auth/mfa/verify", {"mfa_token": login["mfa_token"], "code": code}), 401, "INVALID_MFA_CODE")
step, code = fresh_code(after=step)
done = expect(call("POST", "/auth/mfa/verify", {"mfa_token": login["mfa_token"], "code": code}), 200)
expect(call("GET", "/auth/me", bearer=done["access_token"]), 200)

login = expect(call("POST", "/auth/login", {"email": email, "password": password}), 200)
expect(call("POST", "/auth/mfa/verify", {"mfa_token": login["mfa_token"], "code": code}), 401, "INVALID_MFA_CODE")
expect(call("POST", "/auth/mfa/verify", {"mfa_token": login["mfa_token"], "code": codes[0]}), 200)
print("pyotp: enrolled, verified a PyOTP code, replay refused, recovery code accepted, otpauth URI parsed")
PY
