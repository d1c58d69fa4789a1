"""Held-out splits: whole documents no run trains on, disjoint from training by document digest."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep.builtin_corpora import Document, builtin_names
from dataprep.corpora import prepare_corpus, prepare_documents, read_documents
from dataprep.heldout import HELDOUT_SPLIT, TRAIN_SPLIT, split_heldout, text_digest
from tests.conftest import REPO

DATA_ROOT = REPO / ".runix" / "data"  # where `make setup` unpacked the Debian packages


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(min_size=1, max_size=40), min_size=2, max_size=40),
       fraction=st.floats(0.01, 0.9))
def test_split_is_disjoint_by_digest_keeps_order_and_holds_something(texts, fraction):
    documents = [Document(f"d{i}", t) for i, t in enumerate(texts)]
    train, heldout = split_heldout(documents, fraction)
    assert {text_digest(d.text) for d in train}.isdisjoint(text_digest(d.text) for d in heldout)
    assert sorted(d.id for d in train + heldout) == sorted(d.id for d in documents)
    order = {d.id: i for i, d in enumerate(documents)}
    assert [order[d.id] for d in train] == sorted(order[d.id] for d in train)
    if len(set(texts)) > 1:
        assert heldout and train
    assert split_heldout(list(reversed(documents)), fraction)[1] == list(reversed(heldout))  # chosen by content


def test_copies_of_a_document_land_on_the_same_side():
    documents = [Document(f"d{i}", f"text {i % 5}") for i in range(50)]
    train, heldout = split_heldout(documents, 0.2)
    held = {d.text for d in heldout}
    assert held and all(d.text not in held for d in train)


def test_a_prepared_corpus_keeps_both_splits(tmp_path):
    documents = [Document(f"doc/{i}", f"line {i}\n" * (i + 1)) for i in range(30)]
    train, heldout = split_heldout(documents)
    manifest = prepare_documents(name="tiny", uri="synthetic://tiny", documents=train, heldout=heldout,
                                 provenance={}, root_dir=tmp_path)
    assert manifest.num_documents == len(train)
    assert [bytes(r["id"]).decode() for r in read_documents(manifest, HELDOUT_SPLIT)] == [d.id for d in heldout]
    assert len(read_documents(manifest, TRAIN_SPLIT)) == len(train)


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_corpus_holds_out_documents_no_run_trains_on(name):
    manifest = prepare_corpus(name, DATA_ROOT)
    train = read_documents(manifest, TRAIN_SPLIT)
    held = read_documents(manifest, HELDOUT_SPLIT)
    train_digests = {text_digest(bytes(train[i]["text"]).decode()) for i in range(len(train))}
    held_digests = {text_digest(bytes(held[i]["text"]).decode()) for i in range(len(held))}
    assert held_digests and train_digests and held_digests.isdisjoint(train_digests)
    assert manifest.provenance["heldout"]["documents"] == len(held)
