"""``captum-prior evaluate`` against the bare forward passes its curves need (issue 28).

The 20 ImageNet photos bundled with the ``[benchmarks]`` extra, EfficientNet-
Lite0, three attribution runs (Saliency, Integrated Gradients, Expected
Gradients; computed once, not timed). Each repeat times, in this one process
and interleaved (order alternating):

- **evaluate**: the whole command ``captum-prior evaluate --attributions A B C
  --metric deletion,insertion --out NEW`` run in-process (model loading, data
  loading, perturbed rows, metric shards, summaries, comparison and
  report.html included);
- **floor**: the same number of forward passes
  (``3 runs x 20 photos x (2 * steps + 1)``, the count evaluate prints) of the
  bare model under ``torch.no_grad`` on ready-made batches of photos, at the
  best rows-per-call found in a warm-up among 1, 2, 4, 8, 16 and the chunk
  the metric chose.

The ratio evaluate / floor is reported per repeat and as the median (target
at most 1.3). The load average is recorded around every measurement; take
the timing on a quiet machine.

Usage (the lead's timing run; a smoke test: ``--n-images 2 --steps 3 --repeats 1``)::

    python benchmarks/bench_cli_evaluate.py --repeats 3

With evaluate's default curves (224 steps: 449 forward passes per photo and
run, 26,940 in all) one repeat is two passes over 26,940 EfficientNet rows:
about 10-20 minutes on 2 quiet cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_bench_common import run_cli, run_header, save_result, uptime  # noqa: E402


def prepare(tmp: str, n_images: int) -> Dict[str, Any]:
    """The photos as a .safetensors file and three finished attribution runs."""
    from safetensors.torch import save_file

    from captum_prior.models.efficientnet import load_imagenet_samples

    x, y, _ = load_imagenet_samples()
    data = os.path.join(tmp, "photos.safetensors")
    save_file({"inputs": x[:n_images].contiguous(), "labels": y[:n_images].contiguous()}, data)
    runs = []
    for method, extra in (("saliency", []), ("integrated-gradients", ["--n-steps", "16"]),
                          ("expected-gradients", ["--n-samples", "16"])):
        out = os.path.join(tmp, method)
        run_cli(["explain", "--model", "efficientnet-lite0", "--data", data, "--method", method,
                     "--out", out, "--no-progress"] + extra)
        runs.append(out)
    return {"data": data, "runs": runs, "photos": x[:n_images]}


def time_evaluate(runs: List[str], out: str, steps: int | None, progress: bool) -> float:
    argv = ["evaluate", "--attributions", *runs, "--metric", "deletion,insertion", "--out", out]
    if steps is not None:
        argv += ["--steps", str(steps)]
    if not progress:
        argv.append("--no-progress")
    return run_cli(argv)


def time_floor(model: Any, photos: torch.Tensor, n_rows: int, chunk: int) -> float:
    batch = photos[torch.arange(chunk) % photos.shape[0]].contiguous()
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in range(0, n_rows, chunk):
            model(batch[: min(chunk, n_rows - s)])
    return time.perf_counter() - t0


def best_chunk(model: Any, photos: torch.Tensor, candidates: List[int], rows: int = 48) -> Dict[int, float]:
    """Seconds per row of the bare model at each rows-per-call (after a warm-up call)."""
    per_row = {}
    for c in candidates:
        time_floor(model, photos, c, c)
        per_row[c] = time_floor(model, photos, rows, c) / rows
    return per_row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-images", type=int, default=20, help="photos (default 20: all)")
    ap.add_argument("--steps", type=int, default=None,
                    help="evaluate --steps (default: evaluate's default, one image row per step)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--no-progress", action="store_true", help="time evaluate without its progress bars")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from captum_prior.models.efficientnet import load_efficientnet_lite0
    from captum_prior.runner.evaluate import forward_passes_per_example
    from captum_prior.runner.explain import default_chunk_rows

    tmp = tempfile.mkdtemp(prefix="bench_cli_evaluate_")
    prep = prepare(tmp, args.n_images)
    kw = {} if args.steps is None else {"insertion_deletion": {"n_steps": args.steps}}
    per_ex, _ = forward_passes_per_example("deletion,insertion", prep["photos"].shape[1:], kw)
    n_rows = len(prep["runs"]) * args.n_images * per_ex
    model = load_efficientnet_lite0()

    # warm-up evaluate (one step per curve: first-call costs, imports), then the
    # chunk the metrics choose (the package's default for this model and row)
    time_evaluate(prep["runs"], os.path.join(tmp, "ev_warm"), 1, not args.no_progress)
    metric_chunk = default_chunk_rows(model, prep["photos"][:1])
    per_row = best_chunk(model, prep["photos"], sorted({1, 2, 4, 8, 16, metric_chunk}))
    chunk = min(per_row, key=per_row.get)

    result: Dict[str, Any] = run_header(
        "captum-prior evaluate (3 runs, deletion+insertion) vs the bare batched forward passes "
        "of its curves, one process, interleaved"
    )
    result.update({
        "n_images": args.n_images, "runs": 3, "forward_passes_per_example": per_ex,
        "forward_passes": n_rows, "metric_chunk": metric_chunk,
        "floor_seconds_per_row": {str(k): v for k, v in per_row.items()}, "floor_chunk": chunk,
        "repeats": [],
    })
    for r in range(args.repeats):
        rec: Dict[str, float] = {"load_before": os.getloadavg()[0]}
        for which in (("evaluate", "floor") if r % 2 == 0 else ("floor", "evaluate")):
            if which == "evaluate":
                rec["evaluate_s"] = time_evaluate(prep["runs"], os.path.join(tmp, f"ev{r}"), args.steps,
                                                  not args.no_progress)
            else:
                rec["floor_s"] = time_floor(model, prep["photos"], n_rows, chunk)
        rec["load_after"] = os.getloadavg()[0]
        rec["ratio"] = rec["evaluate_s"] / rec["floor_s"]
        result["repeats"].append(rec)
        print(rec, flush=True)
    result["median_ratio"] = statistics.median(r["ratio"] for r in result["repeats"])
    result["median_evaluate_s"] = statistics.median(r["evaluate_s"] for r in result["repeats"])
    result["median_floor_s"] = statistics.median(r["floor_s"] for r in result["repeats"])
    result["uptime_after"] = uptime()
    save(result, args.tag)


def save(result: Dict[str, Any], tag: str) -> None:
    lines = [
        f"- {result['runs']} runs x {result['n_images']} photos x {result['forward_passes_per_example']} "
        f"forward passes = {result['forward_passes']}; the metric's chunk {result['metric_chunk']} rows, "
        f"the floor's (fastest bare rows per call) {result['floor_chunk']}",
        "",
        "| repeat | evaluate (s) | floor (s) | ratio | load before / after |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(result["repeats"]):
        lines.append(f"| {i} | {r['evaluate_s']:.1f} | {r['floor_s']:.1f} | {r['ratio']:.3f} | "
                     f"{r['load_before']:.2f} / {r['load_after']:.2f} |")
    lines += ["", f"Median ratio: **{result['median_ratio']:.3f}** (target: at most 1.3)."]
    save_result(result, "cli_evaluate_speed", tag,
                "`captum-prior evaluate` vs the bare forward passes of its curves", lines)


if __name__ == "__main__":
    main()
