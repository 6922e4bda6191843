"""DeepPrior-EG's Tables 1, 2 and 4 layout for eight attribution methods.

KPM, KNM, KAM, RPM, RNM, RAM (image sequential-perturbation protocol) and
insertion / deletion AUC (RISE protocol), with 95 % bootstrap CIs over images
and paired differences to EG, for IntegratedGradients, DeepLift (the paper's
LIFT), ExpectedGradients, DeepMGM-EG, DeepBGMM-EG, Lime, BayLime and
Grad-CAM, on

* the default FashionCNN with Fashion-MNIST test images (``--model fashion_cnn``),
* EfficientNet-Lite0 with the 20 labelled ImageNet photos
  (``--model efficientnet_lite0``).

The methods can be run in separate invocations (``--methods``; each writes
``results/metrics_tables_<model>_<method>.json`` with per-image values) and
combined with ``--merge`` into ``results/metrics_tables_<model>.{json,md}``,
so that no single run exceeds ~15 min on a shared 2-core machine.

Settings (and what is scaled down from the paper) are written into the
result files. Usage::

    python benchmarks/bench_metrics_tables.py --model fashion_cnn --methods IG,DeepLift
    python benchmarks/bench_metrics_tables.py --model fashion_cnn --merge
    python benchmarks/bench_metrics_tables.py --quick            # smoke test
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from collections import Counter

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()
KR = ("KPM", "KNM", "KAM", "RPM", "RNM", "RAM")
COLS = KR + ("insertion", "deletion", "ins-del")
METHODS = ("IG", "DeepLift", "EG", "DeepMGM-EG", "DeepBGMM-EG", "DeepMGM-EG (old defaults)",
           "DeepBGMM-EG (old defaults)", "ValidPathGradients", "Lime", "BayLime", "Grad-CAM")
#: method name -> file-name-safe tag
TAGS = {m: m.replace(" (old defaults)", "-old") for m in METHODS}

DEFAULTS = {
    # n_images, n_samples (IG steps, EG samples), lime samples, percent, ins/del steps, batch
    "fashion_cnn": dict(n_images=500, n_samples=16, lime_samples=64, percent=0.1, n_steps=14, batch=50,
                        dl_refs=16),
    "efficientnet_lite0": dict(n_images=6, n_samples=16, lime_samples=64, percent=0.1, n_steps=16, batch=2,
                               dl_refs=4),
}


class _Sequencer(nn.Module):
    """Stand-in for a module called several times per forward: the k-th call
    goes to the k-th copy, so that DeepLift's hooks see each call once."""

    def __init__(self, module: nn.Module, n: int) -> None:
        super().__init__()
        self.copies = nn.ModuleList([copy.deepcopy(module) for _ in range(n)])
        self.k = 0

    def forward(self, *args, **kwargs):
        m = self.copies[self.k % len(self.copies)]
        self.k += 1
        return m(*args, **kwargs)


class _ReLU6(nn.Module):
    """ReLU6(x) = ReLU(x) - ReLU(x - 6), as two ReLUs Captum's DeepLift supports
    (it has no rule for nn.ReLU6 and would fall back to the plain gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.low = nn.ReLU()
        self.high = nn.ReLU()

    def forward(self, x):
        # separate input tensors: Captum's backward hooks rescale the gradient
        # of a module's input tensor, which must not be shared by both ReLUs
        return self.low(x.clone()) - self.high(x - 6.0)


def split_reused_modules(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` for DeepLift: each leaf module called once per
    forward (FashionCNN reuses its pool, EfficientNet its ReLU6 modules), then
    every nn.ReLU6 written as two ReLUs. The output is unchanged."""
    model = copy.deepcopy(model).eval()
    counts: Counter = Counter()
    hooks = [m.register_forward_hook(lambda mod, i, o: counts.update([id(mod)]))
             for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(example[:1])
    for h in hooks:
        h.remove()
    seqs = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not list(child.children()) and counts[id(child)] > 1:
                s = _Sequencer(child, counts[id(child)])
                setattr(parent, name, s)
                seqs.append(s)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, _ReLU6())

    def reset(*_):
        for s in seqs:
            s.k = 0

    model.register_forward_pre_hook(reset)
    return model


