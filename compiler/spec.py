"""The run-spec language: immutable pydantic models of one training run.

Why pydantic with `frozen=True, extra="forbid"`: a spec is a value (like a Nix
derivation), so it must not change after validation, and a misspelt key must be
an error rather than a silently ignored setting. Every field carries a
description and bounds so that `runix schema` gives editors completion and
checks, and so that error messages can say what a field means.

Fields that cannot change the trained bits (name, description, tags,
checkpoint cadence, the preset label) are marked with `NOT_HASHED`; the hash
stage skips them (see `compiler.canonical`).
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

SCHEMA_VERSION = 1
"""Bumped whenever the meaning of a spec field changes; it is part of every hash."""

NOT_HASHED = {"x-runix-hashed": False}
"""json_schema_extra marker: the field is metadata and never enters the hash."""

HASHED_WHEN_SET = {"x-runix-hashed": "when-set"}
"""json_schema_extra marker: the field enters the hash only when it is not None (its default).

For options added after specs were hashed: leaving one at its default keeps
every existing hash, setting it changes the hash as any field does."""

RUN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
HASH_PATTERN = r"^[0-9a-f]{64}$"

_TOKEN_SUFFIXES = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
_TOKEN_COUNT_RE = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([KMBT]?)\s*$", re.IGNORECASE)


def _parse_token_count(value: object) -> object:
    """Accept 200B / 1.5M / 262_144 as token counts; the canonical form is an int.

    Research papers state budgets as "200B tokens"; letting specs say the same
    keeps them readable while the hash still sees one exact integer.
    """
    if isinstance(value, bool):
        return value  # let pydantic reject it as a non-integer
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        match = _TOKEN_COUNT_RE.match(value)
        if not match:
            raise ValueError(f"not a token count: {value!r} (write e.g. 262144, 200B, 1.5M)")
        number, suffix = match.groups()
        scaled = float(number.replace("_", "")) * _TOKEN_SUFFIXES.get(suffix.upper(), 1)
        if not scaled.is_integer():
            raise ValueError(f"{value!r} is not a whole number of tokens")
        return int(scaled)
    return value


TOKEN_COUNT_PATTERN = r"^\s*[0-9][0-9_]*(\.[0-9]+)?\s*[KMBTkmbt]?\s*$"


def _token_json_schema(minimum: int) -> WithJsonSchema:
    return WithJsonSchema({"anyOf": [
        {"type": "integer", "minimum": minimum, "maximum": 10**16},
        {"type": "string", "pattern": TOKEN_COUNT_PATTERN, "description": "e.g. 200B, 1.5M, 262_144"},
    ]})


TokenCount = Annotated[int, BeforeValidator(_parse_token_count), Field(ge=1, le=10**16), _token_json_schema(1)]
"""A positive whole number of tokens; strings with K/M/B/T suffixes are accepted."""

TokenBudget = Annotated[int, BeforeValidator(_parse_token_count), Field(ge=0, le=10**16), _token_json_schema(0)]
"""Like TokenCount, but 0 is allowed: a source with a zero budget is dropped before hashing."""

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
LearningRate = Annotated[float, Field(ge=0, le=10.0, allow_inf_nan=False)]
Seed = Annotated[int, Field(ge=0, lt=2**32, description="A seed; every source of randomness derives from a spec seed.")]


class Frozen(BaseModel):
    """Base of every spec model: immutable, unknown keys rejected, no NaN/inf."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, use_enum_values=True, validate_default=True)


# --------------------------------------------------------------------------- model


class BlockKind(str, enum.Enum):
    parallel = "parallel"
    sequential = "sequential"


class Remat(str, enum.Enum):
    none = "none"
    dots = "dots"
    full = "full"


