"""Validation: every problem of a spec set, each with file, line and field path.

Two passes, both collecting rather than stopping: pydantic checks each run's
types and bounds; then the checks below look across fields and across runs
(token arithmetic, budgets, schedule coverage, mesh, the initialization DAG).
Hermetic by construction: the inputs are the parsed files, nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import pydantic

from compiler.evals import check_evals
from compiler.expand import RawRun
from compiler.presets import PRESETS
from compiler.problems import Problem
from compiler.resolve import MODEL_DIMS, resolve_model, schedule_steps, source_budgets, step_count
from compiler.spec import ConstantPhase, CosinePhase, LinearPhase, ParentInit, RunSpec, Unit, WarmupPhase
from dataprep.repeats import repeats_problem

PHASE_KINDS = ("warmup", "cosine", "linear", "constant")
SHAPE_FIELDS = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff", "block", "tied_embeddings")
"""Model fields a child must share with its parent to load its checkpoint."""


def parse_run(raw: RawRun) -> tuple[RunSpec | None, list[Problem]]:
    """pydantic validation of one expanded run, errors mapped to file:line."""
    try:
        return RunSpec.model_validate(raw.data), []
    except pydantic.ValidationError as err:
        problems = []
        for error in err.errors(include_url=False):
            loc = _strip_union_tags(error["loc"])
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown field (check the spelling; `runix schema` lists the fields)"
            problems.append(Problem(raw.location(loc), _field_path(raw.name, loc), message))
        return None, problems


def check_run(spec: RunSpec, raw: RawRun) -> list[Problem]:
    """Cross-field checks of one run."""
    problems: list[Problem] = []

    def add(path: tuple[str | int, ...], message: str) -> None:
        problems.append(Problem(raw.location(path), _field_path(raw.name, path), message))

    _check_model(spec, add)
    steps = _check_length(spec, add)
    _check_mesh(spec, add)
    if steps is not None:
        _check_sources(spec, steps, add)
        _check_schedule(spec, steps, add)
    if isinstance(spec.init, ParentInit) and (spec.init.run is None) == (spec.init.hash is None):
        add(("init",), "a parent init names exactly one of `run` (in this spec set) or `hash`")
    check_evals(spec, add)
    return problems


def check_set(runs: Sequence[tuple[RunSpec, RawRun]]) -> list[Problem]:
    """Checks across runs: parents exist, no cycles, parents' shapes match."""
    problems: list[Problem] = []
    by_name = {spec.name: (spec, raw) for spec, raw in runs}
    for spec, raw in runs:
        if not isinstance(spec.init, ParentInit) or spec.init.run is None:
            continue
        parent = by_name.get(spec.init.run)
        if parent is None:
            problems.append(Problem(raw.location(("init", "run")), _field_path(spec.name, ("init", "run")),
                                    f"parent run {spec.init.run!r} is not in this spec set"))
            continue
        child_model, parent_model = resolve_model(spec.model), resolve_model(parent[0].model)
        for field in SHAPE_FIELDS:
            mine, theirs = getattr(child_model, field), getattr(parent_model, field)
            if mine != theirs:
                problems.append(Problem(raw.location(("model", field)), _field_path(spec.name, ("model", field)),
                                        f"{mine!r} differs from parent {parent[0].name!r} ({theirs!r}); a child loads its parent's weights"))
    problems.extend(_cycle_problems(by_name))
    return problems


# --------------------------------------------------------------------------- per-run checks


def _check_model(spec: RunSpec, add) -> None:
    model = spec.model
    if model.preset is not None and model.preset not in PRESETS:
        add(("model", "preset"), f"unknown preset {model.preset!r}; known: {', '.join(sorted(PRESETS))}")
        return
    filled = resolve_model(model)
    missing = [dim for dim in MODEL_DIMS if getattr(filled, dim) is None]
    for dim in missing:
        add(("model", dim), "required (give the dim, or a `preset` that has it)")
    if missing:
        return
    if filled.n_heads % filled.n_kv_heads:
        add(("model", "n_kv_heads"), f"{filled.n_kv_heads} must divide n_heads ({filled.n_heads})")
    if model.head_dim is None and filled.d_model % filled.n_heads:
        add(("model", "n_heads"), f"{filled.n_heads} does not divide d_model ({filled.d_model}); set head_dim")
    if filled.rotary_dim > filled.head_dim or filled.rotary_dim % 2:
        add(("model", "rotary_dim"), f"{filled.rotary_dim} must be even and at most head_dim ({filled.head_dim})")


