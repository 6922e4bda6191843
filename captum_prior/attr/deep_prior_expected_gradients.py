#!/usr/bin/env python3
"""DeepPrior-EG: expected gradients from prior-shifted baselines (Guo & Gong, 2025)."""

from __future__ import annotations

import numbers
import warnings
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
from torch import Tensor

from captum_prior._compat import TargetType
from captum_prior._validation import as_tensor_tuple, check_finite, check_variant
from captum_prior.attr.expected_gradients import ExpectedGradients, ReferenceShift
from captum_prior.errors import InputRangeWarning

PriorType = Union[Callable[..., Any], Tensor, float, Tuple[Tensor, ...]]

#: The readings of DeepPrior-EG this class implements (see ``variant``).
VARIANTS = ("paper", "reference_code")


class DeepPriorExpectedGradients(ExpectedGradients):
    r"""Expected gradients whose references are shifted by a prior map.

    DeepPrior-EG (Guo & Gong, 2025) replaces each reference :math:`x'` by
    the *prior baseline* :math:`x'_{prior} = x' - p` (eq. 7), where :math:`p`
    is a map computed from the model's own deep features
    (:class:`~captum_prior.priors.MGMPrior`,
    :class:`~captum_prior.priors.BGMMPrior`) or from object masks
    (:class:`~captum_prior.priors.MaskPrior`, Shape-EG), and integrates
    gradients from that baseline to the input (eqs. 8-9):

    .. math::
        \phi_i(x) = \mathbb{E}_{x', \alpha}\big[(x_i - x'_i + p_i)\,
        \partial_i f(x' - p + \alpha (x - x' + p))\big].

    ``attribute`` is :meth:`ExpectedGradients.attribute` (same arguments);
    ``target`` is also passed to the prior.

    Parameters
    ----------
    forward_func : callable
        The model, or any function returning ``N x C`` scores.
    prior : callable, Tensor, tuple of Tensor, or float
        The prior. A callable ``prior(inputs, target=None)`` (the priors of
        :mod:`captum_prior.priors`) returning :math:`p` broadcastable to the
        inputs (a tuple of such tensors for tuple inputs); or a fixed
        Tensor / number used as is.
    multiply_by_inputs : bool, default=True
        See :class:`ExpectedGradients`.
    variant : {"paper", "reference_code"}, default="paper"
        How the shift enters the path. ``"paper"``: eqs. 8-9 as printed, the
        path runs from :math:`x' - p` to :math:`x` with multiplier
        :math:`x - x' + p`; completeness holds against :math:`f(x) -
        \mathbb{E} f(x' - p)`, which the convergence delta measures.
        ``"reference_code"``: what the authors' released code computes: the
        model is evaluated at :math:`(x' + \alpha(x - x')) - p`, i.e. the
        whole straight path is translated by :math:`-p`, it ends at
        :math:`x - p` instead of :math:`x`, and the multiplier stays
        :math:`x - x'`. This is not eqs. 8-9; it is offered to compare with
        the published numbers, and its delta is measured along the path
        taken, against :math:`f(x - p) - \mathbb{E} f(x' - p)`.

    Raises
    ------
    TypeError
        ``prior`` is neither callable, a Tensor, a tuple nor a number.
    ValueError
        An unknown ``variant``.

    Notes
    -----
    The prior is evaluated once per ``attribute`` call, for the explained
    inputs (never per draw), and subtracted from every drawn reference. A
    deep-feature prior (one with a ``baseline_range`` method) is given the
    reference set, so that its ``scale`` is in units of the reference set's
    standard deviation, and every prior-shifted point is clamped to its
    ``baseline_range`` (by default the reference set's per-channel range):
    the paper's baselines :math:`x' - p` otherwise leave the data's range,
    e.g. negative pixel values. Other priors (masks, tensors, numbers) are
    used as given, with an :class:`~captum_prior.errors.InputRangeWarning`
    when they push a baseline outside the reference set's range.

    With a zero prior both variants reduce exactly to
    :class:`ExpectedGradients`.

    ``generator`` may be a list of one generator per example, as for
    :class:`ExpectedGradients`: the references and :math:`\alpha` of example
    ``j`` then come from ``generator[j]`` only, but the prior is computed for
    the whole batch, and a user's prior may couple the images of a batch (a
    :class:`~captum_prior.priors.BGMMPrior` seeded with a ``torch.Generator``
    advances it once per call), so
    :func:`~captum_prior.runner.attribute_dataset` calls this class one
    example at a time.

    References
    ----------
    .. [1] Guo and Gong, "Enhancing Neural Network Interpretability Through
       Deep Prior-Guided Expected Gradients", preprint, 2025.
    .. [2] G. Erion et al., "Improving performance of deep learning models
       with axiomatic attribution priors and expected gradients", Nature
       Machine Intelligence 3, 620-631 (2021).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_prior.attr import DeepPriorExpectedGradients
    >>> from captum_prior.priors import MGMPrior
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
    ...                       nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    >>> images, references = torch.rand(2, 1, 8, 8), torch.rand(6, 1, 8, 8)
    >>> dp = DeepPriorExpectedGradients(model, MGMPrior(model))
    >>> attr = dp.attribute(images, references, n_samples=4, target=0,
    ...                     generator=torch.Generator().manual_seed(0))
    >>> attr.shape
    torch.Size([2, 1, 8, 8])
    >>> zero = DeepPriorExpectedGradients(model, 0.0).attribute(
    ...     images, references, n_samples=4, target=0,
    ...     generator=torch.Generator().manual_seed(0))
    >>> from captum_prior.attr import ExpectedGradients
    >>> eg = ExpectedGradients(model).attribute(
    ...     images, references, n_samples=4, target=0,
    ...     generator=torch.Generator().manual_seed(0))
    >>> torch.equal(zero, eg)  # a zero prior is plain expected gradients
    True
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        prior: PriorType,
        multiply_by_inputs: bool = True,
        variant: str = "paper",
    ) -> None:
        super().__init__(forward_func, multiply_by_inputs)
        if not (callable(prior) or isinstance(prior, (Tensor, tuple, numbers.Real))):
            raise TypeError(
                "prior must be a callable prior(inputs, target=None), a Tensor, a "
                f"tuple of Tensors or a number, got {type(prior).__name__}"
            )
        self.prior = prior
        self.variant = check_variant(variant, "DeepPriorExpectedGradients", VARIANTS)

    def _per_example_generators(self, attribute_kwargs: Dict[str, Any]) -> bool:
        """False: the prior is evaluated on the whole batch and may couple its
        examples, so :func:`captum_prior.runner.attribute_dataset` calls this
        class one example at a time (see the class Notes)."""
        return False

    def prior_map(
        self, inputs: Any, target: TargetType = None, references: Any = None
    ) -> Tuple[Tensor, ...]:
        """Evaluate the prior for ``inputs``, expanded to each input's shape.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            The explained examples.
        target : int, Tensor or list, optional
            Passed to a callable prior (e.g. for a class-evidence reduction).
        references : Tensor or tuple of Tensor, optional
            The reference set; a deep-feature prior takes its ``scale`` in
            units of its standard deviation.

        Returns
        -------
        tuple of Tensor
            One map per input tensor, each with that input's shape (a
            broadcast view).

        Raises
        ------
        TypeError
            The prior returned something other than tensors or numbers.
        ValueError
            The prior returned the wrong number of maps, a map with NaN/Inf,
            or a map that does not broadcast to its input.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> dp = DeepPriorExpectedGradients(nn.Flatten(), 0.5)
        >>> p, = dp.prior_map(torch.zeros(2, 1, 3, 3))
        >>> p.shape, float(p.max())
        (torch.Size([2, 1, 3, 3]), 0.5)
        """
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

    def _references_for(
        self, inputs: Any, target: TargetType, references: Tuple[Tensor, ...]
    ) -> Optional[ReferenceShift]:
        """The prior map as the shift of every draw's path, with the clamp of
        a deep-feature prior (see the class Notes)."""
        p = self.prior_map(inputs, target, references=references)
        shift_inputs = self.variant == "reference_code"
        if _data_unit_prior(self.prior) and len(references) == 1:
            rng = self.prior.baseline_range(references[0])  # type: ignore[union-attr]
            if rng is None:
                return ReferenceShift(p, None, shift_inputs)
            r = references[0]
            lo, hi = (torch.as_tensor(b, dtype=r.dtype, device=r.device) for b in rng)
            return ReferenceShift(p, (lo, hi), shift_inputs)
        for i, (pi, r) in enumerate(zip(p, references)):
            if r.numel() and pi.numel() and (
                (r.amin(0) - pi.amax(0) < r.min()).any() or (r.amax(0) - pi.amin(0) > r.max()).any()
            ):
                warnings.warn(
                    f"prior map {i} shifts baselines outside the reference set's range "
                    f"[{float(r.min()):.3g}, {float(r.max()):.3g}]; lower the prior's scale or use "
                    "a deep-feature prior, whose baselines are clamped",
                    InputRangeWarning, stacklevel=5,
                )
        return ReferenceShift(p, None, shift_inputs)


def _data_unit_prior(prior: Any) -> bool:
    """A prior that takes ``references=`` and gives a clamp range (the
    deep-feature priors of :mod:`captum_prior.priors`)."""
    return callable(getattr(prior, "baseline_range", None))
