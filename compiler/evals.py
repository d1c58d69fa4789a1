"""Evaluations as derivations: which evals a run has, their checks, and their hashes.

An eval is named by what changes its bits and nothing else, as a run is:

    sha256(canonical JSON of {"runix_eval": 1, "run": <run hash>, "step": k,
                              "set": {"kind", "digest" (the lock's content digest), "split"},
                              "tokenizer": <tokenizer digest>, "settings": {...}})

The run hash already covers the model, the numerics and the run's own
inputs, so an eval of the same checkpoint on the same bytes hashes alike in
every spec set; the set's name, role and URI spelling do not enter it.
Evals never enter the run hash (RunSpec.evals is NOT_HASHED): adding an eval
set builds that eval and nothing else.

Checks (`check_evals`, part of validation: hermetic, file:line:field path):
a checkpoint step past the run, a step that is not a kept checkpoint, an
unknown built-in set, a choice set that is not a JSONL file, and an eval set
that is also a training source of the run (it would overlap the training
data; a built-in corpus's held-out split never does, dataprep.heldout).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from compiler.canonical import canonical_json
from compiler.eval_spec import ChoiceSet, EvalsSpec, HeldoutSet
from compiler.problems import Problem

EVAL_FORMAT = 1
BUILTIN = "builtin://"
HELDOUT_SPLIT = "heldout"  # dataprep.heldout.HELDOUT_SPLIT (not imported: the compiler stays light)


@dataclasses.dataclass(frozen=True)
class EvalDerivation:
    """One eval of one checkpoint of one run on one set (what `runix eval` builds and the store keeps)."""

    hash: str
    run_hash: str
    run_name: str
    set_name: str
    kind: str
    role: str
    step: int
    document: dict[str, Any]  # exactly what is hashed
    uri: str
    total_steps: int
    tokens_per_step: int

    @property
    def name(self) -> str:
        return f"{self.run_name}.{self.set_name}.{self.step}"

    @property
    def final(self) -> bool:
        return self.step == self.total_steps

    def record(self) -> dict[str, Any]:
        """The derivation as the store keeps it: the hashed document plus labels that are not hashed."""
        return {"hash": self.hash, "name": self.name, "run_name": self.run_name, "set": self.set_name,
                "kind": self.kind, "role": self.role, "uri": self.uri, "step": self.step,
                "tokens": self.step * self.tokens_per_step, "final": self.final, "document": self.document}


def eval_hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()


def eval_steps(evals: EvalsSpec, total_steps: int) -> list[int]:
    """Every `every`-th step up to the run's end, and always the final step."""
    steps = set(range(evals.every, total_steps + 1, evals.every)) if evals.every else set()
    return sorted(steps | {total_steps})


def kept_checkpoints(every: int | None, keep: int, total_steps: int) -> set[int]:
    """The checkpoint steps a built run keeps (runtime.checkpoint's retention, computed from the spec)."""
    cadence = every or total_steps
    periodic = list(range(cadence, total_steps, cadence))
    return set(periodic[max(0, len(periodic) - keep):]) | {total_steps}


def settings(spec_set_item, evals: EvalsSpec, sequence_length: int) -> dict[str, Any]:
    """The eval settings that change its result (hashed)."""
    if isinstance(spec_set_item, HeldoutSet):
        return {"max_bytes": spec_set_item.max_bytes or evals.max_bytes, "window": sequence_length}
    return {"max_items": spec_set_item.max_items, "window": sequence_length}


# --------------------------------------------------------------------------- checks


def check_evals(spec, add: Callable[[tuple, str], None]) -> None:
    """Validation of `spec.evals` (a RunSpec); `add(path, message)` records a problem."""
    evals: EvalsSpec = spec.evals
    if not evals.sets:
        return
    total = _total_steps(spec)
    if total is not None:
        if evals.every is not None and evals.every > total:
            add(("evals", "every"), f"checkpoint step {evals.every} is past the run's {total} steps")
        else:
            kept = kept_checkpoints(spec.checkpoint.every, spec.checkpoint.keep, total)
            missing = [step for step in eval_steps(evals, total) if step not in kept]
            if missing:
                add(("evals", "every"),
                    f"checkpoint steps {', '.join(map(str, missing))} are not kept by the run (checkpoint.every "
                    f"{spec.checkpoint.every}, keep {spec.checkpoint.keep}); make evals.every a multiple of "
                    f"checkpoint.every and keep at least {len(eval_steps(evals, total)) - 1} checkpoints")
    training = {src.uri for src in spec.data.sources.values() if not (src.tokens == 0 or src.share == 0)}
    known = _builtin_names()
    for name, item in sorted(evals.sets.items()):
        where = ("evals", "sets", name, "uri")
        if item.uri.startswith(BUILTIN):
            corpus = item.uri.removeprefix(BUILTIN)
            if isinstance(item, ChoiceSet):
                add(where, f"unknown eval set {item.uri!r}: a choice set is a local JSONL file, not a built-in corpus")
            elif corpus not in known:
                add(where, f"unknown eval set {item.uri!r}; the built-in held-out sets are "
                           f"{', '.join(BUILTIN + n for n in known)}")
            continue
        if item.uri in training:
            add(where, f"eval set {item.uri!r} is also a training source of this run: it overlaps the training "
                       "data (use a held-out split or a separate eval source)")
        if isinstance(item, ChoiceSet) and not item.uri.endswith(".jsonl"):
            add(where, f"unknown eval set {item.uri!r}: a choice set is a .jsonl file of prompts and choices")


def _total_steps(spec) -> int | None:
    if spec.steps is not None:
        return spec.steps
    if spec.tokens is not None and spec.tokens % spec.tokens_per_step == 0:
        return spec.tokens // spec.tokens_per_step
    return None


