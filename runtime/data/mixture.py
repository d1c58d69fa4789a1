"""Block-exact mixing: how many sequences of each source fill each step.

A run's spec gives each source a token budget; over the whole run source i
must contribute exactly n_i sequences, and every step exactly B. Sampling a
source per slot would meet the budgets only on average, so the counts are
decided deterministically instead:

  q_i, r_i = divmod(n_i, S)      # every step gets q_i, r_i steps get one more
  R = B - sum(q_i)               # extra slots per step; sum(r_i) = R * S

Per-step counts are therefore always floor(n_i/S) or ceil(n_i/S): as even as
whole sequences allow. Which steps get source i's r_i extras: lay the R*S
extras out source after source and deal position p to "virtual step"
p mod S (no source gets two in one step because r_i < S, and every virtual
step gets exactly R); then map virtual step v to real step v*g mod S with g
the integer nearest S/golden ratio that is coprime to S. A run of
consecutive virtual steps becomes a golden-ratio (Kronecker) sequence of real
steps, so each source's extras are spread evenly over the run rather than
bunched at its start (three-gap theorem), and any prefix of the run holds
each source's exact share to within O(log S) sequences.

Nothing is tabulated: `cumulative(s)`, the number of source i's sequences
in steps [0, s), is s*q_i plus a count of lattice points computed with
`floor_sum` in O(log S), so any step's sequences (k = cumulative(s)[i] ...
cumulative(s+1)[i] - 1 of source i) come directly from the step number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_GOLDEN = (math.sqrt(5) - 1) / 2


def floor_sum(n: int, m: int, a: int, b: int) -> int:
    """sum(floor((a*x + b) / m) for x in range(n)) in O(log m), any integers a, b; m > 0."""
    if n <= 0:
        return 0
    total = 0
    a_reduced, b_reduced = a % m, b % m
    total += n * (n - 1) // 2 * ((a - a_reduced) // m) + n * ((b - b_reduced) // m)
    a, b = a_reduced, b_reduced
    while True:
        if a >= m:
            total += n * (n - 1) // 2 * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        y_max = a * n + b
        if y_max < m:
            return total
        n, b = y_max // m, y_max % m
        m, a = a, m


def spreading_stride(num_steps: int, candidates: int = 256) -> int:
    """A stride g coprime to num_steps whose multiples s*g mod num_steps spread evenly.

    How evenly the points s*g/n (mod 1) cover [0, 1) is governed by the partial
    quotients of the continued fraction of g/n (all 1s for the golden ratio,
    the best case). Among the `candidates` integers nearest n/golden ratio
    that are coprime to n, take the one with the smallest sum of partial
    quotients (ties: the nearest).
    """
    if num_steps <= 2:
        return 1
    target = round(num_steps * _GOLDEN)
    best: tuple[int, int, int] | None = None
    seen = 0
    for distance in range(num_steps):
        for candidate in sorted({target - distance, target + distance}):
            if 0 < candidate < num_steps and math.gcd(candidate, num_steps) == 1:
                score = (_partial_quotient_sum(candidate, num_steps), distance, candidate)
                best = score if best is None else min(best, score)
                seen += 1
        if seen >= candidates:
            break
    return best[2] if best is not None else 1


def _partial_quotient_sum(numerator: int, denominator: int) -> int:
    total = 0
    while numerator:
        quotient, remainder = divmod(denominator, numerator)
        total += quotient
        denominator, numerator = numerator, remainder
    return total


class BlockExactMixture:
    """Exact per-source sequence counts over `num_steps` steps of `per_step`.

    counts: sequences per source over the whole run (n_i >= 0).
    per_step: sequences per step (B); sum(counts) must equal num_steps * B.
    """

    def __init__(self, counts: Sequence[int], per_step: int, num_steps: int):
        self.counts = tuple(int(c) for c in counts)
        self.per_step = int(per_step)
        self.num_steps = int(num_steps)
        if any(c < 0 for c in self.counts):
            raise ValueError(f"sequence counts must be >= 0, got {self.counts}")
        if self.per_step < 1 or self.num_steps < 1:
            raise ValueError("per_step and num_steps must be >= 1")
        if sum(self.counts) != self.per_step * self.num_steps:
            raise ValueError(
                f"{sum(self.counts)} sequences do not fill {self.num_steps} steps "
                f"of {self.per_step}"
            )
        quotients, remainders = zip(*(divmod(c, self.num_steps) for c in self.counts))
        self.base = tuple(quotients)
        self.extras = tuple(remainders)
        self._offsets = tuple(sum(self.extras[:i]) for i in range(len(self.extras)))
        self._stride = spreading_stride(self.num_steps)

    def _extras_before(self, source: int, step: int) -> int:
        """How many of source's extra sequences fall in steps [0, step)."""
        r, offset, n = self.extras[source], self._offsets[source], self.num_steps
        if r == 0 or step <= 0:
            return 0
        # Step s takes virtual step v = s * g mod n; the source's extras are the
        # virtual steps with (v - offset) mod n < r, and [x mod n < r] equals
        # floor(x / n) - floor((x - r) / n).
        g = self._stride
        return floor_sum(step, n, g, -offset) - floor_sum(step, n, g, -offset - r)

    def cumulative(self, step: int) -> list[int]:
        """For each source, how many of its sequences are in steps [0, step)."""
        if not 0 <= step <= self.num_steps:
            raise IndexError(f"step {step} outside [0, {self.num_steps}]")
        return [
            step * self.base[i] + self._extras_before(i, step) for i in range(len(self.counts))
        ]

    def step_range(self, step: int) -> tuple[list[int], list[int]]:
        """(first, stop) per source: step `step` holds sequences first[i]..stop[i]-1 of i."""
        if not 0 <= step < self.num_steps:
            raise IndexError(f"step {step} outside [0, {self.num_steps})")
        return self.cumulative(step), self.cumulative(step + 1)

    def step_counts(self, step: int) -> list[int]:
        """How many sequences of each source step `step` holds (they sum to per_step)."""
        first, stop = self.step_range(step)
        return [b - a for a, b in zip(first, stop)]
