# Commands for a fresh machine (CPU, no GPU needed):
#   make smoke      virtual environment + CPU set, then SFT -> GRPO -> evaluation of the tiny model into outputs/smoke
#   make test       the linter, then the whole suite in two lanes at once (what .ci/run runs), every test in
#                   at least one:
#                     GPU set's Python (trl 1.15, what users install): every test but the hf training steps,
#                     which trl 1.15 runs only on a GPU (docs/verified.md)
#                     CPU set (trl 1.16): those hf training steps, and the checks marked both_lanes
#   make test-fast  the CPU set's tests that train no model end to end (about a minute): after every change
#   make acceptance a real pretrained model through every stage, before a long run (ARGS="--quick", ...;
#                   on a GPU machine run it in the GPU environment: python bench/acceptance.py)
# They reuse existing environments and never install a CUDA package. The GPU set itself: docs/install.md.

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

# The GPU set's lane (every test but the hf training steps): its own environment holding the pure-Python packages of requirements.txt (vllm is
# CUDA-only; unsloth is installed --no-deps as on the CPU set; wandb is not under test), layered over the CPU
# set's environment through a .pth file: pip installs there only what requirements.txt pins differently
# (today trl 1.15.0), and tests/test_library_api.py checks each lane's versions against its requirement file.
GPU_VENV ?= .venv-gpu-set
GPU_PY := $(GPU_VENV)/bin/python
PYTEST := -m pytest -p no:cacheprovider --durations=10
# The linter's small rule set: unused and undefined names (F), shadowed built-ins (A), statements a
# reader trips on (E7: `== None`, lambda assignments, names like `l`), syntax (E9), stray whitespace
# (W291-W293), bad escapes (W605), mutable or call defaults (B006, B008). Zero findings.
LINT := $(VENV)/bin/ruff check --quiet --select F,A,E7,E9,W291,W292,W293,W605,B006,B008 --line-length 120 .

.PHONY: smoke test test-fast test-cpu-set test-cpu-set-all test-gpu-set cpu-set gpu-set acceptance
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

$(GPU_VENV)/.gpu-set: requirements.txt $(VENV)/.unsloth-cpu
	rm -rf $(GPU_VENV)
	$(PYTHON) -m venv $(GPU_VENV)
	$(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
	  > "$$($(GPU_PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/cpu-set.pth"
	grep -vE '^(vllm|unsloth|unsloth_zoo|wandb)([=<> ]|$$)' requirements.txt > $(GPU_VENV)/gpu-set-python.txt
	$(GPU_PY) -m pip install -q --disable-pip-version-check -r $(GPU_VENV)/gpu-set-python.txt
	@$(MAKE) --no-print-directory no-cuda PIP="$(GPU_PY) -m pip"
	touch $@

gpu-set: $(GPU_VENV)/.gpu-set

acceptance: $(VENV)/.cpu-set
	$(PY) bench/acceptance.py $(ARGS)

.PHONY: lint
lint: $(VENV)/.cpu-set
	$(LINT)

test-fast: lint
	$(PY) $(PYTEST) -n 2 -m "not slow" tests

# The CPU set's lane: the hf training steps the other lane cannot take on CPU, and the `both_lanes` checks;
# two workers, each test file on one of them (its module-scoped trained run made once), the session's smoke
# SFT trained once for both (tests/conftest.py, smoke_sft).
test-cpu-set: $(VENV)/.unsloth-cpu
	SQL_RLVR_REQUIREMENTS=requirements-cpu.txt $(PY) $(PYTEST) -n 2 --dist loadscope -m "hf_training or both_lanes" tests

# The whole suite on the CPU set in one lane (trl 1.16; the unsloth tests on a version unsloth does not accept).
test-cpu-set-all: $(VENV)/.unsloth-cpu
	$(PY) $(PYTEST) -n 2 --dist loadscope tests

test-gpu-set: $(GPU_VENV)/.gpu-set
	SQL_RLVR_REQUIREMENTS=requirements.txt $(GPU_PY) $(PYTEST) tests

# The linter, then both lanes at once (the smoke preset trains on one thread per process); each lane's
# output is printed when it ends.
test: lint $(VENV)/.unsloth-cpu $(GPU_VENV)/.gpu-set
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-cpu-set test-gpu-set
