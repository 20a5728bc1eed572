#!/usr/bin/env bash
# Two fraise-auth processes sharing one Redis: the auth rate limit holds in total, not per node;
# then Redis is stopped mid-test and each node follows its RATE_LIMIT_REDIS_FAILURE policy
# (node A open, node B closed). Uses its own Redis on a private loopback port, so the machine's
# Redis is never touched.
#
# Usage: scripts/two-nodes-redis.sh [path/to/fraise-auth]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-${CARGO_TARGET_DIR:-target}/release/fraise-auth}
redis_port=${REDIS_TEST_PORT:-6391}
a_port=18101
b_port=18102
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$work" \
  --logfile "$work/redis.log" &
redis_pid=$!
pids+=("$redis_pid")
for _ in $(seq 1 40); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

start_node() { # name port policy
  mkdir -p "$work/$1"
  DATA_DIR="$work/$1" PORT="$2" REDIS_URL="redis://127.0.0.1:$redis_port/0" RATE_LIMIT_REDIS_FAILURE="$3" \
    RATE_LIMIT_AUTH_REQUESTS_PER_MINUTE=3 ARGON2_MEMORY_COST=8192 ARGON2_TIME_COST=1 ARGON2_PARALLELISM=1 \
    "$bin" serve >"$work/$1.log" 2>&1 &
  pids+=("$!")
}
start_node a "$a_port" open
start_node b "$b_port" closed
for port in "$a_port" "$b_port"; do
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$port/health/ready" 2>/dev/null && break; sleep 0.1; done
done

login() { # port -> status
  curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$1/auth/login" \
    -H 'content-type: application/json' -d '{"email":"nobody@example.com","password":"Wrong123!x"}'
}
health() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health"; }

failures=0
expect() { # what got want
  if [ "$2" = "$3" ]; then echo "ok   $1: $2"; else echo "FAIL $1: got $2, want $3"; failures=$((failures + 1)); fi
}

expect "node A, attempt 1" "$(login $a_port)" 401
expect "node B, attempt 2" "$(login $b_port)" 401
expect "node A, attempt 3" "$(login $a_port)" 401
expect "node B, attempt 4 (limit of 3 holds across nodes)" "$(login $b_port)" 429
expect "node A, attempt 5" "$(login $a_port)" 429

kill "$redis_pid"
wait "$redis_pid" 2>/dev/null || true
sleep 0.3
expect "Redis down: node A (open) lets the request through" "$(login $a_port)" 401
expect "Redis down: node B (closed) refuses" "$(login $b_port)" 503
expect "Redis down: node A /health (fail-open keeps serving)" "$(health $a_port)" 200
expect "Redis down: node B /health" "$(health $b_port)" 503

if [ "$failures" -ne 0 ]; then
  tail -n 20 "$work"/a.log "$work"/b.log >&2
  exit 1
fi
echo "two nodes sharing Redis: all checks passed"
