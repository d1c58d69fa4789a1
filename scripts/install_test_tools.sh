#!/usr/bin/env bash
# Tools the test suite needs beyond Python packages: Debian's chromium, to load
# the report page headless (tests/report/test_report_browser.py). Idempotent.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "runix: chromium is missing and installing it needs root (apt-get install -y chromium)" >&2
  exit 0
fi
echo "runix: installing Debian's chromium for the report's browser test…"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
