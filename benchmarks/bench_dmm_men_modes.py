"""What are the stuck DMM-MEN chains?  Per-chain summaries at the paper's size.

The global fit's problem (all Fashion-MNIST images of ``--target``, the 300
highest-variance pixels, y = logit of the default CNN's class probability;
7 000 images for class 1), ``--n-chains`` chains of ``--n-iter`` sweeps run
one after the other in this process (1 thread) with the sampler switches in
``--options`` (``name=value,...``, e.g. ``split_merge=1``) and truncation
``--J``.  For every chain, over the second half of its sweeps: mean and sd of
the marginal log posterior and of the mixture log-likelihood, the sorted
component sizes at the end and their range over the kept draws, the number
of samples whose allocation ever changes, and CPU seconds per sweep.  Chains
whose mean log posterior differs by many within-chain sd are in local modes
of very different posterior mass (a better sampler should leave the worse
ones); chains with equal means in different partitions point to genuine
multimodality.  Whether a chain's partition moves at all: the adjusted Rand
index (ARI) between its allocations L sweeps apart, against the ARI between
different chains' last draws.  Also ArviZ rank split R-hat / bulk ESS of the
marginal log posterior and the mixture log-likelihood over the chains.

``--cache`` stores the problem (X, y) so repeated runs skip the CNN.

Usage::

    python benchmarks/bench_dmm_men_modes.py [--n-iter 600] [--n-chains 4]
        [--J 6] [--options split_merge=1] [--hyper e=1,f=20] [--init random]
        [--tag plain]

``--hyper`` overrides the sampler's hyper-parameters (the fields of
``Hyper``: e, f, a, b, ...), e.g. a sparse concentration.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from captum_prior.proxy._dmm_men_post import scalar_summary
from captum_prior.proxy._dmm_men_sampler import run_chain

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

from bench_dmm_men_mixing import paper_hyper  # noqa: E402


def problem(target: int, n: int, cache: str):
    if cache and Path(cache).exists():
        d = np.load(cache)
        return d["Xd"], d["y"]
    from bench_dmm_men_mixing import class_problem  # noqa: E402

    Xd, y, _ = class_problem(target, n)
    if cache:
        np.savez(cache, Xd=Xd, y=y)
    return Xd, y


def parse_options(s: str) -> dict:
    out: dict = {}
    for item in [o for o in s.split(",") if o]:
        k, v = item.split("=")
        if ":" in v:  # a list, e.g. temperatures=1:1.5:2.2
            out[k] = [float(t) for t in v.split(":")]
        elif v in ("True", "False"):
            out[k] = v == "True"
        else:
            f = float(v)
            out[k] = int(f) if f.is_integer() and "." not in v else f
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=int, default=1)
    ap.add_argument("--n", type=int, default=7000)
    ap.add_argument("--n-iter", type=int, default=600)
    ap.add_argument("--n-chains", type=int, default=4)
    ap.add_argument("--J", type=int, default=6)
    ap.add_argument("--options", default="")
    ap.add_argument(
        "--hyper",
        default="",
        help="hyper-parameter overrides, name=value,... (e.g. e=1,f=20: "
        "alpha ~ Gamma(1, rate 20) instead of the paper's Gamma(5, 1))",
    )
    ap.add_argument("--init", default="random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="/tmp/i18b/problem_class1.npz")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    Xd, y = problem(args.target, args.n, args.cache)
    n = len(y)
    h = dataclasses.replace(paper_hyper(args.J, y), **parse_options(args.hyper))
    opts = parse_options(args.options)
    seeds = np.random.SeedSequence(args.seed).spawn(args.n_chains)
    burn = args.n_iter // 2
    chains = []
    kept_lp, kept_ll, last_z = [], [], []
    load0 = os.getloadavg()[0]
    for c, sd in enumerate(seeds):
        out = run_chain(
            Xd, y, h, sd, args.n_iter, burn, 1, init=args.init, options=dict(opts)
        )
        z = out["z"].astype(np.int64)
        sizes = np.stack([np.bincount(r, minlength=args.J) for r in z])
        srt = -np.sort(-sizes, axis=1)
        mt, ll = out["marginal_trace"], out["loglik"]
        kept_lp.append(mt[burn:])
        last_z.append(z[-1])
        # partition movement: adjusted Rand index between the allocations of
        # kept draws L sweeps apart (1 = same partition up to labels)
        T = len(z)
        lags = [L for L in (1, 10, 100, 300, 1000, 3000) if L < T]
        ari_lag = {
            str(L): float(
                np.mean(
                    [
                        adjusted_rand_score(z[t], z[t + L])
                        for t in np.linspace(0, T - L - 1, 5).astype(int)
                    ]
                )
            )
            for L in lags
        }
        kept_ll.append(ll[burn:])
        moved = int(np.sum((z != z[0]).any(axis=0)))
        rec = {
            "chain": c,
            "lp_marginal_mean": float(mt[burn:].mean()),
            "lp_marginal_sd": float(mt[burn:].std()),
            "lp_marginal_first_quarter_of_kept": float(
                mt[burn : burn + max(1, (args.n_iter - burn) // 4)].mean()
            ),
            "lp_marginal_last_quarter_of_kept": float(
                mt[args.n_iter - max(1, (args.n_iter - burn) // 4) :].mean()
            ),
            "loglik_mean": float(ll[burn:].mean()),
            "loglik_sd": float(ll[burn:].std()),
            "sizes_sorted_last": srt[-1].tolist(),
            "sizes_sorted_min": srt.min(0).tolist(),
            "sizes_sorted_max": srt.max(0).tolist(),
            "n_occupied_min_max": [
                int((sizes > 0).sum(1).min()),
                int((sizes > 0).sum(1).max()),
            ],
            "samples_ever_moved_in_kept_draws": moved,
            "ari_within_chain_by_lag": ari_lag,
            "cpu_seconds": out["cpu_seconds"],
            "cpu_seconds_per_sweep": out["cpu_seconds"] / args.n_iter,
            "counters": out["counters"],
            "swap_acceptance": out.get("swap_acceptance"),
            "marginal_trace_every_10": mt[::10].tolist(),
        }
        chains.append(rec)
        print(
            f"chain {c}: lp {rec['lp_marginal_mean']:.1f} (sd "
            f"{rec['lp_marginal_sd']:.1f}), loglik {rec['loglik_mean']:.1f}, sizes "
            f"{rec['sizes_sorted_last']}, {rec['cpu_seconds_per_sweep']:.3f} s/sweep "
            f"{rec['counters']}, swaps {rec['swap_acceptance']}, ARI by lag {ari_lag}",
            flush=True,
        )
    ari_between = [
        adjusted_rand_score(last_z[a], last_z[b])
        for a in range(len(last_z))
        for b in range(a + 1, len(last_z))
    ]
    print("ARI between chains' last draws:", np.round(ari_between, 3))
    diag = {
        "ari_between_chains_last_draw": ari_between,
        "lp_marginal": scalar_summary(np.stack(kept_lp)),
        "loglik": scalar_summary(np.stack(kept_ll)),
    }
    print(
        "R-hat / bulk ESS, marginal log posterior:",
        diag["lp_marginal"]["rhat"],
        diag["lp_marginal"]["ess_bulk"],
    )
    res = {
        "diagnostics": diag,
        "command": "python " + shlex.join(sys.argv),
        "n": n,
        "J": args.J,
        "options": opts,
        "hyper": dataclasses.asdict(h),
        "init": args.init,
        "n_iter": args.n_iter,
        "load_average_start_end": [load0, os.getloadavg()[0]],
        "chains": chains,
    }
    tag = f"_{args.tag}" if args.tag else ""
    path = RESULTS / f"dmm_men_modes{tag}.json"
    path.write_text(json.dumps(res, indent=1, default=float))
    print("wrote", path)


if __name__ == "__main__":
    t = time.time()
    main()
    print(f"{time.time() - t:.0f} s")
