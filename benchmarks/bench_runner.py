"""Runner overhead and multi-process throughput (issue 13).

1. Overhead: the bundled CNN over the Fashion-MNIST test images; the same
   method and batch size once as a plain loop (predict the target, call
   ``attribute``, keep the result in memory) and once through
   :func:`captum_prior.runner.attribute_dataset` (targets, per-example seeding
   for stochastic methods, atomic shards with checksums, manifest), in one
   thread, interleaved, repeated; the median ratio is reported. The plain
   loop seeds one generator per batch; the runner seeds every example
   (``example_seed(seed, i)``): ExpectedGradients takes them as a list, one
   call per batch (``randomness="generators"``).
   ``expected-gradients-per-example`` is the runner's previous way, kept for
   comparison: one call per example (``randomness="generator"``).
2. Throughput: wall-clock examples/s of the whole command
   ``torchrun --standalone --nproc_per_node=P -m captum_prior explain ...`` for
   P = 1 and 2 (one thread per process), interleaved, repeated.

The machine may be shared: ``os.getloadavg()`` is recorded around every
measurement.

    nice -n 5 python benchmarks/bench_runner.py --n-images 10000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = str(_provenance.results_dir())
sys.path.insert(0, ROOT)


def _methods(model, refs, n_steps: int, n_samples: int) -> Dict[str, Any]:
    from captum.attr import IntegratedGradients

    from captum_prior.attr import ExpectedGradients

    eg = (ExpectedGradients(model), {"baselines": refs, "n_samples": n_samples})
    return {  # name: (attribution, attribute kwargs, runner randomness)
        "integrated-gradients": (IntegratedGradients(model), {"baselines": 0.0, "n_steps": n_steps}, "auto"),
        "expected-gradients": eg + ("auto",),
        "expected-gradients-per-example": eg + ("generator",),
    }


def plain_loop(attribution, kwargs, model, x, batch: int, seed: int) -> float:
    t0 = time.perf_counter()
    out = []
    for s in range(0, x.shape[0], batch):
        xb = x[s : s + batch]
        with torch.no_grad():
            t = model(xb).argmax(1)
        kw = dict(kwargs)
        if "n_samples" in kw:
            kw["generator"] = torch.Generator().manual_seed(seed + s)
        out.append(attribution.attribute(xb, target=t, **kw).detach())
    return time.perf_counter() - t0


def runner(attribution, kwargs, ds, batch: int, seed: int, randomness: str = "auto") -> float:
    from captum_prior.runner import attribute_dataset

    d = tempfile.mkdtemp(prefix="bench_runner_")
    try:
        t0 = time.perf_counter()
        # no convergence delta: the plain loop does not compute one either (with it,
        # IG and EG run extra forward passes for f(x) and f(baseline))
        attribute_dataset(attribution, ds, os.path.join(d, "out"), kwargs, batch_size=batch,
                          shard_size=256, seed=seed, progress=False, device="cpu",
                          return_convergence_delta=False, randomness=randomness)
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def torchrun(nproc: int, data: str, n: int, method: str, extra: List[str], batch: int) -> Dict[str, Any]:
    d = tempfile.mkdtemp(prefix="bench_runner_tr_")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "captum_prior", "explain", "--model", "fashion-cnn", "--data", data,
           "--limit", str(n), "--method", method, *extra, "--batch-size", str(batch),
           "--device", "cpu", "--no-progress", "--out", os.path.join(d, "out")]
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    try:
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
        m = re.search(r"wrote .* \(([0-9.]+) s\)", r.stdout)
        inner = float(m.group(1)) if m else float("nan")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    shown = ["torchrun"] + cmd[3:-1] + ["DIR"]
    return {"wall_s": wall, "examples_per_s": n / wall, "in_command_s": inner,
            "in_command_examples_per_s": n / inner, "command": " ".join(shlex.quote(c) for c in shown)}


def _load_range(result: Dict[str, Any]) -> str:
    """min–max of the load averages recorded before/after every run."""
    loads = [r[k] for m in result["overhead"].values() for r in m["runs"]
             for k in ("load_before", "load_after")]
    loads += [r[k] for m in result["throughput"].values() for rs in m.values()
              for r in rs["runs"] for k in ("load_before", "load_after")]
    return f"{min(loads):.1f}–{max(loads):.1f}" if loads else "not recorded"


def _cpu(e: Dict[str, Any]) -> str:
    """The median CPU-time ratio (less sensitive than wall time to other jobs
    sharing the cores); absent in results written before it was recorded."""
    r = e.get("median_cpu_ratio")
    return "not recorded" if r is None else f"{r:.3f} ({100 * (r - 1):+.1f} %)"


def save(result: Dict[str, Any], tag: str) -> None:
    """Write the JSON and Markdown results (called after every measurement)."""
    os.makedirs(RESULTS, exist_ok=True)
    stem = os.path.join(RESULTS, f"runner_overhead{tag}")
    with open(stem + ".json", "w") as fh:
        json.dump(result, fh, indent=1)
    lines = [
        "# Runner overhead and throughput (bundled CNN, Fashion-MNIST test)",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Status: {result['status']}.",
        "",
        f"Machine: {result['machine']}; 1-minute load average during the runs "
        f"{_load_range(result)} (per run in the JSON; above ~2 the 2 cores were shared "
        "with other jobs). Plain and runner runs are interleaved and the medians of the "
        "repeats are reported. Wall time is the target's measure; the CPU time of the "
        "(single) thread is shown too, as it varies less when other jobs share the cores.",
        "",
        "## Overhead: runner vs a plain `attribute` loop (same method, batch size, 1 thread)",
        "",
        "| method | plain loop (s) | runner (s) | runner / plain (median of per-repeat ratios) "
        "| same, CPU time of the thread |",
        "|---|---|---|---|---|",
    ]
    for name, e in result["overhead"].items():
        how = f", randomness={e['randomness']!r}" if e.get("randomness", "auto") != "auto" else ""
        lines.append(f"| {name} {e['kwargs']}{how} | {e['median_plain_s']:.1f} | {e['median_runner_s']:.1f} "
                     f"| {e['median_ratio']:.3f} ({100 * (e['median_ratio'] - 1):+.1f} %) "
                     f"| {_cpu(e)} |")
    lines += ["", "## Throughput: whole `torchrun ... explain` command, wall clock incl. start-up", "",
              "examples/s = examples / wall-clock time of the whole command (Python and torch start-up, "
          "rendezvous, loading included); 'in command' excludes the interpreter start-up and imports "
          "(the time the command itself prints).", "",
          "| method | processes | examples/s (median) | in command | command |", "|---|---|---|---|---|"]
    for name, per in result["throughput"].items():
        for p, e in per.items():
            lines.append(f"| {name} | {p} | {e['median_examples_per_s']:.1f} | "
                     f"{e['median_in_command_examples_per_s']:.1f} | `{e['command']}` |")
    with open(stem + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-images", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n-steps", type=int, default=16)
    ap.add_argument("--n-samples", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default="integrated-gradients,expected-gradients")
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--throughput-methods", default=None,
                    help="methods for the torchrun part (default: --methods)")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from captum_prior.data import load_fashion_mnist
    from captum_prior.models import load_fashion_cnn

    model = load_fashion_cnn()
    x, y = load_fashion_mnist("test")
    x, y = x[: args.n_images], y[: args.n_images]
    ds = torch.utils.data.TensorDataset(x, y)
    refs = load_fashion_mnist("train")[0][:100]
    result: Dict[str, Any] = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "n_images": args.n_images, "batch_size": args.batch_size,
        "overhead": {}, "throughput": {},
        "status": "partial: written after every measurement, the run had not finished",
    }
    methods = [m for m in args.methods.split(",") if m]
    if not args.skip_overhead:
        all_m = _methods(model, refs, args.n_steps, args.n_samples)
        for name in methods:
            attribution, kw, randomness = all_m[name]
            rows: List[Dict[str, float]] = []
            for r in range(args.repeats):
                order = ("plain", "runner") if r % 2 == 0 else ("runner", "plain")
                rec: Dict[str, float] = {"load_before": os.getloadavg()[0]}
                for which in order:
                    c0 = time.thread_time()
                    if which == "plain":
                        rec["plain_s"] = plain_loop(attribution, kw, model, x, args.batch_size, 0)
                    else:
                        rec["runner_s"] = runner(attribution, kw, ds, args.batch_size, 0, randomness)
                    rec[f"{which}_cpu_s"] = time.thread_time() - c0
                rec["load_after"] = os.getloadavg()[0]
                rec["ratio"] = rec["runner_s"] / rec["plain_s"]
                rec["cpu_ratio"] = rec["runner_cpu_s"] / rec["plain_cpu_s"]
                rows.append(rec)
                print(name, rec, flush=True)
                result["overhead"][name] = {
                    "kwargs": {k: (v if not torch.is_tensor(v) else f"tensor{tuple(v.shape)}") for k, v in kw.items()},
                    "randomness": randomness,
                    "runs": rows,
                    "median_ratio": statistics.median(r["ratio"] for r in rows),
                    "median_plain_s": statistics.median(r["plain_s"] for r in rows),
                    "median_runner_s": statistics.median(r["runner_s"] for r in rows),
                    "median_cpu_ratio": statistics.median(r["cpu_ratio"] for r in rows),
                }
                save(result, args.tag)
    # torchrun throughput: data file so every rank reads the same tensors
    tmp = tempfile.mkdtemp(prefix="bench_runner_data_")
    from safetensors.torch import save_file

    data = os.path.join(tmp, "fashion_test.safetensors")
    save_file({"inputs": x.contiguous(), "labels": y.contiguous()}, data)
    procs = [int(p) for p in args.procs.split(",") if p]
    extra = {"integrated-gradients": ["--n-steps", str(args.n_steps)],
             "expected-gradients": ["--n-samples", str(args.n_samples)]}
    tmethods = methods if args.throughput_methods is None else [
        m for m in args.throughput_methods.split(",") if m]
    # the CLI has no per-example variant (its EG always takes per-example generators)
    tmethods = [m for m in tmethods if m in extra]
    for name in tmethods if procs else []:
        runs: Dict[int, List[Dict[str, Any]]] = {p: [] for p in procs}
        for r in range(args.repeats):
            for p in procs if r % 2 == 0 else procs[::-1]:
                load = os.getloadavg()[0]
                rec = torchrun(p, data, args.n_images, name, extra[name], args.batch_size)
                rec.update(load_before=load, load_after=os.getloadavg()[0])
                runs[p].append(rec)
                print(name, p, {k: v for k, v in rec.items() if k != "command"}, flush=True)
                result["throughput"][name] = {
                    str(q): {"command": rs[0]["command"], "runs": rs,
                             "median_examples_per_s": statistics.median(x["examples_per_s"] for x in rs),
                             "median_in_command_examples_per_s": statistics.median(
                                 x["in_command_examples_per_s"] for x in rs)}
                    for q, rs in runs.items() if rs
                }
                save(result, args.tag)
    shutil.rmtree(tmp, ignore_errors=True)
    result["status"] = "finished"
    save(result, args.tag)


if __name__ == "__main__":
    main()
