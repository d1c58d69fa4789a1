"""What more than one subcommand uses: the `--mfu` argument type and how a file's path is shown."""

from __future__ import annotations

import argparse
import os
import pathlib


def mfu_fraction(text: str) -> float:
    """`--mfu X`: a model-FLOPs utilization in (0, 1]; anything else is an argument error (exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]; MFU is a fraction of peak, e.g. 0.45")
    return value


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path relative to the current folder when it is below it (lockfiles/tiny.lock.json), else as given.

    So that output shows no home paths needlessly.
    """
    try:
        return str(pathlib.Path(path).resolve().relative_to(pathlib.Path.cwd().resolve()))
    except ValueError:
        return str(path)
