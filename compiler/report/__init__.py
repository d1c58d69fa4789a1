"""`runix report`: an offline HTML page and PNG figures of a spec set's built runs.

    from compiler.report import collect, write_report
    data = collect(locked.spec_set, Store(url), spec_set_name="tiny", paths=["specs/tiny"])
    index_html = write_report(data, "runix-report/tiny")

Stages, one module each:
  data.py     the rows (store + spec set + plan) and the families; no matplotlib
  figures.py  loss curves per family and the initialization-chain graph (matplotlib, Agg)
  html.py     the page: inline CSS, no script, no network
  publish.py  the atomic write of the report folder (temporary folder, then rename)

The same store content renders the same bytes: figures have fixed sizes and
dpi, matplotlib's default style (not the user's matplotlibrc), no timestamps
or software versions in the PNGs, and the page carries no clock either.

This package imports matplotlib only inside `figures`, and `compiler.commands.report`
imports this package only when `runix report` runs, so `runix validate`/`hash`
never load it.
"""

from __future__ import annotations

import json
import os
import pathlib

from compiler.report.data import ReportData, collect
from compiler.report.publish import REPORT_JSON, publish_folder

INDEX_HTML = "index.html"


def write_report(data: ReportData, out: str | os.PathLike[str]) -> pathlib.Path:
    """Render `data` into the folder `out` (replaced atomically); returns the path of index.html."""
    from compiler.report.figures import render_figures
    from compiler.report.html import render_page

    def fill(folder: pathlib.Path) -> None:
        figures = render_figures(data, folder)
        (folder / INDEX_HTML).write_text(render_page(data, figures), encoding="utf-8")
        (folder / REPORT_JSON).write_text(json.dumps(data.to_json(), indent=1, sort_keys=True) + "\n", encoding="utf-8")

    return publish_folder(pathlib.Path(out), fill) / INDEX_HTML


__all__ = ("INDEX_HTML", "ReportData", "collect", "write_report")
