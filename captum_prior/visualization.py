"""Figures for attributions, prior maps, metric curves and intervals.

One convention everywhere:

- **Signed attributions** use :data:`DIVERGING_CMAP` (``"RdBu_r"``): positive
  (evidence *for* the target) is red, negative (evidence *against*) is blue,
  zero is white.  The colour scale is symmetric around zero, so white always
  means zero.
- **Non-negative maps** (absolute attributions, prior maps, heat maps of
  ranks) use :data:`SEQUENTIAL_CMAP` (``"Reds"``, white = 0).
- Every heat map has a colour bar in the map's own units.  By default all the
  heat-map panels of a grid share **one** scale (the ``100 - outlier_perc``
  percentile of ``|A|`` over the whole grid), so panels can be compared;
  ``scale="per_panel"`` gives each panel its own scale and colour bar and says
  so in the figure title.
- Curves and interval plots always have a legend.

Every ``plot_*`` function returns a :class:`matplotlib.figure.Figure` built
without pyplot (the backend and pyplot's figure list are left alone, and the
library never calls ``plt.show()``).  In a notebook, ``display(fig)`` or
leaving the figure as the cell's last expression shows it; ``save_figure``
writes it to a file.

Why not Captum's ``visualize_image_attr`` for the heat maps: it normalises
every map to ``[-1, 1]`` by that map's own percentile, so two panels drawn
with it cannot share a scale and its colour bar shows normalised units.  The
maps here are reduced the same way Captum's ``heat_map`` does (attributions
summed over channels, an outlier percentile clipped), then drawn on one
symmetric scale in attribution units.  :func:`attribution_grid` and
:func:`image_grid` save a PNG and return its path; they are built on the
functions below.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from captum_prior._validation import check_float, check_int

DIVERGING_CMAP = "RdBu_r"
SEQUENTIAL_CMAP = "Reds"
SIGNS = ("all", "positive", "negative", "absolute_value")
SCALES = ("shared", "per_panel")

__all__ = [
    "DIVERGING_CMAP",
    "SEQUENTIAL_CMAP",
    "attribution_grid",
    "image_grid",
    "plot_attributions",
    "plot_curves",
    "plot_images",
    "plot_intervals",
    "save_figure",
]


# --------------------------------------------------------------------- helpers
def _new_figure(figsize: Tuple[float, float]):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")  # no pyplot


def _hwc(t: Union[Tensor, np.ndarray]) -> np.ndarray:
    if isinstance(t, Tensor):
        t = t.detach().to("cpu", torch.float32).numpy()
    a = np.asarray(t, dtype=np.float32)
    if a.ndim == 2:
        return a[..., None]
    if a.ndim != 3:
        raise ValueError(f"expected a C x H x W (or H x W) image, got shape {a.shape}")
    return np.transpose(a, (1, 2, 0))


def _show_image(ax, img: Union[Tensor, np.ndarray]) -> None:
    a = _hwc(img)
    if a.shape[-1] == 1:
        ax.imshow(a[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(a.clip(0.0, 1.0))
    ax.set_xticks([])
    ax.set_yticks([])


def _reduce(attr: Union[Tensor, np.ndarray], sign: str) -> np.ndarray:
    """Captum's ``heat_map`` reduction: sum over channels, then the sign option."""
    a = _hwc(attr).sum(-1)
    if sign == "positive":
        return np.clip(a, 0.0, None)
    if sign == "negative":
        return np.clip(-a, 0.0, None)
    if sign == "absolute_value":
        return np.abs(a)
    return a


def _limit(maps: Sequence[np.ndarray], outlier_perc: float) -> float:
    vals = np.concatenate([np.abs(m).ravel() for m in maps]) if maps else np.zeros(1)
    v = float(np.percentile(vals, 100.0 - outlier_perc)) if vals.size else 0.0
    if not np.isfinite(v) or v <= 0:
        v = float(vals.max()) if vals.size and np.isfinite(vals.max()) else 0.0
    return v if v > 0 else 1.0


def _check_maps(t: Any, name: str, what: str) -> Tuple[int, Tuple[int, int]]:
    """``(N, (H, W))`` of an ``N x C x H x W`` or ``N x H x W`` Tensor/array
    holding only finite values; a clear error naming ``name`` otherwise."""
    if not isinstance(t, (Tensor, np.ndarray)):
        raise TypeError(f"{name} must be a Tensor or numpy array ({what}), got {type(t).__name__}")
    if t.ndim not in (3, 4):
        raise ValueError(f"{name} must be {what} (N x C x H x W or N x H x W), got shape {tuple(t.shape)}")
    a = t.detach() if isinstance(t, Tensor) else np.asarray(t)
    finite = bool(torch.isfinite(a).all()) if isinstance(a, Tensor) else bool(np.isfinite(a).all())
    if not finite:
        raise ValueError(
            f"{name} contains NaN or Inf, which would be drawn as blank pixels on a "
            "meaningless colour scale; check how it was computed (or replace the "
            "values, e.g. torch.nan_to_num)"
        )
    return int(t.shape[0]), (int(t.shape[-2]), int(t.shape[-1]))


