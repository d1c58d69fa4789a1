"""The report's data: one row per run of the spec set, and the families whose curves overlay.

Pure except for reading the store; never imports matplotlib or jax.

Per run (its hash is the locked hash, the one `runix launch` builds):
  status        the store's: "built", or "not built" (with "building", "registered" or
                "incomplete" when the store has that much of it)
  estimate      chip-hours on the run's own mesh, the price `runix compile` gives it
                (compiler.plan, compiler.pricing): its steps and overheads (compile, startup,
                checkpoint saves), calibrated on the timing records of the store's built runs
                (compiler.calibration) where there are some. A built run is priced without its
                own record — what the dry run said before it was built — so that estimate
                and measurement are two numbers, not one. Evals are apart (their own section).
  metrics.jsonl the loss curve, tokens trained and the measured wall time (built runs only)
  digest.json   the final loss, bit exact (the last loss of the digest record), and the
                final parameter sha256
  replay log    replay status, when `runix replay` recorded one (`read_replays`)

Files this module reads, in the formats their writers use:
  metrics.jsonl (runtime.metrics / runtime.train): one JSON object per line,
      {"step": s, "loss", "lr", "grad_norm", "tokens", "tokens_per_s"}, s 0-based; "tokens"
      is what the run has trained on once step s's batch is consumed, (s + 1) × tokens per
      step, which is also the fallback when it is missing. A resumed build drops lines of
      redone steps itself; should a step appear twice anyway, its last line counts.
  digest.json (runtime.digest, "runix-digest/1"): losses[s] is the float32 bit pattern of
      step s's loss, in hex.
  replay log: `<store>/.replays/<hash>-<name>.jsonl` as `runix replay` appends it (outside the
      immutable entry), else `<entry>/replays.jsonl`; one JSON object per replay, oldest first:
      {"steps": [start, stop], "bit_exact": true|false, "difference": "step 12: …" | null}.
      Also read: "identical" for "bit_exact", "first_difference" for "difference", and
      {"status": "identical"|"diverged"}.

Measured chip-hours = wall time of the build × the run's chips ÷ 3600, where the wall time
is the sum over the steps in metrics.jsonl of tokens per step ÷ tokens_per_s (the trainer
measures each step from the end of the previous one, so the sum covers compilation and
checkpoint writes but not start-up before the first step).

Families (what one loss figure overlays), in this order on the page:
  tags    runs whose tags are equal except for at most one tag (e.g. a sweep tagged
          [size, sweep, code25], [size, sweep, code50], … varies one tag), at least
          MIN_TAG_FAMILY runs, not all inside one chain family (that figure exists already);
          two keys giving the same runs make one family, named by the longer key.
  chain   every initialization tree of two or more runs: a root and all runs whose chain
          passes through it, each plotted at its cumulative token position (its ancestors'
          tokens first), so a chain reads as one curve and siblings fork from their parent.
  other   runs in no family above, together, so every built run is in some figure.
"""

from __future__ import annotations

import dataclasses
import json
import math
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

from compiler.specset import CompiledRun, SpecSet

METRICS_FILE = "metrics.jsonl"
DIGEST_FILE = "digest.json"
REPLAYS_DIR = ".replays"  # runix replay's log folder in the store root (compiler.commands.replay)
REPLAYS_FILE = "replays.jsonl"  # the same records kept inside an entry
DIGEST_FORMAT = "runix-digest/1"

MIN_TAG_FAMILY = 3
"""A pair of runs reads well from the table; a 64-run grid has dozens of pairs differing in one tag."""

NOT_BUILT = "not built"


# --------------------------------------------------------------------------- per-run records


@dataclasses.dataclass(frozen=True)
class RunMetrics:
    """What the store holds about one built run's training."""

    curve: tuple[tuple[int, float], ...] = ()  # (tokens trained within this run, loss), by step
    tokens_trained: int | None = None
    final_loss: float | None = None
    final_loss_source: str = ""  # "digest" (bit exact) or "metrics"
    steps_recorded: int = 0
    wall_seconds: float | None = None
    final_params_sha256: str | None = None
    problems: tuple[str, ...] = ()  # unreadable or missing files, said in the page


