#!/usr/bin/env bash
# Runs the troubleshooting guide's "Auth Flow Tester" (tests/seed/test_auth_flow.py, the guide's
# script unmodified) against a started release binary on 127.0.0.1:8000, as the guide does.
#
# Usage: scripts/seed-flow-test.sh [path/to/fraise-auth]   (default: target/release/fraise-auth)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-${CARGO_TARGET_DIR:-target}/release/fraise-auth}
seed=../shared/seed/troubleshooting.md

if [ -f "$seed" ]; then
  if ! python3 scripts/extract-seed-tester.py "$seed" | cmp -s - tests/seed/test_auth_flow.py; then
    echo "tests/seed/test_auth_flow.py differs from the guide's Auth Flow Tester" >&2
    exit 1
  fi
  echo "seed tester: identical to the guide's block"
fi

python3 -c 'import aiohttp' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check 'aiohttp>=3.9'

if curl -fsS -o /dev/null http://127.0.0.1:8000/health/live 2>/dev/null; then
  echo "port 8000 is already serving something; the guide's tester needs it" >&2
  exit 1
fi

data=$(mktemp -d)
log="$data/server.log"
# The guide's default Argon2id parameters: this is the real thing, not a test profile.
DATA_DIR="$data" PORT=8000 HOST=127.0.0.1 "$bin" serve >"$log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT

for _ in $(seq 1 100); do
  curl -fsS -o /dev/null http://127.0.0.1:8000/health/ready 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "server exited" >&2; exit 1; }
  sleep 0.1
done

out=$(cd tests/seed && python3 test_auth_flow.py 2>&1) || true
echo "$out"
if ! grep -q "All authentication tests passed" <<<"$out"; then
  echo "--- server log ---" >&2
  cat "$log" >&2
  echo "seed auth flow tester FAILED" >&2
  exit 1
fi
echo "seed auth flow tester: passed"

# Graceful shutdown: SIGTERM ends the server with status 0 after in-flight requests.
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
if [ "$status" -ne 0 ] || ! grep -q "shut down cleanly" "$log"; then
  cat "$log" >&2
  echo "server did not shut down cleanly on SIGTERM (status $status)" >&2
  exit 1
fi
echo "graceful shutdown on SIGTERM: ok"
