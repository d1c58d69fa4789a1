"""The build job's own logic: where its process layout comes from, and the parent-waiting job.

(Training through it is covered end to end: tests/e2e/test_launch_replay.py on a local
store, tests/e2e/test_local_slice.py on a bucket with pods from a rendered manifest.)
"""

from __future__ import annotations

import time

import pytest

from runtime import build, wait
from tests.compiler.test_store import RUNS
from tests.compiler.test_store import build as build_entry

HASH = "ab" * 32


def test_the_process_layout_comes_from_the_environment_the_jobset_gives_each_pod():
    environ = {"RUNIX_NUM_PROCESSES": "64", "RUNIX_PROCESS_ID": "17",
               "JAX_COORDINATOR_ADDRESS": "runix-x-slice-0-0.runix-x:8482"}
    args = build.parse_args(["--store", "s3://b/r", "--hash", HASH], environ)
    assert (args.num_processes, args.process_id, args.coordinator_address) == (64, 17, "runix-x-slice-0-0.runix-x:8482")
    alone = build.parse_args(["--store", "s3://b/r", "--hash", HASH], {})
    assert (alone.num_processes, alone.process_id, alone.coordinator_address) == (1, 0, None)
    flags = build.parse_args(["--store", "s3://b/r", "--hash", HASH, "--process-id", "3"], environ)
    assert flags.process_id == 3  # a flag wins over the environment


def test_a_bad_layout_is_bad_input(capsys):
    with pytest.raises(SystemExit) as caught:
        build.parse_args(["--store", "s3://b/r", "--hash", HASH], {"RUNIX_PROCESS_ID": "zero"})
    assert caught.value.code == build.EXIT_BAD_INPUT
    assert build.build("s3://b/r", HASH, None, num_processes=2, process_id=2) == build.EXIT_BAD_INPUT
    assert build.build("s3://b/r", HASH, None, num_processes=2, process_id=1) == build.EXIT_BAD_INPUT  # no coordinator
    err = capsys.readouterr().err
    assert "not in [0, 2)" in err and "needs a coordinator address" in err


def test_every_process_gets_the_layout_only_process_zero_takes_the_lease():
    command = build.trainer_command("/tmp/run", None, None, False, 2, 1, "127.0.0.1:8482")
    assert command[-6:] == ["--num-processes", "2", "--process-id", "1", "--coordinator-address", "127.0.0.1:8482"]
    assert "--num-processes" not in build.trainer_command("/tmp/run", None, None, False)


def test_wait_returns_once_the_parent_is_built_and_gives_up_after_its_bound(tmp_path, capsys):
    from compiler.store import Store

    store = Store(str(tmp_path / "store"))
    run = RUNS["tiny-code"]
    started = time.monotonic()
    assert wait.wait(store.url, run.hash, timeout=0.3, poll=0.1) == wait.EXIT_FAILED
    assert time.monotonic() - started < 30
    assert "still not built" in capsys.readouterr().err
    build_entry(store, "tiny-code")
    assert wait.wait(store.url, run.hash, timeout=5, poll=0.1) == wait.EXIT_OK
    assert wait.wait("nosuchfs://x/y", run.hash, timeout=5, poll=0.1) == wait.EXIT_BAD_INPUT
