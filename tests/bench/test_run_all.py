"""`make bench`'s runner: every benchmark runs even after one misses, one summary table, exit 1 at the end."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

BENCHMARKS = REPO / "benchmarks"

MISS = "from goals import report\nimport sys\nsys.exit(0 if report('ratio', 0.6, '< 0.5') else 1)\n"
MEET = "from goals import report\nreport('speed', 120.0, '>= 100', unit=' runs/s')\nreport('info only', 3.0)\n"
CRASH = "raise RuntimeError('benchmark broke')\n"


def run_all(*paths):
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS), "COLUMNS": "160"}
    return subprocess.run([sys.executable, str(BENCHMARKS / "run_all.py"), *map(str, paths)], capture_output=True,
                          text=True, env=env, timeout=120)


def test_every_benchmark_runs_and_the_table_says_which_missed(tmp_path):
    for name, text in (("bench_a_miss.py", MISS), ("bench_b_crash.py", CRASH), ("bench_c_meet.py", MEET)):
        (tmp_path / name).write_text(text)
    result = run_all(*(tmp_path / n for n in ("bench_a_miss.py", "bench_b_crash.py", "bench_c_meet.py")))
    assert result.returncode == 1
    out = result.stdout
    assert out.index("== bench_a_miss.py") < out.index("== bench_b_crash.py") < out.index("== bench_c_meet.py")
    lines = out.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.strip() == "benchmarks"):]
    rows = {line.split("│")[1].strip() + "/" + line.split("│")[2].strip(): line for line in table if line.startswith("│")}
    assert "NO" in rows["bench_a_miss/ratio"] and "< 0.5" in rows["bench_a_miss/ratio"]
    assert "NO (exit 1)" in rows["bench_b_crash/(the benchmark itself)"]
    assert "yes" in rows["bench_c_meet/speed"] and "120 runs/s" in rows["bench_c_meet/speed"]
    assert "—" in rows["bench_c_meet/info only"]
    assert out.rstrip().endswith("some goal was missed or a benchmark failed")


def test_all_goals_met_exits_0(tmp_path):
    (tmp_path / "bench_ok.py").write_text(MEET)
    result = run_all(tmp_path / "bench_ok.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("every goal met")


def test_every_shipped_benchmark_reports_its_goals_machine_readably():
    for path in sorted(BENCHMARKS.glob("bench_*.py")):
        text = path.read_text()
        assert "from goals import report" in text and "report(" in text, path.name
