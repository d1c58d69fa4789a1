"""`runix schema`: the JSON Schema of spec files, for editors."""

from __future__ import annotations

import json

from compiler.schema import spec_file_schema


def register(subparsers) -> None:
    parser = subparsers.add_parser("schema", help="print the JSON Schema of spec files")
    parser.set_defaults(func=run)


def run(args, console) -> int:
    print(json.dumps(spec_file_schema(), indent=2, sort_keys=True))
    return 0
