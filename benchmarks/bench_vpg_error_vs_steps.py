#!/usr/bin/env python3
"""ValidPathGradients: integration error against a high-step reference, vs n_steps.

For each ``method`` of :class:`captum_prior.attr.ValidPathGradients` (Captum's
quadratures and the paper's Monte-Carlo sampling) and for Captum's
``IntegratedGradients`` with the same methods, the attributions at
``n_steps`` in ``--steps`` are compared with the same method family's
high-step reference on the same images and the same baseline:

- IG: Captum IG, ``method="gausslegendre"``, ``--ref-steps`` steps;
- VPG (valid-path filter on): ValidPathGradients, ``method="gausslegendre"``,
  ``--ref-steps`` steps. The filtered integrand has jumps (a feature turns
  valid or invalid along the path), so the reference is itself checked
  against ``--ref-steps / 2`` steps (column "ref. self-error").

One baseline per image, used by both: the optimized baseline of
``OptimizedBaseline(model, sigmas=(2.0,))`` (inputs in [0, 1]), so VPG runs
with ``B = 1`` and its ``n_steps`` path points cost what IG's do.

Error per image: relative L2 error ``||A - A_ref|| / ||A_ref||``; the table
gives the median over images (and the mean). Monte-Carlo rows use one seed
per ``n_steps``.

Usage (2 shared cores: run in the background with nice)::

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_vpg_error_vs_steps.py --model cnn --n-images 8
    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_vpg_error_vs_steps.py --model effnet \
        --n-images 3 --ref-steps 1024 --ig-methods gausslegendre riemann_trapezoid \
        --vpg-methods gausslegendre riemann_trapezoid monte_carlo --internal-batch-size 32
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.valid_path_common import (  # noqa: E402
    RESULTS,
    command_line,
    environment,
    load_model_and_data,
    md_table,
    write_json,
)

QUADRATURES = [
    "gausslegendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
]


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
    d = (a - ref).flatten(1).norm(dim=1)
    return (d / ref.flatten(1).norm(dim=1).clamp_min(1e-12)).numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["cnn", "effnet"], default="cnn")
    p.add_argument("--n-images", type=int, default=8)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    p.add_argument("--ref-steps", type=int, default=4096)
    p.add_argument("--ig-methods", nargs="+", default=QUADRATURES)
    p.add_argument("--vpg-methods", nargs="+", default=QUADRATURES + ["monte_carlo"])
    p.add_argument("--internal-batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="result prefix (default vpg_error_vs_steps_<model>)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from captum.attr import IntegratedGradients

    from captum_prior.attr import OptimizedBaseline, ValidPathGradients

    t0 = time.time()
    model, x, _y, desc = load_model_and_data(args.model, args.n_images, args.offset)
    ibs = args.internal_batch_size
    with torch.no_grad():
        target = torch.cat([model(x[i : i + ibs]).argmax(1) for i in range(0, len(x), ibs)])
    base = OptimizedBaseline(model, sigmas=(2.0,), internal_batch_size=ibs).compute(x)[0]
    ig = IntegratedGradients(model)
    vpg = ValidPathGradients(model)

    def run_ig(n: int, method: str) -> torch.Tensor:
        return ig.attribute(
            x, base, target=target, n_steps=n, method=method, internal_batch_size=max(ibs, len(x))
        ).detach()

    def run_vpg(n: int, method: str, seed: int = 0) -> torch.Tensor:
        return vpg.attribute(
            x, base, target=target, n_steps=n, method=method, internal_batch_size=ibs,
            generator=torch.Generator().manual_seed(seed),
        ).detach()

    R = args.ref_steps
    timings: Dict[str, float] = {}

    def timed(key: str, fn: Any) -> torch.Tensor:
        t = time.perf_counter()
        out = fn()
        timings[key] = time.perf_counter() - t
        return out

    ref_ig = timed("ref_ig", lambda: run_ig(R, "gausslegendre"))
    ref_ig_half = timed("ref_ig_half", lambda: run_ig(R // 2, "gausslegendre"))
    ref_vpg = timed("ref_vpg", lambda: run_vpg(R, "gausslegendre"))
    ref_vpg_half = timed("ref_vpg_half", lambda: run_vpg(R // 2, "gausslegendre"))
    valid_fraction = float(vpg.last_info_["valid_fraction"][0].mean())
    ref_self = {
        "IG": float(np.median(rel_err(ref_ig_half, ref_ig))),
        "VPG": float(np.median(rel_err(ref_vpg_half, ref_vpg))),
    }
    print(f"references done in {time.time() - t0:.0f} s; self-error {ref_self}", flush=True)

    results: List[Dict[str, Any]] = []
    for n in args.steps:
        for method in args.ig_methods:
            a = timed(f"IG/{method}/{n}", lambda n=n, method=method: run_ig(n, method))
            e = rel_err(a, ref_ig)
            results.append(dict(family="IG (Captum)", method=method, n_steps=n,
                                median=float(np.median(e)), mean=float(e.mean()),
                                per_image=e.tolist(), seconds=timings[f"IG/{method}/{n}"]))
        for method in args.vpg_methods:
            a = timed(f"VPG/{method}/{n}", lambda n=n, method=method: run_vpg(n, method, seed=n))
            e = rel_err(a, ref_vpg)
            results.append(dict(family="ValidPathGradients", method=method, n_steps=n,
                                median=float(np.median(e)), mean=float(e.mean()),
                                per_image=e.tolist(), seconds=timings[f"VPG/{method}/{n}"]))
        print(f"n_steps={n} done at {time.time() - t0:.0f} s", flush=True)

    prefix = args.out or f"vpg_error_vs_steps_{args.model}"
    payload = {
        "command": command_line(),
        "description": __doc__,
        "data": desc,
        "n_images": len(x),
        "reference_steps": R,
        "reference_self_error_median": ref_self,
        "valid_fraction_of_reference_vpg": valid_fraction,
        "results": results,
        "timings_s": timings,
        "loadavg": os.getloadavg(),
        "environment": environment(),
        "wall_s": time.time() - t0,
        "note": "machine shared by ~8 processes on 2 cores; timings are indicative only",
    }
    write_json(os.path.join(RESULTS, prefix + ".json"), payload)

    cols = [("IG (Captum)", m) for m in args.ig_methods] + [
        ("ValidPathGradients", m) for m in args.vpg_methods
    ]
    header = ["n_steps"] + [f"{'IG' if f.startswith('IG') else 'VPG'} {m}" for f, m in cols]
    rows = []
    for n in args.steps:
        row = [str(n)]
        for f, m in cols:
            r = next(r for r in results if r["family"] == f and r["method"] == m and r["n_steps"] == n)
            row.append(f"{r['median']:.2e}")
        rows.append(row)
    md = [
        f"# ValidPathGradients vs Captum IG: error against a {R}-step reference",
        "",
        f"Command: `{payload['command']}`",
        "",
        f"Data: {desc}; target = predicted class; one optimized baseline per image "
        "(OptimizedBaseline, sigma 2 px) shared by IG and VPG (B = 1).",
        "",
        "Median over images of the relative L2 error ||A - A_ref|| / ||A_ref||. "
        f"IG is compared with Captum IG (gausslegendre, {R} steps); VPG (valid-path "
        f"filter on) with VPG (gausslegendre, {R} steps). VPG monte_carlo is the "
        "paper's U(0, 1) sampling (one seed per row).",
        "",
        md_table(header, rows),
        "",
        f"Reference self-error (median relative L2 of the {R // 2}-step against the "
        f"{R}-step reference): IG {ref_self['IG']:.2e}, VPG {ref_self['VPG']:.2e}. "
        "Errors at or below these levels are not resolved.",
        f"Mean fraction of valid path features (VPG reference): {valid_fraction:.3f}.",
        "",
        f"Machine shared by ~8 processes on 2 cores (load average {os.getloadavg()}); "
        f"wall time {time.time() - t0:.0f} s, 1 thread.",
        "",
    ]
    with open(os.path.join(RESULTS, prefix + ".md"), "w") as f:
        f.write("\n".join(md))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    all_methods = list(dict.fromkeys(list(args.vpg_methods) + list(args.ig_methods)))
    for f, m in cols:
        ys = [next(r["median"] for r in results if r["family"] == f and r["method"] == m
                   and r["n_steps"] == n) for n in args.steps]
        c = colors[all_methods.index(m) % len(colors)]
        ax.loglog(args.steps, ys, "--" if f.startswith("IG") else "-", marker="o", ms=3,
                  color=c, label=f"{'IG' if f.startswith('IG') else 'VPG'} {m}")
    ax.axhline(ref_self["VPG"], color="grey", lw=0.8, ls=":", label="VPG ref. self-error")
    ax.set_xlabel("n_steps (model forward+backward rows per image)")
    ax.set_ylabel("median relative L2 error")
    ax.set_title(f"{args.model}: error vs a {R}-step reference")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, prefix + ".png"), dpi=120)
    print(f"wrote {prefix}.json/.md/.png in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
