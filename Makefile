# `make lab`: set everything up and start JupyterLab with the sandbox kernel.
# `make test`: set everything up and run the tests.
# `make lint`: ruff (lint and format), mypy, and the front end's linters. `make unit`: the Docker-free tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LAB_PORT ?= 8888
LAB_SSH_PORT ?= 2222
HUB_PORT ?= 8000
HUB_SERVICE_PORT ?= 8765
# Jupyter refuses to run as root unless told; root is how a fresh machine is usually set up.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: setup host host-test image test-image lab hub test unit lint demo bench clean dist

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

LAB_TOOLS := $(VENV)/.lab-tools
LABEXT := jupyter_sandbox/labextension/static/style.js
LABEXT_SOURCES := $(wildcard labextension/src/* labextension/style/*) labextension/package.json labextension/yarn.lock

# jlpm (JupyterLab's pinned yarn) builds the front end; it comes with JupyterLab.
$(LAB_TOOLS): | $(PY)
	$(PY) -m pip install --quiet "jupyterlab>=4,<5"
	touch $(LAB_TOOLS)

# The JupyterLab extension, built into jupyter_sandbox/labextension (shipped in the wheel).
$(LABEXT): $(LABEXT_SOURCES) | $(LAB_TOOLS)
	cd labextension && ../$(VENV)/bin/jlpm install && ../$(VENV)/bin/jlpm build:prod
	touch $(LABEXT)

$(STAMP): pyproject.toml | $(LABEXT) $(PY)
	SKIP_JUPYTER_BUILDER=1 $(PY) -m pip install --quiet -e ".[test,lab,lint]"
	$(VENV)/bin/jupyter-builder develop --overwrite .
	touch $(STAMP)

# Before the venv exists: python3-venv may be missing on a new machine.
host:
	bash scripts/ensure-host.sh

image: host $(STAMP) $(LABEXT)
	$(VENV)/bin/jupyter sandbox image build

# The tests never contact an image registry: their base is bootstrapped from Debian packages.
test-image: host-test $(STAMP) $(LABEXT)
	$(VENV)/bin/jupyter sandbox image build --bootstrap

# Before the venv exists: python3-venv may be missing on a new machine. Also Chromium for browser tests.
host-test:
	bash scripts/ensure-host.sh --with-browser

setup: image

# One line per step (the same targets as `make image`, run only when out of date), the tools' output in
# .lab.log (printed when a step fails), the URL last: scripts/lab.py.
lab:
	@$(PYTHON) scripts/lab.py --venv $(VENV) --python $(PYTHON) --port $(LAB_PORT) $(ALLOW_ROOT) --root-dir $(CURDIR)/examples --ssh-port $(LAB_SSH_PORT)

# The example JupyterHub (examples/hub/): two users, each one's server as that user's own account in hub
# mode, the sandbox service as the hub's service (it alone holds the engine). As root; the same one-line
# steps as `make lab`, the URL and the logins last: scripts/hub.py.
hub:
	@$(PYTHON) scripts/hub.py --venv $(VENV) --python $(PYTHON) --port $(HUB_PORT) --service-port $(HUB_SERVICE_PORT)

# Most tests wait on containers, browsers and servers rather than on the CPU, so they run in parallel
# workers (a test file stays on one worker, with its module's fixtures); the few that look at the
# whole engine or measure fairness run alone afterwards, and that pass checks nothing was left behind.
TEST_WORKERS ?= 2
test: test-image
	cd labextension && ../$(VENV)/bin/jlpm test
	status=0; \
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial and not disruptive" || status=$$?; \
	$(PY) -m pytest -m "serial or disruptive" || status=$$?; \
	exit $$status

# The layer that needs no Docker engine (pure logic, local processes): seconds, not minutes.
# The API fuzzer's and hypothesis's pytest plugins serve only the end-to-end suite; unloaded, they save
# a quarter of the layer's time.
unit: $(STAMP)
	$(PY) -m pytest -p no:schemathesis -p no:hypothesispytest tests/unit

# Fails on any finding: Python (ruff, mypy) and the front end (eslint, prettier, stylelint, tsc).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd labextension && $(abspath $(VENV))/bin/jlpm lint:check

# The sdist, then the wheel built from that sdist (as pip builds it from PyPI): only Python and Node are
# needed, the build's own requirements (pyproject.toml [build-system]) bring jlpm.
dist: | $(PY)
	rm -rf dist
	$(PY) -m pip install --quiet build
	$(PY) -m build --outdir dist .

demo: setup
	$(PY) examples/run_demo.py examples/demo.ipynb

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	-$(VENV)/bin/jupyter sandbox rm --all
	-$(VENV)/bin/jupyter sandbox prune
	rm -rf $(VENV) labextension/node_modules labextension/lib jupyter_sandbox/labextension
