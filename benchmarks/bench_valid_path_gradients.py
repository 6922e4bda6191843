"""Insertion - deletion AUC and cost of ValidPathGradients against IG and EG.

Akhtar & Jalwana (ICML 2023) report the AUC of insertion minus deletion
(RISE) for IG (black baseline), IG from other baselines, EG and their method
(Tables 1 and 3) and an ablation (Table 4), every method with 150 model steps
per image. This script measures the same on

- ``--model effnet``: EfficientNet-Lite0 on the 20 labelled ImageNet photos;
- ``--model cnn``: the default FashionCNN on Fashion-MNIST test images
  (``--n-images``, default 500);

with the RISE protocol of ``captum_prior.metrics.insertion_deletion``
(blur insertion; deletion to RISE's zero in the model's normalised space,
i.e. pixel value 0 for the CNN and 0.5 grey for EfficientNet-Lite0, whose
wrapper maps [0, 1] to [-1, 1]; softmax probability of the predicted class;
one image row per step), and reports mean ± 95 % CI (t), the relative gain
over IG, the paired difference to IG, and the wall time per image against IG
at the same 150 steps, baseline optimisation included.

Methods (all explain the model's predicted class):

- ``ig``: Captum IntegratedGradients, black baseline, 150 Gauss-Legendre steps;
- ``ig_mean``: IG from the per-image channel-mean colour ("IG (A)");
- ``ig_opt``: IG from the optimized baseline (middle blur width);
- ``eg``: ExpectedGradients, 150 (reference, alpha) draws from a reference set;
- ``vpg``: ValidPathGradients, 3 optimized baselines x 50 steps (proposed);
- ``vpg_single``: ValidPathGradients, 1 optimized baseline x 150 steps;
- ``vpg_black``: valid-feature integration from the black baseline ("Ours + IG baseline");
- ``vpg_nofilter``: 3 optimized baselines, no valid-feature filtering;
- ``ig_gauss``: IG from a Gaussian-noise image ("IG (G)"): pixels i.i.d.
  ``N(0.5, 0.25^2)`` clipped to [0, 1], one draw per image (seeded);
- ``agi``: AdversarialGradientIntegration, ``--agi-classes`` false classes
  (default: min(10, classes - 1)) x ``n_steps // classes`` signed steps of
  0.05, softmax, no thresholding (two gradients per path point);
- ``blur_ig``: BlurIntegratedGradients, max_sigma 50, 150 steps;
- ``guided_ig``: GuidedIntegratedGradients, black baseline, fraction 0.25,
  max_dist 0.02, 150 steps;
- ``ig_idgi``, ``blur_ig_idgi``, ``guided_ig_idgi``, ``vpg_idgi``: IDGI of
  IG (black), Blur IG, Guided IG and of ValidPathGradients' three optimized
  baselines (50 steps each), on the same paths.

The optimized baselines are computed once per image group and shared: the
middle-width baseline (used by ``ig_opt``, ``vpg_single``) and the two others;
each method is charged the optimisation time of the baselines it uses.

Examples::

    python benchmarks/bench_valid_path_gradients.py --model cnn --n-images 500
    python benchmarks/bench_valid_path_gradients.py --model effnet
    python benchmarks/bench_valid_path_gradients.py --model cnn --quick

Without the full Fashion-MNIST installed, ``--model cnn`` evaluates the
shipped 500-image test sample and takes the EG references from its end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import List

import numpy as np
import torch
from captum.attr import IntegratedGradients

from captum_prior.attr import (
    IDGI,
    AdversarialGradientIntegration,
    BlurIntegratedGradients,
    ExpectedGradients,
    GuidedIntegratedGradients,
    OptimizedBaseline,
    ValidPathGradients,
)
from captum_prior.attr.optimized_baseline import default_sigmas
from captum_prior.metrics import insertion_deletion

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from valid_path_common import (  # noqa: E402
    RESULTS,
    Timer,
    add_deletion_substrate_argument,
    bare_row_time,
    command_line,
    deletion_substrate,
    environment,
    fashion_mnist,
    fmt,
    gain,
    load_model_and_data,
    md_table,
    mean_ci,
    predicted,
    write_json,
)

LABELS = {
    "ig": "IG [black baseline]",
    "ig_mean": "IG (A) [channel-mean baseline]",
    "ig_opt": "IG [optimized baseline]",
    "eg": "EG",
    "vpg": "Ours: ValidPathGradients (3 baselines)",
    "vpg_single": "Ours (single baseline)",
    "vpg_black": "Ours + IG baseline (black)",
    "vpg_nofilter": "Ours without valid-feature filter",
    "ig_gauss": "IG (G) [Gaussian-noise baseline]",
    "agi": "AGI",
    "blur_ig": "Blur IG",
    "guided_ig": "Guided IG [black baseline]",
    "ig_idgi": "IG + IDGI",
    "blur_ig_idgi": "Blur IG + IDGI",
    "guided_ig_idgi": "Guided IG + IDGI",
    "vpg_idgi": "Ours (3 optimized baselines) + IDGI",
}
#: each IDGI variant and the method it modifies
IDGI_OF = {"ig_idgi": "ig", "blur_ig_idgi": "blur_ig", "guided_ig_idgi": "guided_ig",
           "vpg_idgi": "vpg"}
ALL = list(LABELS)


def eg_method(model, refs, n_steps, bs):
    """ExpectedGradients with ``n_steps`` (reference, alpha) draws per image."""
    eg = ExpectedGradients(model)

    def run(x, target, seed):
        return eg.attribute(
            x,
            refs,
            target=target,
            n_samples=n_steps,
            internal_batch_size=bs,
            generator=torch.Generator().manual_seed(seed),
        )

    return run, f"captum_prior.attr.ExpectedGradients, n_samples={n_steps}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("cnn", "effnet"), default="cnn")
    p.add_argument(
        "--n-images", type=int, default=None, help="default: 500 (cnn), 20 (effnet)"
    )
    p.add_argument("--offset", type=int, default=0, help="index of the first image")
    p.add_argument("--n-steps", type=int, default=150)
    p.add_argument("--n-baselines", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=None, help="rows per model call")
    p.add_argument(
        "--group",
        type=int,
        default=None,
        help="images per group (results saved after each)",
    )
    p.add_argument(
        "--pixels-per-step",
        type=int,
        default=None,
        help="insertion/deletion step (default: image width, RISE)",
    )
    add_deletion_substrate_argument(p)
    p.add_argument("--methods", default=",".join(ALL))
    p.add_argument(
        "--n-refs",
        type=int,
        default=200,
        help="EG reference set size (cnn; effnet uses the 20 photos)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--agi-classes",
        type=int,
        default=None,
        help="AGI false classes per image (default: min(10, classes - 1)); "
        "each gets n_steps // classes steps",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (1 is faster on an oversubscribed machine)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a few images and 30 steps, to check the script",
    )
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        help="combine the JSON results of runs over disjoint images",
    )
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.merge:
        merge(a.merge, a.out)
        return
    if a.quick:
        a.n_images, a.n_steps = (16 if a.model == "cnn" else 2), 30
    n_images = a.n_images or (500 if a.model == "cnn" else 20)
    methods = [m for m in a.methods.split(",") if m]
    bad = [m for m in methods if m not in LABELS]
    if bad:
        raise SystemExit(f"unknown methods {bad}; choose from {ALL}")
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    bs = a.batch_size or (600 if a.model == "cnn" else 32)
    del_sub = deletion_substrate(a.model, a.deletion_substrate)
    group = a.group or (100 if a.model == "cnn" else 2)
    model, x_all, _y, desc = load_model_and_data(a.model, n_images, a.offset)
    pred_all = predicted(model, x_all, bs)
    with torch.no_grad():
        conf = torch.cat(
            [
                model(x_all[i : i + bs]).softmax(1).max(1).values
                for i in range(0, len(x_all), bs)
            ]
        )

    if a.model == "cnn":
        xt, _, source = fashion_mnist("train")
        if "sample" in source:
            refs = xt[-a.n_refs :]
            refs_desc = f"the last {len(refs)} images of the {source}"
            if a.offset + n_images > len(xt) - a.n_refs:
                print("warning: evaluated images overlap the EG references", flush=True)
        else:
            idx = torch.randperm(len(xt), generator=torch.Generator().manual_seed(a.seed))[
                : a.n_refs
            ]
            refs, refs_desc = xt[idx], f"{a.n_refs} random Fashion-MNIST training images"
    else:
        _m, refs, _y20, _d = load_model_and_data("effnet", 20)
        refs_desc = "the 20 ImageNet photos (an image's own copy contributes 0)"
    eg_run, eg_desc = eg_method(model, refs, a.n_steps, bs)

    sig3 = default_sigmas(a.n_baselines)
    sig1 = default_sigmas(1)
    others = tuple(s for s in sig3 if s not in sig1)
    ob_mid = OptimizedBaseline(model, sigmas=sig1, internal_batch_size=bs)
    ob_oth = (
        OptimizedBaseline(model, sigmas=others, internal_batch_size=bs)
        if others
        else None
    )
    tools = dict(
        ig=IntegratedGradients(model),
        vpg=ValidPathGradients(model),
        vpg_nf=ValidPathGradients(model, filter_path_features=False),
        eg_run=eg_run,
        blur_ig=BlurIntegratedGradients(model),
        guided_ig=GuidedIntegratedGradients(model),
        agi=AdversarialGradientIntegration(model),
    )
    with torch.no_grad():
        n_classes = model(x_all[:1]).shape[1]
    agi_k = a.agi_classes or min(10, n_classes - 1)
    tools["agi_k"] = agi_k
    tools["idgi"] = {k: IDGI(tools[v]) for k, v in IDGI_OF.items()}

    out = a.out or os.path.join(
        RESULTS, f"valid_path_gradients_{a.model}{'_quick' if a.quick else ''}"
    )
    raw = {
        "commands": [command_line()],
        "data": [desc],
        "n_steps": a.n_steps,
        "pixels_per_step": a.pixels_per_step,
        "deletion_substrate": del_sub,
        "eg": eg_desc,
        "eg_references": refs_desc,
        "agi": f"AdversarialGradientIntegration, {agi_k} false classes x "
        f"{max(1, a.n_steps // agi_k)} steps, epsilon 0.05, softmax, input_range (0, 1)",
        "sigmas": {"three": list(sig3), "single": list(sig1)},
        "methods": methods,
        "scores": {m: [] for m in methods},
        "insertion": {m: [] for m in methods},
        "deletion": {m: [] for m in methods},
        "seconds": {m: 0.0 for m in methods},
        "confidence": [],
        "diagnostics": {
            "converged": [],
            "iterations": [],
            "distance": [],
            "initial_distance": [],
        },
        "ob_seconds": {"middle": 0.0, "others": 0.0},
        "metric_seconds": 0.0,
        # per image group: seconds of each method (baseline optimisation
        # charged) and of the bare passes, so contention can be seen per group
        "group_seconds": [],
        "floor_seconds": 0.0,
        "bare_model": bare_row_time(model, x_all, min(bs, 128), repeats=3),
        "wall_seconds": 0.0,
        "environment": environment(),
    }
    t_start = time.time()
    print(desc, flush=True)

    for g0 in range(0, len(x_all), group):
        x = x_all[g0 : g0 + group]
        pred = pred_all[g0 : g0 + group]
        seed = a.seed + a.offset + g0
        timer = Timer()
        b_mid, d_mid = timer(
            "ob_mid", lambda x=x: ob_mid.compute(x, return_diagnostics=True)
        )
        if ob_oth is not None:
            b_oth, d_oth = timer(
                "ob_oth", lambda x=x: ob_oth.compute(x, return_diagnostics=True)
            )
            # in the order of default_sigmas(n_baselines), as ValidPathGradients uses them
            pieces = {s: b_mid[0] for s in sig1}
            pieces.update({s: b_oth[i] for i, s in enumerate(others)})
            b3 = torch.stack([pieces[s] for s in sig3])
            diags = [d_mid, d_oth]
        else:
            b3, diags = b_mid, [d_mid]
        for d in diags:
            for k in raw["diagnostics"]:
                raw["diagnostics"][k].extend(d[k].double().flatten().tolist())
        raw["ob_seconds"]["middle"] += timer.total["ob_mid"]
        raw["ob_seconds"]["others"] += timer.total.get("ob_oth", 0.0)
        ctx = dict(
            x=x, pred=pred, seed=seed, b_mid=b_mid, b3=b3, bs=bs, n_steps=a.n_steps
        )
        timer("floor", lambda x=x, pred=pred: bare_passes(model, x, pred, a.n_steps, bs))
        raw["floor_seconds"] += timer.total["floor"]
        charge = {
            "ig_opt": ob_seconds_now(timer, mid=True),
            "vpg_single": ob_seconds_now(timer, mid=True),
            "vpg": ob_seconds_now(timer, mid=True, others=True),
            "vpg_nofilter": ob_seconds_now(timer, mid=True, others=True),
            "vpg_idgi": ob_seconds_now(timer, mid=True, others=True),
        }
        for m in methods:
            attr = timer(m, lambda m=m, ctx=ctx: run_method(m, ctx, tools))
            raw["seconds"][m] += timer.total[m] + charge.get(m, 0.0)
            t = time.perf_counter()
            res = insertion_deletion(
                model,
                x,
                attr.detach(),
                target=pred,
                max_examples_per_batch=bs,
                pixels_per_step=a.pixels_per_step,
                deletion_substrate=del_sub,
            )
            raw["metric_seconds"] += time.perf_counter() - t
            raw["scores"][m].extend(res.difference.tolist())
            raw["insertion"][m].extend(res.insertion.tolist())
            raw["deletion"][m].extend(res.deletion.tolist())
        raw["group_seconds"].append(
            {
                "images": [a.offset + g0, a.offset + g0 + len(x)],
                "floor": timer.total["floor"],
                **{m: timer.total[m] + charge.get(m, 0.0) for m in methods},
            }
        )
        raw["confidence"].extend(conf[g0 : g0 + len(x)].tolist())
        raw["wall_seconds"] = time.time() - t_start
        done = g0 + len(x)
        line = "  ".join(f"{m} {np.mean(raw['scores'][m]):.4f}" for m in methods)
        print(f"[{done}/{len(x_all)}] {time.time() - t_start:.0f}s  {line}", flush=True)
        write_json(out + ".json", build_payload(raw))
    write_markdown(out + ".md", build_payload(raw))


def merge(paths: List[str], out: str) -> None:
    """Combine runs over disjoint image ranges (same settings) into one result."""
    raws = []
    for path in paths:
        with open(path) as f:
            raws.append(json.load(f)["raw"])
    r = raws[0]
    for o in raws[1:]:
        if o["methods"] != r["methods"] or o["n_steps"] != r["n_steps"]:
            raise SystemExit(f"{path}: different methods or n_steps; cannot merge")
        r["commands"] += o["commands"]
        r["data"] += o["data"]
        for key in ("scores", "insertion", "deletion"):
            for m in r["methods"]:
                r[key][m] += o[key][m]
        for m in r["methods"]:
            r["seconds"][m] += o["seconds"][m]
        r["confidence"] += o["confidence"]
        for k in r["diagnostics"]:
            r["diagnostics"][k] += o["diagnostics"][k]
        for k in r["ob_seconds"]:
            r["ob_seconds"][k] += o["ob_seconds"][k]
        r["metric_seconds"] += o["metric_seconds"]
        r["group_seconds"] = r.get("group_seconds", []) + o.get("group_seconds", [])
        r["floor_seconds"] = r.get("floor_seconds", 0.0) + o.get("floor_seconds", 0.0)
        r["wall_seconds"] += o["wall_seconds"]
    r["commands"].append(command_line())
    # a stopped run's own description names the range it was asked for; say
    # which images the merged record actually holds
    spans = [g["images"] for g in r.get("group_seconds", [])]
    if spans:
        word = " photos " if " photos " in r["data"][0] else " images "
        head = r["data"][0].split(word)[0]
        runs = ", ".join(f"{a}..{b - 1}" for a, b in _runs_of(sorted(spans)))
        r["data"] = [f"{head}{word}{runs} ({sum(b - a for a, b in spans)} in all; merged from the runs under "
                     "Command)"]
    if out is None:
        raise SystemExit("--merge needs --out")
    write_json(out + ".json", build_payload(r))
    write_markdown(out + ".md", build_payload(r))


def _runs_of(spans: List[List[int]]) -> List[List[int]]:
    """Join touching [start, stop) spans: [[0, 2], [2, 3], [5, 6]] -> [[0, 3], [5, 6]]."""
    out: List[List[int]] = []
    for a, b in spans:
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def run_method(m: str, c: dict, t: dict) -> torch.Tensor:
    """Attributions of method ``m`` for the image group in ``c``."""
    x, pred, bs, n = c["x"], c["pred"], c["bs"], c["n_steps"]
    kw = dict(target=pred, n_steps=n, internal_batch_size=bs)
    if m == "ig":
        return t["ig"].attribute(x, 0.0, **kw)
    if m == "ig_mean":
        return t["ig"].attribute(
            x, x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous(), **kw
        )
    if m == "ig_opt":
        return t["ig"].attribute(x, c["b_mid"][0], **kw)
    if m == "eg":
        return t["eg_run"](x, pred, c["seed"])
    gen = torch.Generator().manual_seed(c["seed"])
    if m == "vpg":
        return t["vpg"].attribute(x, c["b3"], generator=gen, method="monte_carlo", **kw)
    if m == "vpg_single":
        return t["vpg"].attribute(x, c["b_mid"][0], generator=gen, method="monte_carlo", **kw)
    if m == "vpg_black":
        return t["vpg"].attribute(x, 0.0, generator=gen, method="monte_carlo", **kw)
    if m == "vpg_nofilter":
        return t["vpg_nf"].attribute(x, c["b3"], generator=gen, method="monte_carlo", **kw)
    if m == "ig_gauss":
        noise = torch.randn(x.shape, generator=gen) * 0.25 + 0.5
        return t["ig"].attribute(x, noise.clamp(0.0, 1.0), **kw)
    if m == "agi":
        k = t["agi_k"]
        return t["agi"].attribute(x, pred, n_steps=max(1, n // k), epsilon=0.05, n_classes=k,
                                  internal_batch_size=bs, generator=gen, input_range=(0.0, 1.0))
    if m == "blur_ig":
        return t["blur_ig"].attribute(x, max_sigma=50.0, **kw)
    if m == "guided_ig":
        return t["guided_ig"].attribute(x, 0.0, fraction=0.25, max_dist=0.02, **kw)
    if m == "ig_idgi":
        return t["idgi"][m].attribute(x, 0.0, **kw)
    if m == "blur_ig_idgi":
        return t["idgi"][m].attribute(x, max_sigma=50.0, **kw)
    if m == "guided_ig_idgi":
        return t["idgi"][m].attribute(x, 0.0, fraction=0.25, max_dist=0.02, **kw)
    if m == "vpg_idgi":
        return t["idgi"][m].attribute(x, c["b3"], method="monte_carlo", **kw)
    raise ValueError(m)


def bare_passes(model, x: torch.Tensor, target: torch.Tensor, n_steps: int, bs: int) -> None:
    """The passes no 150-step path method can avoid: ``n_steps`` rows per image
    through one bare forward + backward (input gradient of the target), ``bs``
    rows per call, with no attribution bookkeeping."""
    rows = x.repeat_interleave(n_steps, dim=0)
    tgt = target.repeat_interleave(n_steps)
    for i in range(0, len(rows), bs):
        xr = rows[i : i + bs].clone().requires_grad_()
        out = model(xr)
        torch.autograd.grad(out.gather(1, tgt[i : i + bs, None]).sum(), xr)


def ob_seconds_now(timer: Timer, mid: bool = False, others: bool = False) -> float:
    return (timer.total.get("ob_mid", 0.0) if mid else 0.0) + (
        timer.total.get("ob_oth", 0.0) if others else 0.0
    )


def build_payload(raw: dict) -> dict:
    """Summary statistics of the raw per-image results."""
    scores, seconds, methods = raw["scores"], raw["seconds"], raw["methods"]
    done = len(raw["confidence"])
    summary = {}
    ig_scores = np.asarray(scores["ig"]) if "ig" in scores else None
    for m in methods:
        s = np.asarray(scores[m])
        mean, half = mean_ci(s)
        e = {
            "label": LABELS[m],
            "mean": mean,
            "ci95": half,
            "insertion_mean": float(np.mean(raw["insertion"][m])),
            "deletion_mean": float(np.mean(raw["deletion"][m])),
            "seconds_per_image": seconds[m] / done,
        }
        if ig_scores is not None:
            dm, dh = mean_ci(s - ig_scores)
            e["paired_diff_vs_ig"] = dm
            e["paired_diff_vs_ig_ci95"] = dh
            e["wins_vs_ig"] = float(np.mean(s > ig_scores))
            e["gain_vs_ig_percent"] = gain(mean, float(ig_scores.mean()))
            e["time_vs_ig"] = seconds[m] / seconds["ig"] if seconds.get("ig") else None
            groups = [g for g in raw.get("group_seconds", []) if g.get("ig")]
            if groups:
                r = np.array([g[m] / g["ig"] for g in groups])
                e["time_vs_ig_per_group"] = {
                    "median": float(np.median(r)),
                    "min": float(r.min()),
                    "max": float(r.max()),
                }
        if raw.get("floor_seconds"):
            e["time_vs_floor"] = seconds[m] / raw["floor_seconds"]
        summary[m] = e
    d = {k: np.asarray(v) for k, v in raw["diagnostics"].items()}
    return {
        "command": " && ".join(raw["commands"]),
        "data": "; ".join(raw["data"]),
        "n_images": done,
        "n_steps": raw["n_steps"],
        "protocol": "insertion_deletion (RISE): insertion from blur (kernel 11, sigma 5), deletion to "
        f"{raw.get('deletion_substrate', 0.0)} (pixel value), softmax probability of the predicted class, pixels_per_step={raw['pixels_per_step'] or 'image width'}",
        "eg": raw["eg"],
        "eg_references": raw["eg_references"],
        "agi": raw.get("agi", ""),
        "sigmas": raw["sigmas"],
        "mean_confidence": float(np.mean(raw["confidence"])),
        "optimized_baselines": {
            "converged_fraction": float(d["converged"].mean()),
            "iterations_mean": float(d["iterations"].mean()),
            "initial_distance_mean": float(d["initial_distance"].mean()),
            "final_distance_mean": float(d["distance"].mean()),
            "seconds_per_image_middle": raw["ob_seconds"]["middle"] / done,
            "seconds_per_image_others": raw["ob_seconds"]["others"] / done,
        },
        "bare_model": raw["bare_model"],
        "floor_seconds_per_image": raw.get("floor_seconds", 0.0) / done,
        "metric_seconds_per_image_per_method": raw["metric_seconds"]
        / done
        / len(methods),
        "wall_seconds": raw["wall_seconds"],
        "environment": raw["environment"],
        "methods": summary,
        "raw": raw,
    }


def write_markdown(path: str, p: dict) -> None:
    ms = p["methods"]
    ig = ms.get("ig")

    def row(m: str) -> List[str]:
        e = ms[m]
        return [
            e["label"],
            fmt(e["mean"], e["ci95"]),
            e.get("gain_vs_ig_percent", ""),
            ""
            if ig is None
            else fmt(e["paired_diff_vs_ig"], e["paired_diff_vs_ig_ci95"]),
            "" if ig is None else f"{e['wins_vs_ig']:.2f}",
            f"{e['insertion_mean']:.4f} / {e['deletion_mean']:.4f}",
        ]

    head = ["Method", "ins−del AUC (mean ± 95% CI)", "gain over IG (%)", "paired Δ vs IG (± 95% CI)",
            "share of images > IG", "insertion / deletion"]  # fmt: skip
    main_rows = [
        row(m)
        for m in ("ig", "ig_gauss", "ig_mean", "ig_opt", "agi", "eg", "blur_ig", "guided_ig", "vpg")
        if m in ms
    ]
    raw_scores = p["raw"]["scores"]
    idgi_rows = []
    for m, base in IDGI_OF.items():
        if m in ms and base in ms:
            dm, dci = mean_ci(np.asarray(raw_scores[m]) - np.asarray(raw_scores[base]))
            idgi_rows.append(row(base) + [""])
            idgi_rows.append(row(m) + [fmt(dm, dci)])
    abl_rows = [
        row(m)
        for m in ("ig", "vpg_black", "vpg_single", "vpg_nofilter", "vpg")
        if m in ms
    ]
    cost_rows = []
    fb = p["bare_model"]["forward_backward_s_per_row"]
    for e in ms.values():
        grp = e.get("time_vs_ig_per_group")
        cost_rows.append(
            [
                e["label"],
                f"{e['seconds_per_image']:.3f}",
                "" if ig is None else f"{e['time_vs_ig']:.2f}",
                "" if not grp else f"{grp['median']:.2f} [{grp['min']:.2f}, {grp['max']:.2f}]",
                f"{e['time_vs_floor']:.2f}" if "time_vs_floor" in e else "",
            ]
        )
    if p.get("floor_seconds_per_image"):
        cost_rows.append(
            [
                f"bare forward+backward, {p['n_steps']} rows (physical floor)",
                f"{p['floor_seconds_per_image']:.3f}",
                "" if ig is None else f"{p['floor_seconds_per_image'] / ig['seconds_per_image']:.2f}",
                "",
                "1.00",
            ]
        )
    ob = p["optimized_baselines"]
    text = [
        f"# ValidPathGradients benchmark: {p['data']}",
        "",
        f"Command: `{p['command']}`",
        "",
        f"{p['n_images']} images, {p['n_steps']} model steps per method and image; mean confidence of the "
        f"predicted class {p['mean_confidence']:.2f}. Protocol: {p['protocol']}. EG: {p['eg']}, references: "
        f"{p['eg_references']}. AGI: {p.get('agi', '')}. Blur widths of the optimized baselines: {p['sigmas']}.",
        "",
        "## Insertion − deletion AUC (layout of the paper's Tables 1 and 3)",
        "",
        md_table(head, main_rows),
        "",
        "## IDGI on each path (same paths, the important-direction rule)",
        "",
        md_table(head + ["paired Δ vs the method without IDGI (± 95% CI)"], idgi_rows),
        "",
        "## Ablation (layout of the paper's Table 4)",
        "",
        md_table(head, abl_rows),
        "",
        "## Cost per image (same run, side by side; baseline optimisation included)",
        "",
        md_table(
            ["Method", "seconds / image", "× IG", "× IG per image group: median [min, max]", "× floor"],
            cost_rows,
        ),
        "",
        f"Optimized baselines: ε reached for {ob['converged_fraction']:.0%} of (image, baseline) pairs, "
        f"{ob['iterations_mean']:.1f} sign steps on average, logit distance {ob['initial_distance_mean']:.2f} → "
        f"{ob['final_distance_mean']:.2f}; optimisation {ob['seconds_per_image_middle']:.3f} s/image (middle "
        f"width) + {ob['seconds_per_image_others']:.3f} s/image (other widths).",
        "Physical floor: the bare forward+backward passes of the same rows per image, timed in every image "
        "group beside the methods (the row above). Measured once before the run: one bare forward+backward "
        f"{fb * 1e3:.2f} ms per row, one bare forward {p['bare_model']['forward_s_per_row'] * 1e3:.2f} ms per row.",
        f"Metric evaluation: {p['metric_seconds_per_image_per_method']:.3f} s per image and method. "
        f"Wall time {p['wall_seconds']:.0f} s. Environment: {p['environment']}.",
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(text))


if __name__ == "__main__":
    main()
