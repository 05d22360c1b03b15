# Two commands for a fresh machine (CPU, no GPU needed):
#   make smoke   virtual environment + CPU set, then SFT -> GRPO -> evaluation of the tiny model into outputs/smoke
#   make test    virtual environment + CPU set + unsloth's CPU backend, then the test suite (what .ci/run runs)
# Both reuse an existing .venv and never install a CUDA package. The GPU set: docs/install.md.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch, by its exact version: a source without it fails instead of falling back to the
# CUDA build (PyPI's Linux wheel). Tried first where pip already looks (a local wheel folder, an installed
# torch), then PyTorch's CPU index, the public home of the CPU wheel.
TORCH := torch==2.13.0+cpu
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
SMOKE := --preset smoke --output_dir outputs/smoke --overwrite

.PHONY: smoke test cpu-set
.DEFAULT_GOAL := smoke

$(PY):
	$(PYTHON) -m venv $(VENV)

# One stamp per requirement set: a second `make` installs nothing unless a requirements file changed.
$(VENV)/.cpu-set: requirements-cpu.txt | $(PY)
	$(PIP) install -q --disable-pip-version-check "$(TORCH)" 2>/dev/null \
	  || $(PIP) install -q --disable-pip-version-check --retries 1 --timeout 30 "$(TORCH)" --index-url $(TORCH_CPU_INDEX)
	$(PIP) install -q --disable-pip-version-check -r requirements-cpu.txt
	@$(MAKE) --no-print-directory no-cuda
	touch $@

# unsloth's CPU backend, without its declared dependencies (they would pull CUDA torch, triton, xformers).
$(VENV)/.unsloth-cpu: requirements-unsloth-cpu.txt $(VENV)/.cpu-set
	$(PIP) install -q --disable-pip-version-check --no-deps -r requirements-unsloth-cpu.txt
	@$(MAKE) --no-print-directory no-cuda
	touch $@

.PHONY: no-cuda
no-cuda:
	@if $(PIP) list 2>/dev/null | grep -iE '^(nvidia-|triton|xformers|bitsandbytes|vllm)'; then \
	  echo "a CUDA package entered the CPU environment $(VENV) (listed above)" >&2; exit 1; fi

cpu-set: $(VENV)/.cpu-set

smoke: $(VENV)/.cpu-set
	$(PY) train_sft.py $(SMOKE)
	$(PY) train_grpo.py $(SMOKE)
	$(PY) evaluate.py $(SMOKE) --adapter grpo

test: $(VENV)/.unsloth-cpu
	$(PY) -m pytest --durations=10 tests
