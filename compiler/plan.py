"""The plan: every run of a spec set with its price, parents before children.

Why a stage of its own: `runix compile --dry-run` must answer "what will this
cost, and will it fit?" before anything launches, from the hashed spec set
alone (as Nix computes output paths before building). `plan` is a pure
function of the compiled spec set, the set of hashes already built, and an
optional MFU override; it reads no clock, file or environment and never
imports jax.

Per run: parameters and training FLOPs (compiler.flops), peak memory per chip
(compiler.memory) against the accelerator's (compiler.hardware), and its
price (compiler.pricing): the steps' chip-hours from the size-aware step-time
model (compiler.step_time), from measurements of built runs of the same
accelerator (compiler.calibration, passed in as `measurements`), or at one
MFU (`mfu`), with the MFU it is priced at; plus its overheads (compile,
startup, checkpoint saves, evaluations), so that
    chip-hours = FLOPs ÷ (peak FLOP/s per chip × priced MFU) ÷ 3600   (the steps)
    total chip-hours = chip-hours + overhead chip-hours
    wall-clock hours = total chip-hours ÷ chips of the run's mesh.
Where `runix compile --aot` has compiled a run's step with this machine's
toolchain, the run also carries XLA's fit verdict (compiler.aot_check: peak
per chip against the chip's memory); otherwise it says it was not checked.
A run whose hash is in `built` is skipped on launch, as Nix skips a built
derivation: its status is "built" and it adds nothing to the totals.

With the spec set's lock (compiler.lock.Lock), each run also carries its
unresolved inputs (`Lock.unresolved_inputs`: sources or a tokenizer that
cannot be read here, e.g. the real-scale recipes' hf:// data). Such a run is
still planned and priced — its price depends on its token budget, not on the
data — but `runix launch` refuses it until `runix lock` resolves them. Data
sizes come from the lock where it counted them (`Lock.token_count`) and from
`declared_tokens` otherwise (compiler.validate checks those): a source whose
budget needs more passes over its counted tokens than `max_repeats` allows is
refused here, as the declared case is by validate, before anything launches.

A run that cannot fit in its chips' memory, or whose mesh cannot split its
model, is bad input: `plan` raises SpecError naming the run and the numbers.
(A batch that does not split over data × fsdp is already refused by
compiler.validate.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from compiler.aot_check import AotCheck, AotIndex, check as aot_fit_check
from compiler.data_checks import data_problems
from compiler.eval_pricing import run_evals
from compiler.flops import FlopCount, ParameterCount, parameter_count, training_flops
from compiler.hardware import HardwareProfile, profile
from compiler.memory import MemoryEstimate, memory_per_chip, value
from compiler.pricing import Price, price_run
from compiler.problems import Problem, SpecError
from compiler.specset import CompiledRun, SpecSet
from compiler.step_time import load as load_step_time

if TYPE_CHECKING:
    from compiler.calibration import Measurement
    from compiler.lock import Lock

PLAN_FORMAT = 1
"""Version of the JSON layout of `Plan.to_json` (compiler/PLAN_JSON.md); bumped on any breaking change."""

STATUS_TO_BUILD, STATUS_BUILT = "to build", "built"


@dataclasses.dataclass(frozen=True)
class UnresolvedInput:
    """An input of a run that its lock could not resolve here (compiler.lock.Lock.unresolved_inputs)."""

    what: str  # "source <name>" or "tokenizer"
    uri: str  # the source URI, or the tokenizer's lock key
    reason: str


@dataclasses.dataclass(frozen=True)
class RunPlan:
    run: CompiledRun
    built: bool
    hardware: HardwareProfile
    mfu: float
    params: ParameterCount
    flops: FlopCount
    memory: MemoryEstimate
    price: Price
    unresolved: tuple[UnresolvedInput, ...] = ()  # empty: every input is locked (or no lock was given)
    aot_check: AotCheck | None = None  # XLA's fit verdict from `runix compile --aot` (compiler.aot_check)

    @property
    def can_launch_here(self) -> bool:
        """Every input resolved to content here (launch refuses the run otherwise)."""
        return not self.unresolved

    @property
    def status(self) -> str:
        return STATUS_BUILT if self.built else STATUS_TO_BUILD

    @property
    def chip_hours(self) -> float:
        """Estimated chip-hours of the run's steps (whether or not it is built): FLOPs ÷ (peak × mfu) ÷ 3600."""
        return self.price.step_chip_hours

    @property
    def overhead_chip_hours(self) -> float:
        """Compile, startup, checkpoint saves and evaluations (compiler.pricing)."""
        return self.price.overhead_chip_hours

    @property
    def total_chip_hours(self) -> float:
        return self.price.total_chip_hours

    @property
    def eval_chip_hours(self) -> float:
        """The run's evals still to build (part of its overheads; still owed when the run itself is built)."""
        return self.price.overheads["evals"].chip_hours(self.run.spec.mesh.chips)

    @property
    def wall_hours(self) -> float:
        return self.total_chip_hours / self.run.spec.mesh.chips


