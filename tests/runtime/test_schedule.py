"""The LR schedule against values computed by hand from the phase formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compiler.resolve import resolve_schedule
from compiler.spec import ScheduleSpec
from runtime.schedule import learning_rate_schedule


def schedule(phases, steps):
    return learning_rate_schedule(resolve_schedule(ScheduleSpec.model_validate({"phases": phases}), steps, 1024))


def test_warmup_then_cosine_to_floor():
    lr = schedule([{"kind": "warmup", "length": 10, "peak": 3e-3}, {"kind": "cosine", "floor": 3e-4}], 60)
    expected = {
        0: 0.0,
        5: 1.5e-3,  # halfway up the ramp
        10: 3e-3,  # cosine starts at the peak
        35: 3e-4 + (3e-3 - 3e-4) * 0.5 * (1 + math.cos(math.pi * 25 / 50)),  # half of the decay
        59: 3e-4 + (3e-3 - 3e-4) * 0.5 * (1 + math.cos(math.pi * 49 / 50)),
        60: 3e-4,  # the floor is reached one step after the last
        500: 3e-4,  # and held
    }
    for step, value in expected.items():
        np.testing.assert_allclose(float(lr(step)), value, rtol=1e-6, atol=1e-12, err_msg=f"step {step}")


def test_rewarmup_linear_decay_and_constant():
    # Continued pretraining: re-warmup 0 -> 5.3e-4 over 4 steps, linear to 0 over 8, then hold 1e-6.
    lr = schedule([{"kind": "warmup", "length": 4, "peak": 5.3e-4},
                   {"kind": "linear", "length": 8, "end": 0.0},
                   {"kind": "constant", "value": 1e-6}], 20)
    expected = {0: 0.0, 2: 2.65e-4, 4: 5.3e-4, 6: 5.3e-4 * 6 / 8, 11: 5.3e-4 / 8, 12: 1e-6, 19: 1e-6}
    for step, value in expected.items():
        np.testing.assert_allclose(float(lr(step)), value, rtol=1e-6, atol=1e-12, err_msg=f"step {step}")


def test_linear_cooldown_with_explicit_start():
    lr = schedule([{"kind": "linear", "start": 2e-4, "end": 1e-6}], 20)
    for step in (0, 7, 19):
        np.testing.assert_allclose(float(lr(step)), 2e-4 + (1e-6 - 2e-4) * step / 20, rtol=1e-6)


def test_cosine_rising_from_zero():
    lr = schedule([{"kind": "cosine", "start": 0.0, "length": 10, "floor": 1e-3}], 10)
    np.testing.assert_allclose([float(lr(s)) for s in (0, 5, 10)], [0.0, 5e-4, 1e-3], atol=1e-9)


def test_unresolved_schedule_is_refused():
    with pytest.raises(ValueError, match="resolve"):
        learning_rate_schedule(ScheduleSpec.model_validate(
            {"unit": "tokens", "phases": [{"kind": "constant", "value": 1e-3, "length": 1024}]}))
