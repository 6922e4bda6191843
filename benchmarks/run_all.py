"""Every speed benchmark, quick mode, one process, one table.

``python -m benchmarks`` (or ``python benchmarks/run_all.py``) times, for each
row, *ours*, the *peer* it replaces and the *floor* (the bare forward or
forward+backward passes over the same rows, at the best of a few chunk sizes
found in the warm-up, or the bare arithmetic of one fit) side by side: the
three are interleaved in every repeat (order rotated), and the table reports
the median over repeats with the min and max, the ratio to the peer and to
the floor (median of the per-repeat ratios, with min and max) and the peak
memory of ours (VmHWM over RSS before the call).  Every method runs with its
default batching (``internal_batch_size`` / ``max_examples_per_batch`` left
None) unless the row says otherwise.

Rows: ExpectedGradients vs Captum IntegratedGradients at equal rows;
DeepMGM-EG and DeepBGMM-EG vs Captum GradientShap at equal samples (one image
per call, as the committed speed results, and a batch of images);
ValidPathGradients vs IntegratedGradients; insertion/deletion vs the bare
forwards (and RISE's per-step loop); JGMM vs scikit-learn's GaussianMixture;
DMM-MEN per explanation vs Captum Lime.  Then the peak memory of
ExpectedGradients / DeepBGMM-EG at ``n_samples`` 50 and 400 (fresh process
per cell).

The machine this runs on may be shared: the load average is recorded per row.
Writes ``benchmarks/results/summary.{md,json}``; the previous summary (if any)
or the scattered committed results give the "before" column.

Usage::

    python -m benchmarks [--repeats 5] [--threads 1] [--full] [--only SUBSTR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's captum_prior
if str(HERE) not in sys.path:
    sys.path.insert(1, str(HERE))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()
COMMITTED = HERE / "results"  # the committed results give the "before" column


# -- measurement --------------------------------------------------------------
def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> Optional[float]:
    """Peak memory increase of one call: CUDA max allocated, or on Linux the
    resident-set high-water mark after resetting it (/proc/self/clear_refs)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status("VmRSS:")
        fn()
        return max(_status("VmHWM:") - base, 0) / 2**20
    except OSError:
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, cpu: Optional[List[float]] = None) -> float:
    """Wall seconds of one call; its process CPU seconds are appended to ``cpu``."""
    _sync(device)
    c0 = time.process_time()
    t0 = time.perf_counter()
    fn()
    _sync(device)
    wall = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    return wall


def best_floor(cands: Dict[Any, Callable[[], Any]], device: torch.device) -> "tuple[Any, Callable]":
    """The fastest candidate floor (two timings each, the min)."""
    best = None
    for key, fn in cands.items():
        fn()
        t = min(timed(fn, device) for _ in range(2))
        if best is None or t < best[0]:
            best = (t, key, fn)
    return best[1], best[2]


def measure(row: Dict[str, Any], repeats: int, device: torch.device) -> Dict[str, Any]:
    load0 = os.getloadavg()
    floors = row["floor"] if isinstance(row["floor"], dict) else {"-": row["floor"]}
    floor_key, floor = best_floor(floors, device)
    peer, peer_name = row["peer"], row["peer_name"]
    if isinstance(peer, dict):  # the peer is ours at its best explicit setting
        peer_key, peer = best_floor(peer, device)
        peer_name = peer_name.format(best=peer_key)
    fns = {"ours": row["ours"], "peer": peer, "floor": floor}
    for fn in fns.values():  # warm-up
        fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    cpu: Dict[str, List[float]] = {k: [] for k in fns}
    order = list(fns)
    for r in range(repeats):
        for k in order[r % 3 :] + order[: r % 3]:
            times[k].append(timed(fns[k], device, cpu[k]))
    peak = peak_memory_mb(row["ours"], device)

    def stats(v: List[float]) -> Dict[str, float]:
        return {"median": statistics.median(v), "min": min(v), "max": max(v)}

    rp = [o / p for o, p in zip(times["ours"], times["peer"])]
    rf = [o / f for o, f in zip(times["ours"], times["floor"])]
    rp_cpu = [o / p for o, p in zip(cpu["ours"], cpu["peer"])]
    return {
        "method": row["method"], "peer": peer_name, "model": row["model"],
        "what": row["what"], "floor_what": f"{row['floor_what']} (chunk {floor_key})" if floor_key != "-"
        else row["floor_what"],
        "seconds": {k: stats(v) for k, v in times.items()}, "times": times,
        "ratio_to_peer": stats(rp), "ratio_to_floor": stats(rf), "cpu_seconds": cpu,
        "cpu_ratio_to_peer": stats(rp_cpu),
        "peak_memory_MB": peak, "loadavg": [load0[0], os.getloadavg()[0]],
        "before_key": row.get("before_key"),
    }


