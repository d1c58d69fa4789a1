"""The report's PNG figures: loss against tokens per family, and the initialization-chain graph.

matplotlib is imported here only, inside the functions, with the Agg canvas
attached explicitly (no pyplot, no global figure state). Bytes are a function
of the data alone: matplotlib's default style whatever the user's matplotlibrc,
fixed figure sizes (the graph's grows with its number of runs, nothing else)
and dpi, the bundled DejaVu fonts, and no "Software" text chunk in the PNG.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping

from compiler.report.data import Family, ReportData, RunRow

DPI = 100
LOSS_SIZE = (9.6, 4.8)  # inches
GRAPH_ROW = 0.52  # inches per node row; a depth level is as wide as the longest label needs
GRAPH_FILE = "chains.png"
MAX_POINTS = 2000  # per curve; a 2.8B run logs ~50k steps, far more than a 960-pixel-wide axis shows

RC = {
    "svg.hashsalt": "runix-report",  # SVG ids (should a figure ever be saved as SVG) stay stable too
    "font.family": "DejaVu Sans",
    "axes.titlesize": 11,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
PNG_METADATA = {"Software": None}  # matplotlib's default names its version; PNG has no creation date unless given

BUILT_COLOR, PENDING_COLOR, EDGE_COLOR = "#d8ecd9", "#ffffff", "#555555"


@dataclasses.dataclass(frozen=True)
class FigureFile:
    filename: str
    width: int  # pixels
    height: int
    runs: tuple[str, ...]  # runs drawn (built, with a curve, for loss figures)


@dataclasses.dataclass(frozen=True)
class Figures:
    loss: Mapping[str, FigureFile | None]  # by family slug; None when no run of the family has a curve
    graph: FigureFile | None  # None when the spec set has no initialization chain
    evals: Mapping[str, FigureFile | None] = dataclasses.field(default_factory=dict)  # by family slug (eval_figures)


def render_figures(data: ReportData, folder: pathlib.Path) -> Figures:
    import matplotlib
    import matplotlib.style

    with matplotlib.style.context("default"), matplotlib.rc_context(RC):
        loss = {family.slug: _loss_figure(data, family, folder) for family in data.families}
        graph = _graph_figure(data, folder)
    from compiler.report.eval_figures import render_eval_figures

    return Figures(loss, graph, render_eval_figures(data, folder))


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, folder: pathlib.Path, filename: str, runs: tuple[str, ...]) -> FigureFile:
    figure.savefig(folder / filename, format="png", dpi=DPI, metadata=PNG_METADATA)
    width, height = figure.get_size_inches()
    return FigureFile(filename, round(width * DPI), round(height * DPI), runs)


def _palette(count: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def _token_formatter():
    from matplotlib.ticker import FuncFormatter

    from compiler.plan import format_count

    return FuncFormatter(lambda value, _pos: format_count(value) if value else "0")


def _loss_figure(data: ReportData, family: Family, folder: pathlib.Path) -> FigureFile | None:
    rows = {r.name: r for r in data.rows}
    drawn = [rows[m] for m in family.members if rows[m].metrics is not None and rows[m].metrics.curve]
    if not drawn:
        return None
    figure = _new_figure(*LOSS_SIZE)
    ax = figure.add_subplot()
    colors = dict(zip((r.name for r in drawn), _palette(len(drawn))))
    ends: dict[str, tuple[float, float]] = {}
    chained = False
    for row in drawn:
        curve = _thin(row.metrics.curve)
        xs = [row.offset_tokens + tokens for tokens, _ in curve]
        ys = [loss for _, loss in curve]
        parent = row.run.parent_name
        if parent in ends:  # join the parent's last point: a chain reads as one curve
            xs.insert(0, ends[parent][0])
            ys.insert(0, ends[parent][1])
        if row.offset_tokens:
            chained = True
            ax.axvline(row.offset_tokens, color=colors[row.name], linewidth=0.6, linestyle=":", alpha=0.7)
        ax.plot(xs, ys, color=colors[row.name], linewidth=1.4, label=f"{row.name}  {row.run.hash[:8]}")
        ends[row.name] = (xs[-1], ys[-1])
    ax.set_title(family.title, loc="left")
    ax.set_xlabel("tokens" + (" (cumulative along the initialization chain)" if chained else ""))
    ax.set_ylabel("training loss")
    ax.xaxis.set_major_formatter(_token_formatter())
    ax.grid(True, color="#dddddd", linewidth=0.6)
    if len(drawn) <= 8:
        ax.legend(loc="best", frameon=False)
    else:
        figure.legend(loc="outside right upper", frameon=False, fontsize=7)
    return _save(figure, folder, f"loss-{family.slug}.png", tuple(r.name for r in drawn))


def _thin(curve, limit: int = MAX_POINTS):
    """Every k-th point and the last, so a figure of 64 long runs stays quick to draw and small."""
    if len(curve) <= limit:
        return list(curve)
    stride = -(-len(curve) // limit)
    thinned = list(curve[::stride])
    if thinned[-1] != curve[-1]:
        thinned.append(curve[-1])
    return thinned


@dataclasses.dataclass
class _Node:
    key: str
    label: str
    parent: str | None
    built: bool | None  # None: a parent outside the spec set
    children: list[str] = dataclasses.field(default_factory=list)


def graph_nodes(rows: tuple[RunRow, ...]) -> list[_Node]:
    """Nodes of the chain graph: runs in an initialization chain, plus parents given by hash, parents first."""
    names = {r.name for r in rows}
    has_child = {r.run.parent_name for r in rows if r.run.parent_name in names}
    nodes: dict[str, _Node] = {}
    for row in rows:
        run = row.run
        external = run.parent_hash if run.parent_hash and run.parent_name not in names else None
        if not (external or run.parent_name in names or run.name in has_child):
            continue
        if external and f"hash:{external}" not in nodes:
            nodes[f"hash:{external}"] = _Node(f"hash:{external}", f"outside this spec set\n{external[:12]}", None, None)
        parent = f"hash:{external}" if external else run.parent_name
        nodes[run.name] = _Node(run.name, f"{run.name}\n{run.hash[:12]}", parent, row.built)
    for node in nodes.values():
        if node.parent is not None:
            nodes[node.parent].children.append(node.key)
    return list(nodes.values())


def _graph_figure(data: ReportData, folder: pathlib.Path) -> FigureFile | None:
    nodes = graph_nodes(data.rows)
    if not nodes:
        return None
    by_key = {n.key: n for n in nodes}
    place: dict[str, tuple[int, float]] = {}
    next_row = 0.0

    def lay_out(key: str, depth: int) -> float:  # a tidy tree: leaves on consecutive rows, parents centred
        nonlocal next_row
        node = by_key[key]
        if not node.children:
            y = next_row
            next_row += 1
        else:
            ys = [lay_out(child, depth + 1) for child in node.children]
            y = (ys[0] + ys[-1]) / 2
        place[key] = (depth, y)
        return y

    for node in nodes:
        if node.parent is None:
            lay_out(node.key, 0)
            next_row += 0.35  # a gap between chains
    rows_used = next_row - 0.35
    depth = max(d for d, _ in place.values()) + 1
    longest = max(len(line) for node in nodes for line in node.label.splitlines())
    column = max(2.0, 0.8 + longest * 0.075)  # 8-point DejaVu Sans: about 0.07 inch per character
    figure = _new_figure(0.3 + depth * column, 0.9 + rows_used * GRAPH_ROW)
    ax = figure.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(-0.5, depth - 0.5)
    ax.set_ylim(rows_used - 0.5, -0.5)
    texts = {}
    for node in nodes:
        x, y = place[node.key]
        face = PENDING_COLOR if node.built is False else BUILT_COLOR if node.built else "#eeeeee"
        box = {"boxstyle": "round,pad=0.35", "facecolor": face, "edgecolor": EDGE_COLOR if node.built is not None else "#999999",
               "linewidth": 0.8, "linestyle": "-" if node.built is not None else "--"}
        texts[node.key] = ax.text(x, y, node.label, ha="center", va="center", fontsize=8, bbox=box,
                                  color="#000000" if node.built is not False else "#666666")
    for node in nodes:
        if node.parent is not None:
            ax.annotate("", xy=(0, 0.5), xycoords=texts[node.key], xytext=(1, 0.5), textcoords=texts[node.parent],
                        arrowprops={"arrowstyle": "-|>", "color": EDGE_COLOR, "linewidth": 0.9, "shrinkA": 2,
                                    "shrinkB": 2})
    runs = [n for n in nodes if n.built is not None]
    built = sum(bool(n.built) for n in runs)
    figure.suptitle(f"Initialization chains: {len(runs)} runs, {built} built (green), parent → child",
                    x=0.01, ha="left", fontsize=10)
    return _save(figure, folder, GRAPH_FILE, tuple(n.key for n in runs))
