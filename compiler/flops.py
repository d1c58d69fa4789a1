"""Parameter counts and training FLOPs of a resolved run, in closed form.

Why closed form: the dry run prices 64 runs before anything is launched, in a
process that must never import jax; every number here is arithmetic on the
spec's dims, so a user can redo it by hand (and tests do).

Notation (per run): V vocab_size, D d_model, L n_layers, H n_heads, K n_kv_heads,
h head_dim, F d_ff (SwiGLU hidden width), S sequence_length.

Parameters (runix's block: RMSNorm, rotary, SwiGLU, no biases):
  embedding      V·D                      (input table; also the output layer when tied)
  output         D·V if untied, else 0
  attention      L·D·h·(2H + 2K)          (Wq D×Hh, Wk and Wv D×Kh, Wo Hh×D)
  mlp            L·3·D·F                  (gate, up: D×F; down: F×D)
  norms          L·D (parallel block: one RMSNorm) or L·2D (sequential), + D final norm
  non_embedding  attention + mlp + norms  (Kaplan et al. 2020 §2.1 exclude embeddings the same way)

Training FLOPs per token (forward + backward = 3 × forward; Kaplan et al. 2020 §2.1,
Hoffmann et al. 2022 "Chinchilla" Appendix F: the backward pass costs twice the forward):
  dense      6·(attention + mlp)          2 FLOPs per multiply-add per weight, ×3
  attention  6·L·H·h·S                    QKᵀ and AV: 2·2·L·H·h·S forward per token (PaLM,
                                          Chowdhery et al. 2022, Appendix B: 12·L·H·Q·T for
                                          training), halved for the causal mask as MaxText's
                                          calculate_tflops_training_per_device does
  output     6·D·V                        the logits matmul over the whole vocabulary
                                          (Chinchilla Appendix F "final logits")
  per token  dense + attention + output
  total      per token × tokens
Not counted, as in the sources above: the embedding lookup (a gather), norms,
rotary, softmax and other elementwise work, and recomputation under `remat`:
these are *model* FLOPs, the numerator of model-FLOPs utilization (MFU, PaLM
Appendix B), so the MFU assumed in compiler/hardware.py is what absorbs
rematerialization and every other overhead. MaxText counts the same terms
(causal halving and the output layer included), which is why its published
MFUs are the natural default to price against.
"""

from __future__ import annotations

import dataclasses

from compiler.spec import BlockKind, ModelSpec, RunSpec


@dataclasses.dataclass(frozen=True)
class ParameterCount:
    """Parameters of one model, by part (see the module docstring for the formulas)."""

    embedding: int
    output: int
    attention: int
    mlp: int
    norms: int

    @property
    def non_embedding(self) -> int:
        return self.attention + self.mlp + self.norms

    @property
    def total(self) -> int:
        return self.embedding + self.output + self.non_embedding

    @property
    def matmul(self) -> int:
        """Weights of the blocks' matmuls (what the dense FLOPs are proportional to)."""
        return self.attention + self.mlp

    def per_layer(self, n_layers: int) -> int:
        """Matmul weights and norm scales of one block (what an fsdp all-gather fetches at a time)."""
        return (self.attention + self.mlp + self.norms) // n_layers


@dataclasses.dataclass(frozen=True)
class FlopCount:
    """Training FLOPs of a run: per token, by term, and in total."""

    dense_per_token: int
    attention_per_token: int
    output_per_token: int
    tokens: int

    @property
    def per_token(self) -> int:
        return self.dense_per_token + self.attention_per_token + self.output_per_token

    @property
    def total(self) -> int:
        return self.per_token * self.tokens


def parameter_count(model: ModelSpec) -> ParameterCount:
    """Parameters of a resolved model (every dim filled in by compiler.resolve)."""
    d, h = model.d_model, model.head_dim
    norms_per_layer = 1 if model.block == BlockKind.parallel.value else 2
    return ParameterCount(
        embedding=model.vocab_size * d,
        output=0 if model.tied_embeddings else d * model.vocab_size,
        attention=model.n_layers * d * h * (2 * model.n_heads + 2 * model.n_kv_heads),
        mlp=model.n_layers * 3 * d * model.d_ff,
        norms=model.n_layers * norms_per_layer * d + d,
    )


def training_flops(spec: RunSpec) -> FlopCount:
    """Training FLOPs of a resolved run (formula and sources in the module docstring)."""
    model = spec.model
    params = parameter_count(model)
    seq = spec.batch.sequence_length
    return FlopCount(
        dense_per_token=6 * params.matmul,
        attention_per_token=6 * model.n_layers * model.n_heads * model.head_dim * seq,
        output_per_token=6 * model.d_model * model.vocab_size,
        tokens=spec.total_tokens,
    )
