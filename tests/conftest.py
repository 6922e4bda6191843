"""The whole test run sees no system dataset, even on a machine that has it.

The README's test command must be all the set-up a user needs, so no test and
no quick-mode notebook may depend on the full Fashion-MNIST that
``apt-get install dataset-fashion-mnist`` puts in
``/usr/share/datasets/fashion-mnist``.  Two layers make that hold on every
machine, CI included:

1. ``_CAPTUM_PRIOR_HIDE_SYSTEM_DATA=1`` in the environment: the loader
   (``captum_prior.data.load_fashion_mnist``) then does not search the Debian
   folder, and raises its usual "not found" message.  Every process the tests
   start inherits it (notebook kernels, the CLI, torchrun workers).
2. An audit hook (``tests/_system_data_guard/sitecustomize.py``) in pytest
   and, through ``PYTHONPATH``, in every Python subprocess that keeps the
   inherited ``PYTHONPATH``: opening or listing anything under the system
   folder raises ``SystemDataRead`` and is logged; an autouse fixture fails
   the test whose run (in any process) logged a read.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

from captum_prior.data import fashion_mnist

GUARD_DIR = Path(__file__).resolve().parent / "_system_data_guard"
_spec = importlib.util.spec_from_file_location("_system_data_guard", GUARD_DIR / "sitecustomize.py")
guard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(guard)

os.environ[fashion_mnist.HIDE_SYSTEM_VAR] = "1"
os.environ[guard.WATCH_VAR] = os.path.abspath(fashion_mnist.DEBIAN_DIR)
_fd, _log = tempfile.mkstemp(prefix="captum_prior_system_data_reads_", suffix=".log")
os.close(_fd)
os.environ[guard.LOG_VAR] = _log
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(GUARD_DIR), os.environ.get("PYTHONPATH")]))
guard.install()


def _log_size() -> int:
    return os.path.getsize(_log)


@pytest.fixture(autouse=True)
def no_system_dataset_read():
    """Fail the test if it (or a process it started) read the system dataset."""
    start = _log_size()
    yield
    if _log_size() > start:
        with open(_log) as fh:
            fh.seek(start)
            reads = fh.read()
        pytest.fail("the test read the system dataset (the README's set-up does not install it):\n" + reads,
                    pytrace=False)


def pytest_unconfigure(config):
    try:
        os.remove(_log)
    except OSError:
        pass


# ---------------------------------------------------------------- test tiers
#: test modules that are slow as a whole: every notebook executed, every
#: README block in a subprocess, a two-rank torchrun.
SLOW_MODULES = frozenset({"test_tutorials.py", "test_readme.py", "test_torchrun.py"})

#: other tests over about a second on 2 cores (``pytest --durations=0``),
#: as ``module::test name`` without the parametrisation; one entry marks
#: every parametrisation of that test.
SLOW_TESTS = frozenset({
})


def pytest_collection_modifyitems(config, items):
    """Mark the slow tier (``@pytest.mark.slow``): ``pytest -m "not slow"`` is
    the edit loop (under a minute on 2 cores); ``pytest tests`` runs all."""
    slow = pytest.mark.slow
    for item in items:
        module = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
        name = f"{module}::{item.originalname if hasattr(item, 'originalname') else item.name}"
        if module in SLOW_MODULES or name in SLOW_TESTS:
            item.add_marker(slow)
