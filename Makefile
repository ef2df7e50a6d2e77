# Two commands on a fresh machine: `make demo` (the main job on the embedded default model)
# and `make test`. `make setup` is what both run first; it is idempotent and quick when done.
SHELL := /bin/bash
ENV := source .venv/bin/activate && source install/setup.bash
PYTEST_ARGS ?=

.PHONY: setup test demo clean

setup:
	@bash scripts/setup.sh

test: setup
	@$(ENV) && python -m pytest $(PYTEST_ARGS)

demo: setup
	@$(ENV) && python -m mtl_split_tools.demo $(DEMO_ARGS)

clean:
	rm -rf build install log demo_out
