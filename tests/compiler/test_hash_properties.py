"""Property tests: the hash sees the trained bits, and nothing else."""

from __future__ import annotations

import copy
import json

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.specset import compile_documents
from compiler.yaml_source import parse_document

BASE = {
    "name": "base",
    "model": {"preset": "tiny"},
    "batch": {"sequences": 8, "sequence_length": 128},
    "steps": 10,
    "init": {"kind": "scratch", "seed": 0},
    "data": {"seed": 0, "sources": {
        "code": {"uri": "builtin://code", "role": "code", "share": 0.5},
        "text": {"uri": "builtin://text", "role": "text", "share": 0.5},
    }},
    "schedule": {"phases": [{"kind": "warmup", "length": 2, "peak": 0.001}, {"kind": "cosine", "floor": 0.0001}]},
    "optimizer": {"b1": 0.9, "weight_decay": 0.1},
}
CHILD = {"name": "child", "extends": "base", "steps": 5, "init": {"kind": "parent", "run": "base"},
         "schedule": {"phases": [{"kind": "linear", "start": 0.0001, "end": 0.000001}]}}
GRANDCHILD = {"name": "grandchild", "extends": "child", "init": {"kind": "parent", "run": "child"}}
OTHER = {"name": "other", "extends": "base", "init": {"kind": "scratch", "seed": 5}}

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def hashes(runs, fmt="yaml", dump=None):
    document = {"runs": runs}
    text = dump(document) if dump else (yaml.safe_dump(document) if fmt == "yaml" else json.dumps(document))
    compiled = compile_documents([parse_document(text, f"s.{fmt}")])
    return {run.name: run.hash for run in compiled.runs}


def shuffled(value, rnd):
    """The same data with every mapping's keys in a random order."""
    if isinstance(value, dict):
        keys = list(value)
        rnd.shuffle(keys)
        return {key: shuffled(value[key], rnd) for key in keys}
    if isinstance(value, list):
        return [shuffled(item, rnd) for item in value]
    return value


REFERENCE = hashes([BASE, CHILD, GRANDCHILD, OTHER])


@SETTINGS
@given(st.randoms(use_true_random=False), st.sampled_from(["yaml", "json"]), st.booleans(), st.integers(0, 4))
def test_key_order_format_and_layout_do_not_change_the_hash(rnd, fmt, flow, indent):
    runs = [shuffled(run, rnd) for run in (BASE, CHILD, GRANDCHILD, OTHER)]
    rnd.shuffle(runs)

    def dump(document):
        if fmt == "json":
            return json.dumps(document, indent=indent or None)
        text = yaml.safe_dump(document, default_flow_style=flow, sort_keys=False, indent=indent + 2)
        return "# a comment\n" + text.replace("\n", "  # another\n", 1)

    assert hashes(runs, fmt, dump) == REFERENCE


def test_number_spellings_and_defaults_do_not_change_the_hash():
    text = yaml.safe_dump({"runs": [BASE, CHILD, GRANDCHILD, OTHER]}, sort_keys=False)
    assert "0.001" in text
    text = text.replace("0.001\n", "1e-3\n").replace("0.0001\n", "1.0e-4\n")
    explicit = copy.deepcopy(BASE)
    explicit["optimizer"].update(b2=0.95, eps=1e-8, clip_norm=1.0, kind="adamw")
    explicit["model"].update(n_kv_heads=4, head_dim=16, rotary_dim=16, block="parallel")
    explicit["mesh"] = {"accelerator": "cpu", "chips": 1, "axes": {"data": 1, "fsdp": 1, "tensor": 1}}
    explicit["kernels"] = {"attention": "auto"}
    assert {r.name: r.hash for r in compile_documents([parse_document(text, "s.yaml")]).runs} == REFERENCE
    assert hashes([explicit, CHILD, GRANDCHILD, OTHER]) == REFERENCE


