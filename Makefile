# Every target that needs the environment creates it first, so each README command works alone on
# a fresh clone. Command-line variables (GPUS, PLATFORM, OVERRIDES, LOGS, ...) reach repro through
# the environment (make's `export`), never pasted into a shell string: click reads REPRO_<CMD>_<OPT>.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REPRO := $(VENV)/bin/repro
LOGS ?= logs
# The platform the venv was built for (make setup leaves its name in the venv). Every target but
# `setup` uses the venv as it is, so `make train PLATFORM=...` never reinstalls Paddle under a run.
VENV_PLATFORM := $(shell cat $(VENV)/repro-platform 2>/dev/null)
PLATFORM ?= $(or $(VENV_PLATFORM),cpu)
# What a target needs: the venv that exists, or on a fresh clone one built for PLATFORM.
ENV_STAMP := $(VENV)/.installed-$(or $(VENV_PLATFORM),$(PLATFORM))

.PHONY: setup test smoke smoke-all train check bench soak doctor clean-venv

# A venv holds one Paddle build: switching platforms in place would leave two builds of the `paddle`
# package on top of each other, so a switch asks for a fresh venv instead.
setup: export REPRO_PLATFORM := $(PLATFORM)
setup: export REPRO_VENV_PLATFORM := $(VENV_PLATFORM)
setup:
	@if [ -n "$$REPRO_VENV_PLATFORM" ] && [ "$$REPRO_VENV_PLATFORM" != "$$REPRO_PLATFORM" ]; then \
	  echo "error: $(VENV) was built for $$REPRO_VENV_PLATFORM, not $$REPRO_PLATFORM; run 'make clean-venv' first, then 'make setup PLATFORM=$$REPRO_PLATFORM'" >&2; \
	  exit 7; fi
	@$(MAKE) --no-print-directory $(VENV)/.installed-$(PLATFORM)

# Vendor profiles (Iluvatar) get a venv that sees the system site-packages, where the SDK's own
# Paddle build is installed; pip never installs a Paddle for them.
$(VENV)/.installed-%: environments/%/requirements.txt environments/%/profile.yaml environments/common-requirements.txt setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(if $(shell grep -l '^ *system_site_packages: *true' environments/$*/profile.yaml),--system-site-packages) $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -r environments/$*/requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	echo $* > $(VENV)/repro-platform
	touch $@

# pytest exits 5 when it collected no test: say so instead of passing or failing silently.
# TEST_WORKERS pytest-xdist workers: most tests wait on child processes, so three share two cores well;
# the real trainings run one after another on one of them (tests/conftest.py). TEST_WORKERS=0: in-process.
TEST_WORKERS ?= 3
# Bytecode caches on, whatever the shell says: with PYTHONDONTWRITEBYTECODE set, each of the suite's
# few hundred `python -m repro` children compiles repro anew and each worker rewrites every test module.
test: export PYTHONDONTWRITEBYTECODE :=
test: $(ENV_STAMP)
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -rs -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$status

# The main job. `repro upstream fetch` is idempotent: it verifies an existing checkout (or the one
# REPRO_UPSTREAM_DIR names) and applies our patches, and clones only when there is none.
# Without GitHub: UPSTREAM_URL=<mirror URL or path> or UPSTREAM_ARCHIVE=<PaddleClas .tar.gz/.zip>.
smoke: export REPRO_UPSTREAM_FETCH_URL := $(UPSTREAM_URL)
smoke: export REPRO_UPSTREAM_FETCH_ARCHIVE := $(UPSTREAM_ARCHIVE)
# RECIPE=NAME runs that recipe's smoke variant (default ResNeSt50); smoke-all runs all of them.
smoke: export REPRO_SMOKE_RECIPE := $(RECIPE)
# V=1 streams upstream's output (default: a progress line; all of it is in the run's console.log).
smoke: export REPRO_SMOKE_VERBOSE := $(V)
smoke: $(ENV_STAMP)
	$(REPRO) upstream fetch
	$(PY) -m repro.commands.smoke

smoke-all: export REPRO_UPSTREAM_FETCH_URL := $(UPSTREAM_URL)
smoke-all: export REPRO_UPSTREAM_FETCH_ARCHIVE := $(UPSTREAM_ARCHIVE)
smoke-all: export REPRO_SMOKE_VERBOSE := $(V)
smoke-all: $(ENV_STAMP)
	$(REPRO) upstream fetch
	$(PY) -m repro.commands.smoke --all

train: export REPRO_TRAIN_GPUS := $(GPUS)
train: export REPRO_TRAIN_PLATFORM := $(PLATFORM)
train: export REPRO_TRAIN_OVERRIDE := $(OVERRIDES)
train: export REPRO_TRAIN_DRY_RUN := $(DRY_RUN)
train: export REPRO_TRAIN_NNODES := $(NNODES)
train: export REPRO_TRAIN_NODE_RANK := $(NODE_RANK)
train: export REPRO_TRAIN_MASTER := $(MASTER)
train: export REPRO_TRAIN_RECIPE := $(RECIPE)
train: export REPRO_TRAIN_VERBOSE := $(V)
train: export REPRO_TRAIN_VISUALDL := $(VISUALDL)
train: $(ENV_STAMP)
	$(REPRO) train

check: export REPRO_CHECK_LOGS := $(LOGS)
check: $(ENV_STAMP)
	$(REPRO) check-accuracy "$$REPRO_CHECK_LOGS"

doctor: export REPRO_DOCTOR_PLATFORM := $(PLATFORM)
doctor: $(ENV_STAMP)
	$(REPRO) doctor

bench: $(ENV_STAMP)
	$(PY) benchmarks/run_all.py

# The fault-injection soak (README "Reliability"): one run on the test double survives a seeded
# schedule of kills, hangups, a full disk and half-written checkpoints; SEED=, FAULTS= vary it and
# REAL=/path/to/PaddleClas soaks real upstream at smoke scale.
soak: export REPRO_SOAK_SEED := $(SEED)
soak: export REPRO_SOAK_FAULTS := $(FAULTS)
soak: export REPRO_SOAK_REAL := $(REAL)
soak: $(ENV_STAMP)
	$(PY) benchmarks/soak_faults.py

# Removes only the virtual environment this Makefile made (never logs, checkpoints or upstream).
clean-venv:
	rm -rf $(VENV)
