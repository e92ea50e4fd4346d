# The quick start as commands that set themselves up (README: Quick start). `make run` and
# `make test` first make `.venv` (the pinned CPU PyTorch wheel and the project with its dev
# extra) when it is missing or older than pyproject.toml; `make install` only does that.
# ARGS passes arguments on: make run ARGS="--timeout 600", make test ARGS="-m \"not slow\"".
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.admet-installed

.PHONY: install run test

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install torch==2.13.0 -e ".[dev]"
	@if $(VENV)/bin/pip list 2>/dev/null | grep -qi "^nvidia-"; then echo "error: CUDA (nvidia-*) packages were installed" >&2; exit 1; fi
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/python -m admet.hpo run --study joint_sampling $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(ARGS)
