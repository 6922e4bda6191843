#!/usr/bin/env python3
"""Valid-path-feature integration of Akhtar & Jalwana (ICML 2023), Algorithm 2."""

from __future__ import annotations

import numbers
import typing
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union

import torch
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor

from captum_prior import _random
from captum_prior._batching import RowRunner, forward_rows, gradient_rows
from captum_prior._compat import (
    TargetType,
    TensorOrTupleOfTensorsGeneric,
    _format_additional_forward_args,
    _format_output,
    approximation_parameters,
)
from captum_prior._validation import (
    as_tensor_tuple,
    check_choice,
    check_finite,
    check_float,
    check_int,
    resolve_callable_baselines,
    warn_at_call_site,
)
from captum_prior.attr.optimized_baseline import (
    DEFAULT_DELTA,
    DEFAULT_ETA,
    OptimizedBaseline,
    default_sigmas,
)
from captum_prior.errors import InputRangeWarning

#: Keyword arguments of :class:`OptimizedBaseline` that ``baseline_kwargs`` may set.
BASELINE_KWARGS = ("sigmas", "eta", "eps", "delta", "max_iter", "clip", "variant")

#: Values of ``method``: Captum's integral approximations and the paper's sampling.
METHODS = (
    "gausslegendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "monte_carlo",
)

#: Ranges ``input_range="auto"`` chooses from, first that holds every input.
AUTO_RANGES: Tuple[Tuple[float, float], ...] = ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0))


def infer_input_range(xs: Tuple[Tensor, ...]) -> Optional[Tuple[float, float]]:
    """The valid input range that ``input_range="auto"`` infers.

    Parameters
    ----------
    xs : tuple of Tensor
        The inputs.

    Returns
    -------
    tuple of float or None
        The first of ``(0, 1)``, ``(-1, 1)``, ``(0, 255)`` that holds every
        value of ``xs``; ``None`` (unbounded) if none does or ``xs`` is empty.

    Examples
    --------
    >>> import torch
    >>> infer_input_range((torch.tensor([0.2, 0.9]),))
    (0.0, 1.0)
    >>> infer_input_range((torch.tensor([-0.5, 3.0]),)) is None
    True
    """
    xs = tuple(x for x in xs if x.numel())
    if not xs:
        return None
    lo = min(float(x.min()) for x in xs)
    hi = max(float(x.max()) for x in xs)
    for low, high in AUTO_RANGES:
        if low <= lo and hi <= high:
            return (low, high)
    return None


