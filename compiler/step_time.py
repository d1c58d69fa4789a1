"""How long one training step takes on an accelerator, as a function of the model's size.

Why a model and not one MFU per chip: utilization depends on size. Matmul
work per token grows as L·d² (blocks) and d·V (output layer), memory-bound
work (norms, activations, residuals, rotary embeddings, the float32
vocabulary softmax) as L·d and V, so small models and big vocabularies pay
proportionally more for the bytes they move. The published small-model runs
(compiler/step_time.json, from ../shared/BRIEF.md §8 and llm-foundry) go from
19% to 47% MFU on TPU v5p for 130M–1.2B models: one constant cannot price
both ends.

The model is roofline-additive, per token and per chip (seconds):

    t = (F_blocks·r_mm + F_output) / (peak · e_mm)     dense matmuls
      + F_attention·r_attn / (peak · e_attn)            QKᵀ and AV (causal)
      + (β_L · L·d · r_mem + β_V · V) / HBM bandwidth   memory-bound bytes

with F the training FLOPs of compiler.flops (6 per weight, 6·L·H·h·S for
attention, 6·d·V for the output layer), peak and bandwidth the chip's
(compiler.hardware), and four constants per accelerator family: the matmul
and attention efficiencies e_mm and e_attn, and the bytes each token moves
per (layer × d_model) element (β_L) and per vocabulary entry (β_V, the
float32 logits, softmax and their gradient). Rematerialization recomputes
the forward pass of what it drops (r = 4/3: one more forward on top of
forward + 2× backward): `full` recomputes the blocks' matmuls, attention and
elementwise work; `dots` keeps matmul outputs but recomputes attention (its
batched score matmuls are not saved, ../shared/BRIEF.md §8) and the
elementwise work; the output layer and the loss sit outside the remat
blocks. The model is linear in θ = (1/e_mm, 1/e_attn, β_L, β_V), so it is
fitted by bounded least squares on relative error (`fit`: efficiencies at
most 1, bytes at least 0), exactly and in pure Python: the compiler never imports jax (nor numpy).

A family's constants hold for each of its chips with that chip's own peak
and bandwidth: that is what moves a fit between chips by their FLOP-per-byte
ratio (v5e ≈ 240 FLOP/byte pays more for memory-bound work than v5p ≈ 166).
A family with no measurements of its own (cpu) borrows another's.

Calibration (`refit`): when built runs of an accelerator have measured step
times, θ is pulled toward them from the published fit with a small ridge
penalty (relative to the published constants), so one measurement corrects
the term that dominates it and many measurements take over.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from compiler.flops import parameter_count
from compiler.hardware import HardwareProfile, profile
from compiler.spec import RunSpec

DATA_FILE = pathlib.Path(__file__).with_name("step_time.json")
RECOMPUTE = 4 / 3  # one more forward pass on top of forward + backward (2× forward)
TERMS = ("matmul", "attention", "layer_bytes", "vocab_bytes")


@dataclasses.dataclass(frozen=True)
class StepShape:
    """What the step time depends on: the model's size, the context, and the remat policy."""

    d_model: int
    n_layers: int
    vocab_size: int
    sequence_length: int
    matmul_params: int  # the blocks' matmul weights (attention + MLP)
    attention_width: int  # heads × head_dim
    remat: str  # none | dots | full

    @classmethod
    def of(cls, spec: RunSpec) -> StepShape:
        m = spec.model
        return cls(m.d_model, m.n_layers, m.vocab_size, spec.batch.sequence_length, parameter_count(m).matmul,
                   m.n_heads * m.head_dim, getattr(m.remat, "value", m.remat))

    @property
    def model_flops_per_token(self) -> int:
        """compiler.flops' count: the numerator of MFU (no recomputation)."""
        return (6 * self.matmul_params + 6 * self.n_layers * self.attention_width * self.sequence_length
                + 6 * self.d_model * self.vocab_size)

    def terms(self, peak: float, bandwidth: float) -> tuple[float, float, float, float]:
        """Seconds per token per chip for a unit of each constant of θ (see the module docstring)."""
        r_mm = RECOMPUTE if self.remat == "full" else 1.0
        r_other = 1.0 if self.remat == "none" else RECOMPUTE
        blocks = 6 * self.matmul_params
        output = 6 * self.d_model * self.vocab_size
        attention = 6 * self.n_layers * self.attention_width * self.sequence_length
        return ((blocks * r_mm + output) / peak, attention * r_other / peak,
                self.n_layers * self.d_model * r_other / bandwidth, self.vocab_size / bandwidth)


