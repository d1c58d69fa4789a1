"""Each CPU twin (specs/twins/) differs from its recipe only in the fields that scale.

A twin run is named "twin-" + its original's name. The resolved specs are
compared field by field: a field may differ only if it is on the allow-list
below (dims, batch, length, budgets, phase lengths, mesh, URIs and declared
sizes, metadata). Everything else must be equal, so the mixture (source
names, roles, shares, max_repeats), the schedule's shape (phase kinds and
every learning rate), the optimizer, dtypes, seeds and the initialization
chain are the original's exactly.
"""

from __future__ import annotations

import fnmatch

import pytest

from compiler.resolve import resolve_run
from tests.specs.shipped import authored, compiled, resolved

TWINS = {"twins/to_code-twin": "to_code", "twins/arctic_snowcoder-twin": "arctic_snowcoder", "twins/phi1-twin": "phi1"}
PREFIX = "twin-"

SCALED = (
    "name", "description", "tags", "tags.*", "checkpoint.*",                # metadata, never hashed
    "model.preset", "model.vocab_size", "model.d_model", "model.n_layers",  # model dims
    "model.n_heads", "model.n_kv_heads", "model.head_dim", "model.d_ff", "model.rotary_dim",
    "batch.sequences", "batch.sequence_length",                              # batch
    "steps", "tokens",                                                       # run length
    "data.sources.*.tokens",                                                 # budgets (shares compared below)
    "data.sources.*.uri", "data.sources.*.declared_tokens", "data.tokenizer",  # where the data lives, its size
    "schedule.phases.*.length",                                              # phase lengths (kinds, LRs equal)
    "mesh.*",                                                                # hardware
    "kernels.attention",                                                     # `auto` resolves per accelerator
    "init.run",                                                              # the parent, renamed (checked below)
)


def flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(value, (list, tuple)):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{index}"))
        return out or {prefix: []}
    return {prefix: value}


def scaled(path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in SCALED)


def pairs():
    for twin_folder, folder in TWINS.items():
        for name in sorted(resolved(twin_folder)):
            yield twin_folder, folder, name


@pytest.mark.parametrize("twin_folder,folder,name", list(pairs()))
def test_twin_differs_only_in_scaled_fields(twin_folder, folder, name):
    assert name.startswith(PREFIX)
    twin, original = resolved(twin_folder)[name], resolved(folder)[name[len(PREFIX):]]
    twin_fields, original_fields = flatten(twin.model_dump(mode="json")), flatten(original.model_dump(mode="json"))
    structural = lambda fields: {path for path in fields if not path.startswith("tags")}  # noqa: E731
    assert structural(twin_fields) == structural(original_fields), "same sources, same number of phases"
    differ = sorted(path for path in structural(twin_fields)
                    if twin_fields[path] != original_fields[path] and not scaled(path))
    assert not differ, {path: (twin_fields[path], original_fields[path]) for path in differ}


@pytest.mark.parametrize("twin_folder,folder,name", list(pairs()))
def test_twin_keeps_the_mixture_shares_and_schedule_shape_exactly(twin_folder, folder, name):
    twin, original = authored(twin_folder)[name], authored(folder)[name[len(PREFIX):]]
    shares = lambda spec: {k: (s.role, s.share, s.max_repeats) for k, s in spec.data.sources.items() if s.share}  # noqa: E731
    assert shares(twin) == shares(original)
    twin, original = resolve_run(twin), resolve_run(original)
    shape = lambda spec: [(p.kind, {k: v for k, v in p.model_dump().items() if k not in ("kind", "length")})  # noqa: E731
                          for p in spec.schedule.phases]
    assert shape(twin) == shape(original)
    rotary = lambda spec: spec.model.rotary_dim / spec.model.head_dim  # noqa: E731
    assert rotary(twin) == rotary(original)


@pytest.mark.parametrize("twin_folder", TWINS)
def test_twin_chain_mirrors_the_original(twin_folder):
    original = compiled(TWINS[twin_folder]).by_name()
    for run in compiled(twin_folder).runs:
        parent = original[run.name[len(PREFIX):]].parent_name
        assert run.parent_name == (PREFIX + parent if parent else None), run.name


@pytest.mark.parametrize("twin_folder", TWINS)
def test_twin_is_cpu_sized(twin_folder):
    for name, spec in resolved(twin_folder).items():
        assert spec.mesh.accelerator == "cpu" and spec.mesh.chips == 1
        assert authored(twin_folder)[name].model.preset == "tiny"
        assert (spec.batch.sequences, spec.batch.sequence_length) == (8, 128)
        assert 1 <= spec.steps < 100
        assert all(src.uri.startswith("builtin://") for src in spec.data.sources.values())
        assert spec.data.tokenizer == "builtin://bpe"


def test_to_code_twin_is_the_sweep_and_both_two_stage_chains_with_their_cooldowns():
    names = set(resolved("twins/to_code-twin"))
    assert {f"twin-470m-sweep-code{c}" for c in (0, 25, 50, 75, 90, 100)} <= names
    for chain in ("balanced-text", "code-text"):
        assert {f"twin-470m-{chain}", f"twin-470m-{chain}-cool-code", f"twin-470m-{chain}-cool-text"} <= names
    assert len(names) == 13
