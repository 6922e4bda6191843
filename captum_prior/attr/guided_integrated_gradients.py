#!/usr/bin/env python3
"""Guided Integrated Gradients (Kapishnikov et al., CVPR 2021)."""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, Optional, Tuple, Union, overload

import torch
from captum.log import log_usage
from torch import Tensor

from captum_prior._batching import RowRunner, gradient_rows
from captum_prior._compat import BaselineType, TargetType, TensorOrTupleOfTensorsGeneric
from captum_prior._validation import check_float
from captum_prior.attr._path import (
    IDGIAccumulator,
    PathAttribution,
    check_inputs_range,
    check_path_args,
    finish_path,
    format_baselines,
    forward_points,
)

#: relative and absolute tolerance of "the step's L1 target is reached"
_EPS = 1e-9


class GuidedIntegratedGradients(PathAttribution):
    r"""Guided Integrated Gradients: an adaptive path that moves the features
    with the smallest gradient first.

    Kapishnikov, Venugopalan, Avci, Wedin, Terry & Bolukbasi, "Guided
    Integrated Gradients: an Adaptive Path Method for Removing Noise", CVPR
    2021 (https://arxiv.org/abs/2106.09788), Algorithm 1 with the anchor
    points (a bounded deviation from the straight line) that the paper adds.

    The path starts at the baseline ``x'`` and ends at the input ``x``. At
    each of ``n_steps`` steps the gradient ``g = grad F(x_k)`` of the target
    score is taken once; then the ``fraction`` of the features with the
    smallest ``|g|`` (among those not yet at the step's upper bound) are
    moved towards the input, repeatedly, until the L1 distance to the input
    has shrunk to ``(1 - k/n_steps) * ||x - x'||_1``; the last move is
    scaled so that the target is met exactly. Every move adds ``g * (x_new
    - x_old)`` to the attribution (a Riemann-Stieltjes sum along the path).

    ``max_dist`` bounds how far any feature may run ahead of or lag behind
    the straight line: at step ``k`` each feature stays within the
    relative positions ``[alpha - max_dist, alpha + max_dist]``, ``alpha =
    k/n_steps``, of its own segment from ``x'_i`` to ``x_i`` (features behind
    are first pulled up to the lower bound). ``max_dist=0`` is integrated
    gradients on the straight line (left Riemann sum); ``max_dist=1`` is
    unbounded Guided IG (Algorithm 1 as printed).

    The selection uses the ``fraction``-quantile of ``|g|`` over all features
    of one example (across every input tensor), taken as the lower order
    statistic, as the authors' reference implementation (PAIR ``saliency``)
    does; the path state is kept in float64, as there.

    The path ends at the input, so completeness holds up to the Riemann
    error: ``sum(phi) ~ F(x) - F(x')``, returned as the convergence delta.

    Parameters
    ----------
    forward_func : Callable
        The model, or any function returning ``N x C`` outputs (or ``N``
        scores).

    Raises
    ------
    TypeError
        If ``forward_func`` is not callable.

    Notes
    -----
    The path depends on the gradients, so the steps run one after the
    other: each step evaluates one row per example (a batch of ``N`` rows),
    ``n_steps`` model calls in all, where integrated gradients evaluates all
    its points in a few large batches. Explaining several examples in one
    call shares each step's model call among them.

    Each selection finds the quantile with ``torch.kthvalue``, linear in
    the number of features, and the features that already reached the
    step's bound are excluded by giving them an infinite ``|g|``. The state
    is each feature's position on its own segment from ``x'_i`` to ``x_i``
    (the coordinate in which the bounds are stated); the path points agree
    with the reference implementation's up to float64 rounding.

    Wrap the class in :class:`~captum_prior.attr.IDGI` for the
    important-direction variant.

    References
    ----------
    A. Kapishnikov, S. Venugopalan, B. Avci, B. Wedin, M. Terry, T. Bolukbasi.
    Guided Integrated Gradients: an Adaptive Path Method for Removing Noise.
    CVPR 2021.

    Examples
    --------
    >>> import torch
    >>> from captum_prior.attr import GuidedIntegratedGradients
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(),
    ...                             torch.nn.Linear(2 * 6 * 6, 3)).eval()
    >>> images = torch.rand(2, 1, 8, 8)
    >>> gig = GuidedIntegratedGradients(model)
    >>> attr, delta = gig.attribute(images, baselines=0.0, target=2, n_steps=50,
    ...                             fraction=0.25, max_dist=0.02,
    ...                             return_convergence_delta=True)
    >>> attr.shape, delta.shape
    (torch.Size([2, 1, 8, 8]), torch.Size([2]))
    """

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: int = 200,
        fraction: float = 0.25,
        max_dist: float = 0.02,
        internal_batch_size: Optional[int] = None,
        *,
        return_convergence_delta: Literal[True],
    ) -> Tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: int = 200,
        fraction: float = 0.25,
        max_dist: float = 0.02,
        internal_batch_size: Optional[int] = None,
        return_convergence_delta: Literal[False] = False,
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @log_usage()
    def attribute(  # type: ignore[misc]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: int = 200,
        fraction: float = 0.25,
        max_dist: float = 0.02,
        internal_batch_size: Optional[int] = None,
        return_convergence_delta: bool = False,
    ) -> Union[TensorOrTupleOfTensorsGeneric, Tuple[TensorOrTupleOfTensorsGeneric, Tensor]]:
        r"""Guided IG attributions of ``target`` for ``inputs``.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            The examples (first dimension).
        baselines : scalar, Tensor, tuple or callable, optional
            The path's start, Captum's forms: a number, a tensor of one
            example's shape, ``1 x ...`` or the inputs' shape, one per input
            tensor in a tuple, or a callable returning those. Default: None
            (zeros).
        target : int, tuple, Tensor or list, optional
            Captum's target forms (see :class:`~captum_prior.attr.BlurIntegratedGradients`).
        additional_forward_args : Any, optional
            Passed to ``forward_func`` after the inputs.
        n_steps : int, optional
            Path steps = gradient evaluations per example. Default: 200 (the
            reference implementation's).
        fraction : float, optional
            Share of the features moved per selection, in ``(0, 1]``.
            Default: 0.25.
        max_dist : float, optional
            Largest relative deviation from the straight line, in ``[0, 1]``.
            Default: 0.02.
        internal_batch_size : int, optional
            At most this many rows (examples) per forward/backward pass.
            Default: None (sized from the model's activations).
        return_convergence_delta : bool, optional
            Also return ``sum(phi) - (F(x) - F(x'))`` per example. Default:
            False.

        Returns
        -------
        attributions : Tensor or tuple of Tensor
            The inputs' shapes.
        delta : Tensor
            Shape ``(N,)``, if ``return_convergence_delta``.

        Raises
        ------
        TypeError, ValueError
            For bad inputs, baselines, options or targets.

        Examples
        --------
        >>> import torch
        >>> from captum_prior.attr import GuidedIntegratedGradients
        >>> lin = torch.nn.Linear(4, 2)
        >>> x = torch.rand(3, 4)
        >>> attr, delta = GuidedIntegratedGradients(lin).attribute(
        ...     x, 0.0, target=1, n_steps=10, return_convergence_delta=True)
        >>> bool(delta.abs().max() < 1e-5)  # a linear model: every path is exact
        True
        """
        return self._attribute(
            inputs, baselines, target, additional_forward_args, n_steps, fraction,
            max_dist, internal_batch_size, return_convergence_delta, idgi=False,
        )

    def _attribute(
        self,
        inputs: Any,
        baselines: Any,
        target: TargetType,
        additional_forward_args: Any,
        n_steps: int,
        fraction: float,
        max_dist: float,
        internal_batch_size: Optional[int],
        return_convergence_delta: bool,
        idgi: bool,
    ) -> Any:
        xs, is_tuple, K, chunk = check_path_args(
            inputs, n_steps, internal_batch_size, return_convergence_delta
        )
        base = format_baselines(baselines, xs, inputs)
        fraction = check_float(fraction, "fraction", 0.0, 1.0, low_inclusive=False)
        max_dist = check_float(max_dist, "max_dist", 0.0, 1.0)
        N = xs[0].shape[0]
        dev = xs[0].device
        sizes = [math.prod(x.shape[1:]) for x in xs]

        def flat(ts: Tuple[Tensor, ...]) -> Tensor:
            return torch.cat([t.reshape(N, n) for t, n in zip(ts, sizes)], 1).double()

        def unflat(v: Tensor) -> Tuple[Tensor, ...]:
            if len(xs) == 1:
                return (v.view(xs[0].shape).to(xs[0].dtype),)
            parts = torch.split(v, sizes, dim=1)
            return tuple(p.reshape(x.shape).to(x.dtype) for p, x in zip(parts, xs))

        check_inputs_range(self.forward_func, xs)
        x_in, x_b = flat(xs), flat(base)
        runner = RowRunner(self.forward_func, N, target, additional_forward_args)
        acc = IDGIAccumulator(((N, x_in.shape[1]),), dev, torch.float64) if idgi else None
        attr, f_start = _guided_path(runner, x_in, x_b, unflat, K, fraction, max_dist, chunk, acc)
        f_end: Optional[Tensor] = None
        if acc is not None:
            # the path's end point is the input: one forward pass closes it
            f_end = forward_points(runner, xs, chunk)
            acc.add(torch.arange(N, device=dev), tuple(torch.zeros_like(a) for a in acc.attr), f_end.double())
            attr = acc.attr[0]

        def output_change() -> Tensor:
            # F(x) - F(x')
            end = forward_points(runner, xs, chunk) if f_end is None else f_end
            return end - f_start

        return finish_path(is_tuple, unflat(attr), return_convergence_delta, output_change)