@dataclasses.dataclass(frozen=True)
class Constants:
    """θ of one family: 1/e_mm, 1/e_attn, β_L (bytes), β_V (bytes)."""

    theta: tuple[float, float, float, float]

    @property
    def matmul_efficiency(self) -> float:
        return 1 / self.theta[0] if self.theta[0] else math.inf

    @property
    def attention_efficiency(self) -> float:
        return 1 / self.theta[1] if self.theta[1] else math.inf

    def to_json(self) -> dict[str, float]:
        """Efficiencies (null: the term came out free) and bytes, as compiler/step_time.json keeps them."""
        return {"matmul_efficiency": _round(self.matmul_efficiency), "attention_efficiency": _round(self.attention_efficiency),
                "layer_bytes_per_token": _round(self.theta[2]), "vocab_bytes_per_token": _round(self.theta[3])}

    @classmethod
    def from_json(cls, data: Mapping[str, float]) -> Constants:
        inv = [1 / data[k] if data[k] else 0.0 for k in ("matmul_efficiency", "attention_efficiency")]
        return cls((inv[0], inv[1], float(data["layer_bytes_per_token"]), float(data["vocab_bytes_per_token"])))

    def seconds_per_token(self, shape: StepShape, hardware: HardwareProfile) -> float:
        return _dot(shape.terms(hardware.peak_flops, hardware.hbm_bytes_per_s), self.theta)

    def forward_seconds_per_token(self, shape: StepShape, hardware: HardwareProfile) -> float:
        """A forward pass alone (an eval): a third of the step without remat, each term weighed as forward + 2× backward."""
        forward = dataclasses.replace(shape, remat="none")
        return _dot(forward.terms(hardware.peak_flops, hardware.hbm_bytes_per_s), self.theta) / 3


@dataclasses.dataclass(frozen=True)
class Point:
    """One published measurement: a model shape on a chip and its training tokens/s per chip."""

    id: str
    chip: str
    shape: StepShape
    tokens_per_s_per_chip: float
    source: str

    @property
    def seconds_per_token(self) -> float:
        return 1 / self.tokens_per_s_per_chip

    def terms(self) -> tuple[float, float, float, float]:
        hw = profile(self.chip)
        return self.shape.terms(hw.peak_flops, hw.hbm_bytes_per_s)


@dataclasses.dataclass(frozen=True)
class ModelData:
    """compiler/step_time.json, parsed."""

    families: Mapping[str, Mapping[str, Any]]
    overheads: Mapping[str, Any]
    points: tuple[Point, ...]

    def family_of(self, accelerator: str) -> str:
        for name, family in self.families.items():
            if accelerator in family["chips"]:
                return name
        raise KeyError(f"no step-time family lists accelerator {accelerator!r} ({DATA_FILE.name})")

    def constants(self, accelerator: str) -> tuple[Constants, str]:
        """The constants priced for `accelerator`, and one line saying where they come from."""
        name = self.family_of(accelerator)
        family = self.families[name]
        if "borrow" in family:
            lender = self.families[family["borrow"]]
            how = (f"{family['borrow']} constants (fitted on {self.fitted_count(family['borrow'])} {lender['fitted_on']} "
                   f"points) moved to {accelerator} by its peak and bandwidth")
            return Constants.from_json(lender["constants"]), how
        how = f"{name} constants fitted on {self.fitted_count(name)} {family['fitted_on']} points"
        if family["fitted_on"] != accelerator:
            how += f", moved to {accelerator} by its peak and bandwidth"
        return Constants.from_json(family["constants"]), how

    def family_points(self, family: str) -> list[Point]:
        chips = set(self.families[family]["chips"])
        return [p for p in self.points if p.chip in chips]

    def fitted_count(self, family: str) -> int:
        return len(self.family_points(family))


def load(path: pathlib.Path = DATA_FILE) -> ModelData:
    data = json.loads(path.read_text(encoding="utf-8"))
    points = tuple(
        Point(p["id"], p["chip"], StepShape(p["d_model"], p["n_layers"], p["vocab_size"], p["sequence_length"],
                                             p["matmul_params"], p["attention_width"], p["remat"]),
              float(p["tokens_per_s_per_chip"]), p["source"])
        for p in data["points"]
    )
    return ModelData(data["families"], data["overheads"], points)


# --------------------------------------------------------------------------- fitting (pure Python, 4 unknowns)


LOWER_BOUNDS = (1.0, 1.0, 0.0, 0.0)
"""θ's physical floor: no efficiency above 1 (1/e ≥ 1), no negative bytes."""