def _check_titles(titles: Any, name: str, n: int) -> None:
    if titles is None:
        return
    if isinstance(titles, (str, bytes)) or not isinstance(titles, Sequence):
        raise TypeError(f"{name} must be a sequence of {n} strings (one per row), got {type(titles).__name__}")
    if len(titles) != n:
        raise ValueError(f"{name} has {len(titles)} entries, expected {n}")


def _check_size(value: Any, name: str, pair: bool = False) -> None:
    """Positive finite size(s): a number, or a pair ``(width, height)``."""
    if pair:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"{name} must be a pair (width, height) in inches, got {value!r}")
        for i, v in enumerate(value):
            check_float(v, f"{name}[{i}]", 0.0, low_inclusive=False)
    else:
        check_float(value, name, 0.0, low_inclusive=False)


def _check_choice(value: str, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def save_figure(fig, path: Union[str, os.PathLike], dpi: int = 110) -> str:
    """Write ``fig`` to ``path`` (format from the extension).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : str
        The file to write.
    dpi : int, optional
        Resolution. Default: 110

    Returns
    -------
    str
        ``path``.

    Examples
    --------
    >>> import os, tempfile
    >>> from captum_prior.visualization import plot_images, save_figure
    >>> import torch
    >>> path = os.path.join(tempfile.mkdtemp(), "grid.png")
    >>> save_figure(plot_images(torch.rand(2, 1, 8, 8)), path) == path
    True
    """
    fig.savefig(path, dpi=dpi)
    return str(path)


# ---------------------------------------------------------------- heat maps
def plot_attributions(
    images: Optional[Tensor],
    attributions: Mapping[str, Union[Tensor, np.ndarray]],
    row_titles: Optional[Sequence[str]] = None,
    *,
    sign: str = "all",
    scale: str = "shared",
    outlier_perc: float = 1.0,
    cmap: Optional[str] = None,
    colorbar_label: Optional[str] = None,
    title: Optional[str] = None,
    overlay: bool = False,
    panel_size: float = 2.1,
    fontsize: float = 9.0,
):
    r"""One row per image: the image, then one heat map per method.

    Parameters
    ----------
    images : Tensor or None
        ``N x C x H x W`` in ``[0, 1]`` (``C`` = 1 or 3), drawn in the first
        column; None omits that column.
    attributions : dict[str, Tensor]
        column title (the method) -> maps shaped ``N x C x H x W`` (or ``N x
        H x W``); channels are summed, as Captum's ``heat_map`` does.
    row_titles : sequence of str, optional
        a label per row, e.g. ``"pred: Sneaker"``. Default: None
    sign : str, optional
        ``"all"`` (signed, :data:`DIVERGING_CMAP`, symmetric scale),
        ``"positive"``, ``"negative"`` or ``"absolute_value"``
        (non-negative, :data:`SEQUENTIAL_CMAP`, scale from 0). Default:
        ``"all"``
    scale : str, optional
        ``"shared"``: every heat map of the grid on one scale with one
        colour bar; ``"per_panel"``: each panel on its own scale with its
        own colour bar (the title says so). Default: ``"shared"``
    outlier_perc : float, optional
        the scale ends at the ``100 - outlier_perc`` percentile of ``|A|``
        (of the whole grid, or of the panel); larger values saturate. As in
        Captum. Default: 1.0
    cmap : str, optional
        overrides the colour map (keep the convention unless the maps are
        not attributions). Default: None
    colorbar_label : str, optional
        Default: ``"attribution"`` (with ``"shared scale"`` or ``"per-panel
        scale"`` appended)
    title : str, optional
        figure title. Default: None
    overlay : bool, optional
        draw each heat map semi-transparent over the grey-scale image.
        Default: False
    panel_size : float, optional
        inches per panel. Default: 2.1
    fontsize : float, optional
        titles and labels. Default: 9

    Returns
    -------
    matplotlib.figure.Figure
        The figure (built without pyplot).

    Raises
    ------
    ValueError
        maps or images holding NaN/Inf, maps of different sizes (across
        methods, or unlike the images), or row counts that differ.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> from captum_prior.visualization import plot_attributions
    >>> x = torch.rand(2, 3, 8, 8)
    >>> fig = plot_attributions(x, {"IG": torch.randn(2, 3, 8, 8)}, ["cat", "dog"])
    >>> type(fig).__name__
    'Figure'
    """
    from matplotlib.colors import Normalize

    _check_choice(sign, "sign", SIGNS)
    _check_choice(scale, "scale", SCALES)
    if not isinstance(attributions, Mapping):
        raise TypeError(
            f"attributions must be a dict of method name -> maps, got {type(attributions).__name__}; "
            "e.g. {'EG': attributions}"
        )
    if not attributions:
        raise ValueError("attributions must name at least one method")
    check_float(outlier_perc, "outlier_perc", 0.0, 100.0, high_inclusive=False)
    _check_size(panel_size, "panel_size")
    _check_size(fontsize, "fontsize")
    title = None if title is None else str(title)
    names = list(attributions)
    shapes = {k: _check_maps(a, f"attributions[{k!r}]", "attribution maps") for k, a in attributions.items()}
    first = names[0]
    n, hw = shapes[first]
    for k, (nk, hwk) in shapes.items():
        if nk != n:
            raise ValueError(f"attributions[{k!r}] has {nk} rows, expected {n}")
        if hwk != hw:
            raise ValueError(
                f"attributions[{k!r}] maps are {hwk[0]} x {hwk[1]} but attributions[{first!r}] "
                f"maps are {hw[0]} x {hw[1]}; every method's maps must have the images' size "
                "(upsample low-resolution maps first, e.g. captum's LayerAttribution.interpolate)"
            )
    if images is not None:
        n_img, hw_img = _check_maps(images, "images", "images")
        if n_img != n:
            raise ValueError(f"images has {n_img} rows, attributions have {n}")
        if hw_img != hw:
            raise ValueError(
                f"images are {hw_img[0]} x {hw_img[1]} but the attribution maps are "
                f"{hw[0]} x {hw[1]}; pass the images the maps were computed for (or "
                "upsample the maps to the images' size, e.g. captum's LayerAttribution.interpolate)"
            )
    _check_titles(row_titles, "row_titles", n)
    maps = {k: [_reduce(a[i], sign) for i in range(n)] for k, a in attributions.items()}
    signed = sign == "all"
    cmap = cmap or (DIVERGING_CMAP if signed else SEQUENTIAL_CMAP)
    label = colorbar_label or "attribution"

    def norm_for(ms):
        v = _limit(ms, outlier_perc)
        return Normalize(-v, v) if signed else Normalize(0.0, v)

    shared = norm_for([m for ms in maps.values() for m in ms]) if scale == "shared" else None
    img_col = 1 if images is not None else 0
    cols = img_col + len(names)
    extra = 0.6 if scale == "shared" else 0.5 * len(names)
    fig = _new_figure((panel_size * cols + extra, panel_size * n + 0.5))
    axes = fig.subplots(n, cols, squeeze=False)
    last = None
    for i in range(n):
        if images is not None:
            ax = axes[i, 0]
            _show_image(ax, images[i])
            if i == 0:
                ax.set_title("input", fontsize=fontsize)
        for j, name in enumerate(names):
            ax = axes[i, img_col + j]
            m = maps[name][i]
            norm = shared if shared is not None else norm_for([m])
            if overlay and images is not None:
                grey = _hwc(images[i]).mean(-1)
                ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
                last = ax.imshow(m, cmap=cmap, norm=norm, alpha=0.65)
            else:
                last = ax.imshow(m, cmap=cmap, norm=norm)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=fontsize)
            if shared is None:
                cb = fig.colorbar(last, ax=ax, fraction=0.046, pad=0.02)
                cb.ax.tick_params(labelsize=fontsize - 2)
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=fontsize)
    if shared is not None:
        cb = fig.colorbar(last, ax=axes[:, img_col:].ravel().tolist(), shrink=min(1.0, 0.9 / max(n, 1) + 0.5))
        cb.set_label(f"{label} (shared scale)", fontsize=fontsize)
        cb.ax.tick_params(labelsize=fontsize - 1)
    note = None if shared is not None else f"each panel on its own {label} scale"
    full = "\n".join(t for t in (title, note) if t)
    if full:
        fig.suptitle(full, fontsize=fontsize + 1)
    return fig


