"""`compile --dry-run` shows the AOT fit check `compile --aot` recorded, through the real CLI, without jax."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.cli.test_compile_aot import TPU_RUN
from tests.conftest import MINIMAL_RUN, REPO, run_cli
from tests.lockfixture import lock, with_file_inputs, write_data

NOT_CHECKED = "not checked: run `runix compile --aot`"


def _checks(result) -> dict[str, dict]:
    assert result.returncode == 0, result.stderr[-3000:]
    return {run["name"]: run["price"]["aot_check"] for run in json.loads(result.stdout)["runs"]}


def test_dry_run_says_not_checked_then_what_xla_said_and_forgets_it_when_the_toolchain_changes(tmp_path):
    path = tmp_path / "specs" / "runs.yaml"
    path.parent.mkdir()
    path.write_text(with_file_inputs(MINIMAL_RUN, write_data(tmp_path / "data")) + TPU_RUN)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    lock([path.parent])

    before = _checks(run_cli("compile", path.parent, "--dry-run", "--json", cwd=tmp_path))
    assert before["small-tpu"] == {"status": "not checked", "detail": NOT_CHECKED, "topology": None,
                                   "peak_bytes_per_chip": None, "hbm_bytes_per_chip": None, "program_key": None}
    assert before["base"]["status"] == "unavailable" and "compiled by the trainer" in before["base"]["detail"]
    table = run_cli("compile", path.parent, "--dry-run", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert f"{NOT_CHECKED}: small-tpu, small-tpu-longer" in table.stdout
    assert not (tmp_path / ".runix").exists()  # the dry run wrote nothing

    compiled = run_cli("compile", path.parent, "--aot", "--json", cwd=tmp_path, timeout=600)
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    aot = {run["name"]: run["aot"] for run in json.loads(compiled.stdout)["runs"]}["small-tpu"]
    assert len(list((tmp_path / ".runix" / "aot-index").glob("*.json"))) == 1  # one step shape, one record

    after = _checks(run_cli("compile", path.parent, "--dry-run", "--json", cwd=tmp_path))
    check = after["small-tpu"]
    assert check["status"] == "fits" and check["topology"] == "v5e:2x2" and check["program_key"] == aot["key"]
    assert check["peak_bytes_per_chip"] == aot["peak_bytes_per_chip"] > 0
    assert check["hbm_bytes_per_chip"] == aot["hbm_bytes_per_chip"] == 16 * 10**9
    assert check["detail"].startswith("fits: XLA's peak") and "v5e:2x2" in check["detail"]
    assert after["small-tpu-longer"] == check  # same step shape, other length: the same verdict
    assert after["base"] == before["base"]
    table = run_cli("compile", path.parent, "--dry-run", cwd=tmp_path)
    row = next(line for line in table.stdout.splitlines() if "│ small-tpu " in line)
    assert f"fits {aot['peak_bytes_per_chip'] / 16e9:.0%}" in row

    # Other libtpu flags may compile another program: the record is not trusted, and the row says why.
    flagged = _checks(run_cli("compile", path.parent, "--dry-run", "--json", cwd=tmp_path,
                              env={"LIBTPU_INIT_ARGS": "--xla_tpu_enable_latency_hiding_scheduler=false"}))
    assert flagged["small-tpu"]["status"] == "not checked"
    assert "LIBTPU_INIT_ARGS" in flagged["small-tpu"]["detail"]
    assert flagged["small-tpu"]["detail"].endswith("run `runix compile --aot`")

    # Reading the index keeps the dry run free of jax.
    code = ("import sys\nfrom compiler.cli import main\n"
            f"assert main(['compile', {str(path.parent)!r}, '--dry-run', '--json']) == 0\n"
            "loaded = sorted(m for m in sys.modules if m == 'jax' or m.startswith(('jax.', 'jaxlib', 'flax', 'optax')))\n"
            "assert not loaded, loaded\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
