"""Table 2 of the JGMM paper on Fashion-MNIST, in units a reader can use.

Setup: the default FashionCNN; lower features = ``conv2`` (64 x 14 x 14)
average-pooled with the paper's 2x2 kernel (``pool_kernel=2``: 7x7 = 49
positions of 64 channels, the spatial extension §3.3); higher = logits; the
JGMM is fitted on ``--n-train`` training images (the mining set), and a
disjoint ``--n-ref`` training images are the reference data for plausibility.

Three parts:

1. **Decoder fidelity** (how far a decision on *features* can be trusted):
   the fraction of held-out test images on which the model's decision on
   their pooled ``conv2`` features, brought back to 14x14 by a decoder and
   run through the rest of the network, equals its decision on the image.
   Before: the old default (2x2 output grid, nearest upsampling); after: the
   paper's 2x2 kernel with the fitted linear inverse (``decoder="linear"``).
2. **Counterfactual measures** (one counterfactual per query and generator),
   the standard measures of the counterfactual literature:

   - *validity*: the model's decision on the counterfactual differs from its
     decision on the query.  For real examples (mined, NUN) it is the decision
     on the image; for generated features it is the decision through the
     linear decoder (trust it as far as part 1's fidelity).  *Proxy validity*:
     the JGMM proxy's class on the counterfactual differs from the proxy's
     class on the query (no decoder involved);
   - *proximity*: ℓ2 distance to the query in the JGMM-whitened pooled
     feature space, divided by the query's distance to its nearest unlike
     neighbour (NUN: the nearest mining-set example the model assigns to
     another class).  1.0 = as far as the NUN;
   - *sparsity*: % of the 49 x 64 pooled features that changed by more than
     0.1 training standard deviations (lower = sparser);
   - *plausibility*: mean distance to the 5 nearest reference examples of the
     counterfactual's class (the model's decision on it), in the same NUN
     units (lower = more plausible), and the JGMM's own log-density of the
     lower features per dimension (higher = more plausible; favours JGMM
     samples by construction).

   Generators: ``JGMM sampled`` (eq. 8: 1000 draws from the optimal lower
   component at every position, filtered to those on which the model's
   decoded decision flips, ranked by eq. 7: what ``counterfactuals()``
   returns; when no draw flips, the top eq. 7 draw is proposed and counts as
   invalid), ``JGMM sampled, closest flipped`` (the closest flipped draw),
   ``JGMM mined`` (``counterfactuals(source="mined")``: the mining-set example
   with another decision and the highest eq. 7 score), ``NUN`` (nearest
   unlike neighbour; validity 1 and proximity 1 by construction) and ``MAD``
   (Wachter et al.: gradient descent in the pooled feature space through the
   decoder on ``hinge(flip) + λ · MAD-weighted L1``, λ raised until it flips).
3. **Table 2 layout**: of the 1000 candidates each set-generator proposes,
   the % within σ x (query's NUN distance) AND flipping the model, for σ in
   NUN units.

All intervals: 95 % BCa bootstrap over queries (``captum_prior.metrics.stats``);
Δ columns are paired differences against NUN.  Usage::

    python benchmarks/bench_jgmm_counterfactuals.py [--n-train 5000] [--n-queries 60] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning

from captum_prior._features import layer_features
from captum_prior.data import load_fashion_mnist
from captum_prior.metrics.stats import format_ci, markdown_table, mean_ci, summarize
from captum_prior.models import load_fashion_cnn
from captum_prior.proxy import JGMMExplainer, JointGaussianMixture
from captum_prior.proxy.jgmm_explainer import _InverseStats, _PoolInverse, _UpperNetwork

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()
SIGMAS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
GENERATORS = ("JGMM sampled (eq. 7 top, model-checked)", "JGMM sampled, closest flipped",
              "JGMM mined (eq. 7)", "NUN (nearest unlike neighbour)", "MAD (Wachter, feature space)")
SETS = ("JGMM sampled", "JGMM mined (eq. 7 top 1000)", "k-d tree, other class (1000 NUNs)",
        "nearest neighbours, any class")


def decoder_fidelity(model, fmap_tr, fmap_te, out_te) -> Dict[str, float]:
    """Decision through pooling + decoder vs decision on the image, on test maps."""
    size = tuple(fmap_te.shape[-2:])
    upper = _UpperNetwork(model, model.conv2, (1, 28, 28), torch.float32, tuple(fmap_te.shape[1:]),
                          torch.device("cpu"))
    y = out_te.argmax(1)
    res = {}
    with torch.no_grad():
        for name, cell, linear in (("2x2 output grid, nearest upsampling (old default)", (7, 7), False),
                                   ("2x2 output grid, linear inverse", (7, 7), True),
                                   ("2x2 kernel (7x7 map), nearest upsampling", (2, 2), False),
                                   ("2x2 kernel (7x7 map), linear inverse (new default)", (2, 2), True),
                                   ("3x3 kernel (4x4 map), linear inverse", (3, 3), True)):
            w = None
            nb = True
            if linear:
                st = _InverseStats(cell, fmap_tr.shape[0])
                st.add(fmap_tr)
                w, nb = st.solve(), st.neighbourhood
            dec = _PoolInverse(cell, size, w, nb)
            h, ww = size[0] // cell[0], size[1] // cell[1]
            pooled = F.avg_pool2d(fmap_te[:, :, : h * cell[0], : ww * cell[1]], cell)
            pred = torch.cat([upper(pooled[i:i + 500], None, dec).argmax(1) for i in range(0, len(y), 500)])
            res[name] = float((pred == y).double().mean())
    return res


def mad_counterfactual(ex: JGMMExplainer, q_feat: torch.Tensor, c: int, mad: torch.Tensor,
                       steps: int = 150) -> torch.Tensor:
    """Wachter et al. in the pooled feature space: minimise
    lam * hinge(logit_c - max_{j != c} logit_j + 0.1) + sum |x - x_q| / MAD,
    x >= 0 (post-ReLU averages), through the linear decoder; lam doubles
    (up to 5 times) until the decoded decision flips."""
    upper = ex._upper()
    lam = 1.0
    best = q_feat.clone()
    for _ in range(6):
        x = q_feat.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=0.05 * float(q_feat.abs().mean() + 1e-3))
        for _ in range(steps):
            logits = upper(ex._to_map(x[None]), None, ex.decoder_)[0]
            other = torch.cat([logits[:c], logits[c + 1:]]).max()
            loss = lam * F.relu(logits[c] - other + 0.1) + ((x - q_feat).abs() / mad).sum() / mad.numel()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(min=0.0)
        x = x.detach()
        best = x
        if int(ex.decide(x[None])[0]) != c:
            break
        lam *= 4.0
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-train", type=int, default=5000)
    p.add_argument("--n-ref", type=int, default=5000)
    p.add_argument("--n-queries", type=int, default=60)
    p.add_argument("--n-candidates", type=int, default=1000)
    p.add_argument("--n-fidelity", type=int, default=2000)
    p.add_argument("--kx", type=int, default=32)
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "jgmm_counterfactuals_table2"))
    args = p.parse_args()
    if args.quick:
        args.n_train, args.n_ref, args.n_queries, args.n_candidates, args.n_fidelity = 1500, 1000, 4, 200, 300
        args.max_iter = 20
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", ConvergenceWarning)
    t_start = time.perf_counter()
    load0 = os.getloadavg()

    model = load_fashion_cnn()
    xtr_all, _ = load_fashion_mnist("train")
    xte_all, _ = load_fashion_mnist("test")
    gen = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(xtr_all.shape[0], generator=gen)
    xtr = xtr_all[perm[: args.n_train]]
    xref = xtr_all[perm[args.n_train: args.n_train + args.n_ref]]
    tperm = torch.randperm(xte_all.shape[0], generator=gen)
    xq = xte_all[tperm[: args.n_queries]]
    xfid = xte_all[tperm[args.n_queries: args.n_queries + args.n_fidelity]]

    # ---- 1. decoder fidelity, before / after
    t0 = time.perf_counter()
    with torch.no_grad():
        fm_tr = layer_features(model, model.conv2, xtr[:2048], batch_size=512)
        fm_te, out_te = layer_features(model, model.conv2, xfid, batch_size=512, with_outputs=True)
    fidelity = decoder_fidelity(model, fm_tr, fm_te, out_te)
    del fm_tr, fm_te
    print("decoder fidelity:", json.dumps(fidelity, indent=1), f"({time.perf_counter() - t0:.0f}s)", flush=True)

    # ---- fit the JGMM (paper pooling, linear decoder)
    ex = JGMMExplainer(model, "conv2", pool_kernel=2, spatial=True, random_state=args.seed,
                       progress=False, keep_inputs=False, batch_size=500,
                       mixture=JointGaussianMixture(n_lower=args.kx, n_higher=10, max_iter=args.max_iter))
    t0 = time.perf_counter()
    ex.fit(xtr)
    fit_s = time.perf_counter() - t0
    m = ex.mixture_
    print(f"JGMM fitted on {args.n_train} in {fit_s:.0f}s ({m.n_iter_} it), R={m.n_positions_}", flush=True)
    fid_explainer = ex.decoder_fidelity(xfid)
    proxy_acc = ex.proxy_accuracy(xfid)

    tr_low, tr_dec = ex._ex_lower, ex._ex_decisions
    tr_white = ex._examples_white()
    ref_low, _, ref_out, _ = ex._extract_quiet(xref)
    ref_white, ref_dec = ex._white(ref_low), ref_out.argmax(1)
    q_low, _, q_out, _ = ex._extract_quiet(xq)
    q_dec = q_out.argmax(1)
    q_white = ex._white(q_low)
    q_proxy = ex.proxy_predict_features(q_low)
    feat_std = tr_low.reshape(tr_low.shape[0], -1).std(0)
    flat = tr_low.reshape(tr_low.shape[0], -1)
    mad = (flat - flat.median(0).values).abs().median(0).values
    mad = torch.where(mad > 1e-3 * float(mad.mean() + 1e-12), mad, feat_std.clamp_min(1e-6)).reshape(tr_low.shape[1:])

    n_q, n_c = args.n_queries, args.n_candidates
    measures: Dict[str, Dict[str, List[float]]] = {
        g: {k: [] for k in ("validity", "proxy_validity", "proximity", "sparsity", "knn_plausibility",
                            "jgmm_log_density")} for g in GENERATORS}
    eff = {s: np.zeros((n_q, len(SIGMAS))) for s in SETS}
    eff_proxy = np.zeros((n_q, len(SIGMAS)))
    nun_dist = np.zeros(n_q)
    n_flipped_draws = np.zeros(n_q)
    dim = tr_white.shape[1]
    t0 = time.perf_counter()
    for qi in range(n_q):
        c = int(q_dec[qi])
        d_all = torch.cdist(q_white[qi: qi + 1], tr_white)[0]
        other = tr_dec != c
        d_other = torch.where(other, d_all, torch.full_like(d_all, float("inf")))
        d_nun = float(d_other.min())
        nun_dist[qi] = d_nun

        def measure(g: str, feats: torch.Tensor, dec: int, qi: int = qi, c: int = c, d_nun: float = d_nun) -> None:
            w = ex._white(feats[None])
            dist = float(torch.cdist(w, q_white[qi: qi + 1])[0, 0])
            change = (feats - q_low[qi]).reshape(-1).abs() > 0.1 * feat_std
            same = ref_dec == dec
            dref = torch.cdist(w, ref_white[same])[0] if bool(same.any()) else torch.full((1,), float("nan"))
            knn = float(dref.topk(min(5, dref.numel()), largest=False).values.mean())
            mg = measures[g]
            mg["validity"].append(float(dec != c))
            mg["proxy_validity"].append(float(int(ex.proxy_predict_features(feats[None])[0]) != int(q_proxy[qi])))
            mg["proximity"].append(dist / d_nun)
            mg["sparsity"].append(100.0 * float(change.double().mean()))
            mg["knn_plausibility"].append(knn / d_nun)
            mg["jgmm_log_density"].append(float(m.score_samples(feats[None].double())[0]) / dim)

        # JGMM sampled: the draws of the one-hot optimal alpha, decoded
        coef = ex._coefficients(q_low[qi: qi + 1], "counterfactual").cpu()
        draws = m.sample(n_c, lower_component=coef.argmax(1), random_state=args.seed + qi)[0].float()
        dd = torch.cdist(ex._white(draws), q_white[qi: qi + 1])[:, 0]
        ddec = ex.decide(draws)
        dprox = ex.proxy_predict_features(draws)
        flipped = ddec != c
        n_flipped_draws[qi] = float(flipped.double().mean())
        s7 = ex._local_scores(draws, coef.to(m._dev))
        pick = int(torch.where(flipped, s7, torch.full_like(s7, -float("inf"))).argmax()) if bool(flipped.any()) \
            else int(s7.argmax())
        measure(GENERATORS[0], draws[pick], int(ddec[pick]))
        pick = int(torch.where(flipped, dd, torch.full_like(dd, float("inf"))).argmin()) if bool(flipped.any()) \
            else int(dd.argmin())
        measure(GENERATORS[1], draws[pick], int(ddec[pick]))
        for si, sig in enumerate(SIGMAS):
            within = dd <= sig * d_nun
            eff["JGMM sampled"][qi, si] = float((within & flipped).double().mean())
            eff_proxy[qi, si] = float((within & (dprox != q_proxy[qi])).double().mean())
        # JGMM mined: eq. 7 over the mining set
        s_tr = ex._local_scores(tr_low, coef.to(m._dev))
        i_m = int(torch.where(other, s_tr, torch.full_like(s_tr, -float("inf"))).argmax())
        measure(GENERATORS[2], tr_low[i_m], int(tr_dec[i_m]))
        top = s_tr.topk(min(n_c, s_tr.numel())).indices
        # NUN and the k-d tree / nearest-neighbour sets
        i_n = int(d_other.argmin())
        measure(GENERATORS[3], tr_low[i_n], int(tr_dec[i_n]))
        nun_set = d_other.topk(min(n_c, int(other.sum())), largest=False).indices
        nn_set = d_all.topk(min(n_c, d_all.numel()), largest=False).indices
        for name, idx in ((SETS[1], top), (SETS[2], nun_set), (SETS[3], nn_set)):
            for si, sig in enumerate(SIGMAS):
                ok = (d_all[idx] <= sig * d_nun) & (tr_dec[idx] != c)
                eff[name][qi, si] = float(ok.double().sum()) / n_c
        # MAD / Wachter through the decoder
        x_mad = mad_counterfactual(ex, q_low[qi], c, mad)
        measure(GENERATORS[4], x_mad, int(ex.decide(x_mad[None])[0]))
        print(f"query {qi + 1}/{n_q}: {time.perf_counter() - t0:.0f}s, load {os.getloadavg()[0]:.1f}", flush=True)

    ref = GENERATORS[3]
    summaries = {k: summarize({g: measures[g][k] for g in GENERATORS}, reference=ref, random_state=args.seed)
                 for k in measures[GENERATORS[0]]}
    eff_table = {s: {str(sig): mean_ci(100 * eff[s][:, si], random_state=args.seed) for si, sig in enumerate(SIGMAS)}
                 for s in SETS}
    eff_table["JGMM sampled, proxy flips"] = {str(sig): mean_ci(100 * eff_proxy[:, si], random_state=args.seed)
                                             for si, sig in enumerate(SIGMAS)}
    out = {
        "command": "PYTHONPATH=. OMP_NUM_THREADS=1 python " + " ".join(sys.argv),
        "machine_shared": "2 CPU cores shared by ~8 concurrent jobs; timings are not meaningful",
        "loadavg_start": load0, "loadavg_end": os.getloadavg(),
        "setup": {"model": "default FashionCNN", "lower": "conv2 (64x14x14) average-pooled with a 2x2 kernel "
                  "(pool_kernel=2) -> 7x7 = 49 positions x 64 channels, spatial JGMM", "K_x": args.kx, "K_y": 10,
                  "n_train (fit + mining set)": args.n_train, "n_ref (plausibility reference)": args.n_ref,
                  "n_queries (random test images)": n_q, "n_candidates": n_c, "n_fidelity (held-out test)": args.n_fidelity,
                  "jgmm_fit_s": round(fit_s, 1), "jgmm_n_iter": m.n_iter_, "jgmm_converged": bool(m.converged_),
                  "proxy_accuracy_on_fidelity_set": proxy_acc},
        "decoder_fidelity": fidelity,
        "decoder_fidelity_of_fitted_explainer": fid_explainer,
        "nun_distance_whitened_l2": {"median": float(np.median(nun_dist)), "p10": float(np.percentile(nun_dist, 10)),
                                     "p90": float(np.percentile(nun_dist, 90))},
        "jgmm_draws_flipping_model_fraction_mean": float(n_flipped_draws.mean()),
        "measures": summaries,
        "effectiveness_percent": eff_table,
        "sigmas_in_nun_units": list(SIGMAS),
        "total_s": round(time.perf_counter() - t_start, 1),
        "torch": torch.__version__, "machine": platform.platform(), "threads": args.threads,
    }
    base = Path(args.out)
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".json").write_text(json.dumps(out, indent=1))
    titles = {"validity": "Validity: the model's decision flips (real images: on the image; generated features: "
                          "through the linear decoder). Higher is better",
              "proxy_validity": "Proxy validity: the JGMM proxy's class flips (no decoder). Higher is better",
              "proximity": "Proximity: distance to the query / the query's NUN distance. Lower is better",
              "sparsity": "Sparsity: % of the 49x64 pooled features changed by > 0.1 training SD. Lower is sparser",
              "knn_plausibility": "Plausibility (k-NN): mean distance to the 5 nearest reference examples of the "
                                  "counterfactual's class / the query's NUN distance. Lower is more plausible",
              "jgmm_log_density": "Plausibility (JGMM): log p(x) per dimension under the fitted JGMM. Higher is more "
                                  "plausible; favours JGMM's own samples by construction"}
    md = ["# JGMM counterfactuals on Fashion-MNIST (default FashionCNN), measured in NUN units\n",
          f"Command: `{out['command']}`\n",
          f"Machine: {out['machine_shared']}; load average {load0[0]:.1f} at start, "
          f"{out['loadavg_end'][0]:.1f} at the end.\n",
          f"Setup: {json.dumps(out['setup'])}\n",
          "## 1. Decoder fidelity (model's decision through pooling + decoder = decision on the image, "
          f"{args.n_fidelity} held-out test images)\n",
          "| pooling, decoder | fidelity |", "|---|---|"]
    md += [f"| {k} | {v:.3f} |" for k, v in fidelity.items()]
    md.append(f"\nThe fitted explainer (`pool_kernel=2`, `decoder='linear'`, decoder fitted on "
              f"{min(2048, args.n_train)} training maps): fidelity {fid_explainer:.3f}; "
              f"JGMM proxy accuracy on the same images {proxy_acc:.3f}.\n")
    md.append("## 2. One counterfactual per query: validity, proximity, sparsity, plausibility\n")
    md.append(f"{n_q} random test queries; mean [95 % BCa CI]; Δ = paired difference vs NUN (* = CI excludes 0). "
              f"NUN distance (whitened ℓ2) median {out['nun_distance_whitened_l2']['median']:.2f} "
              f"(p10 {out['nun_distance_whitened_l2']['p10']:.2f}, p90 {out['nun_distance_whitened_l2']['p90']:.2f}). "
              f"On average {100 * out['jgmm_draws_flipping_model_fraction_mean']:.1f} % of the JGMM draws flip the "
              "model.\n")
    for k, title in titles.items():
        md += [f"### {title}\n", markdown_table(summaries[k], title="generator", digits=3), ""]
    md.append("## 3. Table 2 layout: % of the 1000 candidates within σ × NUN distance that flip the model\n")
    md += ["| candidate set | " + " | ".join(f"σ = {s}" for s in SIGMAS) + " |", "|---|" + "---|" * len(SIGMAS)]
    for s, row in eff_table.items():
        md.append(f"| {s} | " + " | ".join(format_ci(row[str(sig)], 1) for sig in SIGMAS) + " |")
    md.append("\nk-d tree, other class: every candidate is another class by construction, so it measures only "
              "distance. JGMM sampled: flips through the linear decoder; the proxy row counts flips of the JGMM "
              "proxy instead.")
    base.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
