"""JGMM fit speed vs scikit-learn's GaussianMixture(covariance_type="diag").

Side by side in ONE run (the machine is shared and noisy), alternating the
order of the contenders in each repeat:

- ``sklearn``: ``GaussianMixture(K_x, covariance_type="diag")`` fitted on the
  lower features X alone (float64, its own k-means initialisation);
- ``jgmm64`` / ``jgmm32``: ``JointGaussianMixture(K_x, K_y)`` fitted on X and
  the logits Y (exact E-step, PCA whitening, k-means init), float64 / float32;
- the same number of EM iterations for all (``tol=0`` so none stops early).

Also timed: the EM phase alone (both started from the same given
initialisation, no k-means), and the "physical limit" of one diag-GMM EM
iteration: the two bare matrix products any such EM needs on X
(``[x^2, x] @ coef`` for the log-densities and ``resp^T @ [x^2, x]`` for the
statistics).

Features: Fashion-MNIST training set (60k), default CNN, lower = conv2
average-pooled to ``--pool`` x ``--pool`` and flattened (``--pool 1`` = 64
dims), higher = logits (10).

Usage::

    python benchmarks/bench_jgmm_speed.py [--iters 30] [--repeats 3] [--pool 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_info, threadpool_limits

from captum_prior._random import torch_generator
from captum_prior.data import load_fashion_mnist
from captum_prior.models import load_fashion_cnn
from captum_prior.proxy import JointGaussianMixture

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()


def features(n: int, pool: int, threads: int) -> tuple:
    from captum_prior._features import layer_features

    model = load_fashion_cnn()
    x, _ = load_fashion_mnist("train")
    x = x[:n]
    t0 = time.perf_counter()
    lows, outs = [], []
    for i in range(0, x.shape[0], 2000):
        f, o = layer_features(model, model.conv2, x[i : i + 2000], batch_size=2000, with_outputs=True)
        lows.append(torch.nn.functional.adaptive_avg_pool2d(f, pool).flatten(1))
        outs.append(o)
    return torch.cat(lows).double(), torch.cat(outs).double(), time.perf_counter() - t0


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=60000)
    p.add_argument("--pool", type=int, default=1, help="conv2 pooled to pool x pool (1 -> 64 dims)")
    p.add_argument("--kx", type=int, default=64)
    p.add_argument("--ky", type=int, default=10)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "jgmm_speed.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    # the same thread count for scikit-learn's BLAS / OpenMP as for torch, so a
    # --threads 1 run is one thread on both sides
    _limits = threadpool_limits(args.threads)  # noqa: F841 (kept for the whole run)
    warnings.simplefilter("ignore", ConvergenceWarning)

    X, Y, t_feat = features(args.n, args.pool, args.threads)
    Xn = X.numpy()
    print(f"features {tuple(X.shape)} + {tuple(Y.shape)} in {t_feat:.1f}s", flush=True)

    def sk_fit():
        GaussianMixture(args.kx, covariance_type="diag", max_iter=args.iters, tol=0.0,
                        random_state=args.seed).fit(Xn)

    def jg_fit(dtype):
        xx, yy = (X, Y) if dtype == "float64" else (X.float(), Y.float())

        def run():
            JointGaussianMixture(args.kx, args.ky, max_iter=args.iters, tol=0.0, random_state=args.seed,
                                 dtype=dtype).fit(xx, yy)
        return run

    # EM phase only, from one shared initialisation (whitening off for sklearn parity)
    est = JointGaussianMixture(args.kx, args.ky, max_iter=args.iters, tol=0.0, whiten=False, random_state=args.seed)
    p0 = est._init_params(X[:, None, :], Y, torch_generator(args.seed), None)
    xw, yw = X[:, None, :], Y

    def sk_em():
        GaussianMixture(args.kx, covariance_type="diag", max_iter=args.iters, tol=0.0,
                        weights_init=np.full(args.kx, 1.0 / args.kx), means_init=p0["mu"].numpy(),
                        precisions_init=(1.0 / p0["var"]).numpy(), init_params="random_from_data",
                        random_state=args.seed).fit(Xn)

    def jg_em():
        est._em(xw, yw, dict(p0))

    # physical floor: the two GEMMs of one diag-GMM EM iteration, x iters
    xx = torch.cat([X * X, X], 1)
    coef = torch.randn(args.kx, xx.shape[1], dtype=torch.float64)

    def floor():
        for _ in range(args.iters):
            r = xx @ coef.T
            _ = r.T @ xx

    contenders = {
        "sklearn_fit": sk_fit, "jgmm64_fit": jg_fit("float64"), "jgmm32_fit": jg_fit("float32"),
        "sklearn_em": sk_em, "jgmm64_em": jg_em, "gemm_floor": floor,
    }
    times = {k: [] for k in contenders}
    names = list(contenders)
    for rep in range(args.repeats):
        order = names if rep % 2 == 0 else names[::-1]
        for k in order:
            times[k].append(timed(contenders[k]))
            print(f"rep {rep} {k}: {times[k][-1]:.2f}s", flush=True)

    def ratios(a: str, b: str) -> list:
        return [x / y for x, y in zip(times[a], times[b])]

    med = {k: statistics.median(v) for k, v in times.items()}
    res = {
        "command": "python " + " ".join(sys.argv),
        "what": "fit time of JointGaussianMixture(K_x, K_y) on (X, Y) vs sklearn GaussianMixture(K_x, diag) "
                "on X alone, same EM iterations (tol=0), median over repeats, contenders alternated",
        "n_samples": int(X.shape[0]), "lower_dim": int(X.shape[1]), "higher_dim": int(Y.shape[1]),
        "K_x": args.kx, "K_y": args.ky, "iterations": args.iters, "repeats": args.repeats,
        "threads": args.threads, "feature_extraction_s": round(t_feat, 2),
        "times_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "median_s": {k: round(v, 3) for k, v in med.items()},
        "ratio_full_fit_jgmm64_over_sklearn": {
            "median_of_ratios": round(statistics.median(ratios("jgmm64_fit", "sklearn_fit")), 3),
            "per_repeat": [round(r, 3) for r in ratios("jgmm64_fit", "sklearn_fit")]},
        "ratio_full_fit_jgmm32_over_sklearn": {
            "median_of_ratios": round(statistics.median(ratios("jgmm32_fit", "sklearn_fit")), 3),
            "per_repeat": [round(r, 3) for r in ratios("jgmm32_fit", "sklearn_fit")]},
        "ratio_em_only_jgmm64_over_sklearn": {
            "median_of_ratios": round(statistics.median(ratios("jgmm64_em", "sklearn_em")), 3),
            "per_repeat": [round(r, 3) for r in ratios("jgmm64_em", "sklearn_em")]},
        "ratio_em_only_jgmm64_over_gemm_floor": round(med["jgmm64_em"] / med["gemm_floor"], 3),
        "ratio_em_only_sklearn_over_gemm_floor": round(med["sklearn_em"] / med["gemm_floor"], 3),
        "target": "JGMM full fit within 1.5x of sklearn GaussianMixture(diag) on X alone",
        "torch": torch.__version__, "machine": platform.platform(),
        "blas_threads": [
            {"api": i["internal_api"], "threads": i["num_threads"]} for i in threadpool_info()
        ],
        "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "note": "shared 2-core machine; timings are noisy, ratios are taken within each repeat",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k != "times_s"}, indent=2))


if __name__ == "__main__":
    main()
