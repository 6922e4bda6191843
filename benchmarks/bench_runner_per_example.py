"""Cost of per-example seeding: ExpectedGradients called once per example (one
generator each, as the runner does) vs once per batch of 64 (one generator),
on the bundled CNN, for several ``n_samples``; one thread, interleaved,
repeated; the machine may be shared (load averages recorded).

    nice -n 5 python benchmarks/bench_runner_per_example.py --n-images 256 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n-samples", default="4,8,16,50")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from captum_prior.attr import ExpectedGradients
    from captum_prior.data import load_fashion_mnist
    from captum_prior.models import load_fashion_cnn

    model = load_fashion_cnn()
    x = load_fashion_mnist("test")[0][: args.n_images]
    refs = load_fashion_mnist("train")[0][:100]
    with torch.no_grad():
        t = model(x).argmax(1)
    eg = ExpectedGradients(model)

    def batched(k: int) -> float:
        t0 = time.perf_counter()
        for s in range(0, len(x), args.batch_size):
            eg.attribute(x[s : s + args.batch_size], refs, target=t[s : s + args.batch_size],
                         n_samples=k, generator=torch.Generator().manual_seed(s))
        return time.perf_counter() - t0

    def per_example(k: int) -> float:
        t0 = time.perf_counter()
        for i in range(len(x)):
            eg.attribute(x[i : i + 1], refs, target=t[i : i + 1], n_samples=k,
                         generator=torch.Generator().manual_seed(i))
        return time.perf_counter() - t0

    out = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
           "note": "machine shared with other jobs", "rows": {}}
    for k in [int(v) for v in args.n_samples.split(",")]:
        runs = []
        for r in range(args.repeats):
            rec = {"load": os.getloadavg()[0]}
            for f in ((batched, per_example) if r % 2 == 0 else (per_example, batched)):
                rec[f.__name__] = f(k)
            rec["ratio"] = rec["per_example"] / rec["batched"]
            runs.append(rec)
            print(k, rec, flush=True)
        out["rows"][k] = {"runs": runs, "median_ratio": statistics.median(r["ratio"] for r in runs)}
    res = os.path.join(ROOT, "benchmarks", "results", "runner_per_example")
    with open(res + ".json", "w") as fh:
        json.dump(out, fh, indent=1)
    lines = ["# ExpectedGradients: one call per example vs one per batch of "
             f"{args.batch_size} ({args.n_images} Fashion-MNIST test images, bundled CNN, 1 thread)", "",
             f"Command: `{out['command']}`. The machine was shared with other jobs (load averages in the JSON); "
             "the two variants are interleaved and the median of the per-repeat ratios is reported.", "",
             "| n_samples | batched (s, median) | per example (s, median) | per example / batched |", "|---|---|---|---|"]
    for k, e in out["rows"].items():
        lines.append(f"| {k} | {statistics.median(r['batched'] for r in e['runs']):.2f} | "
                     f"{statistics.median(r['per_example'] for r in e['runs']):.2f} | {e['median_ratio']:.3f} |")
    with open(res + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
