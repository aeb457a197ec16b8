# Set-up and entry points. Both targets create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-gpu asan fuzz clean

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

# The C backend built with AddressSanitizer and UBSan (arena buffers apart, with poisoned gaps
# between them) over the tests that run generated kernels; any report fails the run. Slow, and not
# part of `make test`.
ASAN_TESTS ?= tests/codegen tests/runtime tests/graphnn/test_backends_agree.py
asan: $(VENV)/.installed-test
	GRAPHNN_SANITIZE=address,undefined LD_PRELOAD="$$($${CC:-cc} -print-file-name=libasan.so)" \
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	$(PY) -m pytest -q -k "not triton and not gpu" $(ASAN_TESTS)

# The differential fuzzer at length: FUZZ_CASES random models trained in graphnn and in torch
# (float32 and float64) on the C backend and on the numpy reference, from seed
# FUZZ_START; `make test` runs a small sample. Replay a failing seed with
# `$(PY) -m tests.fuzz.run --seed N`.
FUZZ_CASES ?= 300
FUZZ_START ?= 0
fuzz: $(VENV)/.installed-test
	$(PY) -m pytest -q tests/fuzz/test_fuzz.py --fuzz-cases $(FUZZ_CASES) --fuzz-start $(FUZZ_START)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
