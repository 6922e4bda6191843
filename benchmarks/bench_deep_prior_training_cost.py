"""Cost of one training epoch with an attribution prior, against a plain epoch
and against the EG-prior floor, measured side by side (the §4.3.2 setting of
bench_deep_prior_noise_robustness.py).

Variants (same model, batch and optimiser; each with its own copy of the
model, trained on the same batches):

- no prior (cross-entropy only);
- EG prior: Erion et al.'s alternating step with one expected-gradients draw
  per example and double backpropagation. This is the floor of every
  attribution prior: a deep-feature prior adds its map on top of it;
- DeepMGM-EG / DeepBGMM-EG prior, ``share_forward=True`` (the trainer's
  default: the prior's map from the step's own forward pass);
- DeepMGM-EG / DeepBGMM-EG prior, ``share_forward=False`` (a separate forward,
  and for BGMM's "evidence" reduction a separate backward, per step: the
  route of the committed noise-robustness runs).

The variants run ``--steps`` training steps each, interleaved, for
``--repeats`` rounds; both the wall time and the process CPU time
(``time.process_time``, single thread: much less sensitive to other jobs on a
shared machine) are recorded; the load average is recorded before and after.
The DeepBGMM-EG variants also pay the experiment's once-per-epoch refit on 512
images (``BGMMPrior.fit``), timed separately in each round. An epoch of ``E``
images is ``ceil(E / batch) x median step time (+ median refit)``; reported
for ``--epoch-images`` (default 2 000: the committed §4.3.2 run's
``--n-train 2000``) and for 10 000 images (the experiment script's default
``--n-train``, where the refit weighs five times less).

Usage::

    python benchmarks/bench_deep_prior_training_cost.py --repeats 7 --steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_deep_prior_noise_robustness import make_model  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()
VARIANTS = ("no prior", "EG prior", "DeepMGM-EG prior", "DeepBGMM-EG prior",
            "DeepMGM-EG prior (separate forward)", "DeepBGMM-EG prior (separate forward)")


def build(v, x):
    from captum_prior.priors import BGMMPrior, MGMPrior
    from captum_prior.training import AttributionPriorTrainer

    torch.manual_seed(0)
    m = make_model()
    prior = None
    if v.startswith("DeepMGM"):
        prior = MGMPrior(m)
    elif v.startswith("DeepBGMM"):
        prior = BGMMPrior(m, random_state=0)
        prior.fit(x[:512])
    return AttributionPriorTrainer(m, torch.optim.Adam(m.parameters(), 1e-3),
                                   lam=0.0 if v == "no prior" else 1e-3, prior=prior,
                                   generator=torch.Generator().manual_seed(0),
                                   share_forward="separate" not in v)


def main():
    from captum_prior.data import load_fashion_mnist

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--epoch-images", type=int, default=2000)
    args = p.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    x, y = load_fashion_mnist("train")
    x, y = x[:4000], y[:4000]
    trainers = {v: build(v, x) for v in VARIANTS}
    for t in trainers.values():
        t.step(x[:args.batch], y[:args.batch])  # warm-up (and layer=None resolution)
    wall = {v: [] for v in VARIANTS}
    cpu = {v: [] for v in VARIANTS}
    refit_wall, refit_cpu = [], []
    g = torch.Generator().manual_seed(0)
    for r in range(args.repeats):
        idx = torch.randperm(len(x), generator=g)[: args.steps * args.batch].view(args.steps, args.batch)
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]  # alternate the order of the variants
        for v in order:
            w0, c0 = time.perf_counter(), time.process_time()
            for b in idx:
                trainers[v].step(x[b], y[b])
            wall[v].append((time.perf_counter() - w0) / args.steps)
            cpu[v].append((time.process_time() - c0) / args.steps)
        w0, c0 = time.perf_counter(), time.process_time()
        trainers["DeepBGMM-EG prior"].prior.fit(x[torch.randperm(len(x), generator=g)[:512]])
        refit_wall.append(time.perf_counter() - w0)
        refit_cpu.append(time.process_time() - c0)
    res = {}
    for v in VARIANTS:
        res[v] = {"step_wall_s": wall[v], "step_cpu_s": cpu[v],
                  "step_cpu_ms_median": 1000 * statistics.median(cpu[v]), "epochs": {}}
    for e in dict.fromkeys((args.epoch_images, 10000)):
        spe = -(-e // args.batch)
        for v in VARIANTS:
            ew = spe * statistics.median(wall[v])
            ec = spe * statistics.median(cpu[v])
            if v.startswith("DeepBGMM"):
                ew += statistics.median(refit_wall)
                ec += statistics.median(refit_cpu)
            res[v]["epochs"][e] = {"wall_s": ew, "cpu_s": ec}
        for v in VARIANTS:
            d = res[v]["epochs"][e]
            for kind in ("wall", "cpu"):
                d[f"x_plain_{kind}"] = d[f"{kind}_s"] / res["no prior"]["epochs"][e][f"{kind}_s"]
                d[f"x_eg_{kind}"] = d[f"{kind}_s"] / res["EG prior"]["epochs"][e][f"{kind}_s"]
    load_after = os.getloadavg()
    out = {"command": "python " + " ".join(sys.argv), "settings": vars(args), "results": res,
           "bgmm_refit_wall_s": refit_wall, "bgmm_refit_cpu_s": refit_cpu,
           "loadavg_before": load_before, "loadavg": load_after, "torch": torch.__version__}
    RESULTS.mkdir(exist_ok=True)
    tmp = RESULTS / "deep_prior_training_cost.json.tmp"
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, RESULTS / "deep_prior_training_cost.json")
    lb = tuple(round(a, 1) for a in load_before)
    la = tuple(round(a, 1) for a in load_after)
    lines = ["# Epoch cost of training with an attribution prior (side by side)", "",
             f"Command: `{out['command']}`", "",
             f"Model and alternating step of bench_deep_prior_noise_robustness.py (batch {args.batch}, 1 "
             f"thread, Fashion-MNIST); {args.repeats} interleaved rounds (order reversed every other round) of "
             f"{args.steps} steps per variant; medians over the rounds. Epoch = steps x median step time, "
             "plus, for DeepBGMM-EG, the median once-per-epoch refit on 512 images "
             f"({1000 * statistics.median(refit_cpu):.0f} ms CPU). Load average before {lb}, after {la} "
             "(2 cores): with other jobs running, the CPU-time columns are the ones to trust.", "",
             "The EG prior (one draw per example, double backpropagation) is the floor of any attribution "
             "prior; `× EG` is the cost of the deep-feature prior on top of it. `shared forward` is the "
             "trainer's default (`share_forward=True`), `separate forward` the route of the committed "
             "noise-robustness runs.", ""]
    for e in dict.fromkeys((args.epoch_images, 10000)):
        lines += [f"Epoch of {e} images ({-(-e // args.batch)} steps):", "",
                  "| prior | step CPU ms | epoch CPU s | × plain (CPU) | × EG prior (CPU) | epoch wall s | "
                  "× plain (wall) |", "|---|---|---|---|---|---|---|"]
        for v in VARIANTS:
            d = res[v]["epochs"][e]
            lines.append(f"| {v.replace('prior', 'prior, shared forward') if v.startswith('Deep') and 'separate' not in v else v} "
                         f"| {res[v]['step_cpu_ms_median']:.1f} | {d['cpu_s']:.2f} | {d['x_plain_cpu']:.2f} | "
                         f"{d['x_eg_cpu']:.2f} | {d['wall_s']:.2f} | {d['x_plain_wall']:.2f} |")
        lines.append("")
    (RESULTS / "deep_prior_training_cost.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