class ValidPathGradients(GradientAttribution):
    r"""Path attribution from optimized baselines, integrating only *valid path
    features* (Akhtar & Jalwana, 2023, Algorithm 2 with Definitions 6-7).

    For every input ``x`` and each of ``B`` baselines ``x'_b`` (by default
    :class:`OptimizedBaseline`, Algorithm 1, one per blur width), ``K =
    floor(n_steps / B)`` points are drawn on the straight path,
    ``x~ = x'_b + alpha (x - x'_b)`` with ``alpha ~ U(0, 1)`` (line 6), and the
    gradient ``g = grad F(x~)`` of the target output is taken (line 7). A
    feature of a path point is *valid* (Definition 7) when its path term
    ``rho~_i = (x_i - x~_i) g_i`` has the same sign as, and a smaller magnitude
    than, the reference ``r_i = (x_i - x'_i) grad_i F(x)`` (line 9). The
    attribution is

    ``A = 1/B sum_b (x - x'_b) * (sum_k valid_k * g_k) / max(1, sum_k valid_k)``

    (lines 10-12), i.e. the Riemann/Monte-Carlo estimate of eq. (2) restricted
    to valid path features, averaged over the baselines as in Expected
    Gradients.

    **Path points** (``method``). The paper samples ``alpha ~ U(0, 1)``
    (``method="monte_carlo"``). At equal ``n_steps`` that is far noisier than
    Captum IG's quadrature, so the default is Captum's ``"gausslegendre"``
    (any of Captum's ``riemann_*`` rules can be chosen): the ``K`` nodes
    ``alpha_k`` with weights ``w_k`` replace the random draws and line 11
    becomes the weighted mean ``sum_k w_k valid_k g_k / sum_k w_k valid_k``.
    Where every path feature is valid this is exactly IG with the same
    nodes. The validity test is
    written in its gradient form, ``sgn(g_i) = sgn(grad_i F(x))`` and
    ``(1 - alpha)|g_i| < |grad_i F(x)|``: identical to Definition 7 wherever
    ``x_i != x'_i`` and ``alpha < 1``, and it counts the end point
    ``alpha = 1`` (the input itself, used by ``riemann_right`` and
    ``riemann_trapezoid``) as valid, where the product form would drop it.

    **Input range.** Optimized baselines (``baselines=None``) are kept inside
    the valid input range (Algorithm 1 line 7). It is ``input_range`` when
    given, otherwise inferred from the inputs with an
    :class:`~captum_prior.errors.InputRangeWarning`; never silently (0, 1).

    **Which reading of Algorithm 2 is implemented.** As printed, Algorithm 2
    sets ``rho <- grad_x F`` (line 1) but resets ``rho <- 0`` for every
    baseline (line 4), then compares the *running accumulator* ``rho`` with
    ``rho~`` (line 9). Starting from ``rho = 0``, ``sgn(rho_i) = sgn(rho~_i)``
    holds only where ``rho~_i = 0``, and then ``|rho_i| > |rho~_i|`` fails, so
    nothing is ever accumulated and line 11 divides 0 by 0. This class
    implements the consistent reading that follows Definition 7 (the comparison is between the gradient at the *input* and at
    the path point): the reference is ``r = (x - x'_b) * grad_x F`` (line 1,
    scaled like ``rho~`` as footnote 3 suggests), the accumulator is a separate
    gradient sum with its own count, and the test is
    ``sgn(r_i) = sgn(rho~_i) and |r_i| > |rho~_i|``. Because
    ``x - x~ = (1 - alpha)(x - x'_b)``, this is
    ``sgn(grad_i F(x)) = sgn(g_i)`` and ``(1 - alpha)|g_i| < |grad_i F(x)|``.
    It is our interpretation, not the authors' code (none is public).

    With ``filter_path_features=False`` every path feature counts, and the
    result is random-alpha integrated gradients from each baseline, averaged
    over the baselines (exactly, under the same ``generator``). This and
    ``n_baselines=1`` are the switches of the paper's Table 4 ablation;
    ``baselines=0`` gives "Ours + IG baseline".

    The completeness gap ``sum A - (F(x) - mean_b F(x'_b))`` is returned as
    the convergence delta. With filtering on it is not expected to be small:
    dropping invalid features gives up completeness on purpose.

    Parameters
    ----------
    forward_func : callable
        The model, or any function returning ``N x C`` outputs (or ``N``
        scores).
    multiply_by_inputs : bool, default=True
        If True ("global" attribution), the mean valid gradient of baseline
        ``b`` is multiplied by ``(inputs - baselines[b])`` before averaging
        over the baselines; if False ("local" attribution), the mean valid
        gradient is returned (Ancona et al., 2018).
    filter_path_features : bool, default=True
        Keep only valid path features (Definition 7); False integrates every
        path feature (the paper's ablation).

    Raises
    ------
    TypeError
        ``forward_func`` is not callable, or a flag is not a bool.

    References
    ----------
    .. [1] N. Akhtar, M. A. A. K. Jalwana, "Towards credible visual model
       interpretation with path attribution", ICML 2023.
       https://arxiv.org/abs/2305.14395
    .. [2] M. Ancona, E. Ceolini, C. Oztireli, M. Gross, "Towards better
       understanding of gradient-based attribution methods for deep neural
       networks", ICLR 2018.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_prior.attr import ValidPathGradients
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    >>> images = torch.rand(2, 1, 8, 8)
    >>> vpg = ValidPathGradients(model)
    >>> attr = vpg.attribute(images, target=1, n_steps=12, input_range=(0.0, 1.0),
    ...                      baseline_kwargs={"max_iter": 2})
    >>> attr.shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        multiply_by_inputs: bool = True,
        filter_path_features: bool = True,
    ) -> None:
        if not callable(forward_func):
            raise TypeError(
                f"forward_func must be callable (a model or function), got "
                f"{type(forward_func).__name__}"
            )
        if not isinstance(multiply_by_inputs, bool):
            raise TypeError("multiply_by_inputs must be True or False")
        if not isinstance(filter_path_features, bool):
            raise TypeError("filter_path_features must be True or False")
        GradientAttribution.__init__(self, forward_func)
        self._multiply_by_inputs = multiply_by_inputs
        self.filter_path_features = filter_path_features
        #: diagnostics of the last call (baselines, valid fraction, ...)
        self.last_info_: Dict[str, Any] = {}

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs

    def _per_example_generators(self, attribute_kwargs: Dict[str, Any]) -> bool:
        """Whether, with these ``attribute`` keyword arguments and one
        generator per example, example ``j``'s result is that of its own
        one-example call (up to float rounding), so that
        :func:`captum_prior.runner.attribute_dataset` may call once per batch.

        Only without the valid-feature filter and with fixed baselines. The
        filter's sign and magnitude tests (Definition 7), and the sign steps
        of optimized baselines (Algorithm 1), can turn a last-bit rounding
        difference of a batched kernel into a discrete change; optimized
        baselines with ``input_range="auto"`` also infer the range from the
        whole batch. Otherwise the runner calls one example at a time, which
        is bit-identical whatever the batching."""
        baselines = attribute_kwargs.get("baselines")
        return (
            not self.filter_path_features
            and baselines is not None
            and not callable(baselines)
        )

    def has_convergence_delta(self) -> bool:
        return True

    @typing.overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: Any = None,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: int = 150,
        method: str = "gausslegendre",
        internal_batch_size: Optional[int] = None,
        *,
        return_convergence_delta: Literal[True],
        n_baselines: int = 3,
        generator: _random.GeneratorArg = None,
        baseline_kwargs: Optional[Dict[str, Any]] = None,
        input_range: Union[str, None, Tuple[float, float]] = "auto",
    ) -> Tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @typing.overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: Any = None,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: int = 150,
        method: str = "gausslegendre",
        internal_batch_size: Optional[int] = None,
        return_convergence_delta: Literal[False] = False,
        n_baselines: int = 3,
        generator: _random.GeneratorArg = None,
        baseline_kwargs: Optional[Dict[str, Any]] = None,
        input_range: Union[str, None, Tuple[float, float]] = "auto",
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @log_usage()
    def attribute(  # type: ignore[misc]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: Any = None,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: int = 150,
        method: str = "gausslegendre",
        internal_batch_size: Optional[int] = None,
        return_convergence_delta: bool = False,
        n_baselines: int = 3,
        generator: _random.GeneratorArg = None,
        baseline_kwargs: Optional[Dict[str, Any]] = None,
        input_range: Union[str, None, Tuple[float, float]] = "auto",
    ) -> Union[
        TensorOrTupleOfTensorsGeneric, Tuple[TensorOrTupleOfTensorsGeneric, Tensor]
    ]:
        r"""Attribute the ``target`` output by valid-path-feature integration.

        The first eight arguments are those of Captum's
        ``IntegratedGradients.attribute``, in the same order and with the same
        meaning (``baselines=None`` differs: it optimises baselines instead of
        using zeros); the arguments after them are this method's own.

        Parameters
        ----------
        inputs : Tensor or tuple[Tensor, ...]
            Input for which the attributions are computed. If forward_func
            takes a single tensor as input, a single input tensor should be
            provided. If forward_func takes multiple tensors as input, a tuple
            of the input tensors should be provided. Dimension 0 indexes the
            examples and must agree across the tensors. For optimized baselines
            (``baselines=None``) each tensor must be a batch of images ``N x C
            x H x W``.
        baselines : scalar, Tensor, tuple of scalar, or Tensor, optional
            ``None`` computes ``n_baselines`` optimized baselines per example
            with :class:`OptimizedBaseline` (Algorithm 1), which needs image
            inputs and a valid input range (``input_range``). Otherwise the
            fixed baselines, per input tensor:

            - a scalar, or a tensor of one example's shape, or of
              shape ``1 x ...``: one baseline shared by all examples;
            - a tensor of the inputs' shape: one baseline per example;
            - a tensor of shape ``B x N x ...`` (or ``B x 1 x ...``):
              ``B`` baselines per example, integrated with
              ``floor(n_steps / B)`` steps each (``n_baselines`` is
              then ignored);
            - a callable returning one of the above (Captum's
              convention; called with ``inputs`` or with no argument).

            NoiseTunnel and Captum's metrics expand ``baselines``
            per example, so under them use ``None``, a scalar or a
            per-example tensor. Default: None
        target : int, tuple, Tensor, or list, optional
            Output indices for which gradients are computed (for classification
            cases, this is usually the target class). If the network returns a
            scalar value per example, no target index is necessary. For general
            2D outputs, targets can be either:

            - a single integer or a tensor containing a single
              integer, which is applied to all input examples

            - a list of integers or a 1D tensor, with length matching
              the number of examples in inputs (dim 0). Each integer
              is applied as the target for the corresponding example.

            For outputs with greater than 2 dimensions, targets
            can be either:

            - A single tuple, which contains #output_dims - 1
              elements. This target index is applied to all examples.

            - A list of tuples with length equal to the number of
              examples in inputs (dim 0), and each tuple containing
              #output_dims - 1 elements. Each tuple is applied as the
              target for the corresponding example.

            The baselines are optimised towards the logits of the
            input as a whole and do not depend on ``target``.
            Default: None
        additional_forward_args : Any, optional
            If the forward function requires additional arguments other than
            the inputs for which attributions should not be computed, this
            argument can be provided. Tensors whose first dimension equals the
            number of examples are taken as per-example and follow each path
            point; anything else is passed unchanged. Default: None
        n_steps : int, optional
            Total number of path points per example, ``K`` in Algorithm 2,
            split evenly over the baselines (``floor(n_steps / B)`` each).
            Default: 150
        method : str, optional
            How the path points and their weights are chosen along each
            baseline's path: one of Captum's integral approximations
            ``"gausslegendre"``, ``"riemann_left"``, ``"riemann_right"``,
            ``"riemann_middle"``, ``"riemann_trapezoid"`` (the same nodes and
            weights as ``IntegratedGradients``), or ``"monte_carlo"``, the
            paper's sampling (line 6: ``alpha ~ U(0, 1)``, equal weights, drawn
            from ``generator``). With a quadrature, the valid-feature mean of
            line 11 is the weight-averaged gradient over the valid points, so
            where every point is valid the result is IG's with the same
            ``n_steps`` and method (the weights are normalised to sum to 1;
            Captum's own ``riemann_trapezoid`` weights sum to ``(K-1)/K``).
            Default: ``"gausslegendre"``
        internal_batch_size : int, optional
            Number of model rows (path points or baseline iterates) evaluated
            per forward and backward pass, so memory is bounded by it. ``None``
            evaluates all rows of a stage at once. Default: None
        return_convergence_delta : bool, optional
            Also return the completeness gap ``sum(A) - (F(x) - mean_b
            F(x'_b))`` per example. Default: False
        n_baselines : int, optional
            Number of optimized baselines ``B`` when ``baselines=None`` (one
            blur width each, see
            :func:`~captum_prior.attr.optimized_baseline.default_sigmas`); must
            not exceed ``n_steps``. Default: 3
        generator : torch.Generator or list of torch.Generator, optional
            Source of the path positions ``alpha`` of ``method="monte_carlo"``.
            One generator: drawn in one call ``torch.rand((B, K, N),
            generator=generator)``. A list (or tuple) of one generator per
            example: example ``j``'s ``(B, K)`` positions are drawn from
            ``generator[j]``, exactly as in the one-example call
            ``attribute(inputs[j:j+1], ..., generator=generator[j])``, so its
            attribution does not depend on the rest of the batch, up to
            floating-point rounding, which the valid-feature test and the sign
            steps of optimized baselines can turn into a flipped feature now
            and then (with ``baselines=None`` and ``input_range="auto"`` the
            inferred range also comes from the whole batch). ``None`` uses
            torch's global RNG. Same generator state, same result. The
            quadratures draw nothing. Default: None
        baseline_kwargs : dict, optional
            Keyword arguments for :class:`OptimizedBaseline` (``sigmas``,
            ``eta``, ``eps``, ``delta``, ``max_iter``, ``clip``, ``variant``)
            when ``baselines=None``; ``sigmas`` must then have ``n_baselines``
            entries. Default: None
        input_range : tuple of float, None or "auto", optional
            The valid range ``(low, high)`` of the input features, inside which
            optimized baselines are kept (Algorithm 1 line 7); ``None`` for
            unbounded features. ``"auto"`` (or leaving it out) infers it from
            the inputs, with an :class:`~captum_prior.errors.InputRangeWarning`
            that names the range chosen: ``(0, 1)`` when every input is in
            ``[0, 1]``, ``(-1, 1)`` in ``[-1, 1]``, ``(0, 255)`` in ``[0,
            255]``, otherwise unbounded. ``eta`` and ``delta`` (in units of a
            ``[0, 1]`` range) are scaled by ``high - low`` unless
            ``baseline_kwargs`` sets them. ``baseline_kwargs["clip"]`` counts
            as an explicit range. Only used when ``baselines=None``. Default:
            ``"auto"``

        Returns
        -------
        attributions : Tensor or tuple of Tensor
            Attributions of the inputs' shape.
        delta : Tensor
            Only with ``return_convergence_delta=True``: the completeness gap
            per example, shape ``(N,)``.

        Raises
        ------
        TypeError
            Inputs, baselines or ``generator`` of the wrong type.
        ValueError
            An unknown ``method``, ``n_baselines`` above ``n_steps``,
            baselines that do not match the inputs, non-image inputs with
            ``baselines=None``, or a ``target`` that does not fit the model.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
        >>> images = torch.rand(2, 1, 8, 8)
        >>> vpg = ValidPathGradients(model, filter_path_features=False)
        >>> # the paper's Monte-Carlo path sampling, from a black baseline
        >>> attr, delta = vpg.attribute(
        ...     images, baselines=0.0, target=[0, 2], n_steps=16,
        ...     method="monte_carlo", return_convergence_delta=True,
        ...     generator=torch.Generator().manual_seed(0))
        >>> attr.shape, delta.shape
        (torch.Size([2, 1, 8, 8]), torch.Size([2]))
        """
        xs, is_tuple = as_tensor_tuple(inputs)
        xs = tuple(x.detach() for x in xs)
        N = xs[0].shape[0]
        n_steps = check_int(n_steps, "n_steps", 1)
        method = check_choice(method, "method", METHODS)
        n_baselines = check_int(n_baselines, "n_baselines", 1)
        if n_baselines > n_steps:
            raise ValueError(
                f"n_baselines = {n_baselines} is larger than n_steps = {n_steps}; "
                "each baseline needs at least one path step"
            )
        chunk = (
            None
            if internal_batch_size is None
            else check_int(internal_batch_size, "internal_batch_size", 1)
        )
        generator = _random.check_generator(generator, N)
        if not isinstance(return_convergence_delta, bool):
            raise TypeError("return_convergence_delta must be True or False")
        args = _format_additional_forward_args(additional_forward_args)

        baselines = resolve_callable_baselines(baselines, inputs)
        base = self._baselines(
            xs, baselines, n_baselines, args, chunk, baseline_kwargs, input_range
        )
        B = base[0].shape[0]
        K = n_steps // B
        if K < 1:
            raise ValueError(
                f"n_steps = {n_steps} is smaller than the {B} given baselines; "
                "each baseline needs at least one path step"
            )
        dev, dtype = xs[0].device, xs[0].dtype
        if method == "monte_carlo":
            # examples on the last dimension: per-example generators each
            # draw their (B, K, 1) block, as a one-example call would
            alphas = _random.rand(generator, (B, K, N), example_dim=2, device=dev).to(
                device=dev, dtype=dtype
            )
            weights = torch.ones(K, device=dev, dtype=dtype)
        else:
            step_sizes, alpha_list = approximation_parameters(method)
            a_k = torch.tensor(alpha_list(K), device=dev, dtype=dtype)
            weights = torch.tensor(step_sizes(K), device=dev, dtype=dtype)
            alphas = a_k.view(1, K, 1).expand(B, K, N)
        w_sum = weights.sum()

        runner = RowRunner(self.forward_func, N, target, args)
        arange_n = torch.arange(N, device=dev)

        grad_x: Tuple[Tensor, ...] = ()
        if self.filter_path_features:
            # line 1: gradient of the target output at the input
            parts: List[List[Tensor]] = [[] for _ in xs]
            for _sl, _rows, _index, grads, _ in gradient_rows(
                runner, lambda sl: (tuple(x[sl] for x in xs), arange_n[sl]), N, chunk
            ):
                for p, g in zip(parts, grads, strict=True):
                    p.append(g)
            grad_x = tuple(torch.cat(p) for p in parts)

        acc = tuple(
            torch.zeros((B * N,) + x.shape[1:], device=dev, dtype=dtype) for x in xs
        )
        cnt = tuple(torch.zeros_like(a) for a in acc)

        def path_rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
            r = torch.arange(sl.start, sl.stop, device=dev)
            b, k, n = r // (K * N), (r // N) % K, r % N
            a = alphas[b, k, n]
            rows = tuple(
                xb[b, n] + a.view(-1, *([1] * (x.dim() - 1))) * (x[n] - xb[b, n])
                for x, xb in zip(xs, base, strict=True)
            )
            return rows, n

        for sl, _rows, n, grads, _ in gradient_rows(
            runner, path_rows, B * K * N, chunk
        ):
            r = torch.arange(sl.start, sl.stop, device=dev)
            b, k = r // (K * N), (r // N) % K
            slot = b * N + n
            a = alphas[b, k, n]
            w = weights[k]
            for i, g in enumerate(grads):
                shape = (-1,) + (1,) * (g.dim() - 1)
                if self.filter_path_features:
                    # Definition 7 with the common factor (x - x'_b) divided out:
                    # sgn(grad F(x)) = sgn(g) and (1 - alpha)|g| < |grad F(x)|
                    gx = grad_x[i][n]
                    valid = (torch.sign(g) == torch.sign(gx)) & (
                        (1 - a).view(shape) * g.abs() < gx.abs()
                    )
                    wv = valid.to(dtype) * w.view(shape)
                    acc[i].index_add_(0, slot, wv * g)
                    cnt[i].index_add_(0, slot, wv)
                else:
                    acc[i].index_add_(0, slot, w.view(shape) * g)
                    cnt[i].index_add_(0, slot, w.view(shape).expand_as(g))

        attrs = []
        for x, xb, ac, ct in zip(xs, base, acc, cnt, strict=True):
            # mean (weighted) gradient over the valid path points of each baseline
            mean_grad = torch.where(ct > 0, ac / ct.where(ct > 0, torch.ones_like(ct)), 0.0)
            mean_grad = mean_grad.view(B, *x.shape)
            term = (
                (x.unsqueeze(0) - xb) * mean_grad
                if self._multiply_by_inputs
                else mean_grad
            )
            attrs.append(term.mean(0))
        attributions = tuple(attrs)

        self.last_info_ = {
            "baselines": base if is_tuple else base[0],
            "n_steps_per_baseline": K,
            "method": method,
            "valid_fraction": tuple(
                (ct / w_sum).view(B, *x.shape) for ct, x in zip(cnt, xs, strict=True)
            ),
            "n_calls": runner.n_calls,
        }
        out = _format_output(is_tuple, attributions)
        if not return_convergence_delta:
            return out
        delta = self._delta(attributions, xs, base, runner, chunk)
        return out, delta

    def attribute_future(self) -> Callable:
        """Not implemented (Captum's asynchronous API).

        Raises
        ------
        NotImplementedError
            Always.
        """
        raise NotImplementedError(
            "attribute_future is not implemented for ValidPathGradients"
        )

    # ------------------------------------------------------------------ helpers
    def _delta(
        self,
        attributions: Tuple[Tensor, ...],
        xs: Tuple[Tensor, ...],
        base: Tuple[Tensor, ...],
        runner: RowRunner,
        chunk: Optional[int],
    ) -> Tensor:
        """``sum(A) - (F(x) - mean_b F(x'_b))`` per example."""
        N = xs[0].shape[0]
        B = base[0].shape[0]
        dev = xs[0].device
        total = (B + 1) * N

        def rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
            r = torch.arange(sl.start, sl.stop, device=dev)
            n = r % N
            b = r // N - 1  # row block 0 = inputs, blocks 1..B = baselines
            out = tuple(
                torch.where(
                    (b < 0).view(-1, *([1] * (x.dim() - 1))),
                    x[n],
                    xb[b.clamp_min(0), n],
                )
                for x, xb in zip(xs, base, strict=True)
            )
            return out, n

        scores = forward_rows(runner, rows, total, chunk).view(B + 1, N)
        gap = scores[0] - scores[1:].mean(0)
        s = sum(a.flatten(1).sum(1) for a in attributions)
        return s - gap

    @staticmethod
    def _input_range(
        xs: Tuple[Tensor, ...], input_range: Any, kw: Dict[str, Any]
    ) -> Optional[Tuple[float, float]]:
        """The clip range of the optimized baselines: explicit, or inferred
        from the inputs with an :class:`InputRangeWarning`."""
        explicit_clip = "clip" in kw
        if isinstance(input_range, str):
            if input_range != "auto":
                raise ValueError(
                    f"unknown input_range {input_range!r}; pass 'auto', None "
                    "(unbounded) or a pair (low, high), e.g. (0.0, 1.0)"
                )
            if explicit_clip:
                return OptimizedBaseline._check_clip(kw["clip"], 0.0)
            clip = infer_input_range(xs)
            chosen = "unbounded (no clipping)" if clip is None else f"{clip}"
            # the text names the condition and the inferred range, never this
            # batch's values, so Python's once-per-location filter folds it
            warn_at_call_site(
                f"ValidPathGradients: input_range was not given, so the optimized "
                f"baselines are kept inside a range inferred from the inputs: "
                f"{chosen}. Pass "
                f"input_range=(low, high) with the range your model was trained "
                f"on (e.g. (-1.0, 1.0) for [-1, 1]-normalised images), or "
                f"input_range=None for unbounded features, to silence this warning",
                InputRangeWarning,
            )
            return clip
        if input_range is not None:
            if not isinstance(input_range, (tuple, list)) or len(input_range) != 2:
                raise TypeError(
                    "input_range must be 'auto', None or a pair (low, high), got "
                    f"{input_range!r}"
                )
            input_range = (
                check_float(input_range[0], "input_range[0]"),
                check_float(input_range[1], "input_range[1]"),
            )
            if not input_range[0] < input_range[1]:
                raise ValueError(
                    f"input_range must satisfy low < high, got {input_range}"
                )
        if explicit_clip:
            clip = kw["clip"]
            clip = None if clip is None else tuple(float(c) for c in clip)
            if clip != input_range:
                raise ValueError(
                    f"input_range={input_range} and baseline_kwargs['clip']={kw['clip']} "
                    "disagree; pass only one of them"
                )
        return input_range

    def _baselines(
        self,
        xs: Tuple[Tensor, ...],
        baselines: Any,
        n_baselines: int,
        args: Any,
        chunk: Optional[int],
        baseline_kwargs: Optional[Dict[str, Any]],
        input_range: Any = "auto",
    ) -> Tuple[Tensor, ...]:
        """Baselines as a tuple of ``B x N x ...`` tensors."""
        if baseline_kwargs is not None:
            if not isinstance(baseline_kwargs, dict):
                raise TypeError(
                    f"baseline_kwargs must be a dict, got {type(baseline_kwargs).__name__}"
                )
            unknown = sorted(set(baseline_kwargs) - set(BASELINE_KWARGS))
            if unknown:
                raise ValueError(
                    f"unknown baseline_kwargs {unknown}; OptimizedBaseline accepts "
                    + ", ".join(BASELINE_KWARGS)
                )
            if baselines is not None:
                raise ValueError(
                    "baseline_kwargs only configures optimized baselines; pass "
                    "baselines=None to use them, or drop baseline_kwargs"
                )
        if baselines is None:
            for i, x in enumerate(xs):
                if x.dim() != 4:
                    label = f"inputs[{i}]" if len(xs) > 1 else "inputs"
                    raise ValueError(
                        f"baselines=None asks ValidPathGradients to optimise baselines "
                        f"(Algorithm 1), which start from a Gaussian blur of an image "
                        f"N x C x H x W, but {label} has shape {tuple(x.shape)}. Pass "
                        f"baselines= explicitly: a number (e.g. baselines=0.0), a "
                        f"tensor of one example's shape (e.g. the training mean), one "
                        f"baseline per example (shape {tuple(x.shape)}), or B x "
                        f"{tuple(x.shape)} for B baselines per example; optimised ones "
                        f"come from OptimizedBaseline(model).compute(inputs, "
                        f"init=<starting baselines>)"
                    )
            kw = dict(baseline_kwargs or {})
            clip = self._input_range(xs, input_range, kw)
            width = 1.0 if clip is None else clip[1] - clip[0]
            kw["clip"] = clip
            kw.setdefault("eta", DEFAULT_ETA * width)
            kw.setdefault("delta", DEFAULT_DELTA * width)
            if "sigmas" in kw:
                sig = OptimizedBaseline._check_sigmas(kw["sigmas"])
                if len(sig) != n_baselines:
                    raise ValueError(
                        f"baseline_kwargs['sigmas'] has {len(sig)} entries but "
                        f"n_baselines = {n_baselines}; give one blur width per baseline"
                    )
            else:
                kw["sigmas"] = default_sigmas(n_baselines)
            ob = OptimizedBaseline(self.forward_func, internal_batch_size=chunk, **kw)
            out = ob.compute(xs, args)
            return tuple(t.detach() for t in out)

        baselines = resolve_callable_baselines(baselines, xs if len(xs) > 1 else xs[0])
        items = baselines if isinstance(baselines, tuple) else (baselines,)
        if len(items) != len(xs):
            raise ValueError(
                f"baselines has {len(items)} entries but inputs has {len(xs)} tensors; "
                "pass one baseline per input tensor"
            )
        out = []
        n_b = None
        for i, (b, x) in enumerate(zip(items, xs, strict=True)):
            label = f"baselines[{i}]" if len(xs) > 1 else "baselines"
            N = x.shape[0]
            if isinstance(b, numbers.Real) and not isinstance(b, bool):
                t = torch.full_like(x, float(b)).unsqueeze(0)
            elif isinstance(b, Tensor):
                if not b.is_floating_point():
                    raise TypeError(
                        f"{label} must be a floating-point tensor, got {b.dtype}; convert "
                        "it as you converted the inputs (e.g. .float() / 255 for 0..255 images)"
                    )
                check_finite(b, label)
                b = b.to(device=x.device, dtype=x.dtype)
                if b.shape == x.shape[1:]:
                    t = b.expand_as(x).unsqueeze(0)
                elif (
                    b.dim() == x.dim()
                    and b.shape[1:] == x.shape[1:]
                    and b.shape[0] in (1, N)
                ):
                    t = b.expand_as(x).unsqueeze(0)
                elif (
                    b.dim() == x.dim() + 1
                    and b.shape[2:] == x.shape[1:]
                    and b.shape[1] in (1, N)
                    and b.shape[0] >= 1
                ):
                    t = b.expand(b.shape[0], *x.shape)
                else:
                    raise ValueError(
                        f"{label} has shape {tuple(b.shape)}; use a scalar, one "
                        f"example's shape {tuple(x.shape[1:])}, the inputs' shape "
                        f"{tuple(x.shape)}, or B x {tuple(x.shape)}"
                    )
            else:
                raise TypeError(
                    f"{label} must be None, a number, a Tensor or a callable, got "
                    f"{type(b).__name__}"
                )
            if n_b is not None and t.shape[0] != n_b:
                raise ValueError(
                    f"{label} gives {t.shape[0]} baselines per example but "
                    f"baselines[0] gives {n_b}; every input tensor needs the same count"
                )
            n_b = t.shape[0]
            out.append(t.detach())
        return tuple(out)
