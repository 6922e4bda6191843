"""Audit hook of the test run: refuse, and log, any read of the system dataset.

``tests/conftest.py`` installs :func:`install` in the pytest process and puts
this folder first on ``PYTHONPATH``, so that every Python process the tests
start (Jupyter kernels of the tutorial tests, the CLI, the README commands)
imports this file as its ``sitecustomize`` and installs the same hook.  The
folders watched come from ``_CAPTUM_PRIOR_GUARD_WATCH`` (``os.pathsep``
separated); each refused read is appended to the file named by
``_CAPTUM_PRIOR_GUARD_LOG``, which conftest checks after every test, so a
read that the code under test catches and hides still fails the test.
Another ``sitecustomize`` further down ``sys.path`` is still imported.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

WATCH_VAR = "_CAPTUM_PRIOR_GUARD_WATCH"
LOG_VAR = "_CAPTUM_PRIOR_GUARD_LOG"
#: audit events whose first argument is a path that is read or listed
EVENTS = frozenset({"open", "os.listdir", "os.scandir", "glob.glob", "shutil.copyfile", "shutil.copytree"})

#: the folders watched in this process, and the log (both set by install)
WATCHED: List[str] = []
LOG_PATH: Optional[str] = None
_installed = False


class SystemDataRead(RuntimeError):
    """Raised inside the test run when code opens a file of the system dataset."""


def _hook(event: str, args: tuple) -> None:
    if event not in EVENTS or not args or not WATCHED:
        return
    p = args[0]
    if p is None or isinstance(p, int):
        return  # a file descriptor, or os.listdir() of the working directory
    try:
        p = os.fsdecode(os.fspath(p))
    except TypeError:
        return
    p = os.path.abspath(p)
    for w in WATCHED:
        if p == w or p.startswith(w.rstrip(os.sep) + os.sep):
            if LOG_PATH:
                with open(LOG_PATH, "a") as fh:  # not under a watched folder: no recursion
                    fh.write(f"{os.getpid()} {event} {p}\n")
            raise SystemDataRead(
                f"{event}({p!r}): the test run must not read the system dataset {w!r}; "
                "tests and quick-mode notebooks use captum_prior.data.load_fashion_mnist_sample()"
            )


def install() -> None:
    """Install the hook once in this process (audit hooks cannot be removed)."""
    global LOG_PATH, _installed
    WATCHED[:] = [os.path.abspath(w) for w in os.environ.get(WATCH_VAR, "").split(os.pathsep) if w]
    LOG_PATH = os.environ.get(LOG_VAR) or None
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True


def _chain() -> None:
    """Import the next ``sitecustomize`` on sys.path, if any, as Python would have."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    import importlib.machinery
    import importlib.util

    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)


if __name__ == "sitecustomize" and os.environ.get(WATCH_VAR):
    install()
    _chain()
