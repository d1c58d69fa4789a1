"""What a run's evaluation jobs cost: forward tokens at the model's forward price, plus checkpoint loads.

Why in the price: `runix launch` builds every missing eval of the runs it
builds (compiler.eval_launch), on the run's mesh and at its batch, so the bill
has them. A run's evals are its eval derivations (compiler.evals, hashed with
the lock's digests) that the store has not built; each costs

    forward seconds = ⌈forward_tokens ÷ tokens per step⌉ batches × tokens per step
                      × forward seconds per token per chip ÷ chips
    load seconds    = checkpoint_loads (one per checkpoint step, whatever the sets) × seconds per load

compiler.evals.forward_tokens bounds the token positions an eval scores
(windows of the run's sequence length) at one token per byte for a held-out
set; where the lock counted the set's corpus under the run's tokenizer
(`token_counts` and `num_text_bytes` of a built-in corpus), a held-out set
is priced at that corpus's tokens per byte instead (still whole windows, plus
one), which is what the byte-level BPE will make of its bytes; the bound
stays the ceiling. runtime.evaluate runs the windows in
batches of the run's `batch.sequences` rows, the last one padded, hence the
whole batches. The forward price per token is the run's own priced step
time (model, measured, calibrated or --mfu: compiler.pricing) times the
forward share of a step: one forward pass without rematerialization out of
forward + 2× backward, as compiler.step_time weighs its terms
(`Constants.forward_seconds_per_token`; exactly 1/3 at a fixed --mfu). A load
reads the whole training state (runtime.evaluate restores parameters and
optimizer moments) at the run's checkpoint bandwidth, measured or assumed
as for saves (compiler.pricing). Not priced: the eval job's process start and
the compile of its scoring functions (no eval job records its time yet).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

from compiler.evals import EvalDerivation, EvalInputError, checkpoint_loads, derivations, forward_tokens, lock_lookup
from compiler.lock import tokenizer_key


@dataclasses.dataclass(frozen=True)
class RunEvals:
    """A run's evals as the price sees them."""

    to_build: tuple[EvalDerivation, ...] = ()  # its eval derivations the store has not built
    tokens: tuple[int, ...] = ()  # forward tokens of each of them (`eval_tokens`)
    built: int = 0  # its evals already in the store
    unpriced: str | None = None  # why its evals cannot be listed here (its lock lacks a digest)


def run_evals(runs: Sequence, lock, built_evals: Collection[str]) -> dict[str, RunEvals]:
    """Run hash → its evals (compiler.specset.CompiledRun `runs`, hashed with `lock`); pure."""
    lookup = lock_lookup(lock)
    out: dict[str, RunEvals] = {}
    for run in runs:
        digest_of, tokenizer_digest = lookup(run.spec)
        try:
            found = derivations(run, digest_of, tokenizer_digest)
        except EvalInputError as err:
            out[run.hash] = RunEvals(unpriced=f"not priced: {err}")
            continue
        unique = tuple({d.hash: d for d in found}.values())
        todo = tuple(d for d in unique if d.hash not in built_evals)
        tokens = tuple(eval_tokens(d, _tokens_per_byte(lock, d.uri, run.spec)) for d in todo)
        out[run.hash] = RunEvals(todo, tokens, len(unique) - len(todo))
    return out


def eval_tokens(derivation: EvalDerivation, tokens_per_byte: float | None) -> int:
    """Token positions the eval's forward passes process: forward_tokens' bound, tightened by a counted ratio."""
    bound = forward_tokens(derivation)
    if derivation.kind != "heldout" or not tokens_per_byte:
        return bound
    settings = derivation.document["settings"]
    window = settings["window"]
    counted = (-(-int(settings["max_bytes"] * tokens_per_byte) // window) + 1) * window
    return min(bound, counted)


def _tokens_per_byte(lock, uri: str, spec) -> float | None:
    """Tokens per text byte of a locked corpus under the run's tokenizer, when the lock counted both."""
    entry = lock.sources.get(uri)
    locked = (entry.locked or {}) if entry is not None else {}
    count = (locked.get("token_counts") or {}).get(tokenizer_key(spec))
    size = locked.get("num_text_bytes")
    return count / size if isinstance(count, int) and isinstance(size, int) and size > 0 else None


@dataclasses.dataclass(frozen=True)
class EvalCost:
    """The priced evals of one run."""

    seconds: float  # wall seconds on the run's mesh
    source: str  # one line: how they were priced
    to_build: int = 0
    built: int = 0
    forward_tokens: int = 0  # token positions the forward passes process (whole batches)
    checkpoint_loads: int = 0

    def to_json(self) -> dict:
        return {"to_build": self.to_build, "built": self.built, "forward_tokens": self.forward_tokens,
                "checkpoint_loads": self.checkpoint_loads}


def eval_cost(evals: RunEvals, chips: int, tokens_per_step: int, forward_seconds_per_token_per_chip: float,
              seconds_per_load: float, load_source: str) -> EvalCost:
    """The run's evals still to build, priced on its mesh."""
    if evals.unpriced:
        return EvalCost(0.0, evals.unpriced)
    if not evals.to_build:
        return EvalCost(0.0, f"all {evals.built} evals built" if evals.built else "no evals in the spec",
                        built=evals.built)
    tokens = sum(-(-t // tokens_per_step) * tokens_per_step for t in evals.tokens)
    loads = checkpoint_loads(evals.to_build)
    seconds = tokens * forward_seconds_per_token_per_chip / chips + loads * seconds_per_load
    built = f", {evals.built} built" if evals.built else ""
    return EvalCost(
        seconds,
        f"{len(evals.to_build)} evals to build{built}: {tokens:,} forward tokens (held-out sets at their corpus's "
        f"locked tokens per byte, else one per byte; whole batches) at "
        f"{forward_seconds_per_token_per_chip:.3g} s per token per chip (the forward share of the run's priced step) "
        f"+ {loads} checkpoint loads × {seconds_per_load:.3g} s (a load priced as a save: {load_source}); the eval "
        "job's start and compile are not priced",
        len(evals.to_build), evals.built, tokens, loads)
