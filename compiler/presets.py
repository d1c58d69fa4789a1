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
    # attention, SwiGLU, no biases; widths and depths are not published. Rule
    # used for both sizes: count parameters *with* the 256k embedding, tied to
    # the output layer (Cohere's Command models tie them), d_ff = 8/3·d_model
    # rounded up to a multiple of 256, then pick the depth that lands on the
    # paper's size (compiler.flops has the formulas; specs/to_code/README.md
    # the arithmetic):
    #   470m: 256000·1024 = 262.1M embedding + 16·(4·1024² + 3·1024·2816 + 1024)
    #         = 205.5M blocks → 467.7M total (head_dim 64).
    #   2.8b: 256000·2560 = 655.4M embedding + 27·(4·2560² + 3·2560·6912 + 2560)
    #         = 2141.1M blocks → 2.796B total (head_dim 128). The earlier 24
    #         layers gave only 2.559B (9% short), hence 27.
    "to-code-470m": MappingProxyType(dict(vocab_size=256_000, d_model=1024, n_layers=16, n_heads=16, d_ff=2816)),
    "to-code-2.8b": MappingProxyType(dict(vocab_size=256_000, d_model=2560, n_layers=27, n_heads=20, d_ff=6912)),
    # Arctic-SnowCoder-1.3B (arXiv 2409.02326): Llama-2-like, published dims,
    # tied embeddings: 64000·2048 = 131.1M + 24·(4·2048² + 3·2048·5632 + 2·2048)
    # = 1233.2M → 1.364B total.
    "snowcoder-1.3b": MappingProxyType(dict(
        vocab_size=64_000, d_model=2048, n_layers=24, n_heads=16, n_kv_heads=16, d_ff=5632, block="sequential",
        tied_embeddings=True,
    )),
    # phi-1 (arXiv 2306.11644): published dims; rotary on 32 of 64 head dims;
    # untied input and output embeddings (51200·2048 each = 104.9M).
    # Its MLP is a plain GELU MLP 2048 → 8192 → 2048 (2·2048·8192 = 33.55M
    # weights per layer); runix's block is SwiGLU (3·2048·d_ff), so d_ff is
    # chosen to keep that count: 33.55M / (3·2048) = 5461.3. 5461 itself is odd
    # (43·127) and would not split over 8 fsdp/tensor ways, so d_ff = 5504
    # (43·128): +0.8% MLP weights, 1.424B total against the original's 1.418B
    # (both without phi-1's biases, which runix's block does not have).
    "phi-1": MappingProxyType(dict(
        vocab_size=51_200, d_model=2048, n_layers=24, n_heads=32, head_dim=64, d_ff=5504, rotary_dim=32,
        tied_embeddings=False,
    )),
})
