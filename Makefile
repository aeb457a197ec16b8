# Set-up and entry points. Both targets create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-gpu clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[examples]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[test,examples]"
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) examples/digits.py --compare

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

# On a machine with an NVIDIA GPU: the Triton backend's tests on the device (not the
# interpreter), then the GPU benchmark.
test-gpu: $(VENV)/.installed-test
	$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'test-gpu needs a CUDA GPU')"
	$(PY) -m pytest -q -k triton tests
	$(PY) benchmarks/train_step.py --backend triton

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
