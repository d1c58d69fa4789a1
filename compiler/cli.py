"""`runix` command line: one subcommand per module in compiler/commands/.

Exit codes (a contract that scripts and tests rely on): 0 success; 1 a run or
replay failed or diverged; 2 bad input (spec, lock, arguments) — reported as
one message per problem with file:line and field path, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from compiler.problems import SpecError

COMMANDS = ("validate", "hash", "schema", "lock", "compile", "diff", "launch", "replay", "store", "report", "prepare")
"""Subcommand modules under compiler.commands, imported only when they exist.

Each module defines `register(subparsers)` which adds its parser and sets
`func(args, console) -> int`. Modules import their heavy dependencies inside
`func`, so `runix validate` never pays for jax or xmanager.
"""

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own exit code is 2 as well
        self.print_usage(sys.stderr)
        print(f"runix: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser; with `only`, just that subcommand's module is imported (start-up time)."""
    parser = _Parser(prog="runix", description="Declarative, Nix-style compiler of training-run specifications.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in (only,) if only in COMMANDS else COMMANDS:
        try:
            module = importlib.import_module(f"compiler.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"compiler.commands.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def print_problems(error: SpecError, console: Console) -> None:
    for problem in error.problems:
        # escape(): field paths such as runs[big].batch look like rich markup tags.
        console.print(f"[bold red]error[/]: {escape(str(problem))}", highlight=False, soft_wrap=True)
    count = len(error.problems)
    console.print(f"[red]{count} problem{'s' if count != 1 else ''}[/]; nothing was written.")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = argv[0] if argv and not argv[0].startswith("-") else None
    args = build_parser(only=first).parse_args(argv)
    console = Console(highlight=False)
    errors = Console(stderr=True, highlight=False)
    try:
        return int(args.func(args, console) or EXIT_OK)
    except SpecError as err:
        print_problems(err, errors)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        errors.print("[red]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
