"""The report in a real browser: headless Chromium loads index.html from disk, offline, with every image.

CI needs Debian's chromium package (`apt-get install -y chromium`); without
it this test is skipped and says so.
"""

from __future__ import annotations

import html.parser
import shutil
import subprocess
import tempfile

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")

# Injected into a copy of the page only (the report itself has no script): once every image has loaded
# or failed, it writes each one's natural size into the DOM, which --dump-dom then prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "image-probe";
  out.textContent = Array.from(document.images, img =>
    `${img.getAttribute("src")} ${img.complete} ${img.naturalWidth} ${img.naturalHeight}`).join("\\n");
  document.body.appendChild(out);
});
</script>"""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1200,2000", "--virtual-time-budget=5000"]


def chromium(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="runix-chromium-") as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout)


class Images(html.parser.HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.sources: list[str] = []
        self.probe = ""
        self._in_probe = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs.get("src"))
        self._in_probe = tag == "pre" and attrs.get("id") == "image-probe"

    def handle_endtag(self, tag):
        self._in_probe = False

    def handle_data(self, data):
        if self._in_probe:
            self.probe += data


def test_chromium_shows_every_image_of_the_page(tiny_report, tmp_path):
    from tests.report.test_report_page import png_size

    page = tmp_path / "page"
    shutil.copytree(tiny_report, page)
    index = page / "index.html"
    index.write_text(index.read_text(encoding="utf-8").replace("</body>", PROBE + "\n</body>"), encoding="utf-8")

    result = chromium("--dump-dom", index.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    dom = Images(result.stdout)
    expected = sorted(p.name for p in tiny_report.glob("*.png"))
    assert sorted(dom.sources) == expected and len(expected) == 7
    assert [name for name in expected if name.startswith("evals-")] == [
        "evals-chain-tiny-code.png", "evals-tags-sweep-tiny.png", "evals-tags-tiny.png"]
    assert 'id="eval-table"' in result.stdout and "★" in result.stdout  # the final eval table, best marked
    loaded = {}
    for line in dom.probe.strip().splitlines():
        src, complete, width, height = line.split()
        loaded[src] = (complete, int(width), int(height))
    assert sorted(loaded) == expected, dom.probe
    for src, (complete, width, height) in loaded.items():
        assert complete == "true" and (width, height) == png_size((tiny_report / src).read_bytes()), src

    shot = tmp_path / "screenshot.png"
    result = chromium(f"--screenshot={shot}", (tiny_report / "index.html").as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert png_size(shot.read_bytes()) == (1200, 2000)