def _check_length(spec: RunSpec, add) -> int | None:
    per_step = spec.tokens_per_step
    formula = f"sequences ({spec.batch.sequences}) × sequence_length ({spec.batch.sequence_length}) = {per_step} tokens/step"
    if spec.steps is None and spec.tokens is None:
        add(("steps",), "state `steps` or `tokens` (the run's length)")
        return None
    if spec.steps is not None and spec.tokens is not None and spec.steps * per_step != spec.tokens:
        add(("tokens",), f"tokens ({spec.tokens}) ≠ steps ({spec.steps}) × {formula} = {spec.steps * per_step}; "
                         f"set tokens: {spec.steps * per_step}, or steps: {spec.tokens / per_step:g} (and make it whole), or drop one of them")
        return None
    steps = step_count(spec)
    if steps is None:
        low = spec.tokens // per_step
        add(("tokens",), f"tokens ({spec.tokens}) is not a whole number of steps of {formula}; "
                         f"use tokens: {low * per_step} ({low} steps) or {(low + 1) * per_step} ({low + 1} steps), or state steps")
    return steps


def _check_mesh(spec: RunSpec, add) -> None:
    mesh = spec.mesh
    axes = mesh.axes
    product = axes.data * axes.fsdp * axes.tensor
    if product != mesh.chips:
        add(("mesh", "axes"), f"data ({axes.data}) × fsdp ({axes.fsdp}) × tensor ({axes.tensor}) = {product} ≠ chips ({mesh.chips})")
    if mesh.topology is not None:
        topo = math.prod(int(side) for side in mesh.topology.split("x"))
        if topo != mesh.chips:
            add(("mesh", "topology"), f"topology {mesh.topology} has {topo} chips, but chips is {mesh.chips}")
    batch_ways = axes.data * axes.fsdp
    if spec.batch.sequences % batch_ways:
        add(("batch", "sequences"), f"{spec.batch.sequences} sequences do not split over data × fsdp = {batch_ways} ways; "
                                    f"use a multiple of {batch_ways}")
    attention = spec.kernels.attention
    family = mesh.accelerator.split("-")[0]
    needs = {"cudnn": "gpu", "pallas_tpu": "tpu"}.get(attention)
    if needs and family != needs:
        add(("kernels", "attention"), f"{attention} runs only on {needs} accelerators, not {mesh.accelerator}")


def _check_sources(spec: RunSpec, steps: int, add) -> None:
    sources = spec.data.sources
    total = steps * spec.tokens_per_step
    length = spec.batch.sequence_length
    ok = True
    for name, src in sources.items():
        # Reader options choose how files become documents; a built-in corpus has its own documents.
        if src.uri.startswith("builtin://"):
            for option in ("format", "text_field"):
                if getattr(src, option) is not None:
                    add(("data", "sources", name, option), f"{option} applies to file and tfds:// sources; "
                                                           f"{src.uri} is a built-in corpus with its own documents")
        elif src.uri.startswith("tfds://") and src.format is not None:
            add(("data", "sources", name, "format"), "a tfds:// source is read by TFDS; only text_field applies")
        if (src.tokens is None) == (src.share is None):
            add(("data", "sources", name), "state exactly one of `tokens` or `share`")
            ok = False
        elif src.tokens is not None and src.tokens % length:
            low = src.tokens // length * length
            add(("data", "sources", name, "tokens"), f"{src.tokens} is not a multiple of sequence_length ({length}); "
                                                      f"use {low} or {low + length}")
            ok = False
    kinds = {src.share is None for src in sources.values() if (src.tokens is None) != (src.share is None)}
    if len(kinds) > 1:
        add(("data", "sources"), "give every source a `share` or every source `tokens`, not a mix")
        ok = False
    if not ok:
        return
    if all(src.share is not None for src in sources.values()):
        share_sum = sum(Fraction(src.share) for src in sources.values())
        if abs(share_sum - 1) > Fraction(1, 10**9):
            add(("data", "sources"), f"shares add up to {float(share_sum):g}, not 1")
            return
    budgets = source_budgets(sources, steps, spec.batch.sequences, length)
    budget_sum = sum(budgets.values())
    if budget_sum != total:
        add(("data", "sources"), f"source budgets add up to {budget_sum} tokens but the run trains {total} "
                                 f"({'short' if budget_sum < total else 'over'} by {abs(total - budget_sum)})")
    if budget_sum == 0:
        add(("data", "sources"), "every source has a zero budget")
    for name, src in sources.items():
        if src.declared_tokens is None or not budgets[name]:
            continue
        problem = repeats_problem(budgets[name], src.declared_tokens, length, src.max_repeats, "declared tokens")
        if problem:
            add(("data", "sources", name, "max_repeats"), problem)


