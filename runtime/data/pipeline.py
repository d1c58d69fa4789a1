"""The grain pipeline the trainer reads: a MapDataset over the run's sequences, sliced per host, batched by grain.

    MapDataset.source(SequenceSource)      element g -> one sequence of L + 1 tokens (the custom piece:
                                           block-exact selection, runtime.data.step_batches)
      [process_index::process_count]       per-host slicing (grain)
      .batch(b, drop_remainder=True)       b = B / P rows per step (grain)
      .map(BatchFields)                    inputs, targets, segments, positions
      [start_step:stop_step]               resume: batch N is element N, nothing is replayed
      .to_iter_dataset(ReadOptions(...))   read-ahead threads (grain)
      .mp_prefetch(...)                    optional read-ahead worker processes (grain)

Element order. The sequences of the run are numbered so that grain's own
per-host slice `[p::P]` hands process p exactly the slots it held before
(the contiguous block [p*b, (p+1)*b) of each step): element g is slot
p*b + (m mod b) of step m div b, where p = g mod P and m = g div P. So the
batch of step N on process p is element N of the batched dataset, and its
tokens are those of `BatchFunction.batch_at(N)` (tests compare every step,
for one and for two processes). Because every element is a pure function of
its index, the stream is the same for any number of threads or workers, a
resume is a slice, and an iterator's `get_state()`/`set_state()` round-trips.
"""

from __future__ import annotations

import functools

import grain
import numpy as np

from runtime.data.step_batches import BatchFunction


class SequenceSource:
    """grain RandomAccessDataSource: global element g -> {"tokens": [L + 1] int32, "source_id": int32}.

    The one custom piece of the pipeline: which window of which source fills
    which slot of which step (BatchFunction.slots_at). Picklable (shards
    re-map their files in grain worker processes).
    """

    def __init__(self, batch_fn: BatchFunction, process_count: int):
        if batch_fn.global_batch_size % process_count:
            raise ValueError(f"global batch {batch_fn.global_batch_size} is not divisible by {process_count} processes")
        self.batch_fn = batch_fn
        self.process_count = int(process_count)
        self.local_rows = batch_fn.global_batch_size // self.process_count
        self._offsets = np.arange(batch_fn.sequence_length + 1, dtype=np.int64)

    def __len__(self) -> int:
        return self.batch_fn.num_steps * self.batch_fn.global_batch_size

    def __getitem__(self, g: int) -> dict[str, np.ndarray]:
        g = int(g)
        process, m = g % self.process_count, g // self.process_count
        step, row = divmod(m, self.local_rows)
        source_ids, windows_start = self._step(step)
        slot = process * self.local_rows + row
        source = int(source_ids[slot])
        start = int(windows_start[slot])
        tokens = self.batch_fn.shards[source].tokens[start:start + self.batch_fn.sequence_length + 1]
        return {"tokens": tokens.astype(np.int32), "source_id": np.int32(source)}

    @functools.lru_cache(maxsize=4)  # noqa: B019 - a few steps in flight; keyed by step only
    def _step(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(source id, first token) of every slot of `step`, all B of them (computed once per step)."""
        source_ids, sequence_ids = self.batch_fn.slots_at(step, every_slot=True)
        starts = np.empty(source_ids.shape, dtype=np.int64)
        for source in np.unique(source_ids):
            chosen = source_ids == source
            starts[chosen] = self.batch_fn.windows[source].token_starts(sequence_ids[chosen])
        return source_ids, starts

    def __getstate__(self):
        return {"batch_fn": self.batch_fn, "process_count": self.process_count}

    def __setstate__(self, state) -> None:
        self.__init__(state["batch_fn"], state["process_count"])

    def __repr__(self) -> str:
        return f"SequenceSource({len(self)} sequences, {self.process_count} processes)"


class BatchFields:
    """grain map: a batch of b sequences -> the trainer's fields (BatchFunction.fields)."""

    def __init__(self, batch_fn: BatchFunction):
        self.batch_fn = batch_fn

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.batch_fn.fields(batch["tokens"], batch["source_id"])


def make_batch_dataset(
    batch_fn: BatchFunction,
    *,
    start_step: int = 0,
    stop_step: int | None = None,
    num_threads: int = 1,
    prefetch_buffer_size: int = 4,
    num_workers: int = 0,
    worker_buffer_size: int = 2,
) -> grain.IterDataset:
    """This process's batches of steps start_step .. stop_step - 1, read ahead by grain.

    num_threads, prefetch_buffer_size: grain ReadOptions (threads that read
      elements ahead; 0 threads reads each when asked).
    num_workers: > 0 computes batches in that many worker processes
      (grain mp_prefetch); worker_buffer_size batches are buffered per worker.
    """
    stop_step = batch_fn.num_steps if stop_step is None else stop_step
    if not 0 <= start_step <= stop_step <= batch_fn.num_steps:
        raise ValueError(f"steps [{start_step}, {stop_step}) outside [0, {batch_fn.num_steps}]")
    batches = batch_map_dataset(batch_fn)[start_step:stop_step]
    dataset = batches.to_iter_dataset(
        grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size))
    if num_workers > 0:
        _mark_absl_flags_parsed()
        dataset = dataset.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=worker_buffer_size))
    return dataset


def batch_map_dataset(batch_fn: BatchFunction) -> grain.MapDataset:
    """The run's batches for this process as a grain MapDataset: element N is step N's batch."""
    count, index = batch_fn.process_count, batch_fn.process_index
    sequences = grain.MapDataset.source(SequenceSource(batch_fn, count))
    mine = sequences[index::count] if count > 1 else sequences
    return mine.batch(batch_fn.local_batch_size, drop_remainder=True).map(BatchFields(batch_fn))


def _mark_absl_flags_parsed() -> None:
    """grain's worker processes read absl flags; a program that never called
    absl's app.run (a test, a notebook) has not parsed them, so mark the
    defaults as parsed. A launcher that parsed its flags is left alone."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
