"""What built runs measured of their own cost, read from the store for the dry run to price by.

Why: a price nobody corrects stays wrong. Every build writes timing.json
(runtime.timing: median step time with compile excluded, compile, startup
and checkpoint seconds, wall seconds and chip-hours) into its store entry;
`runix compile` reads those records back here and compiler.pricing uses
them: a run of the same accelerator and step shape (`step_key`) is priced
from the measured step time, another shape on the same accelerator from the
step-time model refitted to the measurements.

Only public Store methods are used (`built_hashes`, `read_json`), and
entries are read without re-hashing their files: a price is not a
determinism claim, and verifying every checkpoint of a large store would
make the dry run slow. An entry without timing.json (built before the
trainer wrote one) is skipped.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from compiler.spec import RunSpec
from compiler.step_time import StepShape

TIMING_FILE = "timing.json"  # runtime.run_dir.TIMING (the compiler does not import the runtime)


def step_key(spec: RunSpec) -> str:
    """What a step's time depends on, as canonical JSON: the accelerator, mesh, model, batch, dtypes and kernels.

    Not the data mixture, the number of steps, the schedule or the seeds:
    runs that differ only in those take the same time per step.
    """
    return json.dumps({
        "mesh": spec.mesh.model_dump(mode="json"),
        "model": spec.model.model_dump(mode="json", exclude={"preset"}),
        "batch": spec.batch.model_dump(mode="json"),
        "dtypes": spec.dtypes.model_dump(mode="json"),
        "kernels": spec.kernels.model_dump(mode="json"),
        "document_masking": spec.data.document_masking,
    }, sort_keys=True, separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One built run's timing record, with the shape it was measured on."""

    run_hash: str
    name: str
    accelerator: str
    key: str  # step_key of its spec
    shape: StepShape
    chips: int
    tokens_per_step: int
    steps: int
    state_bytes: int  # what one checkpoint writes (compiler.pricing.state_bytes)
    step_seconds: float
    compile_seconds: float
    startup_seconds: float
    checkpoint_seconds: float | None  # one save
    checkpoint_saves: int
    wall_seconds: float

    @property
    def seconds_per_token_per_chip(self) -> float:
        return self.step_seconds * self.chips / self.tokens_per_step

    @property
    def other_seconds_per_step(self) -> float:
        """Wall time not in the median steps, compile, startup or saves (slower steps, digests), per step."""
        saves = (self.checkpoint_seconds or 0.0) * self.checkpoint_saves
        rest = self.wall_seconds - self.step_seconds * self.steps - self.compile_seconds - self.startup_seconds - saves
        return max(0.0, rest) / self.steps

    @property
    def chip_hours(self) -> float:
        return self.wall_seconds * self.chips / 3600


def measurement(run_hash: str, document: dict[str, Any], timing: dict[str, Any]) -> Measurement | None:
    """A Measurement from an entry's spec.json and timing.json; None if the record has no step time."""
    from compiler.pricing import state_bytes

    if not isinstance(timing, dict) or not timing.get("step_seconds_median") or not timing.get("steps"):
        return None
    spec = RunSpec.model_validate(document["spec"])
    return Measurement(
        run_hash=run_hash, name=str(document.get("name", spec.name)),
        accelerator=str(getattr(spec.mesh.accelerator, "value", spec.mesh.accelerator)), key=step_key(spec),
        shape=StepShape.of(spec), chips=spec.mesh.chips, tokens_per_step=spec.tokens_per_step,
        steps=int(timing["steps"]), state_bytes=state_bytes(spec),
        step_seconds=float(timing["step_seconds_median"]), compile_seconds=float(timing.get("compile_seconds") or 0.0),
        startup_seconds=float(timing.get("startup_seconds") or 0.0),
        checkpoint_seconds=None if timing.get("checkpoint_seconds") is None else float(timing["checkpoint_seconds"]),
        checkpoint_saves=int(timing.get("checkpoint_saves") or 0), wall_seconds=float(timing["wall_seconds"]),
    )


def read_measurements(store) -> list[Measurement]:
    """Every built entry's measurement (a compiler.store.Store), by hash; entries without a record are skipped."""
    from compiler.store import StoreError

    found = []
    for run_hash in sorted(store.built_hashes()):
        try:
            timing = store.read_json(run_hash, TIMING_FILE, verify=False)
            document = store.read_json(run_hash, "spec.json", verify=False)
            m = measurement(run_hash, document, timing)
        except (StoreError, KeyError, TypeError, ValueError):
            continue  # no timing record (built before runix wrote one), or an unreadable one: not a price input
        if m is not None:
            found.append(m)
    return found
