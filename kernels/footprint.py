"""Transient memory of the loss and attention kernels, in bytes, for the dry-run price of a run.

Why here and in pure Python: the compiler prices memory per chip before anything
runs and must never import jax, yet only the kernels know what they allocate.
The formulas count, term by term, the buffers each kernel holds; the tests
check them against XLA's own buffer assignment (`compiled.memory_analysis()`)
of the real kernels on CPU, so a change to a kernel that changes its memory
fails a test instead of silently mispricing runs.

What is counted: bytes beyond the kernel's inputs and its outputs (the model's
activations, parameters and gradients, which the compiler counts itself).

This module imports nothing from jax or the other kernels.
"""

from __future__ import annotations

FLOAT32_BYTES = 4

CROSS_ENTROPY_IMPLEMENTATIONS = ("chunked", "reference")
ATTENTION_IMPLEMENTATIONS = ("xla", "cudnn", "pallas_tpu")


def cross_entropy_peak_bytes(
    tokens: int,
    vocab: int,
    d_model: int,
    chunk_size: int,
    implementation: str,
    *,
    dtype_bytes: int = FLOAT32_BYTES,
    fused: bool = False,
) -> int:
    """Peak transient bytes of value_and_grad of the output-layer loss over `tokens` tokens.

    Args:
      tokens: tokens in one loss call (per-chip microbatch x sequence length).
      vocab, d_model: shape of the output weight.
      chunk_size: tokens per chunk (ignored by "reference").
      implementation: "chunked" (`kernels.cross_entropy`) or "reference"
        (`kernels.cross_entropy_reference`), as in the run spec's kernels section.
      dtype_bytes: bytes per element of hidden states and weight (4 float32, 2 bfloat16).
      fused: "chunked" as XLA compiles it for TPU: of a chunk's [chunk,
        vocab] work only exp(logits - max) is written to memory, in float32;
        the probabilities and the logit gradient are recomputed from it inside
        the two matmul fusions that read them. Measured with libtpu's v5e
        compiler (tests/kernels/test_footprint.py). False: XLA:CPU, which
        writes out the logit gradient too.

    An upper bound, tight within about 1.5x: "chunked" holds at most two
    float32 [chunk, vocab] blocks (logits/softmax and the logit gradient; XLA
    sometimes reuses one for the other) plus, with bfloat16 inputs, the logit
    gradient rounded to bfloat16; a float32 [vocab, d_model] weight gradient
    accumulator; and the float32 [tokens, d_model] hidden gradient.
    "reference" holds three float32 [tokens, vocab] arrays (logits, log-probs,
    their gradient), plus a bfloat16 copy of the gradient with bfloat16 inputs,
    and the float32 hidden gradient.
    """
    _check_positive(tokens=tokens, vocab=vocab, d_model=d_model, chunk_size=chunk_size, dtype_bytes=dtype_bytes)
    low_precision = dtype_bytes < FLOAT32_BYTES
    if implementation == "reference":
        per_logit = 3 * FLOAT32_BYTES + (dtype_bytes if low_precision else 0)
        hidden_grad = tokens * d_model * FLOAT32_BYTES
        return tokens * vocab * per_logit + hidden_grad + tokens * 4 * FLOAT32_BYTES
    if implementation != "chunked":
        raise ValueError(f"unknown cross-entropy implementation {implementation!r}; choose one of {CROSS_ENTROPY_IMPLEMENTATIONS}")
    chunk = min(chunk_size, tokens)
    padded_tokens = -(-tokens // chunk) * chunk
    if fused:
        per_logit = FLOAT32_BYTES
    else:
        per_logit = 2 * FLOAT32_BYTES + (dtype_bytes if low_precision else 0)
    logit_blocks = chunk * vocab * per_logit
    weight_grad_accumulator = vocab * d_model * FLOAT32_BYTES
    hidden_grad = padded_tokens * d_model * FLOAT32_BYTES
    padded_hidden_copy = padded_tokens * d_model * dtype_bytes if padded_tokens != tokens else 0
    per_token_vectors = padded_tokens * 4 * FLOAT32_BYTES  # targets, weights, nll, their padding
    return logit_blocks + weight_grad_accumulator + hidden_grad + padded_hidden_copy + per_token_vectors


def attention_activation_bytes(
    batch: int,
    seq_len: int,
    n_heads: int,
    n_kv_heads: int,
    head_dim: int,
    implementation: str,
    *,
    dtype_bytes: int = 2,
    segment_ids: bool = False,
) -> int:
    """Bytes one attention call keeps alive from its forward pass to its backward pass.

    Beyond q, k, v and the output, which the model keeps anyway. A model without
    rematerialization holds this once per layer; add `attention_peak_bytes` of
    one call for the backward pass in progress.

    "xla" (`kernels.attention_reference`, plain jnp under autodiff) keeps, per
    query head and [L, L] score: the float32 masked scores and their
    exponentials, the boolean mask, and the probabilities in the input dtype.
    "cudnn" and "pallas_tpu" keep only the
    float32 log-sum-exp per query row; "pallas_tpu" also keeps its head-major
    copies of q, k, v and the output, and "cudnn" with segment ids the dense
    [B, 1, L, L] mask bias that `jax.nn.dot_product_attention` builds.
    """
    _check_attention_args(batch, seq_len, n_heads, n_kv_heads, head_dim, dtype_bytes)
    scores = batch * n_heads * seq_len * seq_len
    row_stats = batch * n_heads * seq_len * FLOAT32_BYTES
    if implementation == "xla":
        per_score = 2 * FLOAT32_BYTES + 1 + dtype_bytes
        return scores * per_score
    if implementation == "cudnn":
        bias = batch * seq_len * seq_len * dtype_bytes if segment_ids else 0
        return row_stats + bias
    if implementation == "pallas_tpu":
        head_major_copies = batch * seq_len * (2 * n_heads + 2 * n_kv_heads) * head_dim * dtype_bytes
        return row_stats + head_major_copies
    raise ValueError(f"unknown attention implementation {implementation!r}; choose one of {ATTENTION_IMPLEMENTATIONS}")


def attention_peak_bytes(
    batch: int,
    seq_len: int,
    n_heads: int,
    n_kv_heads: int,
    head_dim: int,
    implementation: str,
    *,
    dtype_bytes: int = 2,
    segment_ids: bool = False,
) -> int:
    """Peak transient bytes of value_and_grad of one attention call: what it keeps plus its backward workspace.

    "xla" adds the float32 gradient of the scores, and with bfloat16 inputs
    the float32 and bfloat16 gradients of the probabilities, which then cannot
    share the scores' buffer. The fused kernels add one more
    float32 row statistic (rowsum(dO * O)) and, for "cudnn" with segment ids,
    the boolean mask it builds the bias from; their tiles live in on-chip memory.
    """
    saved = attention_activation_bytes(
        batch, seq_len, n_heads, n_kv_heads, head_dim, implementation,
        dtype_bytes=dtype_bytes, segment_ids=segment_ids,
    )
    scores = batch * n_heads * seq_len * seq_len
    row_stats = batch * n_heads * seq_len * FLOAT32_BYTES
    if implementation == "xla":
        low_precision = dtype_bytes < FLOAT32_BYTES
        return saved + scores * (FLOAT32_BYTES + (FLOAT32_BYTES + dtype_bytes if low_precision else 0))
    if implementation == "cudnn":
        mask = batch * seq_len * seq_len if segment_ids else 0
        return saved + row_stats + mask
    return saved + row_stats


def _check_attention_args(batch, seq_len, n_heads, n_kv_heads, head_dim, dtype_bytes) -> None:
    _check_positive(
        batch=batch, seq_len=seq_len, n_heads=n_heads, n_kv_heads=n_kv_heads,
        head_dim=head_dim, dtype_bytes=dtype_bytes,
    )
    if n_heads % n_kv_heads:
        raise ValueError(f"n_kv_heads={n_kv_heads} must divide n_heads={n_heads}")


def _check_positive(**values: int) -> None:
    bad = [f"{name}={value}" for name, value in values.items() if not (isinstance(value, int) and value >= 1)]
    if bad:
        raise ValueError("expected positive integers: " + ", ".join(bad))
