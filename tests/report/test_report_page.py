"""The rendered report: figures are valid, byte-stable PNGs; the table holds the store's values; the CLI."""

from __future__ import annotations

import html.parser
import json
import os
import struct
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.report.conftest import BUILDING, BUILT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Page(html.parser.HTMLParser):
    """The parts of index.html the tests read: <img> attributes, table rows by run, cell text by class."""

    def __init__(self, text: str):
        super().__init__()
        self.images: list[dict] = []
        self.rows: dict[str, dict] = {}
        self.links: list[str] = []
        self._row: dict | None = None
        self._cell: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        elif tag in ("link", "script"):
            self.links.append(tag)
        elif tag == "tr" and "data-hash" in attrs:
            self._row = {"hash": attrs["data-hash"], "class": attrs["class"], "cells": {}}
            self.rows[attrs["id"].removeprefix("run-")] = self._row
        elif tag == "td" and self._row is not None:
            self._cell = attrs["class"].split()[0]
            self._row["cells"][self._cell] = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._row is not None and self._cell is not None:
            self._row["cells"][self._cell] += data


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", "not a PNG"
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82", "PNG cut short"
    return struct.unpack(">II", data[16:24])


def test_every_figure_exists_is_a_png_of_its_stated_size(tiny_report):
    page = Page((tiny_report / "index.html").read_text(encoding="utf-8"))
    names = [img["src"] for img in page.images]
    assert names == ["evals-tags-sweep-tiny.png", "evals-tags-tiny.png", "evals-chain-tiny-code.png",
                     "loss-tags-sweep-tiny.png", "loss-tags-tiny.png", "loss-chain-tiny-code.png", "chains.png"]
    for img in page.images:
        width, height = png_size((tiny_report / img["src"]).read_bytes())
        assert (width, height) == (int(img["width"]), int(img["height"]))
        assert img["alt"]
    assert sorted(p.name for p in tiny_report.glob("*.png")) == sorted(names)
    assert page.links == []  # no stylesheet, no script: nothing to fetch


def test_the_eval_table_marks_the_best_and_the_change_against_the_family_baseline(tiny_report):
    import re

    text = (tiny_report / "index.html").read_text(encoding="utf-8")
    assert text.index('id="evals"') < text.index('id="families"')  # runs are judged by evals first
    assert "Training loss is measured on each run's own mixture" in text

    def cell(run: str, set_name: str) -> str:
        row = re.search(rf'<tr data-run="{run}">(.*?)</tr>', text).group(1)
        return re.sub(r"<[^>]+>", "", re.search(rf'data-set="{set_name}">(.*?)</td>', row).group(1)).strip()

    # code bits/byte at the final step: tiny-code 2.0+1/60, tiny-cooldown 1.7+1/20 (the best, lowest).
    assert cell("tiny-cooldown", "code") == "★ 1.7500 +13.2%"  # vs its family baseline tiny-code, + is better
    assert cell("tiny-code", "code") == "2.0167"  # the baseline itself: no change
    assert cell("tiny-sweep-code50", "code") == f"2.2333 {100 * (2.4 - 2.2) / (2.4 + 1 / 30):+.1f}%"
    assert cell("tiny-cooldown", "next-line") == "0.450 -47.1%"  # accuracy, higher is better: 0.45 against 0.85
    assert cell("tiny-code", "next-line") == "★ 0.850"
    assert 'data-run="tiny-sweep-code100"' not in text  # not built: no eval row


def test_the_table_holds_the_runs_real_values(tiny_report, tiny_report_data, tiny_project):
    page = Page((tiny_report / "index.html").read_text(encoding="utf-8"))
    assert list(page.rows) == [run.name for run in tiny_project.runs.values()]
    for name in BUILT:
        run, row, data = tiny_project.runs[name], page.rows[name], tiny_report_data.row(name)
        assert row["hash"] == run.hash and row["cells"]["hash"] == run.hash[:12]
        assert row["cells"]["final-loss"] == f"{data.metrics.final_loss:.4f}"
        assert row["cells"]["tokens"] == f"{run.spec.total_tokens:,}"
        assert row["cells"]["status"] == "built"
        assert row["cells"]["chip-hours-measured"].startswith(f"{data.chip_hours_measured:.3g}")
    assert page.rows["tiny-code-text"]["cells"]["parent"] == "tiny-code"
    pending = page.rows[BUILDING]
    assert pending["class"] == "not-built" and pending["cells"]["status"] == "not built (building)"
    assert pending["cells"]["final-loss"] == "–" and pending["cells"]["replay"] == "–"
    assert page.rows["tiny-sweep-code0"]["cells"]["replay"].startswith("diverged steps 10:30")
    report = json.loads((tiny_report / "report.json").read_text())
    assert {r["name"]: r["final_loss"] for r in report["runs"]}["tiny-code"] == tiny_report_data.row("tiny-code").metrics.final_loss


def test_two_renders_are_byte_identical(tiny_report, tiny_report_data, tmp_path):
    from compiler.report import write_report

    again = write_report(tiny_report_data, tmp_path / "again").parent
    first = {p.name: p.read_bytes() for p in tiny_report.iterdir()}
    second = {p.name: p.read_bytes() for p in again.iterdir()}
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], f"{name} differs between two renders"
    assert b"Software" not in first["chains.png"]


def test_a_failed_render_keeps_the_previous_report(tiny_report_data, tmp_path, monkeypatch):
    from compiler.report import figures, write_report

    out = tmp_path / "report"
    write_report(tiny_report_data, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(figures, "_graph_figure", broken)
    with pytest.raises(RuntimeError):
        write_report(tiny_report_data, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temporary folder left behind


def test_cli_writes_to_runix_report_by_default_and_replaces_its_own_report(tiny_project, cli):
    root = tiny_project.root
    result = cli("report", "specs/tiny", cwd=root)
    assert result.returncode == 0, result.stderr
    index = root / "runix-report" / "tiny" / "index.html"
    assert f"wrote {index}" in result.stdout and "6 runs, 5 built, 7 figures" in result.stdout
    text = index.read_text()
    assert str(root / ".runix" / "store") in text and "lockfiles/tiny.lock.json" in text
    assert cli("report", "specs/tiny", "--mfu", "0.5", cwd=root).returncode == 0  # a report replaces a report
    assert "MFU set with --mfu" in index.read_text()


def test_cli_bad_input_exits_2_and_writes_nothing(tiny_project, cli, tmp_path):
    root = tiny_project.root
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "todo.txt").write_text("keep me")
    result = cli("report", "specs/tiny", "--out", precious, cwd=root)
    assert result.returncode == 2 and "holds no runix report" in result.stderr
    assert [p.name for p in precious.iterdir()] == ["todo.txt"]
    assert cli("report", "specs/tiny", "--mfu", "2", cwd=root).returncode == 2
    unlocked = tmp_path / "unlocked"
    unlocked.mkdir()
    (unlocked / "pyproject.toml").write_text("")
    (unlocked / "run.yaml").write_text((REPO / "specs" / "tiny" / "chain.yaml").read_text())
    result = cli("report", "run.yaml", "--out", tmp_path / "out", cwd=unlocked)
    assert result.returncode == 2 and "no lockfile" in result.stderr
    assert not (tmp_path / "out").exists() and not (unlocked / "runix-report").exists()
    assert "Traceback" not in result.stderr


def test_the_cli_never_imports_matplotlib_for_other_commands():
    probe = ("import sys; sys.argv = ['runix', 'validate', 'specs/tiny'];"
             "from compiler.cli import main; code = main();"
             "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'PIL', 'jax')));"
             "sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
