"""The trainer's data pipeline: time to first batch (cold and warm data cache) and tokens/s.

Why: the trainer must never wait on data, and a fresh machine must get from
nothing to trainable shards quickly. Everything here goes through what the
trainer itself calls: `runtime.data_source.for_run` (prepare or find the
corpora, tokenizer and shards, verify them) and
`runtime.device_batches.grain_batches` (the grain pipeline of
runtime.data.pipeline: MapDataset over the shard sequences, grain's per-host
slice and batch, read-ahead threads or worker processes).

  * preparation from an empty data root, each stage timed (Debian packages
    only if absent; this one needs the package registry);
  * cold cache: the trainer's `for_run` + first batch of the tiny-code spec
    in a fresh process on another empty data root (it prepares what it
    needs itself); warm cache: the same again in a new process, now that
    everything is built (it only opens and verifies);
  * throughput in input tokens/s at four shapes, through the trainer's grain
    pipeline (1 and 2 threads, 2 worker processes measured after their
    start-up), with `batch_at` called directly as the baseline measured in
    the same run;

  * the ratio of pipeline throughput at the tiny specs' shape (8 × 128) to
    the tokens/s the training step of the tiny model consumes, measured in the
    same run by benchmarks/bench_runtime.py's child (goal ≥ 20×).

    .venv/bin/python benchmarks/bench_data.py                 # fresh temporary root
    .venv/bin/python benchmarks/bench_data.py --root .runix/data   # reuse a root
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runtime.data.step_batches import BatchFunction, MixtureSource, make_batch_function  # noqa: E402
from dataprep.corpora import prepare_default_corpora  # noqa: E402
from runtime.device_batches import grain_batches  # noqa: E402
from dataprep.shards import build_shard  # noqa: E402
from dataprep.tokenizer import train_tokenizer  # noqa: E402

SHARES = {"builtin://code": 0.5, "builtin://text": 0.25, "builtin://markup": 0.125, "builtin://code-adjacent": 0.125}


def prepare_from_scratch(root: pathlib.Path, vocab_size: int) -> tuple[dict, dict[str, float]]:
    """Prepare corpora, tokenizer and shards under `root`; return (shards, seconds per stage)."""
    seconds: dict[str, float] = {}
    if not (root / "debian").is_dir():
        started = time.perf_counter()
        subprocess.run(["bash", str(REPO / "scripts/install_corpora.sh"), str(root)], check=True)
        seconds["debian packages (download + unpack)"] = time.perf_counter() - started
    started = time.perf_counter()
    manifests = prepare_default_corpora(root)
    seconds["corpora (4 TFDS datasets)"] = time.perf_counter() - started
    started = time.perf_counter()
    tokenizer = train_tokenizer(manifests, vocab_size, root)
    seconds[f"tokenizer (BPE, vocab {vocab_size})"] = time.perf_counter() - started
    started = time.perf_counter()
    shards = {uri: build_shard(manifest, tokenizer, root) for uri, manifest in manifests.items()}
    total_tokens = sum(shard.num_tokens for shard in shards.values())
    seconds[f"shards ({total_tokens:,} tokens)"] = time.perf_counter() - started
    return shards, seconds


def default_batch_function(shards: dict, sequence_length: int, batch_size: int, steps: int) -> BatchFunction:
    """A mixture of the four built-in shards by SHARES, repeats as needed."""
    total = steps * batch_size
    counts = {uri: int(total * share) for uri, share in SHARES.items()}
    counts["builtin://code"] += total - sum(counts.values())
    sources = [
        MixtureSource(uri.removeprefix("builtin://"), shards[uri], n * sequence_length, 1_000)
        for uri, n in counts.items()
    ]
    return make_batch_function(sources, sequence_length, batch_size, steps, seed=0, document_masking=True)


def pipeline_tokens_per_second(
    batch_fn: BatchFunction, *, steps: int | None = None, num_threads: int = 1, num_workers: int = 0, grain: bool = True
) -> float:
    """Input tokens per second the pipeline delivers over `steps` steps (all by default).

    With worker processes, the clock starts at the first batch, so their
    one-off start-up (spawning, importing) is not counted.
    """
    steps = min(steps or batch_fn.num_steps, batch_fn.num_steps)
    tokens_per_step = batch_fn.local_batch_size * batch_fn.sequence_length
    if not grain:
        started = time.perf_counter()
        for step in range(steps):
            batch_fn.batch_at(step)
        return steps * tokens_per_step / (time.perf_counter() - started)
    iterator = grain_batches(batch_fn, 0, steps, num_threads=num_threads, num_workers=num_workers)
    try:
        next(iterator)
        started = time.perf_counter()
        for _ in range(steps - 1):
            next(iterator)
        return (steps - 1) * tokens_per_step / (time.perf_counter() - started)
    finally:
        close = getattr(iterator, "close", None)
        if close:
            close()


FIRST_BATCH = """
import json, sys, time
started = time.perf_counter()
from compiler.specset import load_spec_set
from runtime import data_source
from runtime.device_batches import grain_batches
run = [r for r in load_spec_set([sys.argv[2]]).runs if r.name == "tiny-code"][0]
batch_fn = data_source.for_run(run.spec, sys.argv[1])
ready = time.perf_counter()
next(grain_batches(batch_fn, 0, 2))
print(json.dumps({"for_run": ready - started, "first_batch": time.perf_counter() - started}))
"""


def trainer_first_batch(root: pathlib.Path) -> dict[str, float]:
    """Seconds a fresh process takes to the trainer's data (for_run) and to its first batch, tiny-code spec."""
    out = subprocess.run([sys.executable, "-c", FIRST_BATCH, str(root), str(REPO / "specs" / "tiny" / "chain.yaml")],
                         cwd=REPO, check=True, capture_output=True, text=True)
    import json

    return json.loads(out.stdout.strip().splitlines()[-1])


