# Two commands matter: `make book` and `make test` (`make check`: the fast unit tests). Each creates .venv on first use;
# a venv made by one target is valid for the other (both install the same extras).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PARAMS ?= params/default.yaml
OUT ?= build/default

.PHONY: book test check lab kernel venv chromium smoke bench doctor clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[book,test,bench]" 2>&1 | grep -v "^WARNING: Location" ; test $${PIPESTATUS[0]} -eq 0
	$(PY) -c "import torch, torchvision, landscape_utils; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

book: $(STAMP)
	$(PY) -m landscape_utils.book --params $(PARAMS) --out $(OUT)
	@echo "Open $(OUT)/html/index.html"

smoke: $(STAMP)
	$(PY) -m landscape_utils.book --params params/smoke.yaml --out build/smoke

# Headless Chromium for the offline-rendering test; best effort (skipped with a message if absent).
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	 { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	   (apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) ; } || \
	 echo "chromium not installed: the offline-rendering test will be skipped"

test: $(STAMP) chromium
	$(PY) -m pytest -q

# The unit tests without the slow ones (book builds, browser, Ray, ResNet in float64,
# JupyterLab): the developer's loop. `make test` stays the full run (CI).
check: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# JupyterLab on book/: the project's kernel registered in the venv (`landscape-book`, the
# kernel the chapters' headers name), and .py chapters opening as notebooks by default
# (jupytext's viewer, set in the venv's lab settings). As root, Jupyter needs --allow-root.
# Extra server options go in LAB_ARGS, e.g. make lab LAB_ARGS="--no-browser --port=8899".
LAB_ARGS ?=
kernel: $(STAMP)
	$(PY) -c "from landscape_utils.book.driver import install_kernel; install_kernel()"
	mkdir -p $(VENV)/share/jupyter/lab/settings
	echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}}}' \
	  > $(VENV)/share/jupyter/lab/settings/overrides.json

lab: kernel
	cd book && exec ../$(VENV)/bin/jupyter lab --ServerApp.root_dir=. \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) $(LAB_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks

# What this machine offers the book (versions, GPUs, executors, kernel) and whether PARAMS can run here.
doctor: $(STAMP)
	$(PY) -m landscape_utils.book.doctor --params $(PARAMS)

clean:
	rm -rf build
