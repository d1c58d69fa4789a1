"""timing.json: one session, a resumed build's sessions merged, and a redone session replacing the cut-off one."""

from __future__ import annotations

import json

import pytest

from runtime import timing

FACTS = dict(accelerator="cpu", chips=2, tokens_per_step=1024, total_steps=40)


def clock(first_step: int, steps: list[float], saves: list[float], started=100.0, compile_seconds=1.5):
    c = timing.SessionClock(started=started, first_step=first_step, loop_started=started + 4.0,
                            compile_seconds=compile_seconds)
    c.step_seconds, c.checkpoint_seconds = list(steps), list(saves)
    return c


def test_one_session_excludes_compile_and_the_first_step(tmp_path):
    path = tmp_path / timing.FILE
    record = timing.write(path, clock(0, [9.0, 0.1, 0.3, 0.2], [0.5]), 120.0, 4, **FACTS)
    assert json.loads(path.read_text()) == record
    assert record["format"] == timing.FORMAT and record["step_seconds_median"] == 0.2 and record["steps_timed"] == 3
    assert record["compile_seconds"] == 1.5 and record["startup_seconds"] == pytest.approx(2.5)
    assert record["checkpoint_seconds"] == 0.5 and record["checkpoint_saves"] == 1
    assert record["wall_seconds"] == 20.0 and record["chip_hours"] == pytest.approx(20.0 * 2 / 3600)


def test_a_resumed_build_adds_its_session_and_a_redone_one_replaces_it(tmp_path):
    path = tmp_path / timing.FILE
    timing.write(path, clock(0, [5.0] + [0.2] * 19, [0.5, 0.5]), 110.0, 20, **FACTS)
    timing.write(path, clock(20, [5.0] + [0.4] * 5, []), 105.0, 26, **FACTS)  # killed at step 26, no save
    record = timing.write(path, clock(20, [5.0] + [0.4] * 19, [0.7, 0.7]), 112.0, 40, **FACTS)  # resumed from 20 again
    assert [s["first_step"] for s in record["sessions"]] == [0, 20]
    assert record["steps_timed"] == 19 + 19
    assert record["step_seconds_median"] in (0.2, 0.4)
    assert record["checkpoint_saves"] == 4 and record["checkpoint_seconds"] == pytest.approx(0.6)
    assert record["wall_seconds"] == pytest.approx(10.0 + 12.0) and record["compile_seconds"] == 3.0


def test_a_damaged_record_is_replaced(tmp_path):
    path = tmp_path / timing.FILE
    path.write_text("{not json")
    assert timing.write(path, clock(0, [1.0, 0.1], []), 101.0, 2, **FACTS)["sessions"][0]["first_step"] == 0
