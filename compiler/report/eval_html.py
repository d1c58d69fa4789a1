"""The report's first section: the runs judged by held-out evals (compiler.eval_results), not by training loss.

Per family a figure of held-out bits per byte per domain against tokens, then
one table of every run's final eval metrics: the best value of each column
marked (★, bold), and each run's relative change against its family's
baseline run, positive when better (the "+8.2% over text-only" of the
To-Code paper).
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from compiler.eval_results import family_baselines, format_change, format_value, table_rows
from compiler.report.data import ReportData

EVAL_CSS = """
td.best { font-weight: 700; background: #e8f5e9; }
td .change { color: #555; font-size: 12px; }
td .change.better { color: #1b5e20; }
td .change.worse { color: #b3261e; }
"""


def eval_section(data: ReportData, figures: Mapping) -> list[str]:
    out = ['<section id="evals">', "<h2>1. Held-out evaluations</h2>"]
    results = data.evals
    if results is None:
        return [*out, '<p class="note">No run of this spec set has evals (add an <code>evals:</code> section to '
                      "judge runs on held-out data).</p>", "</section>"]
    built = results.expected - len(results.missing)
    out.append(f'<p class="note">Every run is judged on the same bytes of each held-out set (bits per byte compares '
               f"runs across tokenizers; lower is better) and on multiple-choice tasks (accuracy; higher is better). "
               f"{built} of {results.expected} evals are built"
               f"{' (build the rest with <code>runix eval</code>)' if results.missing else ''}.</p>")
    for family in data.families:
        figure = figures.get(family.slug)
        if figure is None:
            continue
        out += [f'<h3 id="evals-{escape(family.slug)}">{escape(family.title)}</h3>',
                f'<figure><img src="{escape(figure.filename)}" alt="Held-out bits per byte by domain: '
                f'{escape(family.title)}" width="{figure.width}" height="{figure.height}"></figure>']
    out += _final_table(data)
    out.append("</section>")
    return out


def _final_table(data: ReportData) -> list[str]:
    results = data.evals
    baselines = family_baselines(data.families)
    rows = table_rows(results, baselines)
    if not rows:
        return ['<p class="note">No final eval is built yet.</p>']
    head = "".join(f'<th class="num">{escape(c.set)}<br><small>{escape(c.label)}, {escape(c.better)} is better'
                   f"</small></th>" for c in results.columns)
    out = ['<h3 id="eval-table">Final eval metrics per run</h3>',
           '<p class="note">At each run\'s final checkpoint. ★ marks the best run of each column; the percentage is '
           "the change against the run's family baseline (the family's first run), positive when better.</p>",
           '<div class="table-wrap"><table class="evals">',
           f"<thead><tr><th>run</th><th>baseline</th>{head}</tr></thead>", "<tbody>"]
    for row in rows:
        cells = []
        for column in results.columns:
            cell = row["cells"][column.set]
            text = escape(format_value(cell["value"], column))
            if cell["best"]:
                text = f"★ {text}"
            change = cell["change"]
            if change is not None:
                mood = "better" if change > 0 else "worse" if change < 0 else ""
                text += f' <span class="change {mood}">{escape(format_change(change))}</span>'
            cls = "num best" if cell["best"] else "num"
            cells.append(f'<td class="{cls}" data-set="{escape(column.set)}">{text}</td>')
        base = row["baseline"]
        base_cell = "–" if base in (None, row["run"]) else f'<a href="#run-{escape(base)}">{escape(base)}</a>'
        out.append(f'<tr data-run="{escape(row["run"])}"><td>{escape(row["run"])}</td><td>{base_cell}</td>'
                   + "".join(cells) + "</tr>")
    out += ["</tbody>", "</table></div>"]
    return out