@dataclasses.dataclass(frozen=True)
class Totals:
    """Sums over the runs still to build (a built run costs nothing but its evals still to build)."""

    runs: int
    to_build: int
    built: int
    tokens: int
    flops: int
    chip_hours: float  # the runs' steps
    wall_hours: float  # the runs one after another, overheads included
    critical_path_hours: float  # the longest parent → child chain, if every independent run had its own chips
    unresolved: int = 0  # runs to build with an input unresolved here: priced, but launch refuses them
    overhead_chip_hours: float = 0.0  # compile, startup, checkpoint saves, evaluations (of built runs too)
    total_chip_hours: float = 0.0  # chip_hours + overhead_chip_hours: what the bill says
    eval_chip_hours: float = 0.0  # the evals still to build, of every run (built ones included)


@dataclasses.dataclass(frozen=True)
class Plan:
    runs: tuple[RunPlan, ...]  # parents before children, as in the spec set
    mfu_override: float | None

    def hardware(self) -> list[HardwareProfile]:
        """The profiles the runs use, by name."""
        return sorted({r.hardware.name: r.hardware for r in self.runs}.values(), key=lambda hw: hw.name)

    def totals(self) -> Totals:
        pending = [r for r in self.runs if not r.built]
        owed = sum(r.eval_chip_hours for r in self.runs if r.built)  # launch builds a built run's missing evals
        finish: dict[str, float] = {}
        for r in self.runs:  # parents first
            start = finish.get(r.run.parent_name, 0.0) if r.run.parent_name else 0.0
            finish[r.run.name] = start + (0.0 if r.built else r.wall_hours)
        return Totals(
            runs=len(self.runs),
            to_build=len(pending),
            built=len(self.runs) - len(pending),
            tokens=sum(r.run.spec.total_tokens for r in pending),
            flops=sum(r.flops.total for r in pending),
            chip_hours=sum(r.chip_hours for r in pending),
            wall_hours=sum(r.wall_hours for r in pending),
            critical_path_hours=max(finish.values(), default=0.0),
            unresolved=sum(1 for r in pending if r.unresolved),
            overhead_chip_hours=sum(r.overhead_chip_hours for r in pending) + owed,
            total_chip_hours=sum(r.total_chip_hours for r in pending) + owed,
            eval_chip_hours=sum(r.eval_chip_hours for r in self.runs),
        )

    def to_json(self) -> dict[str, Any]:
        """The plan as plain JSON data; every key is documented in compiler/PLAN_JSON.md."""
        totals = self.totals()
        return {
            "format": PLAN_FORMAT,
            "mfu_override": self.mfu_override,
            "hardware": {
                hw.name: {
                    "peak_flops_per_chip": hw.peak_flops,
                    "memory_bytes_per_chip": hw.memory_bytes,
                    "memory_shared_by_host": hw.memory_shared,
                    "chips_per_host": hw.chips_per_host,
                    "default_mfu": hw.default_mfu,
                    "source": hw.source,
                    "hbm_bytes_per_s_per_chip": hw.hbm_bytes_per_s,
                }
                for hw in self.hardware()
            },
            "runs": [_run_json(r) for r in self.runs],
            "totals": dataclasses.asdict(totals),
        }


