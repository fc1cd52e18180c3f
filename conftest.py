"""Test-session settings shared by the unit tests and the notebook runs (nbval).

Notebooks executed by the tests run at the ``smoke`` profile unless KDLIB_PROFILE is already
set, and write their records and cached models into a temporary folder, never over the
committed ``results/`` records or the user's ``~/.cache/kdlib``. Every session checks at its
end that the working tree is as it found it (tests.helpers.tree_state): a test that wrote over
a committed notebook, record or README, or left a file in the tree, fails the session.
"""

import os
import tempfile
from pathlib import Path

import pytest

from tests.helpers import tree_state

ROOT = Path(__file__).resolve().parent
_TREE = pytest.StashKey[dict]()


def pytest_configure(config):
    scratch = tempfile.mkdtemp(prefix="kdlib-test-")
    os.environ.setdefault("KDLIB_PROFILE", "smoke")
    os.environ["KDLIB_RESULTS_DIR"] = os.path.join(scratch, "results")
    os.environ["KDLIB_CACHE_DIR"] = os.path.join(scratch, "cache")
    os.environ.pop("KDLIB_RESUME", None)  # a developer's resumed run does not reach the tests


def pytest_sessionstart(session):
    session.config.stash[_TREE] = tree_state(ROOT)


def pytest_sessionfinish(session, exitstatus):
    before = session.config.stash.get(_TREE, None)
    after = tree_state(ROOT) if before is not None else None
    if before is None or after is None:
        return
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    if changed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line(
            "\nFAILED: the tests changed the working tree (tests must write only to temporary "
            f"folders; if you edited these yourself during the run, run again): {changed}",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# A run cut off mid-way (a timeout, a killed kernel) leaves its partial copy beside the notebook
# as a hidden ``.NN_name.*.ipynb`` (kdlib.runner): it is not one of the course's notebooks.
collect_ignore_glob = ["notebooks/.*.ipynb"]
