"""timing.json: what a build measured of its own cost, for the dry run to price the next runs by.

Not a determinism record (that is digest.json): it holds wall-clock seconds,
like metrics.jsonl. Written by the trainer's writer process at every
checkpoint, so it travels into the store entry with the rest of the run
directory, and a resumed build adds its session to the earlier ones.

Per session (one start of the trainer): the seconds from the trainer's start
to the step loop (`startup`: state initialization, the parent's weights, the
data pipeline), the ahead-of-time compile of the step (`compile`), every
step's seconds (from dispatch to its loss on the host; the next batch is
prepared meanwhile) and every checkpoint save's. The record keeps each
session's step-time median and count, not the steps themselves, so it stays
small for a 100k-step run.

Totals (what compiler.calibration reads):
  step_seconds_median  median step time, compile excluded (the first step of each
                       session is left out too: it pays for first-touch work), the
                       median of the sessions' medians weighted by their steps
  compile_seconds      summed over sessions; startup_seconds likewise
  checkpoint_seconds   median seconds of one save, and checkpoint_saves how many
  wall_seconds         summed over sessions: trainer start to its last step or save
  chip_hours           wall_seconds × chips ÷ 3600: what the run cost
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

FILE = "timing.json"
FORMAT = "runix-timing/1"


@dataclasses.dataclass
class SessionClock:
    """Seconds measured by one trainer session; `record` merges it into the run's timing.json."""

    started: float  # time.perf_counter() at the trainer's start
    first_step: int
    loop_started: float | None = None
    compile_seconds: float = 0.0
    step_seconds: list[float] = dataclasses.field(default_factory=list)
    checkpoint_seconds: list[float] = dataclasses.field(default_factory=list)

    def session(self, now: float, last_step: int) -> dict[str, Any]:
        steady = self.step_seconds[1:] or self.step_seconds
        loop_started = self.loop_started if self.loop_started is not None else now
        return {
            "first_step": self.first_step,
            "last_step": last_step,
            "startup_seconds": max(0.0, loop_started - self.started - self.compile_seconds),
            "compile_seconds": self.compile_seconds,
            "steps_timed": len(steady),
            "step_seconds_median": statistics.median(steady) if steady else None,
            "checkpoint_seconds": list(self.checkpoint_seconds),
            "wall_seconds": now - self.started,
        }


def write(path: str | Path, clock: SessionClock, now: float, last_step: int, *, accelerator: str, chips: int,
          tokens_per_step: int, total_steps: int) -> dict[str, Any]:
    """Merge this session into `path` (replacing an earlier write of the same session) and return the record."""
    path = Path(path)
    sessions = []
    if path.exists():
        try:
            sessions = json.loads(path.read_text(encoding="utf-8")).get("sessions", [])
        except (OSError, ValueError, AttributeError):
            sessions = []
    # Sessions that started at or after this one's first step were cut off and are redone now.
    sessions = [s for s in sessions if isinstance(s, dict) and s.get("first_step", 0) < clock.first_step]
    sessions.append(clock.session(now, last_step))
    record = summarize(sessions, accelerator=accelerator, chips=chips, tokens_per_step=tokens_per_step,
                       total_steps=total_steps)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return record


def summarize(sessions: list[dict[str, Any]], *, accelerator: str, chips: int, tokens_per_step: int,
              total_steps: int) -> dict[str, Any]:
    timed = [s for s in sessions if s.get("step_seconds_median") is not None and s.get("steps_timed")]
    median = _weighted_median([(s["step_seconds_median"], s["steps_timed"]) for s in timed])
    saves = [x for s in sessions for x in s.get("checkpoint_seconds", [])]
    wall = sum(s["wall_seconds"] for s in sessions)
    return {
        "format": FORMAT,
        "accelerator": accelerator,
        "chips": chips,
        "tokens_per_step": tokens_per_step,
        "steps": total_steps,
        "step_seconds_median": median,
        "steps_timed": sum(s["steps_timed"] for s in timed),
        "compile_seconds": sum(s["compile_seconds"] for s in sessions),
        "startup_seconds": sum(s["startup_seconds"] for s in sessions),
        "checkpoint_seconds": statistics.median(saves) if saves else None,
        "checkpoint_saves": len(saves),
        "wall_seconds": wall,
        "chip_hours": wall * chips / 3600,
        "sessions": sessions,
    }


def _weighted_median(values: list[tuple[float, int]]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    half = sum(w for _, w in ordered) / 2
    seen = 0
    for value, weight in ordered:
        seen += weight
        if seen >= half:
            return value
    return ordered[-1][0]
