"""Training throughput of the runtime against a minimal hand-written jitted loop, and model FLOP/s vs matmul FLOP/s.

Why: the runtime adds work around the step that a bare loop does not do
(a fresh host batch per step, waiting for each step's loss, loss bits and
periodic parameter digests, metrics lines, the fixed-order reduction on CPU);
this measures what that costs, on the same model and batch size, in one
process, so a busy machine slows both alike. Goal: runtime / hand >= 0.95.

For each model (the `tiny` preset, d_model 64, and `tiny-wide`, d_model 512):
  * runtime: `runtime.train.train_run` on a synthetic batch source for
    warmup + windows × steps steps (no checkpoint inside the timed steps);
    its per-step wall times come from metrics.jsonl;
  * hand: jit(value_and_grad + optax.adamw update) with donation on one fixed
    device batch, dispatched back to back and waited for once per window;
  * each side is timed over `--windows` windows of `--steps` steps after the
    warm-up; the medians of the windows' tokens/s are compared.
The matmul FLOP/s of this machine is the median of `--reps` float32
2048×2048 matmuls; model FLOP/s is compiler.flops' training FLOPs per token
(the MFU numerator the dry run prices with) × runtime tokens/s.

The benchmark runs in a child process whose environment is the one the
launcher pins (runtime.numerics: XLA:CPU thread pool, ISA ceiling); with
--unpinned it also runs a child with jax's defaults, to show what the pins cost.

    .venv/bin/python benchmarks/bench_runtime.py
    .venv/bin/python benchmarks/bench_runtime.py --models tiny --windows 3 --steps 10 --unpinned
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
MODELS = {"tiny": 12, "tiny-wide": 3}  # preset -> default steps per window


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--windows", type=int, default=5, help="timed windows per side (the median is reported)")
    parser.add_argument("--steps", type=int, help="steps per window (default: 12 for tiny, 3 for tiny-wide)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compilation")
    parser.add_argument("--reps", type=int, default=7, help="matmul repetitions")
    parser.add_argument("--unpinned", action="store_true", help="also run with jax's default XLA:CPU settings")
    parser.add_argument("--child", choices=("pinned", "unpinned"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def bench_spec(preset: str, steps: int):
    from compiler.resolve import resolve_run
    from compiler.spec import RunSpec

    return resolve_run(RunSpec.model_validate({
        "name": f"bench-{preset}",
        "model": {"preset": preset},
        "data": {"sources": {"code": {"uri": "builtin://code", "role": "code", "share": 1.0}},
                 "document_masking": True},
        "schedule": {"phases": [{"kind": "warmup", "length": 2, "peak": 1e-3}, {"kind": "cosine", "floor": 1e-4}]},
        "batch": {"sequences": 8, "sequence_length": 128},
        "steps": steps,
        "checkpoint": {"every": None, "keep": 1, "digest_every": 10},
    }))


def matmul_flops(reps: int, n: int = 2048) -> float:
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, b).block_until_ready()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def runtime_windows(spec, warmup: int, windows: int, steps: int) -> list[float]:
    """tokens/s of each window of the runtime's steps, from its metrics.jsonl."""
    from runtime.device_batches import SyntheticBatches
    from runtime.train import train_run

    with tempfile.TemporaryDirectory() as tmp:
        source = SyntheticBatches(spec.model.vocab_size, spec.batch.sequences, spec.batch.sequence_length)
        train_run(spec, "0" * 64, tmp, None, source)
        lines = [json.loads(line) for line in (pathlib.Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    seconds = [spec.tokens_per_step / line["tokens_per_s"] for line in lines]
    timed = seconds[warmup:]
    return [steps * spec.tokens_per_step / sum(timed[w * steps:(w + 1) * steps]) for w in range(windows)]


def hand_windows(spec, warmup: int, windows: int, steps: int) -> list[float]:
    """tokens/s of each window of a bare jitted loop on the same model, optimizer and batch shape."""
    import jax
    import optax
    from flax import nnx

    from runtime.device_batches import SyntheticBatches
    from runtime.model import Transformer, model_config
    from runtime.schedule import learning_rate_schedule

    config = model_config(spec.model, spec.dtypes, spec.kernels, document_masking=spec.data.document_masking)
    graphdef, params = nnx.split(Transformer(config, nnx.Rngs(params=0)), nnx.Param)
    params = nnx.to_pure_dict(params)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(learning_rate_schedule(spec.schedule), b1=0.9,
                                                                 b2=0.95, eps=1e-8, weight_decay=0.1))
    opt_state = tx.init(params)
    batch = jax.device_put(SyntheticBatches(spec.model.vocab_size, spec.batch.sequences,
                                            spec.batch.sequence_length).batch_at(0))

    def train_step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(lambda p: nnx.merge(graphdef, p).loss(batch))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    step = jax.jit(train_step, donate_argnums=(0, 1))
    for _ in range(warmup):
        params, opt_state, loss = step(params, opt_state, batch)
    loss.block_until_ready()
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(steps):
            params, opt_state, loss = step(params, opt_state, batch)
        loss.block_until_ready()
        rates.append(steps * spec.tokens_per_step / (time.perf_counter() - start))
    return rates


def child(args: argparse.Namespace) -> dict:
    import jax

    from compiler.flops import training_flops

    result = {"environment": args.child, "xla_flags": os.environ.get("XLA_FLAGS", ""),
              "pjrt_nproc": os.environ.get("PJRT_NPROC"), "matmul_flops": matmul_flops(args.reps), "models": {}}
    for preset in args.models:
        steps = args.steps or MODELS[preset]
        spec = bench_spec(preset, args.warmup + args.windows * steps)
        hand = hand_windows(spec, args.warmup, args.windows, steps)
        ours = runtime_windows(spec, args.warmup, args.windows, steps)
        runtime_rate, hand_rate = statistics.median(ours), statistics.median(hand)
        per_token = training_flops(spec).per_token
        result["models"][preset] = {
            "d_model": spec.model.d_model,
            "runtime_tokens_per_s": runtime_rate,
            "hand_tokens_per_s": hand_rate,
            "ratio": runtime_rate / hand_rate,
            "runtime_windows": ours,
            "hand_windows": hand,
            "flops_per_token": per_token,
            "model_flops_per_s": per_token * runtime_rate,
            "fraction_of_matmul_flops": per_token * runtime_rate / result["matmul_flops"],
        }
    result["devices"] = jax.device_count()
    return result


def run_child(args: argparse.Namespace, environment: str) -> dict:
    from compiler.spec import MeshSpec
    from runtime import numerics

    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_", "PJRT_"))}
    if environment == "pinned":
        env.update(numerics.pinned_environment(MeshSpec()))
    argv = [sys.executable, __file__, "--child", environment, "--models", *args.models, "--windows",
            str(args.windows), "--warmup", str(args.warmup), "--reps", str(args.reps)]
    if args.steps:
        argv += ["--steps", str(args.steps)]
    out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"benchmark child ({environment}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.child:
        print(json.dumps(child(args)))
        return 0
    for environment in ("pinned", "unpinned") if args.unpinned else ("pinned",):
        result = run_child(args, environment)
        print(f"[{environment}] XLA_FLAGS={result['xla_flags']!r} PJRT_NPROC={result['pjrt_nproc']}")
        print(f"  matmul float32 2048^3: {result['matmul_flops'] / 1e9:.1f} GFLOP/s (median of {args.reps})")
        for preset, m in result["models"].items():
            print(f"  {preset} (d_model {m['d_model']}): runtime {m['runtime_tokens_per_s']:,.0f} tok/s, "
                  f"hand-written loop {m['hand_tokens_per_s']:,.0f} tok/s, ratio {m['ratio']:.3f} "
                  f"(median of {args.windows} windows)")
            print(f"    model FLOP/s {m['model_flops_per_s'] / 1e9:.1f} G = {m['fraction_of_matmul_flops']:.1%} "
                  f"of measured matmul FLOP/s ({m['flops_per_token'] / 1e6:.1f} MFLOP/token)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
