"""What the trainer needs from the data pipeline: batch = f(step), and how a batch reaches the devices.

Why a function of the step (Levanter's index-based loader): resuming at step k
needs no iterator replay and no hidden state, the k-th batch is the same in
every process and on every resume, so data order can never be what makes a
resumed run drift. `runtime.data` (the grain pipeline over token shards)
provides the real source; `SyntheticBatches` is a deterministic stand-in the
tests use so they need no prepared corpora.

A batch is a dict of numpy arrays, each [global_batch, seq_len]:
inputs and targets (int32 token ids), loss_mask (1 where the target counts),
segment_ids (document id within the packed row) and positions (position of
each token within its document).
"""

from __future__ import annotations

from typing import Protocol

import jax
import numpy as np
from jax.sharding import NamedSharding

BATCH_FIELDS = {
    "inputs": np.int32,
    "targets": np.int32,
    "loss_mask": np.float32,
    "segment_ids": np.int32,
    "positions": np.int32,
}


class BatchSource(Protocol):
    """The global batch of any step, as a pure function of the step."""

    def batch_at(self, step: int) -> dict[str, np.ndarray]: ...


def abstract_batch(sequences: int, sequence_length: int) -> dict[str, jax.ShapeDtypeStruct]:
    return {name: jax.ShapeDtypeStruct((sequences, sequence_length), dtype) for name, dtype in BATCH_FIELDS.items()}


def check_batch(batch: dict[str, np.ndarray], sequences: int, sequence_length: int, step: int) -> dict[str, np.ndarray]:
    """The batch fields, typed; all [rows, L] with rows the global batch or one process's block of it.

    Extra fields (the pipeline's source_ids) are dropped; a missing or
    misshapen field is a clear error naming the step.
    """
    checked = {}
    for name, dtype in BATCH_FIELDS.items():
        if name not in batch:
            raise ValueError(f"batch of step {step} has no {name!r} field (has {sorted(batch)})")
        array = np.asarray(batch[name])
        rows = checked["inputs"].shape[0] if checked else array.shape[0] if array.ndim == 2 else -1
        if array.ndim != 2 or array.shape != (rows, sequence_length) or rows < 1 or sequences % rows:
            raise ValueError(f"batch field {name!r} of step {step} has shape {array.shape}, expected "
                             f"({sequences} or a process's share of it, {sequence_length})")
        checked[name] = array.astype(dtype, copy=False)
    return checked


def place_batch(batch: dict[str, np.ndarray], sharding: NamedSharding, global_rows: int) -> dict[str, jax.Array]:
    """Numpy batch → global jax arrays in `sharding`; each process fills only its own shards.

    `batch` is either the global batch (every process computed all rows: each
    device takes its rows from it) or this process's contiguous block of rows
    (`process_row_block`), which jax maps onto the process's devices in order.
    """
    placed = {}
    for name, array in batch.items():
        if array.shape[0] == global_rows:
            placed[name] = jax.make_array_from_callback(array.shape, sharding, lambda index, a=array: a[index])
        else:
            placed[name] = jax.make_array_from_process_local_data(sharding, array, (global_rows, *array.shape[1:]))
    return placed


def process_row_block(sharding: NamedSharding, global_rows: int) -> tuple[int, int] | None:
    """(index, count) when this process's devices hold exactly rows [index·B/count, (index+1)·B/count).

    That is the slice the data pipeline gives process `index` of `count`, so
    each process can read only its own rows. None when the layout is
    anything else (e.g. rows replicated across processes by a tensor axis):
    then every process reads the global batch.
    """
    count, index = jax.process_count(), jax.process_index()
    if count == 1 or global_rows % count:
        return None
    rows: set[int] = set()
    for device_index in sharding.addressable_devices_indices_map((global_rows, 1)).values():
        rows.update(range(*device_index[0].indices(global_rows)))
    per_process = global_rows // count
    if rows != set(range(index * per_process, (index + 1) * per_process)):
        return None
    return index, count


class SyntheticBatches:
    """Deterministic pseudo-text: random tokens in packed documents of random length.

    Each row is drawn from numpy's PCG64 seeded by (seed, step, row), so the
    batch of a step never depends on which steps were drawn before. Documents
    have lengths in [8, L]; the target of a document's last token is the next
    document's first token and is masked out, as a packer would.
    """

    def __init__(self, vocab_size: int, sequences: int, sequence_length: int, seed: int = 0):
        self.vocab_size, self.sequences, self.sequence_length, self.seed = vocab_size, sequences, sequence_length, seed

    def batch_at(self, step: int) -> dict[str, np.ndarray]:
        rows = [self._row(step, row) for row in range(self.sequences)]
        return {name: np.stack([r[name] for r in rows]).astype(dtype) for name, dtype in BATCH_FIELDS.items()}

    def _row(self, step: int, row: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, step, row])
        L = self.sequence_length
        # A low-entropy stream (rows are runs of 64 fixed 8-token motifs) so the loss visibly falls in a few steps.
        motifs = np.random.default_rng([self.seed]).integers(0, self.vocab_size, size=(64, 8))
        tokens_Lp1 = motifs[rng.integers(0, 64, size=(L + 1) // 8 + 1)].reshape(-1)[: L + 1]
        segment_L = np.zeros(L, np.int32)
        positions_L = np.zeros(L, np.int32)
        loss_mask_L = np.ones(L, np.float32)
        start, doc = 0, 0
        while start < L:
            length = int(rng.integers(8, L + 1))
            end = min(L, start + length)
            segment_L[start:end] = doc
            positions_L[start:end] = np.arange(end - start)
            if end < L:
                loss_mask_L[end - 1] = 0.0  # the target of a document's last token belongs to the next document
            start, doc = end, doc + 1
        return {"inputs": tokens_Lp1[:-1], "targets": tokens_Lp1[1:], "loss_mask": loss_mask_L,
                "segment_ids": segment_L, "positions": positions_L}


def grain_batches(batch_source: BatchSource, start: int, stop: int, prefetch: int = 2, *,
                  num_threads: int = 1, num_workers: int = 0):
    """Batches start..stop-1, read ahead by grain.

    The run's real data (runtime.data.step_batches.BatchFunction) is read
    through its grain pipeline (runtime.data.pipeline: a MapDataset over
    the shard sequences, sliced per host and batched by grain) with
    `num_threads` read-ahead threads and `num_workers` worker processes. Any
    other BatchSource (SyntheticBatches) is a grain MapDataset over the step
    range mapped by `batch_at`. Either way the stream is f(start), f(start+1), …
    whatever the thread or worker count; a resume simply starts at the checkpoint's step.
    """
    import grain  # noqa: PLC0415 (imported only by the trainer)

    if stop <= start:
        return iter(())
    make_dataset = getattr(batch_source, "grain_dataset", None)
    if make_dataset is not None:
        return iter(make_dataset(start, stop, num_threads=num_threads, prefetch_buffer_size=prefetch,
                                 num_workers=num_workers))
    steps = grain.MapDataset.range(start, stop).map(batch_source.batch_at)
    return iter(steps.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)))