def _run_json(r: RunPlan) -> dict[str, Any]:
    spec, run = r.run.spec, r.run
    axes = spec.mesh.axes
    return {
        "name": run.name,
        "hash": run.hash,
        "short_hash": run.short_hash,
        "parent_name": run.parent_name,
        "parent_hash": run.parent_hash,
        "status": r.status,
        "location": str(run.location),
        "accelerator": value(spec.mesh.accelerator),
        "chips": spec.mesh.chips,
        "mesh": {"data": axes.data, "fsdp": axes.fsdp, "tensor": axes.tensor},
        "steps": spec.total_steps,
        "tokens": spec.total_tokens,
        "sequences_per_step": spec.batch.sequences,
        "sequence_length": spec.batch.sequence_length,
        "parameters": {
            "total": r.params.total,
            "non_embedding": r.params.non_embedding,
            "embedding": r.params.embedding,
            "output": r.params.output,
        },
        "flops": {
            "per_token": r.flops.per_token,
            "dense_per_token": r.flops.dense_per_token,
            "attention_per_token": r.flops.attention_per_token,
            "output_per_token": r.flops.output_per_token,
            "total": r.flops.total,
        },
        "memory_per_chip": {
            **r.memory.terms(),
            "total": r.memory.total,
            "capacity": r.memory.capacity,
            "fraction": r.memory.fraction,
            "remat": value(spec.model.remat),
            "cross_entropy": spec.kernels.cross_entropy,
            "attention": spec.kernels.attention,
        },
        "mfu": r.mfu,
        "chip_hours": r.chip_hours,
        "wall_hours": r.wall_hours,
        "price": {
            "source": r.price.source,
            "detail": r.price.detail,
            "built_runs": r.price.built_runs,
            "seconds_per_step": r.price.seconds_per_step,
            "aot_check": r.aot_check.to_json() if r.aot_check else None,
        },
        "overheads": {
            name: {"seconds": o.seconds, "chip_hours": o.chip_hours(spec.mesh.chips), "source": o.source}
            for name, o in r.price.overheads.items()
        },
        "checkpoint_saves": r.price.checkpoint_saves,
        "evals": r.price.evals.to_json() if r.price.evals else None,
        "overhead_chip_hours": r.overhead_chip_hours,
        "total_chip_hours": r.total_chip_hours,
        "unresolved_inputs": [{"input": u.what, "uri": u.uri, "reason": u.reason} for u in r.unresolved],
    }


def plan(spec_set: SpecSet, built: Collection[str] = frozenset(), mfu: float | None = None,
         lock: Lock | None = None, measurements: Sequence[Measurement] = (), aot: AotIndex = AotIndex(),
         built_evals: Collection[str] = frozenset()) -> Plan:
    """Price every run of `spec_set`; raise SpecError with every run that cannot run on its mesh.

    `built` holds the hashes already in the store (`Store.built_hashes`);
    `mfu` prices every run's steps at that one MFU instead of the step-time
    model; `measurements` are the built runs' timing records
    (compiler.calibration.read_measurements) the prices calibrate on; `aot` holds the records of
    `runix compile --aot` and this machine's toolchain (compiler.aot_check) each run's fit check is
    looked up in; `built_evals` holds the eval hashes already in the store (compiler.eval_store:
    those evals cost nothing, the others are priced into the `evals` overhead, which needs the
    lock to hash them); `lock` is the spec set's lock
    (the runs' unresolved inputs, and the token counts that check each
    source's budget against its `max_repeats`).
    """
    if mfu is not None and not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    built = frozenset(built)
    step_time = load_step_time()
    evals = {} if lock is None else run_evals(spec_set.runs, lock, frozenset(built_evals))
    runs: list[RunPlan] = []
    problems: list[Problem] = []
    for run in spec_set.runs:
        spec = run.spec
        hardware = profile(spec.mesh.accelerator)
        memory = memory_per_chip(spec, hardware.memory_per_chip(spec.mesh.chips))
        unresolved = () if lock is None else tuple(UnresolvedInput(*entry) for entry in lock.unresolved_inputs(spec))
        price = price_run(spec, hardware, step_time, measurements, mfu, evals.get(run.hash))
        runs.append(RunPlan(
            run=run, built=run.hash in built, hardware=hardware, mfu=price.mfu,
            params=parameter_count(spec.model), flops=training_flops(spec), memory=memory, price=price,
            unresolved=unresolved, aot_check=aot_fit_check(spec, hardware, aot),
        ))
        problems.extend(_mesh_problems(run))
        if lock is not None and run.hash not in built:
            problems.extend(data_problems(run, lock))
        if not memory.fits:
            problems.append(Problem(run.location, f"runs[{run.name}].mesh", _fit_message(run, memory)))
    if problems:
        raise SpecError(problems)
    return Plan(tuple(runs), mfu)


