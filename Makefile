# One entry point for local work: `make help` lists the targets.
# The logic of the dev stack lives in tools/devstack.py; recipes here stay short.

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
DEVSTACK := $(VPY) -m tools.devstack
# Extra arguments: make test PYTEST_ARGS="-k reserve -x", make demo DEMO_ARGS="..."
PYTEST_ARGS ?=
DEMO_ARGS ?=
# make loadtest SCENARIO=mixed USERS=500 SPAWN_RATE=50 RUN_TIME=2m TARGET=http://gw:8080 OUT=dir
# (LOADTEST_ARGS: more options of python -m loadtest.run; BENCH_ARGS: of python -m loadtest.bench)
SCENARIO ?= spike
USERS ?= 2000
SPAWN_RATE ?= 500
RUN_TIME ?= 60s
TARGET ?= http://127.0.0.1:8080
OUT ?=
LOADTEST_ARGS ?=
BENCH_ARGS ?=
# make up PROMETHEUS=1: also a local Prometheus (PROMETHEUS_PORT); GATEWAY=0: no nginx gateway.
# BROKER=tansu: the memory-only light broker instead of Apache Kafka (no idempotent
# producers, a restart loses everything; see docs/operations.md).
BROKER ?= kafka
export LOCAL_BROKER := $(BROKER)
ifeq ($(BROKER),tansu)
export KAFKA_IDEMPOTENCE := false
endif
PROMETHEUS ?=
GATEWAY ?= 1
UP_FLAGS := $(if $(filter 1 yes true,$(PROMETHEUS)),--prometheus) $(if $(filter 0 no false,$(GATEWAY)),--no-gateway)
# Exits non-zero unless the interpreter is Python >= 3.11 (pyproject requires-python).
PY311 := -c 'import sys; sys.exit(sys.version_info < (3, 11))'

.DEFAULT_GOAL := help
.PHONY: help install lock up infra down status demo reconcile test loadtest bench lint format clean wrk browser-tools screenshots

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install: $(VENV)/.installed browser-tools ## create the venv and install the lock requirements-dev.txt (when changed), chromium for tests/browser

