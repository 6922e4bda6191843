"""A self-contained HTML report: figures embedded as PNG data URIs, no
scripts, no external files, so it opens offline in any browser."""

from __future__ import annotations

import base64
import html
import io
import os
from typing import Any, List, Mapping, Optional, Sequence

import numpy as np
import torch

__all__ = ["write_report", "disagreement"]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _curve_figure(curves: Mapping[str, Mapping[str, np.ndarray]], metric: str, fractions: np.ndarray) -> Optional[str]:
    from matplotlib.figure import Figure

    from captum_prior.metrics.stats import mean_ci

    have = {run: c[metric] for run, c in curves.items() if metric in c and len(c[metric])}
    if not have:
        return None
    fig = Figure(figsize=(5.2, 3.4))
    ax = fig.subplots()
    for run, c in have.items():
        x = fractions if fractions.size == c.shape[1] else np.linspace(0, 1, c.shape[1])
        bands = [mean_ci(c[:, j], n_resamples=500, method="percentile") for j in range(c.shape[1])]
        mean = np.array([b["mean"] for b in bands])
        ax.plot(x, mean, label=run)
        ax.fill_between(x, [b["low"] for b in bands], [b["high"] for b in bands], alpha=0.25)
    ax.set_xlabel("fraction of pixels " + ("inserted" if metric == "insertion" else "deleted"))
    ax.set_ylabel("score of the target")
    ax.set_title(f"{metric} curves (mean, 95 % CI band)")
    ax.legend(fontsize=8)
    return _png(fig)


def disagreement(attr_dirs: Mapping[str, str], indices: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Per example, the lowest cosine similarity between any two runs'
    attribution maps (summed over channels): low means the methods disagree."""
    from captum_prior.runner.store import load_attributions

    names = list(attr_dirs)
    out = np.ones(len(indices))
    if len(names) < 2:
        return out
    for s in range(0, len(indices), chunk):
        idx = indices[s : s + chunk].tolist()
        maps = []
        for name in names:
            a = load_attributions(attr_dirs[name], idx).attributions
            a = a.sum(1) if a.dim() == 4 else a
            maps.append(torch.nn.functional.normalize(a.reshape(len(idx), -1).double(), dim=1))
        low = torch.ones(len(idx), dtype=torch.float64)
        for i in range(len(maps)):
            for j in range(i + 1, len(maps)):
                low = torch.minimum(low, (maps[i] * maps[j]).sum(1))
        out[s : s + len(idx)] = low.numpy()
    return out


def _grid_figure(dataset: Any, attr_dirs: Mapping[str, str], picks: Sequence[int], sims: Sequence[float]) -> str:
    from matplotlib.figure import Figure

    from captum_prior.runner.explain import _load_batch
    from captum_prior.runner.store import load_attributions

    x, _ = _load_batch(dataset, list(picks))
    cols = 1 + len(attr_dirs)
    fig = Figure(figsize=(1.9 * cols, 1.9 * len(picks)))
    axes = fig.subplots(len(picks), cols, squeeze=False)
    maps = {n: load_attributions(d, list(picks)).attributions for n, d in attr_dirs.items()}
    for r, i in enumerate(picks):
        img = x[r].float()
        img = (img - img.min()) / (img.max() - img.min() + 1e-12)
        ax = axes[r, 0]
        if img.dim() == 3 and img.shape[0] in (1, 3):
            hwc = img.permute(1, 2, 0).numpy()
            ax.imshow(hwc[..., 0] if hwc.shape[-1] == 1 else hwc, cmap="gray" if hwc.shape[-1] == 1 else None)
        ax.set_ylabel(f"#{i}\ncos {sims[r]:.2f}", fontsize=7)
        for c, (name, a) in enumerate(maps.items(), 1):
            m = a[r].float()
            m = m.sum(0) if m.dim() == 3 else m
            lim = float(m.abs().max()) or 1.0
            axes[r, c].imshow(m.numpy(), cmap="bwr", vmin=-lim, vmax=lim)
            if r == 0:
                axes[r, c].set_title(name, fontsize=8)
        if r == 0:
            ax.set_title("input", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return _png(fig)


def _table(metric: str, summary: Mapping[str, Mapping[str, Any]], reference: str) -> str:
    from captum_prior.metrics.stats import format_ci

    rows = ["<tr><th>run</th><th>mean [95 % CI]</th><th>n</th>"
            f"<th>paired Δ vs {html.escape(reference)} [95 % CI]</th></tr>"]
    for name, e in summary.items():
        vs = e.get("vs", {}).get(reference)
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{format_ci(e)}</td><td>{e['n']}</td>"
            f"<td>{format_ci(vs) if vs else '—'}</td></tr>"
        )
    return f"<h3>{html.escape(metric)}</h3><table>" + "".join(rows) + "</table>"


def write_report(
    path: str,
    result: Mapping[str, Mapping[str, Mapping[str, Any]]],
    curves: Mapping[str, Mapping[str, np.ndarray]],
    fractions: np.ndarray,
    runs: Mapping[str, str],
    indices: np.ndarray,
    dataset: Any = None,
    reference: Optional[str] = None,
    n_disagree: int = 8,
) -> str:
    """Write ``path`` (HTML): the metric curves per run with 95 % bands, the
    paired-difference tables, and (with ``dataset``) a grid of the examples
    whose attribution maps disagree most between the runs."""
    from captum_prior.runner.store import read_manifest

    reference = reference or next(iter(runs))
    parts: List[str] = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>captum-prior evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px}"
        "img{max-width:100%}</style></head><body>",
        f"<h1>captum-prior evaluation</h1><p>{len(runs)} run(s), {len(indices)} paired examples. "
        "Intervals: 95 % bootstrap (BCa, scipy.stats.bootstrap); a * marks a paired "
        "difference whose interval excludes 0.</p>",
    ]
    for metric in ("insertion", "deletion"):
        uri = _curve_figure(curves, metric, fractions)
        if uri:
            parts.append(f"<h2>{metric} curves</h2><img alt='{metric} curves' src='{uri}'>")
    parts.append("<h2>Means and paired differences</h2>")
    for metric, summary in result.items():
        parts.append(_table(metric, summary, reference))
    if dataset is not None and len(runs) > 1 and n_disagree > 0:
        attr_dirs = {n: read_manifest(d)["info"]["attributions_dir"] for n, d in runs.items()}
        if all(os.path.isdir(d) for d in attr_dirs.values()):
            sims = disagreement(attr_dirs, indices)
            order = np.argsort(sims, kind="stable")[: min(n_disagree, len(indices))]
            picks = [int(indices[j]) for j in order]
            uri = _grid_figure(dataset, attr_dirs, picks, [float(sims[j]) for j in order])
            parts.append(
                "<h2>Where the methods disagree most</h2><p>Examples with the lowest "
                "cosine similarity between any two runs' maps (summed over channels).</p>"
                f"<img alt='disagreement grid' src='{uri}'>"
            )
    parts.append("</body></html>")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(parts))
    return path
