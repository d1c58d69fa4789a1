"""The one `max_repeats` rule, in the units the trainer reads: whole windows of L + 1 tokens.

The trainer cuts a source's token stream of T tokens into W = (T - 1) // L
non-overlapping windows (runtime.data.windows: L + 1 tokens each, stride L,
the remainder never read), and a budget of B tokens is B / L sequences, one
window each. So the budget takes ceil((B / L) / W) passes over the source.
Counting in raw tokens instead (B / T) is too lenient by up to a window per
pass: 1,024 tokens at L = 128 are 7 windows, not 8, and a 1,024-token budget
needs 2 passes. validate (declared tokens), plan (the lock's count) and the
runtime (the shard) all call `passes_needed`, so no stage passes a run
another stage refuses.
"""

from __future__ import annotations


def num_windows(num_tokens: int, sequence_length: int) -> int:
    """How many windows of L + 1 tokens at stride L fit in `num_tokens` tokens."""
    return max(0, (int(num_tokens) - 1) // int(sequence_length))


def passes_needed(budget_tokens: int, num_tokens: int, sequence_length: int) -> float:
    """Epochs over a source of `num_tokens` that a budget of `budget_tokens` takes (inf: not one window)."""
    sequences = -(-int(budget_tokens) // int(sequence_length))
    if sequences == 0:
        return 0
    windows = num_windows(num_tokens, sequence_length)
    if windows == 0:
        return float("inf")
    return -(-sequences // windows)


def repeats_problem(budget_tokens: int, num_tokens: int, sequence_length: int, max_repeats: int,
                    counted: str) -> str | None:
    """The one-line problem when the budget needs more than `max_repeats` passes (None when it fits).

    counted: what `num_tokens` is, for the message ("declared tokens", "tokens the lock counted in X").
    """
    needed = passes_needed(budget_tokens, num_tokens, sequence_length)
    if needed <= max_repeats:
        return None
    windows = num_windows(num_tokens, sequence_length)
    if windows == 0:
        return (f"budget {budget_tokens:,} tokens, but the {num_tokens:,} {counted} are fewer than one sequence "
                f"of {sequence_length} + 1 tokens")
    return (f"budget {budget_tokens:,} tokens ({budget_tokens // sequence_length:,} sequences of {sequence_length}) "
            f"needs {needed} repeats of the {num_tokens:,} {counted} ({windows:,} sequences of {sequence_length} + 1, "
            f"stride {sequence_length}), but max_repeats is {max_repeats}")
