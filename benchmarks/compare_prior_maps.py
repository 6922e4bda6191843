"""BGMMPrior maps of an old commit against the working tree, image by image.

Computes ``BGMMPrior(model, random_state=0).prior_map`` (default settings,
predicted class as target) for every bundled Fashion-MNIST test image, in
batches of 50 and one image per call, once with the package of ``--old``
(a temporary ``git worktree``) and once with the working tree, each in a fresh
process, and reports the largest difference. Identical maps mean every
faithfulness result of DeepBGMM-EG computed with the old code stands.

Usage::

    python benchmarks/compare_prior_maps.py --old 33795c2

Writes ``benchmarks/results/bgmm_prior_maps_vs_<old>.md``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()

CHILD = r"""
import sys, torch
torch.set_num_threads(1)
from captum_prior.priors import BGMMPrior
from captum_prior.data import load_fashion_mnist_sample
from captum_prior.models import load_fashion_cnn
model = load_fashion_cnn()
x, _ = load_fashion_mnist_sample()
p = BGMMPrior(model, random_state=0)
with torch.no_grad():
    t = model(x).argmax(1)
torch.save({"batch50": torch.cat([p.prior_map(x[i:i + 50], t[i:i + 50]) for i in range(0, len(x), 50)]),
            "one": torch.cat([p.prior_map(x[i:i + 1], t[i:i + 1]) for i in range(len(x))])}, sys.argv[1])
"""


def maps(tree: Path, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", CHILD, str(out)], cwd=tempfile.gettempdir(), env=env, check=True)
    return torch.load(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True)
    a = p.parse_args()
    sha = lambda ref: subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, check=True,  # noqa: E731
                                     capture_output=True, text=True).stdout.strip()
    old_sha, new_sha = sha(a.old), sha("HEAD")
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), a.old], cwd=ROOT, check=True)
        try:
            old = maps(tree, Path(tmp) / "old.pt")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
        new = maps(ROOT, Path(tmp) / "new.pt")
    lines = [f"# BGMMPrior maps: {old_sha} vs {new_sha} (working tree)", "",
             f"Command: `python benchmarks/compare_prior_maps.py --old {a.old}`  ",
             "Every bundled Fashion-MNIST test image, bundled CNN, `BGMMPrior(model, random_state=0)` "
             "defaults, predicted class; each side in a fresh process, 1 thread.", "",
             "| calls | images | images whose map differs | largest absolute difference |", "|---|---|---|---|"]
    for k in old:
        d = (old[k] - new[k]).abs().flatten(1).amax(1)
        lines.append(f"| {k} | {len(d)} | {int((d > 0).sum())} | {d.max().item():.3g} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"bgmm_prior_maps_vs_{old_sha}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
