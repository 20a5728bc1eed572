#!/usr/bin/env bash
# The reliability suite: fuzzing, property tests, JWT attacks, races, contract fuzzing, faults,
# several nodes and soak, ending in a table of figures. See README, "Reliability".
#
# Usage: scripts/reliability.sh [--ci|--full] [PART...]
#   PART: fuzz proptest attacks races schemathesis faults nodes memory soak (default: all but soak;
#         --full adds soak)
#   --ci   (default) short runs: fuzz 30 s per target, proptest 64/16 cases, schemathesis 30
#          examples per operation — the figures .ci/run prints.
#   --full long runs: fuzz FUZZ_SECONDS (300) per target, proptest 1000/100 cases, schemathesis
#          300 examples per operation (≥ 10,000 requests), soak SOAK_SECONDS (600).
#          FUZZ_MERGE=1 merges the inputs that add coverage into fuzz/corpus/ (then commit them).
# Needs: a release binary (built if missing), cargo-fuzz (`cargo install cargo-fuzz`) for `fuzz`,
# schemathesis (`pip install schemathesis`) for `schemathesis`, PostgreSQL 15 binaries and
# redis-server for faults/nodes/soak (private instances on private ports; the shared ones are
# never touched), and the shared PostgreSQL/Redis for the cargo tests, as for `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=ci
if [ "${1:-}" = "--ci" ] || [ "${1:-}" = "--full" ]; then
  mode=${1#--}
  shift
fi
parts=("$@")
if [ ${#parts[@]} -eq 0 ]; then
  parts=(fuzz proptest attacks races schemathesis faults nodes memory)
  [ "$mode" = full ] && parts+=(soak)
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR=never
bin="$CARGO_TARGET_DIR/release/fraise-auth"
work=$(mktemp -d)
summary="$work/summary.tsv"
touch "$summary"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
failed=()
row() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$summary"; }
fail() { failed+=("$1"); row "$1" "FAILED" "$2"; }
need_bin() { [ -x "$bin" ] || cargo build --release --bin fraise-auth; }

run_fuzz() {
  local secs
  if [ "$mode" = full ]; then secs=${FUZZ_SECONDS:-300}; else secs=${FUZZ_SECONDS:-30}; fi
  command -v cargo-fuzz >/dev/null || { fail fuzz "cargo-fuzz not installed (cargo install cargo-fuzz)"; return; }
  for target in refresh_token jwt_verify json_request; do
    local out="$work/fuzz-$target.log" new="$work/corpus-$target"
    mkdir -p "$new"
    # New inputs go to a scratch folder; the checked-in corpus is read, never rewritten.
    # -s none: the code under test forbids unsafe, so ASan adds cost and finds nothing; -a keeps
    # debug assertions and overflow checks on.
    if RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz -s none -a --target-dir "$CARGO_TARGET_DIR/fuzz" \
      "$target" "$new" "fuzz/corpus/$target" -- -max_total_time="$secs" -print_final_stats=1 \
      -timeout=10 -rss_limit_mb=2048 >"$out" 2>&1; then
      local execs corpus
      execs=$(grep -Eo 'stat::number_of_executed_units: [0-9]+' "$out" | awk '{print $2}' | tail -1)
      corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
      if [ "${FUZZ_MERGE:-0}" = 1 ]; then
        # Keep the inputs that add coverage: merged (minimised) into the checked-in corpus.
        RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz -s none -a --target-dir "$CARGO_TARGET_DIR/fuzz" \
          "$target" "fuzz/corpus/$target" "$new" -- -merge=1 >>"$out" 2>&1
      fi
      row "fuzz $target" "${secs} s, ${execs:-?} execs ($((${execs:-0} / secs))/s), corpus ${corpus} + $(find "$new" -type f | wc -l) new" "0 crashes"
    else
      tail -n 40 "$out" >&2
      fail "fuzz $target" "crash or error: see fuzz/artifacts/$target"
    fi
  done
}

run_proptest() {
  local out="$work/proptest.log"
  if [ "$mode" = full ]; then
    export PROPTEST_CASES=${PROPTEST_CASES:-1000} MODEL_CASES_PG=${MODEL_CASES_PG:-100}
  fi
  if cargo test --test api -- model:: --nocapture >"$out" 2>&1; then
    grep -E '^proptest-model' "$out" | while read -r line; do
      row "proptest ${line#proptest-model }" "" "model and implementation agree"
    done
    # The rows above are `proptest Sqlite: N cases passed in T s`: split them.
    sed -i -E 's/^(proptest [A-Za-z]+): ([0-9]+ cases) passed in ([0-9.]+ s)\t\t/\1\t\2 (random sequences of ≤ 39 steps), \3\t/' "$summary"
    unset PROPTEST_CASES MODEL_CASES_PG
  else
    tail -n 60 "$out" >&2
    fail proptest "model and implementation disagree (see the shrunk case above)"
  fi
}

run_attacks() {
  local out="$work/attacks.log"
  if cargo test --test api -- attacks:: >"$out" 2>&1; then
    local n
    n=$(grep -Eo 'test result: ok\. [0-9]+ passed' "$out" | grep -Eo '[0-9]+' | head -1)
    row "JWT attacks" "${n} tests: alg none, HS256 with the public key (RS256, EdDSA), kid injection, expired, nbf/iat, iss/aud, refresh-as-access, tampering, 100 KB, non-base64" "all refused (401), no 5xx"
  else
    tail -n 60 "$out" >&2
    fail "JWT attacks" "a forged token was accepted or answered 5xx"
  fi
}

run_races() {
  local out="$work/races.log"
  local started=$SECONDS
  if cargo test --test api -- races:: >"$out" 2>&1; then
    row "races" "1,000 concurrent refreshes over 100 sessions (SQLite, PostgreSQL)" "0 5xx, 1,000 × 200, 0 forked chains in the DB (each counter 1, one audited rotation), all 100 sessions usable"
    row "races" "one email registered 50× at once (SQLite, PostgreSQL)" "exactly one 201, 49 × 409 EMAIL_ALREADY_EXISTS ($((SECONDS - started)) s for both parts)"
  else
    tail -n 60 "$out" >&2
    fail races "see the failed assertion above"
  fi
}

# Requests the server answered so far, and how many of them were 5xx: from its own /metrics
# (fraise_http_requests_total), so the count is the server's, not the client's estimate.
served() { # port -> "total fivexx"
  curl -s "http://127.0.0.1:$1/metrics" | python3 -c '
import re, sys
total = bad = 0
for line in sys.stdin:
    m = re.match(r"fraise_http_requests_total\{(.*)\} ([0-9.e+]+)$", line)
    if m:
        n = int(float(m.group(2)))
        total += n
        if re.search(r"status=\"5", m.group(1)):
            bad += n
print(total, bad)'
}

run_schemathesis() {
  command -v st >/dev/null || { fail schemathesis "schemathesis not installed (pip install schemathesis)"; return; }
  need_bin
  local n port=18391 data="$work/st-data"
  if [ "$mode" = full ]; then n=${ST_EXAMPLES:-300}; else n=${ST_EXAMPLES:-30}; fi
  mkdir -p "$data"
  DATA_DIR="$data" PORT=$port ENABLE_RATE_LIMITING=false ARGON2_MEMORY_COST=8192 ARGON2_TIME_COST=1 \
    ARGON2_PARALLELISM=1 HASH_QUEUE_SIZE=1024 MAX_SESSIONS_PER_USER=1000 LOG_LEVEL=warn \
    "$bin" serve >"$work/st-server.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$port/health/ready" 2>/dev/null && break; sleep 0.1; done
  # Conformance checks only: "positive data acceptance" would demand 2xx for any schema-valid
  # body, but a schema-valid password can still fail the password policy (400 by design).
  local started=$SECONDS
  local checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
  local ok=1
  # Pass 1: every operation, with whatever credentials schemathesis generates.
  # (Run from the scratch folder: schemathesis keeps a .schemathesis/ cache in its working directory.)
  (cd "$work" && st run "http://127.0.0.1:$port/openapi.json" -n "$n" --seed 1 --checks "$checks") \
    >"$work/st-anonymous.log" 2>&1 || { ok=0; tail -n 80 "$work/st-anonymous.log" >&2; }
  # Pass 2: the authenticated operations with a real bearer token (logout excluded: it would end
  # the token's session and leave the rest of the pass at 401).
  local access
  access=$(curl -s "http://127.0.0.1:$port/auth/register" -H 'content-type: application/json' \
    -d '{"email":"st@example.com","password":"TestPass123!"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  (cd "$work" && st run "http://127.0.0.1:$port/openapi.json" -n "$n" --seed 2 --checks "$checks" \
    --generation-with-security-parameters false --exclude-path /auth/logout \
    -H "Authorization: Bearer $access") >"$work/st-bearer.log" 2>&1 || { ok=0; tail -n 80 "$work/st-bearer.log" >&2; }
  local total bad
  read -r total bad < <(served "$port")
  if [ "$ok" = 1 ] && [ "$bad" = 0 ]; then
    row schemathesis "${n} examples per operation, 2 passes (anonymous; real bearer): ${total} requests served in $((SECONDS - started)) s" "0 5xx, every response conforms to /openapi.json"
  else
    fail schemathesis "${total} requests, ${bad} 5xx; see the failures above"
  fi
}

run_py() { # part [args]
  need_bin
  local out="$work/$1.log"
  if python3 scripts/reliability.py "$bin" "$@" 2>&1 | tee "$out"; then :; else fail "$1" "see the FAIL lines above"; fi
  grep -E '^SUMMARY' "$out" | cut -f2- >>"$summary" || true
}

for part in "${parts[@]}"; do
  echo "== reliability: $part ($mode)"
  case "$part" in
    fuzz) run_fuzz ;;
    proptest) run_proptest ;;
    attacks) run_attacks ;;
    races) run_races ;;
    schemathesis) run_schemathesis ;;
    faults) run_py faults ;;
    nodes) run_py nodes ;;
    memory) run_py memory ;;
    soak) run_py soak "${SOAK_SECONDS:-600}" ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done

echo
echo "== reliability summary ($mode)"
{
  printf 'part\tfigure\tresult\n'
  cat "$summary"
} | python3 -c '
import sys
rows = [l.rstrip("\n").split("\t") for l in sys.stdin if l.strip()]
print("| " + " | ".join(rows[0]) + " |")
print("|---|---|---|")
for r in rows[1:]:
    print("| " + " | ".join((r + ["", "", ""])[:3]) + " |")
'
if [ ${#failed[@]} -ne 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
