"""Table 2 of the JGMM paper on Fashion-MNIST: counterfactual effectiveness.

For each query (a random test image) every method proposes ``--n-candidates``
(1000, as in the paper) candidate counterfactuals in the lower feature space
(``conv2`` of the default FashionCNN average-pooled to 2x2, 4 positions x 64
channels):

- ``JGMM (sampled)``: draws from the lower component of the one-hot optimal
  α (eq. 8), one component per position (spatial extension);
- ``JGMM (mined)``: the training examples with the highest eq. 7 score;
- ``k-d tree, other class``: the nearest training examples (k-d tree on the
  whitened features) among those the model assigns to another class (the
  k-d-tree prototype baseline of DiCE-KD / Van Looveren & Klaise);
- ``nearest neighbours``: the nearest training examples of any class.

Distances are ℓ2 in the JGMM-whitened lower-feature space divided by
sqrt(256) (RMS per whitened dimension; 1.0 = one standard deviation per
dimension).  A candidate is *effective* under σ when its distance to the
query is ≤ σ AND the model's decision on it differs from the model's decision
on the query.  Effectiveness(σ) = effective candidates / candidates proposed,
averaged over queries (95% bootstrap CI over queries).  The decision on a
sampled feature is the model's output with conv2's output replaced by the
feature map upsampled from 2x2 (see JGMMExplainer.decide); real training
examples carry the model's decision on the image (their decoded decision is
reported too).

Usage::

    python benchmarks/bench_jgmm_counterfactuals.py [--n-train 20000] [--n-queries 100] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import NearestNeighbors

from captum_prior.data import load_fashion_mnist
from captum_prior.models import load_fashion_cnn
from captum_prior.proxy import JGMMExplainer

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
SIGMAS = (0.1, 0.5, 1.0, 2.0, 3.0)


def boot_ci(values: np.ndarray, seed: int, n_boot: int = 2000) -> tuple:
    rng = np.random.default_rng(seed)
    v = values[~np.isnan(values)]
    if v.size == 0:
        return (float("nan"), float("nan"), float("nan"))
    means = rng.choice(v, size=(n_boot, v.size), replace=True).mean(1)
    return float(v.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--n-queries", type=int, default=50)
    p.add_argument("--n-candidates", type=int, default=1000)
    p.add_argument("--kx", type=int, default=32)
    p.add_argument("--pool", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "jgmm_counterfactuals_table2"))
    args = p.parse_args()
    if args.quick:
        args.n_train, args.n_queries, args.n_candidates = 3000, 8, 200
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", ConvergenceWarning)
    t_start = time.perf_counter()

    model = load_fashion_cnn()
    xtr_all, _ = load_fashion_mnist("train")
    xte_all, _ = load_fashion_mnist("test")
    gen = torch.Generator().manual_seed(args.seed)
    xtr = xtr_all[torch.randperm(xtr_all.shape[0], generator=gen)[: args.n_train]]
    q_idx = torch.randperm(xte_all.shape[0], generator=gen)[: args.n_queries]
    xq = xte_all[q_idx]

    ex = JGMMExplainer(model, "conv2", n_lower=args.kx, pool=args.pool, spatial=True,
                       random_state=args.seed, progress=False, keep_inputs=False, batch_size=1000)
    t0 = time.perf_counter()
    ex.fit(xtr)
    fit_s = time.perf_counter() - t0
    print(f"JGMM fitted on {args.n_train} in {fit_s:.1f}s ({ex.mixture_.n_iter_} it)", flush=True)

    tr_low, tr_dec = ex._ex_lower, ex._ex_decisions
    tr_white = ex._examples_white().cpu().numpy()
    tr_dec_decoded = ex.decide(tr_low)
    q_low, _, q_out, _ = ex._extract_quiet(xq)
    q_dec = q_out.argmax(1)
    q_dec_decoded = ex.decide(q_low)
    q_white = ex._white(q_low).cpu().numpy()
    dim = tr_white.shape[1]
    scale = np.sqrt(dim)
    nn_all = NearestNeighbors(algorithm="kd_tree").fit(tr_white)
    trees = {}

    n_c = args.n_candidates
    methods = ["JGMM (sampled)", "JGMM (sampled, plain upsampling)", "JGMM (mined)", "k-d tree, other class", "nearest neighbours (any class)"]
    eff = {m: np.zeros((args.n_queries, len(SIGMAS))) for m in methods}
    cond = {m: np.full((args.n_queries, len(SIGMAS)), np.nan) for m in methods}
    eff_decoded = {m: np.zeros((args.n_queries, len(SIGMAS))) for m in methods[2:]}
    med_dist = {m: [] for m in methods}
    flip_rate = {m: [] for m in methods}
    m = ex.mixture_
    t0 = time.perf_counter()
    for qi in range(args.n_queries):
        c = int(q_dec[qi])
        cand = {}
        # JGMM sampled from the optimal component(s)
        coef = ex._coefficients(q_low[qi : qi + 1], "counterfactual").cpu()
        istar = coef.argmax(1)
        feats = m.sample(n_c, lower_component=istar, random_state=args.seed + qi)[0].float()
        d = np.linalg.norm(ex._white(feats).cpu().numpy() - q_white[qi], axis=1) / scale
        # decision: conv2 map of the query changed by the upsampled pooled difference
        cand["JGMM (sampled)"] = (d, ex.decide(feats, xq[qi]).numpy(), None)
        # decision: the pooled sample upsampled (nearest) on its own
        cand["JGMM (sampled, plain upsampling)"] = (d, ex.decide(feats).numpy(), None)
        # JGMM mined: top eq. 7 scores
        s = ex._local_scores(tr_low, coef.to(m._dev))
        top = s.topk(n_c).indices.numpy()
        d = np.linalg.norm(tr_white[top] - q_white[qi], axis=1) / scale
        cand["JGMM (mined)"] = (d, tr_dec[top].numpy(), tr_dec_decoded[top].numpy())
        # k-d tree on other-class examples
        if c not in trees:
            idx_c = np.nonzero(tr_dec.numpy() != c)[0]
            trees[c] = (NearestNeighbors(algorithm="kd_tree").fit(tr_white[idx_c]), idx_c)
        tree, idx_c = trees[c]
        dd, ii = tree.kneighbors(q_white[qi : qi + 1], n_neighbors=min(n_c, idx_c.size))
        sel = idx_c[ii[0]]
        cand["k-d tree, other class"] = (dd[0] / scale, tr_dec[sel].numpy(), tr_dec_decoded[sel].numpy())
        dd, ii = nn_all.kneighbors(q_white[qi : qi + 1], n_neighbors=n_c)
        cand["nearest neighbours (any class)"] = (dd[0] / scale, tr_dec[ii[0]].numpy(),
                                                  tr_dec_decoded[ii[0]].numpy())
        for name, (d, dec, dec_decoded) in cand.items():
            flipped = dec != c
            med_dist[name].append(float(np.median(d)))
            flip_rate[name].append(float(flipped.mean()))
            for si, sig in enumerate(SIGMAS):
                within = d <= sig
                eff[name][qi, si] = (within & flipped).sum() / n_c
                if within.any():
                    cond[name][qi, si] = (within & flipped).sum() / within.sum()
                if dec_decoded is not None:
                    eff_decoded[name][qi, si] = (within & (dec_decoded != c)).sum() / n_c
        if qi % 10 == 0:
            print(f"query {qi}: {time.perf_counter() - t0:.1f}s", flush=True)

    table = {}
    for name in methods:
        table[name] = {}
        for si, sig in enumerate(SIGMAS):
            mu, lo, hi = boot_ci(eff[name][:, si], args.seed)
            cm, clo, chi = boot_ci(cond[name][:, si], args.seed)
            row = {"effectiveness": round(100 * mu, 2), "ci95": [round(100 * lo, 2), round(100 * hi, 2)],
                   "flip_rate_among_within_sigma": None if np.isnan(cm) else round(100 * cm, 2),
                   "queries_with_any_candidate_within_sigma": int((~np.isnan(cond[name][:, si])).sum())}
            if name in eff_decoded:
                row["effectiveness_decoded_decisions"] = round(100 * eff_decoded[name][:, si].mean(), 2)
            table[name][str(sig)] = row
        table[name]["median_distance_to_query"] = round(float(np.median(med_dist[name])), 3)
        table[name]["flip_rate_unconstrained"] = round(100 * float(np.mean(flip_rate[name])), 2)
    # distance scale: nearest other-class neighbour of each query
    nearest_other = [float(trees[int(q_dec[i])][0].kneighbors(q_white[i : i + 1], 1)[0][0, 0] / scale)
                     for i in range(args.n_queries)]
    # how much of the decision the pooled conv2 grid carries, per grid size
    from captum_prior._features import layer_features
    from captum_prior.proxy.jgmm_explainer import _UpperNetwork

    fmap, fo = layer_features(model, model.conv2, xq, batch_size=500, with_outputs=True)
    upper = _UpperNetwork(model, model.conv2, (1, 28, 28), torch.float32, tuple(fmap.shape[1:]), torch.device("cpu"))
    perm = torch.roll(torch.arange(fmap.shape[0]), 1)
    fidelity = {}
    with torch.no_grad():
        for g in (1, 2, 4, 7):
            pf = torch.nn.functional.adaptive_avg_pool2d(fmap, g)
            fidelity[f"{g}x{g}"] = {
                "plain_upsampling_agrees_with_model": round(float((upper(pf).argmax(1) == fo.argmax(1)).double().mean()), 3),
                "anchored_on_another_query_follows_the_features": round(float((upper(pf, fmap[perm]).argmax(1) == fo.argmax(1)).double().mean()), 3),
                "anchored_on_another_query_follows_the_anchor": round(float((upper(pf, fmap[perm]).argmax(1) == fo.argmax(1)[perm]).double().mean()), 3),
            }
    out = {
        "command": "python " + " ".join(sys.argv),
        "what": "counterfactual effectiveness (%) under an l2 constraint sigma (Table 2 layout of the JGMM paper)",
        "effectiveness_definition": "per query: (# of the n proposed candidates with distance <= sigma AND a model "
                                    "decision different from the query's) / n; mean over queries, 95% bootstrap CI",
        "sigma_units": f"l2 distance in the JGMM-whitened lower-feature space divided by sqrt({dim}) "
                       "(RMS per whitened dimension; whitened features have unit variance per dimension)",
        "decision_of_sampled_features": "model output with conv2's output replaced by (a) the query's conv2 map "
                                        "plus the nearest-upsampled difference between the sample and the query's "
                                        "pooled map ('JGMM (sampled)'), or (b) the pooled sample upsampled on its own "
                                        "('plain upsampling'); real examples: the model's decision on the image",
        "setup": {"model": "default FashionCNN", "lower": f"conv2 avg-pooled to {args.pool}x{args.pool}, spatial "
                  f"JGMM (R={args.pool ** 2})", "K_x": args.kx, "K_y": 10, "n_train": args.n_train,
                  "n_queries": args.n_queries, "n_candidates_per_query": n_c, "jgmm_fit_s": round(fit_s, 1),
                  "jgmm_n_iter": ex.mixture_.n_iter_},
        "decoder_fidelity_on_queries": round(float((q_dec_decoded == q_dec).double().mean()), 4),
        "decoder_fidelity_on_train": round(float((tr_dec_decoded == tr_dec).double().mean()), 4),
        "nearest_other_class_distance": {"median": round(float(np.median(nearest_other)), 3),
                                         "p10": round(float(np.percentile(nearest_other, 10)), 3),
                                         "p90": round(float(np.percentile(nearest_other, 90)), 3)},
        "table": table,
        "pooled_grid_decision_content": fidelity,
        "scaled_down": f"{args.n_train} of 60000 training images; {args.n_queries} random test queries "
                       "(the paper: all test queries, CUB-200, MobileNet-v2)",
        "total_s": round(time.perf_counter() - t_start, 1),
        "torch": torch.__version__, "machine": platform.platform(), "threads": args.threads,
    }
    base = Path(args.out)
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".json").write_text(json.dumps(out, indent=2))
    md = ["# JGMM counterfactual effectiveness (Table 2 layout), Fashion-MNIST, default FashionCNN\n",
          f"Command: `{out['command']}`\n",
          f"Effectiveness: {out['effectiveness_definition']}.\n", f"σ units: {out['sigma_units']}.\n",
          f"Scaled down: {out['scaled_down']}.\n",
          "| Generator | " + " | ".join(f"σ = {s}" for s in SIGMAS) + " | median distance | flips (no σ) |",
          "|---|" + "---|" * (len(SIGMAS) + 2)]
    for name in methods:
        t = table[name]
        md.append(f"| {name} | " + " | ".join(
            f"{t[str(s)]['effectiveness']:.2f} [{t[str(s)]['ci95'][0]:.1f}, {t[str(s)]['ci95'][1]:.1f}]"
            for s in SIGMAS) + f" | {t['median_distance_to_query']:.3f} | {t['flip_rate_unconstrained']:.1f} |")
    md.append(f"\nNearest other-class training example: median distance {out['nearest_other_class_distance']['median']}"
              f" (p10 {out['nearest_other_class_distance']['p10']}, p90 {out['nearest_other_class_distance']['p90']}). "
              f"Decoder fidelity (decision on the pooled-and-upsampled conv2 map = decision on the image): "
              f"{out['decoder_fidelity_on_queries']} on the queries, {out['decoder_fidelity_on_train']} on the "
              "training subset.")
    base.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
