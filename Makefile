# Two commands do all the set-up on a fresh machine with Python >= 3.11:
#   make demo   install autoplan into .venv and plan a preset model on a preset cluster
#   make test   install the test dependencies into .venv and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint validate bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "autoplan needs Python >= 3.11; run: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

demo: $(VENV)/.installed
	$(BIN)/autoplan plan --model llama3.1-70b --cluster h100-sxm-80gb --devices 512 --seq-len 8192 --global-batch 512 --top 3

test: $(VENV)/.installed
	$(BIN)/python -m pytest -n 2

lint: $(VENV)/.installed
	$(BIN)/ruff check .

validate: $(VENV)/.installed
	$(BIN)/python benchmarks/validate.py

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/plan_vs_expert.py
	$(BIN)/python benchmarks/plan_speed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