def plot_images(
    images: Tensor,
    titles: Optional[Sequence[str]] = None,
    ncols: int = 8,
    suptitle: Optional[str] = None,
    panel_size: float = 1.6,
    fontsize: float = 8.0,
):
    """``N x C x H x W`` images in ``[0, 1]`` as a grid with optional titles.

    Parameters
    ----------
    images : Tensor
        ``N x C x H x W`` images, ``C`` 1 or 3, values in ``[0, 1]``.
    titles : sequence of str, optional
        One title per image. Default: None
    ncols : int, optional
        Panels per row. Default: 8
    suptitle : str, optional
        Figure title. Default: None
    panel_size : float, optional
        Inches per panel. Default: 1.6
    fontsize : float, optional
        Font size of the titles. Default: 8.0

    Returns
    -------
    matplotlib.figure.Figure
        The figure (built without pyplot).

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> from captum_prior.visualization import plot_images
    >>> fig = plot_images(torch.rand(3, 1, 8, 8), ["a", "b", "c"])
    >>> type(fig).__name__
    'Figure'
    """
    n, _ = _check_maps(images, "images", "images")
    _check_titles(titles, "titles", n)
    check_int(ncols, "ncols", 1)
    _check_size(panel_size, "panel_size")
    _check_size(fontsize, "fontsize")
    suptitle = None if suptitle is None else str(suptitle)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig = _new_figure((panel_size * ncols, (panel_size + 0.3) * nrows + (0.3 if suptitle else 0)))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            _show_image(ax, images[k])
            if titles is not None:
                ax.set_title(titles[k], fontsize=fontsize)
    if suptitle:
        fig.suptitle(suptitle, fontsize=fontsize + 2)
    return fig


