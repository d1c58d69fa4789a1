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

# The default suite leaves out the slow tier (tests marked @pytest.mark.slow: long end-to-end runs,
# ahead-of-time compiles, cluster tests); `make test-slow` runs exactly that tier. pytest exits 5 when
# a selection holds no test: said in one line rather than failing obscurely.
test: setup
	@bash scripts/install_test_tools.sh
	$(PYTEST) tests -m "not slow"

test-slow: setup
	@bash scripts/install_test_tools.sh
	@$(PYTEST) tests -m slow; code=$$?; \
	  if [ $$code -eq 5 ]; then echo "make test-slow: no test is marked slow"; exit 0; fi; exit $$code

# Every benchmark runs, even after one misses its goal; one summary table at the end; exit 1 if any missed.
bench: setup
	.venv/bin/python benchmarks/run_all.py

# Re-resolve requirements.in into requirements.lock (developers only; needs uv).
lock-deps:
	uv pip compile requirements.in --generate-hashes --python-version 3.11 -o requirements.lock
