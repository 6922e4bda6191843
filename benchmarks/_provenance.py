"""Provenance of benchmark result files: command, commit, machine and load.

Not a public module.  Every result file in ``benchmarks/results`` names what
it shows (its Markdown title) and records how it was made:

- ``command``: the command line that wrote it;
- ``commit``: ``git rev-parse --short HEAD`` of the checkout, with
  ``+dirty`` when tracked files had uncommitted changes;
- ``machine``: platform, CPU count and torch threads;
- ``load``: ``os.getloadavg()`` when the script started and when it wrote
  the file (the machine may be shared; a timing under load is not a
  measurement of the code alone).

A script calls :func:`stamp_at_exit` once, near its imports; when the script
exits, every ``.md`` / ``.json`` file it wrote under :func:`results_dir` gets
the record (files this process opened for writing or moved into place with
``os.replace``, so that a benchmark running beside another one does not stamp
the other's files): a ``Provenance`` block under the Markdown title, a
``"provenance"`` key in a JSON object.  :func:`results_dir` is
``benchmarks/results`` unless ``CAPTUM_PRIOR_BENCH_RESULTS`` names another
folder (``python -m benchmarks ... --quick`` sets it, so quick-size runs never
overwrite the committed full-size tables).
"""

from __future__ import annotations

import atexit
import builtins
import io
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Set

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_ENV = "CAPTUM_PRIOR_BENCH_RESULTS"
MARK = "<!-- provenance -->"


def results_dir() -> Path:
    """The folder result files go to (``$CAPTUM_PRIOR_BENCH_RESULTS`` or
    ``benchmarks/results``), created if missing."""
    d = Path(os.environ.get(RESULTS_ENV) or HERE / "results")
    d.mkdir(parents=True, exist_ok=True)
    return d


def git_commit() -> str:
    """Short hash of HEAD, ``+dirty`` if tracked files changed; ``unknown``
    outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    # only a torch the script imported itself: importing it in an atexit hook fails
    torch = sys.modules.get("torch")
    threads = "" if torch is None else f", torch {torch.__version__}, {torch.get_num_threads()} torch thread(s)"
    return f"{platform.platform()}, {os.cpu_count()} CPU(s){threads}"


def loadavg() -> List[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _argv() -> List[str]:
    """``sys.argv`` with the script path relative to the repository root."""
    argv = list(sys.argv)
    if argv and os.path.isabs(argv[0]) and argv[0].startswith(str(ROOT) + os.sep):
        argv[0] = os.path.relpath(argv[0], ROOT)
    return argv


def record(command: Optional[str] = None, load_start: Optional[List[float]] = None) -> Dict[str, Any]:
    """The provenance record of a result written now."""
    return {
        "command": command or "python " + " ".join(shlex.quote(a) for a in _argv()),
        "commit": git_commit(),
        "machine": machine(),
        "load_start": load_start,
        "load_end": loadavg(),
        "written_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def markdown_block(rec: Dict[str, Any]) -> str:
    load = rec.get("load_end")
    if isinstance(load, str):
        load_txt = load
    else:
        load_txt = f"start {rec.get('load_start')}, end {load} (1/5/15-min load average)"
    return "\n".join([
        MARK,
        f"- Command: `{rec['command']}`",
        f"- Commit: `{rec['commit']}`",
        f"- Machine: {rec['machine']}",
        f"- Load: {load_txt}",
        "",
    ])


def stamp(path: Path, rec: Dict[str, Any]) -> None:
    """Add ``rec`` to one result file (``.md``: a block under the title,
    replacing an earlier block; ``.json`` object: a ``provenance`` key)."""
    path = Path(path)
    if path.suffix == ".md":
        text = path.read_text()
        lines = text.splitlines()
        if MARK in lines:  # replace the earlier block (up to its blank line)
            i = lines.index(MARK)
            j = i
            while j < len(lines) and lines[j].strip():
                j += 1
            del lines[i:j + 1]
        at = 1 if lines and lines[0].startswith("#") else 0
        block = markdown_block(rec).splitlines()
        if at:
            block = [""] + block
        lines[at:at] = block
        path.write_text("\n".join(lines).rstrip("\n") + "\n")
    elif path.suffix == ".json":
        text = path.read_text()
        try:
            obj = json.loads(text)
        except ValueError:
            return
        if isinstance(obj, dict):
            obj["provenance"] = rec
            path.write_text(json.dumps(obj, indent=_indent(text), default=str))


def _indent(text: str) -> Optional[int]:
    """The indent of a JSON text (None: one line), so a stamp keeps its layout."""
    lines = text.splitlines()
    if len(lines) < 2:
        return None
    return len(lines[1]) - len(lines[1].lstrip(" ")) or None


_WRITTEN: Set[Path] = set()


def _track_writes() -> None:
    """Record the paths this process opens for writing or ``os.replace``-s
    into place (once per process)."""
    if getattr(os.replace, "_provenance", False):
        return
    real_open, real_replace = builtins.open, os.replace

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
            _WRITTEN.add(Path(file).resolve())
        return real_open(file, mode, *args, **kwargs)

    def replace_(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        real_replace(src, dst, *args, **kwargs)
        if isinstance(dst, (str, os.PathLike)):
            _WRITTEN.add(Path(dst).resolve())

    replace_._provenance = True  # type: ignore[attr-defined]
    builtins.open = io.open = open_  # type: ignore[assignment]
    os.replace = replace_


def stamp_new_files(since: float, rec: Dict[str, Any], folders: Iterable[Path],
                    only: Optional[Set[Path]] = None) -> List[Path]:
    """Stamp the ``.md`` / ``.json`` files of ``folders`` changed since
    ``since`` (and, when ``only`` is given, among those paths)."""
    done = []
    for folder in folders:
        for p in sorted(Path(folder).glob("*")):
            if p.suffix in (".md", ".json") and p.is_file() and p.stat().st_mtime >= since \
                    and (only is None or p.resolve() in only):
                stamp(p, rec)
                done.append(p)
    return done


def stamp_at_exit(command: Optional[str] = None) -> None:
    """Stamp every result file this process writes (see the module docstring)."""
    since, load0 = time.time() - 1.0, loadavg()
    _track_writes()

    def _on_exit() -> None:
        stamp_new_files(since, record(command, load0), {results_dir()}, only=set(_WRITTEN))

    atexit.register(_on_exit)