class ModelSpec(Frozen):
    """Decoder-only transformer: RMSNorm, rotary embeddings, SwiGLU MLP, no biases.

    Either name a `preset` (see `compiler.presets`) and override single dims, or
    give every dim. Presets are expanded before hashing, so a preset and the
    same dims written out hash alike.
    """

    preset: str | None = Field(
        None, description="Name of a preset in compiler/presets.py whose dims fill unset fields.",
        json_schema_extra=NOT_HASHED,
    )
    vocab_size: int | None = Field(None, ge=2, le=2**20, description="Vocabulary size (tokenizer and embedding rows).")
    d_model: int | None = Field(None, ge=8, le=65536, description="Residual stream width.")
    n_layers: int | None = Field(None, ge=1, le=512, description="Number of transformer blocks.")
    n_heads: int | None = Field(None, ge=1, le=1024, description="Query heads per attention layer.")
    n_kv_heads: int | None = Field(None, ge=1, le=1024, description="Key/value heads (grouped-query attention); defaults to n_heads.")
    head_dim: int | None = Field(None, ge=4, le=1024, description="Width of one head; defaults to d_model / n_heads.")
    d_ff: int | None = Field(None, ge=8, le=1 << 20, description="Hidden width of the SwiGLU MLP.")
    block: BlockKind = Field(BlockKind.parallel, description="parallel: attention and MLP read the same normed input (PaLM/GPT-J); sequential: pre-norm Llama block.")
    tied_embeddings: bool = Field(True, description="Share the input embedding with the output projection.")
    rope_theta: PositiveFloat = Field(10000.0, description="Rotary embedding base frequency.")
    rotary_dim: int | None = Field(None, ge=2, le=1024, description="Dims of each head that rotate (phi-1 rotates 32 of 64); defaults to head_dim.")
    norm_eps: PositiveFloat = Field(1e-6, le=1e-2, description="RMSNorm epsilon.")
    init_std: PositiveFloat = Field(0.02, le=1.0, description="Standard deviation of the weight initializer.")
    remat: Remat = Field(Remat.none, description="Activation rematerialization policy: none, dots (save matmul outputs), full.")


# --------------------------------------------------------------------------- data


class Role(str, enum.Enum):
    text = "text"
    code = "code"
    markup = "markup"
    code_adjacent = "code-adjacent"
    synthetic = "synthetic"
    math = "math"
    instruction = "instruction"


class SourceFormat(str, enum.Enum):
    parquet = "parquet"
    arrow = "arrow"
    jsonl = "jsonl"
    text = "text"
    array_record = "array_record"


def _default_text_field(value: object) -> object:
    return None if value == "text" else value  # the default, spelt out, hashes as the default


class DataSource(Frozen):
    """One source of a run's mixture and the tokens it contributes.

    State either `tokens` (an absolute budget) or `share` (a fraction of the
    run's total tokens); shares are turned into exact token budgets before
    hashing, so both spellings of the same budget hash alike.
    """

    uri: str = Field(
        ..., min_length=1, max_length=2048,
        description="builtin://<corpus>, tfds://<name>[:<version>]/<split>, or an fsspec path/URL (gs://, s3://, file).",
    )
    role: Role = Field(..., description="What kind of data this is; reports and the recipes group by it.", json_schema_extra=NOT_HASHED)
    tokens: TokenBudget | None = Field(None, description="Token budget of this source over the whole run (e.g. 200B); 0 drops the source.")
    share: float | None = Field(None, ge=0, le=1, allow_inf_nan=False, description="Budget as a fraction of the run's total tokens; 0 drops the source. Resolved into tokens before hashing.",
                                 json_schema_extra=NOT_HASHED)
    max_repeats: int = Field(1, ge=1, le=1000, description="How many epochs over this source the budget may take (a check; never hashed).",
                             json_schema_extra=NOT_HASHED)
    declared_tokens: TokenCount | None = Field(
        None, description="Size of the source in tokens as declared by its authors; used to price and check sources that cannot be resolved here (the lock pins the real data).",
        json_schema_extra=NOT_HASHED,
    )
    format: SourceFormat | None = Field(
        None, description="How the files are read: parquet, arrow, jsonl (also .gz/.zst), text (one document per file) or array_record (tf.train.Example records); unset: from each file's extension (dataprep.readers).",
        json_schema_extra=HASHED_WHEN_SET,
    )
    text_field: Annotated[str | None, BeforeValidator(_default_text_field)] = Field(
        None, min_length=1, max_length=256, description="The column, JSON key or feature holding each document's text; unset: text.",
        json_schema_extra=HASHED_WHEN_SET,
    )


class DataSpec(Frozen):
    sources: dict[Annotated[str, Field(pattern=RUN_NAME_PATTERN)], DataSource] = Field(
        ..., min_length=1, max_length=64, description="The mixture: source name → source. Order does not matter.",
    )
    tokenizer: str = Field("builtin://bpe", min_length=1, max_length=2048, description="Tokenizer URI; builtin://bpe is trained here on the built-in corpora.")
    seed: Seed = Field(0, description="Seed of the data order (mixture interleave and per-epoch permutations).")
    document_masking: bool = Field(False, description="Mask attention across document boundaries inside a packed sequence.")


# --------------------------------------------------------------------------- init


