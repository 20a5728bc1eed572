#!/usr/bin/env bash
# Instruction counts per GET /auth/me (valgrind --tool=callgrind): repeatable whatever else the
# machine is doing, so a code change can be judged on a noisy box. Starts the release server
# under callgrind on PostgreSQL, registers one user, sends /auth/me for SECONDS (default 20) with
# wrk, stops the server and prints instructions per request for the whole connection handling
# and for the service's authenticate(), plus the top self-cost functions.
# Usage: bench/profile.sh [BINARY]   (default target/release/fraise-auth)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/fraise-auth}"
SECONDS_RUN="${SECONDS_RUN:-20}"
PORT=18191
WORK=$(mktemp -d)
PG="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
SCHEMA="prof_$$"
trap 'psql -qAt "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1; [ -n "${KEEP:-}" ] && cp "$WORK/cg.out" "$KEEP"; rm -rf "$WORK"' EXIT
DATA_DIR="$WORK" JWT_SECRET_KEY=bench-secret-0123456789-bench-secret-0123456789 DATABASE_URL="$PG" \
  DEFAULT_SCHEMA="$SCHEMA" ARGON2_MEMORY_COST=8192 ARGON2_TIME_COST=1 ARGON2_PARALLELISM=1 \
  RATE_LIMIT_REQUESTS_PER_MINUTE=100000000 LOG_LEVEL=warn PORT=$PORT \
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 200); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/health/ready" && break; sleep 0.25; done
curl -sf -X POST -H 'content-type: application/json' -d '{"email":"prof@example.com","password":"BenchPass123!"}' \
  "http://127.0.0.1:$PORT/auth/register" | python3 -c 'import sys,json; print(json.load(sys.stdin)["access_token"])' >"$WORK/tok"
OUT=$(TOKENS="$WORK/tok" PREFIX=/auth wrk -t2 -c2 -d"${SECONDS_RUN}s" -s bench/wrk/me.lua "http://127.0.0.1:$PORT")
REQUESTS=$(echo "$OUT" | grep -Eo '[0-9]+ requests in' | grep -Eo '^[0-9]+')
kill -TERM $SERVER; wait $SERVER || true
ANN=$(callgrind_annotate --inclusive=yes "$WORK/cg.out" 2>/dev/null)
per() { echo "$ANN" | grep -m1 -F "$1" | awk '{gsub(",","",$1); print $1}'; }
CONN=$(per 'axum::serve::handle_connection::{{closure}}::{{closure}} ')
AUTH=$(per 'fraise_core::service::AuthService::authenticate::{{closure}} ')
echo "requests: $REQUESTS"
echo "instructions per /auth/me, whole connection handling: $((CONN / REQUESTS))"
echo "instructions per /auth/me, authenticate(): $((AUTH / REQUESTS))"
callgrind_annotate "$WORK/cg.out" 2>/dev/null | sed -n '/^Ir/,$p' | sed -n 3,14p | cut -c1-150
