"""k-means with greedy k-means++ seeding, batched, in torch.

The one k-means of the package: it initialises the mixtures of
:class:`~captum_prior.priors.BGMMPrior` (one per explained image, all images at
once) and of :class:`~captum_prior.proxy.JointGaussianMixture` (one, on many
rows).  Both only need the labels of a good partition, so this module returns
labels; the centres are available from :func:`kmeans_plusplus`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["kmeans", "kmeans_plusplus"]


def _as_batch(x: Tensor, k: int) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3 or x.shape[1] == 0:
        raise ValueError(f"x must be a non-empty N x D or B x N x D tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be floating point, got {x.dtype}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k > x.shape[1]:
        raise ValueError(f"k={k} clusters for {x.shape[1]} rows; lower k")
    return x


def _rel_sq_dist(x: Tensor, c: Tensor) -> Tensor:
    """``|c|^2 - 2 x.c`` (``B x N x K``): the squared distance of each row of
    ``x`` (``B x N x D``) to each centre of ``c`` (``B x K x D``) minus ``|x|^2``,
    which does not change an argmin over the centres."""
    return torch.baddbmm((c * c).sum(-1)[:, None, :], x, c.transpose(1, 2), alpha=-2.0)


def kmeans_plusplus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    r"""Greedy k-means++ seeding of ``k`` centres, per batch element.

    The first centre is a uniformly drawn row; each further centre is, of
    :math:`2 + \lfloor\ln k\rfloor` candidates drawn with probability
    proportional to the squared distance to the nearest centre so far, the
    one that lowers the potential (the sum of those squared distances) most
    (Arthur & Vassilvitskii, 2007, in scikit-learn's greedy form).

    The uniform numbers are drawn once, from ``generator``, and shared by the
    batch elements; each candidate is found by inverting the element's
    cumulative distribution.  So an element's centres depend only on its own
    rows and the generator's state: the same as for a one-element call.

    Parameters
    ----------
    x : Tensor
        Rows, ``N x D`` or ``B x N x D`` (``N >= k``), floating point.
    k : int
        Number of centres.
    generator : torch.Generator
        Source of the draws (on the CPU or on ``x``'s device).

    Returns
    -------
    Tensor
        Centres, ``B x k x D`` (``B = 1`` for ``N x D`` input), rows of ``x``.

    Raises
    ------
    TypeError
        ``x`` is not a floating-point tensor.
    ValueError
        ``x`` has the wrong shape or fewer than ``k`` rows.

    References
    ----------
    D. Arthur and S. Vassilvitskii, "k-means++: the advantages of careful
    seeding", SODA 2007.

    Examples
    --------
    >>> import torch
    >>> from captum_prior._kmeans import kmeans_plusplus
    >>> x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    >>> c = kmeans_plusplus(x, 2, torch.Generator().manual_seed(0))
    >>> c.shape, sorted(c[0, :, 0].round().tolist())
    (torch.Size([1, 2, 2]), [0.0, 5.0])
    """
    x = _as_batch(x, k)
    return _plusplus(x, k, generator, (x * x).sum(-1))


def _plusplus(x: Tensor, k: int, generator: torch.Generator, sq: Tensor) -> Tensor:
    """:func:`kmeans_plusplus` of checked ``B x N x D`` rows ``x`` with squared norms ``sq``."""
    b, n, d = x.shape
    trials = 2 + int(math.log(k))
    u = torch.rand(1 + (k - 1) * trials, generator=generator, dtype=torch.float64,
                   device=generator.device).to(x.device)
    ar = torch.arange(b, device=x.device)
    first = min(int(u[0] * n), n - 1)
    centres = [x[:, first]]  # each B x D
    d2 = ((x - x[:, first : first + 1]) ** 2).sum(-1)  # B x N
    for j in range(1, k):
        uj = u[1 + (j - 1) * trials : 1 + j * trials]  # T
        cum = d2.to(torch.float64).cumsum(-1)  # B x N
        total = cum[:, -1:]
        cand = torch.searchsorted(cum, uj * total, right=True).clamp_max_(n - 1)  # B x T
        if bool((total <= 0).any()):  # no spread left: uniform draws
            cand = torch.where(total > 0, cand, (uj * n).long().clamp_max(n - 1))
        cx = x[ar[:, None], cand]  # B x T x D
        cd = torch.minimum((_rel_sq_dist(x, cx) + sq[..., None]).clamp_min_(0), d2[..., None])  # B x N x T
        best = cd.sum(1).argmin(-1)  # B
        centres.append(cx[ar, best])
        d2 = cd[ar, :, best]
    return torch.stack(centres, 1)


def kmeans(x: Tensor, k: int, generator: torch.Generator, max_iter: int = 100, tol: float = 1e-4) -> Tensor:
    """Labels of k-means (Lloyd's algorithm from :func:`kmeans_plusplus`), per batch element.

    Lloyd iterations as in scikit-learn's ``KMeans``: an element stops when
    its labels no longer change or its centres move (in total squared
    distance) by at most ``tol`` times the mean variance of its rows; a
    stopped element is left as it is while the others continue, so every
    element's labels are those of a one-element call with the same
    generator state.  With ``tol=0`` only the labels decide (an element
    whose labels stay put is at a fixed point of the iterations, so nothing
    needs to be frozen: the cheapest loop for many small problems).  A
    cluster that loses all its rows is moved to the row farthest from its
    centre.  The returned labels are those of the final centres.

    Parameters
    ----------
    x : Tensor
        Rows, ``N x D`` or ``B x N x D`` (``N >= k``), floating point.  The
        distances are computed in ``x``'s dtype.
    k : int
        Number of clusters.
    generator : torch.Generator
        Source of the seeding's draws (see :func:`kmeans_plusplus`).
    max_iter : int, optional
        Cap on the Lloyd iterations. Default: 100
    tol : float, optional
        Relative tolerance on the centres' movement; 0: stop on the labels
        only. Default: 1e-4

    Returns
    -------
    Tensor
        ``N`` labels in ``[0, k)`` for ``N x D`` input, ``B x N`` for ``B x N x D``.

    Raises
    ------
    TypeError
        ``x`` is not a floating-point tensor.
    ValueError
        ``x`` has the wrong shape or fewer than ``k`` rows.

    Examples
    --------
    >>> import torch
    >>> from captum_prior._kmeans import kmeans
    >>> x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    >>> lab = kmeans(x, 2, torch.Generator().manual_seed(0))
    >>> bool(lab[0] == lab[1]) and bool(lab[2] == lab[3]) and bool(lab[0] != lab[2])
    True
    """
    squeeze = x.dim() == 2
    x = _as_batch(x, k)
    b, n, d = x.shape
    sq = (x * x).sum(-1)
    c = _plusplus(x, k, generator, sq)
    thresh = tol * x.var(1, unbiased=False).mean(-1)  # B
    eye = torch.eye(k, dtype=x.dtype, device=x.device)
    active = labels = None  # active: None while no element has stopped
    for _ in range(max_iter):
        rel = _rel_sq_dist(x, c)  # B x N x K
        new = rel.argmin(-1)  # B x N
        onehot = eye[new]  # B x N x K
        counts = onehot.sum(1)  # B x K
        c_new = (onehot.transpose(1, 2) @ x) / counts.clamp_min(1)[..., None]
        relocated = int(counts.amin()) == 0
        if relocated:  # move empty clusters to the rows farthest from their centres
            empty = counts == 0
            far = (rel.gather(-1, new[..., None]).squeeze(-1) + sq).argsort(-1, descending=True)
            pick = far.gather(1, (empty.long().cumsum(-1) - 1).clamp_min(0))  # B x K
            c_new = torch.where(empty[..., None], x.gather(1, pick[..., None].expand(-1, -1, d)), c_new)
        if tol == 0:  # labels only: a batch element whose labels stay put is at a fixed point
            if labels is not None and not relocated and torch.equal(new, labels):
                break
            c, labels = c_new, new
            continue
        done = ((c_new - c) ** 2).sum((1, 2)) <= thresh
        if labels is not None:
            done = done | (new == labels).all(-1)
        if active is None:
            c, labels, active = c_new, new, ~done
        else:  # stopped elements keep their centres and labels
            c = torch.where(active[:, None, None], c_new, c)
            labels = torch.where(active[:, None], new, labels)
            active = active & ~done
        n_active = int(active.sum())
        if n_active == 0:
            break
        if n_active == b:
            active = None
    out = _rel_sq_dist(x, c).argmin(-1)
    return out[0] if squeeze else out
