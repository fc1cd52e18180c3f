# The course's commands. The first one you run creates .venv and installs kdlib into it.
#   make test                 ruff, unit tests, every notebook at the smoke profile (nbval), the
#                             backend-agnostic tests and every notebook again under JAX
#   make run [PROFILE=cpu]    execute every notebook into runs/<profile>/ and summarise the records
#   make notebooks            re-make the committed runs (cpu: notebooks in place + results/;
#                             PROFILE=full: notebooks/full/ + results/full/), then the pages
#   make pages                the README's notebook index and docs/results.md, from the records
#   make lab [ARGS=...]       JupyterLab on the notebooks (extra arguments in ARGS)
#   make slides               build the lecture deck into slides/build/index.html
#   make bench                print the benchmark figures
#   make install [BACKEND=jax] only the set-up: BACKEND=jax installs JAX and no TensorFlow
#   make device-kit           for a lent GPU machine (Python 3.12, JAX, NumPy, SciPy, Matplotlib,
#                             h5py, no internet): the other wheels in .whl/, the datasets in .data/
#   make device-full ONLY=02,00 SOURCE_COMMIT=<commit>
#                             on that machine: install from .whl/, run each named notebook at the
#                             full profile under JAX, side by side on the one GPU, with RESUME=1
#                             for DEVICE_STEP seconds; pack the runs and records into
#                             $$OUT/device-runs.tgz, the cache into $$OUT/device-cache.tgz.*, the
#                             logs into $$OUT/log-*.txt
#   make device-unpack FROM=<folder>  here: unpack what a device-full call brought back
#                             (notebooks/full, results/full, runs, .kdcache) into this checkout
# ONLY=02 restricts run/notebooks to notebook 02 (ONLY=1,02: 01 and 02; numbers or whole names). RESUME=1 caches every
# trained student, so a run that stopped goes on where it stopped (long full runs, GPU calls).

PYTHON ?= python3
VENV := .venv
PY := $(CURDIR)/$(VENV)/bin/python
BACKEND ?= tensorflow
PROFILE ?= $(or $(KDLIB_PROFILE),cpu)
ONLY ?=
RESUME ?=
ARGS ?=
WHEEL_PYTHON ?= 3.12
DEVICE_PYTHON ?= python3
DEVICE_PROFILE ?= full
DEVICE_STEP ?= 540
DATASETS ?= $(KDLIB_DATA_DIR)
comma := ,
EXTRAS := $(BACKEND),lab,test$(if $(filter tensorflow,$(BACKEND)),$(comma)deploy)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install test run notebooks pages lab slides bench clean device-kit device-full device-unpack

$(VENV)/.installed-$(BACKEND): pyproject.toml
	@echo "== creating $(VENV) and installing kdlib[$(EXTRAS)] (a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --progress-bar on pip
	$(PY) -m pip install --progress-bar on -e ".[$(EXTRAS)]"
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "== installed: $$($(PY) -c 'import keras, kdlib; print("kdlib", kdlib.__version__, "· Keras", keras.__version__, "· backend", keras.backend.backend())')"

install: $(VENV)/.installed-$(BACKEND)

