"""DMM-MEN global insights on Fashion-MNIST (paper §4.1): fit time, convergence,
Fig. 1-style insight maps and the Fig. 2 fidelity curves.

The global fit is at the paper's size: every Fashion-MNIST image (train + test)
of one class (default 1 = Trouser, the authors' repository example, 7 000
images), the 300 highest-variance pixels, ``y`` = logit of the default CNN's
probability of the class; DMM-MEN with the code's defaults (J = 6, K = 3).
Reported: wall and CPU time of the fit, ArviZ rank split R-hat and bulk/tail
ESS over the chains of the log posterior, the mixture log-likelihood, the
number of occupied components, the label-invariant population coefficient
map ``(1/n) sum_i beta_{z_i}`` (monitored) and the largest component's
coefficients (label-dependent, reported only); MH acceptance rates, component
sizes, in-sample RMSD on the probability scale (as the authors'
``Analysis.R``); top-150 overlaps within a fit and, with ``--compare-seed``,
between two fits for both the largest component and the population map.
``--n-components`` picks the truncation J (default 6, the paper's) and
the CPU seconds per sweep are reported.

Fidelity (Fig. 2): ``--n-fidelity`` test images of all classes, 50 bootstrap
repeats of 30 %, top 50/75/100/125/150 pixels of the most populated component
against the same number of random pixels; nullify in positives, fill with the
positives' mean in negatives, synthetic noise images with the pixels copied
from random positives.  ``--variants`` picks the ranking of the top pixels
(``abs``: by |beta| as the paper and code; ``positive``: by beta) and where the
random pixels come from (``all`` 784 pixels as the paper, or the 300
``candidates``).  ``--fit-cache`` saves the fit (or reuses it), so variants
can run in separate invocations that each stay under 15 minutes.

Usage::

    python benchmarks/bench_dmm_men_global.py [--target 1] [--n-iter 3000]
        [--n-fidelity 1000] [--repeats 50] [--variants abs:all,positive:all]
        [--fit-cache FILE] [--seed 0] [--compare-seed 1 --compare-cache FILE2]
        [--n-components 6] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from captum_prior.data import load_fashion_mnist
from captum_prior.models import FASHION_CLASSES, load_fashion_cnn
from captum_prior.proxy import DMMMEN, DMMMENGlobalInsights
from captum_prior.proxy.dmm_men_insights import fidelity_tests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()


def plot_insights(ins, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(ins)
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.6), squeeze=False)
    for ax, d in zip(axes[0], ins):
        ax.imshow(d["heatmap"][0].numpy(), cmap="hot", vmin=0, vmax=1)
        ax.set_title(f"comp {d['component']}\nn={d['size']}", fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_fidelity(res, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nf = res["n_features"]
    names = {
        "nullify": "nullify in positives",
        "fill": "fill into negatives",
        "synthetic": "synthetic samples",
    }
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    for ax, (t, lab) in zip(axes, names.items()):
        for kind, col, short in (
            ("top", "C3", "B (DMM-MEN)"),
            ("random", "C0", "R (random)"),
        ):
            s = res[t]["summary"][kind]
            ax.plot(nf, s["mean"], "o-", color=col, label=short)
            ax.fill_between(nf, s["low"], s["high"], color=col, alpha=0.25)
        ax.set_title(lab, fontsize=9)
        ax.set_xlabel("NFeature")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("PCR (positive classification rate)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def top_set(coef: np.ndarray, k: int) -> set:
    return set(np.argsort(-np.abs(coef), kind="stable")[:k].tolist())


def insight_stability(gi, k: int = 150) -> dict:
    """Does the insight (top-k pixels of the largest component) converge?
    Within one fit: top-k from the first and second half of every chain's
    kept draws; the ArviZ diagnostics the fit computed."""
    e = gi.estimator_
    big = int(np.argmax(e.component_sizes_))
    C = e.n_chains_
    draws = e.beta_draws_[:, big, 1:].reshape(C, -1, e.coef_.shape[1])
    h = draws.shape[1] // 2
    t_all = top_set(draws.mean((0, 1)), k)
    t1, t2 = (
        top_set(draws[:, :h].mean((0, 1)), k),
        top_set(draws[:, h:].mean((0, 1)), k),
    )
    per_chain = [top_set(draws[c].mean(0), k) for c in range(C)]
    pair = [
        len(per_chain[a] & per_chain[b]) / k for a in range(C) for b in range(a + 1, C)
    ]
    # the label-invariant population map (1/n) sum_i beta_{z_i}
    pop = e.population_coef_draws().reshape(C, -1, e.coef_.shape[1])
    p1, p2 = top_set(pop[:, :h].mean((0, 1)), k), top_set(pop[:, h:].mean((0, 1)), k)
    pc = [top_set(pop[c].mean(0), k) for c in range(C)]
    ppair = [len(pc[a] & pc[b]) / k for a in range(C) for b in range(a + 1, C)]
    return {
        "population_top_k_overlap_first_vs_second_half": len(p1 & p2) / k,
        "population_top_k_overlap_between_chains_min": min(ppair) if ppair else None,
        "population_top_k_overlap_between_chains_mean": (
            float(np.mean(ppair)) if ppair else None
        ),
        "k": k,
        "top_k_overlap_first_vs_second_half": len(t1 & t2) / k,
        "top_k_overlap_first_half_vs_all": len(t1 & t_all) / k,
        "top_k_overlap_between_chains_min": min(pair) if pair else None,
        "top_k_overlap_between_chains_mean": float(np.mean(pair)) if pair else None,
    }


def to_list(res):
    out = {"n_features": res["n_features"]}
    for t in ("nullify", "fill", "synthetic"):
        out[t] = res[t]["summary"]
    out["synthetic_baseline_mean"] = float(np.mean(res["synthetic_baseline"]))
    out["n_positives_mean"] = float(np.mean(res["n_positives"]))
    return out


def fit_or_load(args, model, imgs, seed, cache, out, cls, tag, key="fit"):
    """Fit (or load from ``cache``) the class's DMM-MEN insights with ``seed``;
    record the fit's timing and diagnostics in ``out[key]``."""
    side = Path(cache + ".json") if cache else None
    if cache and Path(cache).exists():
        gi = DMMMENGlobalInsights.load(cache, model)
        print(f"loaded the fit from {cache}")
        if side is not None and side.exists():
            out[key] = json.loads(side.read_text())
    else:
        load0 = os.getloadavg()[0]
        est = DMMMEN(
            n_iter=args.n_iter,
            burn_in=args.n_iter // 2 if args.burn_in is None else args.burn_in,
            random_state=seed,
            n_chains=args.n_chains,
            n_jobs=args.n_jobs,
            n_threads=args.threads,
            n_components=args.n_components,
            thin=args.thin,
        )
        gi = DMMMENGlobalInsights(
            model, args.target, n_features=args.n_features, estimator=est
        )
        t0, c0 = time.perf_counter(), time.process_time()
        gi.fit(imgs)
        fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
        load1 = os.getloadavg()[0]
        if cache:
            gi.save(cache)
        e = gi.estimator_
        # in-sample fit through each sample's own component (Analysis.R's RMSD is
        # on the probability scale)
        X = gi.design(imgs)
        B = np.column_stack([e.intercept_, e.coef_])
        yhat = np.einsum(
            "nq,nq->n", np.column_stack([np.ones(len(X)), X]), B[e.labels_]
        )
        y = gi.y_.numpy()
        sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
        out[key] = {
            "command": "python " + shlex.join(sys.argv),
            "class": args.target,
            "class_name": cls,
            "n_images_fit": int(imgs.shape[0]),
            "n_features": args.n_features,
            "estimator": dict(est.get_params()),
            "fit_seconds": fit_s,
            "fit_cpu_seconds": fit_cpu,
            "sweeps_per_second": args.n_iter * args.n_chains / fit_s,
            "cpu_seconds_per_sweep": fit_cpu / (args.n_iter * args.n_chains),
            "n_chains": args.n_chains,
            "insight_stability": insight_stability(gi),
            "diagnostics": dict(e.diagnostics_),
            "component_sizes": e.component_sizes_.tolist(),
            "weights": e.weights_.tolist(),
            "sigma2": e.sigma2_.tolist(),
            "penalty_lambda1_lambda2": e.penalty_.tolist(),
            "fit_quality_in_sample": {
                "rmse_logit_own_component": float(np.sqrt(np.mean((y - yhat) ** 2))),
                "r2_logit_own_component": float(
                    1 - np.mean((y - yhat) ** 2) / np.var(y)
                ),
                "rmsd_probability_own_component": float(
                    np.sqrt(np.mean((sig(y) - sig(yhat)) ** 2))
                ),
                "y_mean": float(y.mean()),
                "y_sd": float(y.std()),
            },
            "threads": args.threads,
            "load_average_start_end": [load0, load1],
            "machine": platform.platform(),
        }
        if side is not None:
            side.write_text(json.dumps(out[key], indent=1, default=float))
    plot_insights(
        gi.insights(150),
        RESULTS / f"dmm_men_insights_class{args.target}{tag}_seed{seed}.png",
        f"DMM-MEN insights, class {args.target} ({cls}): top-150 of "
        f"{args.n_features} pixels per component by |beta| (brightest = most "
        "important)",
    )
    return gi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=int, default=1)
    ap.add_argument("--n-features", type=int, default=300)
    ap.add_argument(
        "--n-iter",
        type=int,
        default=750,
        help="sweeps per chain (4 x 750 = the 3000 sweeps of the one-chain run)",
    )
    ap.add_argument("--n-fidelity", type=int, default=1000)
    ap.add_argument("--n-synthetic", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument(
        "--variants",
        default="abs:all,positive:all",
        help="fidelity runs, comma-separated rank_by:pool with rank_by in {abs, positive} "
        "(ranking of the top pixels) and pool in {all, candidates} (where random pixels "
        "are drawn from)",
    )
    ap.add_argument(
        "--fit-cache",
        default="",
        help="file to save the fitted insights to, or to load them from if it exists",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--n-chains", type=int, default=4, help="chains per fit (n_iter sweeps each)"
    )
    ap.add_argument(
        "--compare-seed",
        type=int,
        default=None,
        help="also fit with this seed and report the top-150 overlap of the two fits",
    )
    ap.add_argument("--n-jobs", type=int, default=None)
    ap.add_argument(
        "--compare-cache", default="", help="fit cache of the --compare-seed fit"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="400 sweeps, 10 repeats")
    ap.add_argument("--tag", default="")
    ap.add_argument(
        "--n-components", type=int, default=6, help="DP truncation J (paper: 6)"
    )
    ap.add_argument(
        "--thin", type=int, default=1, help="keep every thin-th sweep after burn-in"
    )
    ap.add_argument(
        "--burn-in", type=int, default=None, help="sweeps discarded (default: half)"
    )
    args = ap.parse_args()
    if args.quick:
        args.n_iter, args.repeats = 400, 10
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cls = FASHION_CLASSES[args.target]
    tag = f"_{args.tag}" if args.tag else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / f"dmm_men_global_class{args.target}{tag}.json"
    out = json.loads(json_path.read_text()) if json_path.exists() else {}
    out.setdefault("commands", [])
    out["commands"].append("python " + shlex.join(sys.argv))

    model = load_fashion_cnn()
    xtr, ytr = load_fashion_mnist("train")
    xte, yte = load_fashion_mnist("test")
    imgs = torch.cat([xtr[ytr == args.target], xte[yte == args.target]])
    gi = fit_or_load(args, model, imgs, args.seed, args.fit_cache, out, cls, tag)
    if args.compare_seed is not None:
        cache2 = args.compare_cache
        gi2 = fit_or_load(
            args,
            model,
            imgs,
            args.compare_seed,
            cache2,
            out,
            cls,
            tag,
            key="fit_compare",
        )
        k = 150
        b1 = gi.estimator_.coef_[int(np.argmax(gi.estimator_.component_sizes_))]
        b2 = gi2.estimator_.coef_[int(np.argmax(gi2.estimator_.component_sizes_))]
        p1, p2 = set(gi.top_pixels(k).tolist()), set(gi2.top_pixels(k).tolist())
        out["seed_overlap"] = {
            "seeds": [args.seed, args.compare_seed],
            "k": k,
            "top_k_overlap": len(p1 & p2) / k,
            "largest_component_sizes": [
                int(gi.estimator_.component_sizes_.max()),
                int(gi2.estimator_.component_sizes_.max()),
            ],
            "coef_correlation": float(np.corrcoef(b1, b2)[0, 1]),
            "population_top_k_overlap": len(
                top_set(gi.estimator_.population_coef_, k)
                & top_set(gi2.estimator_.population_coef_, k)
            )
            / k,
            "population_coef_correlation": float(
                np.corrcoef(
                    gi.estimator_.population_coef_, gi2.estimator_.population_coef_
                )[0, 1]
            ),
        }
        print(out["seed_overlap"])

    # ---- fidelity tests (Fig. 2)
    g = np.random.default_rng(args.seed)
    fid_idx = torch.as_tensor(
        np.sort(g.choice(len(xte), args.n_fidelity, replace=False))
    )
    fid_imgs = xte[fid_idx]
    out.setdefault("fidelity", {})
    for variant in [v for v in args.variants.split(",") if v]:
        rank_by, pool = variant.split(":")
        t1 = time.perf_counter()
        res = fidelity_tests(
            model,
            fid_imgs,
            args.target,
            gi.top_pixels(150, rank_by=rank_by),
            n_repeats=args.repeats,
            n_synthetic=args.n_synthetic,
            random_pool=None if pool == "all" else gi.pixel_index_,
            random_state=args.seed,
            progress=True,
        )
        summary = to_list(res)
        summary.update(
            seconds=time.perf_counter() - t1,
            n_images=args.n_fidelity,
            repeats=args.repeats,
            n_synthetic=args.n_synthetic,
            command="python " + shlex.join(sys.argv),
        )
        out["fidelity"][variant] = summary
        plot_fidelity(
            res,
            RESULTS / f"dmm_men_fig2_class{args.target}_{rank_by}_{pool}{tag}.png",
            f"Fidelity, class {args.target} ({cls}): top pixels of the largest DMM-MEN "
            f"component by {'|beta|' if rank_by == 'abs' else 'beta'} (B) vs random "
            f"pixels from {'all 784' if pool == 'all' else 'the 300 candidate'} pixels "
            f"(R); {args.repeats} bootstrap repeats of 30 % of {args.n_fidelity} test "
            "images, 95 % intervals",
        )
    json_path.write_text(json.dumps(out, indent=1))
    write_markdown(out, RESULTS / f"dmm_men_global_class{args.target}{tag}.md", tag)


def _fit_lines(f: dict) -> list:
    d = f["diagnostics"]
    q = f["fit_quality_in_sample"]
    C = f.get("n_chains", d.get("n_chains", 1))
    est = f["estimator"]

    def diag(name, s):
        return (
            f"| {name} | {s['rhat']:.3f} | {s['ess_bulk']:.0f} | {s['ess_tail']:.0f} | "
            f"{s['mcse_mean']:.3g} (sd {s['sd']:.3g}) |"
        )

    tc = d.get("top_coef_largest_component", {})
    tp = d.get("top_population_coef", {})
    st = f.get("insight_stability", {})
    lines = [
        f"Fit: {f['n_images_fit']} images (all train + test of the class), "
        f"{f['n_features']} highest-variance pixels, y = logit p(class); DMM-MEN "
        f"J={est.get('n_components', 6)}, K=3, **{C} chains x {est['n_iter']} sweeps** (burn-in {est['burn_in']} each; "
        f"{C * est['n_iter']} sweeps in all, {d['n_kept_draws']} kept draws), seed "
        f"{est['random_state']}, {f['threads']} thread per chain, n_jobs "
        f"{d.get('n_jobs')}; load average {f['load_average_start_end'][0]:.1f} -> "
        f"{f['load_average_start_end'][1]:.1f} on 2 cores shared with other agents.",
        "",
        "- sampler: the package's default Gibbs sweep, random initial allocations",
        f"- CPU seconds per sweep (all replicas): "
        f"{f.get('cpu_seconds_per_sweep', float('nan')):.3f}",
        f"- fit wall time: **{f['fit_seconds'] / 60:.2f} min**, fit CPU time "
        f"{f.get('fit_cpu_seconds', 0) / 60:.1f} min (this process); each chain "
        f"{', '.join(f'{c / 60:.1f}' for c in d.get('chain_seconds', []))} min wall, "
        f"{', '.join(f'{c / 60:.1f}' for c in d.get('chain_cpu_seconds', []))} min CPU "
        "(inside the worker)",
        "",
        "| quantity (kept draws, all chains) | rank split R-hat | bulk ESS | tail ESS | "
        "MCSE of mean |",
        "|---|---|---|---|---|",
        diag(
            "log posterior, marginal (tau and empty components integrated out)",
            d["log_posterior_marginal"],
        ),
        diag("log posterior, joint (every sampled quantity)", d["log_posterior"]),
        diag("mixture log-likelihood", d["log_likelihood"]),
    ]
    if "n_occupied" in d:
        lines.append(diag("number of occupied components", d["n_occupied"]))
    if tp:
        lines.append(
            f"| top-{tp['n']} entries of the population coefficient map "
            "(1/n) sum_i beta_{z_i} (worst; label-invariant, monitored) | "
            f"{tp['rhat_max']:.3f} (median {tp['rhat_median']:.3f}) | "
            f"{tp['ess_bulk_min']:.0f} (median {tp['ess_bulk_median']:.0f}) | "
            f"{tp['ess_tail_min']:.0f} | max MCSE/sd {tp['mcse_over_sd_max']:.2f} |"
        )
    if tc:
        lines.append(
            f"| top-{tc['n']} coefficients of the largest component (worst; "
            "label-dependent, after relabelling) | "
            f"{tc['rhat_max']:.3f} (median {tc['rhat_median']:.3f}) | "
            f"{tc['ess_bulk_min']:.0f} (median {tc['ess_bulk_median']:.0f}) | "
            f"{tc['ess_tail_min']:.0f} | max MCSE/sd {tc['mcse_over_sd_max']:.2f} |"
        )
    lines += [
        "",
        f"- thresholds: R-hat <= {d.get('rhat_threshold')}, bulk ESS >= "
        f"{d.get('ess_bulk_threshold')}; converged: **{d.get('converged')}**",
        f"- acceptance: sigma^2 {d['sigma2_acceptance']:.2f}, lambda "
        f"{d['lambda_acceptance']:.2f}; relabelling iterations "
        f"{d['relabel_iterations']}, relabelled draws "
        f"{100 * d['relabelled_draw_fraction']:.1f} %",
        f"- component sizes: {f['component_sizes']}",
        f"- in-sample fit through each sample's component: RMSE(logit) "
        f"{q['rmse_logit_own_component']:.3f} (sd of y {q['y_sd']:.2f}), R^2 "
        f"{q['r2_logit_own_component']:.3f}, RMSD(probability) "
        f"{q['rmsd_probability_own_component']:.4f}",
    ]
    if st:
        lines.append(
            f"- top-{st['k']} pixels of the largest component: first vs second half of "
            f"every chain's kept draws overlap "
            f"{100 * st['top_k_overlap_first_vs_second_half']:.0f} %; chain vs chain "
            f"(each chain's own posterior mean) min "
            f"{100 * (st['top_k_overlap_between_chains_min'] or 0):.0f} %, mean "
            f"{100 * (st['top_k_overlap_between_chains_mean'] or 0):.0f} %"
        )
    if st and "population_top_k_overlap_first_vs_second_half" in st:
        lines.append(
            f"- top-{st['k']} pixels of the population map: first vs second half "
            f"{100 * st['population_top_k_overlap_first_vs_second_half']:.0f} %; chain "
            f"vs chain min "
            f"{100 * (st['population_top_k_overlap_between_chains_min'] or 0):.0f} %, "
            f"mean {100 * (st['population_top_k_overlap_between_chains_mean'] or 0):.0f} %"
        )
    return lines


def write_markdown(out, path: Path, tag: str) -> None:
    f = out["fit"]
    lines = [
        f"# DMM-MEN global fit, Fashion-MNIST class {f['class']} ({f['class_name']})",
        "",
        "Commands: " + "; ".join(f"`{c}`" for c in out["commands"]),
        "",
    ]
    lines += _fit_lines(f)
    if "fit_compare" in out:
        lines += ["", "## Second fit (another seed)", ""] + _fit_lines(
            out["fit_compare"]
        )
    so = out.get("seed_overlap")
    if so:
        lines += [
            "",
            f"## Two fits with different seeds ({so['seeds'][0]}, {so['seeds'][1]})",
            "",
            f"- top-{so['k']} pixels of the largest component overlap "
            f"**{100 * so['top_k_overlap']:.0f} %** (target >= 90 %; the one-chain "
            "run's split-half overlap was 83 %); correlation of the two coefficient "
            f"vectors {so['coef_correlation']:.3f}; largest component sizes "
            f"{so['largest_component_sizes']}",
        ]
        if "population_top_k_overlap" in so:
            lines.append(
                f"- top-{so['k']} pixels of the label-invariant population map "
                "(1/n) sum_i beta_{z_i} overlap "
                f"**{100 * so['population_top_k_overlap']:.0f} %**; correlation of "
                f"the two maps {so['population_coef_correlation']:.3f}"
            )
    lines += [
        "",
        f"![insights](dmm_men_insights_class{f['class']}{tag}_seed"
        f"{f['estimator']['random_state']}.png)",
        "",
        "## Fidelity (Fig. 2): PCR in %, mean (95 % interval over bootstrap repeats)",
    ]
    for variant, r in out.get("fidelity", {}).items():
        rank_by, pool = variant.split(":")
        lines += [
            "",
            f"### top pixels by {'|beta| (paper, code)' if rank_by == 'abs' else 'beta'}; "
            f"random pixels from {'all 784 pixels (paper)' if pool == 'all' else 'the 300 candidate pixels'}",
            "",
            f"{r['n_images']} test images (all classes), {r['repeats']} repeats of a 30 % "
            f"bootstrap, {r['n_synthetic']} synthetic images per repeat, "
            f"{r['seconds'] / 60:.1f} min; positives per bootstrap sample "
            f"{r['n_positives_mean']:.0f}; noise images alone: PCR "
            f"{100 * r['synthetic_baseline_mean']:.1f} %.",
            "",
            "| test | set | " + " | ".join(f"N={n}" for n in r["n_features"]) + " |",
            "|---|---|" + "---|" * len(r["n_features"]),
        ]
        for t in ("nullify", "fill", "synthetic"):
            for kind, lab in (("top", "B (DMM-MEN)"), ("random", "R (random)")):
                s = r[t][kind]
                cells = " | ".join(
                    f"{100 * m:.1f} ({100 * lo:.1f}-{100 * hi:.1f})"
                    for m, lo, hi in zip(s["mean"], s["low"], s["high"])
                )
                lines.append(f"| {t} | {lab} | {cells} |")
        lines += [
            "",
            f"![fig2](dmm_men_fig2_class{f['class']}_{rank_by}_{pool}{tag}.png)",
        ]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