def test_written_out_forms_hash_like_the_authoring_forms():
    written = copy.deepcopy(BASE)
    written["model"] = {"vocab_size": 4096, "d_model": 64, "n_layers": 2, "n_heads": 4, "d_ff": 256}  # the preset
    written["data"]["sources"]["code"] = {"uri": "builtin://code", "role": "code", "tokens": 5120}
    written["data"]["sources"]["text"] = {"uri": "builtin://text", "role": "text", "tokens": 5120}
    written["schedule"] = {"unit": "tokens", "phases": [
        {"kind": "warmup", "length": 2048, "peak": 0.001}, {"kind": "cosine", "length": 8192, "start": 0.001, "floor": 0.0001}]}
    written["tokens"] = 10240
    child = {**copy.deepcopy(BASE), **{k: v for k, v in CHILD.items() if k != "extends"}}
    matrix = {"name": "{who}", "extends": "base", "matrix": {"who": {"other": {"init": {"kind": "scratch", "seed": 5}}}}}
    assert hashes([written, child, GRANDCHILD, matrix]) == REFERENCE


SEMANTIC_CHANGES = [
    ("steps", 12), ("batch.sequences", 16), ("batch.sequence_length", 64), ("init.seed", 1), ("data.seed", 1),
    ("model.d_model", 128), ("model.n_layers", 3), ("model.block", "sequential"), ("model.tied_embeddings", False),
    ("model.rope_theta", 500000.0), ("model.remat", "full"), ("optimizer.b1", 0.8), ("optimizer.weight_decay", 0.0),
    ("optimizer.clip_norm", None), ("data.sources.code.share", 0.25), ("data.sources.code.uri", "builtin://markup"),
    ("data.document_masking", True), ("dtypes", {"compute": "bfloat16"}), ("kernels", {"cross_entropy": "reference"}),
    ("mesh", {"chips": 2, "axes": {"data": 2}}), ("schedule.phases", [{"kind": "warmup", "length": 2, "peak": 0.002}, {"kind": "cosine", "floor": 0.0001}]),
]
METADATA_CHANGES = [("description", "anything"), ("tags", ["x"]), ("checkpoint", {"every": 3}),
                    ("data.sources.code.max_repeats", 3), ("data.sources.code.role", "markup")]


def changed(run, dotted, value):
    run = copy.deepcopy(run)
    *parents, leaf = dotted.split(".")
    node = run
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    if dotted == "data.sources.code.share":
        run["data"]["sources"]["text"]["share"] = 0.75
    return run


def test_every_semantic_field_changes_the_hash_and_its_descendants_only():
    for dotted, value in SEMANTIC_CHANGES:
        new = hashes([changed(BASE, dotted, value), CHILD, GRANDCHILD, OTHER])
        assert new["base"] != REFERENCE["base"], dotted
        assert new["child"] != REFERENCE["child"] and new["grandchild"] != REFERENCE["grandchild"], dotted
        # `other` extends base, so its own fields change too; its hash changes for that reason.


def test_a_parent_change_rehashes_its_descendants_and_nothing_else():
    new = hashes([BASE, changed(CHILD, "init.optimizer_state", "carry"), GRANDCHILD, OTHER])
    assert new["base"] == REFERENCE["base"] and new["other"] == REFERENCE["other"]
    assert new["child"] != REFERENCE["child"] and new["grandchild"] != REFERENCE["grandchild"]


def test_metadata_never_changes_the_hash():
    for dotted, value in METADATA_CHANGES:
        assert hashes([changed(BASE, dotted, value), CHILD, GRANDCHILD, OTHER]) == REFERENCE, dotted


def test_renaming_a_parent_keeps_every_hash():
    renamed = {**BASE, "name": "base2"}
    child = {**CHILD, "extends": "base2", "init": {"kind": "parent", "run": "base2"}}
    other = {**OTHER, "extends": "base2"}
    new = hashes([renamed, child, GRANDCHILD, other])
    assert new["base2"] == REFERENCE["base"] and new["grandchild"] == REFERENCE["grandchild"]


@SETTINGS
@given(st.floats(1e-6, 1e-2, allow_nan=False), st.integers(0, 2**32 - 1))
def test_distinct_values_give_distinct_hashes(lr, seed):
    run = changed(changed(BASE, "init.seed", seed), "schedule.phases", [{"kind": "warmup", "length": 2, "peak": lr}, {"kind": "cosine", "floor": 1e-7}])
    again = json.loads(json.dumps(run))
    assert hashes([run])["base"] == hashes([again])["base"]
    bumped = changed(run, "init.seed", (seed + 1) % 2**32)
    assert hashes([bumped])["base"] != hashes([run])["base"]
