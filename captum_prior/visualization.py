"""Figures: side-by-side attribution grids (Captum's ``visualize_image_attr``)
and plain image grids."""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor


def _hwc(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy()


def attribution_grid(
    images: Tensor,
    attributions: Dict[str, Tensor],
    path: Union[str, os.PathLike],
    row_titles: Optional[Sequence[str]] = None,
    method: str = "heat_map",
    sign: str = "all",
    dpi: int = 110,
) -> str:
    r"""Save a grid: one row per image, the image then one column per method.

    Args:
        images (Tensor): ``N x C x H x W`` in ``[0, 1]``.
        attributions (dict[str, Tensor]): method name -> attributions shaped
                    like ``images``.
        path (str or PathLike): the PNG to write.
        row_titles (sequence of str, optional): a label per row. Default: None
        method (str, optional): Captum ``visualize_image_attr`` method.
                    Default: ``"heat_map"``
        sign (str, optional): Captum sign option. Default: ``"all"``
        dpi (int, optional): resolution. Default: 110

    Returns:
        the path written, as a string.
    """
    from captum.attr import visualization as viz
    from matplotlib.figure import Figure

    n = images.shape[0]
    cols = 1 + len(attributions)
    fig = Figure(figsize=(2.2 * cols, 2.2 * n))  # no pyplot: leaves the backend alone
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        img = _hwc(images[i])
        ax = axes[i, 0]
        ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
        ax.set_xticks([])
        ax.set_yticks([])
        if row_titles is not None:
            ax.set_ylabel(row_titles[i], fontsize=8)
        if i == 0:
            ax.set_title("input", fontsize=9)
        for j, (name, attr) in enumerate(attributions.items(), 1):
            a = _hwc(attr[i])
            ax = axes[i, j]
            if np.abs(a).sum() == 0:
                ax.imshow(np.zeros(a.shape[:2]), cmap="gray")
            else:
                viz.visualize_image_attr(
                    a, img, method=method, sign=sign, plt_fig_axis=(fig, ax),
                    use_pyplot=False, show_colorbar=False,
                )
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return str(path)


def image_grid(
    images: Tensor,
    path: Union[str, os.PathLike],
    titles: Optional[Sequence[str]] = None,
    ncols: int = 8,
    suptitle: Optional[str] = None,
    dpi: int = 110,
) -> str:
    """Save ``N x C x H x W`` images in ``[0, 1]`` as a grid with optional titles."""
    from matplotlib.figure import Figure

    n = images.shape[0]
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig = Figure(figsize=(1.6 * ncols, 1.8 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            img = _hwc(images[k])
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img.clip(0, 1), cmap="gray")
            if titles is not None:
                ax.set_title(titles[k], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return str(path)
