"""Cost of one training epoch with an attribution prior, against a plain epoch,
measured side by side (the §4.3.2 setting of bench_deep_prior_noise_robustness.py).

The four variants (no prior, EG prior, DeepMGM-EG prior, DeepBGMM-EG prior)
run ``--steps`` training steps each, interleaved, for ``--repeats`` rounds;
both the wall time and the process CPU time (``time.process_time``, single
thread: much less sensitive to other jobs on a shared machine) are recorded.
The DeepBGMM-EG variant also pays its once-per-epoch refit on 512 images,
timed separately. An epoch of ``--epoch-images`` images is then
``steps_per_epoch x median step time (+ refit)``.

Usage::

    python benchmarks/bench_deep_prior_training_cost.py --repeats 3 --steps 8
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
from bench_deep_prior_noise_robustness import VARIANTS, make_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main():
    from captum_prior.data import load_fashion_mnist
    from captum_prior.priors import BGMMPrior, MGMPrior
    from captum_prior.training import AttributionPriorTrainer

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--epoch-images", type=int, default=2000)
    args = p.parse_args()
    torch.set_num_threads(1)
    x, y = load_fashion_mnist("train")
    x, y = x[:4000], y[:4000]
    trainers = {}
    for v in VARIANTS:
        torch.manual_seed(0)
        m = make_model()
        prior = MGMPrior(m) if v == "DeepMGM-EG prior" else (
            BGMMPrior(m, random_state=0) if v == "DeepBGMM-EG prior" else None)
        if prior is not None and v == "DeepBGMM-EG prior":
            prior.fit(x[:512])
        trainers[v] = AttributionPriorTrainer(m, torch.optim.Adam(m.parameters(), 1e-3),
                                              lam=0.0 if v == "no prior" else 1e-3, prior=prior,
                                              generator=torch.Generator().manual_seed(0))
        trainers[v].step(x[:args.batch], y[:args.batch])  # warm-up (and layer=None resolution)
    wall = {v: [] for v in VARIANTS}
    cpu = {v: [] for v in VARIANTS}
    refit_wall, refit_cpu = [], []
    g = torch.Generator().manual_seed(0)
    for _ in range(args.repeats):
        idx = torch.randperm(len(x), generator=g)[: args.steps * args.batch].view(args.steps, args.batch)
        for v in VARIANTS:
            w0, c0 = time.perf_counter(), time.process_time()
            for b in idx:
                trainers[v].step(x[b], y[b])
            wall[v].append((time.perf_counter() - w0) / args.steps)
            cpu[v].append((time.process_time() - c0) / args.steps)
        w0, c0 = time.perf_counter(), time.process_time()
        trainers["DeepBGMM-EG prior"].prior.fit(x[idx.flatten()[:512]])
        refit_wall.append(time.perf_counter() - w0)
        refit_cpu.append(time.process_time() - c0)
    spe = -(-args.epoch_images // args.batch)
    res = {}
    for v in VARIANTS:
        e_wall = spe * statistics.median(wall[v])
        e_cpu = spe * statistics.median(cpu[v])
        if v == "DeepBGMM-EG prior":
            e_wall += statistics.median(refit_wall)
            e_cpu += statistics.median(refit_cpu)
        res[v] = {"step_wall_s": wall[v], "step_cpu_s": cpu[v], "epoch_wall_s": e_wall, "epoch_cpu_s": e_cpu}
    for v in VARIANTS:
        res[v]["x_plain_wall"] = res[v]["epoch_wall_s"] / res["no prior"]["epoch_wall_s"]
        res[v]["x_plain_cpu"] = res[v]["epoch_cpu_s"] / res["no prior"]["epoch_cpu_s"]
    out = {"command": "python " + " ".join(sys.argv), "settings": vars(args), "results": res,
           "bgmm_refit_wall_s": refit_wall, "bgmm_refit_cpu_s": refit_cpu,
           "loadavg": os.getloadavg(), "torch": torch.__version__}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "deep_prior_training_cost.json").write_text(json.dumps(out, indent=1))
    lines = ["# Epoch cost of training with an attribution prior (side by side)", "",
             f"Command: `{out['command']}`", "",
             f"Model and step of bench_deep_prior_noise_robustness.py (batch {args.batch}, 1 thread); "
             f"{args.repeats} interleaved rounds of {args.steps} steps per variant; epoch = "
             f"{spe} steps ({args.epoch_images} images), plus the BGMM prior's once-per-epoch refit "
             "on 512 images. Medians over the rounds. The machine was shared with other jobs "
             f"(load average {tuple(round(a, 1) for a in out['loadavg'])}): the CPU-time column is the "
             "one to trust.", "",
             "| prior | epoch CPU s | × plain (CPU) | epoch wall s | × plain (wall) |", "|---|---|---|---|---|"]
    for v, r in res.items():
        lines.append(f"| {v} | {r['epoch_cpu_s']:.1f} | {r['x_plain_cpu']:.2f} | {r['epoch_wall_s']:.1f} | "
                     f"{r['x_plain_wall']:.2f} |")
    (RESULTS / "deep_prior_training_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
