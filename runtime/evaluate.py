"""`python -m runtime.evaluate --store URL --hash H [--hash H ...] [--replay]`: build (or replay) evals.

Like runtime.build for a run, an eval job needs only the store and the eval
hashes: each eval's derivation (compiler.eval_store) names the run, the
checkpoint step, the eval set by locked digest and the tokenizer digest. The
job loads that checkpoint of the built run (its parameters checked against
the run's digest record where it recorded them), reads the eval set, scores
it, and publishes the result. An eval that is built is a cache hit.

Scorers, one per `kind` (compiler.eval_spec):

* `heldout`: the set's first `max_bytes` bytes (whole documents in order, the
  last cut at a line end; the bytes depend on the set only, never on a
  tokenizer) are tokenized, each document after an end-of-document token as
  in training, and cut into windows of the run's sequence length. The loss
  is summed per batch on the device (the training loss kernel, reduction
  "sum"), and the batch sums are added on the host in order. Metrics: mean
  loss per token (nats) and bits per byte = total nats / ln 2 / bytes, which
  compares runs with different tokenizers (Paloma's reasoning). The sha256
  of the scored bytes is recorded, so equal bytes across runs is checkable.
* `choice`: each JSONL item {"prompt", "choices", "answer"} is scored the
  lm-eval-harness way: the log-likelihood of a choice is the sum of the
  log-probs of its continuation tokens after the prompt (context tokens =
  encode(prompt), continuation = encode(prompt + choice) past them); `acc`
  takes the highest sum, `acc_norm` the highest sum per byte of the choice.

`--replay` recomputes built evals and compares every recorded float32 bit
pattern; it prints `bit-exact` or the first value that differs (exit 1).

Exit codes: 0 built/bit-exact, 1 failed or diverged, 2 bad input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime import numerics
from runtime import run_dir as run_dir_lib
from runtime.errors import BadInput

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
BUILTIN = "builtin://"
LN2 = math.log(2.0)


# --------------------------------------------------------------------------- eval set bytes (no jax)


def select_bytes(texts: Sequence[str], max_bytes: int) -> list[bytes]:
    """Whole documents in order until `max_bytes`; the last one cut after its last full line within the budget."""
    out: list[bytes] = []
    left = max_bytes
    for text in texts:
        data = text.encode("utf-8")
        if not data:
            continue
        if len(data) <= left:
            out.append(data)
            left -= len(data)
        else:
            cut = data[:left]
            end = cut.rfind(b"\n")
            if end >= 0:
                out.append(cut[: end + 1])
            break
        if left == 0:
            break
    return out


def heldout_texts(record: dict[str, Any], data: _Data) -> list[str]:
    """The documents of an eval set, checked against the digest its derivation names."""
    uri, document = record["uri"], record["document"]
    want = document["set"]["digest"]
    if uri.startswith(BUILTIN):
        from dataprep import corpora  # noqa: PLC0415 (tfds)

        manifest = data.manifest(uri.removeprefix(BUILTIN))
        if manifest.digest != want:
            raise BadInput(f"eval set {uri}: the prepared corpus has digest {manifest.digest}, but the eval's lock "
                           f"says {want}; the data drifted since `runix lock`")
        source = corpora.read_documents(manifest, document["set"]["split"])
        return [bytes(source[i]["text"]).decode("utf-8") for i in range(len(source))]
    return list(_external_documents(record, want))


def _external_documents(record: dict[str, Any], want: str):
    from dataprep import external  # noqa: PLC0415

    entry = (record.get("lock") or {}).get("set") or {}
    locked = entry.get("locked")
    if not locked or locked.get("digest") != want:
        raise BadInput(f"eval set {record['uri']}: its derivation carries no lock entry with digest {want}")
    try:
        if record["uri"].startswith("tfds://"):
            yield from external.tfds_documents(record["set"], record["uri"], locked)
        else:
            yield from external.file_documents(record["set"], record["uri"], locked)
    except external.SourceIntegrityError as e:
        raise BadInput(str(e)) from None


def choice_items(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The first `max_items` items of a choice set's JSONL, each checked for shape (file line named)."""
    from dataprep import external  # noqa: PLC0415

    want = record["document"]["set"]["digest"]
    entry = (record.get("lock") or {}).get("set") or {}
    locked = entry.get("locked")
    if not locked or locked.get("digest") != want:
        raise BadInput(f"eval set {record['uri']}: its derivation carries no lock entry with digest {want}")
    try:
        fs, files = external.file_paths(record["uri"], locked)
        items = []
        for rel, path, sha in files:
            try:
                with fs.open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise BadInput(f"eval set {record['uri']}: cannot read locked file {rel} ({e})") from None
            if hashlib.sha256(data).hexdigest() != sha:
                raise BadInput(f"eval set {record['uri']}: file {rel} changed since `runix lock` (relock, or restore it)")
            for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
                if line.strip():
                    items.append(parse_choice_item(line, f"{record['uri']}:{number}"))
    except external.SourceIntegrityError as e:
        raise BadInput(str(e)) from None
    return items[: record["document"]["settings"]["max_items"]]


