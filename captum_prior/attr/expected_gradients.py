#!/usr/bin/env python3
"""Expected Gradients (Erion et al., Nature Machine Intelligence 2021)."""

from __future__ import annotations

from typing import Any, Callable, Literal, Optional, Tuple, Union, overload

import torch
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor

from captum_prior._batching import RowRunner, forward_rows, gradient_rows
from captum_prior._compat import (
    TargetType,
    TensorOrTupleOfTensorsGeneric,
    _format_output,
)
from captum_prior._validation import (
    as_tensor_tuple,
    check_int,
    check_optional_int,
    check_reference_set,
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
    ``internal_batch_size``.

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

    def __init__(
        self, forward_func: Callable[..., Tensor], multiply_by_inputs: bool = True
    ) -> None:
        GradientAttribution.__init__(self, forward_func)
        self._multiply_by_inputs = bool(multiply_by_inputs)

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_samples: int = 50,
        internal_batch_size: Optional[int] = None,
        *,
        return_convergence_delta: Literal[True],
        generator: Optional[torch.Generator] = None,
    ) -> Tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_samples: int = 50,
        internal_batch_size: Optional[int] = None,
        return_convergence_delta: Literal[False] = False,
        generator: Optional[torch.Generator] = None,
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @log_usage()
    def attribute(  # type: ignore[misc]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_samples: int = 50,
        internal_batch_size: Optional[int] = None,
        return_convergence_delta: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> Union[TensorOrTupleOfTensorsGeneric, Tuple[TensorOrTupleOfTensorsGeneric, Tensor]]:
        r"""
        Args:
            inputs (Tensor or tuple[Tensor, ...]): the examples to explain; the
                        first dimension indexes examples.
            baselines (Tensor or tuple[Tensor, ...]): the reference set. Its first
                        dimension indexes references (any number ``R >= 1``);
                        the other dimensions match one input example. For
                        tuple inputs, a tuple with one tensor per input, all
                        with the same ``R``; a row is drawn jointly.
            target (int, tuple, Tensor, or list, optional): output indices for
                        which gradients are computed, in any of Captum's forms
                        (one int for all examples, one per example as a list or
                        tensor, tuples for multi-dimensional outputs).
                        Default: None (the model must return one score per example)
            additional_forward_args (Any, optional): extra arguments passed to
                        ``forward_func`` after the inputs; tensors whose first
                        dimension equals the number of examples are matched to
                        each example's rows. Default: None
            n_samples (int, optional): draws (reference, :math:`\alpha`) per
                        example. Default: 50
            internal_batch_size (int, optional): the most rows per
                        forward/backward pass; ``None`` runs all
                        ``n_examples * n_samples`` rows at once. Default: None
            return_convergence_delta (bool, optional): also return the
                        per-example completeness gap. Default: False
            generator (torch.Generator, optional): source of every random
                        draw; ``None`` uses torch's global RNG. Default: None

        Returns:
            **attributions** or 2-element tuple of **attributions**, **delta**:
            - **attributions** (*Tensor* or *tuple[Tensor, ...]*): same shape as ``inputs``.
            - **delta** (*Tensor*, returned if return_convergence_delta=True):
              shape ``(n_examples,)``: :math:`\sum\phi - (f(x) - \overline{f(x')})`.
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
        generator: Optional[torch.Generator],
        shift: Optional[Tuple[Callable[[Tensor], Tensor], ...]] = None,
        path: str = "paper",
        create_graph: bool = False,
    ) -> Any:
        """EG with an optional per-example shift ``p`` of the references.

        ``shift[i](index)`` returns ``p`` for the rows of examples ``index`` of
        input ``i``. ``path="paper"`` integrates from ``x' - p`` to ``x``
        (multiplier ``x - x' + p``); ``path="reference_code"`` evaluates the
        gradient at ``(x' + a(x - x')) - p`` with multiplier ``x - x'``.
        ``create_graph=True`` keeps the graph of the attributions (training
        with attribution priors, :mod:`captum_prior.training`).
        """
        x, is_tuple = as_tensor_tuple(inputs, "inputs")
        refs = check_reference_set(baselines, x)
        shift, clamp = self._bind_references(shift, refs)
        n_samples = check_int(n_samples, "n_samples", 1)
        internal_batch_size = check_optional_int(internal_batch_size, "internal_batch_size")
        bsz = x[0].shape[0]
        n_ref = refs[0].shape[0]
        device = x[0].device
        n_rows = bsz * n_samples

        # Every draw up front (cheap), so chunking cannot change the result.
        gdev = generator.device if generator is not None else torch.device("cpu")
        ref_idx = torch.randint(n_ref, (n_rows,), generator=generator, device=gdev).to(device)
        alpha = torch.rand(n_rows, generator=generator, device=gdev).to(device)
        example = torch.arange(bsz, device=device).repeat_interleave(n_samples)

        def start_points(sl: slice) -> Tuple[Tensor, ...]:
            starts = tuple(r[ref_idx[sl]] for r in refs)
            if shift is not None and path == "paper":
                starts = tuple(s - sh(example[sl]) for s, sh in zip(starts, shift))
                starts = starts if clamp is None else clamp(starts)
            return starts

        def make_rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
            idx = example[sl]
            starts = start_points(sl)
            rows = []
            for xi, s in zip(x, starts):
                a = alpha[sl].view((-1,) + (1,) * (xi.dim() - 1)).to(xi.dtype)
                rows.append(s + a * (xi[idx] - s))
            if shift is not None and path == "reference_code":
                rows = [r - sh(idx) for r, sh in zip(rows, shift)]
                rows = rows if clamp is None else list(clamp(tuple(rows)))
            return tuple(rows), idx

        runner = RowRunner(self.forward_func, bsz, target, additional_forward_args)
        attrs = [torch.zeros_like(xi) for xi in x]
        for sl, _rows, idx, grads, _scores in gradient_rows(
            runner, make_rows, n_rows, internal_batch_size, create_graph=create_graph
        ):
            if self.multiplies_by_inputs:
                starts = start_points(sl)
                if shift is not None and path == "reference_code":
                    # released code: multiplier x - x' (without p)
                    starts = tuple(r[ref_idx[sl]] for r in refs)
                contrib = [g * (xi[idx] - s) for g, xi, s in zip(grads, x, starts)]
            else:
                contrib = list(grads)
            if create_graph:  # out of place, so the graph survives
                attrs = [a.index_add(0, idx, c) for a, c in zip(attrs, contrib)]
            else:
                for a, c in zip(attrs, contrib):
                    a.index_add_(0, idx, c.detach())
        attrs = [a / n_samples for a in attrs]
        out = _format_output(is_tuple, tuple(attrs))
        if not return_convergence_delta:
            return out

        # delta = sum(attr) - (f(end) - mean f(start)) along the path actually taken.
        def end_rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
            idx = torch.arange(sl.start, sl.stop, device=device)
            rows = tuple(xi[idx] for xi in x)
            if shift is not None and path == "reference_code":
                rows = tuple(r - sh(idx) for r, sh in zip(rows, shift))
                rows = rows if clamp is None else clamp(rows)
            return rows, idx

        def start_rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
            starts = start_points(sl)
            if shift is not None and path == "reference_code":
                idx = example[sl]
                starts = tuple(r[ref_idx[sl]] - sh(idx) for r, sh in zip(refs, shift))
                starts = starts if clamp is None else clamp(starts)
            return starts, example[sl]

        f_end = forward_rows(runner, end_rows, bsz, internal_batch_size)
        f_start = forward_rows(runner, start_rows, n_rows, internal_batch_size)
        f_start = f_start.view(bsz, n_samples).mean(1)
        total = sum(a.reshape(bsz, -1).sum(1) for a in attrs)
        delta = total - (f_end - f_start)
        return out, delta

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs

    def attribute_future(self) -> Callable:
        raise NotImplementedError("attribute_future is not implemented for ExpectedGradients")