def training_tokens_per_second() -> float:
    """Tokens/s the runtime's training step consumes on the tiny model (bench_runtime's pinned child)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_runtime", REPO / "benchmarks" / "bench_runtime.py")
    bench_runtime = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_runtime)
    args = bench_runtime.parse_args(["--models", "tiny", "--windows", "3", "--reps", "1"])
    return bench_runtime.run_child(args, "pinned")["models"]["tiny"]["runtime_tokens_per_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=pathlib.Path, help="data root (default: a fresh temporary one)")
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args(argv)

    temporary = None
    root = args.root
    if root is None:
        temporary = tempfile.mkdtemp(prefix="runix-bench-data-")
        root = pathlib.Path(temporary)
    try:
        print(f"== preparation under {root}")
        shards, seconds = prepare_from_scratch(root, args.vocab)
        for stage, value in seconds.items():
            print(f"  {stage:<44} {value:7.2f} s")
        prepared = sum(v for k, v in seconds.items() if not k.startswith("debian"))
        print(f"  {'corpora + tokenizer + shards':<44} {prepared:7.2f} s")
        trainer_root = root / "trainer-cold"
        trainer_root.mkdir()
        (trainer_root / "debian").symlink_to(root / "debian")  # the same unpacked packages, nothing else
        cold, warm = trainer_first_batch(trainer_root), trainer_first_batch(trainer_root)
        print("== the trainer's own data start in a fresh process (for_run + grain pipeline, tiny-code, vocab 4096)")
        print(f"  cold data cache (empty root: corpora, BPE, shards)  {cold['first_batch']:7.2f} s to the first batch "
              f"(for_run {cold['for_run']:.2f} s)")
        print(f"  warm data cache (all built: open + verify)          {warm['first_batch']:7.2f} s to the first batch "
              f"(for_run {warm['for_run']:.2f} s)")
        print(f"  cold / warm: {cold['first_batch'] / warm['first_batch']:.1f}x")
        print("== the trainer's grain pipeline, input tokens/s (document masking on; ratio: 1 thread / direct batch_at)")
        print(f"  {'L x B':<12} {'direct':>12} {'grain 1 thr':>12} {'grain 2 thr':>12} {'2 workers':>12} {'ratio':>7}")
        for length, batch in ((128, 8), (512, 16), (1024, 32), (2048, 64)):
            fn = default_batch_function(shards, length, batch, args.steps)
            rates = [
                pipeline_tokens_per_second(fn, grain=False),
                pipeline_tokens_per_second(fn, num_threads=1),
                pipeline_tokens_per_second(fn, num_threads=2),
                pipeline_tokens_per_second(fn, num_threads=0, num_workers=2),
            ]
            print(f"  {f'{length} x {batch}':<12} " + " ".join(f"{r / 1e6:10.2f} M" for r in rates)
                  + f" {rates[1] / rates[0]:6.2f}x")
            if (length, batch) == (128, 8):
                tiny_pipeline = rates[1]
        training = training_tokens_per_second()
        print(f"== pipeline vs training at 8 x 128: grain pipeline {tiny_pipeline:,.0f} tok/s, training step of the tiny "
              f"model {training:,.0f} tok/s, ratio {tiny_pipeline / training:.1f}x (goal >= 20x)")
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
