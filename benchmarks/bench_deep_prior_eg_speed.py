"""Speed and memory of ExpectedGradients / DeepPrior-EG against Captum's GradientShap.

Side by side in one run, interleaved over rounds (the machine is noisy), per
model (default FashionCNN, EfficientNet-Lite0):

- time per image of ``ExpectedGradients``, ``DeepPriorExpectedGradients``
  with ``MGMPrior`` and ``BGMMPrior`` (prior computation included) and
  Captum's ``GradientShap(stdevs=0.0)`` at equal ``n_samples``, and of the
  bare forward+backward passes over the same number of rows (the limit);
- peak memory (RSS increase over the RSS before the call, each in a fresh
  subprocess warmed up with one sample per image) at ``n_samples`` 50 and 400
  with the default ``internal_batch_size``, with glibc's default allocator
  and, on the CNN, with ``MALLOC_MMAP_THRESHOLD_=65536`` (the resident set
  then follows the live tensors), and GradientShap's for contrast.

Every timing is recorded as wall and process CPU time (user + system; less
sensitive to other jobs on a shared machine), with the load average.

``--small``: speed only, on the bundled CNN (28x28) and on a smaller CNN
with 24x24 inputs (``small_cnn``: two 3x3 convolutions, seeded random
weights, centre crops of the Fashion-MNIST sample), where the prior's fit is
a larger share of the call; each timed both with one image per call and with
all images in one call (time per image = call time / images).

Usage::

    python benchmarks/bench_deep_prior_eg_speed.py [--quick] [--threads 1] [--effnet-images 2]
    python benchmarks/bench_deep_prior_eg_speed.py --small [--rounds 3]

Writes ``benchmarks/results/deep_prior_eg_speed.{json,md}``
(``deep_prior_eg_speed_small.{json,md}`` with ``--small``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def small_cnn() -> torch.nn.Module:
    """A small CNN for 24x24 inputs (seeded random weights): 8x24x24 and
    16x12x12 convolutions, a 16x6x6 feature map (36 positions) for the priors."""
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 6 * 6, 10),
    ).eval()


def load(model_name: str):
    from captum_prior.data import load_fashion_mnist_sample

    if model_name == "small_cnn":
        x, _ = load_fashion_mnist_sample()
        x = x[:, :, 2:26, 2:26].contiguous()  # centre crops, 24x24
        return small_cnn(), x[:8], x[100:200]
    if model_name == "fashion_cnn":
        from captum_prior.models import load_fashion_cnn

        x, _ = load_fashion_mnist_sample()
        return load_fashion_cnn(), x[:8], x[100:200]
    from captum_prior.models.efficientnet import (
        load_efficientnet_lite0,
        load_imagenet_samples,
    )

    x, _, _ = load_imagenet_samples()
    return load_efficientnet_lite0(), x[:4], x[4:20]


def methods(model, refs, n_samples, ibs, seed=0):
    from captum.attr import GradientShap

    from captum_prior._batching import RowRunner, gradient_rows
    from captum_prior.attr import DeepPriorExpectedGradients, ExpectedGradients
    from captum_prior.priors import BGMMPrior, MGMPrior

    def bare(x, t):
        """The passes no method can avoid: forward+backward of n_samples rows per image."""
        rows = x.repeat_interleave(n_samples, 0)
        idx = torch.arange(x.shape[0]).repeat_interleave(n_samples)
        runner = RowRunner(model, x.shape[0], t)
        for _ in gradient_rows(runner, lambda sl: ((rows[sl],), idx[sl]), rows.shape[0], ibs):
            pass

    def gshap(x, t):
        np.random.seed(seed)
        GradientShap(model).attribute(x, refs, target=t, n_samples=n_samples, stdevs=0.0)

    def eg(x, t):
        ExpectedGradients(model).attribute(x, refs, target=t, n_samples=n_samples,
                                           internal_batch_size=ibs,
                                           generator=torch.Generator().manual_seed(seed))

    def dp(prior):
        def run(x, t):
            DeepPriorExpectedGradients(model, prior).attribute(
                x, refs, target=t, n_samples=n_samples, internal_batch_size=ibs,
                generator=torch.Generator().manual_seed(seed))
        return run

    return {
        "bare forward+backward": bare,
        "GradientShap(stdevs=0)": gshap,
        "ExpectedGradients": eg,
        "DeepMGM-EG": dp(MGMPrior(model)),
        "DeepBGMM-EG": dp(BGMMPrior(model, random_state=seed)),
    }


def time_model(model_name, n_samples, rounds, n_images=None, per_call=1):
    """Median time per image; ``per_call`` images are explained in each call."""
    model, x, refs = load(model_name)
    x = x[:n_images]
    with torch.no_grad():
        t = model(x).argmax(1)
    ms = methods(model, refs, n_samples, ibs=None)
    for fn in ms.values():  # warm-up
        fn(x[:1], t[:1])
    load0 = os.getloadavg()[0]
    times = {k: [] for k in ms}
    cpu = {k: [] for k in ms}
    names = list(ms)
    for r in range(rounds):
        for i in range(0, x.shape[0], per_call):  # per_call images per call: time per image
            k = (r + i) % len(names)
            sl = slice(i, i + per_call)
            n_call = x[sl].shape[0]
            for name in names[k:] + names[:k]:  # interleaved, order rotated
                c0, t0 = time.process_time(), time.perf_counter()
                ms[name](x[sl], t[sl])
                times[name].append((time.perf_counter() - t0) / n_call)
                cpu[name].append((time.process_time() - c0) / n_call)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}

    def ratios(v, ref):  # median of the per-call ratios (same image, same round)
        return {k: statistics.median([a / b for a, b in zip(v[k], v[ref])]) for k in v}

    return {
        "n_images": int(x.shape[0]),
        "images_per_call": per_call,
        "rounds": rounds,
        "n_samples": n_samples,
        "loadavg": [load0, os.getloadavg()[0]],
        "seconds_per_image_median": med,
        "cpu_seconds_per_image_median": med_cpu,
        "ratio_to_gradient_shap": ratios(times, "GradientShap(stdevs=0)"),
        "ratio_to_bare_passes": ratios(times, "bare forward+backward"),
        "cpu_ratio_to_gradient_shap": ratios(cpu, "GradientShap(stdevs=0)"),
        "times": times,
        "cpu_times": cpu,
    }


CHILD = r"""
import json, sys, torch, numpy as np
sys.path.insert(0, {bench!r})
from bench_deep_prior_eg_speed import load, methods
def status(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
model, x, refs = load({model!r})
x = x[:{n_img}]
with torch.no_grad():
    t = model(x).argmax(1)
torch.set_num_threads({threads})
ms = methods(model, refs, {n}, {ibs})
methods(model, refs, 1, {ibs})[{method!r}](x, t)  # warm-up (thread pools, kernels): one sample per image
import gc; gc.collect()
with open('/proc/self/clear_refs', 'w') as f:  # reset the peak (VmHWM) to the current RSS
    f.write('5')
base = status('VmRSS:')
ms[{method!r}](x, t)
peak = status('VmHWM:')
print(json.dumps({{"peak_increase_bytes": max(peak - base, 0), "base": base, "peak": peak}}))
"""


def memory(model_name, method, n, ibs, n_img, threads=1, live=False):
    code = CHILD.format(bench=str(Path(__file__).resolve().parent), model=model_name,
                        n=n, ibs=ibs, method=method, n_img=n_img, threads=threads)
    env = dict(os.environ, **({"MALLOC_MMAP_THRESHOLD_": "65536"} if live else {}))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n-samples", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--effnet-images", type=int, default=2, help="EfficientNet-Lite0 images (of 4)")
    p.add_argument("--effnet-rounds", type=int, default=2)
    p.add_argument("--memory-only", action="store_true",
                   help="rerun only the memory part, keeping the speed part of the JSON")
    p.add_argument("--small", action="store_true",
                   help="speed only: the bundled CNN and a 24x24-input CNN, one image and 8 images per call")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits

        _limits = threadpool_limits(args.threads)  # noqa: F841 (scikit-learn's BLAS too)
    except ImportError:  # pragma: no cover
        pass
    if args.small:
        return main_small(args)
    models = ["fashion_cnn"] if args.quick else ["fashion_cnn", "efficientnet_lite0"]
    report = {"command": "python " + " ".join(sys.argv), "torch": torch.__version__,
              "machine": platform.platform(), "threads": torch.get_num_threads(),
              "loadavg_start": os.getloadavg(), "speed": {}, "memory": {}}
    if args.memory_only:
        old_path = RESULTS / "deep_prior_eg_speed.json"
        old = json.loads(old_path.read_text()) if old_path.exists() else {"speed": {}, "command": "none"}
        report["speed"] = old["speed"]
        report["speed_command"] = old.get("speed_command", old["command"])
    else:
        report["speed_command"] = report["command"]
    for m in models if not args.memory_only else []:
        rounds = 1 if args.quick else (args.rounds if m == "fashion_cnn" else args.effnet_rounds)
        report["speed"][m] = time_model(m, args.n_samples, rounds,
                                        None if m == "fashion_cnn" else args.effnet_images)
        print(m, json.dumps(report["speed"][m]["ratio_to_gradient_shap"], indent=1), flush=True)
    for m in models:
        ibs = None  # the default chunking
        n_img = 8 if m == "fashion_cnn" else 1
        rows = {}
        # GradientShap holds all n_samples rows at once: ~10 GB at 400 samples on
        # EfficientNet-Lite0, too much for a shared 24 GB machine; CNN only.
        mem_methods = (("ExpectedGradients", "DeepBGMM-EG", "GradientShap(stdevs=0)") if m == "fashion_cnn"
                       else ("ExpectedGradients",))
        for method in mem_methods:
            for live in (False, True) if m == "fashion_cnn" and "Shap" not in method else (False,):
                r = {n: memory(m, method, n, ibs, n_img, args.threads, live)["peak_increase_bytes"]
                     for n in (50, 400)}
                key = method + (" (live)" if live else "")
                rows[key] = {"peak_increase_MB_n50": r[50] / 2**20, "peak_increase_MB_n400": r[400] / 2**20,
                             "ratio_400_to_50": r[400] / max(r[50], 1)}
                print(m, key, rows[key], flush=True)
            report["memory"][m] = {"internal_batch_size": ibs, "n_images": n_img, "methods": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "deep_prior_eg_speed.json").write_text(json.dumps(report, indent=2))
    lines = ["# ExpectedGradients / DeepPrior-EG speed and memory", "",
             f"Speed command: `{report['speed_command']}`  ", f"Memory command: `{report['command']}`  ",
             "Peak memory = VmHWM after resetting it (/proc/self/clear_refs) minus RSS before the call, in a fresh "
             "process per cell (warmed up with one sample per image); '(live)': under glibc "
             "MALLOC_MMAP_THRESHOLD_=65536, so that the resident set follows the live tensors (without it, it "
             "includes the allocator's cache).  ",
             f"torch {report['torch']}, {report['threads']} thread(s), {report['machine']}; load average "
             f"{report['loadavg_start'][0]:.1f} at the start (shared machine: the ratios are of calls interleaved "
             "image by image, median of the per-call ratios; 'CPU' = process CPU time).", ""]
    for m, r in report["speed"].items():
        lines += [f"## Time per image, {m} (n_samples={r['n_samples']}, {r['n_images']} images x {r['rounds']} "
                  f"rounds, median; load {r['loadavg'][0]:.1f} -> {r['loadavg'][1]:.1f})", "",
                  "| method | s / image | CPU s / image | × GradientShap | × GradientShap (CPU) | × bare fwd+bwd |",
                  "|---|---|---|---|---|---|"]
        for k, v in r["seconds_per_image_median"].items():
            lines.append(f"| {k} | {v:.3f} | {r['cpu_seconds_per_image_median'][k]:.3f} | "
                         f"{r['ratio_to_gradient_shap'][k]:.2f} | {r['cpu_ratio_to_gradient_shap'][k]:.2f} | "
                         f"{r['ratio_to_bare_passes'][k]:.2f} |")
        lines.append("")
    for m, r in report["memory"].items():
        lines += [f"## Peak memory increase, {m} (default internal_batch_size, {r['n_images']} images)", "",
                  "| method | n=50 (MB) | n=400 (MB) | ratio |", "|---|---|---|---|"]
        for k, v in r["methods"].items():
            lines.append(f"| {k} | {v['peak_increase_MB_n50']:.1f} | {v['peak_increase_MB_n400']:.1f} | {v['ratio_400_to_50']:.2f} |")
        lines.append("")
    lines.append("GradientShap has no internal_batch_size: its memory grows with n_samples (captum#1350); it is measured on the CNN only (about 10 GB at 400 samples on EfficientNet-Lite0).")
    (RESULTS / "deep_prior_eg_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main_small(args):
    """``--small``: time per image on the bundled CNN and the 24x24 CNN, one
    image per call and all 8 in one call, side by side in one run."""
    report = {"command": "python " + " ".join(sys.argv), "torch": torch.__version__,
              "machine": platform.platform(), "threads": torch.get_num_threads(),
              "loadavg_start": os.getloadavg(), "speed": {}}
    n_images = 2 if args.quick else 8
    rounds = 1 if args.quick else args.rounds
    for m in ("fashion_cnn", "small_cnn"):
        for per_call in (1, n_images):
            key = f"{m}, {per_call} image(s) per call"
            report["speed"][key] = time_model(m, args.n_samples, rounds, n_images, per_call)
            print(key, json.dumps(report["speed"][key]["ratio_to_gradient_shap"], indent=1), flush=True)
    report["loadavg_end"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "deep_prior_eg_speed_small.json").write_text(json.dumps(report, indent=2))
    lines = ["# DeepPrior-EG time per image against GradientShap: bundled CNN and a 24x24-input CNN", "",
             f"Command: `{report['command']}`  ",
             f"torch {report['torch']}, {report['threads']} thread(s), {report['machine']}; load average "
             f"{report['loadavg_start'][0]:.1f} at the start, {report['loadavg_end'][0]:.1f} at the end. "
             "Calls interleaved, order rotated; ratios are medians of the per-call ratios; 'CPU' = process "
             "CPU time.", ""]
    for key, r in report["speed"].items():
        lines += [f"## {key} (n_samples={r['n_samples']}, {r['n_images']} images x {r['rounds']} rounds, "
                  f"load {r['loadavg'][0]:.1f} -> {r['loadavg'][1]:.1f})", "",
                  "| method | s / image | CPU s / image | × GradientShap | × GradientShap (CPU) | × bare fwd+bwd |",
                  "|---|---|---|---|---|---|"]
        for k, v in r["seconds_per_image_median"].items():
            lines.append(f"| {k} | {v:.4f} | {r['cpu_seconds_per_image_median'][k]:.4f} | "
                         f"{r['ratio_to_gradient_shap'][k]:.2f} | {r['cpu_ratio_to_gradient_shap'][k]:.2f} | "
                         f"{r['ratio_to_bare_passes'][k]:.2f} |")
        lines.append("")
    (RESULTS / "deep_prior_eg_speed_small.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
