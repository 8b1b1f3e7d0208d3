# Set-up is part of every target: a fresh machine needs only python3.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DB     ?= tabledb-data

.PHONY: run test bench crash clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	@$(PY) shell.py $(DB)

test: $(STAMP)
	PYTHONHASHSEED=0 $(PY) -m pytest -q -p no:cacheprovider tests   # fixed hash seed: the derandomized hypothesis tests draw the same examples every run

crash: $(STAMP)
	TABLEDB_LONG_CRASH=1 $(PY) -m pytest -q -p no:cacheprovider tests/storage/test_crash.py tests/crash

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) bench/engine.py --n 1000000

clean-venv:
	rm -rf $(VENV)
