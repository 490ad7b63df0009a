#!/usr/bin/env bash
# The viewer's browser test drives Debian's chromium (never a browser downloaded by playwright).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium is missing: install it with 'sudo apt-get install -y chromium'" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
