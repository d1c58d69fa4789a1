"""The held-out split of a corpus: whole documents that no run ever trains on.

Why whole documents, chosen by content: an evaluation that shares a
document (or a copy of one) with the training data measures memorization, not
the model. So documents are grouped by the sha256 of their text (identical
copies always land on the same side), the groups are taken in digest order
(a deterministic but well-mixed order, independent of paths and of how the
corpus was collected) and moved to the held-out side until it holds
`fraction` of the corpus's bytes — at least one group, and never all of
them. Both sides keep the corpus's own document order.

A prepared corpus stores both sides as two splits of one TFDS dataset
(`train`, what the shards tokenize; `heldout`, what evaluations read), so the
corpus digest the lock pins covers both, and the held-out set is named by
(corpus digest, split) everywhere else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

TRAIN_SPLIT = "train"
HELDOUT_SPLIT = "heldout"
HELDOUT_FRACTION = 0.05
"""Share of each built-in corpus's bytes that is held out (at least one document)."""


class _Document(Protocol):
    id: str
    text: str


def text_digest(text: str) -> str:
    """What disjointness is judged by: the sha256 of a document's UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_heldout(documents: Sequence[_Document], fraction: float = HELDOUT_FRACTION) -> tuple[list, list]:
    """(train, heldout) documents, each in the input order; disjoint by text digest.

    A corpus of one distinct text cannot be split: everything stays in train.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"held-out fraction must be in (0, 1), got {fraction}")
    groups: dict[str, int] = {}
    for document in documents:
        digest = text_digest(document.text)
        groups[digest] = groups.get(digest, 0) + len(document.text.encode("utf-8"))
    total = sum(groups.values())
    held: set[str] = set()
    taken = 0
    for digest in sorted(groups):
        if len(held) == len(groups) - 1 or (held and taken >= fraction * total):
            break
        held.add(digest)
        taken += groups[digest]
    train = [d for d in documents if text_digest(d.text) not in held]
    heldout = [d for d in documents if text_digest(d.text) in held]
    return train, heldout