@dataclasses.dataclass(frozen=True)
class ReplayStatus:
    replays: int = 0
    identical: bool | None = None  # of the last replay
    first_difference: str | None = None
    steps: tuple[int, int] | None = None

    def __str__(self) -> str:
        if not self.replays:
            return "not replayed"
        times = f" ({self.replays} replays)" if self.replays > 1 else ""
        span = f" steps {self.steps[0]}:{self.steps[1]}" if self.steps else ""
        if self.identical:
            return f"identical{span}{times}"
        if self.identical is False:
            return f"diverged{span}: {self.first_difference or 'digest differs'}{times}"
        return f"unknown result{times}"


@dataclasses.dataclass(frozen=True)
class RunRow:
    run: CompiledRun
    status: str  # "built" or "not built (…)"
    entry: str | None  # store path of the built entry
    depth: int  # 0 for a root of the spec set's initialization chains
    offset_tokens: int  # tokens its ancestors in the spec set train before it (planned)
    chip_hours_estimated: float
    mfu: float
    accelerator: str
    metrics: RunMetrics | None  # None unless built
    replay: ReplayStatus
    price_source: str = ""  # compiler.pricing.Price.label: model, measured×N, calibrated×N, --mfu

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def built(self) -> bool:
        return self.status == "built"

    @property
    def chips(self) -> int:
        return self.run.spec.mesh.chips

    @property
    def planned_tokens(self) -> int:
        return self.run.spec.total_tokens

    @property
    def chip_hours_measured(self) -> float | None:
        if self.metrics is None or self.metrics.wall_seconds is None:
            return None
        return self.metrics.wall_seconds * self.chips / 3600

    def to_json(self) -> dict[str, Any]:
        m = self.metrics or RunMetrics()
        return {
            "name": self.name,
            "hash": self.run.hash,
            "parent_name": self.run.parent_name,
            "parent_hash": self.run.parent_hash,
            "status": self.status,
            "depth": self.depth,
            "offset_tokens": self.offset_tokens,
            "planned_tokens": self.planned_tokens,
            "tokens_trained": m.tokens_trained,
            "final_loss": m.final_loss,
            "final_loss_source": m.final_loss_source or None,
            "final_params_sha256": m.final_params_sha256,
            "steps_recorded": m.steps_recorded,
            "wall_seconds": m.wall_seconds,
            "chips": self.chips,
            "accelerator": self.accelerator,
            "mfu": self.mfu,
            "chip_hours_estimated": self.chip_hours_estimated,
            "price_source": self.price_source,
            "chip_hours_measured": self.chip_hours_measured,
            "replay": str(self.replay),
            "problems": list(m.problems),
        }


@dataclasses.dataclass(frozen=True)
class Family:
    slug: str  # file-name safe, unique within the report
    kind: str  # "chain" | "tags" | "other"
    title: str
    why: str  # how its members were chosen, one sentence
    members: tuple[str, ...]  # run names, in spec-set order (parents first)


@dataclasses.dataclass(frozen=True)
class ReportData:
    spec_set_name: str
    paths: tuple[str, ...]
    store_url: str
    lockfile: str | None
    mfu_override: float | None
    rows: tuple[RunRow, ...]  # the spec set's order: parents before children
    families: tuple[Family, ...]
    evals: Any = None  # compiler.eval_results.EvalResults of the spec set, or None when no run has evals

    def row(self, name: str) -> RunRow:
        return next(r for r in self.rows if r.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "runix_report": 1,
            "spec_set": self.spec_set_name,
            "paths": list(self.paths),
            "store": self.store_url,
            "lockfile": self.lockfile,
            "mfu_override": self.mfu_override,
            "runs": [r.to_json() for r in self.rows],
            "families": [dataclasses.asdict(f) | {"members": list(f.members)} for f in self.families],
            "evals": self.evals.to_json() if self.evals is not None else None,
        }


