# Two entry points: `make demo` (the end-to-end job) and `make test` (the test suite).
# Each creates .venv and installs the project on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

# The disk check turns pip's "No space left on device", minutes into the install, into one line up front.
$(STAMP): pyproject.toml Makefile
	test -d $(VENV) || $(PYTHON) tools/check_disk_space.py $(CURDIR) 10
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,jpeg2000,video]' --config-settings editable_mode=compat
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m spine.pipeline.demo --outdir runs/demo

# The report's browser test needs Chromium: install it from the system's packages when missing, and tell the
# test that a missing browser is a failure here, not a reason to skip.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	bash tools/ensure_chromium.sh
	$(PY) tools/check_cuda_build.py
	SPINEGAN_REQUIRE_CHROMIUM=1 $(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) runs
