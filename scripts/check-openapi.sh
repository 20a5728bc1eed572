#!/usr/bin/env bash
# Validates a started server's /openapi.json with openapi-spec-validator (PyPI) as OpenAPI 3.1,
# with the default configuration and with a non-default prefix and header tenancy, and checks
# that /docs/ serves the page from the binary.
#
# Usage: scripts/check-openapi.sh [path/to/fraise-auth]   (default: target/release/fraise-auth)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-${CARGO_TARGET_DIR:-target}/release/fraise-auth}
port=${OPENAPI_CHECK_PORT:-18090}

python3 -c 'import openapi_spec_validator' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check 'openapi-spec-validator>=0.7'

check() { # check LABEL [ENV=VALUE...]
  local label=$1
  shift
  local data pid
  data=$(mktemp -d)
  env "$@" DATA_DIR="$data" PORT="$port" HOST=127.0.0.1 ARGON2_MEMORY_COST=8192 ARGON2_TIME_COST=1 \
    ARGON2_PARALLELISM=1 "$bin" serve >"$data/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/health/live" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$data/server.log" >&2; echo "server exited" >&2; exit 1; }
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/openapi.json" >"$data/openapi.json"
  curl -fsS -o /dev/null "http://127.0.0.1:$port/docs/swagger-ui-bundle.js"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  python3 - "$data/openapi.json" "$label" <<'PY'
import json, sys
from openapi_spec_validator import validate
doc = json.load(open(sys.argv[1]))
validate(doc)  # raises on any violation of the OpenAPI 3.1 schema
assert doc["openapi"].startswith("3.1"), doc["openapi"]
ops = sum(1 for item in doc["paths"].values() for m in item if m in ("get", "post", "put", "patch", "delete"))
print(f"openapi ({sys.argv[2]}): valid OpenAPI {doc['openapi']}, {len(doc['paths'])} paths, {ops} operations")
PY
  rm -rf "$data"
}

check default
check "prefix /api/auth, header tenancy, CSRF" AUTH_PREFIX=/api/auth TENANT_RESOLUTION_METHOD=header \
  ENABLE_CSRF_PROTECTION=true
