"""Maskers of the perturbation metrics.

- :func:`inpaint_telea`: OpenCV's Telea inpainting (keep/remove metrics);
- :func:`noisy_linear_imputation`: ROAD's noisy linear imputation, one sparse
  linear system per image, solved for all channels at once.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from scipy.linalg import solveh_banded
from scipy.sparse.linalg import splu
from threadpoolctl import ThreadpoolController
from torch import Tensor

#: ROAD's neighbour weights: ``(dy, dx, weight)``; the four direct neighbours
#: weigh 1/6, the four diagonal ones 1/12 (the weights sum to 1).
NEIGHBOUR_WEIGHTS: Tuple[Tuple[int, int, float], ...] = (
    (0, 1, 1 / 6), (0, -1, 1 / 6), (1, 0, 1 / 6), (-1, 0, 1 / 6),
    (1, 1, 1 / 12), (1, -1, 1 / 12), (-1, 1, 1 / 12), (-1, -1, 1 / 12),
)

#: Unknowns per sparse factorisation: rows of a chunk are solved together as
#: one block-diagonal system until this many removed pixels are collected.
MAX_UNKNOWNS_PER_SOLVE = 1 << 17


def inpaint_telea(x: Tensor, masked: Tensor, radius: float = 3.0) -> Tensor:
    """Fill the ``masked`` pixels of images with OpenCV's Telea inpainting.

    As shap's ``Image("inpaint_telea")`` masker behind DeepPrior-EG's tables:
    each image is mapped to 8-bit (``0..255`` over its
    own value range, since models here take ``[0, 1]`` or normalised pixels
    rather than raw bytes), inpainted with radius 3, mapped back; only masked
    pixels change.  A fully masked image becomes its per-channel mean colour.

    Parameters
    ----------
    x : Tensor
        ``R x C x H x W`` images (any device; inpainting runs on CPU).
    masked : Tensor
        ``R x 1 x H x W`` (or ``R x H x W``) boolean masks.
    radius : float
        inpainting radius in pixels. Default: 3.0
    """
    import cv2  # a dependency; imported on first use (it adds ~0.15 s to importing the package)

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


class LinearSystem(NamedTuple):
    """ROAD's imputation system of a batch of images (see :func:`linear_system`).

    ``A = diag(diag) + U + Uᵀ`` with the strictly upper triangle
    ``U[rows[e], cols[e]] = values[e]``; ``b`` the ``M x C`` right-hand
    sides; ``flat`` the flat ``R*H*W`` index of each of the ``M`` unknowns,
    in increasing order.
    """

    diag: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    b: np.ndarray
    flat: np.ndarray


#: The neighbours after a pixel in row-major order (the upper triangle).
_FORWARD = tuple(n for n in NEIGHBOUR_WEIGHTS if n[0] > 0 or (n[0] == 0 and n[1] > 0))


def linear_system(removed: np.ndarray, images: np.ndarray) -> LinearSystem:
    r"""ROAD's imputation system for a batch of masks, as one block-diagonal system.

    For every removed pixel ``i`` of image ``r`` the equation
    ``(Σ_{j ∈ N(i)} w_j) v_i − Σ_{j ∈ N(i), removed} w_j v_j = Σ_{j ∈ N(i), kept} w_j x_j``
    over the in-image 8-neighbourhood ``N(i)`` (weights
    :data:`NEIGHBOUR_WEIGHTS`), i.e. each removed value is the weighted mean
    of its neighbours.  The matrix is symmetric, and positive definite as long
    as every image keeps at least one pixel; with the unknowns in row-major
    order its bandwidth is at most ``W + 1``.  Built with whole-array shifts
    of the masks and images (no per-pixel loop).

    Parameters
    ----------
    removed : ndarray
        ``R x H x W`` booleans, True where a pixel is removed.
    images : ndarray
        ``R x C x H x W`` float64 values (kept pixels are read).
    """
    r_, h, w = removed.shape
    c = images.shape[1]
    flat = np.flatnonzero(removed)  # unknown k sits at flat[k] = (r*H + y)*W + x
    m = flat.size
    var = np.full(r_ * h * w, -1, dtype=np.int64)
    var[flat] = np.arange(m)
    # right-hand side: the weighted sum of the kept neighbours (zero-padded shifts)
    kept = np.pad(images * ~removed[:, None], ((0, 0), (0, 0), (1, 1), (1, 1)))
    acc = np.zeros((r_, h, w, c))
    acc_c = np.moveaxis(acc, -1, 1)  # a channel-first view of acc
    inside = np.zeros((h + 2, w + 2))
    inside[1:-1, 1:-1] = 1.0
    diag_grid = np.zeros((h, w))
    for dy, dx, wt in NEIGHBOUR_WEIGHTS:
        acc_c += wt * kept[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        diag_grid += wt * inside[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
    b = acc.reshape(r_ * h * w, c)[flat]
    diag = diag_grid.reshape(-1)[flat % (h * w)]
    # upper triangle: pairs of removed pixels, neighbour after the pixel
    rem_pad = np.pad(removed, ((0, 0), (1, 1), (1, 1)))
    rows: List[np.ndarray] = []
    cols: List[np.ndarray] = []
    data: List[np.ndarray] = []
    for dy, dx, wt in _FORWARD:
        p = np.flatnonzero(removed & rem_pad[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w])
        rows.append(var[p])
        cols.append(var[p + (dy * w + dx)])
        data.append(np.full(p.size, -wt))
    return LinearSystem(diag, np.concatenate(rows), np.concatenate(cols), np.concatenate(data), b, flat)


#: Widest band solved as a banded Cholesky system; wider ones use a sparse LU
#: with a fill-reducing ordering.
MAX_BANDWIDTH = 64

_BLAS = None


def _one_blas_thread():
    """A context that runs BLAS/LAPACK on one thread (the library scan is done once)."""
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def solve_system(system: LinearSystem) -> np.ndarray:
    """Solve ROAD's system for all columns of ``b`` with one factorisation.

    Narrow images (bandwidth up to :data:`MAX_BANDWIDTH`): LAPACK's banded
    Cholesky on the whole block-diagonal batch, on one BLAS thread (its
    blocks are too small to gain from more, and on a busy machine extra
    threads make it many times slower); wider ones: SuperLU with a
    minimum-degree ordering of the symmetric matrix.
    """
    m = system.diag.size
    if m == 0:
        return np.zeros_like(system.b)
    r, c, v = system.rows, system.cols, system.values
    u = int((c - r).max()) if c.size else 0
    if u <= MAX_BANDWIDTH:
        ab = np.zeros((u + 1, m))
        ab[u] = system.diag
        ab[u + r - c, c] = v
        with _one_blas_thread():
            return solveh_banded(ab, system.b, check_finite=False)
    idx = np.arange(m)
    a = sp.csc_matrix(
        (np.concatenate([v, v, system.diag]), (np.concatenate([r, c, idx]), np.concatenate([c, r, idx]))),
        shape=(m, m),
    )
    # the matrix is symmetric positive definite: SuperLU's symmetric mode with
    # no pivoting keeps the minimum-degree ordering (threshold pivoting
    # destroys it and multiplies the fill-in and the time on large masks)
    lu = splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    return lu.solve(system.b)


def noisy_linear_imputation(
    images: Tensor,
    removed: Tensor,
    noise: float = 0.01,
    generators: Optional[Sequence[Optional[torch.Generator]]] = None,
) -> Tensor:
    r"""Replace the ``removed`` pixels of images by ROAD's noisy linear imputation.

    Each removed pixel becomes the weighted mean of its 8 neighbours (direct
    neighbours 1/6, diagonal ones 1/12, renormalised at the border), removed
    neighbours included, so the values of all removed pixels of an image solve
    one sparse linear system (:func:`linear_system`), shared by the channels;
    then Gaussian noise of standard deviation ``noise`` is added to them.
    Kept pixels are unchanged.  Rows are solved in block-diagonal batches of
    up to :data:`MAX_UNKNOWNS_PER_SOLVE` unknowns, one sparse LU per batch,
    in float64 on the CPU.

    Parameters
    ----------
    images : Tensor
        ``R x C x H x W`` images (any device, any float dtype).
    removed : Tensor
        ``R x H x W`` or ``R x 1 x H x W`` booleans; no image may have every
        pixel removed.
    noise : float
        standard deviation of the added noise. Default: 0.01
    generators : sequence of torch.Generator, optional
        one per row; the noise of row ``r`` is ``noise * randn(C, H, W,
        generator=generators[r])`` at its removed pixels, so a row's result
        does not depend on the other rows. Default: None (torch's global
        generator)

    Returns
    -------
    Tensor
        the imputed images, like ``images``.
    """
    if removed.dim() == 4:
        removed = removed[:, 0]
    n_rows, n_ch, h, w = images.shape
    out = images.detach().clone()
    rem = removed.detach().to("cpu").numpy().astype(bool, copy=False)
    if n_rows == 0 or not rem.any():
        return out
    if rem.reshape(n_rows, -1).all(axis=1).any():
        raise ValueError("noisy linear imputation needs at least one kept pixel per image")
    x = images.detach().to("cpu", torch.float64).numpy()
    counts = rem.reshape(n_rows, -1).sum(1)
    filled = np.ascontiguousarray(np.moveaxis(x, 1, -1)).reshape(n_rows * h * w, n_ch)  # pixel rows
    start = 0
    while start < n_rows:  # block-diagonal batches of bounded size
        stop, total = start, 0
        while stop < n_rows and (stop == start or total + counts[stop] <= MAX_UNKNOWNS_PER_SOLVE):
            total += counts[stop]
            stop += 1
        system = linear_system(rem[start:stop], x[start:stop])
        filled[start * h * w + system.flat] = solve_system(system)  # M x C
        start = stop
    result = torch.from_numpy(filled.reshape(n_rows, h, w, n_ch)).permute(0, 3, 1, 2)
    if noise > 0:
        if generators is None:
            eps = torch.randn(result.shape, dtype=torch.float64)
        else:
            eps = torch.stack(
                [torch.randn((n_ch, h, w), generator=g, dtype=torch.float64) for g in generators]
            )
        mask = torch.from_numpy(rem).unsqueeze(1)
        result = torch.where(mask, result + noise * eps, result)
    return result.to(device=images.device, dtype=images.dtype).contiguous()