class ScratchInit(Frozen):
    """Start from freshly initialized weights."""

    kind: Literal["scratch"] = "scratch"
    initializer: Literal["normal", "truncated_normal"] = Field("truncated_normal", description="Weight initializer; its std is model.init_std.")
    seed: Seed = Field(0, description="Seed of the parameter initializer.")


class ParentInit(Frozen):
    """Start from the final checkpoint of a parent run: the initialization chain."""

    kind: Literal["parent"] = "parent"
    run: str | None = Field(None, pattern=RUN_NAME_PATTERN, description="Name of the parent run within the spec set.")
    hash: str | None = Field(None, pattern=HASH_PATTERN, description="Hash of a parent run outside the spec set (must be in the store to launch).")
    optimizer_state: Literal["carry", "reset"] = Field("reset", description="carry: continue the parent's AdamW moments; reset: start them at zero.")


Init = Annotated[Union[ScratchInit, ParentInit], Field(discriminator="kind")]


# --------------------------------------------------------------------------- schedule


class Unit(str, enum.Enum):
    steps = "steps"
    tokens = "tokens"


class _Phase(Frozen):
    length: TokenCount | None = Field(
        None, description="Length in the schedule's unit; at most one phase may leave it out to take the rest of the run.",
    )


class WarmupPhase(_Phase):
    """Linear ramp from `start` to `peak` (also the re-warmup of continued pretraining)."""

    kind: Literal["warmup"] = "warmup"
    start: LearningRate = Field(0.0, description="Learning rate at the first step of the phase.")
    peak: LearningRate = Field(..., description="Learning rate reached at the end of the phase.")


class CosinePhase(_Phase):
    """Cosine decay from the previous phase's end (or `start`) down to `floor`."""

    kind: Literal["cosine"] = "cosine"
    start: LearningRate | None = Field(None, description="Starting LR; defaults to where the previous phase ended.")
    floor: LearningRate = Field(..., description="Learning rate at the end of the decay.")


class LinearPhase(_Phase):
    """Linear decay (or ramp) from the previous phase's end (or `start`) to `end`."""

    kind: Literal["linear"] = "linear"
    start: LearningRate | None = Field(None, description="Starting LR; defaults to where the previous phase ended.")
    end: LearningRate = Field(..., description="Learning rate at the end of the phase (the final LR of an annealing).")


class ConstantPhase(_Phase):
    """Hold a constant learning rate."""

    kind: Literal["constant"] = "constant"
    value: LearningRate | None = Field(None, description="The LR; defaults to where the previous phase ended.")


Phase = Annotated[Union[WarmupPhase, CosinePhase, LinearPhase, ConstantPhase], Field(discriminator="kind")]


class ScheduleSpec(Frozen):
    unit: Unit = Field(Unit.steps, description="Unit of every phase length: optimizer steps or tokens.")
    phases: tuple[Phase, ...] = Field(..., min_length=1, max_length=32, description="Phases in order; their lengths must cover the run exactly.")


# --------------------------------------------------------------------------- optimizer, batch, mesh


class AdamW(Frozen):
    kind: Literal["adamw"] = "adamw"
    b1: float = Field(0.9, ge=0, lt=1, allow_inf_nan=False, description="First-moment decay.")
    b2: float = Field(0.95, ge=0, lt=1, allow_inf_nan=False, description="Second-moment decay.")
    eps: float = Field(1e-8, gt=0, le=1, allow_inf_nan=False, description="Denominator epsilon.")
    weight_decay: NonNegativeFloat = Field(0.1, le=10, description="Decoupled weight decay (multiplied by the LR).")
    clip_norm: PositiveFloat | None = Field(1.0, description="Clip gradients to this global norm; null disables clipping.")


class BatchSpec(Frozen):
    sequences: int = Field(..., ge=1, le=1 << 24, description="Sequences per optimizer step (global batch).")
    sequence_length: int = Field(..., ge=2, le=1 << 20, description="Tokens per sequence after packing.")


class Accelerator(str, enum.Enum):
    cpu = "cpu"
    tpu_v4 = "tpu-v4"
    tpu_v5e = "tpu-v5e"
    tpu_v5p = "tpu-v5p"
    tpu_v6e = "tpu-v6e"
    gpu_h100 = "gpu-h100"
    gpu_h200 = "gpu-h200"


