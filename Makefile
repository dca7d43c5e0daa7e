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

.PHONY: install sysdeps test test-fast demo lint format bench clean

$(STAMP): pyproject.toml requirements/constraints-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements/constraints-dev.txt -e ".[all,test]"
	touch $(STAMP)

install: $(STAMP)

sysdeps:
	@bash .ci/sysdeps.sh $(SYSDEPS)

test: install sysdeps
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest $(PYTEST_ARGS)

# Everything but the GUI tests (no Xvfb needed).
test-fast: install
	$(PY) -m pytest -m "not gui" $(PYTEST_ARGS)

demo: install sysdeps
	@if [ -n "$$DISPLAY" ]; then \
		$(VENV)/bin/patchwise demo --out $(DEMO_OUT); \
	else \
		xvfb-run -a -s "-screen 0 1600x1000x24" $(VENV)/bin/patchwise demo --out $(DEMO_OUT) --no-gui; \
	fi

lint: install
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

format: install
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) build dist .pytest_cache $(DEMO_OUT)
