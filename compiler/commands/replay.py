"""`runix replay HASH [--steps A:B]`: re-run a stored run and compare it bit for bit.

The replay trains from the entry's own spec.json and lock.json (not from the
spec files, which may have changed since), in a scratch folder, through the
same trainer entry point a launch uses. A step range starts from the stored
checkpoint at or before A. The new digest record is compared with the stored
one: per-step loss bits, parameter digests, final parameters. Prints
"bit-exact", or the first step that differs with both values (exit 1).

Before anything runs, the entry is verified against its manifest (a tampered
byte is exit 2, naming the file), and this machine's runtime versions and
numerics facts are compared with the ones the run was hashed under: a
difference is said up front, because then different bits are expected.
Each result is appended to `<store>/.replays/<hash>-<name>.jsonl`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

from compiler.problems import Location, Problem, SpecError

REPLAYS_DIR = ".replays"


def register(subparsers) -> None:
    parser = subparsers.add_parser("replay", help="re-run a stored run from its hash and verify it bit for bit")
    parser.add_argument("hash", metavar="HASH", help="run hash (or a unique prefix of 6+ hex digits)")
    parser.add_argument("--steps", metavar="A:B", help="replay only steps A..B-1 (from the checkpoint at or before A)")
    parser.add_argument("--store", metavar="URL", help="store URL (fsspec); default: <project>/.runix/store")
    parser.add_argument("--data-root", help="prepared data (default: <project>/.runix/data)")
    parser.add_argument("--no-progress", action="store_true", help="do not draw the trainer's progress bar")
    parser.set_defaults(func=run)


@dataclasses.dataclass(frozen=True)
class StepRange:
    start: int  # first step to compare
    stop: int  # one past the last step to compare
    resume_from: int  # checkpoint step the replay starts from (0: from the beginning)


def parse_steps(text: str | None, total: int, checkpoints: list[int]) -> StepRange:
    if text is None:
        return StepRange(0, total, 0)
    start_text, sep, stop_text = text.partition(":")
    try:
        start = int(start_text) if start_text else 0
        stop = int(stop_text) if stop_text else total
    except ValueError:
        start = stop = -1
    if not sep or not 0 <= start < stop <= total:
        raise SpecError([Problem(Location("--steps"), "", f"expected A:B with 0 <= A < B <= {total}, got {text!r}")])
    resume = max((step for step in checkpoints if step <= start), default=0)
    return StepRange(start, stop, resume)


def run(args, console) -> int:
    from compiler.commands.store import open_store
    from compiler.lock import project_root
    from compiler.store import StoreError, default_data_root
    from runtime.digest import first_difference, read_digest

    store = open_store(args.store)
    run_hash = store.resolve(args.hash)
    if not store.is_built(run_hash):
        raise SpecError([Problem(Location(store.url), "", f"run {run_hash[:12]} is not built in the store")])
    problems = store.verify(run_hash)
    if problems:
        raise SpecError([Problem(Location(store.entry(run_hash)), "", f"the entry cannot be trusted: {p}") for p in problems])
    entry = store.local_copy(run_hash)
    document = json.loads((entry / "spec.json").read_text())
    lock_entries = json.loads((entry / "lock.json").read_text())
    stored = read_digest(entry / "digest.json")
    checkpoints = sorted(int(p.name) for p in (entry / "checkpoints").iterdir() if p.name.isdigit())
    steps = parse_steps(args.steps, stored.total_steps, checkpoints)
    name, parent_hash = document["name"], document.get("parent_hash")

    _say_numerics_drift(document, lock_entries, console)
    parent_dir = None
    if parent_hash and steps.resume_from == 0:
        try:
            parent_dir = store.local_copy(parent_hash)
        except StoreError as err:
            raise SpecError([Problem(Location(store.url), "", f"parent {parent_hash[:12]} is needed to replay {name}: {err}")])

    data_root = args.data_root or str(default_data_root(project_root(pathlib.Path.cwd())))
    console.print(f"replaying [bold]{name}[/] ({run_hash[:12]}) steps {steps.start}..{steps.stop - 1}"
                  + (f" from checkpoint {steps.resume_from}" if steps.resume_from else " from the start"))
    with tempfile.TemporaryDirectory(prefix="runix-replay-") as scratch:
        work = pathlib.Path(scratch) / f"{run_hash}-{name}"
        work.mkdir()
        for filename in ("spec.json", "lock.json"):
            shutil.copy2(entry / filename, work / filename)
        if steps.resume_from:
            shutil.copytree(entry / "checkpoints" / str(steps.resume_from), work / "checkpoints" / str(steps.resume_from))
        _shards_from_store(work, data_root, store)
        command = [sys.executable, "-m", "runtime", "--run-dir", str(work), "--data-root", data_root,
                   "--stop-after-step", str(steps.stop)]
        if parent_dir is not None:
            command += ["--parent-dir", str(parent_dir)]
        if args.no_progress:
            command.append("--no-progress")
        code = subprocess.call(command)
        if code != 0:
            console.print(f"[red]the replay did not run to step {steps.stop}[/] (trainer exit code {code})")
            return 1
        replayed = read_digest(work / "digest.json")

    ours = _window(replayed, steps)
    theirs = _window(stored, steps)
    difference = first_difference(theirs, ours)
    _record(store, run_hash, name, steps, difference)
    if difference is None:
        console.print(f"[green]bit-exact[/]: {name} ({run_hash[:12]}) steps {steps.start}..{steps.stop - 1}, "
                      f"{steps.stop - steps.start} losses"
                      + (f" and final parameters {stored.final_params_sha256[:16]}…" if steps.stop == stored.total_steps else ""))
        return replay_evals(store, run_hash, data_root, console)
    console.print(f"[red]diverged[/]: {name} ({run_hash[:12]}) — first difference (stored vs replayed) at {difference}")
    return 1


def _shards_from_store(work: pathlib.Path, data_root: str, store) -> None:
    """The run's file and TFDS sources' token shards from the store, as its build took them (no tokenizing here)."""
    from runtime.data_source import shards_from_store
    from runtime.errors import BadInput

    try:
        shards_from_store(work, data_root, store)
    except BadInput as err:
        raise SpecError([Problem(Location(store.url), "", str(err))]) from None


def replay_evals(store, run_hash: str, data_root: str, console) -> int:
    """Recompute the run's built evals (runtime.evaluate --replay) and compare every recorded bit; 0 when all match."""
    from compiler.eval_store import EvalStore

    evals = EvalStore(store)
    hashes = sorted(record["hash"] for record, _ in evals.records() if record["document"]["run"] == run_hash)
    if not hashes:
        return 0
    console.print(f"replaying the {len(hashes)} built evals of {run_hash[:12]}")
    command = [sys.executable, "-m", "runtime.evaluate", "--store", store.url, "--replay", "--data-root", data_root]
    for hash_ in hashes:
        command += ["--hash", hash_]
    return 0 if subprocess.call(command) == 0 else 1


