"""Named model shapes, as data.

Why presets: the recipes share a few architectures, and a spec that says
`preset: to-code-470m` reads like the paper. A preset only fills dims the spec
leaves unset, and is expanded before hashing, so it never changes a hash by
itself. Assumptions behind shapes the papers do not publish are stated here.
"""

from __future__ import annotations

from types import MappingProxyType

PRESETS = MappingProxyType({
    # CPU-sized model for specs/tiny: a few seconds per hundred steps here.
    "tiny": MappingProxyType(dict(vocab_size=4096, d_model=64, n_layers=2, n_heads=4, d_ff=256)),
    "tiny-wide": MappingProxyType(dict(vocab_size=4096, d_model=512, n_layers=2, n_heads=8, d_ff=2048)),
    # "To Code, or Not To Code?" (arXiv 2408.10914): 256k vocab, parallel
    # attention, SwiGLU, no biases. Widths/depths are not published; these give
    # ~470M and ~2.8B parameters including the tied 256k embedding
    # (see specs/to_code/README.md for the arithmetic).
    "to-code-470m": MappingProxyType(dict(vocab_size=256_000, d_model=1024, n_layers=16, n_heads=16, d_ff=2816)),
    "to-code-2.8b": MappingProxyType(dict(vocab_size=256_000, d_model=2560, n_layers=24, n_heads=20, d_ff=6912)),
    # Arctic-SnowCoder-1.3B (arXiv 2409.02326): Llama-2-like, published dims.
    "snowcoder-1.3b": MappingProxyType(dict(
        vocab_size=64_000, d_model=2048, n_layers=24, n_heads=16, n_kv_heads=16, d_ff=5632, block="sequential",
    )),
    # phi-1 (arXiv 2306.11644): published dims; rotary on 32 of 64 head dims.
    # Its MLP is a plain 8192-wide MLP in the paper; runix's block is SwiGLU, so
    # d_ff=5461 keeps the MLP's parameter count (3·2048·5461 ≈ 2·2048·8192).
    "phi-1": MappingProxyType(dict(
        vocab_size=51_200, d_model=2048, n_layers=24, n_heads=32, head_dim=64, d_ff=5461, rotary_dim=32,
        tied_embeddings=False,
    )),
})
