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
from tests.lockfixture import TINY_LOCK, lock, lock_like, with_file_inputs, write_data

PLAN_JSON_DOC = REPO / "compiler" / "PLAN_JSON.md"

TOP_KEYS = ["format", "mfu_override", "hardware", "runs", "totals"]
HARDWARE_KEYS = ["peak_flops_per_chip", "memory_bytes_per_chip", "memory_shared_by_host", "chips_per_host",
                 "default_mfu", "source", "hbm_bytes_per_s_per_chip"]
RUN_KEYS = ["name", "hash", "short_hash", "parent_name", "parent_hash", "status", "location", "accelerator", "chips",
            "mesh", "steps", "tokens", "sequences_per_step", "sequence_length", "parameters", "flops",
            "memory_per_chip", "mfu", "chip_hours", "wall_hours", "price", "overheads", "checkpoint_saves", "evals",
            "overhead_chip_hours", "total_chip_hours", "unresolved_inputs"]
NESTED_KEYS = {
    "mesh": ["data", "fsdp", "tensor"],
    "parameters": ["total", "non_embedding", "embedding", "output"],
    "flops": ["per_token", "dense_per_token", "attention_per_token", "output_per_token", "total"],
    "memory_per_chip": ["params", "grads", "optimizer", "gather", "activations", "loss", "backward", "total", "capacity",
                        "fraction", "remat", "cross_entropy", "attention"],
    "price": ["source", "detail", "built_runs", "seconds_per_step", "aot_check"],
    "overheads": ["compile", "startup", "checkpoints", "other", "evals"],
    "evals": ["to_build", "built", "forward_tokens", "checkpoint_loads"],
}
def compile_repo_specs(*args, tmp_path):
    """`runix compile` on the repository's spec sets against an empty store, so a
    developer's own .runix/store (e.g. after `make demo`) cannot change what is built."""
    return run_cli("compile", *args, "--store", str(tmp_path / "empty-store"))


AOT_CHECK_KEYS = ["status", "detail", "topology", "peak_bytes_per_chip", "hbm_bytes_per_chip", "program_key"]
TOTALS_KEYS = ["runs", "to_build", "built", "tokens", "flops", "chip_hours", "wall_hours", "critical_path_hours",
               "unresolved", "overhead_chip_hours", "total_chip_hours", "eval_chip_hours"]