def fit(rows: Sequence[Sequence[float]], targets: Sequence[float],
        lower: Sequence[float] = LOWER_BOUNDS) -> tuple[float, ...]:
    """θ ≥ lower minimizing Σ((rows·θ − y)/y)²: exact bounded least squares by trying every active set.

    With θ = lower + φ, φ ≥ 0 this is non-negative least squares; four
    unknowns make 16 subsets of free variables, and the best feasible
    unconstrained solution over them is the optimum (the problem is convex).
    Without the floor the published TPU points alone would "explain" their
    times with free matmuls and costly attention: the bounds keep the fit
    physical where the data cannot tell the terms apart.
    """
    k = len(rows[0])
    a = [[x / y for x in row] for row, y in zip(rows, targets)]
    b = [1 - _dot(row, lower) for row in a]
    best, best_err = None, math.inf
    for size in range(k + 1):
        for subset in itertools.combinations(range(k), size):
            phi = [0.0] * k
            if subset:
                solution = _least_squares([[row[j] for j in subset] for row in a], b)
                if solution is None or min(solution) < 0:
                    continue
                for j, v in zip(subset, solution):
                    phi[j] = v
            err = sum((_dot(row, phi) - y) ** 2 for row, y in zip(a, b))
            if err < best_err - 1e-15:
                best, best_err = tuple(lo + f for lo, f in zip(lower, phi)), err
    if best is None:
        raise ValueError("no bounded fit")
    return best


def refit(prior: Constants, rows: Sequence[Sequence[float]], targets: Sequence[float], strength: float = 1e-3) -> Constants:
    """θ = θ₀·(1 + δ) minimizing Σ(relative error)² + strength·Σδ², each θ kept ≥ 2% of θ₀.

    The ridge is relative to the published constants, so with one measured
    run the correction goes mostly to the term that dominates that run, and
    with several runs of different shapes the data decide.
    """
    theta0 = prior.theta
    k = len(theta0)
    u = [[x * t / y for x, t in zip(row, theta0)] for row, y in zip(rows, targets)]
    lhs = [[sum(r[i] * r[j] for r in u) + (strength if i == j else 0.0) for j in range(k)] for i in range(k)]
    rhs = [sum(r[i] * (1 - sum(r)) for r in u) for i in range(k)]
    delta = _solve(lhs, rhs) or [0.0] * k
    return Constants(tuple(t * max(0.02, 1 + d) for t, d in zip(theta0, delta)))


def fit_points(points: Sequence[Point], tie_attention: bool = False) -> Constants:
    """The constants fitted on `points` (compiler/step_time.json's `tie_attention` per family).

    `tie_attention` prices attention at the matmul efficiency: needed when
    every point has one sequence length, since attention FLOPs (6·L·H·h·S)
    and per-layer bytes (L·d) then grow alike and no fit can tell them apart.
    """
    rows = [p.terms() for p in points]
    targets = [p.seconds_per_token for p in points]
    if not tie_attention:
        return Constants(fit(rows, targets))
    t = fit([(r[0] + r[1], r[2], r[3]) for r in rows], targets, lower=(LOWER_BOUNDS[0], *LOWER_BOUNDS[2:]))
    return Constants((t[0], t[0], t[1], t[2]))


def leave_one_out(points: Sequence[Point], tie_attention: bool = False) -> list[tuple[Point, float, float]]:
    """(point, predicted s/token fitted without it, its relative error) for every point."""
    out = []
    for i, point in enumerate(points):
        constants = fit_points([p for j, p in enumerate(points) if j != i], tie_attention)
        predicted = _dot(point.terms(), constants.theta)
        out.append((point, predicted, predicted / point.seconds_per_token - 1))
    return out


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def _least_squares(a: Sequence[Sequence[float]], b: Sequence[float]) -> list[float] | None:
    k = len(a[0])
    lhs = [[sum(row[i] * row[j] for row in a) for j in range(k)] for i in range(k)]
    rhs = [sum(row[i] * y for row, y in zip(a, b)) for i in range(k)]
    return _solve(lhs, rhs)


def _solve(lhs: list[list[float]], rhs: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting; None for a (numerically) singular system."""
    n = len(rhs)
    m = [row[:] + [v] for row, v in zip(lhs, rhs)]
    scale = max(abs(x) for row in lhs for x in row) or 1.0
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) <= 1e-12 * scale:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col:
                f = m[r][col] / m[col][col]
                m[r] = [x - f * y for x, y in zip(m[r], m[col])]
    return [m[i][n] / m[i][i] for i in range(n)]


def _round(x: float) -> float | None:
    return float(f"{x:.6g}") if math.isfinite(x) else None
