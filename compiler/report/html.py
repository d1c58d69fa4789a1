"""The report page: one self-contained HTML file beside its PNG figures.

No server, no network: inline CSS, system fonts, no script, images by
relative file name. Every value comes from ReportData, and nothing reads a
clock, so the same store content gives the same page.
"""

from __future__ import annotations

from html import escape

from compiler.plan import format_count, format_hours
from compiler.report.data import Family, ReportData, RunRow
from compiler.report.eval_html import EVAL_CSS, eval_section
from compiler.report.figures import FigureFile, Figures

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1d1d1f; background: #fafafa; margin: 0; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 6px; }
h1 .set { color: #1b5e20; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 2px solid #d0d7de; }
h3 { font-size: 16px; margin: 26px 0 4px; }
p { margin: 4px 0; }
.meta, .why, .note { color: #555; }
code, .hash { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
nav { margin: 14px 0 0; padding: 10px 14px; background: #fff; border: 1px solid #d0d7de; border-radius: 6px; }
nav ol { margin: 4px 0 0; padding-left: 22px; }
nav ol ol { list-style: lower-alpha; columns: 2; column-gap: 32px; }
a { color: #0b57d0; text-decoration: none; }
a:hover { text-decoration: underline; }
.summary { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0 0; padding: 0; list-style: none; }
.summary li { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 14px; }
.summary b { display: block; font-size: 18px; }
figure { margin: 10px 0 0; background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px;
         overflow-x: auto; }
figure img { display: block; max-width: 100%; height: auto; }
.members { margin: 4px 0 0; color: #333; }
.pending { color: #8a6d00; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #d0d7de; font-size: 13px; }
th, td { padding: 5px 8px; border-bottom: 1px solid #e5e8eb; text-align: left; vertical-align: top; white-space: nowrap; }
th { background: #f0f3f6; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.not-built td { color: #777; }
td.status-built { color: #1b5e20; font-weight: 600; }
td.replay, td.status { white-space: normal; min-width: 9em; }
td small { color: #777; }
.table-wrap { overflow-x: auto; }
"""


def render_page(data: ReportData, figures: Figures) -> str:
    rows = {r.name: r for r in data.rows}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>runix report: {escape(data.spec_set_name)}</title>",
        f"<style>{CSS}{EVAL_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        *_header(data, figures),
        *eval_section(data, figures.evals),
        '<section id="families">',
        "<h2>2. Training loss against tokens, by family</h2>",
        '<p class="note">Training loss is measured on each run\'s own mixture, so it compares the data as much as '
        "the model; judge runs by the held-out evaluations above. A family is a set of runs whose tags are equal "
        "but for one tag (at least three runs: a "
        "sweep, a recipe comparison), or an initialization chain: a root run and every run started from it, each "
        "plotted after its parent's last token so the chain reads as one curve. Runs in neither appear under "
        "“Other runs”.</p>",
    ]
    for family in data.families:
        parts += _family_section(family, figures.loss.get(family.slug), rows)
    parts += ["</section>", '<section id="chains">', "<h2>3. Initialization chains</h2>"]
    if figures.graph is None:
        parts.append('<p class="note">No run of this spec set starts from a parent: there is no chain to draw.</p>')
    else:
        parts += [
            '<p class="note">Each arrow goes from a parent to the run initialized from it; boxes show the run '
            "name and the first 12 hex digits of its hash, green when built.</p>",
            _figure(figures.graph, "Initialization chains of the spec set"),
        ]
    parts += ["</section>", *_table(data), "</main>", "</body>", "</html>", ""]
    return "\n".join(parts)


def _header(data: ReportData, figures: Figures) -> list[str]:
    built = [r for r in data.rows if r.built]
    estimated = sum(r.chip_hours_estimated for r in data.rows)
    measured = [r.chip_hours_measured for r in built if r.chip_hours_measured is not None]
    accelerators = sorted({f"{r.accelerator} (MFU {r.mfu:.2f})" for r in data.rows})
    meta = [f"spec set <code>{escape(' '.join(data.paths) or data.spec_set_name)}</code>",
            f"store <code>{escape(data.store_url)}</code>"]
    if data.lockfile:
        meta.append(f"lockfile <code>{escape(data.lockfile)}</code>")
    toc = [f'<li><a href="#family-{escape(f.slug)}">{escape(f.title)}</a></li>' for f in data.families]
    return [
        "<header>",
        f'<h1>runix report: <span class="set">{escape(data.spec_set_name)}</span></h1>',
        f'<p class="meta">{" · ".join(meta)}</p>',
        '<ul class="summary">',
        f"<li><b>{len(data.rows)}</b>runs</li>",
        f"<li><b>{len(built)}</b>built</li>",
        f"<li><b>{len(data.rows) - len(built)}</b>not built</li>",
        f"<li><b>{format_hours(estimated)}</b>chip-hours estimated (all runs)</li>",
        f"<li><b>{format_hours(sum(measured)) if measured else '–'}</b>chip-hours measured (built runs)</li>",
        "</ul>",
        f'<p class="note">Estimates: the price <code>runix compile</code> gives each run on its own mesh, '
        f"calibrated on the store's built runs where there are some: "
        f"{escape(', '.join(accelerators))}"
        f"{' (MFU set with --mfu)' if data.mfu_override is not None else ''}.</p>",
        "<nav><b>Contents</b><ol>",
        *(['<li><a href="#evals">Held-out evaluations</a></li>'] if data.evals is not None else []),
        '<li><a href="#families">Training loss against tokens, by family</a><ol>',
        *toc,
        "</ol></li>",
        '<li><a href="#chains">Initialization chains</a></li>',
        '<li><a href="#runs">Runs</a></li>',
        "</ol></nav>",
        "</header>",
    ]


def _family_section(family: Family, figure: FigureFile | None, rows: dict[str, RunRow]) -> list[str]:
    members = [rows[m] for m in family.members]
    pending = [r.name for r in members if not r.built]
    out = [
        f'<section class="family" id="family-{escape(family.slug)}">',
        f"<h3>{escape(family.title)}</h3>",
        f'<p class="why">{escape(family.why)}</p>',
        f'<p class="members">{len(members)} runs: '
        + ", ".join(f'<a href="#run-{escape(r.name)}">{escape(r.name)}</a>' for r in members) + "</p>",
    ]
    if pending:
        out.append(f'<p class="pending">Not built yet: {escape(", ".join(pending))}</p>')
    if figure is None:
        out.append('<p class="note">No run of this family is built yet: nothing to plot.</p>')
    else:
        out.append(_figure(figure, f"Training loss (on each run's own mixture) against tokens: {family.title}"))
    out.append("</section>")
    return out


def _figure(figure: FigureFile, alt: str) -> str:
    return (f'<figure><img src="{escape(figure.filename)}" alt="{escape(alt)}" width="{figure.width}" '
            f'height="{figure.height}"></figure>')


COLUMNS = (
    ("hash", "hash", ""), ("run", "run", ""), ("parent", "parent", ""), ("status", "status", ""),
    ("tokens", "tokens", "num"), ("final training loss", "final-loss", "num"), ("chip-h estimated", "chip-hours-estimated", "num"),
    ("chip-h measured", "chip-hours-measured", "num"), ("replay", "replay", ""),
)


def _table(data: ReportData) -> list[str]:
    names = {r.name for r in data.rows}
    head = "".join(f'<th class="{cls}">{escape(label)}</th>' for label, _, cls in COLUMNS)
    out = ['<section id="runs">', "<h2>4. Runs</h2>",
           '<p class="note">Parents before children. Tokens: trained (built runs) or planned (the rest). Final training loss (on the run\'s own mixture): '
           "the last step's loss from the run's digest record. Chip-hours estimated: the price <code>runix compile</code> gives the run "
           "(its steps on its mesh from the step-time model, calibrated on the timing records of the store's built runs, plus compile, "
           "startup and checkpoint saves; evals apart); a built run is priced without its own record, as it was before it was built; "
           "measured: the build's wall time (sum of its step times in metrics.jsonl) × its chips.</p>",
           '<div class="table-wrap"><table>', f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for row in data.rows:
        out.append(_table_row(row, names))
    out += ["</tbody>", "</table></div>", "</section>"]
    return out


def _table_row(row: RunRow, names: set[str]) -> str:
    run, m = row.run, row.metrics
    if run.parent_name in names:
        parent = f'<a href="#run-{escape(run.parent_name)}">{escape(run.parent_name)}</a>'
    elif run.parent_hash:
        parent = f'<code title="{run.parent_hash}">{run.parent_hash[:12]}</code> <small>(by hash)</small>'
    else:
        parent = "–"
    if m is not None and m.tokens_trained is not None:
        tokens = f'<span title="{format_count(m.tokens_trained)}">{m.tokens_trained:,}</span>'
        if m.tokens_trained != row.planned_tokens:
            tokens += f" <small>of {row.planned_tokens:,}</small>"
    else:
        tokens = f'<span title="{format_count(row.planned_tokens)}">{row.planned_tokens:,}</span> <small>planned</small>'
    if m is not None and m.final_loss is not None:
        loss = f'<span title="{m.final_loss!r} ({escape(m.final_loss_source)})">{m.final_loss:.4f}</span>'
    else:
        loss = "–"
    measured = row.chip_hours_measured
    if measured is not None:
        seconds = m.wall_seconds
        measured_cell = (f"{format_hours(measured)} <small>({_duration(seconds)} × {row.chips} "
                         f"chip{'s' if row.chips != 1 else ''})</small>")
    else:
        measured_cell = "–"
    estimated = (f'<span title="{row.accelerator}, {row.chips} chips, MFU {row.mfu:.2f}, price {escape(row.price_source)}">'
                 f"{format_hours(row.chip_hours_estimated)}</span>")
    problems = f' <small title="{escape("; ".join(m.problems))}">⚠</small>' if m is not None and m.problems else ""
    cells = {
        "hash": f'<code title="{run.hash}">{run.short_hash}</code>',
        "run": escape(run.name),
        "parent": parent,
        "status": escape(row.status) + problems,
        "tokens": tokens,
        "final-loss": loss,
        "chip-hours-estimated": estimated,
        "chip-hours-measured": measured_cell,
        "replay": escape(str(row.replay)) if row.built else "–",
    }
    classes = {"status": "status-built" if row.built else ""}
    tds = "".join(
        f'<td class="{" ".join(filter(None, (key, cls, classes.get(key, ""))))}">{cells[key]}</td>'
        for _, key, cls in COLUMNS
    )
    state = "built" if row.built else "not-built"
    return f'<tr id="run-{escape(run.name)}" class="{state}" data-hash="{run.hash}">{tds}</tr>'


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"