def parse_choice_item(line: str, where: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except ValueError as e:
        raise BadInput(f"{where}: not JSON ({e})") from None
    choices = item.get("choices") if isinstance(item, dict) else None
    if (not isinstance(item, dict) or not isinstance(item.get("prompt"), str) or not isinstance(choices, list)
            or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices)
            or not isinstance(item.get("answer"), int) or not 0 <= item["answer"] < len(choices)):
        raise BadInput(f"{where}: an item is {{\"prompt\": str, \"choices\": [two or more non-empty str], "
                       f"\"answer\": index of the right choice}}")
    return item


def continuation_split(tokenizer, prompt: str, choice: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-eval-harness forms them (trailing spaces move to the choice)."""
    stripped = prompt.rstrip(" ")
    choice = prompt[len(stripped):] + choice
    context = tokenizer.encode(stripped, add_special_tokens=False).ids
    whole = tokenizer.encode(stripped + choice, add_special_tokens=False).ids
    return context, whole[len(context):]  # as the harness slices it, also where a merge crosses the boundary


# --------------------------------------------------------------------------- windows (numpy)


def windows(documents: Sequence[Sequence[int]], length: int, eos_id: int):
    """Rows of (inputs, targets, mask) [N, L]: each document after an EOS, cut into windows of L targets."""
    import numpy as np  # noqa: PLC0415

    rows = []
    for ids in documents:
        stream = np.asarray([eos_id, *ids], dtype=np.int32)
        for start in range(0, len(ids), length):
            inputs = stream[start: start + length]
            targets = stream[start + 1: start + length + 1]
            n = len(targets)
            row_in = np.zeros(length, np.int32)
            row_t = np.zeros(length, np.int32)
            mask = np.zeros(length, np.float32)
            row_in[: len(inputs)] = inputs
            row_t[:n] = targets
            mask[:n] = 1.0
            rows.append((row_in, row_t, mask))
    return rows


# --------------------------------------------------------------------------- scoring (jax)


class _Model:
    """A checkpoint of a built run, loaded and verified, with jitted scoring functions."""

    def __init__(self, run_dir: Path, step: int):
        import jax  # noqa: PLC0415
        from flax import nnx  # noqa: PLC0415

        from runtime import checkpoint as checkpoint_lib  # noqa: PLC0415
        from runtime import digest as digest_lib  # noqa: PLC0415
        from runtime import mesh as mesh_lib  # noqa: PLC0415
        from runtime import model as model_lib  # noqa: PLC0415
        from runtime import optimizer as optimizer_lib  # noqa: PLC0415
        from runtime import schedule as schedule_lib  # noqa: PLC0415
        from runtime import train  # noqa: PLC0415
        from runtime import train_state as train_state_lib  # noqa: PLC0415
        from compiler.spec import ScratchInit  # noqa: PLC0415

        train.pin_jax_config()
        request = run_dir_lib.load_request(run_dir)
        spec = self.spec = request.spec
        if step > spec.total_steps:
            raise BadInput(f"checkpoint step {step} is past run {request.name}'s {spec.total_steps} steps")
        config = model_lib.model_config(
            spec.model, spec.dtypes, spec.kernels, document_masking=False,
            initializer=spec.init.initializer if isinstance(spec.init, ScratchInit) else "truncated_normal")
        parts = train_state_lib.model_parts(config)
        mesh = mesh_lib.make_mesh(spec.mesh)
        tx = optimizer_lib.make_optimizer(spec.optimizer, schedule_lib.learning_rate_schedule(spec.schedule))
        layout = train_state_lib.state_layout(parts, tx, mesh)
        paths = run_dir_lib.paths(run_dir)
        store = checkpoint_lib.Checkpoints(paths[run_dir_lib.CHECKPOINTS], keep=1, total_steps=spec.total_steps,
                                           read_only=True)
        try:
            if step not in store.steps():
                raise BadInput(f"run {request.name} has no checkpoint at step {step} (kept: {store.steps()})")
            state, _ = store.restore(step, layout.abstract, request.hash)
        finally:
            store.close()
        record = digest_lib.read_digest(paths[run_dir_lib.DIGEST])
        expected = record.final_params_sha256 if step == spec.total_steps else record.params_sha256.get(step)
        if expected is not None:
            from runtime import param_digest  # noqa: PLC0415
            from runtime import sharding as sharding_lib  # noqa: PLC0415

            digest_fn = param_digest.digest_function(layout.shardings.params, sharding_lib.replicated(mesh))
            actual = param_digest.lanes_to_digest(state.params, digest_fn(state.params))  # as the trainer records it
            if actual != expected:
                raise BadInput(f"run {request.name}: checkpoint {step} has parameters sha256 {actual}, but the "
                               f"run's digest record says {expected}")
        self.params = state.params
        from runtime.data_source import read_lock_entries  # noqa: PLC0415

        self.lock_entries = read_lock_entries(run_dir)
        graphdef = parts.graphdef

        def loss_sum(params, batch):
            return nnx.merge(graphdef, params).loss(batch, reduction="sum")

        def token_logprobs(params, inputs, targets):
            logits = nnx.merge(graphdef, params).logits(inputs)
            logp = jax.nn.log_softmax(logits, axis=-1)
            return jax.numpy.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]

        self._loss_sum = jax.jit(loss_sum)
        self._token_logprobs = jax.jit(token_logprobs)
        self.batch_rows = spec.batch.sequences
        self.length = spec.batch.sequence_length

    def _batches(self, rows):
        import numpy as np  # noqa: PLC0415

        for start in range(0, len(rows), self.batch_rows):
            chunk = rows[start: start + self.batch_rows]
            pad = self.batch_rows - len(chunk)
            zeros = (np.zeros(self.length, np.int32), np.zeros(self.length, np.int32), np.zeros(self.length, np.float32))
            chunk = [*chunk, *([zeros] * pad)]
            yield tuple(np.stack([row[i] for row in chunk]) for i in range(3)), len(chunk) - pad

    def loss_sums(self, rows) -> list[Any]:
        """float32 loss sum of each batch of rows, in order."""
        import jax  # noqa: PLC0415
        import numpy as np  # noqa: PLC0415

        out = []
        for (inputs, targets, mask), _ in self._batches(rows):
            batch = {"inputs": inputs, "targets": targets, "loss_mask": mask}
            out.append(np.asarray(jax.block_until_ready(self._loss_sum(self.params, batch)), np.float32))
        return out

    def row_logprobs(self, rows) -> list[Any]:
        """[L] float32 log-probs of each row's targets (masked positions included; the caller picks)."""
        import numpy as np  # noqa: PLC0415

        out = []
        for (inputs, targets, _), used in self._batches(rows):
            logp = np.asarray(self._token_logprobs(self.params, inputs, targets), np.float32)
            out.extend(logp[:used])
        return out


class _Data:
    """The data root, with what several evals of one job share: prepared corpora and tokenizers, once each."""

    def __init__(self, root: Path):
        self.root = root
        self._manifests: dict[str, Any] = {}
        self._tokenizers: dict[tuple[int, str], Any] = {}

    def manifest(self, name: str):
        if name not in self._manifests:
            from dataprep import corpora  # noqa: PLC0415 (tfds)

            self._manifests[name] = corpora.prepare_corpus(name, self.root)
        return self._manifests[name]

    def tokenizer(self, spec, want: str, lock_entries):
        """The run's own tokenizer (runtime.data_source.run_tokenizer, as its trainer had it), checked against the eval."""
        key = (spec.data.tokenizer, spec.model.vocab_size, want)
        if key not in self._tokenizers:
            from dataprep.builtin_corpora import builtin_names  # noqa: PLC0415
            from runtime.data_source import run_tokenizer  # noqa: PLC0415

            manifests = {name: self.manifest(name) for name in builtin_names()} if spec.data.tokenizer == BUILTIN + "bpe" else {}
            artifact = run_tokenizer(spec, self.root, lock_entries, manifests)
            if artifact.digest != want:
                raise BadInput(f"tokenizer digest {artifact.digest} differs from the eval's {want}; relock")
            tok = artifact.load()
            tok.encode_special_tokens = True
            self._tokenizers[key] = (tok, artifact.eos_id)
        return self._tokenizers[key]


def _bits(value) -> str:
    from runtime.digest import loss_bits  # noqa: PLC0415

    return loss_bits(value)


def score_heldout(model: _Model, record: dict[str, Any], data: _Data) -> dict[str, Any]:
    tok, eos = data.tokenizer(model.spec, record["document"]["tokenizer"], model.lock_entries)
    pieces = select_bytes(heldout_texts(record, data), record["document"]["settings"]["max_bytes"])
    if not pieces:
        raise BadInput(f"eval set {record['uri']} has no text to score")
    ids = [tok.encode(piece.decode("utf-8"), add_special_tokens=False).ids for piece in pieces]
    sums = model.loss_sums(windows(ids, model.length, eos))
    total = 0.0
    for value in sums:
        total += float(value)
    tokens = sum(len(x) for x in ids)
    n_bytes = sum(len(p) for p in pieces)
    return {
        "kind": "heldout", "documents": len(pieces), "bytes": n_bytes, "tokens": tokens,
        "bytes_sha256": hashlib.sha256(b"".join(pieces)).hexdigest(),
        "nll_sum": total, "loss_per_token": total / tokens, "bits_per_byte": total / LN2 / n_bytes,
        "batch_nll_bits": [_bits(v) for v in sums],
    }


def score_choice(model: _Model, record: dict[str, Any], data: _Data) -> dict[str, Any]:
    import numpy as np  # noqa: PLC0415

    tok, eos = data.tokenizer(model.spec, record["document"]["tokenizer"], model.lock_entries)
    items = choice_items(record)
    rows, spans = [], []
    for item in items:
        for choice in item["choices"]:
            context, continuation = continuation_split(tok, item["prompt"], choice)
            stream = [eos, *context, *continuation][-(model.length + 1):]
            n = min(len(continuation), len(stream) - 1)
            inputs = np.zeros(model.length, np.int32)
            targets = np.zeros(model.length, np.int32)
            inputs[: len(stream) - 1] = stream[:-1]
            targets[: len(stream) - 1] = stream[1:]
            rows.append((inputs, targets, np.zeros(model.length, np.float32)))
            spans.append((len(stream) - 1 - n, len(stream) - 1))
    logps = model.row_logprobs(rows)
    scores = [np.float32(np.sum(logp[a:b], dtype=np.float32)) for logp, (a, b) in zip(logps, spans)]
    correct = correct_norm = 0
    index = 0
    for item in items:
        count = len(item["choices"])
        mine = [float(s) for s in scores[index: index + count]]
        index += count
        lengths = [len(c.encode("utf-8")) for c in item["choices"]]
        correct += int(int(np.argmax(mine)) == item["answer"])
        correct_norm += int(int(np.argmax([s / n for s, n in zip(mine, lengths)])) == item["answer"])
    return {
        "kind": "choice", "items": len(items), "acc": correct / len(items), "acc_norm": correct_norm / len(items),
        "choice_logprob_bits": [_bits(s) for s in scores],
    }


SCORERS = {"heldout": score_heldout, "choice": score_choice}


def first_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """The first recorded value that differs between two results, or None when bit-exact."""
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        if isinstance(a.get(key), list) and isinstance(b.get(key), list):
            for i, (x, y) in enumerate(zip(a[key], b[key])):
                if x != y:
                    return f"{key}[{i}]: stored {x}, replayed {y}"
        return f"{key}: stored {a.get(key)!r}, replayed {b.get(key)!r}"
    return None


# --------------------------------------------------------------------------- the job


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtime.evaluate", description="Build or replay evals of built runs.")
    parser.add_argument("--store", required=True, help="store URL (fsspec)")
    parser.add_argument("--hash", action="append", required=True, dest="hashes", help="an eval hash (repeatable)")
    parser.add_argument("--data-root", help="root of the prepared corpora and tokenizers")
    parser.add_argument("--replay", action="store_true", help="recompute built evals and compare bit for bit")
    parser.add_argument("--wait-for-run", type=float, default=0, metavar="S",
                        help="wait up to S seconds for the evaluated runs to be built (a cluster job starts early)")
    return parser.parse_args(argv)


def wait_for_runs(store, run_hashes, seconds: float, poll: float = 30.0) -> list[str]:
    """Block until every run is built or `seconds` passed; returns the runs still not built."""
    import time  # noqa: PLC0415

    deadline = time.monotonic() + seconds
    waiting = sorted(h for h in run_hashes if not store.is_built(h))
    while waiting and time.monotonic() < deadline:
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        waiting = [h for h in waiting if not store.is_built(h)]
    return waiting


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from compiler.eval_store import EvalStore  # noqa: PLC0415 (jax-free)
    from compiler.store import Store, StoreError  # noqa: PLC0415

    try:
        store = Store(args.store)
        evals = EvalStore(store)
        records = []
        for hash_ in args.hashes:
            if evals.is_built(hash_) and not args.replay:
                print(f"runix eval: {hash_[:12]} is built (cache hit)", flush=True)
                continue
            records.append(evals.read(hash_)[0] | {"lock": evals.derivation(hash_).get("lock")}
                           if args.replay else evals.derivation(hash_))
        if not records:
            return EXIT_OK
        runs = {r["document"]["run"] for r in records}
        not_built = wait_for_runs(store, runs, args.wait_for_run)
        if not_built:
            raise BadInput(f"run {not_built[0]} is not built in {args.store}: there is no checkpoint to evaluate")
        run_dirs = {h: store.local_copy(h) for h in sorted(runs)}
        meshes = {json.dumps(run_dir_lib.load_request(d).spec.mesh.model_dump(mode="json"), sort_keys=True)
                  for d in run_dirs.values()}
        if len(meshes) > 1:
            raise BadInput("one eval job evaluates runs of one mesh; split the hashes by run")
        first = run_dir_lib.load_request(next(iter(run_dirs.values()))).spec
        os.environ.update(numerics.pinned_environment(first.mesh, 1))
    except (StoreError, BadInput, ValueError) as e:
        print(f"runix eval: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from absl import logging as absl_logging  # noqa: PLC0415 (after the numerics environment is pinned)

    absl_logging.set_verbosity(absl_logging.ERROR)
    data = _Data(Path(args.data_root) if args.data_root else _default_data_root())
    code = EXIT_OK
    models: dict[tuple[str, int], _Model] = {}
    try:
        for record in sorted(records, key=lambda r: (r["document"]["run"], r["step"], r["name"])):
            key = (record["document"]["run"], record["step"])
            if key not in models:
                models.clear()  # one checkpoint in memory at a time
                models[key] = _Model(run_dirs[key[0]], key[1])
            result = SCORERS[record["kind"]](models[key], record, data)
            if args.replay:
                stored = evals.read(record["hash"])[1]
                difference = first_difference(stored, result)
                print(f"runix eval: {record['name']} ({record['hash'][:12]}): "
                      + ("bit-exact" if difference is None else f"differs at {difference}"), flush=True)
                code = code if difference is None else EXIT_FAILED
                continue
            record = {k: v for k, v in record.items() if k != "lock"}
            evals.publish(record, result)
            print(f"runix eval: built {record['name']} ({record['hash'][:12]}): {summary(result)}", flush=True)
    except BadInput as e:
        print(f"runix eval: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StoreError as e:
        print(f"runix eval: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return code


def summary(result: dict[str, Any]) -> str:
    if result["kind"] == "heldout":
        return (f"{result['bits_per_byte']:.4f} bits/byte, {result['loss_per_token']:.4f} loss/token over "
                f"{result['bytes']} bytes ({result['tokens']} tokens)")
    return f"acc {result['acc']:.3f}, acc_norm {result['acc_norm']:.3f} over {result['items']} items"


def _default_data_root() -> Path:
    from runtime.data_source import default_data_root  # noqa: PLC0415

    return default_data_root()


if __name__ == "__main__":
    sys.exit(main())
