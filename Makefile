# trainlab: `make train` and `make test` create .venv and install the pinned stack on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where mlflow.db, mlartifacts/, outputs/ and multirun/ live (absolute; see docs/where-runs-go.md).
TRAINLAB_HOME ?= $(CURDIR)
export TRAINLAB_HOME
UI_PORT ?= 5000
SERVER_PORT ?= 5001
ARGS ?=

.PHONY: install train sweep test ui server lint format clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev,team]'
	@touch $(STAMP)

install: $(STAMP)  ## venv + pinned dependencies + trainlab (editable)

train: $(STAMP)  ## the seed pipeline (note 20), tracked in the embedded store; ARGS="optimizer=adam ..."
	$(BIN)/trainlab-train experiment=seed_pipeline $(ARGS)

sweep: $(STAMP)  ## a learning-rate sweep of the seed pipeline: one MLflow parent run, 5 children; ARGS="hydra/launcher=joblib"
	$(BIN)/trainlab-train -m experiment=lr_sweep $(ARGS)

# Test files run side by side in this many processes (pytest-xdist); a file's tests stay in one
# process, so its module fixtures (a team service, a server) start once. 0: all in this process.
TEST_WORKERS ?= 2

test: $(STAMP)  ## the whole test suite, TEST_WORKERS files at a time
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: $(STAMP)  ## the quick loop: every test not marked slow (no end-to-end subprocesses)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

.PHONY: compare
compare: $(STAMP)  ## numpy, autograd and lightning engines on the seed data, one MLflow experiment
	$(BIN)/trainlab-train -m experiment=compare_engines $(ARGS)

ui: $(STAMP)  ## the MLflow dashboard over the embedded store, on 127.0.0.1:$(UI_PORT)
	$(BIN)/python -m trainlab.commands.dashboard --port $(UI_PORT)

server: $(STAMP)  ## the team tracking server (PostgreSQL: TRAINLAB_SERVER_DB_URI) on 127.0.0.1:$(SERVER_PORT)
	$(BIN)/python -m trainlab.team.tracking_server --port $(SERVER_PORT)

STUDY_PORT ?= 8080
STUDY_DB ?= sqlite:///$(TRAINLAB_HOME)/optuna.db

.PHONY: study
study: $(STAMP)  ## the sweeps' Optuna studies in optuna-dashboard on 127.0.0.1:$(STUDY_PORT); STUDY_DB=<an Optuna RDB URL>
	@test -x $(BIN)/optuna-dashboard || $(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[optuna]'
	$(BIN)/optuna-dashboard --host 127.0.0.1 --port $(STUDY_PORT) '$(STUDY_DB)'

.PHONY: stale
stale: $(STAMP)  ## list the runs left RUNNING by processes that died, and end them KILLED
	$(BIN)/trainlab-store stale --mark

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:  ## outputs and caches; keeps mlflow.db and mlartifacts/ (your runs)
	rm -rf outputs multirun .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './.venv/*' -exec rm -rf {} +

.PHONY: bench bench-quick
bench: $(STAMP)  ## speed against the raw loop and the naive stack (several minutes)
	$(BIN)/python -m benchmarks.bench

bench-quick: $(STAMP)  ## a smaller, faster version of `make bench`
	$(BIN)/python -m benchmarks.bench --quick

.PHONY: team team-status team-stop team-user
S3_PORT ?= 8333
team: $(STAMP)  ## the whole team service: PostgreSQL + SeaweedFS (S3) + MLflow with basic-auth on 127.0.0.1:$(SERVER_PORT)
	@scripts/ci-postgres.sh
	$(BIN)/python -m trainlab.team.service start --port $(SERVER_PORT) --s3-port $(S3_PORT)

team-status: $(STAMP)  ## which parts of the team service answer (exit 3 when one does not)
	@$(BIN)/python -m trainlab.team.service status --port $(SERVER_PORT) --s3-port $(S3_PORT)

team-stop: $(STAMP)  ## stop the team's MLflow server and object store (PostgreSQL stays)
	@$(BIN)/python -m trainlab.team.service stop --s3-port $(S3_PORT)

# make team-user NAME=alice PERMISSION=EDIT EXPERIMENT=team_sweep [PASSWORD_FILE=~/alice.pw]
NAME ?=
PERMISSION ?= EDIT
EXPERIMENT ?=
PASSWORD_FILE ?= $(TRAINLAB_HOME)/team/users/$(NAME).password
team-user: $(STAMP)  ## add user NAME (password from PASSWORD_FILE, made if missing) and grant PERMISSION on EXPERIMENT
	@test -n "$(NAME)" || { echo "make team-user: error: NAME=<user> is missing" >&2; exit 2; }
	$(BIN)/python -m trainlab.team.users --server http://127.0.0.1:$(SERVER_PORT) add $(NAME) --password-file $(PASSWORD_FILE)
	@if [ -n "$(EXPERIMENT)" ]; then $(BIN)/python -m trainlab.team.users --server http://127.0.0.1:$(SERVER_PORT) grant $(NAME) $(PERMISSION) $(EXPERIMENT); fi