def grid_mask(side: int, cells: int) -> torch.Tensor:
    """``1 x 1 x side x side`` superpixel ids of a ``cells x cells`` grid."""
    idx = torch.arange(side) * cells // side
    return (idx.view(-1, 1) * cells + idx.view(1, -1)).view(1, 1, side, side)


def bootstrap_ci(v: np.ndarray):
    """95 % BCa interval of the mean (captum_prior.metrics.stats)."""
    from captum_prior.metrics.stats import mean_ci

    r = mean_ci(v)
    return r["low"], r["high"]


def setup(model_name: str, n_images: int):
    if model_name == "fashion_cnn":
        from captum_prior.data import load_fashion_mnist, load_fashion_mnist_sample
        from captum_prior.models import load_fashion_cnn

        model = load_fashion_cnn()
        x, y = load_fashion_mnist_sample(n_images)
        xt, _ = load_fashion_mnist("train")
        g = torch.Generator().manual_seed(0)
        refs = xt[torch.randperm(len(xt), generator=g)[:100]]
        return model, x[:n_images], y[:n_images], refs, model.conv3
    from captum_prior.models.efficientnet import (
        load_efficientnet_lite0,
        load_imagenet_samples,
    )

    model = load_efficientnet_lite0()
    x, y, _ = load_imagenet_samples()
    return model, x[:n_images], y[:n_images], x, None


def build_methods(model, model_name, refs, gradcam_layer, args, x_example):
    from captum.attr import (
        DeepLiftShap,
        IntegratedGradients,
        LayerAttribution,
        LayerGradCam,
        Lime,
    )

    from captum_prior._features import resolve_layer
    from captum_prior.attr import (
        BayLime,
        DeepPriorExpectedGradients,
        ExpectedGradients,
        ValidPathGradients,
    )
    from captum_prior.priors import BGMMPrior, MGMPrior

    side = x_example.shape[-1]
    ibs = 1000 if model_name == "fashion_cnn" else 32
    dl_model = split_reused_modules(model, x_example)
    if gradcam_layer is None:  # EfficientNet: the head's ReLU6 (2nd call of the root's ReLU6)
        gradcam_model = dl_model
        gradcam_layer = dl_model.model._swish.copies[1]
    else:
        gradcam_model = model
    mask = grid_mask(side, 7)
    dl_refs = refs[: args.dl_refs]

    # the defaults before issue 15: the last registered Conv2d, the shift in input
    # units (scale 1 = one input unit), unclamped, the map as computed
    last_conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    old = dict(layer=resolve_layer(model, last_conv), scale=1.0, data_std=1.0, clamp=None)

    def vpg(xb, tb, i):
        # 3 optimized baselines sharing n_samples path steps (as many gradients as EG)
        return ValidPathGradients(model).attribute(
            xb, target=tb, n_steps=max(args.n_samples, 3), n_baselines=3, internal_batch_size=ibs,
            generator=torch.Generator().manual_seed(args.seed + i),
            method="monte_carlo", input_range=(0.0, 1.0))  # the paper's sampling, as in the committed results

    def eg_with(prior):
        def run(xb, tb, i):
            gen = torch.Generator().manual_seed(args.seed + i)
            if prior is None:
                return ExpectedGradients(model).attribute(
                    xb, refs, target=tb, n_samples=args.n_samples, internal_batch_size=ibs, generator=gen)
            return DeepPriorExpectedGradients(model, prior).attribute(
                xb, refs, target=tb, n_samples=args.n_samples, internal_batch_size=ibs, generator=gen)
        return run

    def lime(xb, tb, i):
        torch.manual_seed(args.seed + i)
        return Lime(model).attribute(xb, baselines=0.0, target=tb, feature_mask=mask,
                                     n_samples=args.lime_samples,
                                     perturbations_per_eval=args.lime_samples)

    def baylime(xb, tb, i):
        return BayLime(model, random_state=args.seed + i).attribute(
            xb, baselines=0.0, target=tb, feature_mask=mask, n_samples=args.lime_samples,
            perturbations_per_eval=args.lime_samples)

    def gradcam(xb, tb, i):
        a = LayerGradCam(gradcam_model, gradcam_layer).attribute(xb, target=tb, relu_attributions=True)
        return LayerAttribution.interpolate(a, (side, side), "bilinear").detach()

    return {
        "IG": lambda xb, tb, i: IntegratedGradients(model).attribute(
            xb, baselines=0.0, target=tb, n_steps=args.n_samples, internal_batch_size=ibs),
        "DeepLift": lambda xb, tb, i: DeepLiftShap(dl_model).attribute(xb, baselines=dl_refs, target=tb),
        "EG": eg_with(None),
        "DeepMGM-EG": eg_with(MGMPrior(model)),
        "DeepBGMM-EG": eg_with(BGMMPrior(model, random_state=args.seed)),
        "DeepMGM-EG (old defaults)": eg_with(MGMPrior(model, variant="paper", **old)),
        "DeepBGMM-EG (old defaults)": eg_with(BGMMPrior(model, random_state=args.seed, **old)),
        "ValidPathGradients": vpg,
        "Lime": lime,
        "BayLime": baylime,
        "Grad-CAM": gradcam,
    }


