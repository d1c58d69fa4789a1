"""A real, tiny Hugging Face tokenizer.json for tests that need a user tokenizer file (no network)."""

from __future__ import annotations

import pathlib

WORDS = "def return print import class data model token shard lock budget the a of to in is".split()


def write_tokenizer_json(path: pathlib.Path, vocab_size: int = 300) -> pathlib.Path:
    """Train a byte-level BPE of `vocab_size` ids (with "<|endoftext|>") on a fixed word list; save it at `path`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator([" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 4, trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return path
