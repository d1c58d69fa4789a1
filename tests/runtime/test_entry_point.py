"""`python -m runtime` in fresh processes: exit codes, and the three determinism promises.

1. The same run in two processes gives identical digest records.
2. kill -9 at an arbitrary step, then resume: the final digest equals the uninterrupted run's.
3. One process with 4 (faked) devices and two processes with 2 each, on the same mesh: identical
   (the fixed-order gradient reduction; see runtime/DETERMINISM.md).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess

import pytest

from tests.runtime.runs import (
    REPO, _clean_env, digest_json, hash_of, kill_at_step, run_trainer, start_trainer, tiny_spec, trainer_command,
    write_run_dir,
)

SPEC = tiny_spec("proc", steps=16, checkpoint={"every": 5, "keep": 1, "digest_every": 3})


def assert_clean_failure(result: subprocess.CompletedProcess, code: int, message: str) -> None:
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr + result.stdout


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference")
    write_run_dir(run_dir, SPEC)
    result = run_trainer(run_dir)
    assert result.returncode == 0, result.stderr
    return run_dir


def test_same_run_in_two_processes_is_identical(reference, tmp_path):
    write_run_dir(tmp_path, SPEC)
    assert run_trainer(tmp_path).returncode == 0
    assert (tmp_path / "digest.json").read_bytes() == (reference / "digest.json").read_bytes()
    record = digest_json(reference)
    assert record["complete"] and len(record["losses"]) == 16 and sorted(map(int, record["params_sha256"])) == [3, 6, 9, 12, 15]


def test_kill_9_then_resume_equals_uninterrupted(reference, tmp_path):
    write_run_dir(tmp_path, SPEC)
    process = start_trainer(tmp_path)
    killed_after = kill_at_step(process, tmp_path / "metrics.jsonl", step=7)
    assert process.returncode == -9 and killed_after < 15
    resumed = run_trainer(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert digest_json(tmp_path) == digest_json(reference)
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(16))
    sessions = json.loads((tmp_path / "run.json").read_text())["sessions"]
    assert [s["resumed_from_step"] for s in sessions] == [None, 5]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("axes", [{"data": 2, "fsdp": 2}])
def test_one_process_and_two_processes_agree(tmp_path, axes):
    spec = tiny_spec("mesh", steps=6, mesh={"accelerator": "cpu", "chips": 4, "axes": axes},
                     checkpoint={"every": 3, "keep": 1, "digest_every": 2})
    one, two = tmp_path / "one", tmp_path / "two"
    write_run_dir(one, spec)
    write_run_dir(two, spec)
    single = run_trainer(one, timeout=180)  # first, alone: three trainers on two cores slow each other down
    assert single.returncode == 0, single.stderr
    port = free_port()
    processes = [
        subprocess.Popen(trainer_command(two, "--num-processes", "2", "--process-id", str(i),
                                         "--coordinator-address", f"127.0.0.1:{port}"),
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_clean_env())
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=180) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err for _, err in outputs]
    assert digest_json(one) == digest_json(two)
    layouts = [json.loads((d / "run.json").read_text())["sessions"][0] for d in (one, two)]
    assert [layout["num_processes"] for layout in layouts] == [1, 2]
    assert layouts[1]["mesh"]["process_of_device"] == [0, 0, 1, 1]
    assert layouts[0]["numerics"]["bits"] == layouts[1]["numerics"]["bits"]


def test_bad_input_exits_2_without_traceback(tmp_path):
    assert_clean_failure(run_trainer(tmp_path / "missing"), 2, "no spec.json")
    (tmp_path / "spec.json").write_text("{not json")
    assert_clean_failure(run_trainer(tmp_path), 2, "not valid JSON")
    document = {"hash": hash_of(SPEC), "name": "proc", "parent_hash": None, "spec": SPEC.model_dump(mode="json")}
    document["spec"]["model"]["d_modle"] = 3
    (tmp_path / "spec.json").write_text(json.dumps(document))
    assert_clean_failure(run_trainer(tmp_path), 2, "spec.model.d_modle")
    document = {"hash": "abc", "name": "proc", "parent_hash": None, "spec": SPEC.model_dump(mode="json")}
    (tmp_path / "spec.json").write_text(json.dumps(document))
    assert_clean_failure(run_trainer(tmp_path), 2, "64 lowercase hex")
    assert_clean_failure(run_trainer(tmp_path, "--num-processes", "2"), 2, "--coordinator-address")
    assert_clean_failure(run_trainer(tmp_path, "--process-id", "3"), 2, "--process-id")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.json"]  # nothing written


def test_tampered_parent_exits_2_and_writes_nothing(reference, tmp_path):
    tampered = tmp_path / "parent"
    tampered.mkdir()
    (tampered / "spec.json").symlink_to(reference / "spec.json")
    shutil.copytree(reference / "checkpoints", tampered / "checkpoints")
    record = digest_json(reference)
    record["final_params_sha256"] = "f" * 64
    (tampered / "digest.json").write_text(json.dumps(record))
    child = tiny_spec("child", steps=4, init={"kind": "parent", "run": "proc", "optimizer_state": "carry"})
    child_dir = tmp_path / "child"
    write_run_dir(child_dir, child, hash_of(SPEC))
    assert_clean_failure(run_trainer(child_dir, "--parent-dir", str(tampered)), 2, "sha256")
    assert_clean_failure(run_trainer(child_dir), 2, "--parent-dir")
    assert sorted(p.name for p in child_dir.iterdir()) == ["spec.json"]
    # The genuine parent works.
    assert run_trainer(child_dir, "--parent-dir", str(reference)).returncode == 0
    assert digest_json(child_dir)["complete"]
