"""Peak memory and time of value_and_grad: chunked output-layer cross-entropy vs the naive reference.

Why: `kernels.cross_entropy` exists to cut the loss's memory at a 256k vocabulary
without slowing the step; this measures both claims on one shape in one run.

Each variant runs in its own subprocess so that one variant's allocations cannot
hide the other's. Peak memory is reported two ways:
  * compiled: XLA's buffer assignment of the jitted value_and_grad
    (`memory_analysis()`: temp + arguments + outputs), i.e. what the program
    needs, independent of the allocator;
  * rss: the child's `ru_maxrss` high-water mark minus its resident set just
    before the first call (Python, jax and the inputs), i.e. what the OS saw the
    calls add: temporaries and outputs.
Time is the median wall time of `--reps` calls after one warm-up call.

    .venv/bin/python benchmarks/bench_cross_entropy.py            # 4,096 x 262,144 x 256
    .venv/bin/python benchmarks/bench_cross_entropy.py --tokens 1024 --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

from goals import report

VARIANTS = ("reference", "chunked")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=262_144)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_child(args: argparse.Namespace) -> dict:
    """Compiles, measures and times one variant in this process; returns its numbers."""
    import jax
    import jax.numpy as jnp

    from kernels.cross_entropy import chunked_cross_entropy
    from kernels.cross_entropy_reference import reference_cross_entropy

    dtype = jnp.dtype(args.dtype)

    @jax.jit
    def make_inputs(key):
        # One jitted program, so building the inputs leaves no temporaries behind
        # that would raise the RSS high-water mark before the measurement starts.
        k_hidden, k_weight, k_targets = jax.random.split(key, 3)
        hidden = jax.random.normal(k_hidden, (args.tokens, args.d_model), jnp.float32).astype(dtype)
        weight = (jax.random.normal(k_weight, (args.vocab, args.d_model), jnp.float32) * 0.02).astype(dtype)
        targets = jax.random.randint(k_targets, (args.tokens,), 0, args.vocab)
        return hidden, weight, targets

    hidden, weight, targets = jax.block_until_ready(make_inputs(jax.random.key(0)))

    if args.child == "chunked":
        loss = lambda h, w, t: chunked_cross_entropy(h, w, t, chunk_size=args.chunk_size)
    else:
        loss = lambda h, w, t: reference_cross_entropy(h, w, t)
    compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(hidden, weight, targets).compile()
    analysis = compiled.memory_analysis()
    compiled_peak = (
        analysis.temp_size_in_bytes + analysis.argument_size_in_bytes + analysis.output_size_in_bytes
    )

    rss_before = _current_rss_bytes()
    value, _ = jax.block_until_ready(compiled(hidden, weight, targets))  # warm-up
    times = []
    for _ in range(args.reps):
        start = time.perf_counter()
        jax.block_until_ready(compiled(hidden, weight, targets))
        times.append(time.perf_counter() - start)
    return {
        "variant": args.child,
        "loss": float(value),
        "compiled_peak_bytes": compiled_peak,
        "compiled_temp_bytes": analysis.temp_size_in_bytes,
        "rss_peak_bytes": _maxrss_bytes() - rss_before,
        "rss_high_water_bytes": _maxrss_bytes(),
        "median_seconds": statistics.median(times),
        "seconds": times,
    }


def _maxrss_bytes() -> int:
    """The process's resident-set high-water mark (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _current_rss_bytes() -> int:
    """The process's resident set now, from /proc (Linux), the baseline the run's peak is measured over."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def run_parent(args: argparse.Namespace, argv: list[str]) -> bool:
    """Runs each variant in a fresh subprocess and prints both, then the ratios."""
    results = {}
    for variant in VARIANTS:
        proc = subprocess.run(
            [sys.executable, __file__, *argv, "--child", variant],
            check=True, capture_output=True, text=True, env=os.environ.copy(),
        )
        results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])

    print(
        f"value_and_grad wrt (hidden, weight); tokens={args.tokens} vocab={args.vocab} "
        f"d_model={args.d_model} dtype={args.dtype} chunk_size={args.chunk_size} reps={args.reps}"
    )
    print("peak memory: compiled = XLA memory_analysis() temp+argument+output; "
          "rss = child ru_maxrss minus its resident set just before the first call "
          "(inputs already resident, so it counts temporaries and outputs)")
    print(f"{'variant':<10} {'loss':>12} {'compiled MiB':>13} {'temp MiB':>10} {'rss MiB':>10} {'median s':>9}")
    for name, r in results.items():
        print(
            f"{name:<10} {r['loss']:>12.6f} {r['compiled_peak_bytes'] / 2**20:>13.1f} "
            f"{r['compiled_temp_bytes'] / 2**20:>10.1f} {r['rss_peak_bytes'] / 2**20:>10.1f} "
            f"{r['median_seconds']:>9.3f}"
        )
    ref, chunked = results["reference"], results["chunked"]
    print(f"peak memory ratio reference/chunked (compiled): "
          f"{ref['compiled_peak_bytes'] / chunked['compiled_peak_bytes']:.2f}x  (goal >= 8x)")
    print(f"peak memory ratio reference/chunked (rss):      "
          f"{ref['rss_peak_bytes'] / max(chunked['rss_peak_bytes'], 1):.2f}x")
    print(f"time ratio chunked/reference (median):          "
          f"{chunked['median_seconds'] / ref['median_seconds']:.2f}x  (goal <= 1.3x)")
    memory_ok = report("peak memory reference/chunked (compiled)",
                       round(ref["compiled_peak_bytes"] / chunked["compiled_peak_bytes"], 2), ">= 8", unit="x")
    time_ok = report("time chunked/reference (median)", round(chunked["median_seconds"] / ref["median_seconds"], 3),
                     "<= 1.3", unit="x")
    return memory_ok and time_ok


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        # The benchmark runs as a script from the repository; make `kernels` importable.
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
        print(json.dumps(run_child(args)))
        return 0
    return 0 if run_parent(args, argv) else 1


if __name__ == "__main__":
    sys.exit(main())
