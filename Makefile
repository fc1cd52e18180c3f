# The course's commands. The first one you run creates .venv and installs kdlib into it.
#   make test                 ruff, unit tests, every notebook at the smoke profile (nbval), the
#                             backend-agnostic tests and every notebook again under JAX
#   make run [PROFILE=cpu]    execute every notebook into runs/<profile>/ and summarise the records
#   make notebooks            re-make the committed runs (cpu: notebooks in place + results/;
#                             PROFILE=full: notebooks/full/ + results/full/)
#   make lab [ARGS=...]       JupyterLab on the notebooks (extra arguments in ARGS)
#   make slides               build the lecture deck into slides/build/index.html
#   make bench                print the benchmark figures
#   make install [BACKEND=jax] only the set-up: BACKEND=jax installs JAX and no TensorFlow
# ONLY=02 restricts run/notebooks to the notebooks whose name contains 02. RESUME=1 caches every
# trained student, so a run that stopped goes on where it stopped (long full runs, GPU calls).

PYTHON ?= python3
VENV := .venv
PY := $(CURDIR)/$(VENV)/bin/python
BACKEND ?= tensorflow
PROFILE ?= $(or $(KDLIB_PROFILE),cpu)
ONLY ?=
RESUME ?=
ARGS ?=
comma := ,
EXTRAS := $(BACKEND),lab,test$(if $(filter tensorflow,$(BACKEND)),$(comma)deploy)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install test run notebooks lab slides bench clean

$(VENV)/.installed-$(BACKEND): pyproject.toml
	@echo "== creating $(VENV) and installing kdlib[$(EXTRAS)] (a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --progress-bar on pip
	$(PY) -m pip install --progress-bar on -e ".[$(EXTRAS)]"
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "== installed: $$($(PY) -c 'import keras, kdlib; print("kdlib", kdlib.__version__, "· Keras", keras.__version__, "· backend", keras.backend.backend())')"

install: $(VENV)/.installed-$(BACKEND)

# The notebooks' JAX pass runs with TensorFlow unimportable (tests/no_tensorflow.py, a JAX-only
# install), beside the others (its time is mostly XLA compiling, one core), at XLA's lowest CPU
# optimisation level: smoke numbers mean nothing, compile time is what costs.
test: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@log=$$(mktemp); ipy=$$(mktemp -d); mkdir -p $$ipy/profile_default/startup; \
	cp tests/no_tensorflow.py $$ipy/profile_default/startup/00-no-tensorflow.py; \
	IPYTHONDIR=$$ipy XLA_FLAGS=--xla_backend_optimization_level=0 KERAS_BACKEND=jax \
		$(PY) -m pytest -q notebooks > $$log 2>&1 & jax=$$!; \
	$(PY) -m pytest; tf=$$?; \
	KERAS_BACKEND=jax $(PY) -m pytest -m backend tests; units=$$?; \
	wait $$jax; notebooks=$$?; \
	echo "== every notebook at smoke under KERAS_BACKEND=jax, TensorFlow unimportable (ran beside the passes above):"; \
	cat $$log; rm -rf $$log $$ipy; \
	test $$tf -eq 0 && test $$units -eq 0 && test $$notebooks -eq 0

run: install
	$(PY) -m kdlib.runner --profile $(PROFILE) $(if $(ONLY),--only $(ONLY)) $(if $(filter 1,$(RESUME)),--resume)

notebooks: install
	$(PY) -m kdlib.runner --profile $(PROFILE) --commit $(if $(ONLY),--only $(ONLY)) $(if $(filter 1,$(RESUME)),--resume)

lab: install
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) $(ARGS) notebooks

slides: install
	$(PY) slides/build.py

bench: install
	$(PY) benchmarks/distill_throughput.py
	$(PY) benchmarks/data_load.py

clean:
	rm -rf runs slides/build
