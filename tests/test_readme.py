"""Every ```python block of README.md and of the documentation (docs/**/*.md,
docs/**/*.rst) runs as written.

Blocks run in a fresh namespace and an empty working directory. The fast ones
share one interpreter (so the edit loop pays for importing torch once); a
block preceded by the line ``<!-- slow -->`` is a full run and executes in its
own interpreter in the ``slow`` tier only.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS = os.path.join(ROOT, "docs")
# generated at build time from other sources (see docs/conf.py), not pages of ours
GENERATED = ("_build", "api", "tutorials")

FENCE = re.compile(r"^(?P<marker>(?:<!-- slow -->\n)?)```python\n(?P<code>.*?)^```", re.S | re.M)
RST_BLOCK = re.compile(r"^\.\. code-block:: python\n\n(?P<code>(?:(?:   .*)?\n)+)", re.M)


def doc_files() -> list[str]:
    files = [README]
    for ext in ("md", "rst"):
        for path in sorted(glob.glob(os.path.join(DOCS, "**", f"*.{ext}"), recursive=True)):
            rel = os.path.relpath(path, DOCS).split(os.sep)
            if rel[0] not in GENERATED:
                files.append(path)
    return files


def python_blocks(path: str) -> list[tuple[str, bool]]:
    """``(code, slow)`` for every python block of ``path``, in order."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".rst"):
        return [(textwrap.dedent(m.group("code")), False) for m in RST_BLOCK.finditer(text)]
    return [(m.group("code"), bool(m.group("marker"))) for m in FENCE.finditer(text)]


def all_blocks() -> list[tuple[str, int, str, bool]]:
    return [
        (os.path.relpath(path, ROOT), i, code, slow)
        for path in doc_files()
        for i, (code, slow) in enumerate(python_blocks(path))
    ]


BLOCKS = all_blocks()


def _env() -> dict:
    env = dict(os.environ)
    # this worktree's package, not an installed copy
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["MPLBACKEND"] = "Agg"
    return env


def test_docs_have_python_blocks():
    readme = [b for b in BLOCKS if b[0] == "README.md"]
    assert len(readme) >= 1, "the README must keep one short example"
    assert len(BLOCKS) - len(readme) >= 10, "the user guide lost its examples"
    assert any(not b[3] for b in BLOCKS) and any(b[3] for b in BLOCKS)


# one interpreter runs every fast block, each in a fresh namespace and directory
_RUNNER = r"""
import json, os, sys, tempfile, traceback
blocks = json.load(open(sys.argv[1]))
failures = []
for name, code in blocks:
    cwd = tempfile.mkdtemp()
    os.chdir(cwd)
    try:
        exec(compile(code, name, "exec"), {"__name__": "__main__"})
    except BaseException:
        failures.append((name, traceback.format_exc()[-3000:]))
    finally:
        import matplotlib.pyplot as plt
        plt.close("all")
json.dump(failures, open(sys.argv[2], "w"))
"""


def test_fast_blocks_run(tmp_path):
    blocks = [(f"{path} block {i}", code) for path, i, code, slow in BLOCKS if not slow]
    src, out = tmp_path / "blocks.json", tmp_path / "failures.json"
    src.write_text(json.dumps(blocks))
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(src), str(out)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0 and out.exists(), proc.stderr[-4000:]
    failures = json.loads(out.read_text())
    assert not failures, "\n\n".join(f"{name} failed:\n{tb}" for name, tb in failures)


@pytest.mark.slow
@pytest.mark.parametrize(
    "path,index,code",
    [(p, i, c) for p, i, c, slow in BLOCKS if slow],
    ids=[f"{p}:{i}" for p, i, c, slow in BLOCKS if slow],
)
def test_slow_block_runs(path, index, code, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, (
        f"{path} python block {index} failed:\n{code}\n--- stderr ---\n{proc.stderr[-4000:]}"
    )
