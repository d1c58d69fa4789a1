"""Run every benchmark in benchmarks/, even after one misses its goal, and end with one summary table.

`make bench` runs this. Each benchmark runs in its own process, its output
passed through as it comes; the figures it reports with benchmarks.goals
(one `runix-bench:` line each) are collected into the table — benchmark,
figure, value, goal, met. A benchmark that exits non-zero without reporting,
or reports nothing, is a row of its own that fails. Exit 1 after all have run
if any goal was missed or any benchmark failed; 0 otherwise.

    .venv/bin/python benchmarks/run_all.py                 # every bench_*.py
    .venv/bin/python benchmarks/run_all.py bench_spec.py   # some of them
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

from rich.console import Console
from rich.table import Table

from goals import parse

HERE = pathlib.Path(__file__).resolve().parent


def run_one(path: pathlib.Path, console: Console) -> tuple[list[dict], int]:
    """(reported results, exit code) of one benchmark; its output is shown as it runs."""
    console.print(f"== {path.name}", style="bold", markup=False)
    process = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=HERE.parent, bufsize=1)
    results = []
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        found = parse(line.rstrip("\n"))
        if found is not None:
            results.append(found)
    return results, process.wait()


def summary(rows: list[tuple[str, list[dict], int]]) -> tuple[Table, bool]:
    table = Table(title="benchmarks", title_justify="left")
    for column in ("benchmark", "figure", "value", "goal", "met"):
        table.add_column(column, justify="right" if column == "value" else "left")
    ok = True
    for name, results, code in rows:
        for result in results:
            met = result.get("met")
            ok &= met is not False
            value = result["value"]
            shown = f"{value:,.3g}" if isinstance(value, float) else str(value)
            table.add_row(name, result["figure"], f"{shown}{result.get('unit') or ''}", result.get("goal") or "—",
                          {True: "yes", False: "NO", None: "—"}[met])
        if code != 0 and not any(r.get("met") is False for r in results):
            ok = False
            table.add_row(name, "(the benchmark itself)", "—", "exit 0", f"NO (exit {code})")
        elif not results:
            ok = False
            table.add_row(name, "(no figure reported)", "—", "a figure", "NO")
    return table, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmark files (default: every benchmarks/bench_*.py)")
    args = parser.parse_args(argv)
    paths = [HERE / name for name in args.names] if args.names else sorted(HERE.glob("bench_*.py"))
    console = Console()
    rows = []
    for path in paths:
        results, code = run_one(path, console)
        rows.append((path.stem, results, code))
    table, ok = summary(rows)
    console.print(table)
    console.print("every goal met" if ok else "some goal was missed or a benchmark failed", markup=False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
