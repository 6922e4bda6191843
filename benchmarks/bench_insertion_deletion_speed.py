"""Speed of ``insertion_deletion`` against RISE's per-step loop and the bare forwards.

Three ways to get the same insertion and deletion AUCs on EfficientNet-Lite0
(RISE protocol: zero deletion substrate, blur k=11 σ=5 insertion substrate,
softmax probability of the predicted class), timed side by side in one run,
interleaved over ``--repeats`` rounds (median reported):

* ``ours``: :func:`captum_prior.metrics.insertion_deletion` with
  ``max_examples_per_batch=--batch``;
* ``loop``: RISE's reference evaluation (``CausalMetric.single_run``): one
  image, one forward per step (batch 1), the perturbed image updated in place;
* ``bare``: only the model's forward passes over the same perturbed rows, in
  the same chunks as ``ours``, the rows built beforehand (untimed): the
  physical limit of any batched implementation.

Targets: ``loop / ours >= 5`` and ``ours / bare <= 1.3``.  Equality: the
largest absolute AUC difference between ``ours`` and ``loop``.

Usage::

    python benchmarks/bench_insertion_deletion_speed.py            # 2 images, 16 steps
    python benchmarks/bench_insertion_deletion_speed.py --quick    # 1 image, 8 steps

``--model fashion_cnn`` repeats it on the package's default CNN (28 x 28,
RISE's 28 px per step unchanged), where per-call overhead, not arithmetic,
dominates a batch-1 forward.

Writes ``benchmarks/results/insertion_deletion_speed_<model>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()


def loop_auc(model, x, sal, target, n_steps, substrate, insertion):
    """RISE's single_run for one image: one forward per step."""
    c, h, w = x.shape
    n = h * w
    step = math.ceil(n / n_steps)
    order = torch.argsort(sal.reshape(-1), descending=True, stable=True)
    start = (substrate if insertion else x).clone().reshape(c, -1)
    finish = (x if insertion else substrate).reshape(c, -1)
    steps = math.ceil(n / step)
    scores = []
    with torch.no_grad():
        for k in range(steps + 1):
            p = torch.softmax(model(start.reshape(1, c, h, w)), 1)[0, target]
            scores.append(float(p))
            if k < steps:
                idx = order[k * step : (k + 1) * step]
                start[:, idx] = finish[:, idx]
    s = torch.tensor(scores, dtype=torch.float64)
    return float((s.sum() - s[0] / 2 - s[-1] / 2) / steps)


