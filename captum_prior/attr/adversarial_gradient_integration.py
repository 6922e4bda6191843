#!/usr/bin/env python3
"""Adversarial Gradient Integration (Pan, Li & Zhu, IJCAI 2021)."""

from __future__ import annotations

import numbers
from typing import Any, List, Literal, Optional, Tuple, Union, overload

import torch
from captum.log import log_usage
from torch import Tensor

from captum_prior import _random
from captum_prior._batching import RowRunner, gradient_rows, rows_target, select_output
from captum_prior._compat import (
    TargetType,
    TensorOrTupleOfTensorsGeneric,
    _format_additional_forward_args,
)
from captum_prior._validation import check_float, check_int, check_target
from captum_prior.attr._path import (
    PathAttribution,
    check_path_args,
    check_positive_float,
    finish_path,
    forward_points,
)
from captum_prior.attr.valid_path_gradients import infer_input_range


class _ScoreRunner(RowRunner):
    """A ``RowRunner`` whose scores are softmax probabilities (optional)
    and which records the predicted class of every row it evaluates."""

    def __init__(self, *args: Any, softmax: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.softmax = softmax
        self.preds: List[Tensor] = []

    def scores(self, inputs: Tuple[Tensor, ...], index: Tensor) -> Tensor:
        out = self.outputs(inputs, index)
        self.preds.append(out.detach().argmax(1))
        if self.softmax:
            out = out.softmax(1)
        return select_output(out, rows_target(self.target, index))


class AdversarialGradientIntegration(PathAttribution):
    r"""Adversarial Gradient Integration (AGI): integrate the target's gradient
    along adversarial paths towards other classes.

    Pan, Li & Zhu, "Explaining Deep Neural Network Models with Adversarial
    Gradient Integration", IJCAI 2021 (Algorithm 1). For each of ``k`` false
    classes ``j`` (drawn at random among the classes other than the target,
    as the paper does), the path starts at the input and takes signed
    gradient steps towards class ``j``,

    ``x_{m+1} = clip(x_m + epsilon * sign(grad f_j(x_m)))``,

    until the model predicts ``j`` or ``n_steps`` steps are taken; along it the
    target's gradient is integrated,

    ``A += -grad f_t(x_m) * (x_{m+1} - x_m)``,

    and the result is summed over the ``k`` classes. ``f`` is the softmax
    probability (``softmax=True``, the paper's code) or the raw output. The
    sign step is the paper's normalised steepest-descent direction, whose
    sign is that of the gradient. The result is not thresholded (the
    comparison of Akhtar & Jalwana, ICML 2023, uses it raw).

    Summed over a path the terms approach ``f_t(x) - f_t(x_end)``, so
    ``sum(A) ~ sum_j (f_t(x) - f_t(x_end_j))``, returned as the convergence
    delta ``sum(A) - sum_j (f_t(x) - f_t(x_end_j))``; for a model linear in
    its inputs (``softmax=False``) it is zero.

    Parameters
    ----------
    forward_func : Callable
        The model: a function returning ``N x C`` class scores.

    Raises
    ------
    TypeError
        If ``forward_func`` is not callable.

    Notes
    -----
    Each path point costs two gradients (of the false class, for the step,
    and of the target, for the integral): ``2 * k * n_steps`` gradient
    evaluations per example at most, fewer where an attack succeeds early.
    The ``k`` paths of all examples advance together, one model call per
    step (two rows per active path), so the steps run one after the other
    as in Guided IG.

    References
    ----------
    D. Pan, X. Li, D. Zhu. Explaining Deep Neural Network Models with
    Adversarial Gradient Integration. IJCAI 2021.

    Examples
    --------
    >>> import torch
    >>> from captum_prior.attr import AdversarialGradientIntegration
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5)).eval()
    >>> images = torch.rand(2, 1, 4, 4)
    >>> agi = AdversarialGradientIntegration(model)
    >>> attr = agi.attribute(images, target=3, n_steps=10, epsilon=0.05, n_classes=2,
    ...                      generator=torch.Generator().manual_seed(0))
    >>> attr.shape
    torch.Size([2, 1, 4, 4])
    """

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: int = 20,
        epsilon: float = 0.05,
        n_classes: int = 20,
        internal_batch_size: Optional[int] = None,
        *,
        return_convergence_delta: Literal[True],
        generator: _random.GeneratorArg = None,
        softmax: bool = True,
        input_range: Union[str, None, Tuple[float, float]] = "auto",
    ) -> Tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: int = 20,
        epsilon: float = 0.05,
        n_classes: int = 20,
        internal_batch_size: Optional[int] = None,
        return_convergence_delta: Literal[False] = False,
        generator: _random.GeneratorArg = None,
        softmax: bool = True,
        input_range: Union[str, None, Tuple[float, float]] = "auto",
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @log_usage()
    def attribute(  # type: ignore[misc]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: int = 20,
        epsilon: float = 0.05,
        n_classes: int = 20,
        internal_batch_size: Optional[int] = None,
        return_convergence_delta: bool = False,
        generator: _random.GeneratorArg = None,
        softmax: bool = True,
        input_range: Union[str, None, Tuple[float, float]] = "auto",
    ) -> Union[TensorOrTupleOfTensorsGeneric, Tuple[TensorOrTupleOfTensorsGeneric, Tensor]]:
        r"""AGI attributions of class ``target`` for ``inputs``.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            The examples (first dimension).
        target : int, tuple, Tensor or list
            The explained class, in Captum's forms for ``N x C`` outputs: an
            int, a one-element tensor or a 1-tuple (all examples), a list or
            1-D tensor of one class per example, or a list of 1-tuples.
        additional_forward_args : Any, optional
            Passed to ``forward_func`` after the inputs.
        n_steps : int, optional
            Most adversarial steps per false class (the paper's ``m``).
            Default: 20.
        epsilon : float, optional
            Step size of each signed step, in input units. Default: 0.05
            (the paper's, for images in ``[0, 1]``).
        n_classes : int, optional
            False classes per example (the paper's ``k``), drawn without
            replacement; all other classes when the model has fewer.
            Default: 20.
        internal_batch_size : int, optional
            At most this many rows per forward/backward pass. Default: None
            (sized from the model's activations).
        return_convergence_delta : bool, optional
            Also return ``sum(A) - sum_j (f_t(x) - f_t(x_end_j))`` per
            example. Default: False.
        generator : torch.Generator or list of torch.Generator, optional
            Source of the draw of false classes (one per example for
            per-example draws). Default: torch's global RNG.
        softmax : bool, optional
            Integrate and attack the softmax probabilities (the paper's code)
            rather than the raw outputs. Default: True.
        input_range : "auto", None or (low, high), optional
            Every step is clipped to this box (the paper clips to the image
            range). ``"auto"``: the first of ``(0, 1)``, ``(-1, 1)``,
            ``(0, 255)`` holding the inputs, else unbounded; ``None``:
            unbounded. Default: "auto".

        Returns
        -------
        attributions : Tensor or tuple of Tensor
            The inputs' shapes.
        delta : Tensor
            Shape ``(N,)``, if ``return_convergence_delta``.

        Raises
        ------
        TypeError, ValueError
            For bad inputs and options, a target that is not one class per
            example, and models whose output is not ``N x C`` with ``C >= 2``.

        Examples
        --------
        >>> import torch
        >>> from captum_prior.attr import AdversarialGradientIntegration
        >>> lin = torch.nn.Linear(3, 4, bias=False)
        >>> attr, delta = AdversarialGradientIntegration(lin).attribute(
        ...     torch.rand(2, 3), target=0, n_steps=5, n_classes=3, softmax=False,
        ...     input_range=None, return_convergence_delta=True)
        >>> bool(delta.abs().max() < 1e-5)  # linear logits: the path sums are exact
        True
        """
        xs, is_tuple, m_steps, chunk = check_path_args(
            inputs, n_steps, internal_batch_size, return_convergence_delta
        )
        eps = check_positive_float(epsilon, "epsilon")
        k_req = check_int(n_classes, "n_classes", 1)
        if not isinstance(softmax, bool):
            raise TypeError("softmax must be True or False")
        clip = _check_range(input_range, xs)
        N = xs[0].shape[0]
        gen = _random.check_generator(generator, N)
        dev = xs[0].device
        args = _format_additional_forward_args(additional_forward_args)

        # the model's classes, and the explained class of every example
        probe = RowRunner(self.forward_func, N, None, args, validate=False)
        ar = torch.arange(N, device=dev)
        out = forward_points(probe, xs, chunk, raw=True)
        if out.dim() != 2 or out.shape[1] < 2:
            raise ValueError(
                f"AdversarialGradientIntegration needs a model returning N x C class "
                f"scores with C >= 2 (its paths step towards other classes); the model "
                f"returned shape {tuple(out.shape)}"
            )
        C = out.shape[1]
        check_target(target, N, C)
        t = _class_vector(target, N, dev)
        k = min(k_req, C - 1)

        # k false classes per example, without replacement, excluding the target
        u = _random.rand(gen, (N, C), device=dev).to(dev)
        if N:
            u[ar, t] = float("inf")
        adv = u.argsort(1)[:, :k]  # N x k
        S = N * k
        slot_ex = ar.repeat_interleave(k)  # slot s -> example
        slot_cls = adv.reshape(-1)
        # rows 0..S-1: the target's score; rows S..2S-1: the false class's
        row_cls = torch.cat([t[slot_ex], slot_cls])
        row_ex = torch.cat([slot_ex, slot_ex])
        row_args = _expand_args(args, row_ex, N)
        runner = _ScoreRunner(self.forward_func, 2 * S, row_cls, row_args, softmax=softmax)
        runner._first = False  # dtype, mode and range were checked on the probe

        cur = [x[slot_ex].clone() for x in xs]
        acc = [torch.zeros_like(c) for c in cur]
        active = torch.ones(S, dtype=torch.bool, device=dev)
        for _ in range(m_steps):
            idx = active.nonzero().view(-1)
            A = idx.numel()
            if A == 0:
                break
            pts = [c[idx] for c in cur]

            def rows(sl: slice, pts: List[Tensor] = pts, idx: Tensor = idx, A: int = A):
                r = torch.arange(sl.start, sl.stop, device=dev)
                j = r % A
                row = torch.where(r < A, idx[j], S + idx[j])
                return tuple(p[j] for p in pts), row

            runner.preds = []
            g_t = [torch.zeros_like(p) for p in pts]
            g_j = [torch.zeros_like(p) for p in pts]
            for sl, _r, _i, grads, _ in gradient_rows(runner, rows, 2 * A, chunk):
                r = torch.arange(sl.start, sl.stop, device=dev)
                lab, j = r < A, r % A
                for gt, gj, g in zip(g_t, g_j, grads):
                    gt[j[lab]] = g[lab]
                    gj[j[~lab]] = g[~lab]
            pred_of = torch.cat(runner.preds)[:A]  # rows 0..A-1: the path points, in order
            # the attack has reached class j: this path ends here
            reached = pred_of == slot_cls[idx]
            go = ~reached
            for c, a, p, gt, gj in zip(cur, acc, pts, g_t, g_j):
                nxt = p + eps * torch.sign(gj)
                if clip is not None:
                    nxt = nxt.clamp(clip[0], clip[1])
                shape = (-1,) + (1,) * (p.dim() - 1)
                step = torch.where(go.view(shape), nxt - p, torch.zeros_like(p))
                a.index_add_(0, idx, -gt * step)
                c[idx] = p + step
            active[idx[reached]] = False

        attributions = tuple(
            torch.zeros_like(x).index_add_(0, slot_ex, a) for x, a in zip(xs, acc)
        )

        def output_change() -> Tensor:
            # sum_j (f_t(x) - f_t(x_end_j)): the target score at the input and
            # at every path's end point
            ends = _ScoreRunner(self.forward_func, 2 * S, row_cls, row_args, softmax=softmax)
            ends._first = False
            f_end = forward_points(ends, cur, chunk)
            f0 = out.softmax(1) if softmax else out
            f_x = f0[ar, t] if N else f0.new_zeros(0)
            return k * f_x - torch.zeros(N, dtype=f_end.dtype, device=dev).index_add_(0, slot_ex, f_end)

        return finish_path(is_tuple, attributions, return_convergence_delta, output_change)