# --------------------------------------------------------------------------- collecting


def collect(spec_set: SpecSet, store, *, spec_set_name: str, paths: Sequence[str] = (),
            lockfile: str | None = None, mfu: float | None = None, lock=None) -> ReportData:
    """Rows and families of `spec_set` against `store` (a compiler.store.Store); evals too, given the `lock`."""
    from compiler.calibration import read_measurements
    from compiler.memory import value
    from compiler.plan import plan

    entries = {}
    for entry in store.ls():  # one listing; a built entry wins over a build in progress of the same hash
        if entry.hash not in entries or entry.status == "built":
            entries[entry.hash] = entry
    built = {h for h, e in entries.items() if e.status == "built"}
    measurements = tuple(read_measurements(store))
    priced = {r.run.hash: r for r in plan(spec_set, built, mfu=mfu, measurements=measurements).runs}
    depth, offset = chain_positions(spec_set.runs)
    rows = []
    for run in spec_set.runs:
        entry = entries.get(run.hash)
        priced_run = priced[run.hash]
        metrics, replay, path = None, ReplayStatus(), None
        if entry is not None and entry.status == "built":
            status, path = "built", entry.path
            metrics = read_metrics(store.fs, path, run.spec.tokens_per_step)
            replay = replay_status(read_replays(store.fs, replay_logs(store.root, entry.hash, entry.name, path)))
        else:
            status = NOT_BUILT if entry is None else f"{NOT_BUILT} ({entry.status})"
        price = priced_run.price
        if status == "built" and any(m.run_hash == run.hash for m in measurements):
            price = _price_before_built(run, priced_run.hardware, measurements, mfu)
        rows.append(RunRow(run, status, path, depth[run.name], offset[run.name], price.total_chip_hours,
                           price.mfu, value(run.spec.mesh.accelerator), metrics, replay, price.label))
    return ReportData(spec_set_name, tuple(paths), store.url, lockfile, mfu, tuple(rows), families(spec_set.runs),
                      _evals(spec_set, store, lock))


def _price_before_built(run: CompiledRun, hardware, measurements, mfu: float | None):
    """The run's price from every timing record but its own (compiler.pricing.price_run, as the dry run prices)."""
    from compiler.pricing import price_run
    from compiler.step_time import load

    others = [m for m in measurements if m.run_hash != run.hash]
    return price_run(run.spec, hardware, load(), others, mfu)


def _evals(spec_set: SpecSet, store, lock):
    """The spec set's eval results (compiler.eval_results), None without a lock or without evals."""
    if lock is None or not any(run.spec.evals.sets for run in spec_set.runs):
        return None
    from compiler.eval_results import collect as collect_evals
    from compiler.eval_store import EvalStore
    from compiler.evals import EvalInputError, spec_set_derivations

    try:
        derivations = spec_set_derivations(spec_set.runs, lock)
    except EvalInputError:
        return None
    return collect_evals(derivations, EvalStore(store).records(), [run.name for run in spec_set.runs])


def chain_positions(runs: Sequence[CompiledRun]) -> tuple[dict[str, int], dict[str, int]]:
    """Depth in the initialization chain and cumulative token offset (ancestors' planned tokens), by name.

    A parent outside the spec set (given by hash) counts as depth 0, offset 0.
    """
    by_name = {r.name: r for r in runs}
    depth: dict[str, int] = {}
    offset: dict[str, int] = {}
    for run in runs:  # parents come first
        parent = by_name.get(run.parent_name) if run.parent_name else None
        depth[run.name] = depth[parent.name] + 1 if parent else 0
        offset[run.name] = offset[parent.name] + parent.spec.total_tokens if parent else 0
    return depth, offset


