# Two entry points (see README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
CORES ?= 2
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# The workflow's rules call the `bratsflow` command from this environment.
export PATH := $(BIN):$(PATH)

.PHONY: demo test

demo: $(VENV)/.installed-workflow
	snakemake --cores $(CORES)

test: $(VENV)/.installed-test
	pytest -n $(CORES) --dist loadgroup --no-loadscope-reorder

$(VENV)/bin/pip:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade "pip>=24"

# pyradiomics 3.0.1 ships as an sdist whose setup imports numpy and versioneer: build it against this numpy.
$(VENV)/.installed-%: pyproject.toml | $(VENV)/bin/pip
	$(BIN)/pip install versioneer wheel "numpy>=2.0,<2.4"
	$(BIN)/pip install --no-build-isolation pyradiomics==3.0.1
	$(BIN)/pip install -e ".[$*]"
	touch $@
