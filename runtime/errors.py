"""The two ways a run can fail, kept apart because they mean different things to the launcher.

`BadInput` (exit code 2): the request is wrong: a missing or invalid
spec.json, a parent that is unbuilt or whose parameters do not match its
digest, a checkpoint of another run in the run directory. Nothing was
written; retrying will not help until the input is fixed.
`TrainingFailed` (exit code 1): the input was fine but training did not
finish (non-finite loss, a device or I/O error); the last checkpoint stands.
"""

from __future__ import annotations


class BadInput(Exception):
    """The run cannot start from what it was given (exit code 2)."""


class TrainingFailed(Exception):
    """Training started and did not finish (exit code 1)."""
