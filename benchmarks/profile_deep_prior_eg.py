"""torch.profiler profile of DeepBGMM-EG and DeepMGM-EG end to end (issue 16).

Profiles ``DeepPriorExpectedGradients(model, prior).attribute`` with default
arguments (prior included) on the bundled CNN (8 images, one call, and one
image per call) and EfficientNet-Lite0 (1 image), after a warm-up, with the
phases labelled by ``record_function`` (wrapped around the prior's feature
pass, its density fit and its map; the rest is the EG forward/backward
rows).  Writes the top of each table (sorted by self CPU time) and the phase
totals to ``results/deep_prior_eg_profile.md``.

Usage::

    python benchmarks/profile_deep_prior_eg.py [--threads 1] [--no-effnet]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()


def labelled(prior):
    """Wrap the prior's phases in record_function labels (instance attributes only)."""
    for name, label in (("features", "prior: feature pass (+ evidence backward)"),
                        ("_maps", "prior: density fit + map"),
                        ("units", "prior: reference-set std (units)"),
                        ("baseline_range", "prior: reference-set range (clamp)")):
        fn = getattr(prior, name)

        def wrap(*a, _fn=fn, _label=label, **k):
            with record_function(_label):
                return _fn(*a, **k)
        setattr(prior, name, wrap)
    return prior


def run(model_name: str, prior_name: str, per_image: bool, rows: int):
    from run_all import load_model

    from captum_prior.attr import DeepPriorExpectedGradients
    from captum_prior.priors import BGMMPrior, MGMPrior

    model, x, refs = load_model(model_name, torch.device("cpu"))
    x = x[:1] if model_name == "efficientnet_lite0" else x[:8]
    t = model(x).argmax(1)
    prior = labelled(BGMMPrior(model, random_state=0) if prior_name == "DeepBGMM-EG" else MGMPrior(model))
    dp = DeepPriorExpectedGradients(model, prior)

    def call():
        chunks = [(x[i : i + 1], t[i : i + 1]) for i in range(len(x))] if per_image else [(x, t)]
        for xx, tt in chunks:
            with record_function("EG total (prior + rows)"):
                dp.attribute(xx, refs, target=tt, n_samples=50, generator=torch.Generator().manual_seed(0))

    call()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    avg = prof.key_averages()
    total = {e.key: e.cpu_time_total for e in avg}
    eg = total.get("EG total (prior + rows)", 0.0)
    phases = [(k, v) for k, v in total.items() if k.startswith("prior:")]
    rows_us = eg - sum(v for _, v in phases)
    summary = ["| phase | CPU ms | share |", "|---|---|---|"]
    for k, v in phases + [("EG rows (forward/backward chunks, row building, checks)", rows_us)]:
        summary.append(f"| {k} | {v / 1e3:.1f} | {v / max(eg, 1e-9):.1%} |")
    return "\n".join(summary), avg.table(sort_by="self_cpu_time_total", row_limit=rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", type=int, default=22)
    p.add_argument("--no-effnet", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    cases = [("fashion_cnn", "DeepBGMM-EG", False), ("fashion_cnn", "DeepBGMM-EG", True),
             ("fashion_cnn", "DeepMGM-EG", False)]
    if not args.no_effnet:
        cases += [("efficientnet_lite0", "DeepBGMM-EG", False), ("efficientnet_lite0", "DeepMGM-EG", False)]
    lines = ["# DeepPrior-EG end-to-end profile (torch.profiler)", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), default arguments, n_samples=50; "
             f"load average {load0[0]:.1f} at the start on a shared 2-core machine (times inflated by other "
             "jobs and by the profiler's per-op overhead; the shares are what matters). Labelled phases: the "
             "prior's feature pass (+ Grad-CAM evidence backward), density fit + map, reference-set std and "
             "range; the rest of `EG total` is the EG rows (model forward/backward per chunk, building the rows, "
             "the output checks).", ""]
    for model_name, prior_name, per_image in cases:
        summary, table = run(model_name, prior_name, per_image, args.rows)
        how = "one image per call, 8 images" if per_image else (
            "1 image" if model_name == "efficientnet_lite0" else "8 images in one call")
        lines += [f"## {prior_name}, {model_name}, {how}", "", summary, "", "```", table.strip(), "```", ""]
        print("\n".join(lines[-7:]), flush=True)
    lines.append(f"Load average at the end: {os.getloadavg()[0]:.1f}.")
    (RESULTS / "deep_prior_eg_profile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