# ------------------------------------------------------------------- curves
def _as_2d(v: Union[Tensor, np.ndarray, Sequence[float]]) -> np.ndarray:
    a = v.detach().cpu().double().numpy() if isinstance(v, Tensor) else np.asarray(v, dtype=float)
    return a[None] if a.ndim == 1 else a.reshape(a.shape[0], -1)


def plot_curves(
    x: Union[Tensor, np.ndarray, Sequence[float], Mapping[str, Any]],
    curves: Mapping[str, Any],
    *,
    xlabel: str = "",
    ylabel: str = "",
    title: Optional[str] = None,
    band: Optional[str] = "ci",
    confidence: float = 0.95,
    label_values: Optional[Mapping[str, Any]] = None,
    panel_size: Tuple[float, float] = (4.6, 3.4),
    fontsize: float = 9.0,
    sharey: bool = True,
    sample_name: str = "examples",
):
    r"""Mean curve per method, with a band over examples and a legend.

    Parameters
    ----------
    x : Tensor, array or dict
        the x values of every curve, or panel -> x values when ``curves``
        has panels.
    curves : dict
        label -> values ``N x K`` (``N`` examples, the mean is drawn) or
        ``K``; or panel title -> such a dict, one subplot per panel.
    xlabel, ylabel : str, optional
        axis labels. Default: ``""``
    title : str, optional
        figure title. Default: None
    band : str or None, optional
        ``"ci"``: normal-approximation ``confidence`` interval of the mean
        over examples; ``"sd"``: ± one standard deviation; None: no band.
        Default: ``"ci"``
    confidence : float, optional
        for ``band="ci"``. Default: 0.95
    label_values : dict, optional
        label -> number appended to the legend entry (e.g. the AUC); or
        panel -> such a dict. Default: None
    panel_size : (float, float), optional
        inches per panel.
    fontsize : float, optional
        Default: 9
    sharey : bool, optional
        panels share the y axis. Default: True
    sample_name : str, optional
        what the rows of a curve are, for the band's note (e.g. ``"bootstrap
        repeats"``). Default: ``"examples"``

    Returns
    -------
    matplotlib.figure.Figure
        The figure (built without pyplot).

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> from captum_prior.visualization import plot_curves
    >>> fig = plot_curves([0.0, 0.5, 1.0], {"IG": torch.rand(10, 3), "EG": torch.rand(10, 3)},
    ...                   xlabel="fraction deleted", ylabel="probability")
    >>> type(fig).__name__
    'Figure'
    """
    from scipy.stats import norm as _norm

    _check_choice(str(band), "band", ("ci", "sd", "None"))
    check_float(confidence, "confidence", 0.0, 1.0, False, False)
    _check_size(panel_size, "panel_size", pair=True)
    _check_size(fontsize, "fontsize")
    if not isinstance(curves, Mapping):
        raise TypeError(f"curves must be a dict of label -> values, got {type(curves).__name__}")
    if label_values is not None and not isinstance(label_values, Mapping):
        raise TypeError(
            f"label_values must be a dict of label -> number (or panel -> such a dict), got "
            f"{type(label_values).__name__}"
        )
    title = None if title is None else str(title)
    first = next(iter(curves.values()), None)
    if first is None:
        raise ValueError("curves must hold at least one curve")
    panels = curves if isinstance(first, Mapping) else {"": curves}
    fig = _new_figure((panel_size[0] * len(panels), panel_size[1]))
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=sharey)[0]
    z = float(_norm.ppf(0.5 + confidence / 2))
    for ax, (ptitle, pcurves) in zip(axes, panels.items()):
        px = x[ptitle] if isinstance(x, Mapping) else x
        px = _as_2d(px)[0]
        vals = label_values.get(ptitle, label_values) if label_values is not None else None
        for label, c in pcurves.items():
            a = _as_2d(c)
            mean = a.mean(0)
            text = str(label)
            if vals is not None and isinstance(vals, Mapping) and label in vals:
                text += f" ({float(vals[label]):.3f})"
            (line,) = ax.plot(px, mean, label=text, lw=1.8)
            if band is not None and a.shape[0] > 1:
                half = a.std(0, ddof=1) * (z / np.sqrt(a.shape[0]) if band == "ci" else 1.0)
                ax.fill_between(px, mean - half, mean + half, color=line.get_color(), alpha=0.15, lw=0)
        if ptitle:
            ax.set_title(ptitle, fontsize=fontsize + 1)
        ax.set_xlabel(xlabel, fontsize=fontsize)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=fontsize - 1)
        ax.legend(fontsize=fontsize - 1)
    axes[0].set_ylabel(ylabel, fontsize=fontsize)
    note = {"ci": f"shaded: {confidence:.0%} CI of the mean", "sd": "shaded: ± 1 s.d."}.get(str(band))
    n_ex = max(_as_2d(c).shape[0] for p in panels.values() for c in p.values())
    suffix = f"{note} over {n_ex} {sample_name}" if note and n_ex > 1 else None
    full = "\n".join(t for t in (title, suffix) if t)
    if full:
        fig.suptitle(full, fontsize=fontsize + 1)
    return fig


