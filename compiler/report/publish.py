"""Write the report folder atomically: fill a temporary folder beside it, then rename it into place.

A reader (a browser, a web server, a sync job) sees the old report or the new
one, never a page whose figures are half written. Replacing an existing report
takes two renames (old aside, new in) and then deletes the old one; between the
two renames the folder is briefly absent, never partial.

The folder given with --out is replaced whole, so it must be a previous report
(it holds report.json with "runix_report") or empty: anything else is bad
input (exit 2) and nothing is touched.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
import uuid
from collections.abc import Callable

from compiler.problems import Location, Problem, SpecError

REPORT_JSON = "report.json"


def check_output_folder(out: pathlib.Path) -> None:
    """Refuse an --out that is not a folder runix may replace (SpecError, exit 2)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise SpecError([Problem(Location(str(out)), "--out", "exists and is not a folder; give a folder for the report")])
    if out.is_dir() and any(out.iterdir()) and not _is_report(out):
        raise SpecError([Problem(Location(str(out)), "--out",
                                 f"is a folder that holds no runix report ({REPORT_JSON}); the report replaces its "
                                 f"folder whole, so give a new or empty folder")])


def _is_report(folder: pathlib.Path) -> bool:
    try:
        return json.loads((folder / REPORT_JSON).read_text(encoding="utf-8")).get("runix_report") is not None
    except (OSError, ValueError, AttributeError):
        return False


def publish_folder(out: pathlib.Path, fill: Callable[[pathlib.Path], None]) -> pathlib.Path:
    """Call `fill(tmp)` on a fresh folder beside `out`, then make it `out`; returns `out` (absolute)."""
    out = pathlib.Path(os.path.abspath(out))
    check_output_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a report is for reading
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
