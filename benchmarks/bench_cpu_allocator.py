"""Default glibc malloc vs fixed thresholds (``tune_cpu_allocator``), fresh processes.

Each workload runs in a fresh process (as a user's script would): one warm-up
call, then ``--calls`` timed calls; the process reports the median wall time
and the minor page faults per call. Processes alternate default, tuned,
default, tuned, ... (``--processes`` of each), one thread each.

Usage::

    python benchmarks/bench_cpu_allocator.py [--processes 3] [--calls 5]

Writes ``benchmarks/results/cpu_allocator.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()

CHILD = r"""
import json, resource, statistics, sys, time, torch
sys.path[:0] = [{root!r}, {bench!r}]
torch.set_num_threads(1)
if {tuned}:
    from captum_prior.allocator import tune_cpu_allocator
    assert tune_cpu_allocator()
from torch import nn
from run_all import load_model
from captum_prior.attr import DeepPriorExpectedGradients, ExpectedGradients
from captum_prior.metrics import insertion_deletion
from captum_prior.priors import BGMMPrior
work = {work!r}
name = "cnn64" if work == "insdel_cnn64" else "fashion_cnn"
model, x, refs = load_model(name, torch.device("cpu"))
with torch.no_grad():
    pred = model(x).argmax(1)
sal = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
prob = nn.Sequential(model, nn.Softmax(1)).eval()
prior = BGMMPrior(model, random_state=0)
def call():
    if work == "eg":
        ExpectedGradients(model).attribute(x[:8], refs, target=pred[:8], n_samples=50,
                                           generator=torch.Generator().manual_seed(0))
    elif work == "deep_bgmm_eg_per_image":
        for i in range(8):
            DeepPriorExpectedGradients(model, prior).attribute(
                x[i:i + 1], refs, target=pred[i:i + 1], n_samples=50, generator=torch.Generator().manual_seed(0))
    elif work == "insdel_fashion":
        insertion_deletion(prob, x, sal, target=pred, n_steps=28)
    else:
        insertion_deletion(prob, x[:4], sal[:4], target=pred[:4], n_steps=64)
call()
w, f = [], []
for _ in range({calls}):
    a = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    call()
    w.append(time.perf_counter() - t0)
    f.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - a)
print(json.dumps({{"wall": statistics.median(w), "faults": statistics.median(f)}}))
"""

WORKLOADS = {
    "eg": "ExpectedGradients, fashion_cnn, 8 images x 50 samples, one call",
    "deep_bgmm_eg_per_image": "DeepBGMM-EG, fashion_cnn, 8 images one per call, 50 samples",
    "insdel_fashion": "insertion_deletion, fashion_cnn, 16 images, 28 steps",
    "insdel_cnn64": "insertion_deletion, 64x64 CNN, 4 images, 64 steps",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=3)
    p.add_argument("--calls", type=int, default=5)
    a = p.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env["OMP_NUM_THREADS"] = "1"
    res = {w: {"default": [], "tuned": []} for w in WORKLOADS}
    load = [os.getloadavg()[0]]
    t0 = time.time()
    for r in range(a.processes):
        for w in WORKLOADS:
            for mode in ("default", "tuned"):
                code = CHILD.format(root=str(ROOT), bench=str(HERE), tuned=mode == "tuned", work=w, calls=a.calls)
                out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
                res[w][mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
        load.append(os.getloadavg()[0])
        print(f"round {r + 1}/{a.processes}, load {load[-1]:.1f}", flush=True)
    lines = [
        "# Default glibc malloc vs fixed thresholds (`captum_prior.allocator.tune_cpu_allocator`)",
        "",
        f"Command: `python benchmarks/bench_cpu_allocator.py --processes {a.processes} --calls {a.calls}`  ",
        f"Fresh process per cell, one warm-up call then {a.calls} timed calls (median), 1 thread; processes "
        f"alternate default / tuned; load average {min(load):.1f}-{max(load):.1f} on 2 cores; "
        f"wall {(time.time() - t0) / 60:.1f} min. Tuned: mmap threshold 32 MiB, trim threshold 256 MiB.",
        "",
        "| workload | default s (per process) | tuned s (per process) | tuned / default (median) "
        "| page faults per call, default | tuned |",
        "|---|---|---|---|---|---|",
    ]
    for w, d in res.items():
        dw = [x["wall"] for x in d["default"]]
        tw = [x["wall"] for x in d["tuned"]]
        ratio = statistics.median(t / u for t, u in zip(tw, dw))
        lines.append(
            f"| {WORKLOADS[w]} | {', '.join(f'{v:.3f}' for v in dw)} | {', '.join(f'{v:.3f}' for v in tw)} "
            f"| **{ratio:.2f}** | {', '.join(str(int(x['faults'])) for x in d['default'])} "
            f"| {', '.join(str(int(x['faults'])) for x in d['tuned'])} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cpu_allocator.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "cpu_allocator.json").write_text(json.dumps({"command": sys.argv, "load": load, "results": res}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
