"""The ahead-of-time fit check, as the dry run sees it: XLA's verdict for a run's step, without jax.

Why an index beside the AOT cache: `runix compile --aot` (compiler.commands.
compile_aot, runtime.aot) keys its results by the sha256 of the *lowered*
program, which only jax can compute, and `runix compile --dry-run` must never
import jax. So every AOT compile also writes one small record here, under
`<project>/.runix/aot-index/<sha256 of the compile key>.json`, keyed by what
the compiler computes alone:

  * `compile_key(spec)`: the spec fields that decide the compiled step (model,
    dtypes, kernels, batch, mesh with its topology, optimizer, document
    masking; not data, lengths, schedule or names), and
  * `toolchain()`: what else decides the lowered and compiled program: the
    installed jax, jaxlib, libtpu, flax and optax (distribution metadata, no
    import), LIBTPU_INIT_ARGS, and the sha256 of runix's own step code (the
    `.py` files of the `runtime` and `kernels` packages; runtime/data, the
    host-side data pipeline, is not in the compiled step).

The dry run looks its runs up by compile key and trusts a record only when
its toolchain equals this one; any difference (another jax, other flags,
edited step code) makes the run "not checked" again, saying what differs.
That is conservative by design: a stale "fits" is worse than none.

`check` is pure (the record, the toolchain and the chip's memory in, an
AotCheck out); `read_index` and `toolchain` are the only readers of files and
the environment, and the command layer (compiler.commands.compile) calls them,
never compiler.plan.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import tempfile
from collections.abc import Mapping
from typing import Any

from compiler.canonical import canonical_json
from compiler.hardware import HardwareProfile, is_tpu

INDEX_FOLDER = (".runix", "aot-index")
INDEX_FORMAT = "runix-aot-index/1"
TOOLCHAIN_PACKAGES = ("jax", "jaxlib", "libtpu", "flax", "optax")
STEP_CODE_PACKAGES = ("runtime", "kernels")
HOW_TO_CHECK = "run `runix compile --aot`"

FITS, DOES_NOT_FIT, NOT_CHECKED, UNAVAILABLE = "fits", "does not fit", "not checked", "unavailable"
CPU_REASON = "cpu meshes are compiled by the trainer itself"


def compile_key(spec) -> str:
    """What decides the compiled step of a run (not its data, schedule lengths or name): runs sharing it share a compile."""
    dumped = spec.model_dump(mode="json")
    return canonical_json({part: dumped.get(part) for part in ("model", "dtypes", "kernels", "batch", "mesh",
                                                               "optimizer")}
                          | {"document_masking": dumped["data"].get("document_masking")})


def index_file(index_dir: pathlib.Path, key: str) -> pathlib.Path:
    return index_dir / f"{hashlib.sha256(key.encode('utf-8')).hexdigest()}.json"


def index_dir(root: pathlib.Path) -> pathlib.Path:
    return root.joinpath(*INDEX_FOLDER)


# --------------------------------------------------------------------------- reading the world (command layer only)


def toolchain() -> dict[str, Any]:
    """What besides the compile key decides XLA's program here: package versions, libtpu flags, runix step code."""
    versions = {}
    for name in TOOLCHAIN_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"packages": versions, "LIBTPU_INIT_ARGS": os.environ.get("LIBTPU_INIT_ARGS", ""),
            "step_code": step_code_digest()}


