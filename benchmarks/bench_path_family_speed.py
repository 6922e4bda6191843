"""Speed of the path family per image, at equal gradient evaluations.

For each image, side by side in one run and interleaved (every method once,
then every method again, ``--repeats`` rounds; the best round counts):

- ``Captum IG``: Captum's IntegratedGradients at the same number of gradient
  evaluations as the method it is compared with;
- ours: BlurIntegratedGradients, GuidedIntegratedGradients, IDGI of Captum's
  IG, and AdversarialGradientIntegration;
- ``saliency``: PAIR ``saliency`` 0.2.1's BlurIG and GuidedIG (the authors'
  reference code), driven through ``call_model_function`` with the same
  torch model (there is no reference package for IDGI or AGI);
- floors: the bare forward and backward passes of the same number of rows,
  in chunks of ``--chunk`` rows (every method), one row per call (Guided
  IG's path is sequential: one gradient per step, so its floor is
  ``n_steps`` one-row passes) and, for AGI, whose steps are sequential too,
  ``2 * classes`` rows per call.

Every method gets the same chunk size (``internal_batch_size``, saliency's
``batch_size``). AGI stops a path when its attack succeeds, so its gradient
evaluations are counted on an untimed run first, and Captum IG and the floor
are timed at that count. Ratios are taken per image, then their median.
Take final timings on a machine with nothing else running; the result file
records ``uptime``.

Examples::

    python benchmarks/bench_path_family_speed.py --model cnn --n-images 5 --repeats 3
    python benchmarks/bench_path_family_speed.py --model effnet --n-images 3 --repeats 3
    python benchmarks/bench_path_family_speed.py --model cnn --n-images 1 --n-steps 8 --repeats 1 --out /tmp/smoke
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


def saliency_model_function(model: torch.nn.Module, target: int) -> Callable:
    """PAIR saliency's ``call_model_function`` for a torch model (NHWC <-> NCHW)."""
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
    """The floor: ``rows`` forward and backward passes of ``x``, ``per_call`` rows at a time."""
    xb = x.expand(rows, *x.shape[1:])
    for i in range(0, rows, per_call):
        xr = xb[i : i + per_call].clone().requires_grad_()
        torch.autograd.grad(model(xr)[:, target].sum(), xr)


