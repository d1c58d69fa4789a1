"""runix runtime: what runs a locked training run (data pipeline, model, trainer).

Entry points: `python -m runtime --run-dir DIR` (runtime.__main__), the store's
build job `python -m runtime.build`, and `runtime.train.train_run(...)` in-process.
One job per module, imported by name (this file imports nothing, so that
`runtime.numerics` stays importable without jax):

  numerics     what decides the bits besides the spec: pinned env + facts (no jax)
  run_dir      the run directory's files and its spec.json
  model        the nnx transformer of a ModelSpec
  schedule     LR phases as joined optax schedules
  optimizer    AdamW + clipping; carrying a parent's moments
  mesh         the (data, fsdp, tensor) device mesh
  sharding     logical axes → mesh axes; batch sharding
  train_state  what a step reads and writes; fresh params and optimizer state
  train_step   the pure, compiled step (XLA or fixed-order gradient reduction)
  device_batches  batch = f(step) on the devices: the protocol, checks, placement, a synthetic source
  data_source  the real batches (runtime.data over dataprep shards), checked against the lock
  checkpoint   orbax checkpoints with the run hash and digest so far
  digest       per-step loss bits and parameter sha256s
  parent       the verified initialization chain
  metrics      metrics.jsonl;  progress: the rich bar
  train        train_run: start or resume, step, checkpoint, digest
  errors       BadInput (exit 2) and TrainingFailed (exit 1)
See runtime/DETERMINISM.md for what was measured about bit-exactness.
"""