def step_code_digest() -> str:
    """sha256 over the `.py` files (path and bytes, in order) of the packages that build the step."""
    digest = hashlib.sha256()
    for package in STEP_CODE_PACKAGES:
        found = importlib.util.find_spec(package)  # a top-level package: located, not imported
        for location in (found.submodule_search_locations or []) if found else []:
            for path in sorted(pathlib.Path(location).glob("*.py")):
                digest.update(f"{package}/{path.name}\n".encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def read_index(root: pathlib.Path | None) -> dict[str, dict[str, Any]]:
    """compile key → its record, from `<root>/.runix/aot-index/` (empty when there is none). Unreadable files are skipped."""
    if root is None or not index_dir(root).is_dir():
        return {}
    records = {}
    for path in sorted(index_dir(root).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("format") == INDEX_FORMAT and isinstance(record.get("compile_key"), str):
            records[record["compile_key"]] = record
    return records


def write_record(root: pathlib.Path, spec, result: Mapping[str, Any], tools: Mapping[str, Any]) -> pathlib.Path:
    """Record one AOT compile's verdict (runtime.aot.compile_run's result) for the dry run to find; atomic."""
    key = compile_key(spec)
    record = {
        "format": INDEX_FORMAT, "compile_key": key, "toolchain": dict(tools),
        "program_key": result["key"], "topology": result["topology"],
        "peak_bytes_per_chip": int(result["peak_bytes_per_chip"]),
        "hbm_bytes_per_chip": int(result["hbm_bytes_per_chip"]), "fits": bool(result["fits"]),
    }
    path = index_file(index_dir(root), key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".index.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- the check (pure)


@dataclasses.dataclass(frozen=True)
class AotCheck:
    status: str  # FITS, DOES_NOT_FIT, NOT_CHECKED, UNAVAILABLE
    detail: str  # one line, for the table's notes and --json
    topology: str | None = None
    peak_bytes_per_chip: int | None = None
    hbm_bytes_per_chip: int | None = None
    program_key: str | None = None

    @property
    def label(self) -> str:
        """The table's cell."""
        if self.status in (FITS, DOES_NOT_FIT):
            return f"{'fits' if self.status == FITS else 'NO'} {self.peak_bytes_per_chip / self.hbm_bytes_per_chip:.0%}"
        return {NOT_CHECKED: "not checked", UNAVAILABLE: "n/a"}[self.status]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class AotIndex:
    """What the dry run knows of AOT compiles: the index's records and this machine's toolchain (None: no records)."""

    records: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    toolchain: Mapping[str, Any] | None = None


def check(spec, hardware: HardwareProfile, index: AotIndex) -> AotCheck:
    """The run's AOT fit check: XLA's peak per chip against the chip's memory, if compiled with this toolchain."""
    accelerator = getattr(spec.mesh.accelerator, "value", spec.mesh.accelerator)
    if accelerator == "cpu":
        return AotCheck(UNAVAILABLE, f"{CPU_REASON}: no ahead-of-time check")
    if not is_tpu(accelerator):
        return AotCheck(UNAVAILABLE, f"{accelerator}: no compile-only target here (jax compiles ahead of time for TPU "
                                     "topologies only; compiling for a GPU needs the GPU)")
    record = index.records.get(compile_key(spec))
    if record is None:
        return AotCheck(NOT_CHECKED, f"not checked: {HOW_TO_CHECK}")
    differs = _differences(record.get("toolchain") or {}, index.toolchain or {})
    if differs:
        return AotCheck(NOT_CHECKED, f"not checked: the AOT result on record was compiled with {'; '.join(differs)}; "
                                     f"{HOW_TO_CHECK}")
    hbm = hardware.memory_per_chip(spec.mesh.chips)
    peak = int(record["peak_bytes_per_chip"])
    fits = peak <= hbm
    verdict = "fits" if fits else "does not fit"
    return AotCheck(FITS if fits else DOES_NOT_FIT,
                    f"{verdict}: XLA's peak {peak / 1e9:.3g} GB per chip of {hbm / 1e9:.3g} GB on {record['topology']} "
                    f"(`runix compile --aot`, program {str(record['program_key'])[:12]})",
                    record["topology"], peak, hbm, record["program_key"])


def _differences(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What of the toolchain changed since the record, in words ('jax 0.4.30 (here 0.10.2)')."""
    out = []
    old, new = then.get("packages") or {}, now.get("packages") or {}
    for name in TOOLCHAIN_PACKAGES:
        if old.get(name) != new.get(name):
            out.append(f"{name} {old.get(name)} (here {new.get(name)})")
    if then.get("LIBTPU_INIT_ARGS", "") != now.get("LIBTPU_INIT_ARGS", ""):
        out.append(f"LIBTPU_INIT_ARGS {then.get('LIBTPU_INIT_ARGS', '')!r} (here {now.get('LIBTPU_INIT_ARGS', '')!r})")
    if then.get("step_code") != now.get("step_code"):
        out.append("other runix step code (runtime/, kernels/ changed since)")
    return out