# Three lanes side by side, since none keeps both cores busy on its own (CI has 2): the unit
# tests under TensorFlow, then the backend-agnostic ones under JAX; every notebook at smoke
# under TensorFlow (nbval); and every notebook under JAX, in kernels where TensorFlow cannot be
# imported (tests/no_tensorflow.py, a JAX-only install), at XLA's lowest CPU optimisation level
# (smoke numbers mean nothing, compile time is what costs). Each JAX pass keeps a compilation
# cache of its own for the call (same-shaped models then reuse a compiled step: about 15 s
# less on notebooks 01 and 05). Under TensorFlow notebook 02 runs once, as the papermill test
# (every cell, with parameters; PAPERMILL_TEST), in the notebook lane instead of the unit lane;
# its NBVAL_CHECK_OUTPUT cell is checked in the JAX lane. The notebook lanes' outputs are
# printed whole once they end.
PAPERMILL_TEST := tests/test_notebooks.py::test_papermill_parameters_reach_the_record_and_tensorboard_logs_each_student
test: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@logs=$$(mktemp -d); ipy=$$logs/ipython; mkdir -p $$ipy/profile_default/startup; \
	cp tests/no_tensorflow.py $$ipy/profile_default/startup/00-no-tensorflow.py; \
	export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0; \
	IPYTHONDIR=$$ipy XLA_FLAGS=--xla_backend_optimization_level=0 KERAS_BACKEND=jax \
		JAX_COMPILATION_CACHE_DIR=$$logs/jax-cache-notebooks \
		$(PY) -m pytest -q notebooks > $$logs/jax 2>&1 & jax=$$!; \
	$(PY) -m pytest notebooks $(PAPERMILL_TEST) \
		--ignore=notebooks/02_densenet_teacher_student_mnist.ipynb > $$logs/notebooks 2>&1 & \
	notebooks=$$!; \
	echo "== unit tests, TensorFlow (the notebook lanes' outputs follow once they end)"; \
	$(PY) -m pytest tests --deselect $(PAPERMILL_TEST); units=$$?; \
	echo "== backend-agnostic unit tests, KERAS_BACKEND=jax"; \
	KERAS_BACKEND=jax JAX_COMPILATION_CACHE_DIR=$$logs/jax-cache-units \
		$(PY) -m pytest -m backend tests; jaxunits=$$?; \
	wait $$notebooks; nb=$$?; wait $$jax; jx=$$?; \
	echo "== every notebook at smoke, TensorFlow (02 as the papermill test):"; \
	cat $$logs/notebooks; \
	echo "== every notebook at smoke, KERAS_BACKEND=jax, TensorFlow unimportable:"; \
	cat $$logs/jax; rm -rf $$logs; \
	test $$units -eq 0 && test $$jaxunits -eq 0 && test $$nb -eq 0 && test $$jx -eq 0

run: install
	$(PY) -m kdlib.runner --profile $(PROFILE) $(if $(ONLY),--only $(ONLY)) $(if $(filter 1,$(RESUME)),--resume)

notebooks: install
	$(PY) -m kdlib.runner --profile $(PROFILE) --commit $(if $(ONLY),--only $(ONLY)) $(if $(filter 1,$(RESUME)),--resume)
	$(PY) -m kdlib.pages

pages: install
	$(PY) -m kdlib.pages

lab: install
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) $(ARGS) notebooks

slides: install
	$(PY) slides/build.py

bench: install
	$(PY) benchmarks/distill_throughput.py
	$(PY) benchmarks/data_load.py

# What the device already has is left out of .whl/ (it has no internet: pip installs offline).
# kdlib itself is not installed there: PYTHONPATH makes the runner and its kernels import the
# working tree's, so a kit made before a change to kdlib still runs the changed code.
DEVICE_HAS := numpy scipy matplotlib pillow fonttools kiwisolver contourpy cycler pyparsing h5py
device-kit:
	@test -d "$(DATASETS)/mnist" || { echo "make device-kit: no mnist/ in DATASETS='$(DATASETS)'; set KDLIB_DATA_DIR or DATASETS to the folder holding mnist/ and fashion-mnist/ (see docs/gpu.md)"; exit 2; }
	rm -rf .whl .data && mkdir -p .whl .data
	$(PYTHON) -m pip download -q --python-version $(WHEEL_PYTHON) --only-binary=:all: -d .whl \
		--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform any \
		"keras>=3.15" "tqdm>=4.66" "papermill>=2.6" "ipykernel>=6.29" "pyyaml>=6.0"
	cd .whl && rm -f $(foreach p,$(DEVICE_HAS),$(p)-*.whl)
	cp -r $(DATASETS)/mnist $(DATASETS)/fashion-mnist .data/
	@du -sh .whl .data

