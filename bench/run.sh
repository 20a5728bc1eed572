#!/usr/bin/env bash
# The HTTP benchmark suite (issue 7): builds the release binary, runs every scenario against
# PostgreSQL and SQLite with wrk, writes bench/RESULTS.md, bench/results.json and bench/chart.svg.
# Needs wrk (Debian: apt-get install wrk) and PostgreSQL at BENCH_DATABASE_URL
# (default postgres://postgres@127.0.0.1:5432/postgres), and valgrind to refresh the function
# layout first (scripts/symbol-order.py), and chrt (util-linux) for the control. RUNS (3) and
# DURATION (10 s) tune it.
# Run it on an otherwise idle machine: the figures are only as quiet as the box.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
# The chart drawer first, on its own: built in one command with the server, the dev-dependencies'
# features would be unified into the server's crates, giving it other symbol names than the
# binary the layout list below is made from.
cargo build --release --quiet --example bench_chart
# The release layout puts the functions run from start to idle, then the request path, first
# (build.rs): refresh the list for the code being measured, or a stale one inflates idle RSS.
if command -v valgrind >/dev/null; then
  scripts/symbol-order.py "${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
else
  echo "valgrind not found: keeping link/symbol-order.txt as it is (apt-get install valgrind)" >&2
fi
cargo build --release --quiet --bin fraise-auth
python3 bench/http_bench.py "$CARGO_TARGET_DIR/release/fraise-auth"
"$CARGO_TARGET_DIR/release/examples/bench_chart" bench/results.json bench/chart.svg
echo "wrote bench/RESULTS.md, bench/results.json, bench/chart.svg"