def _builtin_names() -> tuple[str, ...]:
    from dataprep.builtin_corpora import builtin_names  # noqa: PLC0415 (pure: names are code, not files)

    return builtin_names()


# --------------------------------------------------------------------------- derivations


class EvalInputError(ValueError):
    """An eval's set or tokenizer has no locked digest (the message says which, and the fix)."""


def eval_uris(runs: Iterable[Any]) -> set[str]:
    """URIs of every eval set of the runs (RunSpecs) that the lock must pin."""
    return {item.uri for spec in runs for item in spec.evals.sets.values()}


def derivations(run, digest_of: Callable[[str], str | None], tokenizer_digest: str | None) -> list[EvalDerivation]:
    """Every eval derivation of a compiled run (compiler.specset.CompiledRun), steps in order.

    digest_of(uri): the locked content digest of an eval set's URI (None when the lock lacks it).
    """
    spec = run.spec
    out = []
    problems = []
    for name, item in sorted(spec.evals.sets.items()):
        digest = digest_of(item.uri)
        if digest is None:
            problems.append(f"run {run.name}: eval set {name} ({item.uri}) has no locked digest")
        if tokenizer_digest is None:
            problems.append(f"run {run.name}: its tokenizer has no locked digest")
        if problems:
            continue
        split = HELDOUT_SPLIT if item.uri.startswith(BUILTIN) else None
        for step in eval_steps(spec.evals, spec.total_steps):
            document = {
                "runix_eval": EVAL_FORMAT, "run": run.hash, "step": step,
                "set": {"kind": item.kind, "digest": digest, "split": split},
                "tokenizer": tokenizer_digest,
                "settings": settings(item, spec.evals, spec.batch.sequence_length),
            }
            out.append(EvalDerivation(eval_hash(document), run.hash, run.name, name, item.kind, item.role or name,
                                      step, document, item.uri, spec.total_steps, spec.tokens_per_step))
    if problems:
        raise EvalInputError("; ".join(sorted(set(problems))) + "; run `runix lock` on the spec set")
    return out


def lock_lookup(lock) -> Callable[[Any], tuple[Callable[[str], str | None], str | None]]:
    """digest_of and the tokenizer digest of a run from a compiler.lock.Lock."""
    from compiler.lock import tokenizer_key  # noqa: PLC0415 (lock imports specset; keep this module below it)

    def for_run(spec) -> tuple[Callable[[str], str | None], str | None]:
        def digest_of(uri: str) -> str | None:
            entry = lock.sources.get(uri)
            return entry.digest if entry is not None else None

        entry = lock.tokenizers.get(tokenizer_key(spec))
        return digest_of, (entry.digest if entry is not None else None)

    return for_run


def spec_set_derivations(runs: Sequence[Any], lock) -> list[EvalDerivation]:
    """Every eval derivation of the compiled runs, hashed with the lock's digests."""
    lookup = lock_lookup(lock)
    out: list[EvalDerivation] = []
    for run in runs:
        digest_of, tokenizer_digest = lookup(run.spec)
        out.extend(derivations(run, digest_of, tokenizer_digest))
    return out


def lock_entries_for(derivation: EvalDerivation, lock) -> dict[str, Any]:
    """What an eval job needs from the lock to find and verify its set (the set's full record)."""
    entry = lock.sources.get(derivation.uri)
    return {"set": entry.model_dump(mode="json") if entry is not None else None}


# --------------------------------------------------------------------------- cost inputs (compiler.plan prices them)


def forward_tokens(derivation: EvalDerivation, choices_per_item: int = 4) -> int:
    """An upper bound of the token positions an eval's forward passes process (no backward pass, no update).

    heldout: at most one token per byte (the byte-level BPE), in windows of the run's sequence length,
    plus at most one partly filled window per document; bounded here by rounding `max_bytes` up to
    whole windows and adding one window. choice: one window per choice of each item. A price of
    evals is 2 × parameters × these tokens FLOPs on the run's mesh, plus one checkpoint load per
    (run, step) — see `checkpoint_loads`.
    """
    settings_ = derivation.document["settings"]
    window = settings_["window"]
    if derivation.kind == "heldout":
        return (-(-settings_["max_bytes"] // window) + 1) * window
    return settings_["max_items"] * choices_per_item * window


def checkpoint_loads(derivations: Iterable[EvalDerivation]) -> int:
    """Checkpoints an eval job loads: one per (run, step), whatever the number of sets."""
    return len({(d.run_hash, d.step) for d in derivations})


def overlap_problems(runs: Sequence[Any], lock) -> list[Problem]:
    """Eval sets whose locked files share content with a training source of the same run (by file sha256).

    The validator catches an eval set that names a training source; this catches the same bytes under
    another name (a copied file, an overlapping glob), from the lock alone. Built-in held-out splits
    are disjoint by construction (dataprep.heldout) and are not compared here.
    """
    def file_digests(uri: str) -> set[str]:
        entry = lock.sources.get(uri)
        files = ((entry.locked or {}).get("files") or {}) if entry is not None else {}
        return {f["sha256"] for f in files.values() if isinstance(f, dict) and "sha256" in f}

    problems = []
    for run in runs:
        training = {src.uri: file_digests(src.uri) for src in run.spec.data.sources.values()}
        for name, item in sorted(run.spec.evals.sets.items()):
            if item.uri.startswith(BUILTIN):
                continue
            mine = file_digests(item.uri)
            for uri, theirs in sorted(training.items()):
                shared = mine & theirs
                if shared:
                    problems.append(Problem(run.location, f"runs[{run.name}].evals.sets.{name}.uri",
                                            f"eval set {item.uri!r} overlaps the training data: {len(shared)} of its "
                                            f"files have the same content as files of training source {uri!r}"))
    return problems
