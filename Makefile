# The two commands: `make run` and `make test` set themselves up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.slimgui-installed
TORCH  := torch==2.13.0

.PHONY: setup run test bench lint demo-models clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)          # first: a bare torch requirement would pull a CUDA build
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

setup: $(STAMP)

run: $(STAMP)
	@$(PY) -m slimgui.syslibs   # the window's system libraries: names the exact apt-get command when some are missing
	$(VENV)/bin/slimgui gui demo:llm

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/bench_llm.py --out bench-report.json

lint: $(STAMP)
	$(VENV)/bin/ruff check slimgui plugins tests benchmarks
	$(VENV)/bin/lint-imports

# Retrain the shipped demo models from scratch (language model ~30 min, diffusion ~15 min, ViT ~3 min, GAN ~2 min, voice ~11 min on 2 CPU cores).
demo-models: $(STAMP)
	$(PY) -m slimgui_families.llm.demo --out resources/demo/llm
	$(PY) -m slimgui_families.diffusion.demo --out resources/demo/diffusion
	$(PY) -m slimgui_families.vit.demo --out resources/demo/vit
	$(PY) -m slimgui_families.gan.demo --out resources/demo/gan
	$(PY) -m slimgui_families.voice.demo --out resources/demo/voice

clean:
	rm -rf $(VENV) .pytest_cache bench-report.json bench-vit.json bench-gan.json bench-voice.json
