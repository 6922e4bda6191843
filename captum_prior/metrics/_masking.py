"""Maskers of the keep/remove metrics: OpenCV Telea inpainting (optional)."""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor


def telea_available() -> bool:
    """True when OpenCV (``cv2``) can be imported."""
    return importlib.util.find_spec("cv2") is not None


def inpaint_telea(x: Tensor, masked: Tensor, radius: float = 3.0) -> Tensor:
    """Fill the ``masked`` pixels of images with OpenCV's Telea inpainting.

    As shap's ``Image("inpaint_telea")`` masker behind DeepPrior-EG's tables
    (methods.md §1.5 b): each image is mapped to 8-bit (``0..255`` over its
    own value range, since models here take ``[0, 1]`` or normalised pixels
    rather than raw bytes), inpainted with radius 3, mapped back; only masked
    pixels change.  A fully masked image becomes its per-channel mean colour.

    Args:
        x (Tensor): ``R x C x H x W`` images (any device; inpainting runs on CPU).
        masked (Tensor): ``R x 1 x H x W`` (or ``R x H x W``) boolean masks.
        radius (float): inpainting radius in pixels. Default: 3.0
    """
    import cv2  # optional dependency
    import numpy as np

    if masked.dim() == 4:
        masked = masked[:, 0]
    out = x.clone()
    xc = x.detach().to("cpu", torch.float32)
    mc = masked.detach().to("cpu")
    for r in range(x.shape[0]):
        m = mc[r]
        n_masked = int(m.sum())
        if n_masked == 0:
            continue
        img = xc[r]
        if n_masked == m.numel():
            out[r] = img.mean(dim=(1, 2), keepdim=True).expand_as(img).to(out)
            continue
        lo, hi = float(img.min()), float(img.max())
        scale = (hi - lo) if hi > lo else 1.0
        u8 = ((img - lo) / scale * 255.0).round().clamp(0, 255).to(torch.uint8)
        hwc = np.ascontiguousarray(u8.permute(1, 2, 0).numpy())
        mask8 = m.numpy().astype(np.uint8)
        if hwc.shape[2] in (1, 3):
            filled = cv2.inpaint(hwc, mask8, radius, cv2.INPAINT_TELEA)
            filled = filled.reshape(hwc.shape)
        else:
            filled = np.stack(
                [cv2.inpaint(np.ascontiguousarray(hwc[:, :, c]), mask8, radius, cv2.INPAINT_TELEA)
                 for c in range(hwc.shape[2])],
                axis=2,
            )
        back = torch.from_numpy(filled).permute(2, 0, 1).float() / 255.0 * scale + lo
        out[r] = torch.where(m.unsqueeze(0), back, img).to(out)
    return out