def read_metrics(fs, entry: str, tokens_per_step: int) -> RunMetrics:
    """Loss curve, tokens trained, wall time and final loss of a built entry (see the module docstring)."""
    problems: list[str] = []
    by_step: dict[int, Mapping[str, Any]] = {}
    try:
        text = fs.cat_file(posixpath.join(entry, METRICS_FILE)).decode("utf-8", errors="replace")
    except FileNotFoundError:
        text = ""
        problems.append(f"no {METRICS_FILE}")
    bad = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = record["step"]
            if not isinstance(step, int) or isinstance(step, bool) or step < 0:
                raise TypeError
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        by_step[step] = record
    if bad:
        problems.append(f"{bad} unreadable line{'s' if bad != 1 else ''} in {METRICS_FILE}")

    curve: list[tuple[int, float]] = []
    wall = 0.0
    timed = 0
    last_tokens = None
    for step in sorted(by_step):
        record = by_step[step]
        tokens = record.get("tokens")
        if not _is_number(tokens):
            tokens = (step + 1) * tokens_per_step
        tokens = int(tokens)
        previous = last_tokens if last_tokens is not None else tokens - tokens_per_step
        speed = record.get("tokens_per_s")
        if _is_number(speed) and speed > 0:
            wall += max(tokens - previous, 0) / speed
            timed += 1
        last_tokens = tokens
        loss = record.get("loss")
        if _is_number(loss) and math.isfinite(loss):
            curve.append((tokens, float(loss)))

    final_loss, source, sha, digest_steps = None, "", None, 0
    try:
        digest = json.loads(fs.cat_file(posixpath.join(entry, DIGEST_FILE)))
        if not isinstance(digest, dict) or digest.get("format") != DIGEST_FORMAT:
            raise ValueError(f"not a {DIGEST_FORMAT} record")
        losses = digest.get("losses") or []
        digest_steps = len(losses)
        if losses:
            final_loss, source = loss_from_bits(losses[-1]), "digest"
        sha = digest.get("final_params_sha256")
    except FileNotFoundError:
        problems.append(f"no {DIGEST_FILE}")
    except (ValueError, TypeError, AttributeError) as err:
        problems.append(f"{DIGEST_FILE} unreadable: {err}")
    if final_loss is None and curve:
        final_loss, source = curve[-1][1], "metrics"
    if last_tokens is not None:
        tokens_trained = last_tokens
    elif digest_steps:
        tokens_trained = digest_steps * tokens_per_step
    else:
        tokens_trained = None
    if not curve and digest_steps:  # no metrics: the digest still gives the curve
        curve = [((s + 1) * tokens_per_step, loss_from_bits(bits)) for s, bits in enumerate(digest["losses"])]
    return RunMetrics(
        curve=tuple(curve), tokens_trained=tokens_trained, final_loss=final_loss, final_loss_source=source,
        steps_recorded=max(len(by_step), digest_steps), wall_seconds=wall if timed else None,
        final_params_sha256=sha if isinstance(sha, str) else None, problems=tuple(problems),
    )


def loss_from_bits(bits: str) -> float:
    """A float32 loss from its 8-hex-digit bit pattern (runtime.digest.loss_bits), without numpy."""
    import struct

    if not isinstance(bits, str) or not re.fullmatch(r"[0-9a-fA-F]{8}", bits):
        raise ValueError(f"not a float32 bit pattern: {bits!r}")
    return struct.unpack(">f", bytes.fromhex(bits))[0]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def replay_logs(store_root: str, run_hash: str, name: str, entry: str) -> list[str]:
    """Where replay records of a built entry may be: the store's replay log, then the entry's own file."""
    return [posixpath.join(store_root, REPLAYS_DIR, f"{run_hash}-{name}.jsonl"), posixpath.join(entry, REPLAYS_FILE)]


