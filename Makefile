# bbcodec: two commands for a newcomer.
#   make demo   install, then encode and decode a Kodak image with the shipped weights
#   make test   install (with the training extras), then lint (ruff, mypy) and run the
#               default test suite; make test-slow runs the tests marked slow (training runs)

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
DEMO_IMAGE  ?= ../shared/data/kodak/kodim23.png
DEMO_OUT    ?= demo-out
QUALITY     ?= 4
# torch and its matching torchvision (compressai needs torchvision), from the default
# package index: on Linux that is the CUDA build, which pulls the nvidia-* libraries
# (several GB to download, about 4.5 GB installed); the tests and CPU training need no
# GPU. TORCH_INDEX passes pip options for another index (e.g. PyTorch's CPU-only wheels,
# a few hundred MB); not tried here, where only the default index can be reached.
TORCH_PINS  ?= torch==2.14.1 torchvision==0.29.1
TORCH_INDEX ?=

.PHONY: demo test test-slow lint bench clean install install-dev pack

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.base
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH_INDEX) $(TORCH_PINS)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[train,bench,dev]'
	touch $@

install: $(VENV)/.base
install-dev: $(VENV)/.dev

demo: $(VENV)/.base
	@mkdir -p $(DEMO_OUT)
	$(VENV)/bin/bbcodec encode $(DEMO_IMAGE) $(DEMO_OUT)/demo.bbc --quality $(QUALITY) --verbose
	$(VENV)/bin/bbcodec decode $(DEMO_OUT)/demo.bbc $(DEMO_OUT)/demo.png
	$(VENV)/bin/bbcodec info $(DEMO_OUT)/demo.bbc
	@$(PY) -c "import sys,numpy as np; from PIL import Image; \
a=np.asarray(Image.open(sys.argv[1]).convert('RGB'),float); b=np.asarray(Image.open(sys.argv[2]),float); \
mse=((a-b)**2).mean(); print(f'decoded {sys.argv[2]}: PSNR {10*np.log10(255**2/mse):.2f} dB against {sys.argv[1]}')" \
	$(DEMO_IMAGE) $(DEMO_OUT)/demo.png

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check bbcodec tests benchmarks
	$(PY) -m mypy

# The default suite deselects the tests marked slow (pyproject addopts).
test: lint
	$(PY) -m pytest -q

# Only the slow tests; pytest's exit code 5 (none collected) is not a failure.
test-slow: $(VENV)/.dev
	$(PY) -m pytest -q -m slow || [ $$? -eq 5 ]

bench: $(VENV)/.dev
	$(VENV)/bin/bbcodec bench ../shared/data/kodak --out report

# The training data packed losslessly into .pack/train-K.npz parts of <= 50 MB each, to
# carry to a GPU machine (one part per call: a machine keeps what an earlier call left).
pack: $(VENV)/.dev
	$(PY) -m bbcodec.train.data ../shared/data/train .pack

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache .mypy_cache