# A lent machine's copy of the tree need not carry this checkout's .git, or may carry an older
# one: SOURCE_COMMIT (the caller's `git rev-parse --short HEAD`, of a clean tree) names
# the code in the records. Its $$OUT takes at most 8 files of 16 MiB
# (64 MiB in all): what this call added to the cache comes back in 15 MiB pieces when it packs
# into 45 MiB, without the checkpoints of runs that finished (the cached models hold their
# weights) and without what was carried in (a 30 MB teacher need not travel back). Notebooks in
# ONLY run as separate processes sharing the GPU's memory; they take turns on the GPU, so a long
# notebook runs slower beside another (time it alone). JAX's compilation cache lets same-shaped
# models reuse a compiled step.
DEVICE_NOTEBOOKS = $(subst $(comma), ,$(ONLY))
device-full:
	@test -n "$(ONLY)" -a -n "$(SOURCE_COMMIT)" || { echo "make device-full: give ONLY=<notebooks, e.g. 02,00> and SOURCE_COMMIT=<git rev-parse --short HEAD of the clean tree sent>"; exit 2; }
	$(DEVICE_PYTHON) -m pip install -q --no-index --find-links .whl keras tqdm papermill ipykernel pyyaml
	@mkdir -p "$$OUT" .kdcache; touch /tmp/device-start; \
	export PYTHONPATH=$(CURDIR) KERAS_BACKEND=jax KDLIB_DATA_DIR=$(CURDIR)/.data \
		KDLIB_CACHE_DIR=$(CURDIR)/.kdcache KDLIB_SOURCE_COMMIT=$(SOURCE_COMMIT) PYTHONUNBUFFERED=1 \
		JAX_COMPILATION_CACHE_DIR=/tmp/kdlib-jax-cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=1 \
		XLA_PYTHON_CLIENT_MEM_FRACTION=$$($(DEVICE_PYTHON) -c "print(round(0.9 / $(words $(DEVICE_NOTEBOOKS)), 2))"); \
	pids=; for nb in $(DEVICE_NOTEBOOKS); do \
		timeout $(DEVICE_STEP) $(DEVICE_PYTHON) -m kdlib.runner --profile $(DEVICE_PROFILE) --resume \
			$(if $(filter full,$(DEVICE_PROFILE)),--commit) --only $$nb > "$$OUT/log-$$nb.txt" 2>&1 & \
		pids="$$pids $$!"; done; \
	status=0; for p in $$pids; do wait $$p || status=$$?; done; \
	pkill -f "[i]pykernel_launcher" 2>/dev/null; sleep 2; \
	tar czf "$$OUT/device-runs.tgz" $$(ls -d notebooks/full results/full runs 2>/dev/null); \
	find .kdcache -type f -newer /tmp/device-start -not -path "*/checkpoints/*" > /tmp/device-new; \
	tar czf /tmp/device-cache.tgz -T /tmp/device-new; \
	if [ $$(stat -c %s /tmp/device-cache.tgz) -le $$((45 * 1024 * 1024)) ]; then \
		split -b 15m /tmp/device-cache.tgz "$$OUT/device-cache.tgz."; \
	else echo "== what this call added to .kdcache is over 45 MiB packed: it stays on this machine (it cannot come back):"; \
		xargs -a /tmp/device-new -r du -h; fi; \
	ls -l "$$OUT"; \
	echo "== runner exit status $$status (124: stopped after DEVICE_STEP=$(DEVICE_STEP) s; run it again with .kdcache carried)"; \
	exit $$status

device-unpack:
	@test -n "$(FROM)" -a -f "$(FROM)/device-runs.tgz" || { echo "make device-unpack: FROM=<the folder holding device-runs.tgz>"; exit 2; }
	tar xzvf "$(FROM)/device-runs.tgz"
	if ls "$(FROM)"/device-cache.tgz.* >/dev/null 2>&1; then cat "$(FROM)"/device-cache.tgz.* | tar xzf -; fi
	git status --short

clean:
	rm -rf runs slides/build