$(VPY):
	@$(PYTHON) $(PY311) 2>/dev/null || { echo "Python >= 3.11 is required, '$(PYTHON)' is $$($(PYTHON) -V 2>&1); run e.g. make PYTHON=python3.12 install" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { [ "$$(id -u)" = 0 ] || { echo "venv failed: install python3-venv" >&2; exit 1; }; \
	  rm -rf $(VENV) && apt-get update && apt-get install -y python3-venv && $(PYTHON) -m venv $(VENV); }

# The lock files requirements*.txt pin every package, transitive ones too, with their
# hashes: pip refuses a file that differs from the one locked, or a package not in the lock.
$(VENV)/.installed: requirements-dev.txt | $(VPY)
	@$(VPY) $(PY311) || { echo "$(VENV) runs $$($(VPY) -V 2>&1); Python >= 3.11 is required: remove $(VENV) and run make PYTHON=python3.12 install" >&2; exit 1; }
	$(VPY) -m pip install --disable-pip-version-check --require-hashes -r requirements-dev.txt
	@touch $@

# The lock files come from pyproject.toml (dependencies, extras dev and loadtest), never by
# hand: a new dependency goes into pyproject.toml, then `make lock`. Each file is resolved
# under the pins of the one below it (runtime < dev < loadtest), so that a package has one
# version in all three (make loadtest installs into the dev venv). Pins already in a file
# stay unless pyproject.toml excludes them: UPGRADE=1 moves all to the newest allowed
# version, UPGRADE="<package> ..." only those. --universal: one lock for every platform
# and Python >= 3.11 (the image's Linux and a developer's machine alike).
UPGRADE ?=
LOCK_UPGRADE := $(if $(filter 1 yes true,$(UPGRADE)),--upgrade,$(foreach p,$(UPGRADE),--upgrade-package $(p)))
UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml --quiet --universal --generate-hashes \
	--custom-compile-command 'make lock' $(LOCK_UPGRADE)

lock: $(VENV)/.installed ## resolve pyproject.toml into the hashed lock files requirements*.txt (UPGRADE=1|<packages>)
	$(UV_COMPILE) -o requirements.txt
	$(UV_COMPILE) --extra dev -c requirements.txt -o requirements-dev.txt
	$(UV_COMPILE) --extra dev --extra loadtest -c requirements-dev.txt -o requirements-loadtest.txt

# Debian's chromium and its chromedriver, which the merchant console's browser tests drive
# (tests/browser); Selenium never downloads a browser or a driver of its own. A small CJK
# font, so that the coupons' terms ("满 100 减 20") are drawn in the screenshots, not boxes.
browser-tools:
	@[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && [ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || \
	  { [ "$$(id -u)" = 0 ] && apt-get update && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver fonts-wqy-microhei; } || \
	  echo "note: chromium, chromium-driver or fonts-wqy-microhei is not installed (needed by tests/browser): install the Debian packages" >&2

up: install ## start Redis, PostgreSQL, Kafka (if not running), the services, the gateway (PROMETHEUS=1, BROKER=tansu)
	$(DEVSTACK) up $(UP_FLAGS)

infra: install ## like up, without the services and the gateway
	$(DEVSTACK) up --infra-only $(filter --prometheus,$(UP_FLAGS))

down: install ## stop what up/infra started (and nothing else)
	$(DEVSTACK) down

status: install ## show each component and who started it
	@$(DEVSTACK) status

demo: up ## run the end-to-end demo against the running stack
	$(VPY) -m loadtest.demo $(DEMO_ARGS)

reconcile: infra ## compare Redis (reservations, groups) with PostgreSQL once, repair, report
	$(VPY) -m services.reconcile --once

.PHONY: admin-user
admin-user: infra ## create a merchant account, asks its password: NAME=alice [ROLE=admin|operator|viewer]
	$(if $(NAME),,$(error set NAME=<login name>))$(VPY) -m services.identity.admin create '$(NAME)' --role '$(or $(ROLE),admin)'

.PHONY: rebuild-redis
rebuild-redis: infra ## rebuild a sale's Redis state from PostgreSQL: ACTIVITY=id or CAMPAIGN=id (FORCE=1 over live state)
	$(if $(ACTIVITY)$(CAMPAIGN),,$(error set ACTIVITY=<id> or CAMPAIGN=<id>))$(VPY) -m services.reconcile $(if $(ACTIVITY),--rebuild-activity $(ACTIVITY))$(if $(CAMPAIGN), --rebuild-campaign $(CAMPAIGN))$(if $(filter 1 yes true,$(FORCE)), --force)

test: infra ## run the test suite against the local infrastructure
	$(VPY) -m pytest $(PYTEST_ARGS)

screenshots: ## copy the console screenshots the browser tests took (.run/screenshots) to docs/console/
	@ls .run/screenshots/console-*.png >/dev/null 2>&1 || { echo "no screenshots yet: make test PYTEST_ARGS=tests/browser" >&2; exit 1; }
	mkdir -p docs/console
	cp .run/screenshots/console-*.png docs/console/

$(VENV)/.loadtest-installed: requirements-loadtest.txt $(VENV)/.installed
	$(VPY) -m pip install --disable-pip-version-check --require-hashes -r requirements-loadtest.txt
	@touch $@

wrk:
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; }

loadtest: $(VENV)/.loadtest-installed ## Locust scenario headless against TARGET, charts, invariant checks
	$(VPY) -m loadtest.run --scenario $(SCENARIO) --users $(USERS) --spawn-rate $(SPAWN_RATE) \
	  --run-time $(RUN_TIME) --host $(TARGET) $(if $(OUT),--out $(OUT)) $(LOADTEST_ARGS)

bench: $(VENV)/.loadtest-installed wrk infra ## benchmark: hello vs reserve vs naive PostgreSQL vs coupon claim, order pipeline -> docs/benchmarks.md
	$(VPY) -m loadtest.bench $(BENCH_ARGS)

.PHONY: bench-login
bench-login: wrk up ## benchmark: shopper logins/s through the gateway (new and returning) -> docs/benchmarks-login.md
	$(VPY) -m loadtest.bench.login $(BENCH_ARGS)

lint: install ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VPY) -m mypy

format: install ## ruff format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: down ## down, then remove .run/ (keeps the venv)
	rm -rf .run
