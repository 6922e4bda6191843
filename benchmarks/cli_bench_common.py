"""Shared pieces of the two CLI timing benchmarks, ``bench_cli_evaluate.py``
and ``bench_cli_explain_ig.py``.

Not a public module: running ``captum_prior.cli.main`` in-process and quietly,
the header every result records (command, commit, machine, load), and
writing a result as ``.json`` and ``.md`` in ``benchmarks/results``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from typing import Any, Dict, List

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = str(_provenance.results_dir())
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def run_cli(argv: List[str]) -> float:
    """Seconds ``captum_prior.cli.main(argv)`` takes, its stdout/stderr kept;
    raises RuntimeError (with the end of stderr) if it fails."""
    from captum_prior.cli import main

    err = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    elapsed = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({rc}): {err.getvalue()[-2000:]}")
    return elapsed


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_header(what: str) -> Dict[str, Any]:
    """What is measured, the command line, commit, machine and load before."""
    return {
        "what": what,
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads",
        "uptime_before": uptime(),
    }


def save_result(result: Dict[str, Any], name: str, tag: str, title: str, body: List[str]) -> None:
    """Write ``result`` to ``RESULTS/name[_tag].json`` and a Markdown page
    (``title``, the header of :func:`run_header`, then ``body``) to ``.md``;
    print the page."""
    os.makedirs(RESULTS, exist_ok=True)
    stem = os.path.join(RESULTS, name + (f"_{tag}" if tag else ""))
    with open(stem + ".json", "w") as fh:
        json.dump(result, fh, indent=1)
    lines = [
        f"# {title}",
        "",
        f"{result['what']}.",
        "",
        f"- command: `{result['command']}`",
        f"- commit: {result['commit']}",
        f"- machine: {result['machine']}",
        f"- load: before `{result['uptime_before']}`; after `{result['uptime_after']}`",
    ] + body
    with open(stem + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
