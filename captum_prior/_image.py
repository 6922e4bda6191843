"""Small image operations in plain ``torch.nn.functional`` (no torchvision)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_kernel1d(kernel_size: int, sigma: float, device=None, dtype=None) -> Tensor:
    """Normalised 1-D Gaussian of odd length ``kernel_size``."""
    half = (kernel_size - 1) / 2.0
    x = torch.arange(kernel_size, device=device, dtype=dtype or torch.float32) - half
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: Tensor, sigma: float, kernel_size: int | None = None) -> Tensor:
    """Separable Gaussian blur of ``N x C x H x W`` images, per channel.

    Args:
        x (Tensor): images.
        sigma (float): standard deviation in pixels (> 0).
        kernel_size (int, optional): odd kernel length; default
                    ``2 * ceil(3 * sigma) + 1`` (capped so it never exceeds
                    twice the image size). Default: None

    Borders are reflected, so a constant image stays constant.
    """
    if x.dim() != 4:
        raise ValueError(f"gaussian_blur expects N x C x H x W images, got {tuple(x.shape)}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if kernel_size is None:
        kernel_size = 2 * int(torch.tensor(3.0 * sigma).ceil().item()) + 1
    kernel_size = int(kernel_size) | 1
    c = x.shape[1]
    k = gaussian_kernel1d(kernel_size, sigma, x.device, x.dtype)
    pad = kernel_size // 2
    out = x
    for dim_kernel, padding in ((k.view(1, 1, 1, -1), (pad, pad, 0, 0)), (k.view(1, 1, -1, 1), (0, 0, pad, pad))):
        size = out.shape[-1] if padding[0] else out.shape[-2]
        mode = "reflect" if pad < size else "replicate"
        out = F.pad(out, padding, mode=mode)
        out = F.conv2d(out, dim_kernel.expand(c, 1, *dim_kernel.shape[2:]), groups=c)
    return out


def resize(x: Tensor, size, mode: str = "bilinear") -> Tensor:
    """Resize ``N x C x H x W`` to ``size`` (``align_corners=False``)."""
    if mode in ("bilinear", "bicubic"):
        return F.interpolate(x, size=size, mode=mode, align_corners=False)
    return F.interpolate(x, size=size, mode=mode)
