"""The price of one run: its steps, priced by model or by measurement, and what it pays beyond them.

Why its own stage: a team budgeting 64 runs needs to know where each number
came from and how to correct it. `price_run` is pure: the spec, its
accelerator's profile, the step-time model's data (compiler.step_time) and
the measurements of built runs (compiler.calibration) in, a `Price` out.

Steps, in order of preference:
  --mfu X      every run at one model-FLOPs utilization: FLOPs ÷ (peak × X)
  measured     built runs of the same accelerator and step shape
               (calibration.step_key) exist: their median step time
  calibrated   built runs of the accelerator exist, of other shapes: the
               step-time model with its constants refitted to them
               (step_time.refit), for this run's shape
  model        the step-time model with the family's published fit
The MFU each run is priced at is compiler.flops' FLOPs per token ÷ (peak ×
priced seconds per token per chip), whichever way the time was found.

Overheads, each in chip-hours (all chips of the mesh wait):
  compile      the step's compile: measured (median of the same shape's builds,
               else of the accelerator's) or step_time.json's line for the family
  startup      trainer start to its step loop (state, parent weights, data
               pipeline): measured only, 0 until a run of the accelerator is built
  checkpoints  saves at the spec's cadence (every `checkpoint.every` steps and at
               the end) × seconds per save: measured on the same shape, scaled by
               state bytes from another shape, else state bytes ÷ the assumed
               write bandwidth of the run's hosts
  other        the rest of a measured build's wall time (slower-than-median
               steps, parameter digests), per step, same shape only
  evals        the run's eval jobs still to build (compiler.eval_pricing): forward
               tokens at the forward share of this price's step time, plus one
               checkpoint load per evaluated step at the checkpoint bandwidth
               above; 0 when no lock is given (evals are hashed with its digests)
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

from compiler.calibration import Measurement, step_key
from compiler.eval_pricing import EvalCost, RunEvals, eval_cost
from compiler.flops import parameter_count, training_flops
from compiler.hardware import HardwareProfile
from compiler.memory import DTYPE_BYTES, value
from compiler.spec import RunSpec
from compiler.step_time import ModelData, StepShape, refit

SOURCE_MFU, SOURCE_MEASURED, SOURCE_CALIBRATED, SOURCE_MODEL = "--mfu", "measured", "calibrated", "model"
OVERHEADS = ("compile", "startup", "checkpoints", "other", "evals")


@dataclasses.dataclass(frozen=True)
class Overhead:
    seconds: float  # wall seconds the run's chips spend on it
    source: str

    def chip_hours(self, chips: int) -> float:
        return self.seconds * chips / 3600


@dataclasses.dataclass(frozen=True)
class Price:
    source: str  # SOURCE_*
    detail: str  # one line: where the step time comes from
    built_runs: int  # measurements it rests on (0 for model and --mfu)
    seconds_per_step: float
    mfu: float
    step_chip_hours: float
    overheads: dict[str, Overhead]  # OVERHEADS, in that order
    chips: int
    checkpoint_saves: int
    evals: EvalCost | None = None  # the run's eval jobs still to build, None when not known (no lock)

    @property
    def overhead_chip_hours(self) -> float:
        return sum(o.chip_hours(self.chips) for o in self.overheads.values())

    @property
    def total_chip_hours(self) -> float:
        return self.step_chip_hours + self.overhead_chip_hours

    @property
    def label(self) -> str:
        """The table's short form: model, measured×2, calibrated×3, --mfu."""
        return f"{self.source}×{self.built_runs}" if self.built_runs else self.source


def state_bytes(spec: RunSpec) -> int:
    """Bytes one checkpoint writes: parameters and the two AdamW moments in the parameter dtype."""
    return 3 * parameter_count(spec.model).total * DTYPE_BYTES[spec.dtypes.params]


def checkpoint_saves(spec: RunSpec) -> int:
    """Saves at the spec's cadence, as runtime.train makes them: every `every` steps and at the end."""
    steps = spec.total_steps
    every = spec.checkpoint.every or steps
    return steps // every + (1 if steps % every else 0)


