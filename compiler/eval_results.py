"""The eval results of a spec set, arranged for judging an ablation: what `runix eval` prints and the report shows.

Why not training loss: the runs of an ablation train on different mixtures,
so each run's training loss measures its own data. Held-out bits per byte on
fixed bytes (and accuracy on a fixed task) measure every run on the same
ground, across tokenizers too.

Per eval set a column: bits per byte (lower is better) for `heldout` sets,
accuracy (higher is better) for `choice` sets. The final table holds each
run's value at its final checkpoint, the best of each column marked; the
relative change of a run is against its family's baseline run (the first
member of the family, in spec-set order: the sweep's first point, a chain's
root), signed so that positive is better — the way "To Code, or Not To
Code?" reports "+8.2% over text-only".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from compiler.evals import EvalDerivation

METRIC = {"heldout": ("bits_per_byte", "bits/byte", "lower"), "choice": ("acc", "acc", "higher")}


@dataclasses.dataclass(frozen=True)
class Column:
    set: str
    role: str
    kind: str
    metric: str  # key in result.json
    label: str
    better: str  # "lower" | "higher"


@dataclasses.dataclass(frozen=True)
class Point:
    run: str
    set: str
    step: int
    tokens: int  # tokens the run had trained at this checkpoint
    final: bool
    result: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class EvalResults:
    columns: tuple[Column, ...]
    points: tuple[Point, ...]
    runs: tuple[str, ...]  # spec-set order
    expected: int  # evals the spec set defines
    missing: tuple[str, ...]  # names of evals not built

    def value(self, point: Point) -> float:
        column = next(c for c in self.columns if c.set == point.set)
        return float(point.result[column.metric])

    def final(self) -> dict[str, dict[str, float]]:
        """run → set → metric value at the run's final checkpoint (built evals only)."""
        out: dict[str, dict[str, float]] = {}
        for point in self.points:
            if point.final:
                out.setdefault(point.run, {})[point.set] = self.value(point)
        return out

    def best(self) -> dict[str, set[str]]:
        """set → the runs with the best final value (ties all marked)."""
        final = self.final()
        out: dict[str, set[str]] = {}
        for column in self.columns:
            values = {run: v[column.set] for run, v in final.items() if column.set in v}
            if values:
                target = (min if column.better == "lower" else max)(values.values())
                out[column.set] = {run for run, v in values.items() if v == target}
        return out

    def curve(self, run: str, set_name: str, offset_tokens: int = 0) -> list[tuple[int, float]]:
        return sorted((offset_tokens + p.tokens, self.value(p)) for p in self.points if p.run == run and p.set == set_name)

    def to_json(self) -> dict[str, Any]:
        return {"columns": [dataclasses.asdict(c) for c in self.columns], "final": self.final(),
                "best": {k: sorted(v) for k, v in self.best().items()}, "expected": self.expected,
                "missing": list(self.missing)}


def relative_change(value: float, baseline: float, better: str) -> float | None:
    """Change against the baseline in percent, positive when better; None for a zero baseline."""
    if baseline == 0:
        return None
    change = (baseline - value) / baseline if better == "lower" else (value - baseline) / baseline
    return 100.0 * change


def collect(derivations: Sequence[EvalDerivation], records: Sequence[tuple[dict, dict]], runs: Sequence[str]) -> EvalResults:
    """Arrange built eval records ((eval.json, result.json) from compiler.eval_store) by the spec set's derivations."""
    by_hash = {record["hash"]: (record, result) for record, result in records}
    columns: dict[str, Column] = {}
    points = []
    missing = []
    for d in derivations:
        metric, label, better = METRIC[d.kind]
        columns.setdefault(d.set_name, Column(d.set_name, d.role, d.kind, metric, label, better))
        found = by_hash.get(d.hash)
        if found is None:
            missing.append(d.name)
            continue
        points.append(Point(d.run_name, d.set_name, d.step, d.step * d.tokens_per_step, d.final, found[1]))
    ordered = tuple(sorted(columns.values(), key=lambda c: (c.kind != "heldout", c.set)))
    return EvalResults(ordered, tuple(points), tuple(runs), len(derivations), tuple(missing))


def table_rows(results: EvalResults, baselines: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per run with a final eval: values, best marks and the change against its baseline.

    baselines: run → the run it is compared against (its family's baseline; itself for a baseline).
    """
    final = results.final()
    best = results.best()
    rows = []
    for run in results.runs:
        if run not in final:
            continue
        base_name = baselines.get(run)
        base = final.get(base_name or "", {})
        cells = {}
        for column in results.columns:
            value = final[run].get(column.set)
            change = None
            if value is not None and column.set in base and base_name != run:
                change = relative_change(value, base[column.set], column.better)
            cells[column.set] = {"value": value, "best": run in best.get(column.set, set()), "change": change}
        rows.append({"run": run, "baseline": base_name, "cells": cells})
    return rows


def format_value(value: float | None, column: Column) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if column.kind == "heldout" else f"{value:.3f}"


def format_change(change: float | None) -> str:
    return "" if change is None else f"{change:+.1f}%"


def print_table(results: EvalResults, baselines: Mapping[str, str], console) -> None:
    """The final eval table on the terminal (rich): best per column in bold with a *, change vs baseline."""
    from rich.table import Table

    table = Table(title="held-out evals at each run's final checkpoint (* best; % vs baseline, + is better)")
    table.add_column("run")
    table.add_column("baseline")
    for column in results.columns:
        table.add_column(f"{column.set}\n{column.label} ({column.better} better)", justify="right")
    for row in table_rows(results, baselines):
        cells = []
        for column in results.columns:
            cell = row["cells"][column.set]
            text = format_value(cell["value"], column)
            if cell["best"]:
                text = f"[bold]{text}*[/]"
            change = format_change(cell["change"])
            cells.append(f"{text} {change}".strip())
        table.add_row(row["run"], "–" if row["baseline"] in (None, row["run"]) else row["baseline"], *cells)
    console.print(table)


def family_baselines(families: Sequence[Any]) -> dict[str, str]:
    """run → baseline: the first member of the first family (report order) that holds the run."""
    out: dict[str, str] = {}
    for family in families:
        for member in family.members:
            out.setdefault(member, family.members[0])
    return out
