#!/usr/bin/env bash
# The browser side: the TypeScript client built with tsc (and the hosted page's committed copy
# checked against that build), its vitest unit tests, then the end-to-end tests in Debian's
# headless Chromium (playwright-core, no browser download) against the given binary.
# Usage: scripts/browser-e2e.sh PATH/TO/fraise-auth
set -euo pipefail
bin="$(realpath "${1:?usage: $0 PATH/TO/fraise-auth}")"
cd "$(dirname "$0")/../clients/js"

if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
fi
/usr/bin/chromium --version
node --version

start=$(date +%s)
npm ci --no-audit --no-fund --loglevel=error
npm run -s build
npm run -s check-ui
npm run -s typecheck
npm test -- --reporter=dot
npm run -s e2e -- "$bin"
echo "browser checks took $(($(date +%s) - start)) s"
