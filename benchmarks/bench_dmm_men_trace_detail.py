"""Which quantity of the DMM-MEN global fit mixes slowly?  One chain at the
paper's size (class 1: 7 000 images, 300 pixels, J = 6, K = 3, plain sampler),
recording after every sweep the marginal log posterior, the complete-data
log-likelihood ``sum_i log N(y_i | x_i beta_{z_i}, sigma_{z_i}^2)`` (the
replica-exchange energy), the elastic-net prior term of the occupied
components, lambda of the used penalty group, alpha, the sorted component
sizes and the population coefficient map; prints their single-chain bulk ESS
(arviz-stats) over the second half.

Usage::

    python benchmarks/bench_dmm_men_trace_detail.py [--J 6] [--n-iter 1500] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from captum_prior.proxy._dmm_men_post import scalar_summary
from captum_prior.proxy._dmm_men_sampler import Sampler, log_orthant_normal

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dmm_men_mixing import paper_hyper  # noqa: E402
from bench_dmm_men_modes import problem  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--J", type=int, default=6)
    ap.add_argument("--n-iter", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="/tmp/i18b/problem_class1.npz")
    args = ap.parse_args()
    torch.set_num_threads(1)
    Xd, y = problem(1, 7000, args.cache)
    n, J = len(y), args.J
    h = paper_hyper(J, y)
    rng = np.random.default_rng(args.seed)
    smp = Sampler(Xd, y, h, rng)
    st = smp.initial_state(rng.integers(0, J, size=n))
    rec = {k: [] for k in ("lpm", "cll", "prior", "lam1", "lam2", "alpha", "groups")}
    sizes, pop = [], []
    c0 = time.process_time()
    for it in range(args.n_iter):
        smp.sweep(st, adapt=it < args.n_iter // 2, it=it)
        rec["lpm"].append(smp.log_posterior(st)["log_posterior_marginal"])
        rec["cll"].append(smp.complete_loglik(st))
        cnt = np.bincount(st.z, minlength=J)
        occ = cnt > 0
        on = log_orthant_normal(
            smp._stats(st), smp.p, st.sig2, st.lam1[st.c], st.lam2[st.c], pairs=True
        )
        rec["prior"].append(float(on[occ].sum()))
        used = np.unique(st.c[occ])
        big = used[np.argmax(np.bincount(st.c[occ], minlength=h.K)[used])]
        rec["lam1"].append(float(st.lam1[big]))
        rec["lam2"].append(float(st.lam2[big]))
        rec["alpha"].append(st.alpha)
        rec["groups"].append(int(used.size))
        sizes.append(np.sort(cnt)[::-1])
        pop.append(cnt @ st.beta[:, 1:] / n)
    cpu = (time.process_time() - c0) / args.n_iter
    b = args.n_iter // 2

    def ess(x):
        return scalar_summary(np.asarray(x, dtype=float)[None, b:])["ess_bulk"]

    out = {
        "command": "python " + shlex.join(sys.argv),
        "cpu_seconds_per_sweep": cpu,
        "kept": args.n_iter - b,
        "penalty_groups_used_counts": np.bincount(rec["groups"]).tolist(),
    }
    for k, v in rec.items():
        x = np.asarray(v, dtype=float)[b:]
        out[k] = {"mean": float(x.mean()), "sd": float(x.std()), "ess_bulk": ess(v)}
    S = np.asarray(sizes)
    out["largest_size"] = {
        "ess_bulk": ess(S[:, 0]),
        "min": int(S[b:, 0].min()),
        "max": int(S[b:, 0].max()),
    }
    P = np.asarray(pop)
    top = np.argsort(-np.abs(P[b:].mean(0)))[:20]
    e = [ess(P[:, j]) for j in top]
    out["population_top20_ess_min_median"] = [float(min(e)), float(np.median(e))]
    print(json.dumps(out, indent=1))
    (RESULTS / f"dmm_men_trace_detail_J{J}_seed{args.seed}.json").write_text(
        json.dumps(out, indent=1)
    )


if __name__ == "__main__":
    main()
