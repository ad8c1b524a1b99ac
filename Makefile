# `make run`: set up and start the dashboard on the embedded default model.
# `make test`: set up and run every test (unit, callbacks, browser, serving).
PYTHON ?= python3.11
VENV ?= .venv
TORCH_WHEELS ?= /opt/wheels
PIP_FLAGS := $(if $(wildcard $(TORCH_WHEELS)/torch-*.whl),--find-links $(TORCH_WHEELS),)
MODEL ?= facebook/detr-resnet-50
PORT ?= 8050

.PHONY: run test test-unit test-browser bench clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q $(PIP_FLAGS) -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(VENV)/bin/pip install -q $(PIP_FLAGS) -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/python -m app serve --model $(MODEL) --port $(PORT)

# unit and callback tests first; browser and serving tests in their own process (see tests/browser/conftest.py)
test: $(VENV)/.installed-dev
	$(VENV)/bin/python -m pytest -q tests --ignore=tests/browser
	$(VENV)/bin/python -m pytest -q tests/browser --headless

bench: $(VENV)/.installed
	for b in bench/*.py; do $(VENV)/bin/python -m bench.$$(basename $$b .py) || exit 1; done

clean:
	rm -rf $(VENV) cache