def _interval(v: Any) -> Tuple[float, float, float]:
    if isinstance(v, Mapping):
        return float(v["mean"]), float(v["low"]), float(v["high"])
    m, lo, hi = v
    return float(m), float(lo), float(hi)


def plot_intervals(
    estimates: Mapping[str, Any],
    *,
    xlabel: str = "",
    title: Optional[str] = None,
    reference: Optional[float] = None,
    legend_title: Optional[str] = None,
    panel_size: Tuple[float, float] = (3.4, 0.45),
    fontsize: float = 9.0,
    better: Optional[Mapping[str, str]] = None,
    legend: Optional[bool] = None,
):
    r"""Point estimates with intervals: one row per item, one panel per metric.

    Parameters
    ----------
    estimates : dict
        item -> ``(mean, low, high)`` or a dict with keys ``mean, low,
        high`` (e.g. from :func:`captum_prior.metrics.stats.mean_ci`); or
        panel title (a metric) -> such a dict. In a panel dict the items
        (methods) are drawn in one colour each, with a legend.
    xlabel : str, optional
        Default: ``""``
    title : str, optional
        figure title. Default: None
    reference : float, optional
        a vertical reference line (e.g. 0). Default: None
    legend_title : str, optional
        Default: None
    panel_size : (float, float), optional
        width per panel and height per row, in inches.
    better : dict, optional
        panel -> ``"higher"`` or ``"lower"``, added to the panel title.
        Default: None
    legend : bool, optional
        a legend of the items, one colour each. Default: None (a legend when
        there are several panels; one panel is labelled by its y axis and
        drawn in one colour)

    Returns
    -------
    matplotlib.figure.Figure
        The figure (built without pyplot).

    Examples
    --------
    >>> from captum_prior.visualization import plot_intervals
    >>> fig = plot_intervals({"IG": {"mean": 0.5, "low": 0.4, "high": 0.6},
    ...                       "EG": {"mean": 0.55, "low": 0.5, "high": 0.6}}, xlabel="insertion AUC")
    >>> type(fig).__name__
    'Figure'
    """
    from matplotlib.lines import Line2D

    _check_size(panel_size, "panel_size", pair=True)
    _check_size(fontsize, "fontsize")
    if not isinstance(estimates, Mapping):
        raise TypeError(f"estimates must be a dict of item -> (mean, low, high), got {type(estimates).__name__}")
    title = None if title is None else str(title)
    first = next(iter(estimates.values()), None)
    if first is None:
        raise ValueError("estimates must hold at least one item")
    panels = estimates if isinstance(first, Mapping) and "mean" not in first else {"": estimates}
    items = list(dict.fromkeys(k for p in panels.values() for k in p))
    ncols = min(len(panels), 3)
    nrows = (len(panels) + ncols - 1) // ncols
    h = max(1.6, panel_size[1] * len(items) + 0.9)
    if legend is None:
        legend = len(panels) > 1
    fig = _new_figure((panel_size[0] * ncols + (1.8 if legend else 1.2), h * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colors = [f"C{i % 10}" for i in range(len(items))] if legend else ["C0"] * len(items)
    for k, ax in enumerate(axes.flat):
        if k >= len(panels):
            ax.axis("off")
            continue
        ptitle, pvals = list(panels.items())[k]
        for r, item in enumerate(items):
            if item not in pvals:
                continue
            m, lo, hi = _interval(pvals[item])
            ax.errorbar(m, r, xerr=[[m - lo], [hi - m]], fmt="o", color=colors[r], capsize=3, ms=5)
        if reference is not None:
            ax.axvline(reference, color="0.4", lw=0.8, ls="--")
        ax.set_yticks(range(len(items)))
        ax.set_yticklabels(items if k % ncols == 0 else [], fontsize=fontsize)
        ax.set_ylim(len(items) - 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=fontsize - 1)
        ax.set_xlabel(xlabel, fontsize=fontsize)
        if ptitle:
            extra = f" ({better[ptitle]} is better)" if better and ptitle in better else ""
            ax.set_title(f"{ptitle}{extra}", fontsize=fontsize + 1)
    handles = [Line2D([], [], marker="o", color=c, ls="-", label=it) for it, c in zip(items, colors)]
    if legend:
        fig.legend(handles=handles, loc="outside right center", fontsize=fontsize - 1, title=legend_title,
                   title_fontsize=fontsize - 1)
    if title:
        fig.suptitle(title, fontsize=fontsize + 1)
    return fig


# ------------------------------------------------------- file-writing forms
def attribution_grid(
    images: Tensor,
    attributions: Dict[str, Tensor],
    path: Union[str, os.PathLike],
    row_titles: Optional[Sequence[str]] = None,
    method: str = "heat_map",
    sign: str = "all",
    dpi: int = 110,
    scale: str = "shared",
    title: Optional[str] = None,
) -> str:
    r"""Save :func:`plot_attributions` as a PNG and return its path.

    Parameters
    ----------
    images : Tensor
        ``N x C x H x W`` in ``[0, 1]``.
    attributions : dict[str, Tensor]
        method name -> attributions.
    path : str or PathLike
        the PNG to write.
    row_titles : sequence of str, optional
        a label per row. Default: None
    method : str, optional
        ``"heat_map"`` or ``"blended_heat_map"`` (heat map over the
        grey-scale image), Captum's names. Default: ``"heat_map"``
    sign : str, optional
        as in :func:`plot_attributions`. Default: ``"all"``
    dpi : int, optional
        resolution. Default: 110
    scale : str, optional
        ``"shared"`` or ``"per_panel"``. Default: ``"shared"``
    title : str, optional
        figure title. Default: None

    Returns
    -------
    str
        The path written.

    Examples
    --------
    >>> import os, tempfile
    >>> import torch
    >>> from captum_prior.visualization import attribution_grid
    >>> path = os.path.join(tempfile.mkdtemp(), "maps.png")
    >>> attribution_grid(torch.rand(2, 1, 8, 8), {"IG": torch.randn(2, 1, 8, 8)}, path) == path
    True
    """
    _check_choice(method, "method", ("heat_map", "blended_heat_map"))
    fig = plot_attributions(images, attributions, row_titles, sign=sign, scale=scale, title=title,
                            overlay=method == "blended_heat_map")
    return save_figure(fig, path, dpi)


def image_grid(
    images: Tensor,
    path: Union[str, os.PathLike],
    titles: Optional[Sequence[str]] = None,
    ncols: int = 8,
    suptitle: Optional[str] = None,
    dpi: int = 110,
) -> str:
    """Save :func:`plot_images` as a PNG and return its path.

    Parameters
    ----------
    images, titles, ncols, suptitle
        As in :func:`plot_images`.
    path : str
        The PNG to write.
    dpi : int, optional
        Resolution. Default: 110

    Returns
    -------
    str
        ``path``.

    Examples
    --------
    >>> import os, tempfile
    >>> import torch
    >>> from captum_prior.visualization import image_grid
    >>> path = os.path.join(tempfile.mkdtemp(), "images.png")
    >>> image_grid(torch.rand(2, 1, 8, 8), path) == path
    True
    """
    return save_figure(plot_images(images, titles, ncols, suptitle), path, dpi)


# ---------------------------------------------------------- sanity checks
def _similarity_axes(ax, layers: Sequence[str], curves: Mapping[str, Any], measure: str,
                     threshold: Optional[float], fontsize: float, confidence: float = 0.95) -> None:
    """Mean similarity (with a bootstrap CI band) per method against the
    randomisation step; step 0 is the trained model (similarity 1)."""
    from captum_prior.metrics.stats import mean_ci

    steps = np.arange(len(layers) + 1)
    for label, c in curves.items():
        a = _as_2d(c)
        bands = [mean_ci(a[:, j], confidence, 500, 0, "percentile") for j in range(a.shape[1])]
        mean = np.array([1.0] + [b["mean"] for b in bands])
        (line,) = ax.plot(steps, mean, marker="o", ms=3, lw=1.8, label=str(label))
        if a.shape[0] > 1:
            ax.fill_between(steps, [1.0] + [b["low"] for b in bands], [1.0] + [b["high"] for b in bands],
                            color=line.get_color(), alpha=0.15, lw=0)
    if threshold is not None:
        ax.axhline(threshold, color="0.4", lw=1, ls="--", label=f"verdict threshold {threshold:g}")
    ax.set_xticks(steps)
    ax.set_xticklabels(["trained"] + list(layers), rotation=40, ha="right", fontsize=fontsize - 1)
    ax.set_ylabel(f"{measure} similarity", fontsize=fontsize)
    ax.set_ylim(min(-0.1, ax.get_ylim()[0]), 1.05)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=fontsize - 1)
    ax.legend(fontsize=fontsize - 1)


def plot_similarity_curves(
    layers: Sequence[str],
    curves: Mapping[str, Any],
    *,
    measure: str = "spearman_abs",
    threshold: Optional[float] = None,
    title: Optional[str] = None,
    xlabel: str = "cascading randomisation, output layer first",
    panel_size: Tuple[float, float] = (5.2, 3.6),
    fontsize: float = 9.0,
):
    r"""Similarity to the trained model's maps as layers are randomised.

    Parameters
    ----------
    layers : sequence of str
        the randomised layers, in order (output layer first); the x axis is
        "trained" then one tick per layer.
    curves : dict
        method -> ``N x L`` similarities (``N`` examples); the mean is drawn
        with a 95 % bootstrap band.
    measure : str, optional
        the y label. Default: ``"spearman_abs"``
    threshold : float, optional
        a dashed line, e.g. the verdict's threshold. Default: None
    title : str, optional
        Default: None
    xlabel : str, optional
        Default: the cascading order
    panel_size : (float, float), optional
        inches.
    fontsize : float, optional
        Default: 9

    Returns
    -------
    matplotlib.figure.Figure
        The figure (built without pyplot).

    Examples
    --------
    >>> import numpy as np
    >>> from captum_prior.visualization import plot_similarity_curves
    >>> curves = {"Saliency": np.array([[0.6, 0.3, 0.1], [0.5, 0.2, 0.0]])}
    >>> fig = plot_similarity_curves(["fc", "conv2", "conv1"], curves, threshold=0.5)
    >>> type(fig).__name__
    'Figure'
    """
    if not curves:
        raise ValueError("curves must hold at least one method")
    for k, c in curves.items():
        if _as_2d(c).shape[1] != len(layers):
            raise ValueError(f"curves[{k!r}] has {_as_2d(c).shape[1]} steps but layers names {len(layers)}")
    fig = _new_figure(panel_size)
    ax = fig.subplots()
    _similarity_axes(ax, layers, curves, measure, threshold, fontsize)
    ax.set_xlabel(xlabel, fontsize=fontsize)
    if title:
        fig.suptitle(title, fontsize=fontsize + 1)
    return fig


def plot_model_randomization(
    result: Any,
    *,
    mode: str = "cascading",
    n_examples: int = 3,
    methods: Optional[Sequence[str]] = None,
    measures: Optional[Sequence[str]] = None,
    class_names: Optional[Sequence[str]] = None,
    outlier_perc: float = 1.0,
    panel_size: float = 1.35,
    fontsize: float = 8.0,
):
    r"""A model-randomisation result in Adebayo et al.'s layout.

    Top: one row per (example, method); the input, the trained model's map,
    then the map after each randomisation step (cascading: every layer down
    to the named one; independent: that layer alone).  Bottom: one panel per
    similarity measure, the mean similarity per method against the step,
    with a 95 % bootstrap band and the verdict's threshold.

    The maps of different methods and of differently randomised models have
    very different magnitudes, so each map is divided by its own
    ``100 - outlier_perc`` percentile of ``|A|`` (as in the paper's figures)
    and all are drawn on one symmetric diverging scale, [-1, 1], with one
    colour bar; the colour bar's label says so.

    Parameters
    ----------
    result : ModelRandomizationResult
        from :func:`captum_prior.metrics.sanity.model_randomization_test`.
    mode : str, optional
        ``"cascading"`` or ``"independent"``. Default: ``"cascading"``
    n_examples : int, optional
        the first examples shown. Default: 3
    methods : sequence of str, optional
        Default: all
    measures : sequence of str, optional
        similarity panels. Default: all the result's measures
    class_names : sequence of str, optional
        names of the target classes for the row labels. Default: class
        indices
    outlier_perc : float, optional
        Default: 1.0
    panel_size : float, optional
        inches per map. Default: 1.35
    fontsize : float, optional
        Default: 8

    Returns
    -------
    matplotlib.figure.Figure
        The figure (built without pyplot).
    """
    from matplotlib.colors import Normalize

    if mode not in getattr(result, "attributions", {}):
        raise ValueError(f"mode must be one of {list(getattr(result, 'attributions', {}))}, got {mode!r}")
    if not 0.0 <= outlier_perc < 100.0:
        raise ValueError(f"outlier_perc must be in [0, 100), got {outlier_perc}")
    methods = list(methods) if methods is not None else list(result.attributions[mode])
    for m in methods:
        if m not in result.attributions[mode]:
            raise ValueError(f"methods: {m!r} is not in the result ({list(result.attributions[mode])})")
    measures = list(measures) if measures is not None else list(result.measures)
    for m in measures:
        if m not in result.measures:
            raise ValueError(f"measures: {m!r} is not in the result ({result.measures})")
    n = min(int(n_examples), int(result.inputs.shape[0]))
    if n < 1:
        raise ValueError(f"n_examples must be >= 1, got {n_examples}")
    if result.attributions[mode][methods[0]].dim() not in (4, 5):
        raise ValueError("plot_model_randomization draws image maps (N x C x H x W or N x H x W); "
                         "use plot_similarity_curves for other maps")
    layers = list(result.layers)
    rows = n * len(methods)
    cols = 2 + len(layers)
    fig = _new_figure((panel_size * cols + 0.9, panel_size * rows + 3.6))
    top, bottom = fig.subfigures(2, 1, height_ratios=[panel_size * rows, 3.2])
    axes = top.subplots(rows, cols, squeeze=False)
    norm = Normalize(-1.0, 1.0)
    last = None
    prefix = "up to " if mode == "cascading" else "only "
    for i in range(n):
        t = int(result.target[i]) if result.target is not None else None
        cname = (class_names[t] if class_names is not None and t is not None and t < len(class_names)
                 else (f"class {t}" if t is not None else ""))
        for k, meth in enumerate(methods):
            r = i * len(methods) + k
            img = result.inputs[i]
            if img.dim() == 3 and img.shape[0] in (1, 3):
                lo, hi = float(img.min()), float(img.max())
                _show_image(axes[r, 0], (img - lo) / (hi - lo) if hi > lo else img * 0)
            else:
                axes[r, 0].axis("off")
            axes[r, 0].set_ylabel(f"#{i} {cname}\n{meth}", fontsize=fontsize)
            stack = result.attributions[mode][meth]
            for j in range(len(layers) + 1):
                m = _reduce(stack[j, i], "all")
                lim = _limit([m], outlier_perc)
                ax = axes[r, 1 + j]
                last = ax.imshow(np.clip(m / lim, -1, 1), cmap=DIVERGING_CMAP, norm=norm)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title("trained" if j == 0 else prefix + layers[j - 1], fontsize=fontsize)
            if r == 0:
                axes[r, 0].set_title("input", fontsize=fontsize)
    cb = top.colorbar(last, ax=axes[:, 1:].ravel().tolist(), shrink=0.8)
    cb.set_label(f"attribution / its own {100 - outlier_perc:g}th pct of |A| (per map)", fontsize=fontsize)
    cb.ax.tick_params(labelsize=fontsize - 1)
    sax = bottom.subplots(1, len(measures), squeeze=False)[0]
    for ax, meas in zip(sax, measures):
        curves = {meth: result.similarity[mode][meth][meas] for meth in methods}
        _similarity_axes(ax, layers, curves, meas, result.threshold if meas == "spearman_abs" else None,
                         fontsize)
        ax.set_title(meas, fontsize=fontsize + 1)
        if ax is not sax[0] and ax.get_legend() is not None:
            ax.get_legend().remove()
    n_all = int(result.inputs.shape[0])
    bottom.suptitle(f"{mode} randomisation: mean similarity to the trained model's maps over {n_all} "
                    "examples (95 % bootstrap band)", fontsize=fontsize + 1)
    return fig


__all__ += ["plot_model_randomization", "plot_similarity_curves"]
