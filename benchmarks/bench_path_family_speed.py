"""Speed of the path family (issue 27) per image, at equal gradient evaluations.

For each image, side by side in one run (interleaved, best of ``--repeats``):

- ``ours``: BlurIntegratedGradients, GuidedIntegratedGradients,
  AdversarialGradientIntegration and IDGI(IntegratedGradients);
- ``captum_ig``: Captum IntegratedGradients with the same number of gradient
  evaluations (``n_steps``; AGI: ``2 * classes * steps``, its two gradients
  per path point), all rows in one chunk (``internal_batch_size``);
- ``saliency``: PAIR ``saliency`` 0.2.1's BlurIG (``batch_size = n_steps``)
  and GuidedIG, driven through ``call_model_function`` with the same torch
  model (no reference exists for AGI or IDGI);
- floors: the bare forward+backward passes of the same rows, in one batch
  (every method) and one row at a time (Guided IG's path is sequential: its
  floor is ``n_steps`` one-row passes).

Each method explains the predicted class. Ratios are taken per image and
summarised by their median. Do not take final timings on a loaded machine.

Examples::

    python benchmarks/bench_path_family_speed.py --model cnn --n-images 5
    python benchmarks/bench_path_family_speed.py --model effnet --n-images 3
    python benchmarks/bench_path_family_speed.py --model cnn --n-images 1 --n-steps 10 --repeats 1 --out /tmp/smoke
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import types
from typing import Any, Callable, Dict, List

import numpy as np
import torch
from captum.attr import IntegratedGradients

from captum_prior.attr import (
    IDGI,
    AdversarialGradientIntegration,
    BlurIntegratedGradients,
    GuidedIntegratedGradients,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from valid_path_common import (  # noqa: E402
    RESULTS,
    command_line,
    environment,
    load_model_and_data,
    md_table,
    write_json,
)


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def saliency_model_function(model: torch.nn.Module, target: int) -> Callable:
    import saliency.core as sal

    def fn(x_batch, call_model_args=None, expected_keys=None):
        xt = torch.tensor(np.moveaxis(np.asarray(x_batch), -1, 1), dtype=torch.float32,
                          requires_grad=True)
        (g,) = torch.autograd.grad(model(xt)[:, target].sum(), xt)
        return {sal.INPUT_OUTPUT_GRADIENTS: np.moveaxis(g.numpy(), 1, -1)}

    return fn


def patch_numpy2_quantile() -> None:
    """saliency 0.2.1's GuidedIG calls np.quantile(interpolation=...), removed
    in NumPy 2 (now ``method=``); give its module a numpy accepting the old name."""
    import saliency.core.guided_ig as gig

    class _NP(types.ModuleType):
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def quantile(a, q, interpolation="linear", **kw):
            return np.quantile(a, q, method=interpolation, **kw)

    gig.np = _NP("np")


def bare(model: torch.nn.Module, x: torch.Tensor, target: int, rows: int, per_call: int) -> None:
    xb = x.expand(rows, *x.shape[1:])
    for i in range(0, rows, per_call):
        xr = xb[i : i + per_call].clone().requires_grad_()
        torch.autograd.grad(model(xr)[:, target].sum(), xr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("cnn", "effnet"), default="cnn")
    p.add_argument("--n-images", type=int, default=3)
    p.add_argument("--n-steps", type=int, default=150)
    p.add_argument("--agi-classes", type=int, default=None,
                   help="default: min(10, classes - 1); steps per class n_steps // classes")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    import saliency.core as sal

    patch_numpy2_quantile()
    model, x_all, _y, desc = load_model_and_data(a.model, a.n_images)
    K = a.n_steps
    with torch.no_grad():
        out = model(x_all)
    pred = out.argmax(1)
    C = out.shape[1]
    k = a.agi_classes or min(10, C - 1)
    m = max(1, K // k)
    agi_grads = 2 * k * m
    ig = IntegratedGradients(model)
    blur, guided = BlurIntegratedGradients(model), GuidedIntegratedGradients(model)
    agi = AdversarialGradientIntegration(model)
    idgi = IDGI(ig)
    times: Dict[str, List[float]] = {}

    def rec(key: str, fn: Callable[[], Any]) -> None:
        times.setdefault(key, []).append(best_time(fn, a.repeats))

    def one_image(i: int) -> None:
        x, t = x_all[i : i + 1], int(pred[i])
        hwc = np.moveaxis(x[0].numpy(), 0, -1)
        cmf = saliency_model_function(model, t)
        rec("captum_ig", lambda: ig.attribute(x, 0.0, t, n_steps=K, internal_batch_size=K))
        rec("floor_batched", lambda: bare(model, x, t, K, K))
        rec("floor_one_row", lambda: bare(model, x, t, K, 1))
        rec("blur_ig", lambda: blur.attribute(x, t, n_steps=K, max_sigma=50.0, internal_batch_size=K))
        rec("saliency_blur_ig", lambda: sal.BlurIG().GetMask(
            hwc, cmf, max_sigma=50, steps=K, batch_size=K))
        rec("guided_ig", lambda: guided.attribute(x, 0.0, t, n_steps=K, internal_batch_size=K))
        rec("saliency_guided_ig", lambda: sal.GuidedIG().GetMask(
            hwc, cmf, x_baseline=np.zeros_like(hwc), x_steps=K, fraction=0.25, max_dist=0.02))
        rec("idgi_ig", lambda: idgi.attribute(x, 0.0, t, n_steps=K, method="riemann_left",
                                              internal_batch_size=K + 1))
        rec("agi", lambda: agi.attribute(x, t, n_steps=m, n_classes=k, epsilon=0.05,
                                         internal_batch_size=2 * k,
                                         generator=torch.Generator().manual_seed(i)))
        rec("captum_ig_agi_evals", lambda: ig.attribute(x, 0.0, t, n_steps=agi_grads,
                                                        internal_batch_size=K))

    t0 = time.time()
    for i in range(len(x_all)):
        one_image(i)
        print(f"[{i + 1}/{len(x_all)}] {time.time() - t0:.0f}s", flush=True)

    med = {key: float(np.median(v)) for key, v in times.items()}

    def ratio(num: str, den: str) -> float:
        return float(np.median(np.asarray(times[num]) / np.asarray(times[den])))

    rows = [
        ["Blur IG", f"{K}", f"{med['blur_ig']:.3f}", f"{ratio('blur_ig', 'captum_ig'):.2f}",
         f"{ratio('blur_ig', 'saliency_blur_ig'):.2f}", f"{ratio('blur_ig', 'floor_batched'):.2f}"],
        ["Guided IG", f"{K}", f"{med['guided_ig']:.3f}", f"{ratio('guided_ig', 'captum_ig'):.2f}",
         f"{ratio('guided_ig', 'saliency_guided_ig'):.2f}",
         f"{ratio('guided_ig', 'floor_one_row'):.2f} (one-row floor)"],
        ["IG + IDGI", f"{K + 1}", f"{med['idgi_ig']:.3f}", f"{ratio('idgi_ig', 'captum_ig'):.2f}",
         "n/a", f"{ratio('idgi_ig', 'floor_batched'):.2f}"],
        [f"AGI ({k} classes x {m} steps)", f"{agi_grads}", f"{med['agi']:.3f}",
         f"{ratio('agi', 'captum_ig_agi_evals'):.2f} (IG at {agi_grads} evaluations)", "n/a", ""],
        ["Captum IG", f"{K}", f"{med['captum_ig']:.3f}", "1.00", "", f"{ratio('captum_ig', 'floor_batched'):.2f}"],
        ["saliency BlurIG", f"{K}", f"{med['saliency_blur_ig']:.3f}", "", "", ""],
        ["saliency GuidedIG", f"{K}", f"{med['saliency_guided_ig']:.3f}", "", "", ""],
        ["bare fwd+bwd, one batch", f"{K}", f"{med['floor_batched']:.3f}", "", "", "1.00"],
        ["bare fwd+bwd, one row per call", f"{K}", f"{med['floor_one_row']:.3f}", "", "", ""],
    ]
    head = ["Method", "gradient evaluations", "seconds / image (median)", "× Captum IG",
            "× saliency 0.2.1", "× floor"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out = a.out or os.path.join(RESULTS, f"path_family_speed_{a.model}")
    payload = dict(command=command_line(), data=desc, n_steps=K, agi=dict(classes=k, steps=m),
                   seconds=times, median=med, commit=commit, uptime=load,
                   environment=environment())
    write_json(out + ".json", payload)
    text = [
        f"# Path family speed per image at equal gradient evaluations: {desc}",
        "",
        f"Command: `{command_line()}`  ",
        f"Commit {commit}; load: `{load}`; best of {a.repeats} per image, median over "
        f"{len(x_all)} images; ratios are per image, then the median.",
        "",
        md_table(head, rows),
        "",
        f"Environment: {environment()}.",
        "",
    ]
    with open(out + ".md", "w") as f:
        f.write("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
