"""``python -m benchmarks SUITE [--quick]``: rerun the package's measurements.

Suites (see ``benchmarks/README.md`` for the full map of scripts and files):

- ``quality``: every paper-layout table the documentation quotes, one script
  after the other, each in its own process;
- ``speed``: the speed benchmarks (ours against the named peer and the bare
  passes, side by side in one run);
- ``all``: ``speed`` then ``quality``;
- ``tutorials``: every tutorial notebook in full mode, wall time and peak
  memory per notebook (``bench_tutorials.py``; its own options follow).

With no suite, ``python -m benchmarks [--only TEXT] [--repeats N] [--full]``
runs ``run_all.py`` alone: every speed row in one table
(``benchmarks/results/summary.md``), quick mode unless ``--full``.

``--quick`` runs each table at a small size and writes to
``benchmarks/results/quick/`` (not committed); without it the committed
files in ``benchmarks/results/`` are rewritten at the documented sizes.  Each
run writes ``run_<suite>[_quick].md`` in the output folder: per script its
command, exit status, wall and CPU seconds and the load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
QUICK_DIR = HERE / "results" / "quick"


@dataclass
class Bench:
    """One script of a suite: how to run it at full and quick size, what it writes."""

    script: str
    shows: str
    full: List[str]
    quick: Optional[List[str]]  # None: not run with --quick
    writes: List[str] = field(default_factory=list)
    then_full: Optional[List[str]] = None  # a second invocation (e.g. --merge)
    then_quick: Optional[List[str]] = None


# the current methods of the EfficientNet table; the rows of the previous prior
# defaults ("old defaults") are left to the full run
_PATH_FAMILY = "ig,ig_gauss,ig_mean,agi,eg,blur_ig,guided_ig,vpg,ig_idgi,blur_ig_idgi,guided_ig_idgi,vpg_idgi"
_QUICK_EFFNET_METHODS = "IG,DeepLift,EG,DeepMGM-EG,DeepBGMM-EG,ValidPathGradients,Lime,BayLime,Grad-CAM"

QUALITY: List[Bench] = [
    Bench("bench_deep_prior_eg_quality.py",
          "DeepPrior-EG Table 1 (KPM..RAM) and Table 4 (insertion/deletion) layouts on the FashionCNN; "
          "picks BGMMPrior's reduction",
          ["--model", "fashion_cnn", "--n-images", "40", "--batch", "20", "--percent", "0.02"],
          ["--n-images", "4", "--n-samples", "8", "--percent", "0.1", "--n-steps", "7", "--threads", "2"],
          ["deep_prior_eg_quality_fashion_cnn.{md,json}"]),
    Bench("bench_metrics_tables.py",
          "Tables 1, 2, 4 layout for every method (IG, DeepLift, EG, DeepMGM-EG, DeepBGMM-EG, VPG, Lime, "
          "BayLime, Grad-CAM) on EfficientNet-Lite0",
          ["--model", "efficientnet_lite0", "--masker", "mean"],
          ["--model", "efficientnet_lite0", "--masker", "mean", "--n-images", "2", "--n-samples", "4",
           "--lime-samples", "16", "--batch", "2", "--n-steps", "8", "--percent", "0.25",
           "--methods", _QUICK_EFFNET_METHODS],
          ["metrics_tables_efficientnet_lite0.{md,json}", "metrics_tables_efficientnet_lite0_<method>.json"],
          then_full=["--model", "efficientnet_lite0", "--masker", "mean", "--merge"],
          then_quick=["--model", "efficientnet_lite0", "--masker", "mean", "--merge", "--n-images", "2",
                      "--n-samples", "4", "--lime-samples", "16", "--batch", "2", "--n-steps", "8",
                      "--percent", "0.25"]),
    Bench("bench_metrics_tables.py",
          "the same table on the bundled FashionCNN",
          ["--model", "fashion_cnn"], ["--quick"],
          ["metrics_tables_fashion_cnn.{md,json}", "metrics_tables_fashion_cnn_<method>.json"],
          then_full=["--model", "fashion_cnn", "--merge"], then_quick=["--quick", "--merge"]),
    Bench("bench_keep_remove_maskers.py",
          "KPM..RAM with the papers' Telea inpainting beside the mean masker",
          ["--model", "efficientnet_lite0", "--methods", "Grad-CAM,IG,EG", "--n-images", "6",
           "--n-samples", "16", "--threads", "1"], ["--quick"],
          ["keep_remove_maskers_efficientnet_lite0.{md,json}"]),
    Bench("bench_deep_prior_orientation.py",
          "is the prior map higher on the garment than on the background (the orientation default)",
          ["--n-images", "1000"], ["--n-images", "40"],
          ["deep_prior_orientation.{md,json}"]),
    Bench("bench_deep_prior_scale_sweep.py",
          "decision record: DeepPrior-EG's default scale (insertion - deletion vs scale)",
          [], ["--quick", "--datasets", "fashion_cnn"],
          ["deep_prior_scale_sweep.{md,json}", "deep_prior_scale_sweep_<dataset>.json"],
          then_quick=["--quick", "--datasets", "fashion_cnn", "--merge"]),
    Bench("bench_deep_prior_noise_robustness.py",
          "DeepPrior-EG section 4.3.2 (Fig. 6): training with attribution priors, accuracy under noise",
          ["--n-train", "2000", "--epochs", "2", "--seeds", "0,1,2", "--n-test", "2000"],
          ["--n-train", "300", "--epochs", "1", "--seeds", "0", "--n-test", "300"],
          ["deep_prior_noise_robustness.{md,json,png}"]),
    Bench("bench_dmm_men_table1.py",
          "DMM-MEN Table 1 layout (p(true class) after keeping the top segments) vs Lime, BayLIME, KernelShap",
          ["--quick", "--n-jobs", "1"], ["--n-images", "3", "--n-iter", "60", "--n-samples", "200", "--n-jobs", "1"],
          ["dmm_men_table1.{md,json}"]),
    Bench("bench_dmm_men_global.py",
          "DMM-MEN global insights (paper 4.1): fit, R-hat/ESS, Fig. 1 maps, Fig. 2 fidelity curves",
          ["--variants", "abs:all,positive:all,abs:candidates,positive:candidates"],
          ["--n-iter", "40", "--n-chains", "2", "--n-jobs", "1", "--repeats", "3", "--n-fidelity", "200",
           "--n-synthetic", "20", "--variants", "abs:all"],
          ["dmm_men_global_class1.{md,json}", "dmm_men_fig2_class1_*.png", "dmm_men_insights_class1.png"]),
    Bench("bench_jgmm_proxy.py",
          "JGMM paper Table 1: proxy-model faithfulness on Fashion-MNIST",
          [], ["--n-train", "1000", "--n-test", "300", "--kx-spatial", "8", "--kx-flat", "8", "--gp-n", "100",
               "--max-iter", "15", "--large-width", "16", "--large-epochs", "1", "--large-train-n", "1000"],
          ["jgmm_proxy_table1.{md,json}"]),
    Bench("bench_jgmm_counterfactuals.py",
          "JGMM paper Table 2: counterfactual validity and proximity",
          [], ["--quick"], ["jgmm_counterfactuals_table2.{md,json,log}"]),
    Bench("bench_valid_path_gradients.py",
          "ValidPathGradients vs IG and EG: insertion - deletion AUC (Akhtar & Jalwana Tables 1, 3, 4), CNN",
          ["--model", "cnn"], ["--model", "cnn", "--quick"], ["valid_path_gradients_cnn.{md,json}"]),
    Bench("bench_valid_path_gradients.py",
          "the same on EfficientNet-Lite0 and the 20 bundled photos (its --quick size alone took "
          "over 500 CPU s, so the quick suite leaves it out)",
          ["--model", "effnet"], None, ["valid_path_gradients_effnet.{md,json}"]),
    Bench("bench_vpg_error_vs_steps.py",
          "decision record: ValidPathGradients' quadrature and n_steps (error vs a 4096-step reference)",
          ["--model", "cnn", "--n-images", "8"],
          ["--model", "cnn", "--n-images", "2", "--steps", "8", "16", "--ref-steps", "128"],
          ["vpg_error_vs_steps_cnn.{md,json,png}"]),
    Bench("sweep_optimized_baseline.py",
          "decision record: OptimizedBaseline's sigma, eta, eps, delta and iteration budget",
          ["--model", "cnn", "--n-images", "200"], ["--model", "cnn", "--quick"],
          ["optimized_baseline_sweep_cnn.{md,json}"]),
    Bench("bench_valid_path_gradients.py",
          "the path family in the layout of Akhtar & Jalwana's Table 1 (IG, IG (G), IG (A), AGI, EG, "
          "Blur IG, Guided IG, ValidPathGradients, each one-path method + IDGI), CNN",
          ["--model", "cnn", "--n-images", "60", "--group", "20", "--threads", "1", "--methods", _PATH_FAMILY,
           "--out", "benchmarks/results/path_family_table1_cnn"], None,
          ["path_family_table1_cnn.{md,json}"]),
    Bench("bench_valid_path_gradients.py",
          "the same on EfficientNet-Lite0 (resumable: --offset and --merge; about 8 CPU-min per photo)",
          ["--model", "effnet", "--group", "1", "--threads", "1", "--methods", _PATH_FAMILY,
           "--out", "benchmarks/results/path_family_table1_effnet"], None,
          ["path_family_table1_effnet.{md,json}"]),
    Bench("bench_evaluation_tables.py",
          "every method under insertion/deletion, ROAD, KPM..RAM and MPRT with CIs, metric agreement, CNN, "
          "1,000 test images without DMM-MEN (about 30 CPU-min; resumable)",
          ["--model", "fashion-cnn", "--n", "1000", "--skip", "dmm-men"], None,
          ["evaluation_table_fashion_cnn.{md,json}"]),
    Bench("bench_evaluation_tables.py",
          "the same with DMM-MEN on the first 100 images (DMM-MEN costs about 10 CPU-s per image)",
          ["--model", "fashion-cnn", "--n", "100", "--suffix", "_with_dmm_men"], None,
          ["evaluation_table_fashion_cnn_with_dmm_men.{md,json}"]),
    Bench("bench_evaluation_tables.py",
          "the same on EfficientNet-Lite0 and the bundled photos",
          ["--model", "efficientnet-lite0"], None,
          ["evaluation_table_efficientnet_lite0.{md,json}"]),
    Bench("bench_mprt.py",
          "MPRT cost per method, as a multiple of one attribution call per randomised layer",
          ["--n", "64", "--repeats", "2"], ["--quick"], ["mprt_fashion_cnn.{md,json}"]),
]

SPEED: List[Bench] = [
    Bench("run_all.py",
          "every speed row in one table: ours / peer / floor, ratios, peak memory",
          [], ["--repeats", "2"], ["summary.{md,json}"]),
    Bench("bench_deep_prior_eg_speed.py",
          "ExpectedGradients / DeepPrior-EG time and memory vs Captum GradientShap",
          [], None, ["deep_prior_eg_speed.{md,json}"]),
    Bench("bench_deep_prior_training_cost.py",
          "one training epoch with an attribution prior vs a plain epoch and the EG-prior floor",
          ["--repeats", "7", "--steps", "10"], None, ["deep_prior_training_cost.{md,json}"]),
    Bench("bench_insertion_deletion_speed.py",
          "insertion_deletion vs RISE's per-step loop and the bare forwards",
          [], None, ["insertion_deletion_speed_efficientnet_lite0.{md,json}"]),
    Bench("bench_jgmm_speed.py",
          "JGMM fit vs scikit-learn's GaussianMixture(covariance_type='diag')",
          ["--iters", "30", "--repeats", "3"], None, ["jgmm_speed.json"]),
    Bench("bench_runner.py",
          "runner overhead vs a plain attribute loop, and torchrun throughput",
          ["--n-images", "10000", "--methods", "integrated-gradients,expected-gradients", "--n-steps", "4",
           "--n-samples", "8", "--repeats", "3", "--procs", "", "--tag", "_10k_quiet"], None, ["runner_overhead_10k_quiet.{md,json}"]),
    Bench("bench_validation_overhead.py",
          "time inside the input/output checks of an ExpectedGradients call (budget 2 %)",
          ["--rounds", "25", "--n-images", "4"], None, ["validation_overhead.{md,json}"]),
    Bench("bench_path_family_speed.py",
          "Blur/Guided IG, AGI, IDGI per image at equal gradient evaluations",
          ["--model", "cnn", "--n-images", "5", "--repeats", "3"], None, ["path_family_speed_cnn.{md,json}"]),
    Bench("bench_cli_evaluate.py",
          "captum-prior evaluate vs the bare forward passes of its curves",
          ["--steps", "20", "--repeats", "2"], None, ["cli_evaluate_speed.{md,json}"]),
    Bench("bench_cli_explain_ig.py",
          "captum-prior explain (Captum IG): default chunking vs the best explicit batch size",
          ["--n-images", "4", "--ibs", "16,64,256", "--repeats", "1"], None,
          ["cli_explain_ig_chunking.{md,json}"]),
]

SUITES = {"quality": QUALITY, "speed": SPEED}


def _map_text() -> str:
    lines = []
    for name, benches in SUITES.items():
        lines.append(f"{name}:")
        for b in benches:
            lines.append(f"  {b.script} -> {', '.join(b.writes)}")
            lines.append(f"      {b.shows}" + ("" if b.quick is not None else " [full run only]"))
    lines.append("tutorials:")
    lines.append("  bench_tutorials.py -> tutorials_full_mode.{md,json}")
    return "\n".join(lines)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_suite(names: List[str], quick: bool, dry_run: bool = False, select: str = "") -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    out_dir = QUICK_DIR if quick else HERE / "results"
    if quick:
        env["CAPTUM_PRIOR_BENCH_RESULTS"] = str(QUICK_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, failed = [], 0
    t_all, c_all, load0 = time.perf_counter(), _children_cpu(), os.getloadavg()
    for suite in names:
        for b in SUITES[suite]:
            steps = [b.quick, b.then_quick] if quick else [b.full, b.then_full]
            if steps[0] is None or (select and not any(t in b.script for t in select.split(","))):
                continue
            for args in filter(lambda a: a is not None, steps):
                cmd = [sys.executable, str(HERE / b.script), *args]
                shown = "python " + " ".join(shlex.quote(c) for c in [f"benchmarks/{b.script}", *args])
                print(f"\n=== [{suite}] {shown}", flush=True)
                if dry_run:
                    continue
                l0, t0, c0 = os.getloadavg()[0], time.perf_counter(), _children_cpu()
                rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
                wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
                failed += rc != 0
                rows.append((suite, shown, rc, wall, cpu, l0, os.getloadavg()[0]))
                print(f"=== rc {rc}, {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
    if dry_run:
        return 0
    wall, cpu = time.perf_counter() - t_all, _children_cpu() - c_all
    sys.path.insert(0, str(HERE))
    import _provenance

    tag = "_".join(names) + ("_quick" if quick else "")
    md = [f"# `python -m benchmarks {' '.join(names)}{' --quick' if quick else ''}`: what ran, and its cost", "",
          "| suite | command | exit | wall s | CPU s (children) | load average start -> end |",
          "|---|---|---|---|---|---|"]
    md += [f"| {s} | `{c}` | {rc} | {w:.0f} | {cp:.0f} | {a:.1f} -> {b_:.1f} |" for s, c, rc, w, cp, a, b_ in rows]
    md += ["", f"Total: {wall:.0f} s wall, {cpu:.0f} s CPU over {len(rows)} commands, {failed} failed; "
           f"the CPU time divided by 2 is the wall time the run would take on 2 free cores if every "
           f"script kept both busy (most use one thread, so expect up to the CPU time)."]
    path = out_dir / f"run_{tag}.md"
    path.write_text("\n".join(md) + "\n")
    _provenance.stamp(path, _provenance.record(
        "python -m benchmarks " + " ".join(sys.argv[1:]), [round(v, 2) for v in load0]))
    print("\n".join(md))
    print(f"\nwritten: {path}")
    return 1 if failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["tutorials"]:
        from benchmarks.bench_tutorials import main as tutorials_main

        tutorials_main(argv[1:])
        return 0
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--quick", "--dry-run")):
        # no suite: the one-table speed summary in quick mode, run_all.py's own options
        # (``python -m benchmarks --only TEXT``, as bench_versions_side_by_side.py runs it)
        from benchmarks.run_all import main as run_all_main

        sys.argv = [sys.argv[0], *argv]
        run_all_main()
        return 0
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Which script writes which result file (benchmarks/results/):\n\n" + _map_text())
    p.add_argument("suite", choices=["quality", "speed", "all", "tutorials"],
                   help="the suite to run; with no suite (or run_all.py's options, e.g. --only TEXT), "
                   "run_all.py's one-table speed summary in quick mode")
    p.add_argument("--quick", action="store_true",
                   help="small sizes, results to benchmarks/results/quick/ (quality: under 15 min on 2 cores)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--select", default="", help="comma-separated parts of script names: run only those")
    a = p.parse_args(argv)
    names = ["speed", "quality"] if a.suite == "all" else [a.suite]
    return run_suite(names, a.quick, a.dry_run, a.select)


if __name__ == "__main__":
    sys.exit(main())
