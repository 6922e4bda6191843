"""Cost of calling ExpectedGradients once per example vs once per batch, both
seeded per example as the runner seeds them (``example_seed``-style: one
``torch.Generator`` per example).

- *per example*: one call per example with its own generator: the runner's
  way before per-example generators existed, and still its way for
  DeepPrior-EG and ValidPathGradients;
- *batched*: one call per batch of ``--batch-size`` with the list of the
  batch's generators (``generator=[g_0, ...]``): the runner's way for
  ExpectedGradients now (``randomness="generators"``).

Bundled CNN, Fashion-MNIST test images, one thread, the variants interleaved
and repeated; wall and thread CPU time, load averages recorded (the machine
may be shared).

    nice -n 5 python benchmarks/bench_runner_per_example.py --n-images 128 --repeats 3 --n-samples 4,16,50
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _timed(f: Callable[[], None]) -> Dict[str, float]:
    w0, c0 = time.perf_counter(), time.thread_time()
    f()
    return {"wall_s": time.perf_counter() - w0, "cpu_s": time.thread_time() - c0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-images", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n-samples", default="4,16,50")
    ap.add_argument("--internal-batch-size", type=int, default=None,
                    help="rows per forward/backward pass of the batched calls (default: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tag", default="", help="suffix of the result files")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from captum_prior.attr import ExpectedGradients
    from captum_prior.data import load_fashion_mnist
    from captum_prior.models import load_fashion_cnn
    from captum_prior.runner import example_seed

    model = load_fashion_cnn()
    x = load_fashion_mnist("test")[0][: args.n_images]
    refs = load_fashion_mnist("train")[0][:100]
    with torch.no_grad():
        t = model(x).argmax(1)
    eg = ExpectedGradients(model)
    ibs: Optional[int] = args.internal_batch_size

    def gen(i: int) -> torch.Generator:
        return torch.Generator().manual_seed(example_seed(0, i))

    def batched(k: int) -> None:
        for s in range(0, len(x), args.batch_size):
            rows = range(s, min(s + args.batch_size, len(x)))
            eg.attribute(x[s : s + args.batch_size], refs, target=t[s : s + args.batch_size],
                         n_samples=k, internal_batch_size=ibs, generator=[gen(i) for i in rows])

    def per_example(k: int) -> None:
        for i in range(len(x)):
            eg.attribute(x[i : i + 1], refs, target=t[i : i + 1], n_samples=k, generator=gen(i))

    out: Dict[str, object] = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
                              "rows": {}}
    rows_out: Dict[int, Dict[str, object]] = {}
    for k in [int(v) for v in args.n_samples.split(",")]:
        runs: List[Dict[str, float]] = []
        for r in range(args.repeats):
            rec: Dict[str, float] = {"load_before": os.getloadavg()[0]}
            for name, f in (("batched", batched), ("per_example", per_example))[:: 1 if r % 2 == 0 else -1]:
                tm = _timed(lambda f=f, k=k: f(k))
                rec[name] = tm["wall_s"]
                rec[name + "_cpu"] = tm["cpu_s"]
            rec["load_after"] = os.getloadavg()[0]
            rec["ratio"] = rec["per_example"] / rec["batched"]
            rec["cpu_ratio"] = rec["per_example_cpu"] / rec["batched_cpu"]
            runs.append(rec)
            print(k, rec, flush=True)
        rows_out[k] = {"runs": runs, "median_ratio": statistics.median(r["ratio"] for r in runs),
                       "median_cpu_ratio": statistics.median(r["cpu_ratio"] for r in runs)}
    out["rows"] = rows_out
    loads = [r[key] for e in rows_out.values() for r in e["runs"]  # type: ignore[union-attr]
             for key in ("load_before", "load_after")]
    res = os.path.join(str(_provenance.results_dir()), "runner_per_example" + args.tag)
    with open(res + ".json", "w") as fh:
        json.dump(out, fh, indent=1)
    lines = [
        f"# ExpectedGradients: one call per example vs one per batch of {args.batch_size}, "
        f"both with one generator per example ({args.n_images} Fashion-MNIST test images, "
        "bundled CNN, 1 thread)", "",
        f"Command: `{out['command']}`.", "",
        "*Per example*: one call per example with its own generator (the runner's way before "
        "per-example generators, still its way for DeepPrior-EG and ValidPathGradients). "
        "*Batched*: one call per batch with the list of the batch's generators "
        "(`generator=[...]`, the runner's way for ExpectedGradients now, `randomness=\"generators\"`), "
        "internal_batch_size " + (str(ibs) if ibs else "None (all rows of a batch in one pass)") + ". "
        "Both give every example the same draws.", "",
        f"1-minute load average during the runs {min(loads):.1f}–{max(loads):.1f} (2 cores; above ~2 "
        "other jobs shared them, and wall times then vary a lot; the CPU time of the single thread "
        "varies less). The variants are interleaved; medians of the per-repeat ratios.", "",
        "| n_samples | batched (s, median) | per example (s, median) | per example / batched (wall) "
        "| per example / batched (CPU) |",
        "|---|---|---|---|---|",
    ]
    for k, e in rows_out.items():
        rs = e["runs"]
        lines.append(f"| {k} | {statistics.median(r['batched'] for r in rs):.2f} | "  # type: ignore[union-attr]
                     f"{statistics.median(r['per_example'] for r in rs):.2f} | "  # type: ignore[union-attr]
                     f"{e['median_ratio']:.3f} | {e['median_cpu_ratio']:.3f} |")
    with open(res + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
