"""Problems found in user input, collected and reported all at once.

Why collect instead of raise: a user fixing a 64-run spec set wants every
mistake in one pass (as fiddle and compilers do), each with file, line and the
dotted field path, never a Python traceback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence


@dataclasses.dataclass(frozen=True, order=True)
class Location:
    """Where a value came from in the user's files."""

    file: str
    line: int = 0  # 1-based; 0 when unknown (e.g. a default)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclasses.dataclass(frozen=True, order=True)
class Problem:
    location: Location
    path: str  # dotted field path, e.g. "runs[code-lm].data.sources.code.tokens"
    message: str

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location.file else ""
        field = f"{self.path}: " if self.path else ""
        return f"{where}{field}{self.message}"


class SpecError(Exception):
    """Bad input: carries every problem found; the CLI prints them and exits 2."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems: tuple[Problem, ...] = tuple(sorted(set(problems)))
        super().__init__("\n".join(str(p) for p in self.problems))


def raise_if_any(problems: Sequence[Problem]) -> None:
    if problems:
        raise SpecError(problems)
