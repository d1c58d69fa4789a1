"""`runix compile PATH --aot [--json]`: compile each distinct train step for its TPU slice here, and check it fits.

Why beside the dry run: compiler.memory is a closed-form estimate; XLA's own
buffer assignment of the real step (runtime.aot, through libtpu on this CPU
machine) is the measurement. For each distinct (model, dtypes, kernels,
batch, mesh, optimizer) of the spec set the real step is lowered, keyed by the
sha256 of the lowered program, and compiled unless that key is cached under
`<project>/.runix/aot/`; every run then gets XLA's per-chip memory beside the
estimate, and the per-step collectives (kind, count, bytes per chip, loops
counted by their trip counts). A run XLA says does not fit its chips is an
error (exit 2) naming its largest buffers. Each verdict is also recorded,
keyed by what the compiler computes without jax, in
`<project>/.runix/aot-index/` (compiler.aot_check): `compile --dry-run`
shows it in each run's price row.

CPU meshes are compiled by the trainer itself and GPU meshes have no
compile-only target in jax 0.10 (runtime.aot says why); their `aot` object
says so. This module imports jax only inside `run`, through runtime.aot,
so `runix validate/hash/compile --dry-run` never load it.
"""

from __future__ import annotations

import json
import pathlib

from compiler import aot_check
from compiler.aot_check import compile_key
from compiler.hardware import profile
from compiler.lock import project_root
from compiler.problems import Problem, SpecError

AOT_FOLDER = (".runix", "aot")


def run(args, console, result) -> int:
    """Compile, attach `aot` to every run of the plan, print, and raise SpecError for runs that do not fit."""
    from runtime import aot  # noqa: PLC0415 (imports jax: only on this path)

    root = project_root(args.paths[0]) or pathlib.Path.cwd()
    cache_dir = root.joinpath(*AOT_FOLDER)
    by_key: dict[str, dict] = {}
    tools = None
    reports = []
    for r in result.runs:
        spec = r.run.spec
        accelerator = getattr(spec.mesh.accelerator, "value", spec.mesh.accelerator)
        key = compile_key(spec)
        if key not in by_key:
            if accelerator == "cpu":
                by_key[key] = {"available": False, "reason": "cpu meshes are compiled by the trainer itself"}
            else:
                try:
                    hbm = profile(accelerator).memory_per_chip(spec.mesh.chips)
                    if not args.json:
                        console.print(f"{r.run.name}: lowering for {aot.topology_name(spec)}, compiling unless cached …",
                                      style="dim")
                    by_key[key] = {"available": True, **aot.compile_run(spec, hbm, cache_dir)}
                    tools = tools or aot_check.toolchain()
                    aot_check.write_record(root, spec, by_key[key], tools)  # what the dry run reads, without jax
                except aot.AotUnavailable as err:
                    by_key[key] = {"available": False, "reason": str(err)}
        report = dict(by_key[key])
        if report["available"]:
            report["estimate_bytes_per_chip"] = r.memory.total
        reports.append(report)
    if args.json:
        plan = result.to_json()
        for run_json, report in zip(plan["runs"], reports):
            run_json["aot"] = report
        print(json.dumps(plan, indent=2, ensure_ascii=False))
    else:
        _render(result, reports, console)
    problems = [
        Problem(r.run.location, f"runs[{r.run.name}].mesh", _refusal(report))
        for r, report in zip(result.runs, reports) if report["available"] and not report["fits"]
    ]
    if problems:
        raise SpecError(problems)
    return 0


def _refusal(report: dict) -> str:
    buffers = "; ".join(f"{b.get('name', '')} {b['shape']} ({_gb(b['bytes'])})".strip()
                        for b in report.get("largest_buffers", [])[:4])
    return (f"XLA needs {_gb(report['peak_bytes_per_chip'])} per chip on {report['topology']}, the chip has "
            f"{_gb(report['hbm_bytes_per_chip'])}; largest buffers: {buffers or 'not reported'}")


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def _render(result, reports, console) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="ahead-of-time compile: XLA's per-chip memory and collectives per step", title_justify="left")
    for header in ("run", "topology", "XLA peak", "temp", "arguments", "estimate", "est/XLA", "fits", "collectives",
                   "cached"):
        table.add_column(header, justify="left" if header in ("run", "topology", "collectives") else "right")
    for r, report in zip(result.runs, reports):
        if not report["available"]:
            table.add_row(r.run.name, "-", "-", "-", "-", "-", "-", "-", report["reason"], "-")
            continue
        memory = report.get("memory") or {}
        peak = report["peak_bytes_per_chip"]
        collectives = ", ".join(f"{c['kind']}×{c['count']} {_gb(c['bytes_per_chip'])}" for c in report["collectives"])
        table.add_row(
            r.run.name, report["topology"], _gb(peak), _gb(memory.get("temp_bytes", 0)),
            _gb(memory.get("argument_bytes", 0)), _gb(report["estimate_bytes_per_chip"]),
            f"{report['estimate_bytes_per_chip'] / peak:.2f}" if peak else "-",
            "yes" if report["fits"] else "NO", collectives or "-", "yes" if report["cached"] else "no",
        )
    console.print(table)
    console.print("XLA peak: arguments + outputs − donated + temporaries + code, per chip, from the compiled step's "
                  "memory_analysis(); collectives: from its partitioned HLO, bytes per chip per step (the larger of "
                  "each collective's operand and result), loops counted by their trip counts. Cache: "
                  "<project>/.runix/aot/, keyed by the sha256 of the lowered program, topology, jax, libtpu and "
                  "LIBTPU_INIT_ARGS.", soft_wrap=True)