class MeshAxes(Frozen):
    data: int = Field(1, ge=1, le=1 << 16, description="Data-parallel ways (batch split, params replicated).")
    fsdp: int = Field(1, ge=1, le=1 << 16, description="Fully-sharded data-parallel ways (batch and params split).")
    tensor: int = Field(1, ge=1, le=1 << 16, description="Tensor-parallel ways (heads and MLP width split).")


class MeshSpec(Frozen):
    accelerator: Accelerator = Field(Accelerator.cpu, description="Accelerator kind; its profile (FLOP/s, memory) lives in compiler/hardware.py.")
    chips: int = Field(1, ge=1, le=1 << 16, description="Number of chips (devices); on cpu the number of faked XLA devices.")
    topology: str | None = Field(None, pattern=r"^[0-9]+(x[0-9]+){0,2}$", description="Physical slice topology, e.g. 2x4 or 16x16 (TPU).")
    axes: MeshAxes = Field(default_factory=MeshAxes, description="Mesh axes; their product must equal chips.")


class DTypes(Frozen):
    params: Literal["float32", "bfloat16"] = Field("float32", description="Storage dtype of parameters and optimizer state.")
    compute: Literal["float32", "bfloat16"] = Field("float32", description="Dtype of activations and matmuls.")


class KernelsSpec(Frozen):
    attention: Literal["auto", "xla", "cudnn", "pallas_tpu"] = Field(
        "auto", description="Attention implementation; auto picks the best for the mesh's accelerator before hashing.",
    )
    cross_entropy: Literal["chunked", "reference"] = Field("chunked", description="chunked never materializes [tokens × vocab] logits.")
    cross_entropy_chunk: int = Field(1024, ge=1, le=1 << 20, description="Tokens per chunk of the chunked loss (its scratch is chunk × vocab floats: keep it small for large vocabularies).")


class CheckpointSpec(Frozen):
    every: int | None = Field(None, ge=1, description="Save a checkpoint every N steps (and always at the end).", json_schema_extra=NOT_HASHED)
    keep: int = Field(2, ge=1, le=1000, description="Checkpoints kept besides the final one.", json_schema_extra=NOT_HASHED)
    digest_every: int = Field(10, ge=1, description="Record a parameter digest every N steps.", json_schema_extra=NOT_HASHED)


# --------------------------------------------------------------------------- run


class RunSpec(Frozen):
    """One training run, fully expanded (no `extends`, no `matrix`)."""

    name: str = Field(..., pattern=RUN_NAME_PATTERN, description="Unique name of the run in its spec set.", json_schema_extra=NOT_HASHED)
    description: str = Field("", max_length=10_000, description="Free text; never hashed.", json_schema_extra=NOT_HASHED)
    tags: tuple[str, ...] = Field((), max_length=64, description="Labels for reports; never hashed.", json_schema_extra=NOT_HASHED)
    model: ModelSpec = Field(..., description="Architecture.")
    data: DataSpec = Field(..., description="Data mixture with token budgets.")
    init: Init = Field(default_factory=ScratchInit, description="Where the weights start: scratch or a parent run.")
    schedule: ScheduleSpec = Field(..., description="Learning-rate schedule.")
    optimizer: AdamW = Field(default_factory=AdamW, description="Optimizer.")
    batch: BatchSpec = Field(..., description="Global batch.")
    steps: int | None = Field(None, ge=1, le=10**9, description="Optimizer steps; with tokens, must satisfy tokens = steps × sequences × sequence_length.")
    tokens: TokenCount | None = Field(None, description="Total training tokens; either this or steps may be left out.")
    mesh: MeshSpec = Field(default_factory=MeshSpec, description="Hardware mesh.")
    dtypes: DTypes = Field(default_factory=DTypes, description="Parameter and compute dtypes.")
    kernels: KernelsSpec = Field(default_factory=KernelsSpec, description="Kernel implementations.")
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec, description="Checkpoint cadence; never hashed.", json_schema_extra=NOT_HASHED)

    @property
    def tokens_per_step(self) -> int:
        return self.batch.sequences * self.batch.sequence_length

    @property
    def total_steps(self) -> int:
        """Steps of the run, from `steps` or derived from `tokens` (validated to divide)."""
        if self.steps is not None:
            return self.steps
        assert self.tokens is not None, "validated specs state steps or tokens"
        return self.tokens // self.tokens_per_step

    @property
    def total_tokens(self) -> int:
        return self.total_steps * self.tokens_per_step

    @property
    def parent_ref(self) -> str | None:
        """Name or hash of the parent run, or None for a run from scratch."""
        if isinstance(self.init, ParentInit):
            return self.init.run or self.init.hash
        return None

