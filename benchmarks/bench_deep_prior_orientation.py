"""Orientation of DeepPrior-EG's prior maps on Fashion-MNIST: is the map higher
on the garment than on the background?

Object = the non-zero pixels of the image. For each test image and prior
variant, the map's mean over object pixels is compared with its mean over
background pixels; the result is the fraction of images where the object is
higher (with a 95 % Wilson interval). Variants:

* ``MGM variant="paper"``: the per-image Gaussian density of eq. 14
  (shrunk covariance, min-max normalised: a monotone transform of the
  density, so the same ordering as the paper's raw density);
* ``MGM PCA-8, unshrunk-equivalent``: the same with the rows reduced to 8
  principal components (a well-conditioned covariance, i.e. no shrinkage
  needed), to check that the orientation is not an artefact of shrinkage;
* ``MGM variant="corrected"``: the default (the map flipped to be high on the object);
* ``MGM reference_code``: the authors' released code (C x h map resized);
* ``BGMM`` reductions ``evidence`` (default) and ``center``.

Usage::

    python benchmarks/bench_deep_prior_orientation.py --n-images 1000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()


def wilson(k, n, z=1.96):
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def main():
    from captum_prior.data import load_fashion_mnist
    from captum_prior.models import load_fashion_cnn
    from captum_prior.priors import BGMMPrior, MGMPrior

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-images", type=int, default=1000)
    args = p.parse_args()
    torch.set_num_threads(1)
    model = load_fashion_cnn()
    x, _ = load_fashion_mnist("test")
    x = x[: args.n_images]
    obj = x[:, 0] > 0
    variants = {
        'MGM variant="paper" (eq. 14 density)': MGMPrior(model, variant="paper"),
        'MGM variant="paper", PCA-8 rows (no shrinkage needed)': MGMPrior(
            model, n_components=8, variant="paper"),
        'MGM variant="corrected" (default: flipped to be high on the object)': MGMPrior(model),
        'MGM variant="reference_code" (released code)': MGMPrior(model, variant="reference_code"),
        'BGMM reduction="evidence" (default)': BGMMPrior(model, random_state=0),
        'BGMM reduction="center"': BGMMPrior(model, reduction="center", random_state=0),
    }
    res = {}
    t0 = time.perf_counter()
    for name, prior in variants.items():
        higher = []
        for i in range(0, len(x), 100):
            m = prior.prior_map(x[i:i + 100])[:, 0]
            o = obj[i:i + 100]
            mo = (m * o).sum((1, 2)) / o.sum((1, 2)).clamp_min(1)
            mb = (m * ~o).sum((1, 2)) / (~o).sum((1, 2)).clamp_min(1)
            higher.append(mo > mb)
        h = torch.cat(higher)
        k, n = int(h.sum()), int(h.numel())
        res[name] = {"object_higher": k, "n": n, "fraction": k / n, "ci95": wilson(k, n),
                     "layer": prior.layer_name_}
        print(name, res[name], flush=True)
    out = {"command": "python " + " ".join(sys.argv), "data": f"Fashion-MNIST test, first {len(x)} images",
           "model": "bundled FashionCNN", "object": "pixels > 0", "results": res,
           "seconds": time.perf_counter() - t0, "loadavg": os.getloadavg()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "deep_prior_orientation.json").write_text(json.dumps(out, indent=1))
    lines = ["# Orientation of the prior maps on Fashion-MNIST", "",
             f"Command: `{out['command']}`", "",
             f"{out['data']}, {out['model']}, layer found by layer=None; object = pixels > 0. "
             "Fraction of images whose map is higher (mean over pixels) on the object than on the "
             "background, [95 % Wilson CI].", "",
             "| prior map | object higher | fraction [95 % CI] |", "|---|---|---|"]
    for name, r in res.items():
        lines.append(f"| {name} | {r['object_higher']}/{r['n']} | {r['fraction']:.3f} "
                     f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] |")
    (RESULTS / "deep_prior_orientation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
