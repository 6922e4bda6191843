"""Does the torch BGMM change DeepBGMM-EG's faithfulness row? (issue 16)

Runs DeepBGMM-EG with ``BGMMPrior(backend="torch")`` (the new default) on the
faithfulness-table protocol of ``bench_metrics_tables.py`` (same images,
seeds, settings: 500 Fashion-MNIST test images, 16 samples, KPM..RAM and
insertion/deletion) and compares it, image by image, with the scikit-learn
fit: by default the committed per-image values
``results/metrics_tables_fashion_cnn_DeepBGMM-EG.json`` (produced with the
scikit-learn backend, with OpenCV's Telea masker), or with ``--rerun-sklearn``
a fresh scikit-learn run (needed without OpenCV: keep_remove then falls back
to the mean masker and the committed values are not comparable).
Paired differences (torch - sklearn) with BCa 95 % CIs
(:func:`captum_prior.metrics.stats.paired_difference`).

``--reference torch --reference-prior-seed 1`` instead compares the torch fit
with the torch fit from another k-means seed (the EG draws unchanged): the
size of the differences that the mixture's initialisation alone makes.

Before the attributions, the fit quality of the two backends is compared on
the same feature rows (the first ``--fit-images`` images): the final
variational lower bound (scikit-learn's, same additive constant), the
iterations and the convergence, with the settings the prior passes to both
(``BGMMPrior._settings()``: tol, max_iter, reg_covar, n_init=1, k-means init).

Usage::

    python benchmarks/bench_bgmm_backends.py [--n-images 500] [--rerun-sklearn]
    python benchmarks/bench_bgmm_backends.py --n-images 250 --reference torch --reference-prior-seed 1

Writes ``results/bgmm_backends_fashion_cnn.{json,md}`` (or ``..._seed_control``
for a torch reference).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's package, then the benchmarks
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()
COMMITTED = RESULTS / "metrics_tables_fashion_cnn_DeepBGMM-EG.json"


def fit_quality(args) -> dict:
    """Lower bounds, iterations and convergence of both backends on the same rows."""
    import warnings

    from bench_metrics_tables import setup

    from captum_prior.priors import BGMMPrior

    warnings.filterwarnings("ignore")
    model, x, _, _, _ = setup("fashion_cnn", args.n_images)
    x = x[: args.fit_images]
    out = {}
    for backend in ("torch", "sklearn"):
        p = BGMMPrior(model, random_state=args.seed, backend=backend)
        rows = p._rows(p.features(x)[0])
        t0 = time.process_time()
        if backend == "torch":
            gm = p._torch_fit(rows)[0]
            lb, it, conv = gm.lower_bound_.tolist(), gm.n_iter_.tolist(), gm.converged_.tolist()
        else:
            fits = [p._sklearn_fit_rows(rows[i])[0] for i in range(len(rows))]
            lb, it, conv = ([f.lower_bound_ for f in fits], [f.n_iter_ for f in fits],
                            [bool(f.converged_) for f in fits])
        out[backend] = {"lower_bound": lb, "n_iter": it, "converged": conv,
                        "cpu_seconds": time.process_time() - t0, "settings": p._settings()}
    d = np.asarray(out["torch"]["lower_bound"]) - np.asarray(out["sklearn"]["lower_bound"])
    out["difference"] = {"mean": float(d.mean()), "median": float(np.median(d)),
                         "frac_torch_higher": float((d > 1e-6).mean()), "frac_sklearn_higher": float((d < -1e-6).mean())}
    return out


def run(backend: str, args, prior_seed=None) -> dict:
    import warnings

    from bench_metrics_tables import COLS, KR, setup

    from captum_prior.attr import DeepPriorExpectedGradients
    from captum_prior.metrics import insertion_deletion, keep_remove
    from captum_prior.priors import BGMMPrior

    warnings.filterwarnings("ignore", category=UserWarning)
    model, x, y, refs, _ = setup("fashion_cnn", args.n_images)
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 100]).argmax(1) for i in range(0, len(x), 100)])
    prior = BGMMPrior(model, random_state=args.seed if prior_seed is None else prior_seed, backend=backend)
    vals = {k: [] for k in COLS}
    t_attr = 0.0
    for i in range(0, len(x), args.batch):
        xb, tb = x[i : i + args.batch], pred[i : i + args.batch]
        t0 = time.perf_counter()
        a = DeepPriorExpectedGradients(model, prior).attribute(
            xb, refs, target=tb, n_samples=args.n_samples, internal_batch_size=1000,
            generator=torch.Generator().manual_seed(args.seed + i)).detach()
        t_attr += time.perf_counter() - t0
        kr = keep_remove(model, xb, a, target=tb, percent=args.percent, max_examples_per_batch=512,
                         masker=args.masker)
        for k in KR:
            vals[k] += getattr(kr, k).tolist()
        res = insertion_deletion(model, xb, a, target=tb, n_steps=args.n_steps, max_examples_per_batch=512)
        vals["insertion"] += res.insertion.tolist()
        vals["deletion"] += res.deletion.tolist()
        vals["ins-del"] += res.difference.tolist()
        print(backend, i + len(xb), f"{t_attr:.0f}s", flush=True)
    return {"values": vals, "seconds_attribution": t_attr, "masker": kr.masker}


def main() -> None:
    from bench_metrics_tables import COLS

    from captum_prior.metrics.stats import paired_difference

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-images", type=int, default=500)
    p.add_argument("--n-samples", type=int, default=16)
    p.add_argument("--percent", type=float, default=0.1)
    p.add_argument("--n-steps", type=int, default=14)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rerun-sklearn", action="store_true", help="same as --reference sklearn")
    p.add_argument("--reference", choices=("committed", "sklearn", "torch"), default="committed")
    p.add_argument("--reference-prior-seed", type=int, default=None,
                   help="random_state of the reference's BGMMPrior (default: --seed)")
    p.add_argument("--fit-images", type=int, default=100)
    p.add_argument("--masker", default="mean", help="keep_remove masker (Telea needs OpenCV)")
    args = p.parse_args()
    if args.rerun_sklearn:
        args.reference = "sklearn"
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits

        _limits = threadpool_limits(args.threads)  # noqa: F841 (scikit-learn's BLAS too)
    except ImportError:  # pragma: no cover
        pass
    load0 = os.getloadavg()
    fq = fit_quality(args) if args.fit_images > 0 else None
    ours = run("torch", args)
    ref_name = "sklearn"
    if args.reference in ("sklearn", "torch"):
        rs = args.seed if args.reference_prior_seed is None else args.reference_prior_seed
        ref = run(args.reference, args, rs)
        ref_src = f"a fresh {'scikit-learn' if args.reference == 'sklearn' else 'torch'} run in this process " \
                  f"(BGMMPrior random_state={rs}; EG draws as ours)"
        ref_name = args.reference if args.reference == "sklearn" else f"torch, prior seed {rs}"
    else:
        ref = json.loads(COMMITTED.read_text())
        ref_src = f"the committed `{COMMITTED.relative_to(HERE.parent)}` ({ref['command']})"
    n = args.n_images
    rows = {}
    for k in COLS:
        a = np.asarray(ours["values"][k][:n])
        b = np.asarray(ref["values"][k][:n])
        rows[k] = {"torch": float(a.mean()), "sklearn": float(b.mean()), **paired_difference(a, b)}
    report = {"command": "python " + " ".join(sys.argv), "threads": torch.get_num_threads(),
              "loadavg_start": load0, "loadavg_end": os.getloadavg(), "n_images": n,
              "reference": ref_src, "seconds_attribution_torch": ours["seconds_attribution"],
              "seconds_attribution_sklearn": ref.get("seconds_attribution"), "rows": rows,
              "values_torch": ours["values"], "values_reference": ref["values"], "fit_quality": fq}
    RESULTS.mkdir(exist_ok=True)
    stem = "bgmm_backends_fashion_cnn" + ("_seed_control" if args.reference == "torch" else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(report))
    better = {"KPM": 1, "KNM": 1, "KAM": 1, "RPM": 1, "RNM": 1, "RAM": 1, "insertion": 1, "deletion": -1, "ins-del": 1}
    lines = [f"# DeepBGMM-EG faithfulness: torch BGMM (default, prior seed {args.seed}) vs {ref_name} BGMM, "
             "fashion_cnn", "",
             f"Command: `{report['command']}`  ",
             f"{n} images, keep/remove masker `{ours['masker']}`, protocol of `bench_metrics_tables.py` (n_samples {args.n_samples}, {args.percent:.0%} "
             f"keep/remove steps, {args.n_steps} insertion/deletion steps, seed {args.seed}); {report['threads']} "
             f"thread(s); load average {load0[0]:.1f} -> {report['loadavg_end'][0]:.1f} on a shared 2-core machine.  ",
             f"reference side: {ref_src}.  ",
             f"Attribution time (all {n} images): torch {ours['seconds_attribution']:.0f} s, {ref_name} "
             f"{ref.get('seconds_attribution', float('nan')):.0f} s (different runs and loads).", ""]
    if fq is not None:
        d = fq["difference"]
        lines += [f"Fit quality on the same feature rows (first {args.fit_images} images, settings "
                  f"`{fq['torch']['settings']}`, n_init=1, k-means init, prior seed {args.seed}):", "",
                  "| backend | mean lower bound | median iterations | max iterations | converged | CPU s |",
                  "|---|---|---|---|---|---|"]
        for b in ("torch", "sklearn"):
            f = fq[b]
            lines.append(f"| {b} | {np.mean(f['lower_bound']):.3f} | {np.median(f['n_iter']):.0f} | "
                         f"{max(f['n_iter'])} | {np.mean(f['converged']):.0%} | {f['cpu_seconds']:.2f} |")
        lines += ["", f"torch - sklearn lower bound per image: mean {d['mean']:+.3f}, median {d['median']:+.3f}; "
                  f"torch higher on {d['frac_torch_higher']:.0%} of images, scikit-learn on "
                  f"{d['frac_sklearn_higher']:.0%} (the two use different k-means seedings).", ""]
    lines += [
             f"Paired difference torch - {ref_name} per image, mean [95 % BCa CI]; 'worse' = CI entirely on the "
             "worse side (higher is better except deletion):", "",
             f"| metric | torch | {ref_name} | difference [95 % CI] | significantly worse? |", "|---|---|---|---|---|"]
    for k, r in rows.items():
        worse = (r["high"] < 0) if better[k] > 0 else (r["low"] > 0)
        lines.append(f"| {k} | {r['torch']:.4f} | {r['sklearn']:.4f} | {r['mean']:+.4f} [{r['low']:+.4f}, "
                     f"{r['high']:+.4f}] | {'yes' if worse else 'no'} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