def run_methods(args) -> None:
    import warnings

    from tqdm.auto import tqdm

    from captum_prior.metrics import insertion_deletion, keep_remove

    warnings.filterwarnings("ignore", category=UserWarning)
    model, x, y, refs, layer = setup(args.model, args.n_images)
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 100]).argmax(1) for i in range(0, len(x), 100)])
    methods = build_methods(model, args.model, refs, layer, args, x[:1])
    chosen = args.methods.split(",") if args.methods else list(METHODS)
    for name in chosen:
        if name not in methods:
            raise SystemExit(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    mb = 512 if args.model == "fashion_cnn" else 16
    for name in chosen:
        fn = methods[name]
        vals = {k: [] for k in COLS}
        t_attr = t_metric = 0.0
        masker = args.masker
        path = RESULTS / f"metrics_tables_{args.model}_{TAGS[name]}.json"
        start = 0
        if args.resume and path.exists():  # continue a cut run with the same settings
            old = json.loads(path.read_text())
            if old["settings"] != settings(args, masker) or old["n_images_planned"] != len(x):
                raise SystemExit(f"--resume: {path.name} was made with other settings; rerun without --resume")
            vals = old["values"]
            start = old["n_images"]
            t_attr, t_metric = old["seconds_attribution"], old["seconds_metrics"]
            if start % args.batch:
                raise SystemExit(f"--resume: {start} images done is not a multiple of --batch {args.batch}")
        for i in tqdm(range(start, len(x), args.batch), desc=name, leave=False):
            xb, tb = x[i : i + args.batch], pred[i : i + args.batch]
            t0 = time.perf_counter()
            a = fn(xb, tb, i).detach()
            t1 = time.perf_counter()
            kr = keep_remove(model, xb, a, target=tb, percent=args.percent, masker=args.masker,
                             max_examples_per_batch=mb)
            masker = kr.masker
            for k in KR:
                vals[k] += getattr(kr, k).tolist()
            res = insertion_deletion(model, xb, a, target=tb, n_steps=args.n_steps, max_examples_per_batch=mb)
            vals["insertion"] += res.insertion.tolist()
            vals["deletion"] += res.deletion.tolist()
            vals["ins-del"] += res.difference.tolist()
            t_attr += t1 - t0
            t_metric += time.perf_counter() - t1
            done = len(vals["ins-del"])
            out = {
                "command": "python " + " ".join(sys.argv) + (f" (resumed at image {start})" if start else ""),
                "model": args.model, "method": name,
                "n_images": done, "n_images_planned": int(len(x)), "settings": settings(args, masker),
                "accuracy_on_images": float((pred[:done] == y[:done]).float().mean()),
                "seconds_attribution": t_attr, "seconds_metrics": t_metric,
                "loadavg": os.getloadavg(), "values": vals,
            }
            RESULTS.mkdir(exist_ok=True)  # written after every batch: a cut run keeps its images
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(out))
            os.replace(tmp, path)  # atomic
        print(name, {k: round(float(np.mean(v)), 4) for k, v in vals.items()},
              f"attr {t_attr:.0f}s metrics {t_metric:.0f}s", flush=True)


