# Two commands on a fresh machine: `make run` and `make test`. Setup is idempotent: it reinstalls
# only when requirements.lock or pyproject.toml changed since the last successful install.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= runs/synthetic

AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed

.PHONY: setup airflow run test lint ui dashboard bench clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps torchrec==1.8.0
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# Airflow gets its own venv: it conflicts with mlflow's fastapi pin. Its tasks call $(PY).
airflow: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP):
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install -q apache-airflow==3.3.2
	touch $(AIRFLOW_STAMP)

run: setup
	$(PY) -m pipeline run --out $(OUT)
	@echo "Results in $(OUT)/ (ingest/, rank/, train/, promote/, report/, metrics.json). Open the MLflow UI with: make ui, then the address printed above"

test: setup airflow
	@test -x /usr/bin/chromium || apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
		|| echo "note: no /usr/bin/chromium (apt-get install chromium chromium-driver): the MLflow UI test will be skipped"
	$(PY) -m pytest -q -n auto --durations=15

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

UI_STORE ?= $(CURDIR)/mlflow.db
UI_PORT ?= 5000
# MLflow 3's UI starts a browser in its GenAI mode: the address below opens it on model training (the runs tables).
ui: setup
	@echo "MLflow UI: http://127.0.0.1:$(UI_PORT)/#/experiments?workflowType=machine_learning"
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(UI_STORE) --host 127.0.0.1 --port $(UI_PORT) --workers 1

# The Optuna dashboard on a run's study (STUDY=runs/x/search/study.db, or runs/x/.study/study.db while it runs).
STUDY ?= runs/latest/search/study.db
dashboard: setup
	$(PY) -m pipeline dashboard --storage $(STUDY) --port 8080

bench: setup
	$(PY) -m bench.rank_bench

clean:
	rm -rf runs mlflow.db mlruns mlartifacts
