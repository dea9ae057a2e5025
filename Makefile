# The two commands: `make run` and `make test` set themselves up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.slimgui-installed
TORCH  := torch==2.13.0

.PHONY: setup run test bench bench-big lint demo-models clean installer

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

# every family's figures (the others run as separate processes from bench_llm.py; each also writes bench-NAME.json)
bench: $(STAMP)
	$(PY) benchmarks/bench_llm.py --out bench-report.json

# A LLaMA-shaped bf16 checkpoint bigger than RAM (~26 GB written, about twice that free disk needed), streamed (~40 min):
bench-big: $(STAMP)
	nice -n 10 $(PY) benchmarks/bench_big.py --work $${SLIMGUI_BENCH_BIG_DIR:-/tmp/slimgui-bench-big} --out bench-big-report.json

lint: $(STAMP)
	$(VENV)/bin/ruff check slimgui plugins tests benchmarks
	$(VENV)/bin/lint-imports

# Retrain the shipped demo models from scratch (language model ~30 min, diffusion ~15 min, ViT ~3 min, GAN ~2 min, voice ~11 min, wav2lip ~5 min, cnn ~2 min on 2 CPU cores).
demo-models: $(STAMP)
	$(PY) -m slimgui_families.llm.demo --out resources/demo/llm
	$(PY) -m slimgui_families.diffusion.demo --out resources/demo/diffusion
	$(PY) -m slimgui_families.vit.demo --out resources/demo/vit
	$(PY) -m slimgui_families.gan.demo --out resources/demo/gan
	$(PY) -m slimgui_families.voice.demo --out resources/demo/voice
	$(PY) -m slimgui_families.wav2lip.demo --out resources/demo/wav2lip
	$(PY) -m slimgui_families.cnn.demo --out resources/demo/cnn

# The desktop bundle (installer/README.md): dist/SlimGUI/ (PyInstaller, one folder) and
# dist/SlimGUI-VERSION-linux-ARCH.tar.gz, then its smoke test. Slow (about 20 min on 2 CPU cores): not part of `make test`.
installer: $(STAMP)
	$(PY) -m pip install -q pyinstaller==6.22.3   # the build tool, into the build environment only (never into the bundle)
	nice -n 10 installer/build.sh $(PY)
	installer/smoke.sh

clean:
	rm -rf $(VENV) .pytest_cache bench-report.json bench-vit.json bench-gan.json bench-voice.json bench-wav2lip.json bench-hw.json bench-big-report.json