# -- models and data ----------------------------------------------------------
def cnn64() -> nn.Module:
    """A small held-out CNN at 64 x 64 (seeded random weights: speed only)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    ).eval()


def load_model(name: str, device: torch.device):
    from captum_prior.data import load_fashion_mnist_sample

    if name == "fashion_cnn":
        from captum_prior.models import load_fashion_cnn

        x, _ = load_fashion_mnist_sample()
        return load_fashion_cnn().to(device), x[:16].to(device), x[100:200].to(device)
    if name == "cnn64":
        g = torch.Generator().manual_seed(0)
        x = torch.rand(24, 3, 64, 64, generator=g)
        return cnn64().to(device), x[:8].to(device), x[8:].to(device)
    from captum_prior.models.efficientnet import (
        load_efficientnet_lite0,
        load_imagenet_samples,
    )

    x, _, _ = load_imagenet_samples()
    return load_efficientnet_lite0().to(device), x[:4].to(device), x[4:20].to(device)


def bare_grad(model, rows: torch.Tensor, target, chunk: Optional[int]) -> Callable[[], None]:
    """Forward+backward of ``rows`` (target score summed), ``chunk`` rows a call."""
    def run():
        for s in range(0, rows.shape[0], chunk or rows.shape[0]):
            r = rows[s : s + (chunk or rows.shape[0])].detach().requires_grad_()
            out = model(r)
            t = target[s : s + r.shape[0]] if isinstance(target, torch.Tensor) else target
            sc = out.gather(1, t.view(-1, 1)) if isinstance(t, torch.Tensor) else out[:, t]
            torch.autograd.grad(sc.sum(), r)
    return run


def bare_fwd(model, rows: torch.Tensor, chunk: Optional[int]) -> Callable[[], None]:
    def run():
        with torch.no_grad():
            for s in range(0, rows.shape[0], chunk or rows.shape[0]):
                model(rows[s : s + (chunk or rows.shape[0])])
    return run


CHUNKS = (16, 32, 64, 128, 256, None)


def grad_floors(model, rows, target):
    return {c or "all": bare_grad(model, rows, target, c) for c in CHUNKS}


# -- rows -----------------------------------------------------------------------
def rows_attribution(model_name: str, device, quick: bool) -> List[Dict[str, Any]]:
    from captum.attr import GradientShap, IntegratedGradients

    from captum_prior.attr import DeepPriorExpectedGradients, ExpectedGradients
    from captum_prior.priors import BGMMPrior, MGMPrior

    model, x, refs = load_model(model_name, device)
    eff = model_name == "efficientnet_lite0"
    n_img = 1 if eff else 8
    x = x[:n_img]
    with torch.no_grad():
        t = model(x).argmax(1)
    n = 50
    out = []
    rows = x.repeat_interleave(n, 0)
    rt = t.repeat_interleave(n)
    # 224 x 224 rows: the fastest chunks are small (50 rows at once page-fault fresh memory)
    chunks = (5, 10, 25) if eff else CHUNKS
    floors = {c or "all": bare_grad(model, rows, rt, c) for c in chunks}
    if not eff or not quick:
        out.append(dict(
            method="ExpectedGradients", peer_name="Captum IntegratedGradients", model=model_name,
            what=f"{n_img} images in one call, {n} rows each (EG n_samples={n}, IG n_steps={n}), defaults",
            ours=lambda: ExpectedGradients(model).attribute(
                x, refs, target=t, n_samples=n, generator=torch.Generator(device).manual_seed(0)),
            peer=lambda: IntegratedGradients(model).attribute(x, target=t, n_steps=n),
            floor=floors, floor_what=f"bare fwd+bwd of the {n_img * n} rows", before_key=None))
    if not eff:
        def eg(ibs: Optional[int]) -> Callable[[], Any]:
            return lambda: ExpectedGradients(model).attribute(
                x, refs, target=t, n_samples=n, internal_batch_size=ibs,
                generator=torch.Generator(device).manual_seed(0))

        out.append(dict(
            method="ExpectedGradients (default chunk)", model=model_name,
            peer_name="ExpectedGradients, best internal_batch_size ({best})",
            what=f"{n_img} images in one call, n_samples={n}; ours: internal_batch_size=None, peer: the "
            f"fastest of {', '.join(str(c or 'all') for c in CHUNKS)} (found in the warm-up)",
            ours=eg(None), peer={c or "all": eg(c) for c in CHUNKS},
            floor=floors, floor_what=f"bare fwd+bwd of the {n_img * n} rows", before_key=None))

    def per_image(fn):
        def run():
            for i in range(n_img):
                fn(x[i : i + 1], t[i : i + 1])
        return run

    def gs(xx, tt):
        np.random.seed(0)
        torch.manual_seed(0)
        GradientShap(model).attribute(xx, refs, target=tt, n_samples=n, stdevs=0.0)

    def dp(prior):
        def run(xx, tt):
            DeepPriorExpectedGradients(model, prior).attribute(
                xx, refs, target=tt, n_samples=n, generator=torch.Generator(device).manual_seed(0))
        return run

    one_floors = {c or "all": bare_grad(model, x[:1].repeat_interleave(n, 0), t[:1], c) for c in chunks}

    def floor_per_image(key):
        def run():
            for _ in range(n_img):
                one_floors[key]()
        return run

    pf = {k: floor_per_image(k) for k in one_floors}
    for name, prior in (("DeepMGM-EG", MGMPrior(model)), ("DeepBGMM-EG", BGMMPrior(model, random_state=0))):
        out.append(dict(
            method=name, peer_name="Captum GradientShap(stdevs=0)", model=model_name,
            what=f"{n_img} image(s), one per call, n_samples={n} (prior included), defaults",
            ours=per_image(dp(prior)), peer=per_image(gs), floor=pf,
            floor_what=f"bare fwd+bwd of {n} rows per image", before_key=("deep_prior_eg", model_name, name)))
        if not eff:
            out.append(dict(
                method=name + " (batch)", peer_name="Captum GradientShap(stdevs=0)", model=model_name,
                what=f"{n_img} images in one call, n_samples={n} (prior included), defaults",
                ours=lambda p=prior: dp(p)(x, t), peer=lambda: gs(x, t), floor=floors,
                floor_what=f"bare fwd+bwd of the {n_img * n} rows", before_key=None))
    return out


def rows_vpg(device, quick: bool) -> List[Dict[str, Any]]:
    from captum.attr import IntegratedGradients

    from captum_prior.attr import ValidPathGradients

    model, x, _ = load_model("fashion_cnn", device)
    x = x[:4]
    with torch.no_grad():
        t = model(x).argmax(1)
    n = 150
    rows = x.repeat_interleave(n, 0)

    def vpg(ibs: Optional[int]) -> Callable[[], Any]:
        return lambda: ValidPathGradients(model).attribute(
            x, target=t, n_steps=n, internal_batch_size=ibs, generator=torch.Generator(device).manual_seed(0))

    what = f"4 images in one call, n_steps={n}, 3 optimized baselines (optimisation included)"
    floors = grad_floors(model, rows, t.repeat_interleave(n))
    return [dict(
        method="ValidPathGradients", peer_name="Captum IntegratedGradients", model="fashion_cnn",
        what=what + ", defaults", ours=vpg(None),
        peer=lambda: IntegratedGradients(model).attribute(x, target=t, n_steps=n),
        floor=floors, floor_what=f"bare fwd+bwd of the {4 * n} path rows", before_key=("vpg", "cnn")), dict(
        method="ValidPathGradients (default chunk)", model="fashion_cnn",
        peer_name="ValidPathGradients, best internal_batch_size ({best})",
        what=what + "; ours: internal_batch_size=None, peer: the fastest of "
        f"{', '.join(str(c or 'all') for c in CHUNKS)} (found in the warm-up)",
        ours=vpg(None), peer={c or "all": vpg(c) for c in CHUNKS},
        floor=floors, floor_what=f"bare fwd+bwd of the {4 * n} path rows", before_key=None)]


def rows_insertion_deletion(device, quick: bool) -> List[Dict[str, Any]]:
    from bench_insertion_deletion_speed import build_rows, loop_auc

    from captum_prior._image import gaussian_blur
    from captum_prior.metrics import insertion_deletion

    out = []
    for name, n_img, n_steps in (("cnn64", 4, 64), ("fashion_cnn", 16, 28)):
        model, x, _ = load_model(name, device)
        x = x[:n_img]
        g = torch.Generator().manual_seed(1)
        sal = torch.rand(x.shape, generator=g).to(device)
        with torch.no_grad():
            pred = model(x).argmax(1)
        blur = gaussian_blur(x, 11, 5.0)
        rows = build_rows(x, sal.mean(1, keepdim=True), n_steps, blur)
        prob = nn.Sequential(model, nn.Softmax(1)).eval()

        def loop(model=prob, x=x, sal=sal, pred=pred, blur=blur, n_steps=n_steps):
            for i in range(x.shape[0]):
                s = sal[i].mean(0)
                loop_auc(model, x[i], s, int(pred[i]), n_steps, torch.zeros_like(x[i]), False)
                loop_auc(model, x[i], s, int(pred[i]), n_steps, blur[i], True)

        out.append(dict(
            method="insertion_deletion", peer_name="RISE per-step loop", model=name,
            what=f"{n_img} images, {n_steps} steps, insertion + deletion ({rows.shape[0]} rows), defaults",
            ours=lambda m=prob, x=x, sal=sal, pred=pred, n_steps=n_steps: insertion_deletion(
                m, x, sal, target=pred, n_steps=n_steps),
            peer=loop, floor={c or "all": bare_fwd(prob, rows, c) for c in CHUNKS},
            floor_what=f"bare forwards of the {rows.shape[0]} rows (built beforehand)",
            before_key=("insertion_deletion", name)))
    return out


def rows_jgmm(device, quick: bool) -> List[Dict[str, Any]]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    from captum_prior._features import layer_features
    from captum_prior.data import load_fashion_mnist
    from captum_prior.models import load_fashion_cnn
    from captum_prior.proxy import JointGaussianMixture

    warnings.simplefilter("ignore", ConvergenceWarning)
    n = 20000 if quick else 60000
    model = load_fashion_cnn()
    xs, _ = load_fashion_mnist("train")
    lows, outs = [], []
    for i in range(0, n, 2000):
        f, o = layer_features(model, model.conv2, xs[i : i + 2000], batch_size=2000, with_outputs=True)
        lows.append(torch.nn.functional.adaptive_avg_pool2d(f, 1).flatten(1))
        outs.append(o)
    X, Y = torch.cat(lows).double(), torch.cat(outs).double()
    Xn = X.numpy()
    kx, ky, iters = 64, 10, 30
    xx = torch.cat([X * X, X], 1)
    coef = torch.randn(kx, xx.shape[1], dtype=torch.float64)

    def floor():
        for _ in range(iters):
            r = xx @ coef.T
            _ = r.T @ xx

    return [dict(
        method="JointGaussianMixture", peer_name="sklearn GaussianMixture(diag) on X", model="fashion_cnn conv2",
        what=f"fit, {n} rows, 64 + 10 dims, K_x=64, K_y=10, {iters} EM iterations (tol=0), float64",
        ours=lambda: JointGaussianMixture(kx, ky, max_iter=iters, tol=0.0, random_state=0).fit(X, Y),
        peer=lambda: GaussianMixture(kx, covariance_type="diag", max_iter=iters, tol=0.0, random_state=0).fit(Xn),
        floor=floor, floor_what=f"the two GEMMs of a diag-GMM EM iteration x {iters}",
        before_key=("jgmm",))]


def rows_dmm_men(device, quick: bool) -> List[Dict[str, Any]]:
    from captum.attr import Lime

    from captum_prior.attr import DMMMENAttribution
    from captum_prior.attr.dmm_men_attribution import patch_feature_mask
    from captum_prior.proxy import DMMMEN

    model, x, _ = load_model("fashion_cnn", device)
    prob = nn.Sequential(model, nn.Softmax(dim=1)).eval()
    xi = x[:1]
    with torch.no_grad():
        t = int(prob(xi).argmax(1))
    mask = patch_feature_mask((1, 28, 28), 4)
    est = DMMMEN(n_components=4, n_penalties=2, n_iter=600, burn_in=300)
    n = 500
    rows = xi.expand(n, -1, -1, -1).clone()
    return [dict(
        method="DMM-MEN (per explanation)", peer_name="Captum Lime", model="fashion_cnn",
        what=f"1 explanation, {n} samples, 49 patches, 600 sweeps (DMMMENAttribution defaults otherwise)",
        ours=lambda: DMMMENAttribution(prob, estimator=est).attribute(
            xi, target=t, feature_mask=mask, n_samples=n, response="logit", random_state=0),
        peer=lambda: Lime(prob).attribute(xi, target=t, feature_mask=mask, n_samples=n,
                                          perturbations_per_eval=250),
        floor={c or "all": bare_fwd(prob, rows, c) for c in (250, None)},
        floor_what=f"bare forwards of the {n} sample rows", before_key=("dmm_men",))]


# -- "before" values from the committed results ---------------------------------
def before_ratio(key, previous: Dict[str, Any], label: str) -> Optional[float]:
    if label in previous:
        return previous[label]
    if key is None:
        return None
    try:
        if key[0] == "deep_prior_eg":
            d = json.loads((COMMITTED / "deep_prior_eg_speed.json").read_text())
            return d["speed"][key[1]]["ratio_to_gradient_shap"][key[2]]
        if key[0] == "insertion_deletion":
            d = json.loads((COMMITTED / f"insertion_deletion_speed_{key[1]}.json").read_text())
            med = d["median_seconds"]
            return med["ours"] / med["loop"]
        if key[0] == "vpg":
            m = json.loads((COMMITTED / "valid_path_gradients_cnn.json").read_text())["methods"]
            return m["vpg"]["seconds_per_image"] / m["ig"]["seconds_per_image"]
        if key[0] == "jgmm":
            d = json.loads((COMMITTED / "jgmm_speed_1thread.json").read_text())
            return d["ratio_full_fit_jgmm64_over_sklearn"]["median_of_ratios"]
        if key[0] == "dmm_men":
            m = json.loads((COMMITTED / "dmm_men_table1.json").read_text())["methods"]
            return m["DMM-MEN"]["sec_per_explanation_median"] / m["Captum Lime"]["sec_per_explanation_median"]
    except (OSError, KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return None


# -- memory flatness --------------------------------------------------------------
CHILD = r"""
import gc, json, sys, torch
sys.path[:0] = [{root!r}, {bench!r}]
torch.set_num_threads({threads})
from run_all import load_model, _status
from captum_prior.attr import DeepPriorExpectedGradients, ExpectedGradients
from captum_prior.priors import BGMMPrior
model, x, refs = load_model("fashion_cnn", torch.device("cpu"))
x = x[:8]
t = model(x).argmax(1)
m = {method!r}
def run(n):
    g = torch.Generator().manual_seed(0)
    if m == "ExpectedGradients":
        ExpectedGradients(model).attribute(x, refs, target=t, n_samples=n, generator=g)
    else:
        DeepPriorExpectedGradients(model, BGMMPrior(model, random_state=0)).attribute(
            x, refs, target=t, n_samples=n, generator=g)
