# Two commands on a fresh machine: `make demo` (the main job on the embedded default model)
# and `make test`. `make setup` is what both run first; it is idempotent and quick when done.
SHELL := /bin/bash
# The ros2 CLI kit's prefix (when `make setup` installed it) comes before the package's own.
CLI_SETUP := build/ros2_cli_kit/install/setup.bash
ENV := source .venv/bin/activate && { [ ! -f $(CLI_SETUP) ] || source $(CLI_SETUP); } \
	&& source install/setup.bash
PYTEST_ARGS ?=

.PHONY: setup test demo netem clean

setup:
	@bash scripts/setup.sh

test: setup
	@$(ENV) && python -m pytest $(PYTEST_ARGS)

demo: setup
	@$(ENV) && python -m mtl_split_tools.demo $(DEMO_ARGS)

# Split vs JPEG upload over an emulated link (network namespaces + tc): needs root.
# NETEM_ARGS="--bandwidths 5,20 --link-qos best_effort", see bench/netem/run.py --help.
netem: setup
	@$(ENV) && python bench/netem/run.py $(NETEM_ARGS)

clean:
	rm -rf build install log demo_out
