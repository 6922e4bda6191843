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

    Parameters
    ----------
    x : Tensor
        images.
    sigma : float
        standard deviation in pixels (> 0).
    kernel_size : int, optional
        odd kernel length; default ``2 * ceil(3 * sigma) + 1`` (capped so it
        never exceeds twice the image size). Default: None

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


def resized_size(height: int, width: int, shorter: int) -> tuple:
    """``(h, w)`` after scaling the shorter side to ``shorter`` pixels, the
    longer side truncated as torchvision's ``Resize(int)`` does
    (``int(shorter * long / short)``)."""
    if height <= width:
        return shorter, int(shorter * width / height)
    return int(shorter * height / width), shorter


def center_crop_box(height: int, width: int, crop_h: int, crop_w: int) -> tuple:
    """``(top, left)`` of a ``crop_h x crop_w`` crop in the centre of an image,
    rounded as torchvision's ``CenterCrop`` rounds (Python's ``round``, which
    rounds halves to even)."""
    return int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))


def resize_center_crop_pil(image, size: tuple, shorter: int | None = None):
    """torchvision's evaluation transform ``Resize(shorter)`` then
    ``CenterCrop(size)`` on a PIL image, with pillow alone.

    The image is scaled (pillow's bilinear filter, which is antialiased, as
    torchvision's ``Resize`` on PIL images) so that its shorter side has
    ``shorter`` pixels (default: just enough for the crop to fit,
    ``max(size)`` for a square crop), keeping the aspect ratio, then the
    central ``size = (h, w)`` crop is taken. An image smaller than the crop
    after scaling is scaled up so the crop fits.
    """
    from PIL import Image

    crop_h, crop_w = int(size[0]), int(size[1])
    w, h = image.size
    if shorter is not None:
        new_h, new_w = resized_size(h, w, int(shorter))
    elif crop_h == crop_w:
        new_h, new_w = resized_size(h, w, crop_h)
    else:  # the smallest scale at which the crop fits inside the image
        scale = max(crop_h / h, crop_w / w)
        new_h, new_w = int(h * scale), int(w * scale)
    new_h, new_w = max(new_h, crop_h), max(new_w, crop_w)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.BILINEAR)
    top, left = center_crop_box(new_h, new_w, crop_h, crop_w)
    return image.crop((left, top, left + crop_w, top + crop_h))
