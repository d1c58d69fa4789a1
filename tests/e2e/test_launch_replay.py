"""End to end through the real CLI: launch, relaunch, replay, tamper, kill and resume.

CI-sized: the tiny initialization chain (3 runs, 120 steps in all) on the
built-in corpora, in a temporary store. The spec file is a copy of
specs/tiny/chain.yaml, locked here into a temporary lockfile: the lock holds
this machine's numerics facts, which a launch checks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

DATA_ROOT = REPO / ".runix" / "data"
CHAIN = ("tiny-code", "tiny-code-text", "tiny-cooldown")


def lockfile_of(spec: Path) -> Path:
    return spec.with_suffix(".lock.json")


def runix(*args, timeout=600):
    """The CLI with this module's data root, and the spec's own lockfile for commands that read one."""
    extra = []
    if args[0] in ("launch", "replay", "lock"):
        extra += ["--data-root", str(DATA_ROOT)]
    if args[0] in ("launch", "lock", "hash"):
        extra += ["--lockfile", str(lockfile_of(Path(args[1])))]
    return run_cli(*args, *extra, timeout=timeout)


@pytest.fixture(scope="module")
def chain_spec(tmp_path_factory) -> Path:
    spec = tmp_path_factory.mktemp("chain") / "chain.yaml"
    shutil.copy(REPO / "specs" / "tiny" / "chain.yaml", spec)
    result = runix("lock", str(spec))
    assert result.returncode == 0, result.stdout + result.stderr
    return spec


@pytest.fixture(scope="module")
def hashes(chain_spec) -> dict[str, str]:
    result = runix("hash", str(chain_spec))
    assert result.returncode == 0, result.stderr
    return {name: digest for digest, name in (line.split("  ") for line in result.stdout.splitlines())}


@pytest.fixture(scope="module")
def built_store(tmp_path_factory, chain_spec) -> Path:
    store = tmp_path_factory.mktemp("store")
    result = runix("launch", str(chain_spec), "--store", str(store))
    assert result.returncode == 0, result.stdout + result.stderr
    return store


def entry(store: Path, run_hash: str) -> Path:
    [found] = [p for p in store.iterdir() if p.name.startswith(run_hash)]
    return found


def final_params(store: Path, run_hash: str) -> str:
    return json.loads((entry(store, run_hash) / "digest.json").read_text())["final_params_sha256"]


def test_launch_builds_the_chain_parents_first(built_store, hashes):
    for name in CHAIN:
        assert (entry(built_store, hashes[name]) / "COMPLETE.json").is_file()
    record = json.loads((entry(built_store, hashes["tiny-cooldown"]) / "digest.json").read_text())
    assert record["complete"] and len(record["losses"]) == 20
    spec = json.loads((entry(built_store, hashes["tiny-cooldown"]) / "spec.json").read_text())
    assert spec["parent_hash"] == hashes["tiny-code-text"]


def test_built_runs_record_their_cost_and_the_dry_run_prices_from_it(built_store, chain_spec, hashes):
    """timing.json in every entry (in its manifest), and `compile` prices the chain's shape from those records."""
    for name in CHAIN:
        folder = entry(built_store, hashes[name])
        record = json.loads((folder / "timing.json").read_text())
        assert record["steps"] == len(json.loads((folder / "digest.json").read_text())["losses"])
        assert 0 < record["step_seconds_median"] and record["compile_seconds"] > 0
        assert record["chip_hours"] == record["wall_seconds"] / 3600 > 0  # one cpu device
        assert "timing.json" in json.loads((folder / "manifest.json").read_text())["files"]
    result = runix("compile", str(chain_spec), "--json", "--store", str(built_store))
    assert result.returncode == 0, result.stderr
    for run in json.loads(result.stdout)["runs"]:
        assert run["price"]["source"] == "measured" and run["price"]["built_runs"] == 3, run["name"]
        assert run["overheads"]["compile"]["source"] == "measured on 3 built runs of this shape"
    table = runix("compile", str(chain_spec), "--dry-run", "--store", str(built_store)).stdout
    assert "measured×3: median step time of 3 built runs of this shape on cpu" in table