def _check_schedule(spec: RunSpec, steps: int, add) -> None:
    schedule = spec.schedule
    per_step = spec.tokens_per_step
    if schedule.unit == Unit.tokens.value:
        for index, phase in enumerate(schedule.phases):
            if phase.length is not None and phase.length % per_step:
                add(("schedule", "phases", index, "length"),
                    f"{phase.length} tokens is not a whole number of steps ({per_step} tokens/step)")
                return
    lengths = schedule_steps(schedule, steps, per_step)
    open_phases = [i for i, length in enumerate(lengths) if length is None]
    if len(open_phases) > 1:
        add(("schedule", "phases", open_phases[1], "length"), "only one phase may leave out its length")
        return
    stated = sum(length for length in lengths if length is not None)
    if open_phases and stated >= steps:
        add(("schedule", "phases"), f"the stated phases already take {stated} of the run's {steps} steps; "
                                    f"nothing is left for phase {open_phases[0]}")
    elif not open_phases and stated != steps:
        add(("schedule", "phases"), f"phases cover {stated} steps but the run has {steps}; "
                                    f"{'add' if stated < steps else 'remove'} {abs(steps - stated)} steps or leave one length out")
    for index, (phase, length) in enumerate(zip(schedule.phases, lengths)):
        if isinstance(phase, WarmupPhase) and length is not None and length >= steps:
            add(("schedule", "phases", index, "length"), f"warmup of {length} steps is not shorter than the run ({steps} steps)")
        if index == 0 and (
            (isinstance(phase, (CosinePhase, LinearPhase)) and phase.start is None)
            or (isinstance(phase, ConstantPhase) and phase.value is None)
        ):
            add(("schedule", "phases", 0), f"the first phase ({phase.kind}) needs an explicit starting learning rate")


def _cycle_problems(by_name) -> list[Problem]:
    problems = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        spec, raw = by_name[name]
        parent = spec.init.run if isinstance(spec.init, ParentInit) else None
        if parent in by_name:
            if state.get(parent) == 1:
                cycle = stack[stack.index(parent):] + [name, parent] if parent in stack else [name, parent]
                problems.append(Problem(raw.location(("init", "run")), _field_path(name, ("init", "run")),
                                        f"initialization cycle: {' → '.join(reversed(cycle))}"))
            elif state.get(parent) is None:
                visit(parent, stack + [name])
        state[name] = 2

    for name in sorted(by_name):
        if name not in state:
            visit(name, [])
    return problems


def _strip_union_tags(loc: tuple) -> tuple:
    """Drop the union tags pydantic puts in a loc (init.scratch.seed); users wrote init.seed."""
    out: list = []
    for part in loc:
        if isinstance(part, str) and part.startswith("function-"):
            continue
        after_init = out[-1:] == ["init"] and part in ("scratch", "parent")
        after_phase = len(out) >= 2 and out[-2] == "phases" and isinstance(out[-1], int) and part in PHASE_KINDS
        if not (after_init or after_phase):
            out.append(part)
    return tuple(out)


def _field_path(run: str, loc: Sequence[str | int]) -> str:
    out = f"runs[{run}]"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out
