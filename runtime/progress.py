"""A rich progress bar for people watching a run: step, tokens/s, loss, ETA.

Drawn on stderr and only by process 0; when stderr is not a terminal rich
draws nothing until the end, so logs of launched runs stay clean.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainingProgress:
    def __init__(self, name: str, total_steps: int, done_steps: int, *, enabled: bool = True):
        self._progress = None
        if not enabled:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[tokens_per_s]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task(name, total=total_steps, completed=done_steps, loss="-", tokens_per_s="-")
        self._progress.start()

    def update(self, steps_done: int, loss: float, tokens_per_s: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=steps_done, loss=f"{loss:.4f}",
                                  tokens_per_s=f"{tokens_per_s:,.0f}")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