def test_relaunch_trains_nothing(built_store, chain_spec):
    before = {p: p.stat().st_mtime_ns for p in built_store.rglob("digest.json")}
    result = runix("launch", str(chain_spec), "--store", str(built_store))
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout and result.stdout.count("cache hit") == 3
    assert {p: p.stat().st_mtime_ns for p in built_store.rglob("digest.json")} == before


def test_replay_is_bit_exact(built_store, hashes):
    result = runix("replay", hashes["tiny-cooldown"], "--store", str(built_store), "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bit-exact" in result.stdout
    result = runix("replay", hashes["tiny-code"][:10], "--store", str(built_store), "--steps", "30:50", "--no-progress")
    assert result.returncode == 0 and "bit-exact" in result.stdout and "from checkpoint 20" in result.stdout


def test_a_tampered_checkpoint_fails_replay_and_verify(built_store, hashes, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(built_store, store)
    target = sorted((entry(store, hashes["tiny-code"]) / "checkpoints").rglob("*"))
    victim = next(p for p in target if p.is_file() and p.stat().st_size > 64)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    rel = str(victim.relative_to(entry(store, hashes["tiny-code"])))

    replay = runix("replay", hashes["tiny-code"], "--store", str(store))
    assert replay.returncode == 2 and rel in replay.stderr and "Traceback" not in replay.stderr
    verify = run_cli("store", "verify", hashes["tiny-code"], "--store", str(store))
    assert verify.returncode == 1 and rel in verify.stdout + verify.stderr


def _kill_everything_using(store: Path) -> None:
    """SIGKILL the launcher and every build job it started (they run in sessions of their own)."""
    needle = str(store).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def test_killed_launch_resumes_to_the_same_bits(built_store, chain_spec, hashes, tmp_path):
    store = tmp_path / "killed-store"
    runix_bin = Path(sys.executable).with_name("runix")
    launcher = subprocess.Popen(
        [str(runix_bin), "launch", str(chain_spec), "--store", str(store), "--data-root", str(DATA_ROOT),
         "--lockfile", str(lockfile_of(chain_spec))],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    checkpoint = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and checkpoint is None:
        found = list((store / ".building").glob(f"{hashes['tiny-code']}-*/checkpoints/20")) if store.exists() else []
        checkpoint = found[0] if found else None
        time.sleep(0.2)
    assert checkpoint is not None, "the first checkpoint never appeared"
    time.sleep(1.0)  # let training run past the checkpoint, so work is really lost
    _kill_everything_using(store)
    launcher.wait(timeout=30)
    assert not (store / f"{hashes['tiny-code']}-tiny-code").exists()

    result = runix("launch", str(chain_spec), "--store", str(store))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resuming tiny-code" in result.stdout
    for name in CHAIN:  # the interrupted build ends in exactly the bits of the uninterrupted one
        assert final_params(store, hashes[name]) == final_params(built_store, hashes[name])
    replay = runix("replay", hashes["tiny-code"], "--store", str(store), "--no-progress")
    assert replay.returncode == 0 and "bit-exact" in replay.stdout


def test_a_failing_run_skips_its_descendants_and_is_named(tmp_path, chain_spec):
    store = tmp_path / "store"
    broken_root = tmp_path / "no-data"  # an empty data root without the Debian packages: preparing fails
    broken_root.mkdir()
    result = run_cli("launch", str(chain_spec), "--store", str(store), "--data-root", str(broken_root),
                     "--lockfile", str(lockfile_of(chain_spec)), timeout=300)
    assert result.returncode == 1
    assert "tiny-code failed" in result.stdout and "log:" in result.stdout
    assert "tiny-code-text skipped" in result.stdout and "tiny-cooldown skipped" in result.stdout
