"""The initialization chain: a child run starts from its parent's final checkpoint, verified first.

Why verify: a child silently trained from the wrong or a corrupted parent is
one of the failures runix exists to prevent. Before anything is loaded the
parent directory must be the run the child names (its spec.json hash equals
the child's parent_hash), built (its digest record is complete), and its final
checkpoint must be the parent's own; after loading, the parameters' sha256
must equal the final digest the parent recorded. Any failure is a BadInput
(exit code 2) that says which check failed; the child writes nothing.

Optimizer state: `reset` starts AdamW from zero moments; `carry` continues
the parent's moments (and their bias-correction count) while the child's own
schedule starts at its step 0 (`runtime.optimizer.carry_adam_moments`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from jax.sharding import Mesh

from runtime import checkpoint as checkpoint_lib
from runtime import digest as digest_lib
from runtime import optimizer as optimizer_lib
from runtime import param_digest
from runtime import run_dir as run_dir_lib
from runtime import schedule as schedule_lib
from runtime import sharding as sharding_lib
from runtime import train_state as train_state_lib
from runtime.errors import BadInput


@dataclasses.dataclass(frozen=True)
class ParentStart:
    """What a child starts from: the parent's verified final params and, for `carry`, its optimizer state."""

    params: Any
    opt_state: Any | None  # the parent's full optax state, or None (reset)
    parent_hash: str
    final_params_sha256: str


def load_parent(
    parent_dir: str | os.PathLike[str], expected_hash: str, child: run_dir_lib.RunRequest,
    parts: train_state_lib.ModelParts, mesh: Mesh,
) -> ParentStart:
    """Verify the parent run in `parent_dir` and load its final params (and optimizer state for carry)."""
    parent_dir = Path(parent_dir)
    if not parent_dir.is_dir():
        raise BadInput(f"parent run directory {parent_dir} does not exist")
    parent = run_dir_lib.load_request(parent_dir)
    if parent.hash != expected_hash:
        raise BadInput(f"{parent_dir} holds run {parent.hash} ({parent.name}), but this run's parent is {expected_hash}")
    _check_compatible(parent, child)
    paths = run_dir_lib.paths(parent_dir)
    try:
        record = digest_lib.read_digest(paths[run_dir_lib.DIGEST])
    except (OSError, ValueError, KeyError) as e:
        raise BadInput(f"parent {parent.name} ({parent_dir}) is not built: no readable digest.json ({e})") from None
    if not record.complete or record.run_hash != parent.hash:
        raise BadInput(f"parent {parent.name} ({parent_dir}) is not built: its digest record is incomplete "
                       f"({len(record.losses)} of {record.total_steps} steps)")
    final_step = parent.spec.total_steps
    if not paths[run_dir_lib.CHECKPOINTS].is_dir():
        raise BadInput(f"parent {parent.name} ({parent_dir}) has no checkpoints directory")
    store = checkpoint_lib.Checkpoints(paths[run_dir_lib.CHECKPOINTS], keep=1, total_steps=final_step, read_only=True)
    try:
        if final_step not in store.steps():
            raise BadInput(f"parent {parent.name} ({parent_dir}) has no final checkpoint (step {final_step}); "
                           f"found steps {store.steps()}")
        parent_tx = optimizer_lib.make_optimizer(
            parent.spec.optimizer, schedule_lib.learning_rate_schedule(parent.spec.schedule))
        parent_layout = train_state_lib.state_layout(parts, parent_tx, mesh)
        try:
            state, _ = store.restore(final_step, parent_layout.abstract, parent.hash)
        except checkpoint_lib.CheckpointMismatch as e:
            raise BadInput(f"parent {parent.name}: {e}") from None
    finally:
        store.close()
    digest_fn = param_digest.digest_function(parent_layout.shardings.params, sharding_lib.replicated(mesh))
    actual = param_digest.lanes_to_digest(state.params, digest_fn(state.params))
    if actual != record.final_params_sha256:
        raise BadInput(
            f"parent {parent.name} ({parent_dir}): final checkpoint parameters have sha256 {actual}, but its digest "
            f"record says {record.final_params_sha256}; the checkpoint was modified or belongs to another build"
        )
    carry = child.spec.init.optimizer_state == "carry"
    return ParentStart(params=state.params, opt_state=state.opt_state if carry else None,
                       parent_hash=parent.hash, final_params_sha256=actual)


def _check_compatible(parent: run_dir_lib.RunRequest, child: run_dir_lib.RunRequest) -> None:
    """Parent and child must share the architecture and dtypes; a clear error otherwise."""
    p, c = parent.spec, child.spec
    fields = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff", "tied_embeddings")
    differ = [f"model.{f}: {getattr(p.model, f)} vs {getattr(c.model, f)}" for f in fields
              if getattr(p.model, f) != getattr(c.model, f)]
    if p.dtypes.params != c.dtypes.params:
        differ.append(f"dtypes.params: {p.dtypes.params} vs {c.dtypes.params}")
    if differ:
        raise BadInput(f"parent {parent.name} cannot initialize {child.name}: " + "; ".join(differ))
