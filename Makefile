# Every target that needs the environment creates it first, so each README command works alone on
# a fresh clone. Command-line variables (GPUS, PLATFORM, OVERRIDES, LOGS, ...) reach repro through
# the environment (make's `export`), never pasted into a shell string: click reads REPRO_<CMD>_<OPT>.

PYTHON ?= python3
VENV := .venv
# The platform profile the venv was built from is remembered, so `make train` on a GPU box built
# with PLATFORM=nvidia-cuda does not fall back to the CPU profile.
PLATFORM ?= $(shell cat $(VENV)/repro-platform 2>/dev/null || echo cpu)
REQUIREMENTS := environments/$(PLATFORM)/requirements.txt
STAMP := $(VENV)/.installed-$(PLATFORM)
PY := $(VENV)/bin/python
REPRO := $(VENV)/bin/repro
LOGS ?= logs

.PHONY: setup test smoke train check bench doctor clean-venv

setup: $(STAMP)

$(STAMP): $(REQUIREMENTS) setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -r $(REQUIREMENTS)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	printf '%s\n' "$$REPRO_PLATFORM" > $(VENV)/repro-platform
	rm -f $(VENV)/.installed-*
	touch $@
$(STAMP): export REPRO_PLATFORM := $(PLATFORM)

# pytest exits 5 when it collected no test: say so instead of passing or failing silently.
test: $(STAMP)
	$(PY) -m pytest -q -rs $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$status

# The main job. `repro upstream fetch` is idempotent: it verifies an existing checkout (or the one
# REPRO_UPSTREAM_DIR names) and applies our patches, and clones only when there is none.
smoke: $(STAMP)
	$(REPRO) upstream fetch
	$(PY) -m repro.smoke

train: export REPRO_TRAIN_GPUS := $(GPUS)
train: export REPRO_TRAIN_PLATFORM := $(PLATFORM)
train: export REPRO_TRAIN_OVERRIDE := $(OVERRIDES)
train: export REPRO_TRAIN_DRY_RUN := $(DRY_RUN)
train: $(STAMP)
	$(REPRO) train

check: export REPRO_CHECK_LOGS := $(LOGS)
check: $(STAMP)
	$(REPRO) check-accuracy "$$REPRO_CHECK_LOGS"

doctor: export REPRO_DOCTOR_PLATFORM := $(PLATFORM)
doctor: $(STAMP)
	$(REPRO) doctor

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean-venv:
	rm -rf $(VENV)
