"""The training batches of a run, as a pure function of the step number.

`BatchFunction(...).batch_at(step)` returns this process's slice of the
global batch of step `step`, computed directly from (seed, step, slot): no
state, no iterator to replay, so a run resumed at step N reads exactly what
the uninterrupted run read, whatever the number of data workers.

How a step is filled (B sequences of L + 1 tokens, S steps):
  1. counts: source i has n_i = budget_i / L sequences over the run; step s
     holds floor or ceil of n_i / S of them (runtime.data.mixture), namely
     its sequences k = first_i(s) .. stop_i(s) - 1.
  2. slots: the B sequences of the step, listed source by source, are dealt
     to the B slots by a permutation keyed by (seed, step), so no source
     owns a fixed band of the batch.
  3. tokens: sequence k of source i reads window w_i(k) of its shard
     (runtime.data.windows): a fresh seeded permutation of the windows per
     epoch, at most `max_repeats` epochs.
  4. process p of P keeps slots [p*B/P, (p+1)*B/P) and reads only those.

Arrays per step (b = B / P): inputs, targets [b, L] int32 (targets are
inputs shifted by one); loss_mask [b, L] float32 (all ones: windows are
always full); segment_ids, positions [b, L] int32; source_ids [b] int32
(index into `sources`). With document_masking, an EOS token starts a new
segment (it acts as the next document's BOS: the last token of a document
predicts EOS within its own document, and EOS predicts the next document's
first token), segment ids count from 1 within each row, and positions
restart at 0 at each segment; without it, one segment per row and positions
0..L-1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from dataprep.repeats import repeats_problem
from dataprep.shards import TokenShard, open_shard
from runtime.data.mixture import BlockExactMixture
from runtime.data.permutation import Permutation, derive_key
from runtime.data.windows import SourceWindows


class MixtureSource(NamedTuple):
    """One data source of a run, as plain values.

    name: unique name within the run (keys its window order; shown in errors).
    shard: a TokenShard, or the path of a shard folder.
    token_budget: tokens (= targets) this source contributes over the run; a
      multiple of the sequence length.
    max_repeats: most epochs (passes over the source's windows) allowed.
    """

    name: str
    shard: TokenShard | str | os.PathLike
    token_budget: int
    max_repeats: int


class DataPlanError(ValueError):
    """The sources cannot fill the run as specified; lists every problem found."""

    def __init__(self, problems: Sequence[str]):
        self.problems = tuple(problems)
        super().__init__("invalid data plan:\n  - " + "\n  - ".join(self.problems))


class BatchFunction:
    """Step number -> this process's batch; picklable, for grain workers."""

    def __init__(
        self,
        sources: Sequence[MixtureSource | tuple],
        sequence_length: int,
        global_batch_size: int,
        num_steps: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        document_masking: bool = False,
    ):
        """Validate the plan (all problems reported at once) and open the shards.

        sources: (name, shard, token_budget, max_repeats) per source.
        sequence_length: L, tokens per training sequence (inputs and targets).
        global_batch_size: B, sequences per step over all processes.
        num_steps: S; the budgets must add up to exactly S * B * L tokens.
        seed: the data seed; every permutation is keyed by it.
        process_index, process_count: this process's slice of each batch.
        document_masking: derive segment_ids/positions from EOS boundaries.
        """
        self.sources = tuple(MixtureSource(*source) for source in sources)
        self.sequence_length = int(sequence_length)
        self.global_batch_size = int(global_batch_size)
        self.num_steps = int(num_steps)
        self.seed = int(seed)
        self.process_index = int(process_index)
        self.process_count = int(process_count)
        self.document_masking = bool(document_masking)
        self._check_shape()
        self.shards = tuple(
            s.shard if isinstance(s.shard, TokenShard) else open_shard(s.shard) for s in self.sources
        )
        self.windows = tuple(
            SourceWindows(s.name, shard.num_tokens, self.sequence_length, self.seed)
            for s, shard in zip(self.sources, self.shards)
        )
        self.num_sequences = tuple(s.token_budget // self.sequence_length for s in self.sources)
        self._check_sources()
        self.mixture = BlockExactMixture(self.num_sequences, self.global_batch_size, self.num_steps)
        self.local_batch_size = self.global_batch_size // self.process_count
        self.eos_id = self.shards[0].eos_id

    # --- validation -----------------------------------------------------------------------

    def _check_shape(self) -> None:
        problems = []
        for label, value in (
            ("sequence_length", self.sequence_length),
            ("global_batch_size", self.global_batch_size),
            ("num_steps", self.num_steps),
            ("process_count", self.process_count),
        ):
            if value < 1:
                problems.append(f"{label} must be >= 1, got {value}")
        if not 0 <= self.process_index < max(self.process_count, 1):
            problems.append(f"process_index {self.process_index} outside [0, {self.process_count})")
        if self.process_count >= 1 and self.global_batch_size % self.process_count:
            problems.append(
                f"global_batch_size {self.global_batch_size} is not divisible by "
                f"process_count {self.process_count}"
            )
        if not self.sources:
            problems.append("no sources")
        names = [s.name for s in self.sources]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"source name {name!r} is used more than once")
        for source in self.sources:
            if source.token_budget < 0:
                problems.append(f"source {source.name!r}: token budget {source.token_budget} is negative")
            elif self.sequence_length >= 1 and source.token_budget % self.sequence_length:
                problems.append(
                    f"source {source.name!r}: token budget {source.token_budget:,} is not a "
                    f"multiple of the sequence length {self.sequence_length}"
                )
        if problems:
            raise DataPlanError(problems)

    def _check_sources(self) -> None:
        problems = []
        total = sum(self.num_sequences)
        wanted = self.num_steps * self.global_batch_size
        if total != wanted:
            problems.append(
                f"the budgets add up to {total * self.sequence_length:,} tokens "
                f"({total:,} sequences of {self.sequence_length}), but {self.num_steps:,} steps "
                f"x {self.global_batch_size} sequences need {wanted * self.sequence_length:,} "
                f"tokens ({wanted:,} sequences)"
            )
        for source, shard, windows, n in zip(self.sources, self.shards, self.windows, self.num_sequences):
            if n == 0:
                continue
            if windows.num_windows == 0:
                problems.append(
                    f"source {source.name!r} ({shard.source}) has {shard.num_tokens:,} tokens, "
                    f"fewer than one sequence of {self.sequence_length} + 1"
                )
                continue
            problem = repeats_problem(source.token_budget, shard.num_tokens, self.sequence_length,
                                      source.max_repeats, f"tokens of {shard.source}")
            if problem:
                problems.append(f"source {source.name!r}: {problem}")
        if len({shard.eos_id for shard in self.shards}) > 1 or len({s.vocab_size for s in self.shards}) > 1:
            problems.append(
                "the shards were not made with one tokenizer: "
                + ", ".join(f"{s.name}: eos {sh.eos_id}, vocab {sh.vocab_size}" for s, sh in zip(self.sources, self.shards))
            )
        if problems:
            raise DataPlanError(problems)

    # --- the batch ------------------------------------------------------------------------

    def slots_at(self, step: int, every_slot: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(source index, sequence index k) for each of this process's slots of `step` (all B with every_slot)."""
        first, stop = self.mixture.step_range(int(step))
        counts = np.subtract(stop, first)
        ends = np.cumsum(counts)
        lo, rows = (0, self.global_batch_size) if every_slot else (self.process_index * self.local_batch_size,
                                                                    self.local_batch_size)
        slots = np.arange(lo, lo + rows, dtype=np.int64)
        items = Permutation(self.global_batch_size, derive_key(self.seed, "slots", int(step)))(slots)
        source_ids = np.searchsorted(ends, items, side="right")
        sequence_ids = np.asarray(first, dtype=np.int64)[source_ids] + items - (ends - counts)[source_ids]
        return source_ids, sequence_ids

    def batch_at(self, step: int) -> dict[str, np.ndarray]:
        """The arrays of step `step` for this process (see the module docstring), computed directly.

        The trainer reads the same batches through grain (runtime.data.pipeline);
        this is the reference the pipeline is tested against, and what a single
        step's batch costs without grain.
        """
        source_ids, sequence_ids = self.slots_at(step)
        length = self.sequence_length
        rows = np.empty((self.local_batch_size, length + 1), dtype=np.int32)
        offsets = np.arange(length + 1, dtype=np.int64)
        for source in np.unique(source_ids):
            chosen = source_ids == source
            starts = self.windows[source].token_starts(sequence_ids[chosen])
            rows[chosen] = self.shards[source].tokens[starts[:, None] + offsets]
        return self.fields(rows, source_ids)

    def fields(self, rows: np.ndarray, source_ids: np.ndarray) -> dict[str, np.ndarray]:
        """The batch's arrays from its [b, L + 1] token rows and their sources."""
        rows = np.asarray(rows, dtype=np.int32)
        inputs, targets = rows[:, :-1], rows[:, 1:]
        segment_ids, positions = self._segments(inputs)
        return {
            "inputs": np.ascontiguousarray(inputs),
            "targets": np.ascontiguousarray(targets),
            "loss_mask": np.ones(inputs.shape, dtype=np.float32),
            "segment_ids": segment_ids,
            "positions": positions,
            "source_ids": np.asarray(source_ids, dtype=np.int32),
        }

    __call__ = batch_at

    def grain_dataset(self, start_step: int = 0, stop_step: int | None = None, **read_options):
        """This process's batches through the grain pipeline (runtime.data.pipeline.make_batch_dataset)."""
        from runtime.data.pipeline import make_batch_dataset  # noqa: PLC0415 (grain)

        return make_batch_dataset(self, start_step=start_step, stop_step=stop_step, **read_options)

    def _segments(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch, length = inputs.shape
        columns = np.broadcast_to(np.arange(length, dtype=np.int32), (batch, length))
        if not self.document_masking:
            return np.ones((batch, length), dtype=np.int32), np.array(columns)
        starts = inputs == self.eos_id
        starts[:, 0] = True
        segment_ids = np.cumsum(starts, axis=1, dtype=np.int32)
        segment_start = np.maximum.accumulate(np.where(starts, columns, 0), axis=1)
        return segment_ids, (columns - segment_start).astype(np.int32)

    # --- accounting -----------------------------------------------------------------------

    def summary(self) -> list[dict[str, object]]:
        """Per source: what the run takes from it (for the plan table and the lock)."""
        return [
            {
                "name": source.name,
                "source": shard.source,
                "shard_digest": shard.digest,
                "shard_tokens": shard.num_tokens,
                "windows": windows.num_windows,
                "token_budget": source.token_budget,
                "sequences": n,
                "epochs": windows.epochs_needed(n),
                "passes": n / windows.num_windows if windows.num_windows else 0.0,
                "max_repeats": source.max_repeats,
            }
            for source, shard, windows, n in zip(self.sources, self.shards, self.windows, self.num_sequences)
        ]


def make_batch_function(
    sources: Sequence[MixtureSource | tuple],
    sequence_length: int,
    global_batch_size: int,
    num_steps: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    document_masking: bool = False,
) -> BatchFunction:
    """The batch function of a run; see BatchFunction.__init__ for the arguments."""
    return BatchFunction(
        sources,
        sequence_length,
        global_batch_size,
        num_steps,
        seed,
        process_index=process_index,
        process_count=process_count,
        document_masking=document_masking,
    )
