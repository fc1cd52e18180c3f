# The course's commands. The first one you run creates .venv and installs kdlib into it.
#   make test                 unit tests + every notebook at the smoke profile (nbval)
#   make run [PROFILE=cpu]    execute every notebook into runs/<profile>/ and summarise
#   make notebooks            re-execute the committed notebooks in place at the cpu profile
#   make lab                  JupyterLab on the notebooks
#   make slides               build the lecture deck into slides/build/index.html
#   make bench                print the benchmark figures

PYTHON ?= python3
VENV := .venv
PY := $(CURDIR)/$(VENV)/bin/python
PROFILE ?= cpu
ONLY ?=
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install test run notebooks lab slides bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[lab,test]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest
	KERAS_BACKEND=jax $(PY) -m pytest -m backend tests

run: install
	$(PY) -m kdlib.runner --profile $(PROFILE) --out runs/$(PROFILE) $(if $(ONLY),--only $(ONLY))

notebooks: install
	$(PY) -m kdlib.runner --profile cpu --in-place $(if $(ONLY),--only $(ONLY))

lab: install
	$(VENV)/bin/jupyter lab notebooks

slides: install
	$(PY) slides/build.py

bench: install
	$(PY) benchmarks/distill_throughput.py
	$(PY) benchmarks/data_load.py

clean:
	rm -rf runs slides/build