run(1)  # lazy initialisation (thread pools, kernels), one row per example
gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = _status("VmRSS:")
run({n})
print(json.dumps((_status("VmHWM:") - base) / 2**20))
"""

#: glibc setting under which the resident set follows the live tensors: every
#: allocation over 64 KiB is its own mapping, returned when freed
LIVE_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def memory_flatness(threads: int) -> Dict[str, Any]:
    """Peak RSS increase of one call at n_samples 50 and 400 (8 images, fresh
    process per cell, measured from before the first big call), with glibc's
    default allocator (what a user sees, allocator caching included) and with
    :data:`LIVE_ENV` (the live tensors)."""
    out = {}
    for method in ("ExpectedGradients", "DeepBGMM-EG"):
        for alloc, extra in (("default malloc", {}), ("live", LIVE_ENV)):
            r = {}
            for n in (50, 400):
                code = CHILD.format(root=str(ROOT), bench=str(HERE), threads=threads, method=method, n=n)
                p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                   env=dict(os.environ, **extra))
                r[n] = json.loads(p.stdout.strip().splitlines()[-1])
            out[f"{method} ({alloc})"] = {"n50_MB": r[50], "n400_MB": r[400], "ratio": r[400] / max(r[50], 1e-9)}
    return out


#: which builder (by index) can produce rows whose method contains a --only text
ONLY_HINTS = {
    0: ("ExpectedGradients", "ExpectedGradients (default chunk)", "DeepMGM-EG", "DeepBGMM-EG"), 1: ("insertion_deletion",),
    2: ("ValidPathGradients", "ValidPathGradients (default chunk)"), 3: ("ExpectedGradients", "DeepMGM-EG", "DeepBGMM-EG"),
    4: ("JointGaussianMixture",), 5: ("DMM-MEN (per explanation)",),
}


# -- main -------------------------------------------------------------------------
def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--full", action="store_true", help="EfficientNet-Lite0 EG row, 60k JGMM rows")
    p.add_argument("--only", default=None, help="run the rows whose method contains this text")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(RESULTS / "summary"))
    p.add_argument("--default-malloc", action="store_true",
                   help="leave glibc's adaptive malloc thresholds alone (default: fix them, tune_cpu_allocator)")
    args = p.parse_args(argv)
    from captum_prior.allocator import (
        allocator_chosen_by_environment,
        tune_cpu_allocator,
    )

    # page-fault churn of glibc's adaptive thresholds differs from process to
    # process (results/cpu_allocator.md) and would decide the ratios
    if allocator_chosen_by_environment():
        allocator = "thresholds set through the environment (" + ", ".join(
            f"{k}={os.environ[k]}" for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
            if os.environ.get(k)) + ")"
    elif not args.default_malloc and tune_cpu_allocator():
        allocator = "glibc thresholds fixed by tune_cpu_allocator() (mmap 32 MiB, trim 256 MiB)"
    else:
        allocator = "default malloc"
    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits

        _limits = threadpool_limits(args.threads)  # noqa: F841 (scikit-learn's BLAS too)
    except ImportError:  # pragma: no cover
        pass
    warnings.filterwarnings("ignore", category=UserWarning)
    device = torch.device(args.device)
    quick = not args.full
    out_path = Path(args.out)
    previous: Dict[str, float] = {}
    if out_path.with_suffix(".json").exists():
        prev = json.loads(out_path.with_suffix(".json").read_text())
        prev_rows = prev["rows"] if prev.get("complete") else []  # an interrupted run is no baseline
        previous = {f"{r['method']} | {r['model']}": r["ratio_to_peer"]["median"] for r in prev_rows}
    builders = [
        lambda: rows_attribution("fashion_cnn", device, quick),
        lambda: rows_insertion_deletion(device, quick),
        lambda: rows_vpg(device, quick),
        lambda: rows_attribution("efficientnet_lite0", device, quick),
        lambda: rows_jgmm(device, quick),
        lambda: rows_dmm_men(device, quick),
    ]
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    results: List[Dict[str, Any]] = []
    report = {
        "command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
        "threads": torch.get_num_threads(), "repeats": args.repeats, "device": str(device),
        "torch": torch.__version__, "machine": platform.platform(), "cpus": os.cpu_count(),
        "loadavg_start": load0, "rows": results, "memory_flatness": {}, "allocator": allocator,
    }

    def write(final: bool = False) -> None:
        report["loadavg_end"] = os.getloadavg()
        report["wall_s"] = time.perf_counter() - t_start
        report["complete"] = final
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.with_suffix(".json").write_text(json.dumps(report, indent=1))
        out_path.with_suffix(".md").write_text(render(report))

    for build in builders:
        if args.only and not any(args.only in m for m in ONLY_HINTS.get(builders.index(build), ())):
            continue
        for row in build():
            if args.only and args.only not in row["method"]:
                continue
            reps = min(args.repeats, 3) if row["model"] == "efficientnet_lite0" else args.repeats
            r = measure(row, reps, device)
            label = f"{r['method']} | {r['model']}"
            r["before_ratio_to_peer"] = before_ratio(r.pop("before_key"), previous, label)
            results.append(r)
            write()
            print(f"{label}: x peer {r['ratio_to_peer']['median']:.2f}, x floor "
                  f"{r['ratio_to_floor']['median']:.2f} (before {r['before_ratio_to_peer']})", flush=True)
    if device.type == "cpu" and not args.only:
        report["memory_flatness"] = memory_flatness(args.threads)
    write(final=True)
    print(render(report))
    return report


def render(rep: Dict[str, Any]) -> str:
    def f(x: Optional[float], d: int = 2) -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"

    def mm(s: Dict[str, float], d: int = 2) -> str:
        return f"{f(s['median'], d)} [{f(s['min'], d)}, {f(s['max'], d)}]"

    la0, la1 = rep["loadavg_start"], rep["loadavg_end"]
    lines = [
        "# Speed summary: every method against its peer and the floor", "",
        f"Command: `{rep['command']}`  ",
        f"torch {rep['torch']} on {rep['device']}, {rep['threads']} thread(s) per measurement, {rep['repeats']} "
        f"interleaved repeats per row (order rotated), {rep['cpus']} CPUs, {rep['machine']}; wall "
        f"{rep['wall_s'] / 60:.1f} min{'' if rep.get('complete') else ' (INCOMPLETE: the run was still going)'}.  ",
        f"Load average {la0[0]:.1f} / {la0[1]:.1f} / {la0[2]:.1f} at the start, {la1[0]:.1f} at the end: "
        "**the machine was shared with other jobs**, so absolute seconds are inflated and noisy; the ratios "
        "compare runs interleaved under the same load.  ",
        f"Allocator: {rep.get('allocator', 'default malloc')}.", "",
        "Ratios: median over repeats of (ours / peer) and (ours / floor) of the same repeat, [min, max]; "
        "'× peer (CPU s)': the same on this process's CPU time (user + system; not its child processes), less "
        "sensitive to the other jobs. "
        "Floor: bare forward (or forward+backward) passes over the same rows at the fastest of a few chunk "
        "sizes (found in the warm-up), or the bare arithmetic of the fit. Peak memory: increase of the "
        "resident set (VmHWM) over one call of ours. 'before': the same ratio in the previous summary or "
        "the committed per-method result files (where a comparable one exists).", "",
        "| method | peer | model | ours s | peer s | floor s | × peer | × peer (CPU s) | × floor | peak MB | "
        "before × peer |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rep["rows"]:
        s = r["seconds"]
        lines.append(
            f"| {r['method']} | {r['peer']} | {r['model']} | {mm(s['ours'], 3)} | {mm(s['peer'], 3)} | "
            f"{mm(s['floor'], 3)} | {mm(r['ratio_to_peer'])} | "
            f"{mm(r['cpu_ratio_to_peer']) if r.get('cpu_ratio_to_peer') else 'n/a'} | {mm(r['ratio_to_floor'])} | "
            f"{f(r['peak_memory_MB'], 0)} | {f(r['before_ratio_to_peer'])} |")
    lines += ["", "What each row runs:", ""]
    for r in rep["rows"]:
        lines.append(f"- **{r['method']}, {r['model']}**: {r['what']}; floor: {r['floor_what']}; "
                     f"load {r['loadavg'][0]:.1f} -> {r['loadavg'][1]:.1f}.")
    if rep.get("memory_flatness"):
        lines += ["", "Peak memory (MB, increase of the resident set over one call, fresh process per cell, 8 "
                  "images, default internal_batch_size) against n_samples; 'live': under glibc "
                  "MALLOC_MMAP_THRESHOLD_=65536, so that freed tensors leave the resident set and the peak is "
                  "that of the live tensors; 'default malloc' includes the allocator's cache:", "",
                  "| method | n_samples=50 | n_samples=400 | ratio |", "|---|---|---|---|"]
        for m, v in rep["memory_flatness"].items():
            lines.append(f"| {m} | {v['n50_MB']:.1f} | {v['n400_MB']:.1f} | {v['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