def build_rows(x, sal, n_steps, blur):
    """The perturbed rows of ``ours``, in its order (deletion 0..n, insertion 0..n-1)."""
    n_img, c, h, w = x.shape
    n = h * w
    step = math.ceil(n / n_steps)
    rows = []
    for i in range(n_img):
        rank = torch.empty(n, dtype=torch.long)
        rank[torch.argsort(sal[i].reshape(-1), descending=True, stable=True)] = torch.arange(n)
        for k in range(n_steps + 1):
            m = (rank < min(k * step, n)).view(1, h, w)
            rows.append(torch.where(m, torch.zeros_like(x[i]), x[i]))
        for k in range(n_steps):
            m = (rank < min(k * step, n)).view(1, h, w)
            rows.append(torch.where(m, x[i], blur[i]))
    return torch.stack(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="efficientnet_lite0", choices=["efficientnet_lite0", "fashion_cnn"])
    p.add_argument("--n-images", type=int, default=None, help="default 2 (EfficientNet), 50 (FashionCNN)")
    p.add_argument("--n-steps", type=int, default=None,
                   help="default 16 (EfficientNet; RISE uses 224, 224 px per step), 28 (FashionCNN, = RISE)")
    p.add_argument("--batch", type=int, default=None, help="max_examples_per_batch; default 16 / 512")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="1 image, 8 steps, 1 repeat")
    args = p.parse_args()
    eff = args.model == "efficientnet_lite0"
    args.n_images = args.n_images or (2 if eff else 50)
    args.n_steps = args.n_steps or (16 if eff else 28)
    args.batch = args.batch or (16 if eff else 512)
    if args.quick:
        args.n_images, args.n_steps, args.repeats = (1, 8, 1) if eff else (5, 28, 1)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    from captum.attr import Saliency

    from captum_prior._image import gaussian_blur
    from captum_prior.metrics import insertion_deletion
    from captum_prior.models.efficientnet import (
        load_efficientnet_lite0,
        load_imagenet_samples,
    )

    if eff:
        model = load_efficientnet_lite0()
        x_all, _, names = load_imagenet_samples()
        model_desc = "EfficientNet-Lite0 (captum_prior.models.efficientnet), CPU"
    else:
        from captum_prior.data import load_fashion_mnist
        from captum_prior.models import FashionCNN

        model = FashionCNN().eval()  # speed does not depend on the weights
        x_all, _ = load_fashion_mnist("test")
        names = [f"test[{i}]" for i in range(args.n_images)]
        model_desc = "FashionCNN (default CNN, seeded random weights: speed only), CPU"
    x = x_all[: args.n_images]
    with torch.no_grad():
        pred = model(x).argmax(1)
    attr = Saliency(model).attribute(x, target=pred, abs=True)
    sal = attr.sum(1)
    blur = gaussian_blur(x, 5.0, 11)
    rows = build_rows(x, sal, args.n_steps, blur)
    n_rows = rows.shape[0]

    def run_ours():
        return insertion_deletion(model, x, attr, target=pred, n_steps=args.n_steps,
                                  max_examples_per_batch=args.batch)

    def run_bare():
        with torch.no_grad():
            for s in range(0, n_rows, args.batch):
                model(rows[s : s + args.batch])

    def run_loop():
        ins = [loop_auc(model, x[i], sal[i], int(pred[i]), args.n_steps, blur[i], True)
               for i in range(len(x))]
        dele = [loop_auc(model, x[i], sal[i], int(pred[i]), args.n_steps, torch.zeros_like(x[i]), False)
                for i in range(len(x))]
        return torch.tensor(ins), torch.tensor(dele)

    # warm-up (untimed): every batch shape the three ways use
    with torch.no_grad():
        for b in {1, args.batch, n_rows % args.batch or args.batch}:
            model(rows[:b])
    load_before = os.getloadavg()
    times = {"ours": [], "bare": [], "loop": []}
    res = loop_res = None
    ways = [("ours", run_ours), ("bare", run_bare), ("loop", run_loop)]
    for r in range(args.repeats):
        for name, fn in ways[r % 3 :] + ways[: r % 3]:  # rotate the order each round
            t0 = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - t0)
            if name == "ours":
                res = out
            elif name == "loop":
                loop_res = out
    load_after = os.getloadavg()
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    diff = max(float((res.insertion.double() - loop_res[0]).abs().max()),
               float((res.deletion.double() - loop_res[1]).abs().max()))
    report = {
        "command": "python " + " ".join(sys.argv),
        "model": model_desc,
        "n_images": len(x), "images": names[: len(x)], "n_steps": args.n_steps,
        "pixels_per_step": math.ceil(x.shape[-1] * x.shape[-2] / args.n_steps),
        "max_examples_per_batch": args.batch, "threads": args.threads, "repeats": args.repeats,
        "rows_batched": n_rows, "forwards_loop": len(x) * 2 * (args.n_steps + 1),
        "seconds": times, "median_seconds": med,
        "min_seconds": best,
        "speedup_vs_loop": med["loop"] / med["ours"],
        "ratio_to_bare_forward": med["ours"] / med["bare"],
        "speedup_vs_loop_of_minima": best["loop"] / best["ours"],
        "ratio_to_bare_forward_of_minima": best["ours"] / best["bare"],
        "max_abs_auc_difference_vs_loop": diff,
        "insertion_auc": res.insertion.tolist(), "deletion_auc": res.deletion.tolist(),
        "loadavg_before": load_before, "loadavg_after": load_after,
        "torch": torch.__version__, "machine": platform.platform(), "cpus": os.cpu_count(),
    }
    RESULTS.mkdir(exist_ok=True)
    stem = f"insertion_deletion_speed_{args.model}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2))
    ok5 = "met" if report["speedup_vs_loop"] >= 5 else "NOT met"
    ok13 = "met" if report["ratio_to_bare_forward"] <= 1.3 else "NOT met"
    md = [
        f"# insertion_deletion speed ({model_desc})", "",
        f"Command: `{report['command']}`  ",
        f"{len(x)} images, {args.n_steps} steps per curve ({report['pixels_per_step']} px/step), "
        f"insertion + deletion, max_examples_per_batch={args.batch}, {args.threads} threads, "
        f"median of {args.repeats} interleaved rounds (order rotated, after an untimed warm-up); load average {load_before[0]:.1f} -> {load_after[0]:.1f} "
        f"on {os.cpu_count()} shared cores.", "",
        "| way | forward calls | median s | min s | all rounds s |", "|---|---|---|---|---|",
        f"| ours (`insertion_deletion`) | {math.ceil(n_rows / args.batch)} | {med['ours']:.2f} | {best['ours']:.2f} | "
        + ", ".join(f"{t:.1f}" for t in times["ours"]) + " |",
        f"| bare batched forwards (limit) | {math.ceil(n_rows / args.batch)} | {med['bare']:.2f} | {best['bare']:.2f} | "
        + ", ".join(f"{t:.1f}" for t in times["bare"]) + " |",
        f"| RISE per-step loop (batch 1) | {report['forwards_loop']} | {med['loop']:.2f} | {best['loop']:.2f} | "
        + ", ".join(f"{t:.1f}" for t in times["loop"]) + " |", "",
        f"- speed-up over the loop: **{report['speedup_vs_loop']:.2f}x** (target >= 5x: {ok5})",
        f"- ours / bare forwards: **{report['ratio_to_bare_forward']:.3f}** (limit <= 1.3: {ok13})",
        f"- from the per-way minima (less sensitive to the shared machine's load): speed-up "
        f"{report['speedup_vs_loop_of_minima']:.2f}x, ours / bare {report['ratio_to_bare_forward_of_minima']:.3f}",
        f"- largest |AUC(ours) - AUC(loop)|: {diff:.2e}", "",
    ]
    (RESULTS / f"{stem}.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
