"""Choose DeepPrior-EG's default ``scale`` on the development data only.

Development data: Fashion-MNIST (the bundled FashionCNN, test images, 100
training images as references) and the 20 bundled ImageNet photos
(EfficientNet-Lite0, the 20 photos as references). For each image the MGM
and BGMM prior maps (new defaults: orientation "object", layer=None, clamp to
the reference range, scale in the reference set's per-channel std) are
computed once; DeepPrior-EG is then run at every scale with the same EG draws
(same generator seed), and plain EG (scale 0) is run with those draws too.

Metric: insertion - deletion AUC (RISE protocol, softmax of the predicted
class), paired against EG per image.

Selection rule, fixed before the run: the scale with the highest mean, over
the four (dataset, prior) cells, of the mean paired ins-del difference to EG.

Usage::

    python benchmarks/bench_deep_prior_scale_sweep.py --datasets fashion_cnn
    python benchmarks/bench_deep_prior_scale_sweep.py --datasets efficientnet_lite0
    python benchmarks/bench_deep_prior_scale_sweep.py --merge    # the table and the choice
    python benchmarks/bench_deep_prior_scale_sweep.py --quick --datasets fashion_cnn  # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()
SCALES = (0.1, 0.25, 0.5, 1.0, 2.0)
N_SAMPLES = {"fashion_cnn": 16, "efficientnet_lite0": 8}


class CachedPrior:
    """A deep-feature prior whose maps were computed once (per image) and are
    re-used at several scales: same units and clamp as the prior itself."""

    def __init__(self, prior, maps, scale):
        self.prior, self.maps, self.scale = prior, maps, scale

    def __call__(self, inputs, target=None, references=None):
        return self.maps * self.scale * self.prior.units(inputs, references)

    def baseline_range(self, references=None):
        return self.prior.baseline_range(references)


def setup(name, n_images):
    if name == "fashion_cnn":
        from captum_prior.data import load_fashion_mnist, load_fashion_mnist_sample
        from captum_prior.models import load_fashion_cnn

        model = load_fashion_cnn()
        x, _ = load_fashion_mnist_sample(n_images)
        xt, _ = load_fashion_mnist("train")
        g = torch.Generator().manual_seed(0)
        refs = xt[torch.randperm(len(xt), generator=g)[:100]]
        return model, x[:n_images], refs, N_SAMPLES[name], 14
    from captum_prior.models.efficientnet import (
        load_efficientnet_lite0,
        load_imagenet_samples,
    )

    model = load_efficientnet_lite0()
    x, _, _ = load_imagenet_samples()
    return model, x[:n_images], x, N_SAMPLES[name], 16


def run(name, args, partial=None):
    from captum_prior.attr import DeepPriorExpectedGradients, ExpectedGradients
    from captum_prior.metrics import insertion_deletion
    from captum_prior.priors import BGMMPrior, MGMPrior

    model, x, refs, n_samples, n_steps = setup(name, args.n_images[name])
    if args.quick:
        x, n_samples = x[:4], 4
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 50]).argmax(1) for i in range(0, len(x), 50)])
    priors = {"MGM": MGMPrior(model), "BGMM": BGMMPrior(model, random_state=0)}
    bs = 25 if name == "fashion_cnn" else 2
    ibs = 400 if name == "fashion_cnn" else 32
    vals = {"EG": []}
    vals.update({f"{p}@{s}": [] for p in priors for s in SCALES})
    t0 = time.perf_counter()
    for i in range(0, len(x), bs):
        xb, tb = x[i:i + bs], pred[i:i + bs]

        def score(a, xb=xb, tb=tb):
            r = insertion_deletion(model, xb, a, target=tb, n_steps=n_steps, max_examples_per_batch=64)
            return r.difference.tolist()

        gen = lambda i=i: torch.Generator().manual_seed(args.seed + i)  # noqa: E731
        a = ExpectedGradients(model).attribute(xb, refs, target=tb, n_samples=n_samples,
                                               internal_batch_size=ibs, generator=gen())
        vals["EG"] += score(a)
        for pname, prior in priors.items():
            maps = prior.prior_map(xb, target=tb)
            for s in SCALES:
                a = DeepPriorExpectedGradients(model, CachedPrior(prior, maps, s)).attribute(
                    xb, refs, target=tb, n_samples=n_samples, internal_batch_size=ibs, generator=gen())
                vals[f"{pname}@{s}"] += score(a)
        print(name, i + len(xb), "/", len(x), f"{time.perf_counter() - t0:.0f}s", flush=True)
        d = {"values": vals, "n_images": len(vals["EG"]), "n_images_planned": int(len(x)),
             "n_samples": n_samples, "n_steps": n_steps,
             "layers": {p: pr.layer_name_ for p, pr in priors.items()},
             "seconds": time.perf_counter() - t0, "command": "python " + " ".join(sys.argv),
             "loadavg": os.getloadavg()}
        if partial is not None:  # partial results after every batch (merge uses what is done)
            partial.write_text(json.dumps(d))
    return d


def main():
    from captum_prior.metrics.stats import paired_difference

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="fashion_cnn,efficientnet_lite0")
    p.add_argument("--fashion-images", type=int, default=200)
    p.add_argument("--photos", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--merge", action="store_true")
    p.add_argument("--note", default="", help="a sentence added to the merged report (e.g. what was cut)")
    args = p.parse_args()
    args.n_images = {"fashion_cnn": args.fashion_images, "efficientnet_lite0": args.photos}
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    out = {"command": "python " + " ".join(sys.argv), "scales": SCALES,
           "rule": "argmax over scales of the mean, over (dataset, prior), of the mean paired "
                   "ins-del difference to EG", "datasets": {}}
    suffix = "_quick" if args.quick else ""
    RESULTS.mkdir(exist_ok=True)
    for name in args.datasets.split(","):
        part = RESULTS / f"deep_prior_scale_sweep_{name}{suffix}.json"
        if args.merge:
            out["datasets"][name] = json.loads(part.read_text())
            continue
        d = run(name, args, part)
        out["datasets"][name] = d
    if not args.merge and len(out["datasets"]) < 2:
        return
    out["per_dataset_commands"] = {n: d["command"] for n, d in out["datasets"].items()}
    # summary
    lines = ["# DeepPrior-EG scale sweep on the development data", "",
             f"Command: `{out['command']}` from "
             + ", ".join(f"`{c}`" for c in out["per_dataset_commands"].values()), "",
             "Shift = map (oriented, [0, 1]) x scale x per-channel std of the reference set; baselines "
             "clamped to the reference set's per-channel range; layer=None. Metric: insertion - deletion "
             "AUC (RISE, softmax of the predicted class); paired difference to EG with the same EG draws, "
             "mean [95 % BCa CI] over images (* = CI excludes 0).", "",
             f"Selection rule (fixed before the run): {out['rule']}.", "",
             "EG samples per image: " + ", ".join(f"{n}: {d['n_samples']}" for n, d in out["datasets"].items())
             + ".", "",
             "| dataset | prior | " + " | ".join(f"scale {s}" for s in SCALES) + " |",
             "|---|---|" + "---|" * len(SCALES)]
    cell_means = {s: [] for s in SCALES}
    for name, d in out["datasets"].items():
        eg = d["values"]["EG"]
        d["EG_mean"] = float(np.mean(eg))
        d["paired"] = {}
        for pname in ("MGM", "BGMM"):
            cells = []
            for s in SCALES:
                pd_ = paired_difference(d["values"][f"{pname}@{s}"], eg)
                d["paired"][f"{pname}@{s}"] = pd_
                cell_means[s].append(pd_["mean"])
                cells.append(f"{pd_['mean']:+.4f} [{pd_['low']:+.4f}, {pd_['high']:+.4f}]"
                             + ("*" if pd_["significant"] else ""))
            lines.append(f"| {name} ({d['n_images']} of {d.get('n_images_planned', d['n_images'])} images, EG ins-del {d['EG_mean']:.4f}) | {pname} | "
                         + " | ".join(cells) + " |")
    score = {s: float(np.mean(v)) for s, v in cell_means.items()}
    best = max(score, key=score.get)
    out["score"] = score
    out["chosen_scale"] = best
    out["loadavg"] = os.getloadavg()
    lines += ["", "Mean over the cells: " + ", ".join(f"{s}: {v:+.4f}" for s, v in score.items()),
              "", f"**Chosen default scale: {best}** (rule above).", "",
              "Layers (layer=None): " + "; ".join(
                  f"{n}: {d['layers']}" for n, d in out["datasets"].items()), "",
              args.note, "",
              f"Machine shared with other jobs (load average {out['loadavg']}); timings not reported."]
    (RESULTS / f"deep_prior_scale_sweep{suffix}.json").write_text(json.dumps(out, indent=1))
    (RESULTS / f"deep_prior_scale_sweep{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
