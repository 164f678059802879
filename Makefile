# modelfleet — `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
SERVING_VENV := .venv-serving
UV := $(PYTHON) -m uv
PY := $(VENV)/bin/python
LOCAL_HOME ?= $(CURDIR)/.local
export FLEET_LOCAL_HOME := $(LOCAL_HOME)

CONTROL_PLANE := ingest trainer evaluator registry deployer monitor
SERVICES := $(CONTROL_PLANE) serving
# libs/devkit (modelfleet-devkit: local launchers, the local fleet, the demo) is for development only:
# .venv has it, no service image does (deploy/docker/service.Dockerfile).
EDITABLE := -e contracts -e libs/common -e libs/cli -e libs/devkit $(addprefix -e services/,$(CONTROL_PLANE))

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: Makefile contracts/pyproject.toml libs/common/pyproject.toml libs/cli/pyproject.toml libs/devkit/pyproject.toml $(foreach s,$(CONTROL_PLANE),services/$(s)/pyproject.toml) requirements-dev.txt
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q uv
	@test -x $(PY) || $(UV) venv -q -p $(PYTHON) $(VENV)
	$(UV) pip install -q -p $(PY) $(EDITABLE) -r requirements-dev.txt
	@touch $@

# serving has its own environment (brief, section 3), so its dependency set can move on its own.
$(SERVING_VENV)/.installed: Makefile contracts/pyproject.toml libs/common/pyproject.toml services/serving/pyproject.toml
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q uv
	@test -x $(SERVING_VENV)/bin/python || $(UV) venv -q -p $(PYTHON) $(SERVING_VENV)
	$(UV) pip install -q -p $(SERVING_VENV)/bin/python -e contracts -e libs/common -e "services/serving[test]" pytest pytest-asyncio pytest-timeout polyfactory deptry
	@touch $@

.PHONY: install
install: $(VENV)/.installed $(SERVING_VENV)/.installed ## Create .venv (control plane, CLI, tools) and .venv-serving

.PHONY: test
test: unit ## Run unit tests, then integration tests on a real Kafka broker and MLflow server
	$(PY) -m pytest tests/integration

.PHONY: unit
unit: install ## Run the fast unit tests only (serving's in its own environment)
	$(PY) -m pytest contracts/tests libs/common/tests libs/cli/tests libs/devkit/tests tests/docs examples/fleet/tests $(foreach s,$(CONTROL_PLANE),services/$(s)/tests)
	$(SERVING_VENV)/bin/python -m pytest services/serving/tests

.PHONY: lint
# deptry: every package declares what its src imports (and imports what it declares), each in
# the environment it runs in; a package's [tool.deptry] says why a declared one is never imported.
DEPTRY_PACKAGES := contracts libs/common libs/cli libs/devkit $(addprefix services/,$(CONTROL_PLANE))
lint: install ## ruff (lint + format check), mypy, and deptry (every package declares what it imports)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy contracts/src libs/common/src libs/cli/src libs/devkit/src $(foreach s,$(CONTROL_PLANE),services/$(s)/src)
	$(VENV)/bin/mypy --python-executable $(SERVING_VENV)/bin/python services/serving/src
	@for p in $(DEPTRY_PACKAGES); do echo "deptry $$p"; (cd $$p && $(CURDIR)/$(VENV)/bin/deptry src) || exit 1; done
	@echo "deptry services/serving"; cd services/serving && $(CURDIR)/$(SERVING_VENV)/bin/deptry src
	$(VENV)/bin/mypy deploy/grafana

.PHONY: schemas
schemas: install ## Refresh the JSON Schema snapshots of the contracts (refuses breaking changes)
	$(PY) -m modelfleet_contracts.snapshots write

.PHONY: asyncapi
asyncapi: install ## Regenerate docs/asyncapi/<service>.yaml from the service apps, and the service table of docs/architecture.md from them
	@mkdir -p docs/asyncapi
	@for s in $(CONTROL_PLANE); do \
	  $(PY) -m modelfleet_common.asyncapi modelfleet_$$s.app:app docs/asyncapi/$$s.yaml || exit 1; \
	done
	@$(SERVING_VENV)/bin/python -m modelfleet_common.asyncapi modelfleet_serving.app:app docs/asyncapi/serving.yaml
	@echo "docs/asyncapi/*.yaml regenerated"
	@$(PY) docs/service_table.py

.PHONY: cli-docs
cli-docs: install ## Regenerate docs/cli.md (every modelfleet command, its options, the exit codes) from the typer app
	$(PY) -m modelfleet_cli.reference > docs/cli.md

.PHONY: metrics-doc
metrics-doc: install ## Regenerate the metrics table of docs/monitoring.md from the services' metric objects
	$(PY) docs/generate_metrics.py

.PHONY: dashboards
dashboards: install ## Regenerate the Grafana dashboards (deploy/grafana/dashboards/*.json) from deploy/grafana/generate.py
	$(PY) deploy/grafana/generate.py

