# Entry points for operators and CI. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export MOLECULE_GLOB := molecule/*/molecule.yml
export ANSIBLE_FORCE_COLOR := 0
LAB_INV := .lab/lab
N ?= 2

.PHONY: help venv deps lab lab-down unit lint syntax collection sanity galaxy matrix molecule integration bench bench-first test clean

help:
	@echo "make lab        bring up $(N) lab hosts, deploy.yml, verify.yml (N=4 make lab for four)"
	@echo "make lab-down   remove the lab hosts"
	@echo "make test       unit tests, lint, syntax checks, collection build, sanity, galaxy, matrix,"
	@echo "                integration, molecule, bench"
	@echo "make sanity     ansible-test sanity on the built collection, installed in a temporary tree"
	@echo "make galaxy     Galaxy's importer (galaxy-importer) on the built collection, in .venv-galaxy"
	@echo "make matrix     syntax checks, unit tests and the plan under every claimed ansible-core"
	@echo "make bench      plan step on 2-512 generated nodes; port mesh wall time on 2, 4 and 8 lab hosts;"
	@echo "                sglang-ops status on 2 and 8; a no-op deploy.yml on 2 and 8 sealed hosts"
	@echo "make bench-first  the first deploy.yml on 2 fresh lab hosts against pip + ray start by hand"

$(BIN)/.installed: requirements/control.txt requirements/test.txt cli/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements/test.txt
	# sglang-ops (cli/): editable, it imports the collection's Python from this checkout
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e cli
	touch $@

venv: $(BIN)/.installed

deps:
	$(PYTHON) tools/lab.py deps

lab: venv deps
	$(BIN)/python tools/lab.py up --count $(N)
	ansible-playbook playbooks/deploy.yml -i $(LAB_INV)
	ansible-playbook playbooks/verify.yml -i $(LAB_INV)

lab-down: venv
	$(BIN)/python tools/lab.py down

# A test file's tests on one worker: its module fixtures (the refusal corpus's one driver run,
# 28 s) run once, not once per worker. Three workers on two cores: the fence's peer tests mostly
# sleep out their timeouts. Measured: 52-59 s against 87-90 s with -n auto (make matrix too).
export UNIT_XDIST := -n 3 --dist loadfile
unit: venv
	$(BIN)/python -m pytest $(UNIT_XDIST) tests/unit

lint: venv
	ansible-lint
	antsibull-changelog lint
	bash tools/render_docs.sh

syntax: venv
	for p in playbooks/*.yml; do ansible-playbook --syntax-check -i inventories/two_node $$p || exit 1; done

collection: venv
	rm -f sglang_ops-cluster-*.tar.gz
	ansible-galaxy collection build --force .

# ansible-test sanity on the tarball as Galaxy gets it (tools/sanity.sh).
sanity: venv
	PYTHON=$(CURDIR)/$(BIN)/python bash tools/sanity.sh

# Galaxy's importer on the tarball, in its own venv (tools/galaxy.sh, requirements/galaxy.txt).
galaxy:
	PYTHON=$(PYTHON) bash tools/galaxy.sh

# One venv per claimed ansible-core (requirements/matrix.txt, meta/runtime.yml): target-Python
# parse, syntax checks, unit tests, the plan on the sample inventory (tools/matrix.sh).
matrix:
	PYTHON=$(PYTHON) bash tools/matrix.sh

integration: venv deps
	$(BIN)/python -m pytest tests/integration --durations=30

molecule: venv deps
	molecule test -s default

# Mesh wall time on 2, 4 and 8 lab hosts (preflight must pass on each): the slow scenario.
bench: venv deps
	$(BIN)/python tools/bench_plan.py --rounds 3
	$(BIN)/python tools/bench_mesh.py --rounds 3
	$(BIN)/python tools/bench_cli.py --rounds 3
	$(BIN)/python tools/bench_noop.py --sealed 2 8 --rounds 3

# The first deploy on 2 fresh hosts against its floor (pip and Ray by hand): about 20 minutes,
# not in `test`.
bench-first: venv deps
	$(BIN)/python tools/bench_first.py --rounds 3

# The matrix skips the unit tests of the tooling venv's own ansible-core: `unit` runs them.
# The lab's host image, wheelhouse and model (debootstrap and downloads: minutes on a fresh
# machine) are made in the background while the checks that need no lab run; the first
# `lab.py up` waits for them on the lab's lock, and makes what a failed background run left out.
# One stage at a time: on two cores the stages are CPU-bound. Measured: the checks and molecule
# run beside the integration tests made those 13.6 minutes slower, more than the 11.9 they took
# alone, and a timing test polled too late.
test: export MATRIX_UNIT_DONE := $(shell sed -n 's/^ansible-core==//p' requirements/control.txt)
test: venv deps
	mkdir -p .lab && $(BIN)/python tools/lab.py cache > .lab/cache.log 2>&1 &
	$(MAKE) unit lint syntax collection sanity galaxy matrix integration molecule bench

clean: lab-down
	rm -rf $(VENV) .venv-galaxy .venv-matrix sglang_ops-cluster-*.tar.gz