def _window(record, steps: StepRange):
    """The part of a digest record that the replayed range must reproduce."""
    from runtime.digest import DigestRecord

    final = record.final_params_sha256 if steps.stop == record.total_steps else None
    digests = {k: v for k, v in record.params_sha256.items() if steps.resume_from < k <= steps.stop}
    losses = ["skipped"] * steps.start + list(record.losses[steps.start:steps.stop])
    return DigestRecord(record.run_hash, record.name, record.total_steps, losses, digests, final)


def _say_numerics_drift(document, lock_entries, console) -> None:
    """Say, before training, when this machine differs from what the run was hashed under."""
    from compiler.environment import accelerator_name, numerics_bits, numerics_facts, runtime_versions
    from compiler.spec import RunSpec

    inputs = lock_entries.get("inputs", {})
    mesh = RunSpec.model_validate(document["spec"]).mesh
    here = {"runtime": runtime_versions(), "numerics": numerics_bits(numerics_facts(accelerator_name(mesh)), mesh)}
    differ = [key for key in ("runtime", "numerics") if key in inputs and inputs[key] != here[key]]
    if differ:
        console.print(f"[yellow]warning[/]: this machine's {' and '.join(differ)} differ from the run's lock; "
                      "a bit-exact replay is not expected here")
        for key in differ:
            old, new = inputs[key], here[key]
            if isinstance(old, dict) and isinstance(new, dict):
                for field in sorted(set(old) | set(new)):
                    if old.get(field) != new.get(field):
                        console.print(f"  {key}.{field}: locked {old.get(field)!r}, here {new.get(field)!r}")


def _record(store, run_hash: str, name: str, steps: StepRange, difference: str | None) -> None:
    """Append the outcome to the store's replay log (outside the immutable entry)."""
    if not store.is_local:
        return
    folder = pathlib.Path(store.url) / REPLAYS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    line = {"hash": run_hash, "name": name, "steps": [steps.start, steps.stop],
            "bit_exact": difference is None, "difference": difference}
    with open(folder / f"{run_hash}-{name}.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")