def _mesh_problems(run: CompiledRun) -> list[Problem]:
    """Tensor-parallel ways must split the heads and the MLP width."""
    spec = run.spec
    m, tensor = spec.model, spec.mesh.axes.tensor
    where = f"runs[{run.name}].mesh.axes.tensor"
    problems = []
    for field, size in (("n_heads", m.n_heads), ("d_ff", m.d_ff)):
        if size % tensor:
            problems.append(Problem(run.location, where, f"run {run.name!r}: tensor ({tensor} ways) does not divide "
                                                         f"model.{field} ({size}); use a divisor of {size}"))
    kv = m.n_kv_heads
    if kv % tensor and tensor % kv:
        problems.append(Problem(run.location, where, f"run {run.name!r}: tensor ({tensor} ways) neither divides "
                                                     f"model.n_kv_heads ({kv}) nor is a multiple of it"))
    return problems


def _fit_message(run: CompiledRun, memory: MemoryEstimate) -> str:
    spec = run.spec
    mesh, axes, accelerator = spec.mesh, spec.mesh.axes, value(spec.mesh.accelerator)
    terms = memory.describe(format_bytes)
    message = (
        f"run {run.name!r} needs {format_bytes(memory.total)} per chip but one {accelerator} chip has "
        f"{format_capacity(memory.capacity)} ({terms}; {mesh.chips} chips as data {axes.data} × fsdp {axes.fsdp} × "
        f"tensor {axes.tensor}, {spec.batch.sequences // (axes.data * axes.fsdp)} sequences of "
        f"{spec.batch.sequence_length} tokens per chip, remat {value(spec.model.remat)}, "
        f"cross_entropy {spec.kernels.cross_entropy})"
    )
    hints = []

    def estimate(**updates) -> str:
        changed = spec.model_copy(update={key: getattr(spec, key).model_copy(update=val) for key, val in updates.items()})
        return format_bytes(memory_per_chip(changed, memory.capacity).total)

    if spec.model.remat != "full":
        hints.append(f"model.remat: full would need {estimate(model={'remat': 'full'})}")
    if spec.kernels.cross_entropy == "reference":
        hints.append(f"kernels.cross_entropy: chunked would need {estimate(kernels={'cross_entropy': 'chunked'})}")
    elif spec.kernels.cross_entropy_chunk > 512 and memory.loss > memory.total // 4:
        hints.append(f"kernels.cross_entropy_chunk: 512 would need {estimate(kernels={'cross_entropy_chunk': 512})}")
    hints.append("more fsdp ways split the weights and the batch further")
    return message + "; " + "; ".join(hints)


# --------------------------------------------------------------------------- formatting (shared with the CLI)

_SI = ((10**18, "E"), (10**15, "P"), (10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K"))


def format_count(value: float) -> str:
    """262144 → 262K, 1.4e9 → 1.40B (tokens, parameters)."""
    for scale, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:g}"


def format_bytes(value: float) -> str:
    """Decimal units, as accelerator vendors state memory: 16 GB is 16·10⁹ bytes."""
    for scale, suffix in _SI:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {suffix}B"
    return f"{value:g} B"


def format_capacity(value: int) -> str:
    """A chip's memory as its vendor states it: 32 GiB (TPU v4) stays 32 GiB, 16 GB (v5e) 16 GB."""
    gib = 1024**3
    return f"{value // gib} GiB" if value % gib == 0 else format_bytes(value)


def format_flops(value: float) -> str:
    return f"{value:.3g}"


def format_hours(value: float) -> str:
    if value == 0:
        return "0"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"
