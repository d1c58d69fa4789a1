"""Fill in everything a spec leaves implicit, so the hash sees one explicit form.

Why: the same training run may be written many ways (a preset or its dims,
`share: 0.5` or the token count, schedule lengths in tokens or steps, `steps`
or `tokens`). `resolve_run` maps all of them to a single fully explicit
RunSpec, the "expanded spec" that is hashed and stored. The helpers here are
also used by the validator, so the checks and the resolution cannot disagree.

Every function assumes the checks in `compiler.validate` passed for the parts
it reads; they are pure and read no clock, environment or file.
"""

from __future__ import annotations

from fractions import Fraction

from compiler.hardware import default_attention
from compiler.presets import PRESETS
from compiler.spec import (
    ConstantPhase, CosinePhase, DataSource, LinearPhase, ModelSpec, Phase, RunSpec, ScheduleSpec, Unit, WarmupPhase,
)

MODEL_DIMS = ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff")


def resolve_model(model: ModelSpec) -> ModelSpec:
    """Dims from the preset (for fields the spec left unset) and derived defaults."""
    values = model.model_dump(exclude_unset=True)
    if model.preset is not None:
        values = {**PRESETS[model.preset], **values}
    filled = ModelSpec(**values)
    derived: dict[str, object] = {}
    if filled.n_kv_heads is None:
        derived["n_kv_heads"] = filled.n_heads
    head_dim = filled.head_dim
    if head_dim is None and filled.d_model and filled.n_heads:
        head_dim = filled.d_model // filled.n_heads
        derived["head_dim"] = head_dim
    if filled.rotary_dim is None:
        derived["rotary_dim"] = head_dim
    return ModelSpec(**{**values, **derived})


def step_count(spec: RunSpec) -> int | None:
    """Steps from `steps`, or from `tokens` when they divide evenly; else None."""
    if spec.steps is not None:
        return spec.steps
    if spec.tokens is not None and spec.tokens % spec.tokens_per_step == 0:
        return spec.tokens // spec.tokens_per_step
    return None


def source_budgets(sources: dict[str, DataSource], steps: int, sequences: int, sequence_length: int) -> dict[str, int]:
    """Exact token budget per source.

    Shares are allocated in whole sequences by the largest-remainder method
    (ties broken by source name), so the budgets add up to the run's total
    exactly and each is a multiple of the sequence length, which the data
    pipeline needs to mix block-exactly. Explicit `tokens` are kept as given.
    """
    total_sequences = steps * sequences
    shares = {name: Fraction(src.share) for name, src in sources.items() if src.share is not None}
    budgets = {name: src.tokens for name, src in sources.items() if src.tokens is not None}
    if shares:
        share_sum = sum(shares.values())
        exact = {name: share / share_sum * total_sequences for name, share in shares.items()}
        floors = {name: int(value) for name, value in exact.items()}
        left = total_sequences - sum(floors.values())
        by_remainder = sorted(exact, key=lambda name: (-(exact[name] - floors[name]), name))
        for name in by_remainder[:left]:
            floors[name] += 1
        budgets.update({name: count * sequence_length for name, count in floors.items()})
    return budgets


def schedule_steps(schedule: ScheduleSpec, steps: int, tokens_per_step: int) -> list[int | None]:
    """Phase lengths in steps (None where a length is left to fill the rest)."""
    if schedule.unit == Unit.tokens.value:
        return [None if p.length is None else p.length // tokens_per_step for p in schedule.phases]
    return [p.length for p in schedule.phases]


def resolve_schedule(schedule: ScheduleSpec, steps: int, tokens_per_step: int) -> ScheduleSpec:
    """Lengths in steps, the open phase closed, every start LR made explicit."""
    lengths = schedule_steps(schedule, steps, tokens_per_step)
    open_length = steps - sum(length for length in lengths if length is not None)
    lengths = [open_length if length is None else length for length in lengths]
    phases: list[Phase] = []
    previous_end = 0.0
    for phase, length in zip(schedule.phases, lengths):
        if isinstance(phase, WarmupPhase):
            resolved: Phase = phase.model_copy(update={"length": length})
            previous_end = phase.peak
        elif isinstance(phase, CosinePhase):
            resolved = phase.model_copy(update={"length": length, "start": previous_end if phase.start is None else phase.start})
            previous_end = phase.floor
        elif isinstance(phase, LinearPhase):
            resolved = phase.model_copy(update={"length": length, "start": previous_end if phase.start is None else phase.start})
            previous_end = phase.end
        else:
            assert isinstance(phase, ConstantPhase)
            value = previous_end if phase.value is None else phase.value
            resolved = phase.model_copy(update={"length": length, "value": value})
            previous_end = value
        phases.append(resolved)
    return ScheduleSpec(unit=Unit.steps, phases=tuple(phases))


def resolve_run(spec: RunSpec) -> RunSpec:
    """The fully explicit form of a validated run (the thing that is hashed)."""
    steps = step_count(spec)
    assert steps is not None, "validate before resolving"
    budgets = source_budgets(spec.data.sources, steps, spec.batch.sequences, spec.batch.sequence_length)
    sources = {
        name: src.model_copy(update={"tokens": budgets[name], "share": None})
        for name, src in sorted(spec.data.sources.items())
        if budgets[name] > 0
    }
    kernels = spec.kernels
    if kernels.attention == "auto":
        kernels = kernels.model_copy(update={"attention": default_attention(spec.mesh.accelerator)})
    return spec.model_copy(update={
        "model": resolve_model(spec.model),
        "data": spec.data.model_copy(update={"sources": sources}),
        "schedule": resolve_schedule(spec.schedule, steps, spec.tokens_per_step),
        "steps": steps,
        "tokens": steps * spec.tokens_per_step,
        "kernels": kernels,
    })
