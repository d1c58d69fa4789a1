"""`python -m runtime --run-dir DIR [--parent-dir DIR] [--data-root DIR] [--stop-after-step N]`: train one run.

DIR holds the compiler's spec.json; the trainer writes checkpoints/, digest.json,
metrics.jsonl and run.json there, resuming from the latest checkpoint if any.

Order matters: spec.json is read first (pure pydantic, no jax) because the
numerics environment runix pins (XLA flags, thread pool, PRNG settings; see
runtime.numerics) depends on the mesh and only acts if it is set before jax
is imported. So this module imports nothing jax-related at import time.

Exit codes: 0 trained (or already built, or stopped as asked); 1 training
failed (traceback in DIR/error.log); 2 bad input (message on stderr, no
traceback, nothing written).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from runtime import numerics
from runtime import run_dir as run_dir_lib
from runtime.errors import BadInput, TrainingFailed

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtime", description="Train one runix run into its run directory.")
    parser.add_argument("--run-dir", required=True, help="run directory holding spec.json")
    parser.add_argument("--parent-dir", help="the parent run's directory (runs initialized from a parent)")
    parser.add_argument("--data-root", help="root of the prepared corpora, tokenizer and token shards")
    parser.add_argument("--stop-after-step", type=int, help="stop (with a checkpoint) once this many steps are done")
    parser.add_argument("--batches", choices=("data", "synthetic"), default="data",
                        help="data: the run's sources (default); synthetic: deterministic stand-in batches (tests)")
    parser.add_argument("--data-threads", type=int, default=1, help="grain read-ahead threads (never change the batches)")
    parser.add_argument("--data-workers", type=int, default=0, help="grain read-ahead worker processes (never change the batches)")
    parser.add_argument("--num-processes", type=int, default=1, help="processes of a multi-process run")
    parser.add_argument("--process-id", type=int, default=0, help="this process's index in a multi-process run")
    parser.add_argument("--coordinator-address", help="host:port of process 0 (multi-process runs)")
    parser.add_argument("--no-progress", action="store_true", help="do not draw the progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
            raise BadInput(f"--process-id {args.process_id} is not in [0, --num-processes {args.num_processes})")
        if args.num_processes > 1 and not args.coordinator_address:
            raise BadInput("a multi-process run needs --coordinator-address host:port")
        if args.stop_after_step is not None and args.stop_after_step < 0:
            raise BadInput("--stop-after-step must be >= 0")
        request = run_dir_lib.load_request(args.run_dir)
        try:
            environment = numerics.pinned_environment(request.spec.mesh, args.num_processes)
        except ValueError as e:
            raise BadInput(str(e)) from None
    except BadInput as e:
        print(f"runix runtime: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if "jax" in sys.modules:  # only possible when main() is called in-process after jax was imported
        print("runix runtime: warning: jax was imported before the numerics environment was pinned", file=sys.stderr)
    os.environ.update(environment)
    try:
        return _train(args, request)
    except BadInput as e:
        print(f"runix runtime: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (TrainingFailed, Exception) as e:  # noqa: BLE001 (every failure becomes exit code 1 with a message)
        log = Path(args.run_dir) / run_dir_lib.ERROR_LOG
        try:
            log.write_text(traceback.format_exc(), encoding="utf-8")
            where = f" (traceback in {log})"
        except OSError:
            where = ""
        print(f"runix runtime: training failed: {type(e).__name__}: {e}{where}", file=sys.stderr)
        return EXIT_FAILED


def _train(args: argparse.Namespace, request: run_dir_lib.RunRequest) -> int:
    import jax  # noqa: PLC0415 (after the numerics environment is pinned)
    from absl import logging as absl_logging  # noqa: PLC0415

    absl_logging.set_verbosity(absl_logging.ERROR)  # orbax logs routine events as warnings

    if args.num_processes > 1:
        jax.distributed.initialize(coordinator_address=args.coordinator_address, num_processes=args.num_processes,
                                   process_id=args.process_id)
    from runtime import device_batches, train  # noqa: PLC0415

    batch_source = None
    if args.batches == "synthetic":
        spec = request.spec
        batch_source = device_batches.SyntheticBatches(spec.model.vocab_size, spec.batch.sequences,
                                                spec.batch.sequence_length, seed=spec.data.seed)
    record = train.train_run(
        request.spec, request.hash, args.run_dir, args.parent_dir, batch_source,
        parent_hash=request.parent_hash, data_root=args.data_root, stop_after_step=args.stop_after_step,
        show_progress=not args.no_progress, data_threads=args.data_threads, data_workers=args.data_workers,
    )
    if jax.process_index() == 0:
        state = "complete" if record.complete else f"stopped after step {len(record.losses)} of {record.total_steps}"
        print(f"{request.hash}  {request.name}: {state}; final params sha256 {record.final_params_sha256}")
    if args.num_processes > 1:
        jax.distributed.shutdown()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
