"""Test-session settings shared by the unit tests and the notebook runs (nbval).

Notebooks executed by the tests run at the ``smoke`` profile unless KDLIB_PROFILE is already
set, and write their records and cached models into a temporary folder, never over the
committed ``results/`` records or the user's ``~/.cache/kdlib``.
"""

import os
import tempfile


def pytest_configure(config):
    scratch = tempfile.mkdtemp(prefix="kdlib-test-")
    os.environ.setdefault("KDLIB_PROFILE", "smoke")
    os.environ["KDLIB_RESULTS_DIR"] = os.path.join(scratch, "results")
    os.environ["KDLIB_CACHE_DIR"] = os.path.join(scratch, "cache")
    os.environ.pop("KDLIB_RESUME", None)  # a developer's resumed run does not reach the tests


# A run cut off mid-way (a timeout, a killed kernel) leaves its partial copy beside the notebook
# as a hidden ``.NN_name.*.ipynb`` (kdlib.runner): it is not one of the course's notebooks.
collect_ignore_glob = ["notebooks/.*.ipynb"]
