"""Interpretable features for images: SLIC superpixels and square patches.

Both return integer *feature masks* in Captum's convention (one feature id per
input element, broadcastable to the inputs), for ``feature_mask=`` of
:class:`~captum_prior.attr.DMMMENAttribution`, :class:`~captum_prior.attr.BayLime`
or Captum's ``Lime`` / ``KernelShap`` / ``FeatureAblation``.

The DMM-MEN paper (Guo et al., NeurIPS 2018, §4.2 and Table 1) reduces an
image to superpixels before its local fit, as LIME does; which segmentation it
used is not stated (methods.md §5.5).  :func:`slic_feature_mask` uses SLIC
(Achanta et al., TPAMI 2012) from scikit-image, the segmentation of Captum's
Lime tutorials; :func:`patch_feature_mask` gives square patches.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from captum_prior._validation import check_float, check_int

__all__ = ["patch_feature_mask", "slic_feature_mask"]


def patch_feature_mask(
    shape: Tuple[int, ...],
    patch_size: Union[int, Tuple[int, int]] = 4,
    device: Any = None,
) -> Tensor:
    r"""A feature mask of square patches for images.

    Args:
        shape (tuple): the shape of one input, ``C x H x W`` (or ``H x W``);
                    every channel of a patch shares the patch's feature id.
        patch_size (int or tuple, optional): patch height and width. Default: 4
        device (torch.device, optional): device of the mask. Default: None

    Returns:
        A ``1 x C x H x W`` (or ``1 x H x W``) ``long`` mask with ids
        ``0 .. n_patches - 1`` in row-major patch order.
    """
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must be (C, H, W) or (H, W), got {tuple(shape)}")
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    check_int(ph, "patch_size", 1)
    check_int(pw, "patch_size", 1)
    H, W = shape[-2], shape[-1]
    rows = torch.arange(H, device=device) // ph
    cols = torch.arange(W, device=device) // pw
    n_cols = int((W + pw - 1) // pw)
    mask = rows[:, None] * n_cols + cols[None, :]
    if len(shape) == 3:
        mask = mask.expand(shape[0], H, W)
    return mask.unsqueeze(0).clone()


def slic_feature_mask(
    images: Tensor,
    n_segments: int = 50,
    compactness: float = 0.2,
    sigma: float = 0.5,
    max_num_iter: int = 10,
    device: Optional[Any] = None,
) -> Tensor:
    r"""SLIC superpixels (Achanta et al. 2012, ``skimage.segmentation.slic``)
    of every image, as a Captum feature mask.

    Each image is min-max scaled to ``[0, 1]`` over all its channels first,
    so ``compactness`` means the same for raw, normalised or standardised
    inputs (scikit-image's default of 10 assumes CIELAB values; 0.1-0.3 suits
    ``[0, 1]`` intensities).  Colour images are segmented in their own
    channels (no CIELAB conversion, which would need RGB in ``[0, 1]``).
    Every channel of a pixel shares the pixel's superpixel id; ids are
    ``0 .. n - 1`` per image (``n`` may differ from ``n_segments``, as in
    scikit-image).  A constant image gets one segment.

    Args:
        images (Tensor): ``N x C x H x W``, ``C x H x W`` or ``H x W``.
        n_segments (int, optional): approximate number of superpixels. Default: 50
        compactness (float, optional): balance of colour and space proximity
                    on ``[0, 1]``-scaled images; higher = squarer. Default: 0.2
        sigma (float, optional): Gaussian pre-smoothing (pixels). Default: 0.5
        max_num_iter (int, optional): k-means iterations. Default: 10
        device (torch.device, optional): device of the mask; ``None`` = the
                    images' device. Default: None

    Returns:
        A ``long`` mask of the images' shape (``N x C x H x W`` etc.).

    Raises:
        ImportError: scikit-image is not installed.
        ValueError: NaN/Inf in ``images`` or a bad shape or option.
    """
    try:
        from skimage.segmentation import slic
    except ImportError:  # pragma: no cover - scikit-image is a dependency
        raise ImportError(
            "slic_feature_mask needs scikit-image: pip install scikit-image "
            "(or use patch_feature_mask)"
        ) from None
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() not in (2, 3, 4) or images.numel() == 0:
        raise ValueError(
            f"images must be N x C x H x W, C x H x W or H x W, got shape "
            f"{tuple(images.shape)}"
        )
    if not images.is_floating_point():
        images = images.to(torch.float32)
    if not torch.isfinite(images).all():
        raise ValueError("images contains NaN or Inf")
    n_segments = check_int(n_segments, "n_segments", 1)
    compactness = check_float(compactness, "compactness", 0.0, low_inclusive=False)
    sigma = check_float(sigma, "sigma", 0.0)
    max_num_iter = check_int(max_num_iter, "max_num_iter", 1)
    dim = images.dim()
    x = images
    if dim == 2:
        x = x[None, None]
    elif dim == 3:
        x = x[None]
    arr = x.detach().to("cpu", torch.float64).numpy()
    N, C, H, W = arr.shape
    out = np.empty((N, H, W), dtype=np.int64)
    for i in range(N):
        img = arr[i]
        lo, hi = img.min(), img.max()
        if hi - lo <= 0:
            out[i] = 0
            continue
        img = (img - lo) / (hi - lo)
        seg = slic(
            img[0] if C == 1 else np.moveaxis(img, 0, -1),
            n_segments=n_segments,
            compactness=compactness,
            sigma=sigma,
            max_num_iter=max_num_iter,
            channel_axis=None if C == 1 else -1,
            convert2lab=False,
            enforce_connectivity=True,
            start_label=0,
        )
        # consecutive ids 0..n-1
        _, seg = np.unique(seg, return_inverse=True)
        out[i] = seg.reshape(H, W)
    mask = torch.from_numpy(out)[:, None].expand(N, C, H, W).clone()
    if dim == 2:
        mask = mask[0, 0]
    elif dim == 3:
        mask = mask[0]
    return mask.to(images.device if device is None else device)
