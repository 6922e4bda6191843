"""Which DMM-MEN quantities fail to mix, and does a sampler change help?
Several short chains on a subsample of the class-1 global problem.

Data: the global fit's problem (all Fashion-MNIST images of ``--target``, the
300 highest-variance pixels, y = logit of the default CNN's class
probability), subsampled to ``--n`` images (seeded) so it runs in minutes.
``--n-chains`` chains (seeded from ``--seed``) of ``--n-iter`` sweeps of the
sampler with the switches in ``--options`` (e.g. ``collapse_beta_z=1``); rank
split R-hat and bulk ESS (arviz-stats) over the second half of every chain
of:

- label-invariant quantities: the marginal log posterior, the mixture
  log-likelihood, the number of occupied components, the size of the largest
  component, and the *population coefficient map*
  ``(1/n) sum_i beta_{z_i}`` (each example's allocated component's
  coefficients, averaged over examples; the worst of its top-20 entries);
- the label-dependent quantity the global benchmark used to monitor: the top
  20 coefficients of the component that is largest at the end (raw labels).

Also the top-150 overlap between chains (each chain's own posterior mean) of
both coefficient maps.

Usage::

    python benchmarks/bench_dmm_men_chains_small.py [--n 1000] [--n-iter 200]
        [--n-chains 4] [--options collapse_beta_z=1] [--seed 0] [--tag new]
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

from captum_prior.proxy._dmm_men_post import scalar_summary, vector_summary
from captum_prior.proxy._dmm_men_sampler import Sampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dmm_men_mixing import apply_options, class_problem  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def top_set(v: np.ndarray, k: int) -> set:
    return set(np.argsort(-np.abs(v), kind="stable")[:k].tolist())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=int, default=1)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-iter", type=int, default=200)
    ap.add_argument("--n-chains", type=int, default=4)
    ap.add_argument("--options", default="")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    Xd, y, h = class_problem(args.target, args.n)
    n, J = len(y), h.J
    seeds = np.random.SeedSequence(args.seed).spawn(args.n_chains)
    opts: dict = {}
    half = args.n_iter // 2
    scal = {k: [] for k in ("lp_marginal", "loglik", "n_occupied", "n_largest")}
    popmap, bigraw = [], []
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    for sd in seeds:
        rng = np.random.default_rng(sd)
        smp = Sampler(Xd, y, h, rng)
        opts = apply_options(smp, args.options)
        st = smp.initial_state(rng.integers(0, J, size=n))
        rec = {k: [] for k in scal}
        pm, zs, bs = [], [], []
        for it in range(args.n_iter):
            smp.sweep(st, adapt=it < half, it=it)
            lp = smp.log_posterior(st)
            nj = np.bincount(st.z, minlength=J)
            rec["lp_marginal"].append(lp["log_posterior_marginal"])
            ll = smp.loglik_matrix(st) + st.log_pi[None, :]
            rec["loglik"].append(float(np.sum(np.logaddexp.reduce(ll, axis=1))))
            rec["n_occupied"].append(int((nj > 0).sum()))
            rec["n_largest"].append(int(nj.max()))
            if it >= half:
                pm.append((nj / n) @ st.beta[:, 1:])
                zs.append(st.z.copy())
                bs.append(st.beta[:, 1:].copy())
        for k in scal:
            scal[k].append(rec[k][half:])
        popmap.append(np.asarray(pm))
        big_end = int(np.argmax(np.bincount(zs[-1], minlength=J)))
        bigraw.append(np.asarray(bs)[:, big_end])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    P = np.stack(popmap)  # (C, T, p)
    B = np.stack(bigraw)
    res = {k: scalar_summary(np.asarray(v, float)) for k, v in scal.items()}
    top_p = np.argsort(-np.abs(P.mean((0, 1))))[:20]
    res["population_map_top20"] = vector_summary(P[:, :, top_p])
    top_b = np.argsort(-np.abs(B.mean((0, 1))))[:20]
    res["largest_component_raw_top20"] = vector_summary(B[:, :, top_b])
    C = args.n_chains

    def pair_overlap(M):
        s = [top_set(M[c].mean(0), 150) for c in range(C)]
        v = [len(s[a] & s[b]) / 150 for a in range(C) for b in range(a + 1, C)]
        return [float(min(v)), float(np.mean(v))] if v else None

    out = {
        "command": "python " + shlex.join(sys.argv),
        "n": n,
        "n_iter": args.n_iter,
        "n_chains": C,
        "options": opts,
        "diagnostics": res,
        "top150_overlap_between_chains_min_mean": {
            "population_map": pair_overlap(P),
            "largest_component_raw": pair_overlap(B),
        },
        "occupied_end": [int(v[-1]) for v in scal["n_occupied"]],
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "seconds_per_sweep": cpu / (C * args.n_iter),
        "load_average_start_end": [load0, os.getloadavg()[0]],
    }
    tag = f"_{args.tag}" if args.tag else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"dmm_men_chains_small{tag}.json").write_text(json.dumps(out, indent=1))
    lines = [
        f"# DMM-MEN: which quantities mix ({args.tag or 'default sampler'})",
        "",
        f"Command: `{out['command']}`",
        "",
        f"{n} of the class-{args.target} images, 300 pixels, J=6, K=3; {C} chains x "
        f"{args.n_iter} sweeps, diagnostics over the last {args.n_iter - half} of "
        f"each; sampler options {opts or 'defaults'}; {cpu:.0f} s CPU "
        f"({out['seconds_per_sweep']:.2f} s per sweep), {wall:.0f} s wall, load "
        f"average {load0:.1f} -> {out['load_average_start_end'][1]:.1f} on 2 shared cores.",
        "",
        "| quantity | label-invariant | rank split R-hat | bulk ESS |",
        "|---|---|---|---|",
    ]
    for k in scal:
        lines.append(
            f"| {k} | yes | {res[k]['rhat']:.3f} | {res[k]['ess_bulk']:.0f} |"
        )
    for k, inv in (
        ("population_map_top20", "yes"),
        ("largest_component_raw_top20", "no"),
    ):
        r = res[k]
        lines.append(
            f"| {k} (worst / median) | {inv} | {r['rhat_max']:.3f} / "
            f"{r['rhat_median']:.3f} | {r['ess_bulk_min']:.0f} / "
            f"{r['ess_bulk_median']:.0f} |"
        )
    ov = out["top150_overlap_between_chains_min_mean"]
    lines += [
        "",
        "Top-150 overlap between chains (min, mean): population map "
        f"{ov['population_map']}, largest component (raw labels) "
        f"{ov['largest_component_raw']}; occupied components at the end "
        f"{out['occupied_end']}.",
    ]
    (RESULTS / f"dmm_men_chains_small{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
