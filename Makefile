# Two commands on a fresh machine: `make demo` (the main job on the embedded default model)
# and `make test`. `make setup` is what both run first; it is idempotent and quick when done.
# `make test-fast`: the tests that start no DDS process or launch and are not slow (the loop
# for a change to the core); `make lint`: ruff and mypy (CI runs it before `make test`).
SHELL := /bin/bash
# The ros2 CLI kit's prefix (when `make setup` installed it) comes before the package's own.
CLI_SETUP := build/ros2_cli_kit/install/setup.bash
ENV := source .venv/bin/activate && { [ ! -f $(CLI_SETUP) ] || source $(CLI_SETUP); } \
	&& source install/setup.bash
PYTEST_ARGS ?=
# Tests keep compiled modules (pytest's rewritten test modules too) in __pycache__: where the
# machine sets PYTHONDONTWRITEBYTECODE, every run and every child process would compile them
# again (collecting the fast tier: ~20 s -> ~9 s on a 2-core machine).
CACHE_BYTECODE := unset PYTHONDONTWRITEBYTECODE
# Everything with Python in it (ruff.toml adds the executables without a .py suffix); mypy's
# files are in mypy.ini (the core and the ROS adapter).
LINTED := mtl_split_core mtl_split_ros mtl_split_edge mtl_split_server mtl_split_tools bench \
	launch nodes scripts test

.PHONY: setup test test-fast lint demo netem clean

setup:
	@bash scripts/setup.sh

test: setup
	@$(ENV) && $(CACHE_BYTECODE) && python -m pytest $(PYTEST_ARGS)

# Left out: tests marked `ros` (they start rclpy nodes, node processes or `ros2 launch`) and
# `slow` (over ~20 s each on a 2-core machine). Spread over the cores (pytest-xdist): none
# of them talks over DDS. PYTEST_ARGS="-n 0" runs them all in one process (pdb).
test-fast: setup
	@$(ENV) && $(CACHE_BYTECODE) && python -m pytest -m "not ros and not slow" -n auto \
		$(PYTEST_ARGS)

lint: setup
	@$(ENV) && python -m ruff check --no-fix --output-format concise $(LINTED) && python -m mypy

demo: setup
	@$(ENV) && python -m mtl_split_tools.demo $(DEMO_ARGS)

# Split vs JPEG upload over an emulated link (network namespaces + tc): needs root.
# NETEM_ARGS="--bandwidths 5,20 --link-qos best_effort", see bench/netem/run.py --help.
netem: setup
	@$(ENV) && python bench/netem/run.py $(NETEM_ARGS)

clean:
	rm -rf build install log demo_out
