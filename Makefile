# Two commands on a fresh machine: `make run` and `make test`. Setup is idempotent: it reinstalls
# only when requirements.lock or pyproject.toml changed since the last successful install.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# A machine whose nvidia-smi lists a GPU (or GPU=1) gets PyPI's CUDA torch and the CUDA fbgemm-gpu of the same
# release (torchrec's sharded, fused EmbeddingBagCollection kernels on the GPU); others the CPU torch and
# fbgemm-gpu-cpu pinned in requirements.lock. GPU=0 forces the CPU set (in a fresh .venv).
GPU ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1 || echo 0)
STAMP := $(VENV)/.installed$(if $(filter 1,$(GPU)),-gpu,)
OUT ?= runs/synthetic

# pytest-xdist workers: one per core, and at least 3. The slowest tests wait on Airflow's loop, servers and child
# processes; on 2 cores a third worker fills that time (7 m 41 s against 8 m 22 s with two, bench/RESULTS.md).
TEST_WORKERS ?= $(shell nproc 2>/dev/null | awk '{print ($$1 > 3 ? $$1 : 3)}')

AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed

.PHONY: setup bytecode airflow run test lint ui dashboard bench clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifeq ($(GPU),1)
	$(PY) -m pip uninstall -y -q fbgemm-gpu-cpu torch 2>/dev/null || true  # a CPU set here first: its torch+cpu would satisfy the pin
	sed 's/^fbgemm-gpu-cpu==/fbgemm-gpu==/' requirements.lock | $(PY) -m pip install -q -r /dev/stdin
else
	$(PY) -m pip install -q -r requirements.lock
endif
	$(PY) -m pip install -q --no-deps torchrec==1.8.0
	$(PY) -m pip install -q --no-deps -e .
ifeq ($(GPU),1)
	$(PY) -c "import torch, torchrec; assert torch.cuda.is_available(), 'no CUDA device visible to torch'; print('setup: CUDA torch', torch.__version__, 'and torchrec on', torch.cuda.get_device_name())"
endif
	rm -f $(VENV)/.installed $(VENV)/.installed-gpu
	touch $(STAMP)

# The project's own modules compiled once to bytecode (compileall writes it whatever PYTHONDONTWRITEBYTECODE says, and
# skips what is up to date): where that variable is set, as on CI images, every `python -m pipeline` process would
# otherwise compile ~60 modules again before it starts (0.17 s of each process, bench/RESULTS.md).
bytecode: setup
	$(PY) -m compileall -q -j 0 featuremap features methods models pipeline bench >/dev/null
	$(PY) -m models.kernels  # AutoInt's C++ attention kernel, built once per host (~40 s; the torch path where it cannot)

# Airflow gets its own venv: it conflicts with mlflow's fastapi pin. Its tasks call $(PY).
airflow: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP):
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install -q apache-airflow==3.3.2
	touch $(AIRFLOW_STAMP)

run: setup bytecode
	$(PY) -m pipeline run --out $(OUT)
	@echo "Results in $(OUT)/ (ingest/, rank/, train/, promote/, report/, metrics.json). Open the MLflow UI with: make ui, then the address printed above"

test: setup bytecode airflow
	@test -x /usr/bin/chromium || apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
		|| echo "note: no /usr/bin/chromium (apt-get install chromium chromium-driver): the MLflow UI test will be skipped"
	$(PY) -m pytest -q -n $(TEST_WORKERS) --durations=15

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
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

bench: setup bytecode
	$(PY) -m bench.rank_bench

clean:
	rm -rf runs mlflow.db mlruns mlartifacts
