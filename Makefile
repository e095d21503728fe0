# Two commands (README): `make demo` runs the main job on embedded defaults, `make test` the whole suite.
# Both create the virtualenv and install everything they need on a fresh machine (Python, Node, apt).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo hub test lint setup browser viewer-js bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	# a wheel install enables the Jupyter server extension by its data file; setuptools' editable wheels drop
	# data files (editable_wheel asks the dist for `has_data`, which does not exist), so write the same file
	install -D -m 644 extensions/jupyter-config/jupyter_server_config.d/imagelib_jupyter.json \
	  $(VENV)/etc/jupyter/jupyter_server_config.d/imagelib_jupyter.json
	touch $(STAMP)

setup: $(STAMP) viewer-js

# Viewer JavaScript (OpenSeadragon, Leaflet) is vendored from npm at build time, never from a CDN.
viewer-js: $(STAMP)
	npm ci --no-audit --no-fund --silent
	$(BIN)/python -m imagelib.tiling.vendor

# Debian's chromium for the browser tests (skipped by nothing: CI requires it).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: setup
	$(BIN)/imagelib demo

# The platform on loopback (dev IdP, imagelib serve, JupyterHub + configurable-http-proxy); Ctrl-C stops it.
hub: setup
	$(BIN)/python hub/local.py

lint: $(STAMP)
	$(BIN)/ruff check imagelib tests benchmarks extensions hub notebooks

test: setup browser lint
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo-out
