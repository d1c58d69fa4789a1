"""metrics.jsonl: one JSON line per step (step, loss, lr, grad_norm, tokens, tokens_per_s), for people and plots.

Not a determinism record (that is digest.json): it holds wall-clock speeds.
On resume from checkpoint k, lines of steps >= k (written by the interrupted
process after its last checkpoint) are dropped first, so the file reads as
one run: each step once, in order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends step lines; `resume_from(k)` first drops lines of steps >= k."""

    def __init__(self, path: str | os.PathLike[str], *, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self._file = None

    def resume_from(self, steps_done: int) -> None:
        if not self.enabled:
            return
        kept = []
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line)["step"] < steps_done:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a kill
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def write(self, **fields: Any) -> None:
        """One line, flushed at once, so a watcher (or a test that kills the run) sees every finished step."""
        if self._file is not None:
            self._file.write(json.dumps(fields, sort_keys=True) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
