# make run  : create .venv, install longtail with its pinned dependencies, run the default study
# make test : the same install, then the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DO_NOT_TRACK := 1
export KEDRO_DISABLE_TELEMETRY := true
export MPLBACKEND := Agg

.PHONY: install run test viz mlflow-ui benchmarks clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
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
