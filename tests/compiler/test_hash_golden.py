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
    "golden-parent": "d8e7ea13f0ae949cffe744ad6d07be5666a06a95728b64509cf32492d4a08b05",
    "golden-child": "f588238d3d75db4933eda8aa850998fafba0e1c191633529130b9717443da4e4",
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
