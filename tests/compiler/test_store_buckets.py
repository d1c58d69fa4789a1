"""The store on a bucket of real object-store servers on 127.0.0.1, through the clients a user's store uses:
S3 (moto, through s3fs) and GCS (fake-gcs-server, through gcsfs); bad URLs on S3.

Leases (conditional create, heartbeat, takeover after expiry, bounded waits),
object-store publishing (no rename; a loser never overwrites or deletes a
complete entry), checkpoints copied into the store so another machine
resumes, gc that keeps what is needed and says why, and bad store URLs as
one line of bad input.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from compiler.store import Store, StoreError
from compiler.store.layout import COMPLETE_FILE
from compiler.store.leases import ObjectLease
from tests.compiler.test_store import LOCK, RUNS, build
from tests.conftest import REPO, run_cli


def problem_lines(text: str) -> list[str]:
    """The CLI's problem lines (it adds one summary line: "1 problem; nothing was written.")."""
    return [line for line in text.splitlines() if line.startswith("error:")]


def fresh(url: str, tmp_path, tag: str, **options) -> Store:
    """A second machine: its own Store object and its own (empty) staging disk."""
    return Store(url, staging=tmp_path / f"staging-{tag}", **options)


def test_publish_on_a_bucket_writes_every_file_then_the_marker_and_verifies(bucket_store_url, tmp_path):
    store = fresh(bucket_store_url, tmp_path, "a")
    run, started = build(store)
    assert store.is_built(run.hash) and store.verify(run.hash) == []
    entry = store.entry(run.hash)
    marker = json.loads(store.fs.cat_file(f"{entry}/{COMPLETE_FILE}"))
    assert marker["hash"] == run.hash
    assert not started.path.exists()  # the local staging folder goes once published
    other = fresh(bucket_store_url, tmp_path, "b")
    assert other.is_built(run.hash) and other.verify(run.hash) == []
    assert other.begin_build(run, LOCK.entries_for(run)) is None


def test_a_second_builder_waits_a_bounded_time_and_names_the_holder(bucket_store_url, tmp_path):
    run = RUNS["tiny-code"]
    first = fresh(bucket_store_url, tmp_path, "a", lease_ttl=30)
    held = first.begin_build(run, LOCK.entries_for(run))
    assert held is not None
    second = fresh(bucket_store_url, tmp_path, "b", lease_ttl=30)
    assert second.begin_build(run, LOCK.entries_for(run), wait=False) is None
    started = time.monotonic()
    assert second.begin_build(run, LOCK.entries_for(run), timeout=1.0) is None
    assert time.monotonic() - started < 30  # gave up after its bound, not after the holder's lease
    assert f"pid {os.getpid()}" in second.lease_holder(run.hash)
    held.abort()
    again = second.begin_build(run, LOCK.entries_for(run), wait=False)
    assert again is not None  # released: taken at once
    again.abort(discard=True)


HOLDER = textwrap.dedent("""
    import sys, time
    from compiler.store import Store
    from tests.compiler.test_store import LOCK, RUNS
    run = RUNS["tiny-code"]
    store = Store(sys.argv[1], staging=sys.argv[2], lease_ttl=float(sys.argv[3]))
    assert store.begin_build(run, LOCK.entries_for(run)) is not None
    print("held", flush=True)
    time.sleep(600)
""")


