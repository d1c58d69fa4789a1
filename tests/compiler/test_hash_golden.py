"""Golden hashes: a change here means every stored run would be re-keyed.

This value may change only when the canonical form changes on purpose (a new
field, a new SCHEMA_VERSION, a new resolution rule); say so in the commit.
"""

from compiler.canonical import canonical_json, hash_document
from compiler.specset import load_spec_set
from tests.conftest import REPO

GOLDEN_FIXTURE = REPO / "tests" / "fixtures" / "golden.yaml"
# Hashes of the fixture's runs without a lockfile (the lock adds its inputs on top).
GOLDEN = {
    "golden-parent": "715ab5bf944a7389b2e752502c9f6e67628f18082fd0d8e9beef63ec9ffa747e",
    "golden-child": "ccd7c17fcf5c020436dda4d96713e9d5a34d4ded3c932717587645cc49418e04",
}


def test_golden_hashes():
    runs = load_spec_set([GOLDEN_FIXTURE]).by_name()
    assert {name: runs[name].hash for name in GOLDEN} == GOLDEN


def test_hash_document_is_canonical_json():
    run = load_spec_set([GOLDEN_FIXTURE]).by_name()["golden-child"]
    text = canonical_json(hash_document(run.spec, run.parent_hash, None))
    assert " " not in text.replace("builtin://", "")  # no whitespace
    assert '"name"' not in text and '"description"' not in text and '"checkpoint"' not in text
    assert run.parent_hash in text
