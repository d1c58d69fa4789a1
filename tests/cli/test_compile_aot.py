"""`runix compile PATH --aot`: each distinct step compiled for its TPU slice through the real CLI, cached."""

from __future__ import annotations

import json

from tests.conftest import MINIMAL_RUN, run_cli
from tests.lockfixture import lock, with_file_inputs, write_data

TPU_RUN = """\
  - name: small-tpu
    extends: base
    model: {vocab_size: 1024, d_model: 128, n_layers: 1, n_heads: 2, d_ff: 256, remat: full}
    batch: {sequences: 16, sequence_length: 128}
    dtypes: {params: float32, compute: bfloat16}
    kernels: {attention: pallas_tpu, cross_entropy: chunked, cross_entropy_chunk: 256}
    mesh: {accelerator: tpu-v5e, chips: 4, topology: 2x2, axes: {fsdp: 4}}
  - name: small-tpu-longer
    extends: small-tpu
    steps: 20
"""


def test_aot_reports_xla_memory_and_collectives_and_caches(tmp_path):
    path = tmp_path / "specs" / "runs.yaml"
    path.parent.mkdir()
    path.write_text(with_file_inputs(MINIMAL_RUN, write_data(tmp_path / "data")) + TPU_RUN)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    lock([path.parent])
    result = run_cli("compile", path.parent, "--aot", "--json", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {run["name"]: run for run in json.loads(result.stdout)["runs"]}
    assert runs["base"]["aot"] == {"available": False, "reason": "cpu meshes are compiled by the trainer itself"}
    aot = runs["small-tpu"]["aot"]
    assert aot["available"] and aot["fits"] and aot["topology"] == "v5e:2x2" and not aot["cached"]
    assert 0 < aot["peak_bytes_per_chip"] <= aot["hbm_bytes_per_chip"] == 16 * 10**9
    assert aot["estimate_bytes_per_chip"] == runs["small-tpu"]["memory_per_chip"]["total"]
    assert {"all-gather", "reduce-scatter"} <= {c["kind"] for c in aot["collectives"]}
    assert all(set(c) == {"kind", "count", "bytes_per_chip"} for c in aot["collectives"])
    # Only the step count differs: one program, compiled once.
    assert runs["small-tpu-longer"]["aot"] == aot
    assert sorted(p.name for p in (tmp_path / ".runix" / "aot").iterdir()) == [f"{aot['key']}.hlo.gz",
                                                                                 f"{aot['key']}.json"]

    again = run_cli("compile", path.parent, "--aot", cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "v5e:2x2" in again.stdout and "ahead-of-time compile" in again.stdout
    cached_row = next(line for line in again.stdout.splitlines()
                      if "│" in line and "small-tpu " in line and "v5e:2x2" in line)
    assert cached_row.rstrip(" │").endswith("yes")


def test_aot_and_dry_run_exclude_each_other(tmp_path):
    path = tmp_path / "runs.yaml"
    path.write_text(with_file_inputs(MINIMAL_RUN, write_data(tmp_path / "data")))
    lock([path])
    result = run_cli("compile", path, "--aot", "--dry-run")
    assert result.returncode == 2 and "drop --dry-run" in result.stderr and "Traceback" not in result.stderr