def test_a_holder_that_stops_heartbeating_is_taken_over_after_expiry(bucket_store_url, tmp_path, bucket_env):
    """A holder frozen (as a machine that fell off the network would be) loses its lease after the ttl."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, bucket_store_url, str(tmp_path / "holder"), "2"],
                              cwd=REPO, env={**os.environ, **bucket_env}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        run = RUNS["tiny-code"]
        taker = fresh(bucket_store_url, tmp_path, "taker", lease_ttl=2)
        assert taker.begin_build(run, LOCK.entries_for(run), wait=False) is None  # alive and renewing
        os.kill(holder.pid, signal.SIGSTOP)  # frozen: no more heartbeats, not dead either
        started = time.monotonic()
        took = taker.begin_build(run, LOCK.entries_for(run), timeout=30)
        waited = time.monotonic() - started
        assert took is not None and waited < 30
        [(_, (lease, _))] = taker.held.items()
        assert lease.epoch == 2 and lease.still_held()
        took.abort(discard=True)
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # the process this test started, by its id
        holder.wait(timeout=30)


def test_a_stalled_holder_never_publishes_over_or_deletes_the_winners_entry(bucket_store_url, tmp_path):
    run = RUNS["tiny-code"]
    stalled = fresh(bucket_store_url, tmp_path, "stalled", lease_ttl=1)
    late = stalled.begin_build(run, LOCK.entries_for(run))
    (late.path / "digest.json").write_text('{"final_params_sha256": "late"}')
    [(_, (lease, _))] = stalled.held.items()
    lease._stop.set()  # its heartbeat stalls, as a paused VM's would
    time.sleep(1.5)
    winner = fresh(bucket_store_url, tmp_path, "winner", lease_ttl=30)
    taking = winner.begin_build(run, LOCK.entries_for(run), timeout=10)  # takes over after expiry
    assert taking is not None
    with pytest.raises(StoreError, match="took it over"):
        late.finish()  # the stalled holder wakes up: it must not publish next to the new holder
    assert not winner.fs.exists(winner.entry_path(run.hash, run.name))
    (taking.path / "digest.json").write_text('{"final_params_sha256": "winner"}')
    taking.finish()
    assert winner.verify(run.hash) == []
    late = stalled.begin_build(run, LOCK.entries_for(run))
    assert late is None  # built: a late builder finds the entry and leaves it alone
    digest = json.loads(winner.fs.cat_file(f"{winner.entry(run.hash)}/digest.json"))
    assert digest == {"final_params_sha256": "winner"}


def test_checkpoints_in_the_store_let_another_machine_resume(bucket_store_url, tmp_path):
    run = RUNS["tiny-code"]
    first = fresh(bucket_store_url, tmp_path, "a")
    work = first.begin_build(run, LOCK.entries_for(run))
    step = work.path / "checkpoints" / "20"
    (step / "state").mkdir(parents=True)
    (step / "state" / "shard").write_bytes(b"\x00state-at-20")
    (work.path / "checkpoints" / "30.orbax-checkpoint-tmp-1").mkdir()  # orbax still writing: not copied
    (work.path / "metrics.jsonl").write_text('{"step": 19}\n')
    assert work.sync_checkpoints() == [20]
    assert work.sync_checkpoints() == []  # copied once
    work.abort()  # the machine is lost; its disk with it
    second = fresh(bucket_store_url, tmp_path, "b")
    resumed = second.begin_build(run, LOCK.entries_for(run))
    assert resumed.resumed
    assert (resumed.path / "checkpoints" / "20" / "state" / "shard").read_bytes() == b"\x00state-at-20"
    assert (resumed.path / "metrics.jsonl").read_text() == '{"step": 19}\n'
    assert not (resumed.path / "checkpoints" / "30.orbax-checkpoint-tmp-1").exists()
    resumed.abort(discard=True)
    assert not second.fs.exists(second.remote_building_path(run.hash, run.name))


def test_gc_keeps_queued_derivations_their_parents_and_live_builds_and_says_why(bucket_store_url, tmp_path):
    store = fresh(bucket_store_url, tmp_path, "a", lease_ttl=30)
    parent, child = RUNS["tiny-code"], RUNS["tiny-code-text"]
    build(store, "tiny-code")
    store.register(child, LOCK.entries_for(child))  # a queued job of another spec set needs it and its parent
    result = store.collect([], dry_run=False)
    why = {entry.hash: reason for entry, reason in result.kept}
    assert result.removed == []
    assert "registered and not built yet" in why[child.hash]
    assert why[parent.hash].startswith("parent of")
    assert store.is_built(parent.hash) and store.derivation(child.hash)[0] == child.name
    building = store.begin_build(child.hash)  # now a builder holds it
    assert building is not None
    result = fresh(bucket_store_url, tmp_path, "b").collect([])
    assert any(entry.hash == child.hash and "being built" in reason for entry, reason in result.kept)
    building.abort(discard=True)


@pytest.mark.parametrize("case", ["missing bucket", "unknown protocol", "unreachable endpoint"])
def test_bad_store_urls_are_one_line_of_bad_input_and_write_nothing(case, s3_env, tmp_path):
    env = dict(s3_env)
    url = "s3://runix-no-such-bucket/store"
    if case == "unknown protocol":
        url = "nosuchfs://bucket/store"
    elif case == "unreachable endpoint":
        from tests.s3server import free_port

        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = run_cli("store", "ls", "--store", url, env=env, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    text = (result.stdout + result.stderr).strip()
    assert "Traceback" not in text and len(problem_lines(text)) == 1, text
    assert time.monotonic() - started < 120
    expected = {"missing bucket": "does not exist", "unknown protocol": "nosuchfs",
                "unreachable endpoint": "cannot reach the store"}[case]
    assert expected in text


def test_open_store_refuses_bad_credentials(tmp_path):
    """moto with authentication on: an unknown access key is refused, as S3 refuses it."""
    from tests.s3server import client_environment, moto_server

    with moto_server(tmp_path, {"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as endpoint:
        env = {**client_environment(endpoint), "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG1"}
        result = run_cli("store", "ls", "--store", "s3://any-bucket/store", env=env, timeout=120)
    text = (result.stdout + result.stderr).strip()
    assert result.returncode == 2 and "Traceback" not in text and len(problem_lines(text)) == 1, text
    assert "refused" in text, text


def test_lease_objects_use_conditional_creates_only_one_taker_wins(bucket_store_url):
    store = Store(bucket_store_url)
    folder = store.join(".locks")
    run_hash = RUNS["tiny-code"].hash
    leases = [ObjectLease(store.fs, folder, run_hash, ttl=30) for _ in range(4)]
    won = [lease.acquire(wait=False) for lease in leases]
    assert won == [True, False, False, False]
    leases[0].release()
    assert leases[1].acquire(wait=False)
    leases[1].release()
