"""`runix compile` prices the eval jobs a spec set implies, against what its store has built (real CLI)."""

from __future__ import annotations

import json

import pytest

from compiler.eval_store import EvalStore
from compiler.evals import spec_set_derivations
from compiler.lock import load_locked_spec_set
from compiler.store import Store
from tests.compiler.test_pricing import build_with_timing
from tests.conftest import REPO, run_cli


def _plan(store_path) -> dict:
    result = run_cli("compile", "specs/tiny", "--json", "--store", str(store_path))
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_evals_are_priced_until_built_and_a_built_run_still_owes_its_missing_ones(tmp_path):
    empty = _plan(tmp_path / "empty")
    runs = {run["name"]: run for run in empty["runs"]}
    code = runs["tiny-code"]
    assert code["evals"]["to_build"] == 15 and code["evals"]["checkpoint_loads"] == 3
    assert code["overheads"]["evals"]["chip_hours"] > 0
    assert code["overhead_chip_hours"] == pytest.approx(sum(o["chip_hours"] for o in code["overheads"].values()))
    totals = empty["totals"]
    assert totals["eval_chip_hours"] == pytest.approx(sum(r["overheads"]["evals"]["chip_hours"] for r in runs.values()))
    assert totals["total_chip_hours"] == pytest.approx(totals["chip_hours"] + totals["overhead_chip_hours"])

    # tiny-code built (with its timing record) and 5 of its 15 evals built
    locked = load_locked_spec_set([REPO / "specs" / "tiny"])
    store = Store(str(tmp_path / "store"))
    build_with_timing(store, locked, "tiny-code", 0.02)
    code_hash = locked.spec_set.by_name()["tiny-code"].hash
    evals = EvalStore(store)
    mine = [d for d in spec_set_derivations(locked.spec_set.runs, locked.lock) if d.run_hash == code_hash]
    for derivation in mine[:5]:
        evals.publish(derivation.record(), {"metrics": {}})
    built = _plan(tmp_path / "store")
    runs = {run["name"]: run for run in built["runs"]}
    code = runs["tiny-code"]
    assert code["status"] == "built" and code["evals"] == {**code["evals"], "to_build": 10, "built": 5}
    assert "10 evals to build, 5 built" in code["overheads"]["evals"]["source"]
    pending = [r for r in runs.values() if r["status"] == "to build"]
    owed = code["overheads"]["evals"]["chip_hours"]
    assert built["totals"]["total_chip_hours"] == pytest.approx(sum(r["total_chip_hours"] for r in pending) + owed)

    table = run_cli("compile", "specs/tiny", "--dry-run", "--store", str(tmp_path / "store"))
    assert table.returncode == 0, table.stderr
    assert "evals: 55 evals to build over 6 runs" in table.stdout and "5 evals already built cost nothing" in table.stdout
