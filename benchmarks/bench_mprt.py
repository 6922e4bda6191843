"""Model-parameter randomisation test (MPRT) of every attribution method of
the package, on the bundled Fashion-MNIST CNN: the similarity table with
verdicts, and what the test costs.

For each method (built as ``captum-prior explain --method NAME`` builds it)
the script times one attribution call on the images and the cascading
MPRT (``model_randomization_test(..., modes=("cascading",))``: one call on
the trained model plus one per randomised layer, the similarities and the
bootstrap intervals), and reports

    cost ratio = MPRT time / (L x one call),   L = layers randomised,

the cost per layer randomised in units of one attribution call; the floor is
``(L + 1) / L`` (the trained model's call), the rest is model copying and the
similarity measures.  Methods run one after the other in one process, so
their ratios are measured side by side.

Usage::

    python benchmarks/bench_mprt.py --quick                 # smoke run (4 images, 3 methods)
    python benchmarks/bench_mprt.py --n 64 --repeats 3      # the timed run (quiet machine)
    python benchmarks/bench_mprt.py --n 64 --methods saliency,integrated-gradients

Writes ``benchmarks/results/mprt_fashion_cnn[_quick].{json,md}`` with the
command, commit and machine load.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
# DMM-MEN (MCMC per example) is left out of the default list: one call on 64
# images takes minutes; name it in --methods to include it.
DEFAULT_METHODS = ("saliency", "integrated-gradients", "gradient-shap", "expected-gradients",
                   "deep-mgm-eg", "deep-bgmm-eg", "valid-path-gradients", "bay-lime")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=64, help="images (default 64)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    p.add_argument("--n-samples", type=int, default=16, help="samples of EG/GradientShap/DeepPrior-EG (default 16)")
    p.add_argument("--n-steps", type=int, default=32, help="steps of IG/VPG (default 32)")
    p.add_argument("--repeats", type=int, default=1, help="timing repeats, the minimum is kept")
    p.add_argument("--quick", action="store_true", help="smoke run: 4 images, saliency/IG/EG, 1 repeat")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    if args.quick:
        args.n, args.methods, args.repeats = 4, "saliency,integrated-gradients,expected-gradients", 1

    from captum_prior.data import load_fashion_mnist_sample
    from captum_prior.metrics.sanity import (
        model_randomization_test,
        randomizable_layers,
    )
    from captum_prior.models import load_fashion_cnn
    from captum_prior.runner.specs import TensorData, build_method

    x_all, y_all = load_fashion_mnist_sample()
    dataset = TensorData(x_all, y_all)
    x, y = x_all[: args.n], y_all[: args.n]
    model = load_fashion_cnn().eval()
    layers = randomizable_layers(model)
    rows = []
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        attribution, kw, _ = build_method(name, model, dataset, n_samples=args.n_samples,
                                          n_steps=args.n_steps, seed=0)
        call_times, mprt_times, res = [], [], None
        torch.manual_seed(0)
        attribution.attribute(x[:2], target=y[:2], **kw)  # warm-up, untimed
        for _ in range(args.repeats):
            m = copy.deepcopy(model)
            a = copy.deepcopy(attribution)
            a.forward_func = m
            torch.manual_seed(0)
            t0 = time.perf_counter()
            a.attribute(x, target=y, **kw)
            call_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            res = model_randomization_test({name: attribution}, model, x, y, modes=("cascading",),
                                           attribute_kwargs=kw, n_resamples=1000)
            mprt_times.append(time.perf_counter() - t0)
        t_call, t_mprt = min(call_times), min(mprt_times)
        s = res.summary["cascading"][name]
        rows.append({
            "method": name, "t_call_s": t_call, "t_mprt_s": t_mprt,
            "cost_ratio": t_mprt / (len(layers) * t_call), "floor": (len(layers) + 1) / len(layers),
            "final": {meas: s[meas][-1] for meas in res.measures},
            "curve_spearman_abs": [e["mean"] for e in s["spearman_abs"]],
            "verdict": res.verdict[name]["status"], "verdict_text": res.verdict[name]["text"],
        })
        print(f"{name}: call {t_call:.3f}s, MPRT {t_mprt:.2f}s, ratio {rows[-1]['cost_ratio']:.2f}, "
              f"{res.verdict[name]['status']}", flush=True)
    cmd = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    meta = {"command": cmd, "commit": _commit(), "machine": platform.platform(),
            "cpu_count": os.cpu_count(), "threads": args.threads, "uptime": os.popen("uptime").read().strip(),
            "n_images": args.n, "layers": layers, "n_samples": args.n_samples, "n_steps": args.n_steps,
            "repeats": args.repeats}
    tag = "_quick" if args.quick else ""
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"mprt_fashion_cnn{tag}.json", "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=1)

    def ci(e):
        return f"{e['mean']:.2f} [{e['low']:.2f}, {e['high']:.2f}]"

    lines = [
        f"# MPRT (cascading) of the package's methods, FashionCNN, {args.n} Fashion-MNIST test images",
        "",
        "Similarity of each method's maps on the fully randomised model (every layer of "
        f"{', '.join(layers)} redrawn, output first) to its maps on the trained model; 95 % bootstrap "
        "CI over images. Verdict: fails when the lower bound of the |map| Spearman similarity is above "
        "0.5, passes when the upper bound is below it. Cost ratio: MPRT time / (layers x one attribution "
        f"call); floor {(len(layers) + 1) / len(layers):.2f}.",
        "" if not args.quick else "\n**Smoke run (4 images): the times are not a measurement.**",
        "" if os.getloadavg()[0] <= (os.cpu_count() or 1) else
        f"\n**Machine loaded (1-min load {os.getloadavg()[0]:.1f} > {os.cpu_count()} CPUs): the times "
        "are not a measurement; the similarities and verdicts are.**",
        "",
        "| method | Spearman abs | Spearman signed | SSIM | HOG | verdict | one call (s) | MPRT (s) | cost ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f = r["final"]
        lines.append(f"| {r['method']} | {ci(f['spearman_abs'])} | {ci(f['spearman'])} | {ci(f['ssim'])} | "
                     f"{ci(f['hog'])} | {r['verdict']} | {r['t_call_s']:.3f} | {r['t_mprt_s']:.2f} | "
                     f"{r['cost_ratio']:.2f} |")
    lines += ["", "Spearman |map| similarity after each cascading step (" + " -> ".join(layers) + "):", ""]
    lines += [f"- {r['method']}: " + ", ".join(f"{v:.2f}" for v in r["curve_spearman_abs"]) for r in rows]
    lines += ["", f"Command: `{cmd}`  ", f"Commit: {meta['commit']}  ", f"Machine: {meta['machine']}, "
              f"{meta['cpu_count']} CPUs, {args.threads} torch thread(s)  ", f"Load: `{meta['uptime']}`", ""]
    with open(RESULTS / f"mprt_fashion_cnn{tag}.md", "w") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
