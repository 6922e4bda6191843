"""Training with attribution priors (Erion et al., Nature MI 2021; Guo & Gong 2025, §4.3.2).

The model is trained on its task loss plus a penalty :math:`\\Omega` on its own
expected-gradients attributions :math:`\\Phi(\\theta, X)` (DeepPrior-EG eq. 18):
:math:`\\min_\\theta L(\\theta; X, y) + \\lambda\\,\\Omega(\\Phi(\\theta, X))`.
With a ``prior`` (e.g. :class:`~captum_prior.priors.MGMPrior`) the attributions
are DeepPrior-EG's, from prior-shifted references.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captum_prior._compat import TargetType
from captum_prior._validation import (
    _no_mode_check,
    as_tensor_tuple,
    check_choice,
    check_float,
    check_int,
    check_reference_set,
)
from captum_prior.attr.deep_prior_expected_gradients import DeepPriorExpectedGradients
from captum_prior.attr.expected_gradients import ExpectedGradients
from captum_prior.errors import CaptumPriorWarning, ModelOutputError
from captum_prior.priors._base import DeepFeaturePrior, gradcam_evidence


def training_attributions(
    model: nn.Module,
    inputs: Tensor,
    target: TargetType,
    references: Tensor,
    prior: Any = None,
    n_samples: int = 1,
    internal_batch_size: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""Expected-gradients attributions that stay differentiable in the model's
    parameters (``create_graph=True``), for use inside a loss.

    The attributions are those of
    :class:`~captum_prior.attr.ExpectedGradients` (or, with a ``prior``, of
    :class:`~captum_prior.attr.DeepPriorExpectedGradients` with
    ``variant="paper"``), computed with ``create_graph=True``. Erion et al.
    train with **one reference per example per step** (``n_samples=1``),
    drawn here uniformly from ``references`` (e.g. the current batch, or a
    batch of training images), as their PyTorch code draws a shuffled
    background batch.

    Parameters
    ----------
    model : nn.Module
        The model being trained.
    inputs : Tensor
        The batch.
    target : int, Tensor or list
        The class whose output is attributed (Erion et al.: the true label).
    references : Tensor
        The reference set.
    prior : callable, Tensor or float, optional
        A DeepPrior-EG prior; the references are shifted by it. Default: None
        (plain EG)
    n_samples : int, optional
        Draws per example. Default: 1
    internal_batch_size : int, optional
        Rows per forward/backward. Default: None
    generator : torch.Generator, optional
        Source of the draws. Default: None

    Returns
    -------
    Tensor
        Attributions shaped like ``inputs``, with a graph to the parameters.

    Raises
    ------
    ValueError
        References that do not match the inputs, ``n_samples < 1``, or a
        ``target`` that does not fit the model.

    References
    ----------
    .. [1] G. Erion, J. D. Janizek, P. Sturmfels, S. M. Lundberg, S.-I. Lee,
       "Improving performance of deep learning models with axiomatic
       attribution priors and expected gradients", Nature Machine
       Intelligence 3, 620-631 (2021).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_prior.training import training_attributions
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    >>> x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    >>> attr = training_attributions(model, x, y, references=x,
    ...                              generator=torch.Generator().manual_seed(0))
    >>> attr.shape, attr.requires_grad
    (torch.Size([4, 1, 4, 4]), True)
    """
    method = (
        ExpectedGradients(model)
        if prior is None
        else DeepPriorExpectedGradients(model, prior, variant="paper")
    )
    with _no_mode_check():  # training runs the model in train mode on purpose
        return method._attributions_with_graph(
            inputs, references, target, n_samples, internal_batch_size, generator
        )


