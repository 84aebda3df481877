# `make demo` and `make test` create .venv on first use (PyPI packages only).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -n 2 -m "not slow"

.PHONY: demo test test-all formal coverage bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tessera demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2

formal: $(STAMP)
	$(VENV)/bin/python -m sim.formal

# The RTL tests of the default suite with Verilator's line, branch and toggle coverage
# (models built apart, in build/coverage/), then the merged report (sim/coverage.py).
RTL_TESTS := tests/test_tile_rtl.py tests/test_accelerator_rtl.py tests/test_network_rtl.py \
	tests/test_uart_bridge.py tests/test_faults_rtl.py tests/test_self_test.py
coverage: $(STAMP)
	rm -rf build/coverage
	TESSERA_COVERAGE=1 $(VENV)/bin/python -m pytest $(PYTEST_ARGS) $(RTL_TESTS)
	$(VENV)/bin/python -m sim.coverage

bench: $(STAMP)
	$(VENV)/bin/python bench/sim_speed.py
	$(VENV)/bin/python bench/streaming.py
	$(VENV)/bin/python bench/efficiency.py
	$(VENV)/bin/python bench/overlap.py
	$(VENV)/bin/python bench/ecp5_resources.py
	$(VENV)/bin/python bench/fpga_builds.py

clean:
	rm -rf build .pytest_cache .hypothesis
