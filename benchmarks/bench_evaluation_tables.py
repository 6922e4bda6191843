"""Evaluation table: every attribution method under every metric, with CIs,
metric agreement and the model-randomisation sanity check.

For one model, runs ``captum-prior explain`` (in-process, through
``captum_prior.cli.main``) for every method of the package plus Captum's
IntegratedGradients with a black (0) and a grey (0.5) baseline in ``[0, 1]``
pixel space (both bundled models normalise inside their ``forward``, so these
are the constants to pass), Saliency and GradientShap; then scores all runs
with insertion/deletion, ROAD MoRF/LeRF, KPM...RAM (Telea inpainting masker,
as in the DeepPrior-EG paper) and MPRT (cascading randomisation, mean
Spearman similarity of |maps|), and compares them (``compare_runs``:
paired BCa intervals, rankings, Kendall's tau between the metrics'
rankings, disagreement sentences). Writes
``results/evaluation_table_<model>.md`` (+ ``.json`` with the settings and
timings).

The scoring uses the same functions as ``captum-prior evaluate``
(``evaluate_attributions`` and ``compare_runs``) in-process, because two
settings this benchmark needs to fit the CPU budget are not command-line
options: the keep/remove step (``percent``) and the layers MPRT randomises.
The equivalent command line (apart from those two settings) is written into
the result file.

Usage::

    python benchmarks/bench_evaluation_tables.py --model fashion-cnn --n 1000 --skip dmm-men
    python benchmarks/bench_evaluation_tables.py --model fashion-cnn --n 100 --suffix _with_dmm_men
    python benchmarks/bench_evaluation_tables.py --model efficientnet-lite0
    python benchmarks/bench_evaluation_tables.py --model fashion-cnn --quick   # smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
METRICS = ["deletion", "insertion", "road-morf", "road-lerf", "KPM", "KNM", "KAM", "RPM", "RNM", "RAM", "mprt"]

#: run name -> (--method, display name, ours?)
RUNS: List[Tuple[str, str, str, bool]] = [
    ("ig-black", "integrated-gradients", "Captum IG (black 0)", False),
    ("ig-grey", "integrated-gradients", "Captum IG (grey 0.5)", False),
    ("saliency", "saliency", "Captum Saliency", False),
    ("gradient-shap", "gradient-shap", "Captum GradientShap", False),
    ("expected-gradients", "expected-gradients", "ExpectedGradients", True),
    ("deep-mgm-eg", "deep-mgm-eg", "DeepMGM-EG", True),
    ("deep-bgmm-eg", "deep-bgmm-eg", "DeepBGMM-EG", True),
    ("valid-path-gradients", "valid-path-gradients", "ValidPathGradients", True),
    ("blur-ig", "blur-integrated-gradients", "BlurIntegratedGradients", True),
    ("guided-ig", "guided-integrated-gradients", "GuidedIntegratedGradients (black 0)", True),
    ("agi", "adversarial-gradient-integration", "AdversarialGradientIntegration", True),
    ("ig-idgi", "idgi", "IDGI of Captum IG (black 0)", True),
    ("bay-lime", "bay-lime", "BayLime", True),
    ("dmm-men", "dmm-men", "DMM-MEN", True),
]

SETTINGS: Dict[str, Dict[str, Any]] = {
    "fashion-cnn": dict(
        n=32, ig_steps=16, vpg_steps=16, agi_steps=8, eg_samples=8, lime_samples=30, dmm_samples=30,
        n_references=100, percent=0.1, id_steps=None, mprt_layers=None, batch=25, patch=4, skip=(), metrics=METRICS,
    ),
    "efficientnet-lite0": dict(
        n=20, ig_steps=16, vpg_steps=16, agi_steps=2, eg_samples=8, lime_samples=50, dmm_samples=50,
        n_references=20, percent=0.1, id_steps=16, mprt_layers=2, batch=5, patch=16, metrics=METRICS, skip=(),
    ),
}


def _git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def _uptime() -> str:
    try:
        return subprocess.check_output(["uptime"], text=True).strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def _prepare_data(model: str, work: Path, n: int, n_refs: int) -> Tuple[str, List[str], Any, Any]:
    """(--data spec, extra explain args for the data, dataset, references file or None)."""
    from safetensors.torch import save_file

    from captum_prior.runner.specs import load_data

    if model == "fashion-cnn":
        from captum_prior.data import load_fashion_mnist

        xtr, _ = load_fashion_mnist("train")
        idx = np.sort(np.random.default_rng(0).choice(len(xtr), size=n_refs, replace=False))
        refs = work / "fashion_train_refs.safetensors"
        save_file({"inputs": xtr[torch.from_numpy(idx)].contiguous()}, str(refs))
        return "fashion-mnist-test", ["--limit", str(n)], load_data("fashion-mnist-test", limit=n), str(refs)
    from captum_prior.models.efficientnet import load_imagenet_samples

    x, y, _ = load_imagenet_samples()
    data = work / "imagenet20.safetensors"
    save_file({"inputs": x[:n].contiguous(), "labels": y[:n].contiguous()}, str(data))
    return str(data), [], load_data(str(data)), None


def _method_args(method: str, run: str, s: Dict[str, Any], refs: Any) -> List[str]:
    a: List[str] = []
    if method == "integrated-gradients":
        a += ["--n-steps", str(s["ig_steps"]), "--baseline", "0.5" if run == "ig-grey" else "0.0", "--no-delta"]
    elif method in ("expected-gradients", "deep-mgm-eg", "deep-bgmm-eg", "gradient-shap"):
        a += ["--n-samples", str(s["eg_samples"]), "--n-references", str(s["n_references"])]
        if refs is not None:
            a += ["--references", refs]
        if method != "gradient-shap":
            a += ["--no-delta"]
    elif method == "valid-path-gradients":
        a += ["--n-steps", str(s["vpg_steps"])]
    elif method in ("blur-integrated-gradients", "idgi"):
        a += ["--n-steps", str(s["ig_steps"])]
    elif method == "guided-integrated-gradients":
        a += ["--n-steps", str(s["ig_steps"]), "--baseline", "0.0"]
    elif method == "adversarial-gradient-integration":
        a += ["--n-steps", str(s["agi_steps"])]
    elif method == "bay-lime":
        a += ["--n-samples", str(s["lime_samples"]), "--patch-size", str(s.get("patch", 4))]
    elif method == "dmm-men":
        a += ["--n-samples", str(s["dmm_samples"]), "--patch-size", str(s.get("patch", 4))]
    return a


def _mprt_layers(model_obj: Any, how: Any) -> Any:
    if how is None:
        return None
    from captum_prior.metrics.sanity import spread_layers

    return spread_layers(model_obj, int(how))  # output layer first, down to the middle (--mprt-layers K)


def _fmt(e: Dict[str, Any], d: int = 3) -> str:
    return f"{e['mean']:.{d}f} [{e['low']:.{d}f}, {e['high']:.{d}f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(SETTINGS), required=True)
    p.add_argument("--render", action="store_true", help="only rewrite the .md from the committed .json")
    p.add_argument("--n", type=int, default=None, help="examples (default: the model's setting)")
    p.add_argument("--work", default=None, help="scratch directory (default: /tmp/evaluation_tables_<model>)")
    p.add_argument("--quick", action="store_true", help="smoke test: 12 examples, minimal settings, no result file")
    p.add_argument("--skip", default="", help="comma-separated run names to leave out")
    p.add_argument("--metrics", default=None, help="comma-separated metrics (default: the model's setting)")
    p.add_argument("--suffix", default="", help="appended to the result file names")
    args = p.parse_args()
    if args.render:
        tag = args.model.replace("-", "_") + args.suffix
        render(json.loads((RESULTS / f"evaluation_table_{tag}.json").read_text()))
        return

    from captum_prior import cli
    from captum_prior.metrics.agreement import MIN_EXAMPLES
    from captum_prior.metrics.sanity import _verdict
    from captum_prior.metrics.stats import mean_ci
    from captum_prior.runner.evaluate import (
        compare_runs,
        evaluate_attributions,
        load_metrics,
    )
    from captum_prior.runner.specs import load_model

    s = dict(SETTINGS[args.model])
    if args.quick:
        s.update(n=12, ig_steps=4, vpg_steps=4, agi_steps=2, eg_samples=4, lime_samples=20, dmm_samples=20, n_references=12)
    if args.n is not None:
        s["n"] = args.n
    if args.metrics:
        s["metrics"] = args.metrics.split(",")
    skip = set(s["skip"]) | {r for r in args.skip.split(",") if r}
    work = Path(args.work or f"/tmp/evaluation_tables_{args.model}{'_quick' if args.quick else ''}")
    work.mkdir(parents=True, exist_ok=True)
    load_before = _uptime()
    t_all = time.time()
    data_spec, data_args, dataset, refs = _prepare_data(args.model, work, s["n"], s["n_references"])
    runs = [r for r in RUNS if r[0] not in skip]

    # 1. explain every run
    timings: Dict[str, Dict[str, float]] = {}
    commands: List[str] = []
    for run, method, _, _ in runs:
        argv = ["explain", "--model", args.model, "--data", data_spec, *data_args, "--method", method,
                "--out", str(work / "attr" / run), "--no-progress", "--seed", "0",
                *_method_args(method, run, s, refs)]
        commands.append("captum-prior " + " ".join(argv))
        t0 = time.time()
        rc = cli.main(argv)
        if rc != 0:
            raise SystemExit(f"explain {run} failed with status {rc}")
        timings[run] = {"explain_s": round(time.time() - t0, 1)}
        print(f"explain {run}: {timings[run]['explain_s']} s", flush=True)

    # 2. score every run (the functions behind `captum-prior evaluate`), then compare
    model = load_model(args.model)
    mk: Dict[str, Dict[str, Any]] = {"keep_remove": {"masker": "inpaint_telea", "percent": s["percent"]}}
    if s["id_steps"] is not None:
        mk["insertion_deletion"] = {"n_steps": s["id_steps"]}
    layers = _mprt_layers(model, s["mprt_layers"]) if "mprt" in s["metrics"] else None
    if layers is not None:
        mk["mprt"] = {"layers": layers}
    metric_dirs = {}
    for run, _, _, _ in runs:
        t0 = time.time()
        metric_dirs[run] = evaluate_attributions(
            work / "attr" / run, model, dataset, work / "eval" / run, metrics=s["metrics"],
            batch_size=s["batch"], metric_kwargs=mk, seed=0, progress=False, name=run,
        )
        timings[run]["evaluate_s"] = round(time.time() - t0, 1)
        print(f"evaluate {run}: {timings[run]['evaluate_s']} s", flush=True)
    compare_runs(metric_dirs, work / "eval", dataset=dataset, reference=runs[0][0])
    commands.append(
        "captum-prior evaluate --attributions " + " ".join(str(work / "attr" / r[0]) for r in runs)
        + f" --metric {','.join(s['metrics'])} --masker inpaint_telea --percent {s['percent']}"
        + f" --batch-size {s['batch']}"
        + (f" --steps {s['id_steps']}" if s["id_steps"] else "")
        + (f" --mprt-layers {s['mprt_layers']}" if layers else "")
        + f" --out {work / 'eval'}"
    )
    total_s = time.time() - t_all
    comp = json.loads((work / "eval" / "comparison.json").read_text())

    # 3. MPRT verdict per run (the report's rule: fails when the lower bound of the
    # similarity with every listed layer randomised stays above 0.5)
    verdicts = {}
    for run, _, _, _ in runs if "mprt" in s["metrics"] else []:
        _, curves, _ = load_metrics(metric_dirs[run])
        c = curves["mprt"]
        ok = np.isfinite(c[:, -1])
        final = mean_ci(c[ok, -1])
        names = layers or [f"step {j + 1}" for j in range(c.shape[1])]
        verdicts[run] = _verdict(run, final, "spearman_abs", 0.5, "cascading", names, MIN_EXAMPLES)
        verdicts[run]["curve_mean"] = [float(v) for v in np.nanmean(c, 0)]

    if args.quick:
        print(json.dumps({r: v["status"] for r, v in verdicts.items()}, indent=1))
        print(f"quick run done in {total_s:.0f} s; nothing written to {RESULTS}")
        return
    record = {
        "model": args.model, "n_examples": comp["n_examples"], "settings": s, "mprt_layers": layers,
        "metric_kwargs": mk, "timings_s": timings, "total_s": round(total_s, 1), "commit": _git_commit(),
        "uptime_before": load_before, "uptime_after": _uptime(), "python": platform.python_version(),
        "torch": torch.__version__, "commands": commands, "comparison": comp,
        "mprt_verdicts": verdicts, "work": str(work), "runs": [list(r) for r in runs],
        "skip": sorted(skip), "references": refs, "args": {"n": args.n, "skip": args.skip, "metrics": args.metrics,
                                                              "suffix": args.suffix},
        "paragraph": "(to be written from the numbers above)",
        "extra_sections": [],
    }
    RESULTS.mkdir(exist_ok=True)
    tag = args.model.replace("-", "_") + args.suffix
    (RESULTS / f"evaluation_table_{tag}.json").write_text(json.dumps(record, indent=1, default=str))
    render(record)


def render(record: Dict[str, Any]) -> None:
    """Write ``results/evaluation_table_<model>.md`` from the ``.json`` record
    (``--render`` rewrites it, e.g. after the record's paragraph is written)."""
    from captum_prior.metrics.agreement import AgreementResult
    from captum_prior.runner.evaluate import HIGHER_IS_BETTER

    comp, s, layers, verdicts = record["comparison"], record["settings"], record["mprt_layers"], record["mprt_verdicts"]
    timings, commands, total_s = record["timings_s"], record["commands"], record["total_s"]
    runs = [tuple(r) for r in record["runs"]]
    skip, refs, model_name = set(record["skip"]), record["references"], record["model"]
    load_before = record["uptime_before"]
    tag = model_name.replace("-", "_") + record["args"].get("suffix", "")
    display = {r[0]: r[2] for r in runs}
    ours = {r[0]: r[3] for r in runs}
    ag = comp["agreement"]
    agreement = AgreementResult(
        metrics=ag["metrics"], methods=ag["methods"], higher_is_better=ag["higher_is_better"],
        n_examples=ag["n_examples"], means=ag["means"], rankings=ag["rankings"], leaders=ag["leaders"],
        tau={(t["a"], t["b"]): {k: t.get(k) for k in ("tau", "low", "high")} for t in ag["tau"]},
        disagreements=ag["disagreements"], confidence=ag.get("confidence", 0.95),
        conflicts=ag.get("conflicts", []),
    )
    strong = [t for t in agreement.disagreements if "both orders significant" in t]
    pairs: Dict[Tuple[str, str], List[int]] = {}
    for t in agreement.disagreements:
        words = t.split(" ")
        key = (words[0], words[2])
        pairs.setdefault(key, [0, 0])
        pairs[key][0] += 1
        pairs[key][1] += int("both orders significant" in t)
    pair_lines = ["| metrics | opposite orderings | both significant |", "|---|---|---|"]
    pair_lines += [f"| {a} vs {b} | {c[0]} | {c[1]} |" for (a, b), c in pairs.items()]
    if layers:
        for v in verdicts.values():
            v["text"] = v["text"].replace("every layer randomised", f"the {len(layers)} listed layers randomised")
    else:
        for v in verdicts.values():
            k = len(v["curve_mean"])
            steps = ", ".join(f"step {j + 1}" for j in range(k))
            v["text"] = v["text"].replace(f"with {steps} randomised", f"with all {k} parameterised layers randomised")
    metrics = [m for m in METRICS if m in comp["metrics"]]
    head = ["method"] + [f"{m} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run, _, _, _ in runs:
        cells = [display[run] + (" (ours)" if ours[run] else "")]
        for m in metrics:
            e = comp["metrics"][m][run]
            cells.append(_fmt(e) + (" *" if e.get("vs", {}).get(runs[0][0], {}).get("significant") else ""))
        lines.append("| " + " | ".join(cells) + " |")
    vlines = ["| method | MPRT similarity, last step [95 % CI] | mean curve (one value per step) | verdict |",
              "|---|---|---|---|"]
    for run, _, _, _ in runs:
        if run not in verdicts:
            continue
        v = verdicts[run]
        vlines.append(f"| {display[run]} | {_fmt(v['final'], 2)} (n = {v['final']['n']}) | "
                      f"{', '.join(f'{x:.2f}' for x in v['curve_mean'])} | {v['status']} |")
    if not verdicts:
        vlines = ["MPRT was not scored in this table."]
    set_lines = [f"- examples: {comp['n_examples']}"
                 + (" (the first N of the Fashion-MNIST test set, targets = the model's prediction)"
                    if model_name == "fashion-cnn" else " (the bundled ImageNet photos, targets = the model's prediction)"),
                 f"- IG, IDGI of IG, Blur IG, Guided IG: {s['ig_steps']} steps; ValidPathGradients: "
                 f"{s['vpg_steps']} steps; AGI: {s.get('agi_steps', 20)} steps towards each of up to 20 other classes; "
                 "EG, DeepMGM-EG, "
                 f"DeepBGMM-EG, GradientShap: {s['eg_samples']} samples, "
                 + (f"{s['n_references']} references drawn (seed 0) from the Fashion-MNIST training set"
                    if refs else f"references = the {s['n_references']} photos themselves (no separate set is bundled)"),
                 f"- BayLime: {s['lime_samples']} samples"
                 + ("" if "dmm-men" in skip else f"; DMM-MEN: {s['dmm_samples']} samples")
                 + f" ({s.get('patch', 4)} x {s.get('patch', 4)} patches, black replacement)"
                 + ("; DMM-MEN: not in this table (see below)" if "dmm-men" in skip else ""),
                 "- metrics: " + ", ".join(s["metrics"]),
                 "- " + "; ".join(part for part, on in (
                     (f"keep/remove: Telea inpainting (radius 3), {s['percent']:.0%} of the pixels per step",
                      "KPM" in s["metrics"]),
                     (f"insertion/deletion: {s['id_steps'] or 'one image row per'} step"
                      f"{'s' if s['id_steps'] else ''}", "insertion" in s["metrics"]),
                     ("ROAD: the paper's fractions (0.1 ... 0.9), noisy linear imputation, target probability",
                      "road-morf" in s["metrics"])) if on),
                 "- MPRT: cascading randomisation of "
                 + (f"{len(layers)} layers ({', '.join(layers)})" if layers else "every parameterised layer")
                 + ", output layer first; score = mean Spearman similarity of |maps| over the steps "
                 "(lower is better); verdict as in the report: fails when the lower 95 % bound of the "
                 "similarity after the last step stays above 0.5"]
    tim = ["| run | explain (s) | evaluate (s) |", "|---|---|---|"]
    tim += [f"| {r} | {t['explain_s']} | {t['evaluate_s']} |" for r, t in timings.items()]
    md = [
        f"# Evaluation table: {model_name}",
        "",
        "Every method under every metric: mean [95 % BCa CI] over the examples; ↑ higher is better, "
        f"↓ lower is better; * = the paired difference to {display[runs[0][0]]} excludes 0.",
        "",
        *lines,
        "",
        "## Settings",
        "",
        *set_lines,
        "",
        "## Sanity check (MPRT)",
        "",
        *vlines,
        "",
        *[f"- {verdicts[r]['text']}" for r, _, _, _ in runs if r in verdicts],
        "",
        f"## Agreement between metrics (from comparison.json, n = {agreement.n_examples})",
        "",
        agreement.ranking_table(),
        "",
        "Kendall's tau-b between the metrics' rankings of the methods [95 % bootstrap CI over examples]:",
        "",
        agreement.tau_table(),
        "",
        f"comparison.json holds {len(agreement.disagreements)} disagreement sentences (one per pair of "
        f"metrics and pair of methods ranked in opposite order), {len(strong)} of them with both orders "
        "significant. Count per pair of metrics (all / both orders significant):",
        "",
        *pair_lines,
        "",
        f"The first {min(12, len(strong))} with both orders significant:",
        "",
        *[f"- {t}" for t in strong[:12]],
        "",
        "Leaders:",
        "",
        *[f"- {m}: {agreement.leaders[m]['text']}" for m in agreement.metrics],
        "",
        "## What the numbers say",
        "",
        record["paragraph"],
        "",
        *[line for sec in record.get("extra_sections", []) for line in (sec, "")],
        "## Run",
        "",
        f"- commit {record['commit']}, python {record['python']}, torch {record['torch']}",
        f"- load before: `{load_before}`",
        f"- load after: `{record['uptime_after']}`",
        f"- total wall time {total_s:.0f} s (shared 2-core machine)",
        "",
        *tim,
        *(["", record["timings_note"]] if record.get("timings_note") else []),
        "",
        "Command:",
        "",
        "```",
        f"python benchmarks/bench_evaluation_tables.py --model {model_name}"
        + (f" --n {record['args']['n']}" if record["args"]["n"] else "")
        + (f" --skip {record['args']['skip']}" if record["args"]["skip"] else "")
        + (f" --metrics {record['args']['metrics']}" if record["args"].get("metrics") else "")
        + (f" --suffix {record['args']['suffix']}" if record["args"].get("suffix") else ""),
        "```",
        "",
        "Equivalent command lines (the script runs them in-process):",
        "",
        "```",
        *commands,
        "```",
        "",
    ]
    out = RESULTS / f"evaluation_table_{tag}.md"
    out.write_text("\n".join(md))
    print(f"wrote {out} ({total_s:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