def _check_attributions(attributions: Any) -> Tensor:
    """A non-empty, floating, finite attribution tensor (else a clear error:
    a NaN penalty would otherwise reach the optimiser without a word)."""
    if not isinstance(attributions, Tensor):
        raise TypeError(f"attributions must be a Tensor, got {type(attributions).__name__}")
    if not attributions.is_floating_point():
        raise TypeError(f"attributions must be a floating-point tensor, got {attributions.dtype}; use .float()")
    if attributions.dim() == 0 or attributions.shape[0] == 0 or attributions.numel() == 0:
        raise ValueError(
            f"attributions has shape {tuple(attributions.shape)}: no values, and the "
            "penalty of an empty batch is undefined; skip empty batches"
        )
    if not bool(torch.isfinite(attributions.detach()).all()):
        raise ValueError(
            "attributions contains NaN or Inf, so the penalty would be NaN; check the "
            "model's outputs and gradients (and the learning rate) for the batch"
        )
    return attributions


def _total_variation(attributions: Tensor) -> Tensor:
    a = attributions.sum(1) if attributions.dim() == 4 else attributions
    if a.dim() != 3:
        raise ValueError(f"attributions must be N x C x H x W or N x H x W, got {tuple(attributions.shape)}")
    flat = a.flatten(1)
    std = flat.std(1, unbiased=False).clamp_min(flat.shape[1] ** -0.5)
    a = (a - flat.mean(1).view(-1, 1, 1)) / std.view(-1, 1, 1)
    tv = (a[:, 1:, :] - a[:, :-1, :]).abs().sum((1, 2)) + (a[:, :, 1:] - a[:, :, :-1]).abs().sum((1, 2))
    return tv.mean()


def _gini(attributions: Tensor) -> Tensor:
    v = attributions.abs().mean(0).flatten()
    mean = v.mean().clamp_min(1e-12)
    return -0.5 * (v[:, None] - v[None, :]).abs().mean() / mean


def total_variation_penalty(attributions: Tensor) -> Tensor:
    r"""Erion et al.'s image prior: the mean over the batch of the anisotropic
    total variation (sum of absolute differences between vertical and
    horizontal neighbours) of each *per-image standardised* attribution map
    (TensorFlow's ``per_image_standardization``: zero mean, standard deviation
    floored at :math:`1/\sqrt{\text{numel}}`). Channels are summed first.

    Parameters
    ----------
    attributions : Tensor
        ``N x C x H x W`` or ``N x H x W``, ``N >= 1``, finite.

    Returns
    -------
    Tensor
        A scalar, differentiable in ``attributions``.

    Raises
    ------
    ValueError
        ``attributions`` is empty, holds NaN/Inf or has another rank.
    TypeError
        ``attributions`` is not a floating-point Tensor.

    Examples
    --------
    >>> import torch
    >>> smooth = torch.zeros(1, 1, 4, 4)
    >>> smooth[..., :2] = 1.0  # two flat halves: one edge
    >>> checker = (torch.arange(16).view(1, 1, 4, 4) % 2 + torch.arange(4).view(1, 1, 4, 1)) % 2
    >>> bool(total_variation_penalty(smooth) < total_variation_penalty(checker.float()))
    True
    """
    return _total_variation(_check_attributions(attributions))


def gini_penalty(attributions: Tensor) -> Tensor:
    r"""Erion et al.'s sparsity prior: minus the Gini coefficient of the mean
    absolute attribution over the batch,
    :math:`G(v) = \tfrac12 \operatorname{mean}_{i,j}|v_i - v_j| / \operatorname{mean}(v)`.
    Minimising it makes global feature importance unequal (sparse).

    Parameters
    ----------
    attributions : Tensor
        ``N x ...`` with ``N >= 1`` examples, finite.

    Returns
    -------
    Tensor
        A scalar in ``[-1, 0]``, differentiable in ``attributions``.

    Raises
    ------
    ValueError
        ``attributions`` is empty or holds NaN/Inf.
    TypeError
        ``attributions`` is not a floating-point Tensor.

    Examples
    --------
    >>> import torch
    >>> float(gini_penalty(torch.ones(2, 4)))  # equal importance: Gini 0
    -0.0
    >>> float(gini_penalty(torch.tensor([[0.0, 0.0, 0.0, 1.0]])))  # sparse
    -0.75
    """
    return _gini(_check_attributions(attributions))


