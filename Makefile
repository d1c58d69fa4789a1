# The two commands a fresh machine needs (each does all of its own set-up):
#   make demo   — the main job on the embedded default data
#   make test   — the test suite (what CI runs)
.PHONY: setup demo test test-slow bench lock-deps

RUNIX := .venv/bin/runix
PYTEST := .venv/bin/python -m pytest -q

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	@bash scripts/install_test_tools.sh
	$(PYTEST) tests

test-slow: setup
	$(PYTEST) tests -m slow

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done

# Re-resolve requirements.in into requirements.lock (developers only; needs uv).
lock-deps:
	uv pip compile requirements.in --generate-hashes --python-version 3.11 -o requirements.lock
