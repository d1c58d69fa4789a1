"""The grain front end of a run's batches: `make_batch_dataset(batch_fn)`.

The batches themselves are a pure function of the step (runtime.data.batches);
grain only runs that function ahead of the trainer, in threads or worker
processes, and gives the trainer a checkpointable iterator. Because each
element is computed from its step number alone, the stream is identical for
any number of workers or threads, and an iterator restored with
`set_state(get_state())` (or a dataset made with `start_step=N`) continues
exactly where the uninterrupted run would be.
"""

from __future__ import annotations

import grain

from runtime.data.batches import BatchFunction


def make_batch_dataset(
    batch_fn: BatchFunction,
    *,
    start_step: int = 0,
    num_threads: int = 1,
    prefetch_buffer_size: int = 4,
    num_workers: int = 0,
    worker_buffer_size: int = 2,
) -> grain.IterDataset:
    """A grain IterDataset yielding batch_fn.batch_at(step) for step = start_step .. S-1.

    start_step: first step to yield (resume without replaying earlier steps).
    num_threads, prefetch_buffer_size: grain ReadOptions for the main process
      (num_threads=0 computes each batch when it is asked for).
    num_workers: > 0 computes batches in that many worker processes
      (grain mp_prefetch); worker_buffer_size batches are buffered per worker.
    """
    if not 0 <= start_step <= batch_fn.num_steps:
        raise ValueError(f"start_step {start_step} outside [0, {batch_fn.num_steps}]")
    steps = grain.MapDataset.range(start_step, batch_fn.num_steps)
    dataset = steps.map(batch_fn).to_iter_dataset(
        grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size)
    )
    if num_workers > 0:
        _mark_absl_flags_parsed()
        dataset = dataset.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=num_workers, per_worker_buffer_size=worker_buffer_size
            )
        )
    return dataset


def batch_at(batch_fn: BatchFunction, step: int) -> dict:
    """The batch of `step`, without grain (what a worker computes for that step)."""
    return batch_fn.batch_at(step)


def _mark_absl_flags_parsed() -> None:
    """grain's worker processes read absl flags; a program that never called
    absl's app.run (a test, a notebook) has not parsed them, so mark the
    defaults as parsed. A launcher that parsed its flags is left alone."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
