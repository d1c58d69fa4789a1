"""The eval scorers' pure parts: which bytes are scored, how documents become windows, how choices split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tokenizers
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep.choice_task import next_line_items
from runtime.errors import BadInput
from runtime.evaluate import continuation_split, first_difference, parse_choice_item, select_bytes, windows
from tests.conftest import REPO


@settings(max_examples=80, deadline=None)
@given(texts=st.lists(st.text(max_size=60), max_size=12), budget=st.integers(1, 400))
def test_selected_bytes_are_a_prefix_of_whole_documents_and_lines_within_the_budget(texts, budget):
    pieces = select_bytes(texts, budget)
    assert sum(map(len, pieces)) <= budget
    nonempty = [t.encode() for t in texts if t]
    for i, piece in enumerate(pieces):
        assert nonempty[i].startswith(piece)
        if piece != nonempty[i]:
            assert i == len(pieces) - 1 and piece.endswith(b"\n")  # only the last is cut, at a line end
        piece.decode("utf-8")  # never cut inside a character


def test_windows_score_every_token_once_after_an_end_of_document():
    rows = windows([[5, 6, 7], [8]], length=2, eos_id=0)
    assert [r[0].tolist() for r in rows] == [[0, 5], [6, 7], [0, 8]]
    assert [r[1].tolist() for r in rows] == [[5, 6], [7, 0], [8, 0]]
    assert sum(float(r[2].sum()) for r in rows) == 4  # 3 + 1 tokens, none twice, the EOS never a target


def test_continuation_is_what_the_choice_adds_after_the_prompt():
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["def f(x):\n    return x + 1\n"] * 20, trainer)
    context, continuation = continuation_split(tok, "def f(x): ", "return x + 1\n")
    assert context == tok.encode("def f(x):", add_special_tokens=False).ids  # the trailing space moves to the choice
    whole = tok.encode("def f(x): return x + 1\n", add_special_tokens=False).ids
    assert continuation == whole[len(context):] and continuation


def test_choice_items_are_checked_with_their_line():
    assert parse_choice_item('{"prompt": "a", "choices": ["b", "c"], "answer": 1}', "x.jsonl:3")["answer"] == 1
    for bad in ('{"prompt": "a", "choices": ["b"], "answer": 0}', '{"prompt": "a", "choices": ["b", "c"], "answer": 2}',
                "not json"):
        with pytest.raises(BadInput, match="x.jsonl:3"):
            parse_choice_item(bad, "x.jsonl:3")


def test_first_difference_names_the_value():
    assert first_difference({"a": [1, 2], "b": 3}, {"a": [1, 2], "b": 3}) is None
    assert first_difference({"a": ["3f800000", "40000000"]}, {"a": ["3f800000", "40000001"]}) == \
        "a[1]: stored 40000000, replayed 40000001"


def test_next_line_items_are_deterministic_and_hold_the_true_line():
    documents = [(f"m{i}.py", "".join(f"def f{i}_{j}(a):\n    x = a * {j} + {i}\n    y = x - {j}\n    return x + y\n\n"
                                      for j in range(4))) for i in range(6)]
    items = next_line_items(documents, 10, seed=0)
    assert items == next_line_items(documents, 10, seed=0) and len(items) == 10
    for item in items:
        assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4
        true = item["choices"][item["answer"]]
        text = dict(documents)[item["source"]]
        assert item["prompt"] + true in text


def test_the_shipped_task_is_well_formed():
    lines = (REPO / "evals" / "python_next_line.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 64
    for number, line in enumerate(lines, 1):
        item = parse_choice_item(line, f"python_next_line.jsonl:{number}")
        assert len(item["choices"]) == 4 and json.loads(line)["source"].endswith(".py")
    assert np.bincount([json.loads(line)["answer"] for line in lines], minlength=4).min() > 0  # answers spread out
