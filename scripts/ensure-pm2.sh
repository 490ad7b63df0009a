#!/usr/bin/env bash
# PM2 for the process-manager tests (tests/production): the pinned version from the npm registry into
# .tools/pm2 (git-ignored). Node.js and npm come from the machine (Debian's nodejs/npm if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PM2_VERSION=7.0.4
# the version from package.json: asking pm2 itself would start its daemon
if [[ -x .tools/pm2/node_modules/.bin/pm2 ]] && [[ $(node -p "require('./.tools/pm2/node_modules/pm2/package.json').version" \
     2>/dev/null) == "$PM2_VERSION" ]]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  apt-get install -y -qq nodejs npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
fi
mkdir -p .tools/pm2
npm install --silent --no-audit --no-fund --prefix .tools/pm2 "pm2@$PM2_VERSION" >/dev/null
