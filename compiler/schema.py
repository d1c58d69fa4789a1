"""JSON Schema of a spec *file*, derived from the pydantic models.

Why derived: one source of truth for fields, descriptions and bounds. A file
entry may `extends` another and state only what differs, so the entry schema
is the RunSpec schema with `required` lifted at every level (pydantic still
enforces completeness after expansion), plus the authoring keys.
"""

from __future__ import annotations

import copy
from typing import Any

from compiler.spec import RUN_NAME_PATTERN, SCHEMA_VERSION, RunSpec

PLACEHOLDER_NAME_PATTERN = r"^[A-Za-z0-9{][A-Za-z0-9._{}-]*$"


def _without_required(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _without_required(value) for key, value in node.items() if key != "required"}
    if isinstance(node, list):
        return [_without_required(item) for item in node]
    return node


def spec_file_schema() -> dict[str, Any]:
    run = _without_required(copy.deepcopy(RunSpec.model_json_schema()))
    defs = run.pop("$defs", {})
    # A matrix entry may name its parent with {axis} placeholders.
    defs["ParentInit"]["properties"]["run"]["anyOf"][0]["pattern"] = PLACEHOLDER_NAME_PATTERN
    patch = {"type": "object", "description": "A partial run merged onto the entry (deep merge)."}
    run["properties"].update({
        "name": {"type": "string", "description": "Unique run name; a matrix entry uses {axis} placeholders."},
        "extends": {"type": "string", "description": "Name of the entry this one starts from; state only what differs."},
        "abstract": {"type": "boolean", "description": "A base that only exists to be extended; not a run."},
        "matrix": {
            "type": "object",
            "description": "Grid of runs: axis → {label: patch}; each combination of labels is a run.",
            "additionalProperties": {"type": "object", "additionalProperties": patch, "minProperties": 1},
            "minProperties": 1,
        },
    })
    run["required"] = ["name"]
    run["title"] = "Run entry"
    defs["RunEntry"] = run
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://runix.dev/schema/spec-v{SCHEMA_VERSION}.json",
        "title": "runix spec file",
        "description": f"A runix spec file (schema version {SCHEMA_VERSION}): a list of runs. Run names match {RUN_NAME_PATTERN}.",
        "type": "object",
        "additionalProperties": False,
        "required": ["runs"],
        "properties": {"runs": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/RunEntry"}}},
        "$defs": defs,
    }