def test_dry_run_table_of_the_tiny_specs(tmp_path):
    result = compile_repo_specs("specs/tiny", "--dry-run", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    rows = [line for line in out.splitlines() if "tiny-" in line and "│" in line]
    names = [re.search(r"(tiny-[a-z0-9-]+)", row).group(1) for row in rows]
    assert names.index("tiny-code") < names.index("tiny-code-text") < names.index("tiny-cooldown")
    code_row = next(row for row in rows if " tiny-code " in row)
    assert "61.4K" in code_row and "393K" in code_row and "131K" in code_row and "1.51e+11" in code_row
    assert "to build" in code_row
    assert "total: 6 to build" in out
    assert "price: where each run's step time comes from" in out and "Source:" in out
    assert "cpu: 0.05 TFLOP/s peak and 20 GB/s memory bandwidth per chip, 24 GiB per host" in out
    assert "model: step-time model: tpu constants (fitted on 7 tpu-v5p points) moved to cpu" in out  # nothing built
    assert re.search(r"│ model +│", code_row) and "+overhead" in out and "checkpoints: " in out
    assert "nothing was written" in out
    assert "every input of every run is locked" in out and "unresolved" not in out
    assert "lock: lockfiles/tiny.lock.json; store: " in out


def test_hashes_are_runix_hash_s(tmp_path):
    hashes = run_cli("hash", "specs/tiny")
    assert hashes.returncode == 0, hashes.stderr
    expected = dict(reversed(line.split("  ")) for line in hashes.stdout.splitlines())
    result = compile_repo_specs("specs/tiny", "--json", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {run["name"]: run["hash"] for run in json.loads(result.stdout)["runs"]} == expected
    table = compile_repo_specs("specs/tiny", "--dry-run", tmp_path=tmp_path).stdout
    for name, run_hash in expected.items():
        assert re.search(rf"{run_hash[:12]} │ {name} ", table), name


def test_a_missing_lock_or_input_exits_2_and_says_how_to_lock(tmp_path):
    specs = tmp_path / "specs"
    shutil.copytree(REPO / "specs" / "tiny", specs)
    (tmp_path / "pyproject.toml").write_text("")  # a project without lockfiles
    for flags in (["--dry-run"], ["--json"]):
        result = run_cli("compile", "specs", *flags, cwd=tmp_path)
        assert result.returncode == 2 and result.stdout == ""
        assert "no lockfile" in result.stderr and "`runix lock specs`" in result.stderr
        assert "Traceback" not in result.stderr
    # --lockfile: a lockfile holding every input of the runs (the copy's own lockfile does not exist yet)
    assert run_cli("compile", "specs", "--dry-run", "--lockfile", TINY_LOCK, cwd=tmp_path).returncode == 0
    lock_like([specs])
    assert run_cli("compile", "specs", "--dry-run", cwd=tmp_path).returncode == 0
    chain = specs / "chain.yaml"
    chain.write_text(chain.read_text().replace("peak: 3e-3}", "peak: 4e-3}", 1))
    assert run_cli("compile", "specs", "--dry-run", cwd=tmp_path).returncode == 0  # not an input: no relock
    chain.write_text(chain.read_text().replace('{uri: "builtin://markup", role: markup, share', '{uri: "builtin://elsewhere", role: markup, share', 1))
    result = run_cli("compile", "specs", "--dry-run", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "source markup builtin://elsewhere is not in" in result.stderr
    assert "add it with `runix lock specs`" in result.stderr
    result = run_cli("compile", "specs", "--dry-run", "--lockfile", TINY_LOCK, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "the lockfile belongs to another spec set (specs/tiny)" in result.stderr


def snapshot(*roots: pathlib.Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for root in roots for p in [root, *root.rglob("*")]}


def test_dry_run_writes_nothing(tmp_path):
    """Not the plan, not a lockfile, not the (default or given) store folder, not a cache."""
    specs, cwd, home, tmp = (tmp_path / name for name in ("specs", "cwd", "home", "tmp"))
    shutil.copytree(REPO / "specs" / "tiny", specs)
    (tmp_path / "lockfiles").mkdir()  # tmp_path is a project; its lock of the copy is found by content
    shutil.copy(TINY_LOCK, tmp_path / "lockfiles" / "tiny.lock.json")
    for folder in (cwd, home, tmp):
        folder.mkdir()
    before = snapshot(tmp_path)
    for flags in (["--dry-run"], ["--dry-run", "--json"], ["--json"], ["--dry-run", "--store", tmp_path / "no-store"]):
        result = run_cli("compile", str(specs), *flags, cwd=cwd,
                         env={"HOME": str(home), "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(home / ".cache")})
        assert result.returncode == 0, result.stderr
    assert snapshot(tmp_path) == before
    assert f"store: {tmp_path / 'no-store'} (0 of these runs built)" in result.stdout
    assert not (tmp_path / ".runix").exists() and not (tmp_path / "no-store").exists()


def build(store_url: str, locked, name: str) -> None:
    """Put the run `name` of a locked spec set into the store as built (an empty training, same markers)."""
    from compiler.store import Store

    store = Store(store_url)
    run = locked.spec_set.by_name()[name]
    store.begin_build(run, locked.lock.entries_for(run))
    store.finish_build(run.hash)


def test_runs_built_in_the_store_cost_nothing_and_the_store_is_only_read(tmp_path):
    from compiler.lock import load_locked_spec_set

    project = tmp_path / "project"
    specs = project / "specs"
    shutil.copytree(REPO / "specs" / "tiny", specs)
    lock_like([specs])
    locked = load_locked_spec_set([specs])
    store = project / ".runix" / "store"  # the project's default store
    build(str(store), locked, "tiny-code")
    before = snapshot(store)
    full = json.loads(run_cli("compile", "specs", "--json", "--store", tmp_path / "empty", cwd=project).stdout)
    result = run_cli("compile", "specs", "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    status = {run["name"]: run["status"] for run in data["runs"]}
    assert status == {**{name: "to build" for name in status}, "tiny-code": "built"}
    code = next(run for run in data["runs"] if run["name"] == "tiny-code")
    assert data["totals"]["built"] == 1 and data["totals"]["to_build"] == 5
    assert data["totals"]["chip_hours"] == pytest.approx(full["totals"]["chip_hours"] - code["chip_hours"])
    assert full["totals"]["built"] == 0
    table = run_cli("compile", specs, "--dry-run", "--store", store, cwd=tmp_path).stdout
    assert re.search(r"tiny-code +│.*│ built +│", table)
    assert "total: 5 to build" in table and "1 built" in table
    assert f"store: {store} (1 of these runs built)" in table
    assert snapshot(store) == before


def test_runs_with_unresolved_inputs_are_priced_and_marked(tmp_path):
    """A run reading only local data can launch here; one also reading a gs:// bucket cannot."""
    data = write_data(tmp_path / "data")
    text = with_file_inputs(MINIMAL_RUN, data) + """\
  - name: with-web
    extends: base
    data:
      sources:
        code: {share: 0.5}
        web: {uri: "gs://runix-test-bucket/web", role: text, share: 0.5, declared_tokens: 1B}
"""
    path = tmp_path / "specs" / "runs.yaml"
    path.parent.mkdir()
    path.write_text(text)
    lock([path.parent])
    result = run_cli("compile", path.parent, "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"│ base +│.*│ - +│ to build │", out)
    assert re.search(r"│ with-web +│.*│ 1 +│ to build │", out)
    assert "total: 2 to build" in out and "│ 1 runs " in out
    assert "unresolved: 1 runs to build read inputs that are not resolved here" in out
    assert "  1  source gs://runix-test-bucket/web: " in out and "--offline" in out and "read by 1 run\n" in out
    assert "`runix launch` refuses them" in out
    data = json.loads(run_cli("compile", path.parent, "--json", cwd=tmp_path).stdout)
    by_name = {run["name"]: run for run in data["runs"]}
    assert by_name["base"]["unresolved_inputs"] == []
    (web,) = by_name["with-web"]["unresolved_inputs"]
    assert web["input"] == "source web" and web["uri"] == "gs://runix-test-bucket/web" and "--offline" in web["reason"]
    assert by_name["with-web"]["chip_hours"] > 0 and data["totals"]["unresolved"] == 1


def test_the_real_scale_recipe_is_priced_with_its_unresolved_inputs(tmp_path):
    result = compile_repo_specs("specs/to_code", "--dry-run", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "total: 64 to build" in out and "│ 64 runs " in out
    assert "unresolved: 64 runs to build read inputs that are not resolved here" in out
    assert re.search(r"  \d+  tokenizer hf://CohereForAI/c4ai-command-r-v01/tokenizer.json: .*; read by 64 runs", out)
    assert "lock: lockfiles/to_code.lock.json" in out


def test_a_run_that_does_not_fit_exits_2_naming_it_and_the_numbers(write_spec, tmp_path):
    path = write_spec(with_file_inputs(big_run(), write_data(tmp_path / "data")))
    lock([path])
    result = run_cli("compile", path, "--dry-run")
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


def test_mfu_override_is_used_and_printed(tmp_path):
    result = compile_repo_specs("specs/tiny", "--dry-run", "--mfu", "0.6", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(--mfu 0.6 for every run)" in result.stdout and "│ 0.60 │ --mfu " in result.stdout
    assert run_cli("compile", "specs/tiny", "--mfu", "1.5").returncode == 2


def test_json_keys_are_stable_and_documented(tmp_path):
    result = compile_repo_specs("specs/tiny", "--json", tmp_path=tmp_path)
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
    expected |= {f"price.aot_check.{key}" for key in AOT_CHECK_KEYS}
    assert expected <= documented, expected - documented
    first = data["runs"][0]
    assert first["name"] == "tiny-code" and first["flops"]["total"] == 150_994_944_000
    for name, overhead in first["overheads"].items():
        assert list(overhead) == ["seconds", "chip_hours", "source"], name
    assert first["total_chip_hours"] == pytest.approx(first["chip_hours"] + first["overhead_chip_hours"])
    assert first["checkpoint_saves"] == 3  # 60 steps, every 20
    assert first["price"]["source"] == "model" and first["price"]["built_runs"] == 0
    assert list(first["price"]["aot_check"]) == AOT_CHECK_KEYS and first["price"]["aot_check"]["status"] == "unavailable"
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