def price_run(spec: RunSpec, hardware: HardwareProfile, data: ModelData, measurements: Sequence[Measurement] = (),
              mfu: float | None = None, evals: RunEvals | None = None) -> Price:
    """The run's price; `evals` are its eval jobs still to build (None: not known, e.g. no lock)."""
    accelerator = value(spec.mesh.accelerator)
    chips, steps = spec.mesh.chips, spec.total_steps
    shape = StepShape.of(spec)
    flops_per_token = training_flops(spec).per_token
    key = step_key(spec)
    on_chip = [m for m in measurements if m.accelerator == accelerator]
    same = [m for m in on_chip if m.key == key]
    built = 0
    constants, how = data.constants(accelerator)
    if mfu is not None:
        per_token = flops_per_token / (hardware.peak_flops * mfu)
        source, detail = SOURCE_MFU, f"FLOPs ÷ (peak × {mfu:g}) for every run (--mfu)"
        forward_share = 1 / 3  # MFU counts forward + 2× backward, nothing recomputed
    elif same:
        per_token = statistics.median(m.seconds_per_token_per_chip for m in same)
        source, built = SOURCE_MEASURED, len(same)
        detail = f"median step time of {_runs(len(same))} of this shape on {accelerator}"
    else:
        if on_chip:
            terms = [m.shape.terms(hardware.peak_flops, hardware.hbm_bytes_per_s) for m in on_chip]
            constants = refit(constants, terms, [m.seconds_per_token_per_chip for m in on_chip])
            source, built = SOURCE_CALIBRATED, len(on_chip)
            detail = f"step-time model ({how}) refitted to {_runs(len(on_chip))} of other shapes on {accelerator}"
        else:
            source, detail = SOURCE_MODEL, f"step-time model: {how}"
        per_token = constants.seconds_per_token(shape, hardware)
    if mfu is None:
        forward_share = constants.forward_seconds_per_token(shape, hardware) / constants.seconds_per_token(shape, hardware)
    seconds_per_step = per_token * spec.tokens_per_step / chips
    saves = checkpoint_saves(spec)
    overheads = {
        "compile": _compile(spec, data, same, on_chip, accelerator),
        "startup": _measured("startup_seconds", same, on_chip, accelerator, "not measured until a run is built here"),
        "checkpoints": _checkpoints(spec, hardware, data, same, on_chip, saves),
        "other": (Overhead(statistics.median(m.other_seconds_per_step for m in same) * steps,
                           f"measured on {_runs(len(same))} of this shape") if same and mfu is None
                  else Overhead(0.0, "measured on built runs of this shape only")),
    }
    cost = None
    if evals is None:
        overheads["evals"] = Overhead(0.0, data.overheads["evals"]["source"])
    else:
        per_load, how = _seconds_per_save(spec, hardware, data, same, on_chip)
        cost = eval_cost(evals, chips, spec.tokens_per_step, per_token * forward_share, per_load, how)
        overheads["evals"] = Overhead(cost.seconds, cost.source)
    return Price(source, detail, built, seconds_per_step, flops_per_token / (hardware.peak_flops * per_token),
                 per_token * spec.total_tokens / 3600, overheads, chips, saves, cost)


def _runs(n: int) -> str:
    return f"{n} built run{'s' if n != 1 else ''}"


def _measured(field: str, same: Sequence[Measurement], on_chip: Sequence[Measurement], accelerator: str,
              otherwise: str) -> Overhead:
    if same:
        return Overhead(statistics.median(getattr(m, field) for m in same), f"measured on {_runs(len(same))} of this shape")
    if on_chip:
        return Overhead(statistics.median(getattr(m, field) for m in on_chip),
                        f"measured on {_runs(len(on_chip))} of other shapes on {accelerator}")
    return Overhead(0.0, otherwise)


def _compile(spec: RunSpec, data: ModelData, same, on_chip, accelerator: str) -> Overhead:
    if same or on_chip:
        return _measured("compile_seconds", same, on_chip, accelerator, "")
    table = data.overheads["compile"]
    family = table.get(data.family_of(accelerator), table["default"])
    if "seconds" in family:
        return Overhead(float(family["seconds"]), family["source"])
    (p0, s0), (p1, s1) = ((p["params"], p["seconds"]) for p in family["points"])
    params = parameter_count(spec.model).total
    return Overhead(max(family["min_seconds"], s0 + (s1 - s0) * (params - p0) / (p1 - p0)), family["source"])


def _checkpoints(spec: RunSpec, hardware: HardwareProfile, data: ModelData, same, on_chip, saves: int) -> Overhead:
    per_save, source = _seconds_per_save(spec, hardware, data, same, on_chip)
    return Overhead(per_save * saves, source)


def _seconds_per_save(spec: RunSpec, hardware: HardwareProfile, data: ModelData, same, on_chip) -> tuple[float, str]:
    """Seconds one checkpoint of the whole state takes to write (a load is priced the same), and where that is from."""
    size = state_bytes(spec)
    timed_same = [m for m in same if m.checkpoint_seconds is not None]
    timed = [m for m in on_chip if m.checkpoint_seconds is not None and m.state_bytes]
    if timed_same:
        return (statistics.median(m.checkpoint_seconds for m in timed_same),
                f"seconds per save measured on {_runs(len(timed_same))} of this shape")
    if timed:
        return (statistics.median(m.checkpoint_seconds * size / m.state_bytes for m in timed),
                f"seconds per save measured on {_runs(len(timed))} of other shapes, scaled by state bytes")
    hosts = max(1, math.ceil(spec.mesh.chips / hardware.chips_per_host))
    bandwidth = data.overheads["checkpoint"]["bytes_per_s_per_host"]
    return size / (bandwidth * hosts), (f"state bytes ÷ ({bandwidth / 1e9:g} GB/s × hosts) per save: "
                                        f"{data.overheads['checkpoint']['source']}")
