"""Why does the DMM-MEN global fit mix poorly?  One chain on a subsample of the
class-1 global problem, with the traces of the quantities a sweep updates.

Data: the global fit's problem (all Fashion-MNIST images of ``--target``, the
300 highest-variance pixels, y = logit of the default CNN's class
probability), subsampled to ``--n`` images (seeded) so it runs in minutes.
One chain of ``--n-iter`` sweeps of the sampler with the switches given by
``--options`` (e.g. ``block_sigma=0,lambda_steps=1`` for the previous
sampler); bulk ESS (arviz-stats) over the second half of: the marginal and
joint log posterior, the mixture log-likelihood, alpha, sigma^2 and the
size of the largest component, the smallest lambda in use, and the
coefficients of the largest component; plus the sorted component sizes
along the chain.

Usage::

    python benchmarks/bench_dmm_men_mixing.py [--n 2000] [--n-iter 600]
        [--options block_sigma=0,lambda_steps=1] [--seed 0] [--tag old]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from captum_prior.data import load_fashion_mnist
from captum_prior.models import load_fashion_cnn
from captum_prior.proxy._dmm_men_post import scalar_summary
from captum_prior.proxy._dmm_men_sampler import Hyper, Sampler
from captum_prior.proxy.dmm_men_insights import class_logit, top_variance_pixels

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def paper_hyper(J: int, y: np.ndarray) -> Hyper:
    """The sampler's hyper-parameters as DMMMEN's defaults set them for the
    global fit (K = 3 penalties, the paper's priors, a vague intercept)."""
    return Hyper(J=J, K=3, a=0.5, b=0.5, e=5.0, f=1.0, s1=4.0, s2=1.0, V=1.0,
                 intercept_var=(10 * np.sqrt(np.mean(y * y))) ** 2)


def class_problem(target: int, n: int):
    """The global fit's problem for class ``target``: all its Fashion-MNIST
    images, the 300 highest-variance pixels, y = the default CNN's class logit,
    subsampled (seed 123) to ``n`` images.  Returns ``(Xd, y, hyper)`` with an
    intercept column in ``Xd`` and the global benchmark's hyper-parameters."""
    model = load_fashion_cnn()
    xtr, ytr = load_fashion_mnist("train")
    xte, yte = load_fashion_mnist("test")
    imgs = torch.cat([xtr[ytr == target], xte[yte == target]])
    idx = top_variance_pixels(imgs, 300)
    y_all = class_logit(model, imgs, target).numpy()
    X_all = imgs.reshape(len(imgs), -1)[:, idx].double().numpy()
    sub = np.sort(np.random.default_rng(123).choice(len(X_all), n, replace=False))
    X, y = X_all[sub], y_all[sub]
    Xd = np.column_stack([np.ones(len(X)), X])
    h = paper_hyper(6, y)
    return Xd, y, h


def apply_options(smp: Sampler, options: str) -> dict:
    """Set the sampler switches given as ``name=value,...``; returns them."""
    opts: dict = {}
    for item in [o for o in options.split(",") if o]:
        k, v = item.split("=")
        cur = getattr(smp, k)
        opts[k] = bool(int(v)) if isinstance(cur, bool) else type(cur)(float(v))
        setattr(smp, k, opts[k])
    return opts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=int, default=1)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--n-iter", type=int, default=600)
    ap.add_argument("--options", default="")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    Xd, y, h = class_problem(args.target, args.n)
    X = Xd[:, 1:]
    rng = np.random.default_rng(args.seed)
    smp = Sampler(Xd, y, h, rng)
    opts = apply_options(smp, args.options)
    st = smp.initial_state(rng.integers(0, 6, size=len(X)))
    names = ["lp_marginal", "lp_joint", "loglik", "alpha", "sigma2_big", "n_big"]
    names += ["lambda1_min", "lambda2_min"]
    rec = {k: [] for k in names}
    sizes, betas = [], []
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    for it in range(args.n_iter):
        smp.sweep(st, adapt=it < args.n_iter // 2, it=it)
        lp = smp.log_posterior(st)
        nj = np.bincount(st.z, minlength=6)
        big = int(np.argmax(nj))
        used = st.c[nj > 0]
        rec["lp_marginal"].append(lp["log_posterior_marginal"])
        rec["lp_joint"].append(lp["log_posterior"])
        rec["loglik"].append(lp["log_likelihood"])
        rec["alpha"].append(st.alpha)
        rec["sigma2_big"].append(st.sig2[big])
        rec["n_big"].append(nj[big])
        rec["lambda1_min"].append(st.lam1[used].min())
        rec["lambda2_min"].append(st.lam2[used].min())
        sizes.append(np.sort(nj)[::-1].tolist())
        betas.append(st.beta[big, 1:].copy())
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    half = args.n_iter // 2
    ess = {
        k: scalar_summary(np.asarray(v[half:], float)[None, :])["ess_bulk"]
        for k, v in rec.items()
    }
    B = np.asarray(betas[half:])
    from arviz_stats.base import array_stats

    eb = np.asarray(array_stats.ess(B.T[:, None, :]))
    out = {
        "command": "python " + shlex.join(sys.argv),
        "n": args.n,
        "n_iter": args.n_iter,
        "options": opts,
        "kept": args.n_iter - half,
        "ess_bulk": ess,
        "ess_bulk_coef_largest_component_min_median": [
            float(eb.min()),
            float(np.median(eb)),
        ],
        "component_sizes_every_10pct": sizes[:: max(1, args.n_iter // 10)],
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "load_average_start_end": [load0, os.getloadavg()[0]],
    }
    tag = f"_{args.tag}" if args.tag else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"dmm_men_mixing{tag}.json").write_text(json.dumps(out, indent=1))
    lines = [
        f"# DMM-MEN mixing diagnosis ({args.tag or 'default sampler'})",
        "",
        f"Command: `{out['command']}`",
        "",
        f"{args.n} of the class-{args.target} images, 300 pixels, J=6, K=3; one chain, "
        f"{args.n_iter} sweeps, bulk ESS over the last {out['kept']}; sampler options "
        f"{opts or 'defaults'}; {cpu:.0f} s CPU, {wall:.0f} s wall, load average "
        f"{load0:.1f} -> {out['load_average_start_end'][1]:.1f} on 2 shared cores.",
        "",
        "| quantity | bulk ESS |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.1f} |" for k, v in ess.items()]
    lines += [
        f"| coefficients of the largest component (min, median) | "
        f"{eb.min():.1f}, {np.median(eb):.1f} |",
        "",
        "Sorted component sizes every 10 % of the chain: "
        + "; ".join(str(s) for s in out["component_sizes_every_10pct"]),
    ]
    (RESULTS / f"dmm_men_mixing{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
