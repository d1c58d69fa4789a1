"""Train one run into its run directory: start (scratch or parent) or resume, step, checkpoint, digest.

`train_run` is the whole trainer as one function; `python -m runtime` and the
tests call it. It is written so that the digest record of a run depends only
on the spec, the data and the pinned numerics (runtime.numerics), never on
where it stopped and resumed:

  * batch s is `batch_source.batch_at(s)`, a pure function of the step,
    read ahead by the grain pipeline (runtime.data.pipeline via runtime.device_batches);
  * every checkpoint holds the full state (params, optimizer, step)
    and the digest record so far, and a resumed run continues from exactly
    that record;
  * on cpu each step's loss is waited for (`jax.block_until_ready`) before
    the next step is dispatched: this keeps several faked CPU devices from
    deadlocking in an all-reduce rendezvous, and the next batch is prepared
    on the host while the current step runs, so the wait costs little. On
    accelerators the loss is read one step late, so the device always has
    the next step queued; every loss is read before a digest or checkpoint;
  * the parameter digest is reduced on the devices that hold the parameters
    (runtime.param_digest: the same for any layout of the same values);
    on accelerators checkpoints are written asynchronously (runtime.checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from compiler.spec import ParentInit, RunSpec, ScratchInit
from runtime import device_batches as batches_lib
from runtime import checkpoint as checkpoint_lib
from runtime import digest as digest_lib
from runtime import mesh as mesh_lib
from runtime import metrics as metrics_lib
from runtime import model as model_lib
from runtime import numerics
from runtime import optimizer as optimizer_lib
from runtime import param_digest
from runtime import parent as parent_lib
from runtime import progress as progress_lib
from runtime import run_dir as run_dir_lib
from runtime import schedule as schedule_lib
from runtime import sharding as sharding_lib
from runtime import timing as timing_lib
from runtime import train_state as train_state_lib
from runtime import train_step as train_step_lib
from runtime.errors import BadInput, TrainingFailed


def pin_jax_config() -> None:
    """The jax settings that change random values; set (not just read) so an in-process caller gets them too."""
    jax.config.update("jax_default_prng_impl", "threefry2x32")
    jax.config.update("jax_threefry_partitionable", True)
    jax.config.update("jax_enable_x64", False)


@dataclasses.dataclass(frozen=True)
class _Run:
    """What every part of training one run needs: the request, where it goes, and the static model/optimizer."""

    request: run_dir_lib.RunRequest
    paths: dict[str, Path]
    parts: train_state_lib.ModelParts
    tx: Any
    learning_rate: Any
    layout: train_state_lib.StateLayout
    mesh: Any
    is_writer: bool  # process 0 writes digest.json, metrics.jsonl and run.json

    @property
    def spec(self) -> RunSpec:
        return self.request.spec


def train_run(
    spec: RunSpec,
    run_hash: str,
    run_dir: str | os.PathLike[str],
    parent_dir: str | os.PathLike[str] | None = None,
    batch_source: batches_lib.BatchSource | None = None,
    *,
    parent_hash: str | None = None,
    data_root: str | os.PathLike[str] | None = None,
    stop_after_step: int | None = None,
    show_progress: bool = False,
    data_threads: int = 1,
    data_workers: int = 0,
) -> digest_lib.DigestRecord:
    """Train `spec` (resolved) into `run_dir`, resuming from its latest checkpoint; returns the digest record.

    Args:
      spec: the resolved RunSpec (compiler.resolve.resolve_run).
      run_hash: the run's hash; stored in every checkpoint, checked on resume.
      run_dir: the run directory (created if needed; spec.json written if absent, checked if present).
      parent_dir: the parent's run directory, for a spec whose init is a parent.
      batch_source: where batches come from; default: the real data pipeline over `data_root`
        (verified against `run_dir/lock.json` when there is one).
      parent_hash: the parent's hash (required with a parent init).
      stop_after_step: stop (with a checkpoint) once this many steps are done; the run stays resumable.
      show_progress: draw a rich progress bar on stderr.
      data_threads, data_workers: grain read-ahead threads and worker processes (never change the batches).

    Raises:
      BadInput: unusable input (see runtime.errors); nothing was written.
      TrainingFailed: training did not finish; the last checkpoint stands.
    """
    started = time.perf_counter()  # timing.json's startup and wall seconds count from here
    request = run_dir_lib.RunRequest(hash=run_hash, name=spec.name, parent_hash=parent_hash, spec=spec)
    _check_init(request, parent_dir)
    pin_jax_config()
    paths = run_dir_lib.paths(run_dir)
    _check_spec_json(paths, request)

    # Everything that can refuse the run happens before anything is written.
    existing = _existing_checkpoint(paths, run_hash, spec.total_steps)
    if existing is not None:
        done = digest_lib.DigestRecord.from_json(existing[1]["digest"])
        if done.complete:
            if jax.process_index() == 0:
                digest_lib.write_digest(paths[run_dir_lib.DIGEST], done)
            return done  # built already: like Nix, nothing to do
    run = _prepare(request, paths)
    if existing is None:
        state, record = _fresh_start(run, parent_dir)
    else:
        state, record = _resume(run, existing[0])
    if batch_source is None:
        batch_source = _default_batch_source(spec, data_root, run_dir, run.mesh)

    if run.is_writer:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        _write_spec_json(paths, request)
        _write_run_record(run, resumed_from=None if existing is None else existing[0])
    return _loop(run, state, record, batch_source, stop_after_step, show_progress and run.is_writer,
                 read_ahead={"num_threads": data_threads, "num_workers": data_workers}, started=started)


def _prepare(request: run_dir_lib.RunRequest, paths: dict[str, Path]) -> _Run:
    """The static side of the run: model parts, mesh, schedule, optimizer and the state's layout."""
    spec = request.spec
    config = model_lib.model_config(
        spec.model, spec.dtypes, spec.kernels, document_masking=spec.data.document_masking,
        initializer=spec.init.initializer if isinstance(spec.init, ScratchInit) else "truncated_normal",
    )
    parts = train_state_lib.model_parts(config)
    try:
        mesh = mesh_lib.make_mesh(spec.mesh)
    except ValueError as e:
        raise BadInput(str(e)) from None
    learning_rate = schedule_lib.learning_rate_schedule(spec.schedule)
    tx = optimizer_lib.make_optimizer(spec.optimizer, learning_rate)
    layout = train_state_lib.state_layout(parts, tx, mesh)
    return _Run(request, paths, parts, tx, learning_rate, layout, mesh, jax.process_index() == 0)


