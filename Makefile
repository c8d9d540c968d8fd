# SharedKD: `make demo` and `make test` install what is missing first (see README.md).
#
# Where things are installed: the active virtualenv or conda env if there is one, otherwise a
# project-local .venv (created with --system-site-packages, so that a torch/detectron2 already
# installed system-wide is used as it is). Override with `make PYTHON=/path/to/python ...`.

ifdef PYTHON
PY := $(PYTHON)
else ifdef VIRTUAL_ENV
PY := $(VIRTUAL_ENV)/bin/python
else ifdef CONDA_PREFIX
PY := $(CONDA_PREFIX)/bin/python
else
PY := .venv/bin/python
endif

# One stamp per interpreter: `make install` does the work once, later runs return at once.
STAMP := .cache/installed$(subst /,_,$(abspath $(PY)))
DEPS := setup.py pyproject.toml tools/bootstrap.py $(wildcard tools/bootstrap_templates/*) \
	$(wildcard requirements/*.txt)
PYTEST_ARGS ?=
# Test processes side by side (pytest-xdist): the 2 cores of CI and of the dev machines.
TEST_JOBS ?= 2

.PHONY: install demo test test-fast lint format clean mkd-pipeline study gpu-prepare gpu-check

install: $(STAMP)

$(STAMP): $(DEPS)
	@if [ "$(PY)" = ".venv/bin/python" ] && [ ! -x .venv/bin/python ]; then \
		echo "[make] creating .venv"; python3 -m venv --system-site-packages .venv; fi
	$(PY) tools/bootstrap.py --dev
	@mkdir -p .cache && touch $@

# Teacher, student alone, Shared-KD student: AP table and pictures in output/demo/ (see
# tools/demo.py). `make demo DEMO_ARGS=--mkd` adds the M-KD student.
DEMO_ARGS ?=
demo: install
	$(PY) tools/demo.py $(DEMO_ARGS)

# The M-KD pipeline on the embedded dataset: teacher -> TA -> auto-encoder -> students, AP table.
mkd-pipeline: install
	$(PY) tools/mkd_pipeline.py --family faster_rcnn

# The seeded studies behind the README's results (tools/study.py): every study file, or one with
# `make study STUDY=configs/studies/sharedkd_faster_rcnn.yaml`. Hours on 2 CPU cores; finished
# runs are skipped, so an interrupted study continues where it stopped.
STUDY ?= $(sort $(wildcard configs/studies/*.yaml))
STUDY_ARGS ?=
study: install
	@for s in $(STUDY); do $(PY) tools/study.py $$s $(STUDY_ARGS) || exit 1; done

# The GPU machine's check (tools/gpu_check.sh): `make gpu-prepare` downloads into .gpu_wheels/
# what that machine lacks; `make gpu-check` runs the check (on a CPU machine, its smoke run).
# On the GPU machine itself, call `bash tools/gpu_check.sh --out "$$OUT"` with .gpu_wheels carried.
GPU_CHECK_ARGS ?=
gpu-prepare: install
	PYTHON=$(PY) tools/gpu_check.sh --prepare

gpu-check: install
	PYTHON=$(PY) tools/gpu_check.sh $(GPU_CHECK_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# Everything (what CI runs); whole files go to one worker, so their trained runs are shared.
test: lint
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile $(PYTEST_ARGS)

# The sub-minute loop: all but the tests marked `slow` (they train detectors or start processes).
test-fast: install
	$(PY) -m pytest -m "not slow" -n $(TEST_JOBS) $(PYTEST_ARGS)

clean:
	rm -rf .cache output datasets/shapes
