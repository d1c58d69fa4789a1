"""Orbax checkpoints of a run: the whole training state plus the run's identity and digest so far.

What one checkpoint (a directory `checkpoints/<k>/`, k = steps taken) holds:
  * `state`: params, optimizer state and the step (the data position: batch k
    is next), restored straight into their shards. Checkpoints written while
    the state still carried an (unused) PRNG key restore too: the key is read
    and left (LEGACY_FIELDS);
  * `meta` (JSON): the run hash (a checkpoint of another run is refused, never
    resumed from), the step, and the digest record up to step k, so a resumed
    run continues the very record the uninterrupted run would have written.

Why orbax's CheckpointManager: it writes each step into a temporary
directory and renames it when complete (a kill -9 mid-save leaves only a
temporary directory, removed on the next start), and every process of a
multi-process run takes part in the same save.

Asynchronous on accelerators (`asynchronous=True`, what the trainer asks for
on TPU/GPU meshes): `save` returns once the state is copied off the devices
and the files are written in the background, so the device keeps training;
at most one save is in flight (the next waits for the previous one, and
`close` for the last). There a checkpoint's own `meta` is what a resume
trusts: digest.json written after a save may run ahead of that save's files.
Synchronous on cpu, where the device is the host anyway: the digest and
metrics written after a save never claim a checkpoint that is not on disk,
and a kill right after a save resumes from it.

Retention follows `spec.checkpoint`: the final checkpoint (step == total
steps, what child runs load) is always kept, plus the newest `keep` others.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from runtime.train_state import TrainState

STATE, META = "state", "meta"
LEGACY_FIELDS = {"rng": ((2,), jnp.uint32)}
"""State fields older checkpoints hold and the state no longer has: name → (shape, dtype).
`rng` was the run's PRNG key data, carried but never used (runtime.train_state)."""


class CheckpointMismatch(ValueError):
    """A checkpoint in the run directory belongs to another run."""


class Checkpoints:
    """The checkpoints of one run directory."""

    def __init__(self, directory: str | os.PathLike[str], *, keep: int, total_steps: int, read_only: bool = False,
                 asynchronous: bool = False):
        self.directory = os.path.abspath(directory)
        self.keep = keep
        self.total_steps = total_steps
        self.read_only = read_only
        self.asynchronous = asynchronous and not read_only
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None,  # retention is ours: see `_retain`
            create=not read_only,
            read_only=read_only,
            cleanup_tmp_directories=not read_only,
            enable_async_checkpointing=asynchronous and not read_only,
            save_root_metadata=False,
        )
        # Handlers named up front (not only item names), so a checkpoint's metadata is readable before any restore.
        handlers = {STATE: ocp.StandardCheckpointHandler(), META: ocp.JsonCheckpointHandler()}
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, state: TrainState, meta: dict[str, Any]) -> int:
        """Save `state` under its step (all processes call this); returns the step."""
        step = int(state.step)
        self._manager.wait_until_finished()  # the previous save is complete before this one starts
        self._retain()
        self._manager.save(
            step,
            args=ocp.args.Composite(**{STATE: ocp.args.StandardSave(state), META: ocp.args.JsonSave(meta)}),
            force=True,
        )
        if not self.asynchronous:
            self._manager.wait_until_finished()
            self._retain()
        return step

    def read_meta(self, step: int) -> dict[str, Any]:
        restored = self._manager.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))
        return dict(restored[META])

    def state_fields(self, step: int) -> list[str]:
        """The names of the state fields checkpoint `step` holds (sorted)."""
        return sorted(self._manager.item_metadata(step)[STATE].keys())

    def restore(self, step: int, abstract_state: TrainState, run_hash: str | None) -> tuple[TrainState, dict[str, Any]]:
        """The state of checkpoint `step` in the shardings of `abstract_state`, and its meta.

        With `run_hash`, refuses (CheckpointMismatch) a checkpoint whose meta names another run.
        """
        meta = self.read_meta(step)
        if run_hash is not None and meta.get("run_hash") != run_hash:
            raise CheckpointMismatch(
                f"checkpoint {step} in {self.directory} belongs to run {meta.get('run_hash')!r}, not {run_hash!r}"
            )
        saved = set(self.state_fields(step))
        legacy = {name: jax.ShapeDtypeStruct(*LEGACY_FIELDS[name], sharding=abstract_state.step.sharding)
                  for name in sorted(saved & set(LEGACY_FIELDS))}
        target = {**abstract_state._asdict(), **legacy} if legacy else abstract_state
        restored = self._manager.restore(step, args=ocp.args.Composite(**{STATE: ocp.args.StandardRestore(target)}))[STATE]
        if legacy:
            return TrainState(**{name: restored[name] for name in TrainState._fields}), meta
        return TrainState(*restored), meta

    def _retain(self) -> None:
        periodic = [s for s in self.steps() if s != self.total_steps]
        for step in periodic[: max(0, len(periodic) - self.keep)]:
            self._manager.delete(step)

    def close(self) -> None:
        """Waits for a save in flight, applies retention, and closes."""
        if not self.read_only:
            self._manager.wait_until_finished()
            self._retain()
        self._manager.close()