class RowCounter(torch.nn.Module):
    """The model, counting the rows it is called on with gradients enabled."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            self.rows += x.shape[0]
        return self.model(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("cnn", "effnet"), default="cnn")
    p.add_argument("--n-images", type=int, default=5)
    p.add_argument("--n-steps", type=int, default=150, help="gradient evaluations per method")
    p.add_argument("--chunk", type=int, default=None,
                   help="rows per model call for every method (default: n_steps for cnn, 16 for effnet)")
    p.add_argument("--agi-classes", type=int, default=None,
                   help="false classes per image (default: min(10, classes - 1)); "
                        "at most n_steps // (2 * classes) steps each")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: perf_counter (for a quiet machine); cpu: process_time, "
                        "less disturbed by other processes (indicative runs on a shared machine)")
    p.add_argument("--out", default=None, help="output path without extension")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    clock = time.perf_counter if a.clock == "wall" else time.process_time
    import saliency.core as sal

    patch_numpy2_quantile()
    model, x_all, _y, desc = load_model_and_data(a.model, a.n_images)
    K = a.n_steps
    B = a.chunk or (K if a.model == "cnn" else 16)
    with torch.no_grad():
        out = model(x_all)
    pred = out.argmax(1)
    C = out.shape[1]
    k = a.agi_classes or min(10, C - 1)
    m = max(1, K // (2 * k))  # two gradients per path point
    ig = IntegratedGradients(model)
    blur, guided = BlurIntegratedGradients(model), GuidedIntegratedGradients(model)
    idgi = IDGI(ig)
    times: Dict[str, List[float]] = {}
    agi_evals: List[int] = []

    def one_image(i: int) -> None:
        x, t = x_all[i : i + 1], int(pred[i])
        hwc = np.moveaxis(x[0].numpy(), 0, -1)
        cmf = saliency_model_function(model, t)

        def run_agi(net: Any) -> Any:
            return AdversarialGradientIntegration(net).attribute(
                x, t, n_steps=m, n_classes=k, epsilon=0.05, internal_batch_size=B,
                generator=torch.Generator().manual_seed(i))

        counter = RowCounter(model)
        run_agi(counter)  # untimed: how many gradient evaluations AGI makes
        E = max(counter.rows, 1)
        agi_evals.append(E)
        fns = {
            "captum_ig": lambda: ig.attribute(x, 0.0, t, n_steps=K, internal_batch_size=B),
            "floor": lambda: bare(model, x, t, K, B),
            "floor_one_row": lambda: bare(model, x, t, K, 1),
            "blur_ig": lambda: blur.attribute(x, t, n_steps=K, max_sigma=50.0,
                                              internal_batch_size=B),
            "saliency_blur_ig": lambda: sal.BlurIG().GetMask(
                hwc, cmf, max_sigma=50, steps=K, batch_size=B),
            "guided_ig": lambda: guided.attribute(x, 0.0, t, n_steps=K, fraction=0.25,
                                                  max_dist=0.02, internal_batch_size=B),
            "saliency_guided_ig": lambda: sal.GuidedIG().GetMask(
                hwc, cmf, x_baseline=np.zeros_like(hwc), x_steps=K, fraction=0.25,
                max_dist=0.02),
            "idgi_ig": lambda: idgi.attribute(x, 0.0, t, n_steps=K - 1, method="riemann_left",
                                              internal_batch_size=B),
            "agi": lambda: run_agi(model),
            "captum_ig_agi": lambda: ig.attribute(x, 0.0, t, n_steps=E, internal_batch_size=B),
            "floor_agi": lambda: bare(model, x, t, E, B),
            # AGI's steps are sequential: at most 2 k rows per call
            "floor_agi_steps": lambda: bare(model, x, t, E, min(B, 2 * k)),
        }
        best = {key: float("inf") for key in fns}
        for _r in range(a.repeats):
            for key, fn in fns.items():
                t0 = clock()
                fn()
                best[key] = min(best[key], clock() - t0)
        for key, v in best.items():
            times.setdefault(key, []).append(v)

    t0 = time.time()
    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    for i in range(len(x_all)):
        one_image(i)
        print(f"[{i + 1}/{len(x_all)}] {time.time() - t0:.0f}s", flush=True)
    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

    med = {key: float(np.median(v)) for key, v in times.items()}

    def ratio(num: str, den: str) -> str:
        return f"{float(np.median(np.asarray(times[num]) / np.asarray(times[den]))):.2f}"

    E_med = int(np.median(agi_evals))
    rows = [
        ["Blur IG", f"{K}", f"{med['blur_ig']:.4f}", ratio("blur_ig", "captum_ig"),
         ratio("blur_ig", "saliency_blur_ig"), ratio("blur_ig", "floor")],
        ["Guided IG", f"{K}", f"{med['guided_ig']:.4f}", ratio("guided_ig", "captum_ig"),
         ratio("guided_ig", "saliency_guided_ig"),
         f"{ratio('guided_ig', 'floor_one_row')} (one-row floor)"],
        ["IG + IDGI", f"{K}", f"{med['idgi_ig']:.4f}", ratio("idgi_ig", "captum_ig"), "n/a",
         ratio("idgi_ig", "floor")],
        [f"AGI ({k} classes x {m} steps)", f"{E_med} (counted)", f"{med['agi']:.4f}",
         f"{ratio('agi', 'captum_ig_agi')} (IG at the same count)", "n/a",
         f"{ratio('agi', 'floor_agi')}; {ratio('agi', 'floor_agi_steps')} "
         f"({2 * k}-row floor)"],
        ["Captum IG", f"{K}", f"{med['captum_ig']:.4f}", "1.00", "",
         ratio("captum_ig", "floor")],
        ["saliency BlurIG", f"{K}", f"{med['saliency_blur_ig']:.4f}",
         ratio("saliency_blur_ig", "captum_ig"), "1.00", ratio("saliency_blur_ig", "floor")],
        ["saliency GuidedIG", f"{K}", f"{med['saliency_guided_ig']:.4f}",
         ratio("saliency_guided_ig", "captum_ig"), "1.00",
         f"{ratio('saliency_guided_ig', 'floor_one_row')} (one-row floor)"],
        [f"floor: bare fwd+bwd, {B} rows per call", f"{K}", f"{med['floor']:.4f}",
         ratio("floor", "captum_ig"), "", "1.00"],
        ["floor: bare fwd+bwd, one row per call", f"{K}", f"{med['floor_one_row']:.4f}",
         ratio("floor_one_row", "captum_ig"), "", ""],
    ]
    head = ["Method", "gradient evaluations", "seconds / image (median)", "× Captum IG",
            "× saliency 0.2.1", "× floor"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    out = a.out or os.path.join(RESULTS, f"path_family_speed_{a.model}")
    payload = dict(command=command_line(), data=desc, n_steps=K, chunk=B, clock=a.clock,
                   agi=dict(classes=k, steps=m, gradient_evaluations=agi_evals),
                   seconds=times, median=med, commit=commit,
                   uptime=dict(before=load_before, after=load_after),
                   environment=environment())
    write_json(out + ".json", payload)
    text = [
        f"# Path family speed per image at equal gradient evaluations: {desc}",
        "",
        f"Command: `{command_line()}`  ",
        f"Commit {commit}; clock: {a.clock}; {B} rows per model call for every method; "
        f"best of {a.repeats} interleaved rounds per image, median over {len(x_all)} images; "
        "ratios are per image, then the median.  ",
        f"Load before: `{load_before}`  ",
        f"Load after: `{load_after}`",
        "",
        md_table(head, rows),
        "",
        "IG + IDGI evaluates the gradient at its path's points 0, 1/J, ..., 1 "
        f"(J = {K - 1} steps: {K} points). Guided IG's path is sequential (each step's "
        "gradient decides the next point), so its floor is one row per call; AGI's "
        f"steps are sequential too, each one call of at most {2 * k} rows (two per path), "
        "its second floor.",
        "",
        f"Environment: {environment()}.",
        "",
    ]
    with open(out + ".md", "w") as f:
        f.write("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