.PHONY: k8s-generate
k8s-generate: asyncapi dashboards ## Regenerate the manifests made from the code: Strimzi topics/users, KEDA scaling, ServiceMonitors, alert rules, dashboards
	$(VENV)/bin/modelfleet topics --strimzi > deploy/k8s/strimzi/kafka-topics.yaml
	$(VENV)/bin/modelfleet acls --strimzi > deploy/k8s/strimzi/kafka-users.yaml
	$(PY) deploy/k8s/generate.py
	$(PY) deploy/prometheus/generate.py

.PHONY: k8s-validate
k8s-validate: install ## Render deploy/k8s (base, local, production) and validate it offline: custom resources against their CRDs, the rest strictly
	KUBERNETES_VALIDATE=$(VENV)/bin/kubernetes-validate deploy/k8s/validate.sh

.PHONY: alerts-test
alerts-test: install ## Check the alert rules are current, then promtool: check them and run their unit tests (deploy/prometheus/tests)
	$(PY) deploy/prometheus/generate.py --check
	promtool check rules deploy/prometheus/fleet-rules.yaml
	cd deploy/prometheus && promtool test rules tests/*.yaml

.PHONY: kafka
kafka: install ## Start a local Kafka 4 (KRaft) on 127.0.0.1:9092, secured: SASL/SCRAM over TLS, ACLs
	$(PY) -m modelfleet_devkit.kafka start

.PHONY: provision
provision: install ## Create the fleet's topics and Kafka ACLs on the local broker, as its admin
	$(VENV)/bin/modelfleet provision

.PHONY: kafka-stop
kafka-stop: ## Stop the local Kafka broker
	$(PY) -m modelfleet_devkit.kafka stop

.PHONY: postgres
# Not 5432, where the cluster of Debian's own `postgresql` package listens.
POSTGRES_PORT ?= 5433
postgres: install ## Start a local PostgreSQL (Debian's) on 127.0.0.1:5433 (POSTGRES_PORT): a role + schema per service, MLflow's db
	$(PY) -m modelfleet_devkit.postgres start --port $(POSTGRES_PORT)

.PHONY: postgres-stop
postgres-stop: ## Stop the local PostgreSQL
	$(PY) -m modelfleet_devkit.postgres stop

.PHONY: mlflow
# sqlite (zero setup, the default) or postgres: the database mlflow of `make postgres`.
MLFLOW_BACKEND ?= sqlite
mlflow: install $(if $(filter postgres,$(MLFLOW_BACKEND)),postgres) ## Start a local MLflow server (behind basic-auth) on 127.0.0.1:5000; MLFLOW_BACKEND=postgres for its store on PostgreSQL
	$(PY) -m modelfleet_devkit.mlflow start --backend $(MLFLOW_BACKEND)

.PHONY: mlflow-stop
mlflow-stop: ## Stop the local MLflow server
	$(PY) -m modelfleet_devkit.mlflow stop

.PHONY: demo
# The policies at demo speed and short intervals: the loop turns in minutes (examples/demo/).
DEMO_ENV := FLEET_POLICY_DIR=$(CURDIR)/examples/demo/policies FLEET_MONITOR_REPORT_SECONDS=5 \
	FLEET_INGEST_FEEDBACK_SECONDS=5 FLEET_RETRAIN_DATA_WAIT_SECONDS=60 FLEET_DEMO_APPROVER=risk-officer
DEMO_ARGS ?=
demo: install kafka mlflow ## Start Kafka, MLflow and the fleet; watch 24 models train, drift, retrain and get promoted (5-25 min)
	$(DEMO_ENV) $(VENV)/bin/modelfleet-dev up
	$(VENV)/bin/modelfleet-dev demo $(DEMO_ARGS)

.PHONY: bench
bench: install ## Install what benchmarks/ needs (benchmarks/requirements.txt) and its peers' venvs (Evidently, Ray Serve)
	$(UV) pip install -q -p $(PY) -r benchmarks/requirements.txt
	$(PY) benchmarks/prepare.py

.PHONY: compose-test
# No Docker needed: podman (apt) builds the images on a debootstrapped Debian base and runs
# docker-compose.yml with deploy/compose/podman.override.yml (deploy/compose/compose_test.py).
COMPOSE_TEST_ARGS ?=
compose-test: install ## Prove docker-compose.yml with podman: build the images, start the fleet, 2 models to champion, predict, down -v (as root)
	$(PY) deploy/compose/compose_test.py $(COMPOSE_TEST_ARGS)

.PHONY: down
down: ## Stop every service of the local fleet, MLflow, PostgreSQL and Kafka
	-$(VENV)/bin/modelfleet-dev down
	-$(PY) -m modelfleet_devkit.mlflow stop
	-$(PY) -m modelfleet_devkit.postgres stop
	-$(PY) -m modelfleet_devkit.kafka stop

.PHONY: clean
clean: down ## Stop everything and delete the environments and local data
	rm -rf $(VENV) $(SERVING_VENV) $(LOCAL_HOME)
