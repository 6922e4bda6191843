#!/usr/bin/env python3
"""DeepPrior-EG: expected gradients from prior-shifted baselines (Guo & Gong, 2025)."""

from __future__ import annotations

import numbers
import warnings
from typing import Any, Callable, Tuple, Union

import torch
from torch import Tensor

from captum_prior._compat import TargetType
from captum_prior._validation import as_tensor_tuple, check_choice, check_finite
from captum_prior.attr.expected_gradients import PATHS, ExpectedGradients
from captum_prior.errors import InputRangeWarning

PriorType = Union[Callable[..., Any], Tensor, float, Tuple[Tensor, ...]]


class DeepPriorExpectedGradients(ExpectedGradients):
    r"""Expected gradients whose references are shifted by a prior map.

    DeepPrior-EG (Guo & Gong, 2025, eqs. 7-9) replaces each reference
    :math:`x'` by the *prior baseline* :math:`x'_{prior} = x' - p_{prior}`
    (eq. 7), where :math:`p_{prior}` is a map computed from the model's own
    deep features (:class:`~captum_prior.priors.MGMPrior`,
    :class:`~captum_prior.priors.BGMMPrior`) or from object masks
    (:class:`~captum_prior.priors.MaskPrior`, Shape-EG), and integrates
    gradients from that baseline to the input (eqs. 8-9):

    .. math::
        \phi_i(x) = \mathbb{E}_{x', \alpha}\big[(x_i - x'_i + p_i)\,
        \partial_i f(x' - p + \alpha (x - x' + p))\big].

    The prior is computed once per call, for the explained inputs (never per
    draw), and subtracted from every drawn reference. ``generator`` may be a
    list of one generator per example, as for :class:`ExpectedGradients`:
    then the references and :math:`\alpha` of example ``j`` come from
    ``generator[j]`` only, but the prior is still computed for the whole
    batch, so with a prior that couples the images of a batch (the torch
    backend of :class:`~captum_prior.priors.BGMMPrior` seeds all its k-means
    initialisations from one generator) the result for an example still
    depends on the rest of the batch.

    ``path`` selects how the shift enters:

    - ``"paper"`` (default): eqs. 8-9 as above. Completeness holds against
      :math:`f(x) - \mathbb{E} f(x' - p)`, which is what the convergence delta
      measures.
    - ``"reference_code"``: what the authors' released code does
      (``explainer.py``; methods.md §1.3). The model is evaluated at
      :math:`(x' + \alpha(x - x')) - p`, i.e. the *whole* straight path is
      translated by :math:`-p`, its end point becomes :math:`x - p` instead of
      :math:`x`, and the multiplier stays :math:`(x - x')`. This is not eqs.
      8-9; it is offered only to compare with the published numbers. Its
      delta is computed along the path actually taken, against
      :math:`f(x - p) - \mathbb{E} f(x' - p)`.

    With a zero prior both paths reduce exactly to :class:`ExpectedGradients`.
    ``attribute`` is :meth:`ExpectedGradients.attribute` (same arguments;
    ``target`` is also passed to the prior); its delta is against
    :math:`f(x) - \mathbb{E} f(x' - p)` for ``path="paper"``.

    Args:
        forward_func (Callable): the model or any function returning ``N x C``
                    scores.
        prior (Callable, Tensor, or float): the prior. A callable
                    ``prior(inputs, target=None)`` (the priors of
                    :mod:`captum_prior.priors`) returning :math:`p_{prior}`
                    broadcastable to the inputs (a tuple of such tensors for
                    tuple inputs); or a fixed Tensor / number used as is.
        multiply_by_inputs (bool, optional): see :class:`ExpectedGradients`.
                    Default: True
        path (str, optional): ``"paper"`` or ``"reference_code"``, see above.
                    Default: ``"paper"``

    Examples::

        >>> from captum_prior.priors import BGMMPrior
        >>> dp = DeepPriorExpectedGradients(model, BGMMPrior(model, random_state=0))
        >>> attr = dp.attribute(images, baselines=refs, target=labels,
        ...                     n_samples=200, generator=torch.Generator().manual_seed(0))
    """

    #: ``attribute`` accepts one generator per example (as
    #: :class:`ExpectedGradients`), but the prior is evaluated on the whole
    #: batch, and a prior may couple the examples of a batch (e.g.
    #: :class:`~captum_prior.priors.BGMMPrior`'s torch backend draws the
    #: k-means initialisations of all images of the batch from one
    #: generator), so :func:`captum_prior.runner.attribute_dataset` keeps
    #: calling it one example at a time.
    _per_example_generators = False

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        prior: PriorType,
        multiply_by_inputs: bool = True,
        path: str = "paper",
    ) -> None:
        super().__init__(forward_func, multiply_by_inputs)
        if not (callable(prior) or isinstance(prior, (Tensor, tuple, numbers.Real))):
            raise TypeError(
                "prior must be a callable prior(inputs, target=None), a Tensor, a "
                f"tuple of Tensors or a number, got {type(prior).__name__}"
            )
        self.prior = prior
        self.path = check_choice(path, "path", PATHS)

    def prior_map(
        self, inputs: Any, target: TargetType = None, references: Any = None
    ) -> Tuple[Tensor, ...]:
        """Evaluate the prior for ``inputs``, expanded to each input's shape.

        A deep-feature prior (:mod:`captum_prior.priors`) is given the
        reference set too, so that its ``scale`` is in units of the
        reference set's standard deviation."""
        x, is_tuple = as_tensor_tuple(inputs, "inputs")
        refs = None
        if references is not None:
            refs = references if isinstance(references, tuple) else (references,)
        if callable(self.prior) and not isinstance(self.prior, Tensor):
            with torch.no_grad():
                if refs is not None and _data_unit_prior(self.prior):
                    p = self.prior(inputs if is_tuple else x[0], target=target, references=refs[0])
                else:
                    p = self.prior(inputs if is_tuple else x[0], target=target)
        else:
            p = self.prior
        p_items = p if isinstance(p, tuple) else (p,)
        if len(p_items) != len(x):
            raise ValueError(
                f"the prior returned {len(p_items)} maps for {len(x)} input tensors; "
                "return one map per input tensor"
            )
        out = []
        for i, (pi, xi) in enumerate(zip(p_items, x)):
            if isinstance(pi, numbers.Real):
                pi = torch.tensor(float(pi))
            if not isinstance(pi, Tensor):
                raise TypeError(f"prior map {i} must be a Tensor, got {type(pi).__name__}")
            check_finite(pi, f"prior map {i}")
            try:
                pi = torch.broadcast_to(pi.to(device=xi.device, dtype=xi.dtype), xi.shape)
            except RuntimeError:
                raise ValueError(
                    f"prior map {i} has shape {tuple(pi.shape)}, which does not "
                    f"broadcast to the inputs' shape {tuple(xi.shape)}"
                ) from None
            out.append(pi)
        return tuple(out)

    @property
    def _path(self) -> str:  # type: ignore[override]
        return self.path

    def _reference_shift(self, inputs: Any, target: TargetType) -> "_PendingShift":
        """The prior is evaluated once per call, for the explained inputs
        (``target`` is passed on, e.g. for a class-evidence reduction), when
        the reference set is known (:meth:`_bind_references`)."""
        return _PendingShift(inputs, target)

    def _bind_references(self, shift: Any, refs: Tuple[Tensor, ...]) -> Tuple[Any, Any]:
        """Evaluate the prior in the reference set's units and build the clamp.

        Deep-feature priors give the clamp range (``prior.baseline_range``:
        by default the reference set's per-channel min/max), and every
        prior-shifted point is clamped to it. Other priors (masks, tensors,
        numbers) are used as given; if they push a baseline outside the
        reference set's range an :class:`~captum_prior.errors.InputRangeWarning`
        is raised."""
        if not isinstance(shift, _PendingShift):
            return shift, None
        p = self.prior_map(shift.inputs, shift.target, references=refs)
        fns = tuple((lambda idx, pi=pi: pi[idx]) for pi in p)
        if _data_unit_prior(self.prior) and len(refs) == 1:
            rng = self.prior.baseline_range(refs[0])  # type: ignore[union-attr]
            if rng is None:
                return fns, None
            lo, hi = (torch.as_tensor(b, dtype=refs[0].dtype, device=refs[0].device) for b in rng)

            def clamp(points: Tuple[Tensor, ...]) -> Tuple[Tensor, ...]:
                return (torch.maximum(torch.minimum(points[0], hi), lo),)

            return fns, clamp
        for i, (pi, r) in enumerate(zip(p, refs)):
            if r.numel() and pi.numel() and (r.amin(0) - pi.amax(0) < r.min()).any() or (
                r.numel() and pi.numel() and (r.amax(0) - pi.amin(0) > r.max()).any()
            ):
                warnings.warn(
                    f"prior map {i} shifts baselines outside the reference set's range "
                    f"[{float(r.min()):.3g}, {float(r.max()):.3g}]; lower the prior's scale or use "
                    "a deep-feature prior, whose baselines are clamped",
                    InputRangeWarning, stacklevel=4,
                )
        return fns, None


class _PendingShift(tuple):
    """The explained inputs and target, until the references are known."""

    def __new__(cls, inputs: Any, target: TargetType) -> "_PendingShift":
        obj = super().__new__(cls, ())
        obj.inputs = inputs  # type: ignore[attr-defined]
        obj.target = target  # type: ignore[attr-defined]
        return obj


def _data_unit_prior(prior: Any) -> bool:
    """A prior that takes ``references=`` and gives a clamp range (the
    deep-feature priors of :mod:`captum_prior.priors`)."""
    return callable(getattr(prior, "baseline_range", None))
