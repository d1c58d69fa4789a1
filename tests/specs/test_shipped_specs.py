"""Every shipped spec set validates, prices, and every shipped file fits the JSON Schema."""

from __future__ import annotations

import jsonschema
import pytest

from compiler.plan import plan
from compiler.schema import spec_file_schema
from compiler.yaml_source import parse_document
from tests.specs.shipped import SPECS, compiled, spec_files, spec_sets

SETS = [str(path.relative_to(SPECS)) for path in spec_sets()]
FILES = [str(path.relative_to(SPECS)) for path in spec_files()]


def test_the_recipes_and_their_twins_are_shipped():
    for folder in ("to_code", "arctic_snowcoder", "phi1", "twins/to_code-twin", "twins/arctic_snowcoder-twin", "twins/phi1-twin"):
        assert folder in SETS


@pytest.mark.parametrize("folder", SETS)
def test_spec_set_validates_and_each_run_is_a_distinct_model(folder):
    spec_set = compiled(folder)  # raises SpecError with every problem
    assert spec_set.runs
    hashes = [run.hash for run in spec_set.runs]
    assert len(set(hashes)) == len(hashes), "two names for one model: merge them"


@pytest.mark.parametrize("folder", SETS)
def test_every_run_fits_its_mesh(folder):
    result = plan(compiled(folder), frozenset())  # raises SpecError when a run cannot fit
    assert len(result.runs) == len(compiled(folder).runs)


@pytest.mark.parametrize("name", FILES)
def test_json_schema_accepts_the_file(name):
    path = SPECS / name
    document = parse_document(path.read_bytes(), str(path))
    validator = jsonschema.Draft202012Validator(spec_file_schema())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(document.data)]
    assert not errors, errors
