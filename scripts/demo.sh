#!/usr/bin/env bash
# The main job on the embedded default data (see README): prepare the built-in
# corpora, lock, price, launch through XManager and replay specs/tiny, and print
# the dry run of the 64-model "To Code, or Not To Code?" suite.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNIX=.venv/bin/runix
STORE=${RUNIX_DEMO_STORE:-.runix/store}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "runix validate specs/tiny";             $RUNIX validate specs/tiny
step "runix lock specs/tiny  (prepares the built-in corpora, tokenizer and token shards)"
$RUNIX lock specs/tiny
step "runix hash specs/tiny";                 $RUNIX hash specs/tiny
step "runix compile specs/tiny --dry-run";    $RUNIX compile specs/tiny --dry-run --store "$STORE"
step "runix launch specs/tiny  (XManager, local executor; a 3-generation chain + a 3-run matrix)"
$RUNIX launch specs/tiny --store "$STORE"
step "runix launch specs/tiny  (again: every run is a cache hit)"
$RUNIX launch specs/tiny --store "$STORE"
step "runix eval specs/tiny  (every run judged on held-out bytes per domain, not on its training loss)"
$RUNIX eval specs/tiny --store "$STORE"
step "runix compile specs/to_code --dry-run  (the 64-model suite on TPU v5e)"
$RUNIX compile specs/to_code --dry-run
cooldown=$($RUNIX hash specs/tiny | awk '$2 == "tiny-cooldown" {print $1}')
step "runix replay ${cooldown:0:12}  (tiny-cooldown, the third generation, and its evals)"
$RUNIX replay "$cooldown" --store "$STORE"
step "runix store verify --all";              $RUNIX store verify --all --store "$STORE"
if $RUNIX report --help >/dev/null 2>&1; then
  step "runix report specs/tiny";             $RUNIX report specs/tiny --store "$STORE"
fi
