# One-command install + run.  `make test` and `make demo` work on a fresh Debian machine:
# they create .venv, install the package with its extras, and (as root) apt-get the
# Xvfb/Mesa libraries that napari needs for OpenGL.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSDEPS := xvfb xauth libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcb-cursor0 \
	libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 \
	libxcb-shape0 libxcb-xfixes0 libxcb-xinerama0 libdbus-1-3 libfontconfig1
PYTEST_ARGS ?=
DEMO_OUT ?= demo-output

.PHONY: install sysdeps test test-all test-fast demo screenshots lint format bench clean

$(STAMP): pyproject.toml requirements/constraints-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements/constraints-dev.txt -e ".[all,test,bench]"
	touch $(STAMP)

install: $(STAMP)

sysdeps:
	@bash .ci/sysdeps.sh $(SYSDEPS)

test: install sysdeps
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The whole suite, the slow walk-throughs included (tests marked slow).
test-all: install sysdeps
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest $(PYTEST_ARGS)

# Everything but the GUI tests (no Xvfb needed).
test-fast: install
	$(PY) -m pytest -m "not gui and not slow" $(PYTEST_ARGS)

demo: install sysdeps
	@if [ -n "$$DISPLAY" ]; then \
		$(VENV)/bin/patchwise demo --out $(DEMO_OUT); \
	else \
		xvfb-run -a -s "-screen 0 1600x1000x24" $(VENV)/bin/patchwise demo --out $(DEMO_OUT) --no-gui; \
	fi

# Every screenshot in docs/images/ (README and docs), from the demo's trained runs.
screenshots: install sysdeps
	$(XVFB) $(PY) docs/make_screenshots.py
	$(XVFB) $(PY) docs/make_geojson_screenshot.py
	$(XVFB) $(PY) docs/make_wsi_screenshot.py
	$(XVFB) $(PY) docs/make_slices_screenshot.py

# Every benchmark's quick mode (small inputs, same-run baselines, the same tables), one at a
# time; each one's output is printed and kept in benchmarks/_results/<name>.txt, and the
# rule fails if any benchmark fails. `make bench BENCH_ARGS=` runs the full sizes (hours;
# figure1_sample then redraws docs/images/figure1_sample.png).
BENCH_ARGS ?= --quick
XVFB := xvfb-run -a -s "-screen 0 1600x1000x24"

bench: install sysdeps
	@set -o pipefail; mkdir -p benchmarks/_results; failed=""; start=$$SECONDS; \
	run() { \
		name=$$1; shift; echo "=== $$name: $$* $(BENCH_ARGS)"; t0=$$SECONDS; \
		if PYTHONUNBUFFERED=1 "$$@" $(BENCH_ARGS) 2>&1 | tee benchmarks/_results/$$name.txt; \
		then echo "=== $$name: ok ($$((SECONDS - t0)) s)"; \
		else echo "=== $$name: FAILED ($$((SECONDS - t0)) s)"; failed="$$failed $$name"; fi; \
	}; \
	run bench_stats $(PY) benchmarks/bench_stats.py --intensity; \
	run bench_stats_headless $(PY) benchmarks/bench_stats.py --headless --before; \
	run bench_read $(PY) benchmarks/bench_read.py; \
	run bench_annotations $(PY) benchmarks/bench_annotations.py; \
	run bench_regroup $(PY) benchmarks/bench_regroup.py; \
	run bench_attributes $(PY) benchmarks/bench_attributes.py; \
	run bench_train $(PY) benchmarks/bench_train.py; \
	run bench_gpu $(PY) benchmarks/bench_gpu.py; \
	run bench_model_panel $(PY) benchmarks/bench_model_panel.py; \
	run bench_cohort $(PY) benchmarks/bench_cohort.py; \
	run figure1_sample $(PY) benchmarks/figure1_sample.py; \
	run planted_bias $(PY) benchmarks/planted_bias.py; \
	run hidden_shortcut $(PY) benchmarks/hidden_shortcut.py; \
	run bench_head $(PY) benchmarks/bench_head.py; \
	run bench_encoder_heads $(PY) benchmarks/bench_encoder_heads.py; \
	run bench_dfr $(PY) benchmarks/bench_dfr.py; \
	run bench_embed $(PY) benchmarks/bench_embed.py; \
	run bench_wsi_throughput $(PY) benchmarks/bench_wsi_throughput.py; \
	run bench_open $(XVFB) $(PY) benchmarks/bench_open.py; \
	run bench_viewer $(XVFB) $(PY) benchmarks/bench_viewer.py; \
	run bench_compare $(XVFB) $(PY) benchmarks/bench_compare.py; \
	echo "=== benchmarks: $$((SECONDS - start)) s in all"; \
	if [ -n "$$failed" ]; then echo "=== failed:$$failed"; exit 1; fi

lint: install
	$(PY) -m ruff check src tests benchmarks tools
	$(PY) -m ruff format --check src tests benchmarks tools

format: install
	$(PY) -m ruff format src tests benchmarks tools
	$(PY) -m ruff check --fix src tests benchmarks tools

clean:
	rm -rf $(VENV) build dist .pytest_cache $(DEMO_OUT)
