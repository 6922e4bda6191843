#!/usr/bin/env python3
"""Expected Gradients (Erion et al., Nature Machine Intelligence 2021)."""

from __future__ import annotations

from typing import Any, Callable, Literal, Optional, Tuple, Union, overload

import torch
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor

from captum_prior import _random
from captum_prior._batching import RowRunner, forward_rows, gradient_rows
from captum_prior._compat import (
    TargetType,
    TensorOrTupleOfTensorsGeneric,
    _format_output,
)
from captum_prior._validation import (
    as_tensor_tuple,
    check_float,
    check_int,
    check_optional_int,
    check_reference_set,
    resolve_callable_baselines,
)

#: How a prior shift enters the path (see DeepPriorExpectedGradients).
PATHS = ("paper", "reference_code")


class ExpectedGradients(GradientAttribution):
    r"""Expected Gradients: integrated gradients averaged over a reference set.

    For an input :math:`x`, a reference set :math:`D` and a score :math:`f`
    (the ``target`` output), Erion et al. (2021, eq. 3) define

    .. math::
        \phi_i(x) = \mathbb{E}_{x' \sim D,\ \alpha \sim U(0, 1)}
        \big[(x_i - x'_i)\ \partial_i f(x' + \alpha (x - x'))\big],

    estimated here by Monte Carlo with ``n_samples`` draws per example. Each
    draw takes one reference row uniformly with replacement (for tuple
    inputs, the *same* row of every reference tensor: references are drawn
    jointly, unlike Captum's ``GradientShap``, which draws each tensor
    independently) and one :math:`\alpha`.

    Compared with Captum's ``GradientShap(stdevs=0.0)``, which is the same
    estimator, this class

    - draws from a ``torch.Generator`` (GradientShap uses NumPy's global RNG);
    - bounds memory by ``internal_batch_size`` rows per forward/backward chunk,
      so it stays flat as ``n_samples`` grows (meta-pytorch/captum#1350);
    - returns one convergence delta per example:
      :math:`\sum_i \phi_i - (f(x) - \frac1n \sum_k f(x'_k))`, computed with the
      drawn references.

    All draws are made before chunking, so the result does not depend on
    ``internal_batch_size``. ``generator`` may also be a list of one
    generator per example, which makes each example's draws independent of
    the batch it is in (see :meth:`attribute`).

    Args:
        forward_func (Callable): the model or any function returning
                    ``N x C`` scores (or ``N`` scores with ``target=None``).
        multiply_by_inputs (bool, optional): multiply the expected gradient by
                    :math:`(x - x')` ("global" attribution, the EG of the
                    paper) or not ("local" attribution: the expected plain
                    gradient). See https://arxiv.org/abs/1711.06104.
                    Default: True

    Examples::

        >>> eg = ExpectedGradients(model)
        >>> attr = eg.attribute(images, baselines=train_images[:100], target=3,
        ...                     n_samples=200, internal_batch_size=256,
        ...                     generator=torch.Generator().manual_seed(0))
    """

    #: Read by :func:`captum_prior.runner.attribute_dataset`: ``attribute``
    #: accepts one generator per example and example ``j``'s result depends
    #: only on ``inputs[j]`` and ``generator[j]``, so the runner calls it once
    #: per batch instead of once per example.
    _per_example_generators = True

    def __init__(
        self, forward_func: Callable[..., Tensor], multiply_by_inputs: bool = True
    ) -> None:
        GradientAttribution.__init__(self, forward_func)
        self._multiply_by_inputs = bool(multiply_by_inputs)

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: Union[
            Tensor, Tuple[Tensor, ...], Callable[..., Union[Tensor, Tuple[Tensor, ...]]]
        ],
        n_samples: int = 50,
        stdevs: Union[float, Tuple[float, ...]] = 0.0,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        *,
        return_convergence_delta: Literal[True],
        internal_batch_size: Optional[int] = None,
        generator: _random.GeneratorArg = None,
        delta_per_example: bool = False,
    ) -> Tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: Union[
            Tensor, Tuple[Tensor, ...], Callable[..., Union[Tensor, Tuple[Tensor, ...]]]
        ],
        n_samples: int = 50,
        stdevs: Union[float, Tuple[float, ...]] = 0.0,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        return_convergence_delta: Literal[False] = False,
        internal_batch_size: Optional[int] = None,
        generator: _random.GeneratorArg = None,
        delta_per_example: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @log_usage()
    def attribute(  # type: ignore[misc]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: Union[
            Tensor, Tuple[Tensor, ...], Callable[..., Union[Tensor, Tuple[Tensor, ...]]]
        ],
        n_samples: int = 50,
        stdevs: Union[float, Tuple[float, ...]] = 0.0,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        return_convergence_delta: bool = False,
        internal_batch_size: Optional[int] = None,
        generator: _random.GeneratorArg = None,
        delta_per_example: bool = False,
    ) -> Union[TensorOrTupleOfTensorsGeneric, Tuple[TensorOrTupleOfTensorsGeneric, Tensor]]:
        r"""
        The first seven arguments are those of Captum's
        ``GradientShap.attribute``, with the same names, order and meaning, so
        code written for ``GradientShap`` runs unchanged with this class
        swapped in; the arguments after them are this class's own.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): the examples to explain; the
                        first dimension indexes examples.
            baselines (Tensor, tuple[Tensor, ...], or Callable): the reference
                        set. Its first dimension indexes references (any
                        number ``R >= 1``); the other dimensions match one
                        input example. For tuple inputs, a tuple with one
                        tensor per input, all with the same ``R``; a row is
                        drawn jointly. As in Captum, a callable is called
                        with no argument, or with ``inputs`` if it takes one,
                        and must return such a reference set.
            n_samples (int, optional): draws (reference, :math:`\alpha`, and
                        noise if ``stdevs > 0``) per example. Default: 50
                        (``GradientShap``: 5)
            stdevs (float or tuple of float, optional): standard deviation of
                        the Gaussian noise added to each input of each draw
                        before the path is taken (``GradientShap``'s
                        SmoothGrad step; one value per input tensor for tuple
                        inputs). ``0.0`` is Erion et al.'s estimator.
                        Default: 0.0
            target (int, tuple, Tensor, or list, optional): output indices for
                        which gradients are computed, in any of Captum's forms:
                        an int, a one-element tensor, a list of ints or a 1-D
                        tensor (one per example) for ``N x C`` outputs; a tuple
                        ``(c, h, w, ...)`` (all examples) or a list of tuples
                        (one per example) with one index per output dimension
                        after the batch, for outputs of any rank.
                        Default: None (the model must return one score per example)
            additional_forward_args (Any, optional): extra arguments passed to
                        ``forward_func`` after the inputs; tensors whose first
                        dimension equals the number of examples are matched to
                        each example's rows, anything else is passed as is.
                        Default: None
            return_convergence_delta (bool, optional): also return the
                        completeness gap of every draw, as ``GradientShap``
                        does. Default: False
            internal_batch_size (int, optional): the most rows per
                        forward/backward pass; ``None`` runs all
                        ``n_examples * n_samples`` rows at once. Default: None
            generator (torch.Generator or list of torch.Generator, optional):
                        source of every random draw. One generator: all
                        draws of the call come from it. A list (or tuple) of
                        one generator per example: example ``j``'s draws
                        (references, :math:`\alpha`, noise) come from
                        ``generator[j]`` only, exactly as in the one-example
                        call ``attribute(inputs[j:j+1], ...,
                        generator=generator[j])``, so its attribution does not
                        depend on the rest of the batch (up to floating-point
                        rounding of batched kernels); this is how
                        :func:`~captum_prior.runner.attribute_dataset` seeds
                        each example while calling once per batch. ``None``
                        uses torch's global RNG. Default: None
            delta_per_example (bool, optional): return the delta averaged over
                        each example's draws, shape ``(n_examples,)``, instead
                        of one value per draw. Default: False

        Returns:
            **attributions** or 2-element tuple of **attributions**, **delta**:
            - **attributions** (*Tensor* or *tuple[Tensor, ...]*): same shape as ``inputs``.
            - **delta** (*Tensor*, returned if return_convergence_delta=True):
              as ``GradientShap``'s, shape ``(n_examples * n_samples,)``, example
              major (the draws of example 0, then of example 1, ...): for draw
              ``k`` of example ``e``, :math:`\sum_i (\tilde x_i - x'_i)
              \partial_i f(x' + \alpha(\tilde x - x')) - (f(\tilde x) - f(x'))`
              with :math:`\tilde x` the (noisy) input. Its mean over an
              example's draws (``delta_per_example=True``, shape
              ``(n_examples,)``) is
              :math:`\sum\phi - (\overline{f(\tilde x)} - \overline{f(x')})`.

        Examples::

            >>> eg = ExpectedGradients(model)
            >>> # the GradientShap call, unchanged
            >>> attr, delta = eg.attribute(images, train_images[:100], n_samples=20,
            ...                            stdevs=0.0, target=3,
            ...                            return_convergence_delta=True)
            >>> delta.shape            # (len(images) * 20,), as GradientShap's
        """
        return self._attribute_eg(
            inputs,
            baselines,
            target,
            additional_forward_args,
            n_samples,
            internal_batch_size,
            return_convergence_delta,
            generator,
            shift=self._reference_shift(inputs, target),
            path=self._path,
            stdevs=stdevs,
            delta_per_example=delta_per_example,
        )

    #: how a reference shift enters the path (see DeepPriorExpectedGradients)
    _path = "paper"

    def _reference_shift(
        self, inputs: Any, target: TargetType
    ) -> Optional[Tuple[Callable[[Tensor], Tensor], ...]]:
        """Per-input functions ``index -> p`` shifting the drawn references;
        ``None`` for plain expected gradients."""
        return None

    def _bind_references(self, shift: Any, refs: Tuple[Tensor, ...]) -> Tuple[Any, Any]:
        """Hook: the shift functions once the reference set is known, and an
        optional function clamping shifted points (DeepPriorExpectedGradients)."""
        return shift, None

    def _attribute_eg(
        self,
        inputs: Any,
        baselines: Any,
        target: TargetType,
        additional_forward_args: Any,
        n_samples: int,
        internal_batch_size: Optional[int],
        return_convergence_delta: bool,
        generator: _random.GeneratorArg,
        shift: Optional[Tuple[Callable[[Tensor], Tensor], ...]] = None,
        path: str = "paper",
        create_graph: bool = False,
        stdevs: Union[float, Tuple[float, ...]] = 0.0,
        delta_per_example: bool = False,
    ) -> Any:
        """EG with an optional per-example shift ``p`` of the references.

        ``shift[i](index)`` returns ``p`` for the rows of examples ``index`` of
        input ``i``. Every draw integrates along a straight path from a start
        to an end point with multiplier ``end - start``: ``path="paper"`` from
        ``x' - p`` to ``x~`` (multiplier ``x~ - x' + p``); ``path="reference_code"``
        from ``x' - p`` to ``x~ - p``, i.e. the gradient at
        ``(x' + a(x~ - x')) - p`` with multiplier ``x~ - x'``. ``x~`` is the
        input plus the draw's noise (``stdevs``; ``x~ = x`` by default).
        ``create_graph=True`` keeps the graph of the attributions (training
        with attribution priors, :mod:`captum_prior.training`).
        """
        x, is_tuple = as_tensor_tuple(inputs, "inputs")
        generator = _random.check_generator(generator, x[0].shape[0])
        baselines = resolve_callable_baselines(baselines, inputs)
        refs = check_reference_set(baselines, x)
        shift, clamp = self._bind_references(shift, refs)
        n_samples = check_int(n_samples, "n_samples", 1)
        internal_batch_size = check_optional_int(internal_batch_size, "internal_batch_size")
        sd = _check_stdevs(stdevs, len(x))
        bsz = x[0].shape[0]
        n_ref = refs[0].shape[0]
        device = x[0].device
        n_rows = bsz * n_samples

        # Every draw up front (cheap), so chunking cannot change the result.
        # Rows are example-major (the n_samples draws of example 0, then of
        # example 1, ...), so each draw is made as (bsz, n_samples, ...) with
        # the examples on dim 0: one call for one generator, one block per
        # example for a list of per-example generators (captum_prior._random).
        ref_idx = _random.randint(n_ref, generator, (bsz, n_samples)).reshape(n_rows).to(device)
        alpha = _random.rand(generator, (bsz, n_samples)).reshape(n_rows).to(device)
        noise = tuple(
            None
            if s == 0.0
            else (
                _random.randn(generator, (bsz, n_samples) + tuple(xi.shape[1:])).reshape(
                    (n_rows,) + tuple(xi.shape[1:])
                )
                * s
            ).to(device=device, dtype=xi.dtype)
            for s, xi in zip(sd, x)
        )
        noisy = any(n is not None for n in noise)
        example = torch.arange(bsz, device=device).repeat_interleave(n_samples)

        def start_points(sl: slice) -> Tuple[Tensor, ...]:
            starts = tuple(r[ref_idx[sl]] for r in refs)
            if shift is not None:
                starts = tuple(s - sh(example[sl]) for s, sh in zip(starts, shift))
                starts = starts if clamp is None else clamp(starts)
            return starts

        def end_at(r: Tensor) -> Tuple[Tensor, ...]:
            """End points of the draws (rows) ``r``."""
            idx = example[r]
            ends = tuple(
                xi[idx] if nz is None else xi[idx] + nz[r] for xi, nz in zip(x, noise)
            )
            if shift is not None and path == "reference_code":
                ends = tuple(e - sh(idx) for e, sh in zip(ends, shift))
                ends = ends if clamp is None else clamp(ends)
            return ends

        def end_points(sl: slice) -> Tuple[Tensor, ...]:
            return end_at(torch.arange(sl.start, sl.stop, device=device))

        def make_rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
            rows = []
            for s, e in zip(start_points(sl), end_points(sl)):
                a = alpha[sl].view((-1,) + (1,) * (e.dim() - 1)).to(e.dtype)
                rows.append(s + a * (e - s))
            return tuple(rows), example[sl]

        runner = RowRunner(self.forward_func, bsz, target, additional_forward_args)
        attrs = [torch.zeros_like(xi) for xi in x]
        row_sums = torch.zeros(n_rows, device=device, dtype=x[0].dtype)
        for sl, _rows, idx, grads, _scores in gradient_rows(
            runner, make_rows, n_rows, internal_batch_size, create_graph=create_graph
        ):
            if self.multiplies_by_inputs:
                contrib = [
                    g * (e - s) for g, s, e in zip(grads, start_points(sl), end_points(sl))
                ]
            else:
                contrib = list(grads)
            if return_convergence_delta:
                row_sums[sl] = sum(
                    (g * (e - s)).detach().flatten(1).sum(1)
                    for g, s, e in zip(grads, start_points(sl), end_points(sl))
                )
            if create_graph:  # out of place, so the graph survives
                attrs = [a.index_add(0, idx, c) for a, c in zip(attrs, contrib)]
            else:
                for a, c in zip(attrs, contrib):
                    a.index_add_(0, idx, c.detach())
        attrs = [a / n_samples for a in attrs]
        out = _format_output(is_tuple, tuple(attrs))
        if not return_convergence_delta:
            return out

        # delta of every draw: its completeness gap along the path actually taken
        def start_rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
            return start_points(sl), example[sl]

        def end_rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
            return end_points(sl), example[sl]

        f_start = forward_rows(runner, start_rows, n_rows, internal_batch_size)
        if noisy:
            f_end = forward_rows(runner, end_rows, n_rows, internal_batch_size)
        else:  # the end point is the same for all draws of an example
            first = torch.arange(bsz, device=device) * n_samples

            def end_once(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
                return end_at(first[sl]), example[first[sl]]

            f_end = forward_rows(runner, end_once, bsz, internal_batch_size)
            f_end = f_end.repeat_interleave(n_samples)
        delta = row_sums - (f_end - f_start)
        if delta_per_example:
            delta = delta.view(bsz, n_samples).mean(1)
        return out, delta

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs

    def attribute_future(self) -> Callable:
        r"""
        This method is not implemented for ExpectedGradients.
        """
        raise NotImplementedError("attribute_future is not implemented for ExpectedGradients")


def _check_stdevs(stdevs: Any, n_inputs: int) -> Tuple[float, ...]:
    """``stdevs`` as one non-negative float per input tensor (GradientShap's
    convention: a float for all inputs, or a tuple with one per input)."""
    items = stdevs if isinstance(stdevs, tuple) else (stdevs,) * n_inputs
    if len(items) != n_inputs:
        raise ValueError(
            f"stdevs has {len(items)} values but inputs has {n_inputs} tensors; pass "
            "one float, or a tuple with one standard deviation per input tensor"
        )
    return tuple(
        check_float(s, f"stdevs[{i}]" if isinstance(stdevs, tuple) else "stdevs", 0.0)
        for i, s in enumerate(items)
    )
