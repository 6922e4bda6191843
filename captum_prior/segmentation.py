"""Interpretable features for images: SLIC superpixels and square patches.

Both return integer *feature masks* in Captum's convention (one feature id per
input element, broadcastable to the inputs), for ``feature_mask=`` of
:class:`~captum_prior.attr.DMMMENAttribution`, :class:`~captum_prior.attr.BayLime`
or Captum's ``Lime`` / ``KernelShap`` / ``FeatureAblation``.

The DMM-MEN paper (Guo et al., NeurIPS 2018, §4.2 and Table 1) reduces an
image to superpixels before its local fit, as LIME does, without saying which
segmentation it used. :func:`slic_feature_mask` uses SLIC
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

    Parameters
    ----------
    shape : tuple of int
        The shape of one input, ``C x H x W`` (or ``H x W``); every channel of
        a patch shares the patch's feature id.
    patch_size : int or tuple of int, default=4
        Patch height and width (one int for square patches). Patches at the
        right and bottom edges are cut short when the size does not divide
        the image.
    device : str or torch.device, optional
        Device of the mask (CPU when None).

    Returns
    -------
    torch.Tensor
        A ``1 x C x H x W`` (or ``1 x H x W``) ``long`` mask with ids
        ``0 .. n_patches - 1`` in row-major patch order.

    Raises
    ------
    ValueError
        ``shape`` has neither 2 nor 3 dimensions, or ``patch_size`` < 1.

    Examples
    --------
    >>> from captum_prior.segmentation import patch_feature_mask
    >>> mask = patch_feature_mask((1, 28, 28), 7)
    >>> tuple(mask.shape), int(mask.max()) + 1
    ((1, 1, 28, 28), 16)
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
    r"""SLIC superpixels of every image, as a Captum feature mask.

    SLIC (Achanta et al., TPAMI 2012) is run by
    ``skimage.segmentation.slic``. Each image is min-max scaled to ``[0, 1]``
    over all its channels first, so ``compactness`` means the same for raw,
    normalised or standardised inputs (scikit-image's default of 10 assumes
    CIELAB values; 0.1-0.3 suits ``[0, 1]`` intensities). Colour images are
    segmented in their own channels (no CIELAB conversion, which would need
    RGB in ``[0, 1]``).

    Parameters
    ----------
    images : torch.Tensor
        ``N x C x H x W``, ``C x H x W`` or ``H x W``.
    n_segments : int, default=50
        Approximate number of superpixels.
    compactness : float, default=0.2
        Balance of colour and space proximity on ``[0, 1]``-scaled images;
        higher gives squarer superpixels.
    sigma : float, default=0.5
        Gaussian pre-smoothing, in pixels.
    max_num_iter : int, default=10
        k-means iterations.
    device : str or torch.device, optional
        Device of the mask (the images' device when None).

    Returns
    -------
    torch.Tensor
        A ``long`` mask of the images' shape. Every channel of a pixel shares
        the pixel's superpixel id; ids are ``0 .. n - 1`` per image (``n`` may
        differ from ``n_segments``, as in scikit-image). A constant image gets
        one segment.

    Raises
    ------
    TypeError
        ``images`` is not a tensor.
    ValueError
        NaN or Inf in ``images``, a bad shape, or an option out of range.
    ImportError
        scikit-image is not installed.

    Examples
    --------
    >>> from captum_prior.data import load_fashion_mnist_sample
    >>> from captum_prior.segmentation import slic_feature_mask
    >>> x, _ = load_fashion_mnist_sample(2)
    >>> mask = slic_feature_mask(x, n_segments=30)
    >>> mask.shape == x.shape, mask.dtype
    (True, torch.int64)
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
