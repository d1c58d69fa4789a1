"""What the store reports: bad input about it (exit 2) and the rows of `runix store ls`."""

from __future__ import annotations

import dataclasses

from compiler.problems import Location, Problem, SpecError


class StoreError(SpecError):
    """Bad input about the store (unknown hash, tampered entry, unsafe path, unreachable bucket): exit 2."""

    def __init__(self, where: str, message: str):
        super().__init__([Problem(Location(where), "", message)])


@dataclasses.dataclass(frozen=True)
class EntryInfo:
    hash: str
    name: str
    status: str  # "built" | "building" | "incomplete" (published but no marker: a crash mid-finish) | "registered"
    path: str
    parent_hash: str | None = None
