"""Captum's IntegratedGradients through ``captum-prior explain``: the default
chunking against the best explicit ``--internal-batch-size`` (issue 28).

The 20 ImageNet photos bundled with the ``[benchmarks]`` extra, EfficientNet-
Lite0, ``--method integrated-gradients`` with its defaults (50 steps,
convergence delta, batch size 32: all photos in one ``attribute`` call).
Each repeat runs the whole command in-process, once with the defaults (the
runner gives Captum's method the package's chunk, measured from the
model's activations) and once per explicit ``--internal-batch-size`` of
the sweep, interleaved (order rotated). Reported: the median time of each
setting and the ratio defaults / best explicit setting (median over
repeats of the per-repeat ratio to that repeat's fastest explicit
setting; target at most 1.1). Captum treats an ``internal_batch_size``
below the number of examples of the call (20) as 20.

Usage (the lead's timing run; a smoke test: ``--n-images 2 --n-steps 4 --ibs 4,8 --repeats 1``)::

    python benchmarks/bench_cli_explain_ig.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from typing import Any, Dict, List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_bench_common import run_cli, run_header, save_result, uptime  # noqa: E402


def run_explain(data: str, out: str, n_steps: Optional[int], ibs: Optional[int]) -> float:
    argv = ["explain", "--model", "efficientnet-lite0", "--data", data, "--method", "integrated-gradients",
            "--out", out, "--no-progress"]
    if n_steps is not None:
        argv += ["--n-steps", str(n_steps)]
    if ibs is not None:
        argv += ["--internal-batch-size", str(ibs)]
    return run_cli(argv)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-images", type=int, default=20)
    ap.add_argument("--n-steps", type=int, default=None, help="IG steps (default: the CLI's, 50)")
    ap.add_argument("--ibs", default="8,20,40,60,100,200,400",
                    help="explicit --internal-batch-size values to sweep")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from safetensors.torch import save_file

    from captum_prior.models.efficientnet import (
        load_efficientnet_lite0,
        load_imagenet_samples,
    )
    from captum_prior.runner.explain import default_chunk_rows

    tmp = tempfile.mkdtemp(prefix="bench_cli_ig_")
    x, y, _ = load_imagenet_samples()
    data = os.path.join(tmp, "photos.safetensors")
    save_file({"inputs": x[: args.n_images].contiguous(), "labels": y[: args.n_images].contiguous()}, data)
    default_chunk = default_chunk_rows(load_efficientnet_lite0(), x[:1])
    settings: List[Optional[int]] = [None] + [int(v) for v in args.ibs.split(",") if v]
    name = {s: "defaults" if s is None else f"--internal-batch-size {s}" for s in settings}
    run_explain(data, os.path.join(tmp, "warm"), args.n_steps, None)  # warm-up (first-call costs)

    result: Dict[str, Any] = run_header(
        "Captum IntegratedGradients through captum-prior explain: defaults vs explicit "
        "--internal-batch-size, whole command in-process, interleaved"
    )
    result.update({
        "n_images": args.n_images, "n_steps": args.n_steps or 50, "default_chunk_rows": default_chunk,
        "repeats": [],
    })
    for r in range(args.repeats):
        k = r % len(settings)
        order = settings[k:] + settings[:k]
        rec: Dict[str, Any] = {"load_before": os.getloadavg()[0], "seconds": {}}
        for s in order:
            rec["seconds"][name[s]] = run_explain(data, os.path.join(tmp, f"r{r}_{s}"), args.n_steps, s)
        rec["load_after"] = os.getloadavg()[0]
        explicit = {n: v for n, v in rec["seconds"].items() if n != "defaults"}
        rec["best_explicit"] = min(explicit, key=explicit.get)
        rec["ratio"] = rec["seconds"]["defaults"] / explicit[rec["best_explicit"]]
        result["repeats"].append(rec)
        print(rec, flush=True)
    result["median_seconds"] = {
        name[s]: statistics.median(r["seconds"][name[s]] for r in result["repeats"]) for s in settings
    }
    result["median_ratio"] = statistics.median(r["ratio"] for r in result["repeats"])
    result["uptime_after"] = uptime()
    save(result, args.tag)


def save(result: Dict[str, Any], tag: str) -> None:
    lines = [
        f"- {result['n_images']} photos, {result['n_steps']} steps; the default chunk: "
        f"{result['default_chunk_rows']} rows per pass",
        "",
        "| setting | median time (s) |",
        "|---|---|",
    ]
    lines += [f"| {n} | {v:.1f} |" for n, v in result["median_seconds"].items()]
    lines += ["", "| repeat | defaults (s) | best explicit | its time (s) | ratio | load before / after |",
              "|---|---|---|---|---|---|"]
    for i, r in enumerate(result["repeats"]):
        b = r["best_explicit"]
        lines.append(f"| {i} | {r['seconds']['defaults']:.1f} | {b} | {r['seconds'][b]:.1f} | "
                     f"{r['ratio']:.3f} | {r['load_before']:.2f} / {r['load_after']:.2f} |")
    lines += ["", f"Median ratio defaults / best explicit: **{result['median_ratio']:.3f}** (target: at most 1.1)."]
    save_result(result, "cli_explain_ig_chunking", tag,
                "Captum IG through `captum-prior explain`: default chunking vs explicit "
                "`--internal-batch-size`", lines)


if __name__ == "__main__":
    main()
