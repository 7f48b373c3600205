# `make demo` runs the whole chain on bundled digits; `make test` runs the suite; both install first
# (into .venv, or $(VENV)).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install test test-fast demo bench clean

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.installed: $(PY) pyproject.toml requirements-pins.txt
	$(PIP) install -q -r requirements-pins.txt
	$(PIP) install -q -c requirements-pins.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q tests

test-fast: install
	$(PY) -m pytest -q -m "not slow" tests

demo: install
	$(PY) -m ofa demo --work demo-work

bench: install
	$(PY) benchmarks/bench_supernet.py

clean:
	rm -rf build dist *.egg-info .pytest_cache