def read_replays(fs, paths: Sequence[str]) -> list[dict[str, Any]]:
    """The replay records in the first of `paths` that exists, oldest first; [] when never replayed.

    Lines that are not JSON objects are skipped (a record cut short by a kill).
    """
    for path in paths:
        try:
            text = fs.cat_file(path).decode("utf-8", errors="replace")
        except FileNotFoundError:
            continue
        records = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records
    return []


def replay_status(records: Sequence[Mapping[str, Any]]) -> ReplayStatus:
    """What the last replay found, and how many replays there were."""
    if not records:
        return ReplayStatus()
    last = records[-1]
    identical = last.get("bit_exact", last.get("identical"))
    if not isinstance(identical, bool):
        status = str(last.get("status", "")).lower()
        identical = {"identical": True, "bit-exact": True, "diverged": False, "differs": False}.get(status)
    steps = last.get("steps")
    span = (int(steps[0]), int(steps[1])) if isinstance(steps, (list, tuple)) and len(steps) == 2 and all(
        _is_number(s) for s in steps) else None
    difference = last.get("difference", last.get("first_difference"))
    return ReplayStatus(len(records), identical, str(difference) if difference else None, span)


# --------------------------------------------------------------------------- families


def families(runs: Sequence[CompiledRun], min_tag_family: int = MIN_TAG_FAMILY) -> tuple[Family, ...]:
    """The loss figures of a spec set, comparisons (tags) first, then chains, then the rest (module docstring)."""
    order = {r.name: i for i, r in enumerate(runs)}
    by_name = {r.name: r for r in runs}

    def root_of(run: CompiledRun) -> str:
        while run.parent_name in by_name:
            run = by_name[run.parent_name]
        return run.name

    trees: dict[str, list[str]] = {}
    for run in runs:
        trees.setdefault(root_of(run), []).append(run.name)
    tree_of = {name: root for root, members in trees.items() for name in members}

    keyed: dict[frozenset[str], set[str]] = {}
    for run in runs:
        tags = frozenset(run.spec.tags)
        for key in (tags, *(tags - {t} for t in tags)):
            if key:
                keyed.setdefault(key, set()).add(run.name)
    best: dict[frozenset[str], frozenset[str]] = {}  # members → the longest key naming them
    for key, members in keyed.items():
        group = frozenset(members)
        if len(group) < min_tag_family or len({tree_of[m] for m in group}) == 1:
            continue  # too few to compare, or already one chain's figure
        current = best.get(group)
        if current is None or (len(key), sorted(key)) > (len(current), sorted(current)):
            best[group] = key

    slugs: set[str] = set()
    out: list[Family] = []
    for group, key in sorted(best.items(), key=lambda kv: (sorted(kv[1]), sorted(kv[0], key=order.__getitem__))):
        members = tuple(sorted(group, key=order.__getitem__))
        label = " + ".join(sorted(key))
        varying = sorted({t for m in members for t in by_name[m].spec.tags} - key)
        why = f"Runs tagged {label}"
        why += f", differing in one tag: {', '.join(varying)}." if varying else ", all with the same tags."
        out.append(Family(_unique_slug(f"tags-{label}", slugs), "tags", f"Runs tagged {label}", why, members))
    for root in sorted(trees, key=order.__getitem__):
        if len(trees[root]) >= 2:
            out.append(Family(_unique_slug(f"chain-{root}", slugs), "chain", f"Initialization chain from {root}",
                              f"The run {root} and every run whose initialization chain passes through it; each "
                              f"run starts at its parent's last token.", tuple(trees[root])))
    shown = {m for f in out for m in f.members}
    rest = tuple(r.name for r in runs if r.name not in shown)
    if rest:
        out.append(Family(_unique_slug("other", slugs), "other", "Other runs",
                          "Runs in no tag family and in no chain above.", rest))
    return tuple(out)


def _unique_slug(text: str, taken: set[str]) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.").lower()[:80] or "family"
    candidate, n = slug, 2
    while candidate in taken:
        candidate, n = f"{slug}-{n}", n + 1
    taken.add(candidate)
    return candidate