# the trainer checks the penalty's value itself (a NaN one is rejected or
# skipped as ``on_nonfinite`` says), so it uses the unchecked forms
PENALTIES: Dict[str, Callable[[Tensor], Tensor]] = {
    "total_variation": _total_variation,
    "gini": _gini,
}


class AttributionPriorTrainer:
    r"""Train a classifier with an attribution prior.

    Each :meth:`step` either (``alternating=True``, as in Erion et al.'s
    image experiment) takes one optimiser step on the cross-entropy and, if
    ``lam > 0``, a second on :math:`\lambda\Omega`; or
    (``alternating=False``, DeepPrior-EG eq. 18) one step on their sum
    :math:`L(\theta; X, y) + \lambda\,\Omega(\Phi(\theta, X))`, where
    :math:`\Phi` are the model's own expected-gradients attributions
    (:func:`training_attributions`).

    Parameters
    ----------
    model : nn.Module
        The classifier (returns logits).
    optimizer : torch.optim.Optimizer
        Over the model's parameters.
    penalty : str or Callable, optional
        ``"total_variation"``, ``"gini"`` or a callable ``attributions ->
        scalar``. Default: ``"total_variation"``
    lam : float, optional
        Weight :math:`\lambda \ge 0`. Default: 1e-3
    prior : callable, optional
        DeepPrior-EG prior for the attributions. Default: None (plain EG)
    n_samples : int, optional
        EG draws per example per step. Default: 1
    alternating : bool, optional
        See above. Default: True
    generator : torch.Generator, optional
        Source of the EG draws. Default: None
    share_forward : bool, optional
        For a deep-feature prior (:class:`~captum_prior.priors.MGMPrior`,
        :class:`~captum_prior.priors.BGMMPrior`), compute its map from the
        prior layer's output captured in the step's cross-entropy forward pass
        (and the Grad-CAM evidence of ``"evidence"`` reductions from the same
        graph), instead of a separate forward (and backward) of the batch: one
        forward less per step. The map is a constant in the penalty either way
        (no gradient flows through it). With ``alternating=True`` the shared
        map comes from the parameters *before* the step's cross-entropy update
        (the separate one from those after it), and the features are the
        training-mode ones (batch-norm batch statistics, dropout) rather than
        eval-mode ones; with ``alternating=False`` and a model without batch
        norm or dropout both give the same step. Default: True
    on_nonfinite : str, optional
        What a step does when the loss, the penalty or a gradient is NaN/Inf:
        ``"raise"`` a :class:`~captum_prior.errors.ModelOutputError`, or
        ``"skip"`` the batch with a
        :class:`~captum_prior.errors.CaptumPriorWarning` (the step's record
        then has ``skipped=True`` and the cause in ``reason``; the warning's
        text is the same for every skipped step, so a loop shows it once).
        Either way the model's parameters and buffers (batch-norm statistics)
        and the optimiser's state are left exactly as before the step. Default:
        ``"raise"``

    Raises
    ------
    TypeError
        ``model``, ``optimizer``, ``penalty``, ``prior`` or ``generator`` of
        the wrong type.
    ValueError
        An unknown penalty name or ``on_nonfinite``, ``lam < 0`` or
        ``n_samples < 1``.

    Notes
    -----
    A batch is validated before the model sees it: ``x`` must be a finite
    floating-point tensor with at least one example, ``y`` one integer class
    index per example within the model's outputs, ``references`` finite and
    shaped like one example. A rejected batch changes nothing.

    References
    ----------
    .. [1] G. Erion et al., "Improving performance of deep learning models
       with axiomatic attribution priors and expected gradients", Nature
       Machine Intelligence 3, 620-631 (2021).
    .. [2] Guo and Gong, "Enhancing Neural Network Interpretability Through
       Deep Prior-Guided Expected Gradients", preprint, 2025, §4.3.2.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_prior.training import AttributionPriorTrainer
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(),
    ...                       nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    >>> trainer = AttributionPriorTrainer(
    ...     model, torch.optim.SGD(model.parameters(), lr=0.1), lam=0.01,
    ...     generator=torch.Generator().manual_seed(0))
    >>> x, y = torch.rand(8, 1, 6, 6), torch.randint(0, 3, (8,))
    >>> history = trainer.fit([(x, y), (x, y)], epochs=2)
    >>> len(history), sorted(history[0])[:2]
    (4, ['cross_entropy', 'penalty'])
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        penalty: Union[str, Callable[[Tensor], Tensor]] = "total_variation",
        lam: float = 1e-3,
        prior: Any = None,
        n_samples: int = 1,
        alternating: bool = True,
        generator: Optional[torch.Generator] = None,
        on_nonfinite: str = "raise",
        share_forward: bool = True,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        if isinstance(penalty, str):
            penalty = PENALTIES[check_choice(penalty, "penalty", tuple(PENALTIES))]
        elif not callable(penalty):
            raise TypeError("penalty must be a name or a callable attributions -> scalar")
        self.penalty = penalty
        self.lam = check_float(lam, "lam", low=0.0)
        self.prior = prior
        self.n_samples = check_int(n_samples, "n_samples", 1)
        self.alternating = bool(alternating)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be None or a torch.Generator, got {type(generator).__name__}")
        self.generator = generator
        self.on_nonfinite = check_choice(on_nonfinite, "on_nonfinite", ("raise", "skip"))
        if not isinstance(share_forward, bool):
            raise TypeError(f"share_forward must be True or False, got {share_forward!r}")
        self.share_forward = share_forward
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if prior is not None:
            DeepPriorExpectedGradients(model, prior)  # checks the prior's type now, not at the first step

    def _omega(self, x: Tensor, y: Tensor, references: Tensor, prior: Any = None) -> Tensor:
        attr = training_attributions(self.model, x, y, references,
                                     self.prior if prior is None else prior,
                                     self.n_samples, generator=self.generator)
        return self.penalty(attr)

    def _shared_layer(self, x: Tensor) -> Optional[nn.Module]:
        """The deep-feature prior's layer when its map is taken from the
        step's own forward pass (``share_forward``), else None."""
        if not (self.share_forward and self.lam > 0 and isinstance(self.prior, DeepFeaturePrior)):
            return None
        return self.prior._layer_for(x)

    def _shared_prior(self, x: Tensor, y: Tensor, logits: Tensor, store: List[Any]) -> Any:
        """The prior for this batch from the features captured in the
        cross-entropy forward (see ``share_forward``): a :class:`_BatchMap`."""
        prior = self.prior
        f = store[-1] if store else None
        if isinstance(f, (tuple, list)):
            f = f[0]
        if not isinstance(f, Tensor) or f.dim() != 4:
            raise ValueError(
                "the prior's layer did not output an N x C x h x w feature map in the "
                "model's forward; pass a Conv2d-like layer to the prior, or share_forward=False"
            )
        evid = None
        if prior._needs_evidence:
            if not f.requires_grad:  # no graph to the features: the separate route
                return prior
            score = logits.gather(1, y.to(logits.device).view(-1, 1)).squeeze(1)
            evid = gradcam_evidence(score, f, retain_graph=True)
        with torch.no_grad():
            maps = prior.map_from_features(f, evid, x)
        return _BatchMap(prior, maps)

    def _check_batch(self, x: Any, y: Any, references: Any) -> Tensor:
        (x,), _ = as_tensor_tuple(x, "x")
        if x.shape[0] == 0:
            raise ValueError("x is an empty batch (0 examples); skip empty batches")
        if not isinstance(y, Tensor):
            raise TypeError(f"y must be a Tensor of class indices, got {type(y).__name__}")
        if y.is_floating_point() or y.dtype == torch.bool or y.dim() != 1:
            raise TypeError(
                f"y must be a 1-D integer tensor of class indices, got {y.dtype} of "
                f"shape {tuple(y.shape)}; use y.long()"
            )
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"y has {y.shape[0]} labels but x has {x.shape[0]} examples")
        if references is not None:
            check_reference_set(references, (x,), "references")
        return x

    def _check_finite(self, value: Tensor, what: str) -> None:
        if not bool(torch.isfinite(value.detach()).all()):
            raise _Rejected(f"the {what} is NaN or Inf")

    def _check_grads(self, what: str) -> None:
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                    raise _Rejected(f"a gradient of the {what} is NaN or Inf")

    def step(self, x: Tensor, y: Tensor, references: Optional[Tensor] = None) -> Dict[str, Any]:
        """One training step on the batch ``(x, y)``.

        Parameters
        ----------
        x : Tensor
            The batch, ``N x ...``, finite, floating point.
        y : Tensor
            ``N`` integer class indices.
        references : Tensor, optional
            The reference set of the attributions; ``None``: the batch.

        Returns
        -------
        dict
            ``cross_entropy`` and ``penalty`` (floats) and ``skipped``
            (False); for a skipped step (``on_nonfinite="skip"``) only
            ``skipped=True`` and ``reason``.

        Raises
        ------
        TypeError, ValueError
            An invalid batch (nothing is changed).
        ModelOutputError
            A NaN/Inf loss, penalty or gradient with ``on_nonfinite="raise"``.

        Notes
        -----
        The batch is validated first; if the loss, the penalty or a gradient
        turns out NaN/Inf, the step is undone before anything is kept:
        parameters, buffers and optimiser state are bitwise as before.
        """
        x = self._check_batch(x, y, references)
        refs = x if references is None else references
        # The forward pass in train mode updates batch-norm statistics, and an
        # alternating step takes an optimiser step before the penalty exists:
        # keep what is needed to undo the step.
        buffers = [b.detach().clone() for b in self.model.buffers()]
        two_steps = self.alternating and self.lam > 0
        params: List[Tensor] = []
        opt_state = None
        if two_steps:
            params = [p.detach().clone() for p in self.model.parameters()]
            opt_state = copy.deepcopy(self.optimizer.state_dict())
        was_training = self.model.training
        self.model.train()
        try:
            layer = self._shared_layer(x)
            store: List[Any] = []
            handle = None if layer is None else layer.register_forward_hook(
                lambda _m, _i, out: store.append(out))
            try:
                logits = self.model(x)
            finally:
                if handle is not None:
                    handle.remove()
            if not isinstance(logits, Tensor) or logits.dim() != 2:
                raise ValueError(
                    "the model must return N x C logits for the cross-entropy, got "
                    + (str(tuple(logits.shape)) if isinstance(logits, Tensor) else type(logits).__name__)
                )
            n_classes = logits.shape[1]
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
                raise ValueError(
                    f"y holds class indices in [{int(y.min())}, {int(y.max())}] but the "
                    f"model has {n_classes} outputs; use 0..{n_classes - 1}"
                )
            ce = F.cross_entropy(logits, y.to(logits.device))
            self._check_finite(ce, "cross-entropy")
            out: Dict[str, Any] = {"cross_entropy": float(ce.detach())}
            prior = None if layer is None else self._shared_prior(x, y, logits, store)
            store.clear()
            if self.alternating or self.lam == 0:
                self.optimizer.zero_grad()
                ce.backward()
                self._check_grads("cross-entropy")
                self.optimizer.step()
                if self.lam > 0:
                    omega = self._omega(x, y, refs, prior)
                    self._check_finite(omega, "penalty")
                    self.optimizer.zero_grad()
                    (self.lam * omega).backward()
                    self._check_grads("penalty")
                    self.optimizer.step()
                    out["penalty"] = float(omega.detach())
            else:
                omega = self._omega(x, y, refs, prior)
                self._check_finite(omega, "penalty")
                self.optimizer.zero_grad()
                (ce + self.lam * omega).backward()
                self._check_grads("loss")
                self.optimizer.step()
                out["penalty"] = float(omega.detach())
        except (_Rejected, ModelOutputError, ValueError) as exc:
            self._restore(buffers, params, opt_state)
            self.model.train(was_training)
            if isinstance(exc, _Rejected):
                msg = (
                    f"training step rejected: {exc}; the model and optimiser are "
                    "unchanged. Lower the learning rate or lam, or check the batch"
                )
                if self.on_nonfinite == "raise":
                    raise ModelOutputError(msg + " (or pass on_nonfinite='skip')") from None
                # one text per condition (the batch's details go in the record),
                # so that a loop shows the warning once per call site
                warnings.warn(
                    "training step skipped: the loss, penalty or a gradient was NaN or Inf; "
                    "the model and optimiser are unchanged (the step's record says why). "
                    "Lower the learning rate or lam, or check the batch",
                    CaptumPriorWarning, stacklevel=2,
                )
                return {"skipped": True, "reason": msg}
            if isinstance(exc, ModelOutputError) and self.on_nonfinite == "skip":
                warnings.warn(
                    "training step skipped: the model gave a NaN or Inf output or gradient; "
                    "the model and optimiser are unchanged (the step's record says why)",
                    CaptumPriorWarning, stacklevel=2,
                )
                return {"skipped": True, "reason": str(exc)}
            raise
        except BaseException:
            self._restore(buffers, params, opt_state)
            raise
        out["skipped"] = False
        return out

    def _restore(self, buffers: List[Tensor], params: List[Tensor], opt_state: Any) -> None:
        self.optimizer.zero_grad()
        with torch.no_grad():
            for b, saved in zip(self.model.buffers(), buffers):
                b.copy_(saved)
            for p, saved in zip(self.model.parameters(), params):
                p.copy_(saved)
        if opt_state is not None:
            self.optimizer.load_state_dict(opt_state)

    def fit(self, batches: Iterable[Any], epochs: int = 1, show_progress: bool = False) -> list:
        """Run :meth:`step` over ``batches`` for ``epochs`` epochs.

        Parameters
        ----------
        batches : iterable of (Tensor, Tensor)
            ``(x, y)`` pairs, e.g. a DataLoader.
        epochs : int, default=1
            Passes over ``batches`` (>= 1).
        show_progress : bool, default=False
            Show a progress bar per epoch.

        Returns
        -------
        list of dict
            The record of every step (see :meth:`step`).

        Raises
        ------
        TypeError
            ``batches`` is not iterable.
        ValueError
            A batch is not an ``(x, y)`` pair.
        """
        from tqdm.auto import tqdm

        epochs = check_int(epochs, "epochs", 1)
        try:
            iter(batches)
        except TypeError:
            raise TypeError(
                f"batches must be an iterable of (x, y) pairs, e.g. a DataLoader, got "
                f"{type(batches).__name__}"
            ) from None
        history = []
        for epoch in range(epochs):
            for i, batch in enumerate(tqdm(batches, disable=not show_progress, desc=f"epoch {epoch + 1}")):
                if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                    what = f"{len(batch)} items" if isinstance(batch, (tuple, list)) else type(batch).__name__
                    raise ValueError(
                        f"batches must yield (x, y) pairs of inputs and integer labels; batch "
                        f"{i} is {what}"
                    )
                x, y = batch
                history.append(self.step(x, y))
        return history


class _BatchMap:
    """A deep-feature prior whose map for the current batch is already
    computed: shifts in the prior's units and clamps to its range, as the
    prior itself would (see ``AttributionPriorTrainer(share_forward=True)``)."""

    def __init__(self, prior: DeepFeaturePrior, maps: Tensor) -> None:
        self.prior, self.maps = prior, maps

    def __call__(self, inputs: Any, target: TargetType = None, references: Optional[Tensor] = None) -> Tensor:
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        return self.prior.shift_from_map(self.maps, x, references)

    def baseline_range(self, references: Optional[Tensor] = None) -> Any:
        return self.prior.baseline_range(references)


class _Rejected(Exception):
    """A training step produced a non-finite loss, penalty or gradient."""
