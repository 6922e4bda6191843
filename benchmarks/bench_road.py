"""ROAD on the bundled FashionCNN: agreement with Quantus 0.6.0 and speed, in one run.

Agreement (noise off, where both are deterministic):

- the imputed images: our :func:`~captum_prior.metrics._masking.noisy_linear_imputation`
  of each image, fraction and order against Quantus's
  ``quantus.functions.perturb_func.noisy_linear_imputation`` with the same
  removed pixels (max abs difference);
- the curves: our ``road(...).morf_accuracy.mean(0)`` against Quantus's
  ``ROAD`` (MoRF; Quantus has no LeRF, so LeRF is Quantus's MoRF of the
  reversed map ``max(a) + 1 - a``; it rejects all-negative maps), at the paper's fractions; with the paper's noise (0.01) the
  curves are compared too (they differ by the noise only).

Speed (same images, attributions, fractions, both orders, noise 0.01, the
same rows per forward call): our ``road`` against Quantus's ``ROAD``, and
against the floor it cannot go below: the bare forward passes on the imputed
images plus the factorise-and-solve calls of the imputation systems (timed
alone, on systems built beforehand).  Target ratios: ours ≤ Quantus, ours ≤
1.5 × floor.

Quantus 0.6.0's ``ROAD`` returns the curve of the first ``batch_size``
images only (its post-processing reads the first batch's scores), so it is
called once per batch of ``--batch`` images here and the curves are averaged.

Quantus 0.6.0 does not install cleanly beside the package (its wheel requires
``opencv-python``, a second OpenCV build over ``opencv-python-headless``), so
it is installed apart, without dependencies (it needs only ``cachetools``
beyond ours)::

    pip install --no-deps --target /tmp/quantus_ref quantus==0.6.0 cachetools
    python benchmarks/bench_road.py --quantus-path /tmp/quantus_ref            # 1,000 images
    python benchmarks/bench_road.py --quantus-path /tmp/quantus_ref --n-images 40 --tag smoke
    python benchmarks/bench_road.py --photos 20 --batch 14 --pivoting --quantus-path /tmp/quantus_ref  # per photo

Images: the first ``--n-images`` of the Fashion-MNIST test set when it is on
disk (``captum_prior.data.load_fashion_mnist``), else the shipped 500-image
sample repeated; the result names which.  Attributions: Captum ``Saliency``
(absolute gradient) of the true class, in float64 plus a 1e-6 jitter so that
no two pixels tie (ties are broken differently by the two implementations).
Writes ``results/road_fashion_cnn[_<tag>].{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
PERCENTAGES = (10, 20, 30, 40, 50, 70, 90)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        return "unknown"


def load_images(n: int):
    from captum_prior.data import load_fashion_mnist, load_fashion_mnist_sample

    try:
        x, y = load_fashion_mnist("test")
        return x[:n], y[:n], f"the first {min(n, len(x))} Fashion-MNIST test images"
    except (FileNotFoundError, OSError, ValueError):
        x, y = load_fashion_mnist_sample()
        reps = -(-n // len(x))
        return (x.repeat(reps, 1, 1, 1)[:n], y.repeat(reps)[:n],
                f"the shipped {len(x)}-image sample repeated to {n} images")


def removal_masks(a: torch.Tensor, fractions, orders=("morf", "lerf")) -> torch.Tensor:
    """``N x (orders*K) x H x W`` removed pixels, as :func:`road` builds them."""
    from captum_prior.metrics._perturbation import rank_units
    from captum_prior.metrics.road import _removal_counts

    n, _, h, w = a.shape
    rank = rank_units(a.sum(1).reshape(n, -1))
    counts = _removal_counts(torch.tensor(fractions, dtype=torch.float64), h * w)
    out = []
    for o in orders:
        for c in counts:
            out.append(rank < c if o == "morf" else rank >= h * w - c)
    return torch.stack(out, 1).view(n, len(out), h, w)


def floor_time(model, x, masks, batch):
    """Seconds of the unavoidable work: the imputation's factorise-and-solve
    calls (systems built beforehand, batched as :func:`road` batches them) and
    the bare forward passes on the imputed images, ``batch`` rows a call."""
    from captum_prior.metrics import _masking as mk

    n, per_ex, h, w = masks.shape
    rows_x = x.repeat_interleave(per_ex, 0).double().numpy()
    rows_m = masks.reshape(n * per_ex, h, w).numpy()
    counts = rows_m.reshape(len(rows_m), -1).sum(1)
    t_solve = 0.0
    imputed = rows_x.copy()
    for c0 in range(0, len(rows_m), batch):  # one forward chunk at a time, as road
        c1 = min(c0 + batch, len(rows_m))
        start = c0
        while start < c1:
            stop, total = start, 0
            while stop < c1 and (stop == start or total + counts[stop] <= mk.MAX_UNKNOWNS_PER_SOLVE):
                total += counts[stop]
                stop += 1
            system = mk.linear_system(rows_m[start:stop], rows_x[start:stop])
            t0 = time.perf_counter()
            sol = mk.solve_system(system)
            t_solve += time.perf_counter() - t0
            rr, rest = np.divmod(system.flat, h * w)
            imputed[start + rr, :, rest // w, rest % w] = sol
            start = stop
    xi = torch.from_numpy(imputed).float()
    t0 = time.perf_counter()
    with torch.no_grad():
        for c0 in range(0, len(xi), batch):
            model(xi[c0 : c0 + batch])
    t_fwd = time.perf_counter() - t0
    return t_solve, t_fwd


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def photo_timing(args) -> None:
    """ROAD per 224 x 224 photo: our ``road`` (both orders, the paper's
    fractions, noise 0.01) against its floor (factorise-and-solve calls plus
    bare forward passes), on EfficientNet-Lite0 and the bundled photos with
    Saliency maps (pixel-level noisy maps, the hardest masks for the sparse
    solver); with ``--pivoting`` also SuperLU with threshold pivoting (the
    solver before the fix) on the first photo's systems."""
    import scipy.sparse as sp
    from captum.attr import Saliency
    from scipy.sparse.linalg import splu

    from captum_prior.metrics import _masking as mk
    from captum_prior.metrics import road
    from captum_prior.metrics.road import PAPER_FRACTIONS
    from captum_prior.models.efficientnet import (
        load_efficientnet_lite0,
        load_imagenet_samples,
    )

    load_before = _uptime()
    model = load_efficientnet_lite0().eval()
    x, y, _ = load_imagenet_samples(224)
    x, y = x[: args.photos], y[: args.photos]
    a = Saliency(model).attribute(x, target=y, abs=True).detach()
    fr = list(PAPER_FRACTIONS)
    per_photo = []
    for i in range(len(x)):
        t0 = time.perf_counter()
        road(model, x[i : i + 1], a[i : i + 1], target=y[i : i + 1], fractions=fr,
             generator=torch.Generator().manual_seed(0), max_examples_per_batch=args.batch)
        per_photo.append(time.perf_counter() - t0)
    masks = removal_masks(a, fr)
    t_solve, t_fwd = floor_time(model, x, masks, min(args.batch, masks.shape[1]))
    rec = {
        "what": "ROAD per 224x224 photo, EfficientNet-Lite0, Saliency maps, both orders, paper fractions",
        "command": "python " + " ".join(sys.argv), "commit": _commit(), "machine": platform.platform(),
        "uptime_before": load_before, "threads": args.threads, "photos": len(x),
        "road_s_per_photo": [round(t, 3) for t in per_photo],
        "road_s_per_photo_mean": round(float(np.mean(per_photo)), 3),
        "floor_solve_s_per_photo": round(t_solve / len(x), 3),
        "floor_forward_s_per_photo": round(t_fwd / len(x), 3),
    }
    if args.pivoting:
        m0 = masks[0].numpy()
        x0 = x[:1].double().numpy()
        t_piv = 0.0
        for j in range(m0.shape[0]):
            sys_ = mk.linear_system(m0[j : j + 1], x0)
            mm = sys_.diag.size
            idx = np.arange(mm)
            A = sp.csc_matrix((np.concatenate([sys_.values, sys_.values, sys_.diag]),
                               (np.concatenate([sys_.rows, sys_.cols, idx]), np.concatenate([sys_.cols, sys_.rows, idx]))),
                              shape=(mm, mm))
            t0 = time.perf_counter()
            splu(A, permc_spec="MMD_AT_PLUS_A").solve(sys_.b)
            t_piv += time.perf_counter() - t0
        rec["pivoting_solve_s_first_photo"] = round(t_piv, 2)
    if args.quantus_path:  # the imputed first photo against Quantus's, noise off, every row
        sys.path.insert(0, args.quantus_path)
        from quantus.functions.perturb_func import noisy_linear_imputation as q_impute

        m0 = masks[0]
        ours = mk.noisy_linear_imputation(x[:1].expand(m0.shape[0], -1, -1, -1), m0, noise=0.0)
        rec["quantus_max_abs_diff_first_photo"] = max(
            float(np.abs(q_impute(arr=x[0].numpy(), indices=np.flatnonzero(m0[j].numpy().reshape(-1)), noise=0.0)
                         - ours[j].numpy()).max()) for j in range(m0.shape[0]))
    rec["uptime_after"] = _uptime()
    tag = f"_{args.tag}" if args.tag else ""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"road_photo_efficientnet{tag}.json").write_text(json.dumps(rec, indent=1))
    lines = [f"# {rec['what']}", "", f"Command: `{rec['command']}` (commit {rec['commit']}, {rec['machine']})",
             f"Load before: `{rec['uptime_before']}`; after: `{rec['uptime_after']}`", "",
             "| | seconds per photo |", "|---|---|",
             f"| ours (`road`) | {rec['road_s_per_photo_mean']} |",
             f"| floor: factorise-and-solve calls | {rec['floor_solve_s_per_photo']} |",
             f"| floor: bare forward passes | {rec['floor_forward_s_per_photo']} |"]
    if args.pivoting:
        lines.append(f"| SuperLU with threshold pivoting, solves only (first photo) | "
                     f"{rec['pivoting_solve_s_first_photo']} |")
    if args.quantus_path:
        lines += ["", "Imputed images of the first photo (every fraction and order, noise off) against "
                  f"Quantus 0.6.0: max abs difference {rec['quantus_max_abs_diff_first_photo']:.2e}"]
    (RESULTS / f"road_photo_efficientnet{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-images", type=int, default=1000)
    p.add_argument("--reference-images", type=int, default=None,
                   help="images timed with Quantus (default: all; fewer is extrapolated and says so)")
    p.add_argument("--agreement-images", type=int, default=100, help="images whose imputations are compared")
    p.add_argument("--batch", type=int, default=256, help="rows per forward call (both implementations)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quantus-path", default=None, help="directory holding quantus 0.6.0 (see the docstring)")
    p.add_argument("--tag", default="")
    p.add_argument("--photos", type=int, default=0,
                   help="instead: time ROAD per 224 x 224 photo (EfficientNet-Lite0, this many bundled photos)")
    p.add_argument("--pivoting", action="store_true",
                   help="with --photos: also time SuperLU with threshold pivoting (the solver before the fix) "
                   "on the first photo's systems; minutes per photo")
    args = p.parse_args()
    if args.photos:
        torch.set_num_threads(args.threads)
        photo_timing(args)
        return
    if args.quantus_path:
        sys.path.insert(0, args.quantus_path)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import quantus
    from captum.attr import Saliency
    from quantus.functions.perturb_func import noisy_linear_imputation as q_impute

    from captum_prior.metrics import road
    from captum_prior.metrics._masking import noisy_linear_imputation
    from captum_prior.metrics.road import PAPER_FRACTIONS
    from captum_prior.models import load_fashion_cnn

    model = load_fashion_cnn()
    x, y, data_note = load_images(args.n_images)
    a = torch.cat([Saliency(model).attribute(x[i : i + 500], target=y[i : i + 500], abs=True)
                   for i in range(0, len(x), 500)]).detach()
    # float64 and a jitter: no two pixels of an image tie (nor after negation)
    a = a.double() + 1e-6 * torch.rand(a.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # Quantus rejects all-negative maps, so its LeRF is its MoRF of max(a) + 1 - a (same order as -a)
    a_rev = a.max() + 1.0 - a
    fr = list(PAPER_FRACTIONS)
    assert [round(f * 100) for f in fr] == list(PERCENTAGES)
    n_ties = int(sum(len(r) - len(np.unique(r)) for r in a.reshape(len(a), -1).numpy()))

    # ---- agreement: imputed images, noise off
    na = min(args.agreement_images, len(x))
    masks = removal_masks(a[:na], fr)
    worst = 0.0
    for i in range(na):
        ours = noisy_linear_imputation(x[i : i + 1].expand(masks.shape[1], -1, -1, -1), masks[i], noise=0.0)
        for j in range(masks.shape[1]):
            idx = np.flatnonzero(masks[i, j].numpy().reshape(-1))
            ref = q_impute(arr=x[i].numpy(), indices=idx, noise=0.0)
            worst = max(worst, float(np.abs(ref - ours[j].numpy()).max()))

    def quantus_curve(attr, noise, n_img):
        # one call per batch: Quantus 0.6.0's ROAD returns the curve of its *first*
        # batch only (custom_postprocess reads evaluation_scores[0])
        metric = quantus.ROAD(percentages=list(PERCENTAGES), noise=noise, normalise=False, abs=False,
                              disable_warnings=True, display_progressbar=False)
        total = np.zeros(len(PERCENTAGES))
        for i in range(0, n_img, args.batch):
            j = min(i + args.batch, n_img)
            out = metric(model=model, x_batch=x[i:j].numpy(), y_batch=y[i:j].numpy(),
                         a_batch=attr[i:j].numpy(), device="cpu", batch_size=args.batch)
            total += (j - i) * np.array([out[p] for p in PERCENTAGES])
        return total / n_img

    # ---- agreement: curves, noise off (deterministic) and on
    ours0 = road(model, x, a, target=y, fractions=fr, noise=0.0, max_examples_per_batch=args.batch)
    q_morf0 = quantus_curve(a, 0.0, len(x))
    q_lerf0 = quantus_curve(a_rev, 0.0, len(x))
    curves = {
        "noise 0": {
            "ours MoRF": ours0.morf_accuracy.mean(0).tolist(), "Quantus MoRF": q_morf0.tolist(),
            "ours LeRF": ours0.lerf_accuracy.mean(0).tolist(), "Quantus LeRF (MoRF of max a + 1 - a)": q_lerf0.tolist(),
        }
    }

    # ---- speed, noise 0.01, both orders
    n_ref = min(args.reference_images or len(x), len(x))
    t0 = time.perf_counter()
    ours = road(model, x, a, target=y, fractions=fr, noise=0.01, generator=torch.Generator().manual_seed(0),
                max_examples_per_batch=args.batch)
    t_ours = time.perf_counter() - t0
    np.random.seed(0)
    t0 = time.perf_counter()
    q_morf = quantus_curve(a, 0.01, n_ref)
    q_lerf = quantus_curve(a_rev, 0.01, n_ref)
    t_quantus = (time.perf_counter() - t0) * len(x) / n_ref
    curves["noise 0.01"] = {
        "ours MoRF": ours.morf_accuracy.mean(0).tolist(), "Quantus MoRF": q_morf.tolist(),
        "ours LeRF": ours.lerf_accuracy.mean(0).tolist(), "Quantus LeRF (MoRF of max a + 1 - a)": q_lerf.tolist(),
    }
    t_solve, t_fwd = floor_time(model, x, removal_masks(a, fr), args.batch)
    floor = t_solve + t_fwd

    d0 = max(np.abs(np.array(curves["noise 0"]["ours MoRF"]) - q_morf0).max(),
             np.abs(np.array(curves["noise 0"]["ours LeRF"]) - q_lerf0).max())
    report = {
        "command": "python " + " ".join(sys.argv), "commit": _commit(), "data": data_note,
        "n_images": len(x), "fractions": fr, "rows_per_forward_call": args.batch, "threads": args.threads,
        "attributions": "Saliency |grad| of the true class, float64, + 1e-6 uniform jitter",
        "tied_attribution_values": n_ties,
        "agreement": {"images_compared": na, "imputations_compared": na * masks.shape[1],
                      "max_abs_diff_imputed_images_noise_off": worst,
                      "max_abs_diff_accuracy_curves_noise_off": float(d0), "curves": curves},
        "seconds": {"ours": t_ours, "quantus": t_quantus, "quantus_images_timed": n_ref,
                    "floor_solves": t_solve, "floor_forward": t_fwd, "floor": floor},
        "ratios": {"ours_over_quantus": t_ours / t_quantus, "ours_over_floor": t_ours / floor},
        "loadavg": os.getloadavg(), "machine": platform.platform(), "torch": torch.__version__,
        "quantus": quantus.__version__,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = "road_fashion_cnn" + (f"_{args.tag}" if args.tag else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2))
    s = report["seconds"]
    lines = [
        "# ROAD on the bundled FashionCNN: agreement with Quantus 0.6.0 and speed", "",
        f"Command: `{report['command']}` (commit {report['commit']}; load average "
        f"{', '.join(f'{v:.1f}' for v in report['loadavg'])}; {args.threads} torch thread(s)).", "",
        f"Data: {data_note}. Attributions: {report['attributions']} ({n_ties} tied values). "
        f"Fractions {fr}, both orders, {args.batch} rows per forward call.", "",
        "## Agreement (noise off)", "",
        f"- imputed images, {report['agreement']['imputations_compared']} (image, fraction, order) pairs "
        f"of {na} images: max abs difference {worst:.2e}",
        f"- accuracy curves over {len(x)} images: max abs difference {d0:.4f}", "",
        "| curve | " + " | ".join(f"{p}%" for p in PERCENTAGES) + " |", "|---" * (len(PERCENTAGES) + 1) + "|"]
    for noise, cs in curves.items():
        for name, c in cs.items():
            lines.append(f"| {name}, {noise} | " + " | ".join(f"{v:.4f}" for v in c) + " |")
    scaled = f" — timed on {n_ref} images, scaled" if n_ref < len(x) else ""
    lines += [
        "", "## Speed (noise 0.01, MoRF and LeRF)", "",
        "| | seconds |", "|---|---|",
        f"| ours (`road`) | {s['ours']:.2f} |",
        f"| Quantus `ROAD` (MoRF + MoRF of the reversed map){scaled} | {s['quantus']:.2f} |",
        f"| floor: factorise-and-solve calls | {s['floor_solves']:.2f} |",
        f"| floor: bare forward passes | {s['floor_forward']:.2f} |", "",
        f"Ours / Quantus = {report['ratios']['ours_over_quantus']:.3f} (target ≤ 1); "
        f"ours / floor = {report['ratios']['ours_over_floor']:.2f} (target ≤ 1.5).", ""]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
