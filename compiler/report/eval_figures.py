"""The report's eval figures: per family, held-out bits per byte of each domain against tokens.

One PNG per family with one panel per held-out set (code, text, markup,
code-adjacent, …), one line per run, each point a checkpoint's eval at the
tokens the run had trained by then (cumulative along an initialization
chain, as the loss figures). Same determinism rules as compiler.report.figures
(its RC, DPI and PNG metadata).
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping

from compiler.report.data import Family, ReportData
from compiler.report.figures import DPI, RC, FigureFile, _new_figure, _palette, _save, _token_formatter

PANEL = (3.6, 3.0)  # inches per domain panel
MAX_PANELS_PER_ROW = 4


def render_eval_figures(data: ReportData, folder: pathlib.Path) -> Mapping[str, FigureFile | None]:
    """Family slug → its figure (None when no member has a built held-out eval)."""
    if data.evals is None:
        return {}
    import matplotlib
    import matplotlib.style

    with matplotlib.style.context("default"), matplotlib.rc_context(RC):
        return {family.slug: _family_figure(data, family, folder) for family in data.families}


def _family_figure(data: ReportData, family: Family, folder: pathlib.Path) -> FigureFile | None:
    results = data.evals
    columns = [c for c in results.columns if c.kind == "heldout"]
    rows = {r.name: r for r in data.rows}
    drawn = [m for m in family.members if any(results.curve(m, c.set) for c in columns)]
    if not columns or not drawn:
        return None
    per_row = min(MAX_PANELS_PER_ROW, len(columns))
    panel_rows = -(-len(columns) // per_row)
    figure = _new_figure(PANEL[0] * per_row, PANEL[1] * panel_rows + 0.6)
    colors = dict(zip(drawn, _palette(len(drawn))))
    axes = figure.subplots(panel_rows, per_row, squeeze=False)
    for index, column in enumerate(columns):
        ax = axes[index // per_row][index % per_row]
        for name in drawn:
            curve = results.curve(name, column.set, rows[name].offset_tokens)
            if curve:
                ax.plot([t for t, _ in curve], [v for _, v in curve], marker="o", markersize=3, linewidth=1.3,
                        color=colors[name], label=name)
        ax.set_title(f"{column.role} ({column.set})", loc="left")
        ax.set_xlabel("tokens")
        ax.set_ylabel("held-out bits per byte")
        ax.xaxis.set_major_formatter(_token_formatter())
        ax.grid(True, color="#dddddd", linewidth=0.6)
    for index in range(len(columns), panel_rows * per_row):
        axes[index // per_row][index % per_row].set_visible(False)
    figure.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", frameon=False,
                  ncols=min(4, len(drawn)), fontsize=7)
    figure.suptitle(f"Held-out bits per byte by domain: {family.title}", x=0.01, ha="left", fontsize=11)
    return _save(figure, folder, f"evals-{family.slug}.png", tuple(drawn))


__all__ = ("DPI", "render_eval_figures")