def _gradient(
    runner: RowRunner, pts: Tuple[Tensor, ...], chunk: Optional[int], g: Tensor, f: Tensor
) -> None:
    """The target's gradient (flattened, into ``g``: ``N x D``) and score
    (into ``f``) at the rows ``pts`` (one per example), through the shared
    chunked helper."""
    N = g.shape[0]
    ar = torch.arange(N, device=g.device)

    def rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
        if sl.start == 0 and sl.stop == N:
            return pts, ar
        return tuple(p[sl] for p in pts), ar[sl]

    for sl, _r, _i, grads, scores in gradient_rows(runner, rows, N, chunk):
        if len(grads) == 1:
            g[sl] = grads[0].reshape(sl.stop - sl.start, g.shape[1])
        else:
            g[sl] = torch.cat([t.reshape(t.shape[0], -1) for t in grads], 1)
        f[sl] = scores


def _guided_path(
    runner: RowRunner,
    x_in: Tensor,
    x_b: Tensor,
    unflat: Callable[[Tensor], Tuple[Tensor, ...]],
    K: int,
    fraction: float,
    max_dist: float,
    chunk: Optional[int],
    acc: Optional[IDGIAccumulator],
) -> Tuple[Tensor, Tensor]:
    """Algorithm 1 on flattened examples ``N x D`` (float64), all examples at once.

    The state is each feature's position ``p`` on its own segment (``x = x'
    + p (x - x')``, 0 at the baseline, 1 at the input), the coordinate in
    which the algorithm's bounds are stated; the path points and the
    attribution are those of the reference implementation, which keeps ``x``
    itself (they differ by rounding).

    Feeds every path point but the end to ``acc`` (IDGI), and returns the
    attribution ``N x D`` and the score at the baseline.
    """
    N, D = x_in.shape
    dev = x_in.device
    diff = x_in - x_b  # N x D
    absdiff = diff.abs()
    l1_total = absdiff.sum(1, keepdim=True)  # N x 1
    eps_l1 = _EPS * l1_total
    eps = torch.full_like(eps_l1, _EPS)
    fixed = diff == 0  # features already at the input: never selected
    p = torch.zeros_like(x_in)
    attr = torch.zeros_like(x_in)
    g = torch.empty_like(x_in)
    f = torch.empty(N, dtype=x_in.dtype, device=dev)
    ar = torch.arange(N, device=dev)
    q_index = int(fraction * (D - 1)) + 1 if D else 1  # the 'lower' quantile, 1-based
    big = torch.finfo(x_in.dtype).max
    inf = float("inf")
    f_start = f
    for step in range(K):
        # one gradient per step, at the current path point
        _gradient(runner, unflat(torch.addcmul(x_b, p, diff)), chunk, g, f)
        if step == 0:
            f_start = f.clone()
        if acc is not None:
            acc.add(ar, (g,), f)
        alpha = (step + 1.0) / K
        a_min, a_max = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
        p_step = p
        # features behind the lower bound catch up with it; positions only
        # grow within a step, so this is needed once per step
        p = p.clamp(min=a_min)
        # the L1 distance still to cover in this step: ||x_k - x|| - (1 - alpha) ||x - x'||
        gap = alpha * l1_total - torch.linalg.vecdot(p, absdiff).unsqueeze(1)  # N x 1
        tol = torch.add(eps, eps_l1, alpha=1.0 - alpha)  # gap <= tol: the step is done
        active = gap > tol
        # features at the upper bound are not selected (|g| = inf); below 1
        # the bound has grown since the last step, so none is at it yet
        ag = g.abs().masked_fill_(fixed | (p == a_max) if a_max == 1.0 else fixed, inf)
        # at most D + 1 selections (every full move retires a feature); the
        # first runs unchecked (rows already done select nothing)
        for it in range(D + 1):
            if it and not bool(active.any()):
                break
            thr = torch.kthvalue(ag, q_index, dim=1, keepdim=True).values.clamp_(max=big)
            sel = (ag <= thr) & active
            room = a_max - p
            l1_s = (room * absdiff * sel).sum(1, keepdim=True)
            # the share of the room that closes the gap (inf: nothing can move)
            gamma = gap / l1_s
            full = gamma > 1.0
            # a full move puts the selection at the bound (excluded from now on)
            p = torch.where(sel, torch.where(full, a_max, torch.addcmul(p, gamma, room)), p)
            ag.masked_fill_(sel & full, inf)
            # after a full move the gap shrinks by l1_s; a partial move closes
            # it (gap - l1_s < 0); rows that did not move keep gap <= tol
            gap = gap - l1_s
            active = gap > tol
        attr.addcmul_(p - p_step, diff * g)
    return attr, f_start