def _check_init(request: run_dir_lib.RunRequest, parent_dir) -> None:
    if isinstance(request.spec.init, ParentInit):
        if request.parent_hash is None:
            raise BadInput(f"run {request.name} starts from a parent but no parent hash was given")
        if parent_dir is None:
            raise BadInput(f"run {request.name} starts from parent {request.parent_hash}; pass its run directory "
                           "(--parent-dir)")
    elif parent_dir is not None or request.parent_hash is not None:
        raise BadInput(f"run {request.name} starts from scratch but a parent was given")


def _existing_checkpoint(paths, run_hash: str, total_steps: int) -> tuple[int, dict] | None:
    """(step, meta) of this run's latest checkpoint, None if there is none; BadInput if it is another run's."""
    directory = paths[run_dir_lib.CHECKPOINTS]
    if not directory.is_dir():
        return None
    store = checkpoint_lib.Checkpoints(directory, keep=1, total_steps=total_steps, read_only=True)
    try:
        latest = store.latest_step()
        if latest is None:
            return None
        meta = store.read_meta(latest)
    finally:
        store.close()
    if meta.get("run_hash") != run_hash:
        raise BadInput(f"{directory} holds checkpoints of run {meta.get('run_hash')}, not of {run_hash}; "
                       "refusing to resume from (or overwrite) another run's checkpoints")
    if latest > total_steps:
        raise BadInput(f"{directory}: checkpoint at step {latest} is past this run's {total_steps} steps")
    return latest, meta


def _fresh_start(run: _Run, parent_dir) -> tuple[train_state_lib.TrainState, digest_lib.DigestRecord]:
    """Step 0: weights from the initializer or the verified parent, optimizer state fresh or carried."""
    spec, layout = run.spec, run.layout
    if isinstance(spec.init, ParentInit):
        start = parent_lib.load_parent(parent_dir, run.request.parent_hash, run.request, run.parts, run.mesh)
        params = start.params
        opt_state = train_state_lib.init_opt_state(run.tx, params, layout)
        if start.opt_state is not None:
            opt_state = optimizer_lib.carry_adam_moments(start.opt_state, opt_state)
    else:
        params = train_state_lib.init_params(run.parts, spec.init.seed, layout)
        opt_state = train_state_lib.init_opt_state(run.tx, params, layout)
    state = jax.device_put(train_state_lib.fresh_state(params, opt_state, layout), layout.shardings)
    return state, digest_lib.DigestRecord(run.request.hash, run.request.name, spec.total_steps)


