"""End-to-end: `runix compile` through the real CLI."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from tests.compiler.test_plan import big_run
from tests.conftest import MINIMAL_RUN, REPO, run_cli

PLAN_JSON_DOC = REPO / "compiler" / "PLAN_JSON.md"

TOP_KEYS = ["format", "mfu_override", "hardware", "runs", "totals"]
HARDWARE_KEYS = ["peak_flops_per_chip", "memory_bytes_per_chip", "memory_shared_by_host", "chips_per_host",
                 "default_mfu", "source"]
RUN_KEYS = ["name", "hash", "short_hash", "parent_name", "parent_hash", "status", "location", "accelerator", "chips",
            "mesh", "steps", "tokens", "sequences_per_step", "sequence_length", "parameters", "flops",
            "memory_per_chip", "mfu", "chip_hours", "wall_hours"]
NESTED_KEYS = {
    "mesh": ["data", "fsdp", "tensor"],
    "parameters": ["total", "non_embedding", "embedding", "output"],
    "flops": ["per_token", "dense_per_token", "attention_per_token", "output_per_token", "total"],
    "memory_per_chip": ["params", "grads", "optimizer", "activations", "loss", "gather", "total", "capacity",
                        "fraction", "remat", "cross_entropy", "attention"],
}
TOTALS_KEYS = ["runs", "to_build", "built", "tokens", "flops", "chip_hours", "wall_hours", "critical_path_hours"]


def test_dry_run_table_of_the_tiny_specs():
    result = run_cli("compile", "specs/tiny", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    rows = [line for line in out.splitlines() if "tiny-" in line and "│" in line]
    names = [re.search(r"(tiny-[a-z0-9-]+)", row).group(1) for row in rows]
    assert names.index("tiny-code") < names.index("tiny-code-text") < names.index("tiny-cooldown")
    code_row = next(row for row in rows if " tiny-code " in row)
    assert "61.4K" in code_row and "393K" in code_row and "131K" in code_row and "1.51e+11" in code_row
    assert "to build" in code_row
    assert "total: 6 to build" in out
    assert "MFU assumed" in out and "cpu: 0.05 TFLOP/s peak per chip, 24 GiB per host" in out and "Source:" in out
    assert "nothing was written" in out


def snapshot(*roots: pathlib.Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for root in roots for p in [root, *root.rglob("*")]}


def test_dry_run_writes_nothing(tmp_path):
    specs, cwd, home, tmp = (tmp_path / name for name in ("specs", "cwd", "home", "tmp"))
    shutil.copytree(REPO / "specs" / "tiny", specs)
    for folder in (cwd, home, tmp):
        folder.mkdir()
    before = snapshot(tmp_path)
    for flags in (["--dry-run"], ["--dry-run", "--json"], ["--json"]):
        result = run_cli("compile", str(specs), *flags, cwd=cwd,
                         env={"HOME": str(home), "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(home / ".cache")})
        assert result.returncode == 0, result.stderr
    assert snapshot(tmp_path) == before


def test_a_run_that_does_not_fit_exits_2_naming_it_and_the_numbers(write_spec):
    result = run_cli("compile", write_spec(big_run()), "--dry-run")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "'too-big' needs" in result.stderr
    assert re.search(r"needs [0-9.]+ [GT]B per chip but one tpu-v5e chip has 16 GB", result.stderr)
    assert "model.remat: full would need" in result.stderr
    assert result.stdout == ""


def test_a_batch_the_mesh_cannot_split_exits_2(write_spec):
    text = MINIMAL_RUN.replace("sequences: 8,", "sequences: 6,") + "    mesh: {accelerator: cpu, chips: 4, axes: {data: 4}}\n"
    result = run_cli("compile", write_spec(text), "--dry-run")
    assert result.returncode == 2
    assert "6 sequences do not split over data × fsdp = 4 ways" in result.stderr


def test_mfu_override_is_used_and_printed():
    result = run_cli("compile", "specs/tiny", "--dry-run", "--mfu", "0.6")
    assert result.returncode == 0, result.stderr
    assert "MFU assumed: 0.6 for every run" in result.stdout
    assert run_cli("compile", "specs/tiny", "--mfu", "1.5").returncode == 2


def test_json_keys_are_stable_and_documented():
    result = run_cli("compile", "specs/tiny", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data) == TOP_KEYS
    assert list(data["hardware"]) == ["cpu"] and list(data["hardware"]["cpu"]) == HARDWARE_KEYS
    assert list(data["totals"]) == TOTALS_KEYS
    for run in data["runs"]:
        assert list(run) == RUN_KEYS
        for key, keys in NESTED_KEYS.items():
            assert list(run[key]) == keys
    documented = set(re.findall(r"^\| `([a-z_.]+)`", PLAN_JSON_DOC.read_text(), re.MULTILINE))
    expected = set(TOP_KEYS) | set(HARDWARE_KEYS) | set(TOTALS_KEYS) | set(RUN_KEYS) - set(NESTED_KEYS)
    expected |= {f"{key}.{sub}" for key, subs in NESTED_KEYS.items() if key != "mesh" for sub in subs} | {"mesh"}
    assert expected <= documented, expected - documented
    first = data["runs"][0]
    assert first["name"] == "tiny-code" and first["flops"]["total"] == 150_994_944_000
    assert data["totals"]["runs"] == 6 and data["mfu_override"] is None


def test_compile_never_imports_jax():
    code = (
        "import sys\n"
        "from compiler.cli import main\n"
        "assert main(['compile', 'specs/tiny', '--dry-run']) == 0\n"
        "assert main(['compile', 'specs/tiny', '--json']) == 0\n"
        "loaded = sorted(m for m in sys.modules if m == 'jax' or m.startswith(('jax.', 'jaxlib', 'flax', 'optax')))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-2000:]
