# make run  : create .venv, install longtail with its pinned dependencies, run the default study
# make test : the same install, then the whole test suite
# longtail runs on Python 3.10 to 3.13. Without PYTHON=..., the first of python3, python3.13,
# python3.12, python3.11, python3.10 on PATH that is one of those is used.
SUPPORTED := (3, 10) <= sys.version_info[:2] <= (3, 13)
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in python3 python3.13 python3.12 python3.11 python3.10; do \
	$$p -c 'import sys; sys.exit(not ($(SUPPORTED)))' >/dev/null 2>&1 && { echo $$p; break; }; done)
endif
VENV ?= .venv
BIN := $(VENV)/bin
export DO_NOT_TRACK := 1
export KEDRO_DISABLE_TELEMETRY := true
export MPLBACKEND := Agg

.PHONY: install run test viz mlflow-ui benchmarks clean

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no Python 3.10 to 3.13 on PATH; install one and pass it, e.g. make run PYTHON=python3.13" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(not ($(SUPPORTED)))' || { echo "make: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'); longtail needs 3.10 to 3.13: pass one, e.g. make run PYTHON=python3.13" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,peers]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/kedro run

test: install
	$(BIN)/pytest

viz: install
	$(BIN)/kedro viz run --host 127.0.0.1 --port 4141

# MLflow 3's UI opens on its GenAI pages unless told otherwise: the link below opens the runs table
mlflow-ui: install
	@echo "The study's runs: http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf build .pytest_cache test-output