def _resume(run: _Run, step: int) -> tuple[train_state_lib.TrainState, digest_lib.DigestRecord]:
    """The state of checkpoint `step` and the digest record as it stood there."""
    store = checkpoint_lib.Checkpoints(run.paths[run_dir_lib.CHECKPOINTS], keep=run.spec.checkpoint.keep,
                                       total_steps=run.spec.total_steps)
    try:
        state, meta = store.restore(step, run.layout.abstract, run.request.hash)
    finally:
        store.close()
    return state, digest_lib.DigestRecord.from_json(meta["digest"]).truncated(step)


def _default_batch_source(spec: RunSpec, data_root, run_dir, mesh) -> batches_lib.BatchSource:
    """The run's real data; each process reads only its own rows when the mesh gives it a contiguous block."""
    from runtime import data_source  # noqa: PLC0415 (imports the data pipeline only when it is used)

    block = batches_lib.process_row_block(sharding_lib.batch_sharding(mesh), spec.batch.sequences)
    process_index, process_count = block if block is not None else (0, 1)
    return data_source.for_run(spec, data_root, lock_entries=data_source.read_lock_entries(run_dir),
                               process_index=process_index, process_count=process_count)


def _loop(run: _Run, state, record: digest_lib.DigestRecord, batch_source, stop_after_step: int | None,
          show_progress: bool, read_ahead: dict | None = None, *, started: float) -> digest_lib.DigestRecord:
    """Steps from state.step to the end (or stop_after_step): losses, digests, metrics and checkpoints."""
    spec, paths = run.spec, run.paths
    total_steps = spec.total_steps
    sequences, length = spec.batch.sequences, spec.batch.sequence_length
    tokens_per_step = sequences * length
    every = spec.checkpoint.every or total_steps
    digest_every = spec.checkpoint.digest_every
    stop = total_steps if stop_after_step is None else max(0, min(total_steps, stop_after_step))
    batch_sharding = sharding_lib.batch_sharding(run.mesh)
    clock = timing_lib.SessionClock(started, first_step=int(state.step))
    compiling = time.perf_counter()
    step_fn = train_step_lib.compile_train_step(
        run.parts.graphdef, run.tx, run.learning_rate, run.layout, batches_lib.abstract_batch(sequences, length),
        batch_sharding, reduction=numerics.gradient_reduction(spec.mesh))
    clock.compile_seconds = time.perf_counter() - compiling

    step = int(state.step)
    stream = batches_lib.grain_batches(batch_source, step, stop, **(read_ahead or {}))  # grain reads ahead

    def next_batch(s: int):
        return batches_lib.place_batch(batches_lib.check_batch(next(stream), sequences, length, s),
                                       batch_sharding, sequences)

    lagged = numerics.accelerator_family(spec.mesh) != "cpu"  # accelerators: never stall the device (below)
    store = checkpoint_lib.Checkpoints(paths[run_dir_lib.CHECKPOINTS], keep=spec.checkpoint.keep,
                                       total_steps=total_steps, asynchronous=lagged)
    metrics_log = metrics_lib.MetricsLog(paths[run_dir_lib.METRICS], enabled=run.is_writer)
    metrics_log.resume_from(step)
    progress = progress_lib.TrainingProgress(spec.name, total_steps, step, enabled=show_progress)
    # On accelerators the loss of step s is read after step s+1 is dispatched, so the host never idles the
    # device; on cpu each step is waited for (faked devices can deadlock in a rendezvous otherwise). Before a
    # digest or a checkpoint every dispatched loss is read: a non-finite loss is never checkpointed.
    digest_fn = param_digest.digest_function(run.layout.shardings.params, sharding_lib.replicated(run.mesh))
    last = time.perf_counter()

    def read(s: int, metrics, dispatched: float) -> None:
        nonlocal last
        loss = np.asarray(jax.block_until_ready(metrics["loss"]))
        if not math.isfinite(float(loss)):
            raise TrainingFailed(f"loss is {float(loss)} at step {s}; stopping before it is checkpointed")
        record.losses.append(digest_lib.loss_bits(loss))
        now = time.perf_counter()
        clock.step_seconds.append(now - dispatched)
        tokens_per_s = tokens_per_step / max(now - last, 1e-9)
        last = now
        metrics_log.write(step=s, loss=float(loss), lr=float(metrics["lr"]), grad_norm=float(metrics["grad_norm"]),
                          tokens=(s + 1) * tokens_per_step, tokens_per_s=round(tokens_per_s, 1))
        progress.update(s + 1, float(loss), tokens_per_s)

    try:
        batch = next_batch(step) if step < stop else None
        last = clock.loop_started = time.perf_counter()
        pending = None  # (step, metrics, dispatch time) dispatched, loss not read yet
        while step < stop:
            dispatched = time.perf_counter()
            state, metrics = step_fn(state, batch)
            batch = next_batch(step + 1) if step + 1 < stop else None  # host work overlaps the device step
            if pending is not None:
                read(*pending)
            pending = (step, metrics, dispatched)
            step += 1
            digest_now = step % digest_every == 0 or step == total_steps
            save_now = step % every == 0 or step == stop
            if not lagged or digest_now or save_now:
                read(*pending)
                pending = None
            if digest_now:
                # Reduced where the parameters live: a few bytes per parameter reach the host (runtime.param_digest).
                params_digest = param_digest.lanes_to_digest(state.params, digest_fn(state.params))
                if step % digest_every == 0:
                    record.params_sha256[step] = params_digest
                if step == total_steps:
                    record.final_params_sha256 = params_digest
            if save_now:
                saving = time.perf_counter()
                store.save(state, {"run_hash": run.request.hash, "step": step, "digest": record.to_json()})
                clock.checkpoint_seconds.append(time.perf_counter() - saving)
                if run.is_writer:
                    digest_lib.write_digest(paths[run_dir_lib.DIGEST], record)
                    timing_lib.write(paths[run_dir_lib.TIMING], clock, time.perf_counter(), step,
                                     accelerator=str(getattr(spec.mesh.accelerator, "value", spec.mesh.accelerator)),
                                     chips=spec.mesh.chips, tokens_per_step=tokens_per_step, total_steps=total_steps)
    finally:
        progress.close()
        metrics_log.close()
        store.close()
    return record


