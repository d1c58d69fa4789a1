"""A project holding the real tiny spec set, locked, with a store of runs built with known metrics.

`build_tiny_project` is the one place that knows the on-disk format of a built
run: spec.json and lock.json come from the real Store.begin_build with the
run's lock entries; metrics.jsonl lines are written as runtime.train writes
them; digest.json by runtime.digest itself. Update it here when those formats
change.

The lock is built with tests.lockfixture's fixed resolver and environment (as
tests/compiler/test_store.py does) into the temporary project, so these tests
need no corpora and do not depend on the repository's lockfile being fresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pathlib
import shutil

import numpy as np
import pytest

from compiler.lock import build_lock, default_lockfile, load_locked_spec_set, write_lock
from compiler.specset import load_spec_set
from compiler.store import Store
from runtime import digest as digest_lib
from tests.conftest import REPO
from tests.lockfixture import FIXED_ENVIRONMENT, FixedResolver

TOKENS_PER_S = 20480.0  # 1024 tokens per step → 0.05 s per step
BUILT = ("tiny-code", "tiny-code-text", "tiny-cooldown", "tiny-sweep-code0", "tiny-sweep-code50")
BUILDING = "tiny-sweep-code100"  # begun, never finished: "not built (building)"
REPLAYS = {  # tiny-code: in the store's log, as `runix replay` appends it; tiny-sweep-code0: in the entry
    "tiny-code": [{"hash": "…", "name": "tiny-code", "steps": [0, 60], "bit_exact": True, "difference": None}],
    "tiny-sweep-code0": [{"identical": True, "steps": None},
                         {"identical": False, "steps": [10, 30], "first_difference": "step 17: loss differs"}],
}


def loss_at(name: str, step: int) -> float:
    """A known, float32-exact loss per run and step; a chained run continues its parent's curve with a bump."""
    floor, before, bump = {"tiny-code": (3.0, 0, 0.0), "tiny-code-text": (2.8, 60, 0.4), "tiny-cooldown": (2.6, 100, 0.1),
                           "tiny-sweep-code0": (3.3, 0, 0.0), "tiny-sweep-code50": (3.15, 0, 0.0),
                           "tiny-sweep-code100": (3.0, 0, 0.0)}[name]
    return float(np.float32(floor + 4.0 * math.exp(-(before + step) / 15.0) + bump * math.exp(-step / 4.0)))


@dataclasses.dataclass
class TinyProject:
    root: pathlib.Path  # holds pyproject.toml, specs/tiny, lockfiles/tiny.lock.json, .runix/store
    store: Store
    runs: dict  # name → CompiledRun, hashed with the lock


def build_tiny_project(root: pathlib.Path) -> TinyProject:
    (root / "pyproject.toml").write_text("")
    shutil.copytree(REPO / "specs" / "tiny", root / "specs" / "tiny")
    specs = root / "specs" / "tiny"
    write_lock(default_lockfile([specs]), build_lock(load_spec_set([specs]), ("specs/tiny",), FixedResolver(), FIXED_ENVIRONMENT))
    locked = load_locked_spec_set([specs])
    store = Store(str(root / ".runix" / "store"))
    runs = {run.name: run for run in locked.spec_set.runs}
    for name in BUILT:
        run = runs[name]
        build = store.begin_build(run, locked.lock.entries_for(run))
        spec = run.spec
        record = digest_lib.DigestRecord(run.hash, run.name, spec.total_steps)
        with open(build.path / "metrics.jsonl", "w", encoding="utf-8") as metrics:
            for step in range(spec.total_steps):
                loss = loss_at(name, step)
                record.losses.append(digest_lib.loss_bits(loss))
                fields = {"step": step, "loss": loss, "lr": 1e-3, "grad_norm": 1.0,
                          "tokens": (step + 1) * spec.tokens_per_step, "tokens_per_s": TOKENS_PER_S}
                metrics.write(json.dumps(fields, sort_keys=True) + "\n")
        record.final_params_sha256 = hashlib.sha256(name.encode()).hexdigest()
        digest_lib.write_digest(build.path / "digest.json", record)
        entry = pathlib.Path(build.finish())
        log = root / ".runix" / "store" / ".replays" / f"{run.hash}-{name}.jsonl"
        if name != "tiny-code":
            log = entry / "replays.jsonl"
        for line in REPLAYS.get(name, ()):
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a", encoding="utf-8") as f:
                f.write(json.dumps(line, sort_keys=True) + "\n")
    _publish_evals(store, locked, [runs[name] for name in BUILT])
    pending = store.begin_build(runs[BUILDING], locked.lock.entries_for(runs[BUILDING]))
    pending.abort()  # keeps .building/<hash>-<name>/: a build in progress
    return TinyProject(root, store, runs)


def eval_value(name: str, set_name: str, step: int) -> float:
    """A known eval metric per run, set and step: bits/byte falls with steps; accuracy rises."""
    base = {"tiny-code": 2.0, "tiny-code-text": 1.8, "tiny-cooldown": 1.7, "tiny-sweep-code0": 2.4,
            "tiny-sweep-code50": 2.2}[name] + {"code": 0.0, "text": 0.3, "markup": 0.5, "code-adjacent": 0.2}.get(set_name, 0)
    if set_name == "next-line":
        return round(0.25 + 0.01 * step, 6)
    return round(base + 1.0 / step, 6)


def _publish_evals(store: Store, locked, runs) -> None:
    """Every eval of the built runs, published as runtime.evaluate publishes them, with known metrics."""
    from compiler.eval_store import EvalStore
    from compiler.evals import spec_set_derivations

    evals = EvalStore(store)
    for derivation in spec_set_derivations(runs, locked.lock):
        value = eval_value(derivation.run_name, derivation.set_name, derivation.step)
        if derivation.kind == "choice":
            result = {"kind": "choice", "items": 64, "acc": value, "acc_norm": value, "choice_logprob_bits": []}
        else:
            result = {"kind": "heldout", "bytes": 32768, "tokens": 9000, "documents": 3, "bytes_sha256": "0" * 64,
                      "nll_sum": value * 32768 * math.log(2), "loss_per_token": value * 32768 * math.log(2) / 9000,
                      "bits_per_byte": value, "batch_nll_bits": []}
        evals.publish(derivation.record(), result)


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory) -> TinyProject:
    return build_tiny_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def tiny_report_data(tiny_project):
    from compiler.report import collect

    locked = load_locked_spec_set([tiny_project.root / "specs" / "tiny"])
    return collect(locked.spec_set, tiny_project.store, spec_set_name="tiny", paths=["specs/tiny"],
                   lockfile="lockfiles/tiny.lock.json", lock=locked.lock)


@pytest.fixture(scope="module")
def tiny_report(tiny_report_data, tmp_path_factory) -> pathlib.Path:
    """The rendered report folder."""
    from compiler.report import write_report

    return write_report(tiny_report_data, tmp_path_factory.mktemp("report") / "tiny").parent
