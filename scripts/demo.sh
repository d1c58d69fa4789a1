#!/usr/bin/env bash
# The main job on the embedded default data: validate, hash and price specs/tiny.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNIX=.venv/bin/runix
echo "== runix validate specs/tiny"; $RUNIX validate specs/tiny
echo "== runix hash specs/tiny";     $RUNIX hash specs/tiny
if $RUNIX compile --help >/dev/null 2>&1; then
  echo "== runix compile specs/tiny --dry-run"; $RUNIX compile specs/tiny --dry-run
fi
