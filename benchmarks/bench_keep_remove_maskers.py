"""Keep/remove metrics (KPM…RAM) with the papers' Telea inpainting beside the mean masker.

Every method's attributions are computed once per batch and scored by
:func:`captum_prior.metrics.keep_remove` with each masker (default
``inpaint_telea``, the authors' masker, and ``mean``, the per-channel mean
colour the committed EfficientNet table had to use), so the two rows of a
method are paired on the same images and the same attributions.  Reports per
metric the mean [95 % BCa CI] per masker, the paired difference Telea − mean,
and each masker's ranking of the methods (does the masker change the
verdict?).  Methods, images and settings are those of
``bench_metrics_tables.py``.  Writes
``results/keep_remove_maskers_<model>.{json,md}``.

Usage::

    python benchmarks/bench_keep_remove_maskers.py --model efficientnet_lite0 --methods IG,EG,Grad-CAM \\
        --n-images 6 --n-samples 16
    python benchmarks/bench_keep_remove_maskers.py --quick     # smoke test (Fashion-MNIST, 10 images)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_metrics_tables import DEFAULTS, KR, METHODS, RESULTS, build_methods, setup  # noqa: E402


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        return "unknown"


def _ranking(summary, maskers, metric, masker):
    return sorted(summary, key=lambda m: -summary[m][masker][metric]["mean"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="efficientnet_lite0", choices=sorted(DEFAULTS))
    p.add_argument("--methods", default="IG,EG,Grad-CAM", help="comma-separated subset of " + ",".join(METHODS))
    p.add_argument("--maskers", default="inpaint_telea,mean")
    p.add_argument("--n-images", type=int, default=None)
    p.add_argument("--n-samples", type=int, default=None)
    p.add_argument("--lime-samples", type=int, default=None)
    p.add_argument("--percent", type=float, default=None, help="keep/remove step (paper: 0.01)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--dl-refs", type=int, default=None)
    p.add_argument("--n-steps", type=int, default=None, help="unused (insertion/deletion is not run here)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: Fashion CNN, 10 images, tiny settings")
    args = p.parse_args()
    if args.quick:
        args.model = "fashion_cnn"
    for k, v in DEFAULTS[args.model].items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    if args.quick:
        args.n_images, args.n_samples, args.lime_samples, args.batch = 10, 4, 20, 5
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)

    from captum_prior.metrics import keep_remove
    from captum_prior.metrics.stats import mean_ci, paired_difference

    maskers = args.maskers.split(",")
    model, x, y, refs, layer = setup(args.model, args.n_images)
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 100]).argmax(1) for i in range(0, len(x), 100)])
    methods = build_methods(model, args.model, refs, layer, args, x[:1])
    chosen = args.methods.split(",")
    for name in chosen:
        if name not in methods:
            raise SystemExit(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    mb = 512 if args.model == "fashion_cnn" else 16
    values = {n: {m: {k: [] for k in KR} for m in maskers} for n in chosen}
    seconds = {n: {"attribution": 0.0, **{m: 0.0 for m in maskers}} for n in chosen}
    for name in chosen:
        for i in range(0, len(x), args.batch):
            xb, tb = x[i : i + args.batch], pred[i : i + args.batch]
            t0 = time.perf_counter()
            a = methods[name](xb, tb, i).detach()
            seconds[name]["attribution"] += time.perf_counter() - t0
            for m in maskers:
                t0 = time.perf_counter()
                kr = keep_remove(model, xb, a, target=tb, percent=args.percent, masker=m,
                                 max_examples_per_batch=mb)
                seconds[name][m] += time.perf_counter() - t0
                assert kr.masker == m
                for k in KR:
                    values[name][m][k] += getattr(kr, k).tolist()
        print(name, {m: {k: round(float(np.mean(v)), 3) for k, v in values[name][m].items()} for m in maskers},
              flush=True)

    summary = {}
    for name in chosen:
        summary[name] = {}
        for m in maskers:
            summary[name][m] = {}
            for k in KR:
                ci = mean_ci(np.array(values[name][m][k]))
                summary[name][m][k] = {"mean": ci["mean"], "ci95": (ci["low"], ci["high"])}
        if len(maskers) == 2:
            summary[name]["difference"] = {
                k: paired_difference(np.array(values[name][maskers[0]][k]), np.array(values[name][maskers[1]][k]))
                for k in KR}
    command = "python " + " ".join(sys.argv)
    report = {
        "command": command, "commit": _commit(), "model": args.model, "n_images": int(len(x)),
        "methods": chosen, "maskers": maskers,
        "settings": {"n_samples": args.n_samples, "lime_samples": args.lime_samples, "percent": args.percent,
                     "score": "max logit (keep_remove's image default)", "target": "predicted class",
                     "seed": args.seed, "batch": args.batch},
        "accuracy_on_images": float((pred == y).float().mean()),
        "seconds": seconds, "loadavg": os.getloadavg(), "machine": platform.platform(),
        "torch": torch.__version__, "summary": summary, "values": values,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = f"keep_remove_maskers_{args.model}" + ("_quick" if args.quick else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2))
    lines = [f"# Keep/remove metrics on {args.model}: Telea inpainting beside the mean masker", "",
             f"Command: `{command}` (commit {report['commit']}, load average "
             f"{', '.join(f'{v:.1f}' for v in report['loadavg'])} on a shared 2-core machine).", "",
             f"{len(x)} images, predicted class as target (model accuracy on them "
             f"{report['accuracy_on_images']:.3f}); "
             + "; ".join(f"{k}: {v}" for k, v in report["settings"].items())
             + ". Each method's attributions are computed once and scored with every masker.", "",
             "Higher is better for KPM, KAM, RPM, RAM; KNM/RNM carry the paper's sign -1.", "",
             "Mean [95 % BCa bootstrap CI over images]:", "",
             "| method | masker | " + " | ".join(KR) + " |", "|---|---" + "|---" * len(KR) + "|"]
    for name in chosen:
        for m in maskers:
            sm = summary[name][m]
            lines.append(f"| {name} | {m} | " + " | ".join(
                f"{sm[k]['mean']:.4f} [{sm[k]['ci95'][0]:.4f}, {sm[k]['ci95'][1]:.4f}]" for k in KR) + " |")
    if len(maskers) == 2:
        lines += ["", f"Paired difference {maskers[0]} − {maskers[1]} (same images, same attributions), "
                  "mean [95 % BCa CI] (* = CI excludes 0):", "",
                  "| method | " + " | ".join(KR) + " |", "|---" + "|---" * len(KR) + "|"]
        for name in chosen:
            d = summary[name]["difference"]
            lines.append(f"| {name} | " + " | ".join(
                f"{d[k]['mean']:+.4f} [{d[k]['low']:+.4f}, {d[k]['high']:+.4f}]" + ("*" if d[k]["significant"] else "")
                for k in KR) + " |")
    lines += ["", "Ranking of the methods (best first) under each masker:", "",
              "| metric | " + " | ".join(maskers) + " | same order? |", "|---" + "|---" * len(maskers) + "|---|"]
    for k in KR:
        ranks = [_ranking(summary, maskers, k, m) for m in maskers]
        lines.append(f"| {k} | " + " | ".join(" > ".join(r) for r in ranks) + " | "
                     + ("yes" if all(r == ranks[0] for r in ranks) else "**no**") + " |")
    lines += ["", "Seconds (attribution once; keep/remove per masker): " + ", ".join(
        f"{n} " + "/".join(f"{v:.0f}" for v in s.values()) for n, s in seconds.items()), ""]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
