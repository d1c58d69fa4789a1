"""What a run's locked data must satisfy before it can train: repeats and the tokenizer's vocabulary.

Both checks need what only the lock knows (the token count of the real
data, the tokenizer's real vocabulary), so they run wherever a lock meets
the runs: `runix lock` (before writing it), `compile` and `launch` (plan).
The rules are dataprep's (`repeats.repeats_problem`,
`vocab.check_vocab`), the ones the trainer applies, so a run that
passes here never fails on them at its first step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from compiler.problems import Problem
from compiler.specset import CompiledRun
from dataprep.repeats import repeats_problem
from dataprep.vocab import check_vocab

if TYPE_CHECKING:
    from compiler.lock import Lock


def data_problems(run: CompiledRun, lock: Lock) -> list[Problem]:
    return repeat_problems(run, lock) + tokenizer_problems(run, lock)


def repeat_problems(run: CompiledRun, lock: Lock) -> list[Problem]:
    """Budgets that need more passes over a source's counted tokens than its max_repeats.

    compiler.validate checks the same against `declared_tokens`; here the
    lock's count of the actual data (under the run's tokenizer) is used when
    there is one.
    """
    problems = []
    length = run.spec.batch.sequence_length
    for name, src in sorted(run.spec.data.sources.items()):
        count = lock.token_count(src.uri, run.spec, src)
        if count is None or not src.tokens:
            continue
        problem = repeats_problem(src.tokens, count, length, src.max_repeats, f"tokens the lock counted in {src.uri}")
        if problem:
            problems.append(Problem(run.location, f"runs[{run.name}].data.sources.{name}.max_repeats",
                                    f"run {run.name!r}: {problem}; raise max_repeats, lower the budget, or add data"))
    return problems


def tokenizer_problems(run: CompiledRun, lock: Lock) -> list[Problem]:
    """A locked tokenizer whose vocabulary the model cannot embed (both numbers named)."""
    from compiler.lock import tokenizer_key  # noqa: PLC0415 (compiler.lock imports the plan's modules)

    entry = lock.tokenizers.get(tokenizer_key(run.spec))
    if entry is None or entry.locked is None or "vocab_size" not in entry.locked:
        return []
    problem = check_vocab(run.spec.data.tokenizer, int(entry.locked["vocab_size"]), run.spec.model.vocab_size)
    return [Problem(run.location, f"runs[{run.name}].model.vocab_size", f"run {run.name!r}: {problem}")] if problem else []
