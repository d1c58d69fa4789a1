"""The learning rate at every optimizer step, from a resolved schedule's phases.

Why optax schedules joined at phase boundaries: each phase kind (warmup,
cosine, linear, constant) is exactly one optax schedule evaluated on the step
count *within* its phase, and `optax.join_schedules` does the offsetting, so a
re-warmup after loading a parent or a cooldown appended to a cosine is just one
more phase. The input is the resolved spec (`compiler.resolve.resolve_schedule`):
lengths in steps, every start LR explicit, so nothing here guesses.

Convention: the schedule maps the 0-based step index s (the s-th update) to
its LR. A phase of length n covers steps [b, b + n); linear and cosine phases
reach their end value at step b + n, i.e. the first step of the next phase.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import optax

from compiler.spec import ConstantPhase, CosinePhase, LinearPhase, Phase, ScheduleSpec, WarmupPhase


def phase_schedule(phase: Phase) -> Callable:
    """One phase as an optax schedule of the step count within the phase."""
    length = int(phase.length)
    if isinstance(phase, WarmupPhase):
        return optax.linear_schedule(phase.start, phase.peak, length)
    if isinstance(phase, LinearPhase):
        return optax.linear_schedule(_explicit(phase.start, phase), phase.end, length)
    if isinstance(phase, CosinePhase):
        start = _explicit(phase.start, phase)
        if start > 0:
            return optax.cosine_decay_schedule(start, length, alpha=phase.floor / start)
        # A cosine from 0 rising to a floor > 0 (unusual but valid): the same curve, mirrored.
        rise = optax.cosine_decay_schedule(phase.floor, length)
        return lambda count: phase.floor - rise(count)
    if isinstance(phase, ConstantPhase):
        return optax.constant_schedule(_explicit(phase.value, phase))
    raise TypeError(f"unknown schedule phase {phase!r}")


def learning_rate_schedule(schedule: ScheduleSpec) -> Callable:
    """The whole schedule: phases joined at their cumulative step boundaries.

    Zero-length phases (possible when a token-length phase rounds down to no
    steps) are dropped; past the last phase the last phase's rule continues,
    which for decays means holding the end value.
    """
    if schedule.unit != "steps":
        raise ValueError("schedule is not resolved to steps; pass compiler.resolve.resolve_run(spec).schedule")
    phases = [phase for phase in schedule.phases if phase.length]
    if not phases:
        raise ValueError("schedule has no phase with a positive length")
    return optax.join_schedules([phase_schedule(p) for p in phases], boundaries(phases))


def boundaries(phases: Sequence[Phase]) -> list[int]:
    """First step of every phase after the first."""
    edges, total = [], 0
    for phase in phases[:-1]:
        total += int(phase.length)
        edges.append(total)
    return edges


def _explicit(value: float | None, phase: Phase) -> float:
    if value is None:
        raise ValueError(f"{phase.kind} phase has no explicit start; resolve the schedule first")
    return float(value)
