#!/usr/bin/env bash
# Install the pinned toolchain into .venv from the hashed lock (idempotent: does
# nothing when the lock is unchanged). Everything runix needs is installed here,
# never by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
# The Debian packages two built-in corpora are made from (markup, code-adjacent);
# skipped when already unpacked under .runix/data/debian.
bash scripts/install_corpora.sh .runix/data

stamp=".venv/.runix-installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then exit 0; fi
echo "runix: installing the pinned toolchain into .venv (first time: about 1-2 minutes)…"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
log=$(mktemp)
pip_install() {
  if ! .venv/bin/pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1; then
    grep -v '^WARNING: Location' "$log" >&2; exit 1
  fi
}
pip_install --require-hashes --no-deps -r requirements.lock
pip_install --no-deps --no-build-isolation -e .
rm -f "$log" .venv/.runix-installed-*
touch "$stamp"
echo "runix: toolchain ready."