def _class_vector(target: TargetType, N: int, dev: Any) -> Tensor:
    """A validated target for ``N x C`` outputs as one class index per example."""
    idx = torch.arange(N, device=dev)
    t = rows_target(target, idx)
    if isinstance(t, tuple):
        t = t[0]
    if isinstance(t, numbers.Integral):
        return torch.full((N,), int(t), dtype=torch.long, device=dev)
    if isinstance(t, list):
        return torch.tensor([int(v[0]) if isinstance(v, tuple) else int(v) for v in t],
                            dtype=torch.long, device=dev).view(N)
    return torch.as_tensor(t, device=dev).long().view(N)


def _expand_args(args: Any, row_ex: Tensor, N: int) -> Any:
    """Per-example tensors of ``args`` repeated for every row of an example."""
    if args is None:
        return None
    return tuple(
        a[row_ex.to(a.device)] if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == N else a
        for a in args
    )


def _check_range(input_range: Any, xs: Tuple[Tensor, ...]) -> Optional[Tuple[float, float]]:
    if isinstance(input_range, str):
        if input_range != "auto":
            raise ValueError(
                f"unknown input_range {input_range!r}; pass 'auto', None (unbounded) "
                "or a pair (low, high), e.g. (0.0, 1.0)"
            )
        return infer_input_range(xs) if xs[0].numel() else None
    if input_range is None:
        return None
    if not isinstance(input_range, (tuple, list)) or len(input_range) != 2:
        raise TypeError(f"input_range must be 'auto', None or a pair (low, high), got {input_range!r}")
    lo = check_float(input_range[0], "input_range[0]")
    hi = check_float(input_range[1], "input_range[1]")
    if not lo < hi:
        raise ValueError(f"input_range must satisfy low < high, got {(lo, hi)}")
    return (lo, hi)
