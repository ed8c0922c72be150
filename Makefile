# Two commands on a fresh machine with Python 3.11+ and make:
#   make demo   runs the whole system (tickvault up) on the embedded Valkey
#   make test   runs lint, type checks and the test suite
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck pytest bench clean browser compare-env

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tickvault needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,ml,web]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tickvault up

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) browser
	$(BIN)/pytest -q

# Chromium from the OS packages for the dashboard's browser tests (tests/browser): installed
# with apt-get when missing and root or sudo is available; otherwise those tests skip and
# say why. Never fails the build.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	    echo "installing chromium for the browser tests (apt-get)"; \
	    $$SUDO apt-get update -qq >/dev/null 2>&1; \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	      chromium fonts-dejavu-core >/dev/null 2>&1 || echo "chromium could not be installed: the browser tests will skip"; \
	  else echo "no chromium and no apt-get with root/sudo: the browser tests will skip"; fi; }

bench: $(STAMP)
	$(BIN)/tickvault bench store

# ArcticDB for `tickvault bench compare`, in an environment of its own: arcticdb 6.28.2
# requires pandas < 3 and tickvault pins pandas 3, so they cannot share .venv (about
# 260 MB; not part of `make test`, whose compare test then runs the tickvault side alone).
COMPARE_VENV := .venv-compare
compare-env: $(COMPARE_VENV)/.installed-stamp

$(COMPARE_VENV)/.installed-stamp:
	$(PYTHON) -m venv $(COMPARE_VENV)
	$(COMPARE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	  arcticdb==6.28.2 numpy==2.4.6 pandas==2.3.3
	@touch $@

clean:
	rm -rf $(VENV) $(COMPARE_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
