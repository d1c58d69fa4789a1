"""Whether a model can embed every id of a tokenizer: the one rule, for lock, plan and runtime.

Every id the tokenizer can emit needs an embedding row, so the tokenizer's
vocabulary (added tokens included) must not exceed the model's `vocab_size`.
A larger model vocabulary is padding and is allowed: phi-1 pads codegen's
50,257 tokens to 51,200 rows, so the embedding splits evenly over a mesh.
Pure Python, so `runix compile --dry-run` can check it without tokenizers.
"""

from __future__ import annotations


def check_vocab(uri: str, tokenizer_vocab: int, model_vocab: int | None) -> str | None:
    """The problem (one line, both numbers) when the model cannot embed every id of the tokenizer."""
    if model_vocab is None or tokenizer_vocab <= model_vocab:
        return None
    return (f"tokenizer {uri} has a vocabulary of {tokenizer_vocab:,} tokens but model.vocab_size is "
            f"{model_vocab:,}; set model.vocab_size to at least {tokenizer_vocab:,} (padding is allowed)")
