"""A tiny multiple-choice task from the built-in corpora: pick the true next line of a Python function.

    python -m dataprep.choice_task evals/python_next_line.jsonl [--data-root DIR] [--items 64]

Why this task: it makes the `choice` eval kind (lm-eval-harness style
log-likelihood scoring) real on data runix has offline, and it tests what a
code ablation should move: a model that learned Python ranks the true
continuation of a function above lines from other functions. It is cut from
the held-out split of `builtin://code` only (dataprep.heldout), so no run
trains on a prompt or an answer.

Each item: {"prompt": a function's `def` line and the lines after it (2 to 6
lines), "choices": four lines — the true next line and three distractor
lines from other functions, shuffled — "answer": the index of the true line,
"source": the document id}. Lines keep their indentation and newline. The
output is a pure function of the held-out documents and the seed.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections.abc import Sequence
from pathlib import Path

_DEF = re.compile(r"^(\s*)def \w+\(")


def next_line_items(documents: Sequence[tuple[str, str]], count: int = 64, seed: int = 0) -> list[dict]:
    """Items from (id, text) documents; fewer than `count` if the documents hold fewer functions."""
    rng = random.Random(seed)
    candidates = []  # (doc id, prompt lines, true line)
    pool = []  # every non-trivial body line, for distractors
    for doc_id, text in documents:
        lines = text.splitlines(keepends=True)
        for i, line in enumerate(lines):
            match = _DEF.match(line)
            if not match:
                continue
            body = []
            for follow in lines[i + 1: i + 12]:
                if follow.strip() and not follow.startswith(match.group(1) + " "):
                    break
                body.append(follow)
            useful = [j for j, b in enumerate(body) if len(b.strip()) >= 8]
            if len(useful) < 3:
                continue
            cut = useful[min(len(useful) - 1, 1 + rng.randrange(len(useful) - 1))]
            prompt = [line, *body[:cut]]
            candidates.append((doc_id, prompt, body[cut]))
            pool.extend(b for b in body if len(b.strip()) >= 8)
    rng.shuffle(candidates)
    items = []
    for doc_id, prompt, true_line in candidates:
        if len(items) == count:
            break
        distractors: list[str] = []
        for line in rng.sample(pool, min(len(pool), 64)):
            if line.strip() != true_line.strip() and line not in distractors and line not in prompt:
                distractors.append(line)
            if len(distractors) == 3:
                break
        if len(distractors) < 3:
            continue
        choices = [true_line, *distractors]
        rng.shuffle(choices)
        items.append({"prompt": "".join(prompt), "choices": choices, "answer": choices.index(true_line),
                      "source": doc_id})
    return items


def heldout_code_documents(data_root: Path) -> list[tuple[str, str]]:
    from dataprep.corpora import prepare_corpus, read_documents  # noqa: PLC0415 (tfds)
    from dataprep.heldout import HELDOUT_SPLIT  # noqa: PLC0415

    source = read_documents(prepare_corpus("code", data_root), HELDOUT_SPLIT)
    return [(bytes(source[i]["id"]).decode(), bytes(source[i]["text"]).decode()) for i in range(len(source))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataprep.choice_task", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data-root", type=Path, default=Path(".runix/data"))
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    items = next_line_items(heldout_code_documents(args.data_root), args.items, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(item, ensure_ascii=False, sort_keys=True) + "\n" for item in items),
                        encoding="utf-8")
    print(f"wrote {len(items)} items to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