def _check_spec_json(paths, request: run_dir_lib.RunRequest) -> None:
    """An existing spec.json must describe this run (the directory is another run's otherwise)."""
    path = paths[run_dir_lib.SPEC]
    if path.exists():
        existing = run_dir_lib.load_request(path.parent)
        if existing.hash != request.hash:
            raise BadInput(f"{path} describes run {existing.hash} ({existing.name}), not {request.hash}")


def _write_spec_json(paths, request: run_dir_lib.RunRequest) -> None:
    """spec.json as the compiler would write it, if absent."""
    path = paths[run_dir_lib.SPEC]
    if path.exists():
        return
    digest_lib.write_json_atomically(path, {
        "hash": request.hash, "name": request.name, "parent_hash": request.parent_hash,
        "spec": request.spec.model_dump(mode="json"),
    })


def _write_run_record(run: _Run, resumed_from: int | None) -> None:
    """run.json: how this run's bits were computed, one entry per (re)start of the trainer."""
    request, mesh = run.request, run.mesh
    path = run.paths[run_dir_lib.RUN_RECORD]
    sessions = []
    if path.exists():
        try:
            sessions = json.loads(path.read_text(encoding="utf-8")).get("sessions", [])
        except (OSError, ValueError):
            sessions = []
    num_processes = jax.process_count()
    sessions.append({
        "resumed_from_step": resumed_from,
        "mesh": mesh_lib.describe(mesh),
        "num_processes": num_processes,
        "numerics": numerics.numerics_facts(request.spec.mesh, num_processes),
        "unpinned_environment": {k: list(v) for k, v in
                                 numerics.environment_drift(request.spec.mesh, num_processes).items()},
    })
    digest_lib.write_json_atomically(path, {
        "run_hash": request.hash,
        "name": request.name,
        "param_shardings": sharding_lib.shardings_report(run.layout.shardings.params),
        "sessions": sessions,
    })
