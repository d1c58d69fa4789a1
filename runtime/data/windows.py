"""Which piece of a source's token stream the k-th training sequence of that source is.

A source's token stream is cut into non-overlapping windows: window w is
tokens [w*L, w*L + L + 1), L + 1 tokens so that inputs and targets (shifted
by one) both have L; consecutive windows share one boundary token, and every
token after the first is a target exactly once per epoch. A stream of T
tokens has (T - 1) // L windows; the remainder at the end is never read.

Sequence k of the source belongs to epoch k // W and is window
perm_epoch(k % W), with a fresh seeded permutation per epoch, so every
window is seen once before any is seen twice, and a window's position in an
epoch is independent of the other epochs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dataprep.repeats import num_windows, passes_needed
from runtime.data.permutation import Permutation, derive_key


@dataclasses.dataclass(frozen=True)
class SourceWindows:
    """The window order of one source in one run.

    name: the source's name (keys its permutations, so renaming reorders).
    num_tokens: length of its token stream.
    sequence_length: L.
    seed: the run's data seed.
    """

    name: str
    num_tokens: int
    sequence_length: int
    seed: int
    # Permutation per epoch, built on first use (a handful: epochs <= max_repeats).
    _permutations: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def num_windows(self) -> int:
        return num_windows(self.num_tokens, self.sequence_length)

    def epochs_needed(self, num_sequences: int) -> int:
        """Passes over the source that `num_sequences` sequences take (rounded up; dataprep.repeats)."""
        return passes_needed(num_sequences * self.sequence_length, self.num_tokens, self.sequence_length)

    def windows(self, sequence_indices: np.ndarray) -> np.ndarray:
        """Window index for each sequence index k (any shape, int64)."""
        k = np.asarray(sequence_indices, dtype=np.int64)
        size = self.num_windows
        epochs, within = np.divmod(k, size)
        out = np.empty_like(k)
        for epoch in np.unique(epochs).tolist():
            chosen = epochs == epoch
            out[chosen] = self._permutation(epoch)(within[chosen])
        return out

    def _permutation(self, epoch: int) -> Permutation:
        permutation = self._permutations.get(epoch)
        if permutation is None:
            permutation = Permutation(self.num_windows, derive_key(self.seed, "windows", self.name, epoch))
            self._permutations[epoch] = permutation
        return permutation

    def token_starts(self, sequence_indices: np.ndarray) -> np.ndarray:
        """First token of each sequence's window."""
        return self.windows(sequence_indices) * self.sequence_length