def settings(args, masker):
    return {
        "n_samples (IG steps, EG/DeepPrior-EG samples)": args.n_samples,
        "lime_samples (Lime/BayLime, 7x7 grid superpixels, black baseline)": args.lime_samples,
        "keep_remove": f"image protocol, masker {masker}, {args.percent:.0%} steps, max logit",
        "insertion_deletion": f"RISE: {args.n_steps} steps, zero deletion / blur(11, 5) insertion, softmax prob",
        "target": "predicted class",
        "DeepLift": f"captum DeepLiftShap, {args.dl_refs} references (reused modules split, ReLU6 as 2 ReLUs)",
        "EG references": "100 Fashion-MNIST training images" if args.model == "fashion_cnn"
        else "the 20 ImageNet photos",
        "Grad-CAM": "LayerGradCam on the last conv block (ReLU'd, bilinear upsampled)",
        "DeepMGM-EG / DeepBGMM-EG": "new defaults: layer=None (last spatial output), orientation "
        "'object', scale DEFAULT_SCALE x per-channel std of the references, baselines clamped to the "
        "references' per-channel range",
        "(old defaults)": "layer = last registered Conv2d, scale 1.0 in input units, unclamped, "
        "orientation 'paper' (the behaviour before issue 15)",
        "ValidPathGradients": "3 optimized baselines sharing n_samples path steps",
        "seed": args.seed, "batch": args.batch,
    }


