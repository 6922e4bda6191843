"""Shared pieces of the valid-path-gradients benchmark and the optimized-baseline sweep.

Not a public module: data/model loading, timing, statistics (the library's BCa
intervals, :mod:`captum_prior.metrics.stats`) and Markdown
tables used by ``bench_valid_path_gradients.py`` and
``sweep_optimized_baseline.py``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = str(_provenance.results_dir())


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def environment() -> Dict[str, Any]:
    import captum

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "captum": captum.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        # allocator / threading settings the command ran under (glibc's
        # MALLOC_* tunables change the sys time of large tensor allocations)
        "env": {
            k: v
            for k, v in sorted(os.environ.items())
            if k.startswith("MALLOC_") or k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
        },
    }


def load_model_and_data(
    model: str, n_images: int, offset: int = 0, split: str = "test"
) -> Tuple[torch.nn.Module, torch.Tensor, torch.Tensor, str]:
    """The model and ``n_images`` images (pixels in [0, 1]) with labels."""
    if model == "cnn":
        from captum_prior.models import load_fashion_cnn

        net = load_fashion_cnn()
        x, y, source = fashion_mnist(split)
        x, y = x[offset : offset + n_images], y[offset : offset + n_images]
        desc = f"default FashionCNN, {source} images {offset}..{offset + len(x) - 1}"
    elif model == "effnet":
        from captum_prior.models.efficientnet import (
            load_efficientnet_lite0,
            load_imagenet_samples,
        )

        net = load_efficientnet_lite0()
        x, y, _ = load_imagenet_samples()
        x, y = x[offset : offset + n_images], y[offset : offset + n_images]
        desc = f"EfficientNet-Lite0, ImageNet sample photos {offset}..{offset + len(x) - 1} (of 20)"
    else:
        raise ValueError(f"unknown model {model!r}; use 'cnn' or 'effnet'")
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval(), x, y, desc


def fashion_mnist(split: str = "test") -> Tuple[torch.Tensor, torch.Tensor, str]:
    """Fashion-MNIST ``split`` from disk, or, where the full set is not
    installed, the 500 test images shipped with the package (for
    ``split="train"`` too: callers that need references take them from the
    end of the sample, away from the evaluated images)."""
    from captum_prior.data import load_fashion_mnist, load_fashion_mnist_sample

    try:
        x, y = load_fashion_mnist(split)
        return x, y, f"Fashion-MNIST {split}"
    except FileNotFoundError:
        x, y = load_fashion_mnist_sample()
        return x, y, "shipped Fashion-MNIST sample (first 500 test images; full set not installed)"


def add_deletion_substrate_argument(parser: Any) -> None:
    """``--deletion-substrate``: the pixel value deleted pixels become."""
    parser.add_argument(
        "--deletion-substrate",
        type=float,
        default=None,
        help="pixel value deleted pixels become (default: 0 for cnn; 0.5 for effnet, "
        "the zero of its [-1, 1] input normalisation, as RISE's zeros in normalised space)",
    )


def deletion_substrate(model: str, value: Any) -> float:
    """RISE deletes to zero *in normalised space* (methods.md §2.4): pixel value
    0 for the CNN (no normalisation), 0.5 for EfficientNet-Lite0 (``2x - 1``)."""
    if value is not None:
        return float(value)
    return 0.0 if model == "cnn" else 0.5


def predicted(model: torch.nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(
            [model(x[i : i + batch]).argmax(1) for i in range(0, len(x), batch)]
        )


class Timer:
    """Accumulates wall time per key."""

    def __init__(self) -> None:
        self.total: Dict[str, float] = {}

    def __call__(self, key: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        out = fn()
        self.total[key] = self.total.get(key, 0.0) + time.perf_counter() - t
        return out


def bare_row_time(
    model: torch.nn.Module, x: torch.Tensor, rows: int, repeats: int = 2
) -> Dict[str, float]:
    """Seconds per row of one bare forward, and of one forward+backward, on ``rows`` rows."""
    xb = x[:1].expand(rows, *x.shape[1:]).clone()
    with torch.no_grad():
        model(xb)  # warm-up
    best_f, best_fb = math.inf, math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        with torch.no_grad():
            model(xb)
        best_f = min(best_f, time.perf_counter() - t)
        xr = xb.clone().requires_grad_()
        t = time.perf_counter()
        out = model(xr)
        torch.autograd.grad(out[:, 0].sum(), xr)
        best_fb = min(best_fb, time.perf_counter() - t)
    return {
        "forward_s_per_row": best_f / rows,
        "forward_backward_s_per_row": best_fb / rows,
    }


def mean_ci(values: Sequence[float], level: float = 0.95) -> Tuple[float, Tuple[float, float]]:
    """Mean and its ``(low, high)`` BCa bootstrap interval, from the library
    (:func:`captum_prior.metrics.stats.mean_ci`, ``scipy.stats.bootstrap``).
    Called on per-example differences it is the paired difference's interval."""
    from captum_prior.metrics.stats import mean_ci as _mean_ci

    e = _mean_ci(np.asarray(values, dtype=float), confidence=level)
    return e["mean"], (e["low"], e["high"])


def fmt(mean: float, ci: Any, digits: int = 4) -> str:
    """``mean [low, high]`` (or ``mean ± half`` for an old symmetric half-width)."""
    if isinstance(ci, (tuple, list)):
        return f"{mean:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


def gain(value: float, ref: float) -> str:
    if ref == 0:
        return "n/a"
    return f"{100.0 * (value - ref) / abs(ref):+.1f}"


def write_json(path: str, payload: Dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1, default=float)
    os.replace(tmp, path)


def md_table(header: List[str], rows: List[List[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)
