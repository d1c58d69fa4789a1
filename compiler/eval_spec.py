"""The `evals` section of a run: what a run is judged by, kept out of what it trains.

    evals:
      every: 20                 # a checkpoint step every N steps, and always the final one
      max_bytes: 64K            # per held-out set: its first N bytes, the same bytes for every run
      sets:
        code:      {kind: heldout, uri: "builtin://code"}      # the corpus's held-out split
        next-line: {kind: choice,  uri: "evals/python_next_line.jsonl"}

Why a section of the run and not of the spec set: `extends` then shares the
defaults (a base run states the sets once, a child adds one), and an
ablation's runs are judged on the same sets by construction. Why it is never
hashed (`NOT_HASHED` on RunSpec.evals): evaluating a run does not change its
bits, so adding or changing an eval must never rebuild a run. Each eval is a
derivation of its own instead (compiler.evals): its hash covers the run
hash, the checkpoint step, the eval set's locked content digest, the
tokenizer digest and these settings.

The `kind` discriminator is open: a kind is one model here and one scorer
in runtime.evaluate. Shipped: `heldout` (loss per token and bits per byte,
Paloma-style) and `choice` (multiple-choice log-likelihood, the
lm-eval-harness way: sum of continuation log-probs; acc and acc_norm).
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

RUN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_SUFFIXES = {"K": 1 << 10, "M": 1 << 20}


def _parse_bytes(value: object) -> object:
    """64K / 1M / 65536 → an int (binary suffixes: a byte budget is a memory-ish size)."""
    if isinstance(value, str):
        text = value.strip().upper()
        scale = _SUFFIXES.get(text[-1:], 1)
        digits = text[:-1] if text[-1:] in _SUFFIXES else text
        if not digits.replace("_", "").isdigit():
            raise ValueError(f"not a byte count: {value!r} (write e.g. 65536 or 64K)")
        return int(digits.replace("_", "")) * scale
    return value


ByteCount = Annotated[int, BeforeValidator(_parse_bytes), Field(ge=1, le=1 << 34), WithJsonSchema({"anyOf": [
    {"type": "integer", "minimum": 1, "maximum": 1 << 34},
    {"type": "string", "pattern": r"^\s*[0-9][0-9_]*\s*[KMkm]?\s*$", "description": "e.g. 65536 or 64K (K = 1024 bytes)"},
]})]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, validate_default=True)


class HeldoutSet(_Frozen):
    """Held-out language-modelling loss over fixed bytes: loss per token and bits per byte."""

    kind: Literal["heldout"] = "heldout"
    uri: str = Field(..., min_length=1, max_length=2048,
                     description="builtin://<corpus> (its held-out split), or a separate eval source: an fsspec path or tfds:// split no run trains on.")
    role: str | None = Field(None, max_length=64, description="Domain shown in the report (code, text, markup, code-adjacent, …); defaults to the set's name.")
    max_bytes: ByteCount | None = Field(None, description="Bytes read from the set (whole documents in order, the last cut at a line end); defaults to evals.max_bytes.")


class ChoiceSet(_Frozen):
    """Multiple-choice log-likelihood on a local JSONL of {"prompt", "choices", "answer"} items."""

    kind: Literal["choice"] = "choice"
    uri: str = Field(..., min_length=1, max_length=2048, description="A JSONL file (fsspec path): one item per line.")
    role: str | None = Field(None, max_length=64, description="Label shown in the report; defaults to the set's name.")
    max_items: int = Field(256, ge=1, le=1 << 20, description="Items scored: the first N lines of the file.")


EvalSet = Annotated[Union[HeldoutSet, ChoiceSet], Field(discriminator="kind")]


class EvalsSpec(_Frozen):
    """Which eval sets a run is judged on, and at which of its checkpoints."""

    every: int | None = Field(None, ge=1, le=10**9, description="Evaluate the checkpoint every N steps (each must be a kept checkpoint), and always the final one; null: the final one only.")
    max_bytes: ByteCount = Field(64 << 10, description="Default bytes per held-out set.")
    sets: dict[Annotated[str, Field(pattern=RUN_NAME_PATTERN)], EvalSet] = Field(
        default_factory=dict, max_length=64, description="Eval set name → set. Empty: the run has no evals.",
    )