def merge(args) -> None:
    from captum_prior.metrics.stats import mean_ci, paired_difference

    parts = {}
    for name in METHODS:
        p = RESULTS / f"metrics_tables_{args.model}_{TAGS[name]}.json"
        if p.exists():
            part = json.loads(p.read_text())
            if len(part["values"]["ins-del"]):
                parts[name] = part
    if not parts:
        raise SystemExit("no per-method results to merge")
    excluded = {}
    if "EG" in parts:  # only runs with the same metric protocol (masker, steps) are comparable
        proto = parts["EG"]["settings"].get("keep_remove")
        for n in list(parts):
            if parts[n]["settings"].get("keep_remove") != proto:
                excluded[n] = f"{parts.pop(n)['settings'].get('keep_remove')} (EG: {proto})"
    refs = [r for r in ("EG", "IG") if r in parts]
    summary = {}
    for name, part in parts.items():
        summary[name] = {}
        for k in COLS:
            v = np.array(part["values"][k])
            ci = mean_ci(v)
            entry = {"mean": ci["mean"], "ci95": (ci["low"], ci["high"]), "n": len(v), "vs": {}}
            for r in refs:
                if r == name:
                    continue
                w = np.array(parts[r]["values"][k])
                n = min(len(v), len(w))  # paired on the images both runs finished (same order)
                entry["vs"][r] = dict(paired_difference(v[:n], w[:n]), n=n)
            summary[name][k] = entry
    first = parts.get("EG", next(iter(parts.values())))
    report = {
        "command": "python " + " ".join(sys.argv),
        "per_method_commands": {n: p["command"] for n, p in parts.items()},
        "model": args.model, "n_images": {n: p["n_images"] for n, p in parts.items()},
        "n_images_planned": first.get("n_images_planned", first["n_images"]),
        "settings": {n: p["settings"] for n, p in parts.items()},
        "accuracy_on_images": first["accuracy_on_images"],
        "seconds_per_image": {n: {"attribution": p["seconds_attribution"] / p["n_images"],
                                  "metrics": p["seconds_metrics"] / p["n_images"]} for n, p in parts.items()},
        "loadavg": {n: p["loadavg"] for n, p in parts.items()},
        "summary": summary, "torch": torch.__version__, "machine": platform.platform(),
    }
    (RESULTS / f"metrics_tables_{args.model}.json").write_text(json.dumps(report, indent=2))
    s = first["settings"]
    lines = [f"# Faithfulness tables on {args.model} (DeepPrior-EG Tables 1, 2 and 4 layout)", "",
             f"Merged with `{report['command']}` from:", ""]
    lines += [f"- `{c}`" for c in sorted(set(report["per_method_commands"].values()))]
    lines += ["", f"Images per method (of {report['n_images_planned']} planned): "
              + ", ".join(f"{n} {k}" for n, k in report["n_images"].items())
              + f"; model accuracy on the EG images {report['accuracy_on_images']:.3f}. Settings: "
              + "; ".join(f"{k}: {v}" for k, v in s.items()) + ".", "",
              "KPM..RAM: higher is better for KPM, KAM, RPM, RAM; with the max-logit score KNM/RNM "
              "measure the same max-logit gain/drop with sign -1, as in the paper. Insertion: higher is "
              "better; deletion: lower is better; ins-del: higher is better.", "",
              "Masker: every merged row used the same keep/remove protocol, `"
              + str(parts[next(iter(parts))]["settings"].get("keep_remove")) + "` (`--masker`; the authors' "
              "masker is inpaint_telea; benchmarks/bench_keep_remove_maskers.py puts Telea and mean side "
              "by side on the same attributions). "
              "Not merged (run with another metric protocol): "
              + ("; ".join(f"{n}: {v}" for n, v in excluded.items()) or "none") + ".", "",
              "Mean [95 % BCa bootstrap CI over images] (`captum_prior.metrics.stats`); n = images "
              "finished (CIs from n < 5 images are not meaningful):", "",
              "| method | n | " + " | ".join(COLS) + " |", "|---|---" + "|---" * len(COLS) + "|"]
    for name, sm in summary.items():
        lines.append(f"| {name} | {sm['ins-del']['n']} | " + " | ".join(
            f"{sm[k]['mean']:.4f} [{sm[k]['ci95'][0]:.4f}, {sm[k]['ci95'][1]:.4f}]" for k in COLS) + " |")
    for r in refs:
        lines += ["", f"Paired difference to {r} (method - {r}), mean [95 % BCa CI] over the images both "
                  "finished (* = CI excludes 0):", "",
                  "| method | n | " + " | ".join(COLS) + " |", "|---|---" + "|---" * len(COLS) + "|"]
        for name, sm in summary.items():
            if r not in sm[COLS[0]]["vs"]:
                continue
            cells = []
            for k in COLS:
                d = sm[k]["vs"][r]
                cells.append(f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]" + ("*" if d["significant"] else ""))
            lines.append(f"| {name} | {sm[COLS[0]]['vs'][r]['n']} | " + " | ".join(cells) + " |")
    lines += ["", "Seconds per image (attribution / metrics): " + ", ".join(
        f"{n} {v['attribution']:.2f}/{v['metrics']:.2f}" for n, v in report["seconds_per_image"].items()),
        "", "The machine (2 cores) was shared with other jobs while these ran (load averages are in the "
        "JSON), so the seconds are not comparable across methods.", ""]
    (RESULTS / f"metrics_tables_{args.model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="fashion_cnn", choices=sorted(DEFAULTS))
    p.add_argument("--methods", default=None, help="comma-separated subset of " + ",".join(METHODS))
    p.add_argument("--n-images", type=int, default=None)
    p.add_argument("--n-samples", type=int, default=None)
    p.add_argument("--lime-samples", type=int, default=None)
    p.add_argument("--percent", type=float, default=None, help="keep/remove step (paper: 0.01)")
    p.add_argument("--n-steps", type=int, default=None, help="insertion/deletion steps (RISE: image width)")
    p.add_argument("--batch", type=int, default=None, help="images per attribution call")
    p.add_argument("--dl-refs", type=int, default=None, help="DeepLiftShap references")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--masker", default="inpaint_telea",
                   help="keep/remove masker for every method (default: the authors' inpaint_telea); only "
                   "runs with one masker are merged")
    p.add_argument("--resume", action="store_true",
                   help="continue each method's per-method JSON (same settings) from its last finished image")
    p.add_argument("--merge", action="store_true", help="combine per-method results into the tables")
    p.add_argument("--quick", action="store_true", help="smoke test: 10 Fashion images, tiny settings")
    args = p.parse_args()
    for k, v in DEFAULTS[args.model].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.quick:
        args.n_images, args.n_samples, args.lime_samples, args.batch = 10, 4, 20, 5
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    if args.merge:
        merge(args)
    else:
        run_methods(args)


if __name__ == "__main__":
    main()
