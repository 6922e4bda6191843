"""Shared machinery of the deep-feature priors (MGM and BGMM).

A deep-feature prior reads the feature map ``F`` (``B x C x h x w``) of one
layer of the model for each explained image, turns it into an ``h x w`` map,
and upsamples that map bilinearly to the input's ``H x W``. Subclasses
provide the density model (``_fit_rows``, ``_maps``).

Everything that turns the map into a shift of the references lives here, so
every deep-feature prior shares it: the orientation of the map, the ``scale``
in units of the data's standard deviation, and the range that prior-shifted
baselines are clamped to.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from captum_prior._batching import rows_target, select_output
from captum_prior._compat import TargetType
from captum_prior._features import capture, last_spatial_layer, resolve_layer
from captum_prior._image import resize
from captum_prior._validation import (
    as_tensor_tuple,
    check_float,
    check_int,
    check_target,
    check_variant,
)
from captum_prior.errors import InputRangeWarning

#: Default ``scale``: the prior shifts a reference by at most this many
#: standard deviations of the data (per channel), chosen by a sweep of
#: 0.1-2 on the development data (Fashion-MNIST with the bundled CNN, the
#: bundled photos with EfficientNet-Lite0) as the best mean paired
#: insertion-deletion gain over expected gradients.
DEFAULT_SCALE = 1.0

ClampType = Union[str, None, Tuple[Any, Any]]


def _channel_stats(ref: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-channel std, min and max of a reference set ``R x C x ...``, each
    shaped ``1 x C x 1 ... 1`` so that they broadcast over images."""
    if ref.dim() < 2 or ref.shape[0] == 0:
        raise ValueError(f"references must be a non-empty R x C x ... tensor, got {tuple(ref.shape)}")
    c = ref.shape[1]
    flat = ref.detach().transpose(0, 1).reshape(c, -1).to(torch.float64)
    shape = (1, c) + (1,) * (ref.dim() - 2)
    std = flat.std(1, unbiased=False) if flat.shape[1] > 1 else torch.zeros(c, dtype=torch.float64)
    return (std.view(shape).to(ref.dtype), flat.amin(1).view(shape).to(ref.dtype),
            flat.amax(1).view(shape).to(ref.dtype))


class DeepFeaturePrior:
    """Base class of :class:`~captum_prior.priors.MGMPrior` and
    :class:`~captum_prior.priors.BGMMPrior` (see their parameters)."""

    #: whether the reduction needs Grad-CAM evidence (gradients of the target)
    _needs_evidence = False
    #: the ``variant`` values the subclass implements
    _variants: Tuple[str, ...] = ("paper", "reference_code")

    def __init__(
        self,
        model: nn.Module,
        layer: Union[str, nn.Module, None] = None,
        scale: float = DEFAULT_SCALE,
        variant: str = "paper",
        batch_size: int = 64,
        data_std: Union[float, Sequence[float], Tensor, None] = None,
        clamp: ClampType = "auto",
    ) -> None:
        self.model = model
        self.layer = layer
        # a given layer is checked now; layer=None is found on the first input
        self.layer_: Optional[nn.Module] = None if layer is None else resolve_layer(model, layer)
        self.layer_name_: Optional[str] = None
        if self.layer_ is not None:
            self.layer_name_ = next(n for n, m in model.named_modules() if m is self.layer_)
        self.scale = check_float(scale, "scale", low=0.0)
        self.variant = check_variant(variant, type(self).__name__, self._variants)
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.data_std = data_std
        self._data_std_t = self._check_std(data_std)
        if not (clamp is None or (isinstance(clamp, str) and clamp == "auto")
                or (isinstance(clamp, (tuple, list)) and len(clamp) == 2)):
            raise ValueError(f"clamp must be 'auto', None or a (low, high) pair, got {clamp!r}")
        self.clamp = clamp
        self.fitted_: Optional[Any] = None
        self.data_std_: Optional[Tensor] = None
        self.data_range_: Optional[Tuple[Tensor, Tensor]] = None

    @staticmethod
    def _check_std(data_std: Any) -> Optional[Tensor]:
        if data_std is None:
            return None
        t = torch.as_tensor(data_std, dtype=torch.float64).reshape(-1)
        if t.numel() == 0 or not torch.isfinite(t).all() or (t <= 0).any():
            raise ValueError(f"data_std must be positive and finite (one value, or one per channel), got {data_std!r}")
        return t

    def __repr__(self) -> str:
        layer = self.layer_name_ if self.layer_name_ is not None else "None (found on the first input)"
        extra = self._repr_extra()
        return (f"{type(self).__name__}(layer={layer!r}, scale={self.scale}, data_std={self.data_std!r}, "
                f"clamp={self.clamp!r}, variant={self.variant!r}"
                + (", " + extra if extra else "") + ")")

    def _repr_extra(self) -> str:
        return ""

    def _layer_for(self, inputs: Tensor) -> nn.Module:
        """The feature layer; ``layer=None`` is resolved here, once, by running
        the model on ``inputs[:1]`` (:func:`~captum_prior._features.last_spatial_layer`)."""
        if self.layer_ is None:
            self.layer_, self.layer_name_ = last_spatial_layer(self.model, inputs)
        return self.layer_

    # -- features -------------------------------------------------------
    def features(
        self, inputs: Tensor, target: TargetType = None, evidence: bool = False
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """The prior layer's features for ``inputs``, and optionally the Grad-CAM evidence.

        One forward per ``batch_size`` images; the model is left as found.

        Parameters
        ----------
        inputs : Tensor
            ``B x C x H x W`` images.
        target : int, sequence or Tensor, optional
            The class of the evidence; None: the predicted class.
        evidence : bool, optional
            Also compute the Grad-CAM evidence map (one backward per batch).
            Default: False

        Returns
        -------
        tuple of (Tensor, Tensor or None)
            Features ``B x C x h x w`` and the evidence ``B x h x w`` (None
            when ``evidence=False``).
        """
        feats, evid = [], []
        n = inputs.shape[0]
        with capture(self.model, self._layer_for(inputs)) as store:
            for start in range(0, n, self.batch_size):
                xb = inputs[start : start + self.batch_size]
                idx = torch.arange(start, start + xb.shape[0], device=inputs.device)
                with torch.set_grad_enabled(evidence):
                    # a frozen model (requires_grad=False) still needs a graph
                    # from the input to the features for the evidence gradient
                    out = self.model(xb.detach().requires_grad_() if evidence else xb)
                    if not store:
                        raise ValueError("the prior's layer was not called by the model's forward")
                    f = store.pop()
                    store.clear()
                    if not isinstance(f, Tensor) or f.dim() != 4:
                        shape = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
                        raise ValueError(
                            f"the prior's layer outputs {shape}; image priors need a "
                            "4-D (N x C x h x w) feature map, e.g. a Conv2d layer"
                        )
                    if evidence:
                        if out.dim() != 2:
                            raise ValueError(
                                f"the model returns shape {tuple(out.shape)}; the evidence "
                                "reduction needs N x C logits"
                            )
                        if target is None:
                            t: Any = out.argmax(1)
                        else:
                            check_target(target, n, out.shape[1])
                            t = rows_target(target, idx)
                        evid.append(gradcam_evidence(select_output(out, t), f))
                feats.append(f.detach())
        return torch.cat(feats), (torch.cat(evid) if evidence else None)

    # -- public API -----------------------------------------------------
    def fit(self, reference_inputs: Tensor) -> "DeepFeaturePrior":
        """Fit one density on all feature positions of a reference set.

        The fitted density is then used for every explained image instead of
        a fit per image. Also records the reference set's per-channel
        standard deviation (``data_std_``) and range (``data_range_``).

        Parameters
        ----------
        reference_inputs : Tensor
            ``R x C x H x W`` reference images.

        Returns
        -------
        self
        """
        (x,), _ = as_tensor_tuple(reference_inputs, "reference_inputs")
        self.set_reference_stats(x)
        feats, _ = self.features(x)
        self.fitted_ = self._fit_rows(self._rows(feats).reshape(-1, self._row_dim(feats)))
        return self

    def set_reference_stats(self, references: Tensor) -> "DeepFeaturePrior":
        """Record the per-channel standard deviation and range of a reference set.

        They are the shift's units and the clamp when ``data_std`` and
        ``clamp`` are not given explicitly.

        Parameters
        ----------
        references : Tensor
            ``R x C x H x W`` reference images.

        Returns
        -------
        self
        """
        std, lo, hi = _channel_stats(references)
        self.data_std_ = std
        self.data_range_ = (lo, hi)
        return self

    def prior_map(self, inputs: Any, target: TargetType = None) -> Tensor:
        """The prior map for ``inputs`` (``B x C x H x W``), before ``scale`` and units.

        Parameters
        ----------
        inputs : Tensor
            Images, ``B x C x H x W`` (or a one-element tuple of them).
        target : int, sequence or Tensor, optional
            The class whose evidence a reduction reads (``BGMMPrior``'s
            ``reduction="evidence"``); None: the predicted class.

        Returns
        -------
        Tensor
            ``B x 1 x H x W``, in ``[0, 1]`` for the ``"paper"`` and
            ``"corrected"`` variants.
        """
        x = self._check_images(inputs)
        if x.shape[0] == 0:  # an empty batch: an empty map of the right shape, as torch does
            return x.new_zeros((0, 1) + tuple(x.shape[-2:]))
        feats, evid = self.features(x, target, evidence=self._needs_evidence)
        return self.map_from_features(feats, evid, x)

    def map_from_features(self, feats: Tensor, evidence: Optional[Tensor], inputs: Tensor) -> Tensor:
        """The map of :meth:`prior_map` from features already computed.

        E.g. features captured in the forward pass of a training step
        (:class:`~captum_prior.training.AttributionPriorTrainer`).

        Parameters
        ----------
        feats : Tensor
            ``B x C x h x w`` features of the prior's layer for ``inputs``.
        evidence : Tensor or None
            The Grad-CAM evidence ``B x h x w`` when the reduction needs it,
            else None.
        inputs : Tensor
            The ``B x C x H x W`` images (their size and device are used).

        Returns
        -------
        Tensor
            ``B x 1 x H x W``.
        """
        feats = feats.detach()
        maps = self._maps(feats, evidence)  # B x h' x w'
        if self.variant == "corrected":
            maps = orient_to_object(maps, feats)
        return resize(maps.unsqueeze(1).to(inputs.dtype), tuple(inputs.shape[-2:])).to(inputs.device)

    def shift_from_map(self, maps: Tensor, inputs: Tensor, references: Optional[Tensor] = None) -> Tensor:
        r"""The shift of :meth:`__call__` from a map of :meth:`prior_map`.

        Parameters
        ----------
        maps : Tensor
            ``B x 1 x H x W`` maps.
        inputs : Tensor
            The ``B x C x H x W`` images.
        references : Tensor, optional
            The reference set whose standard deviation gives the units.

        Returns
        -------
        Tensor
            ``maps * scale * units(inputs, references)``.
        """
        return maps * self.scale * self.units(inputs, references).to(device=inputs.device, dtype=inputs.dtype)

    def __call__(self, inputs: Any, target: TargetType = None, references: Optional[Tensor] = None) -> Tensor:
        r"""The shift :math:`p_{prior}` for ``inputs``.

        The map of :meth:`prior_map` times ``scale`` times the data's
        per-channel standard deviation :math:`\sigma_c`, i.e. ``scale`` is in
        units of the data. :math:`\sigma_c` is ``data_std`` if given, else
        that of ``references`` (the baselines, when called by
        :class:`~captum_prior.attr.DeepPriorExpectedGradients`), else the one
        recorded by :meth:`fit` / :meth:`set_reference_stats`, else that of
        ``inputs`` themselves.

        Parameters
        ----------
        inputs : Tensor
            ``B x C x H x W`` images.
        target : int, sequence or Tensor, optional
            Passed to :meth:`prior_map`.
        references : Tensor, optional
            The reference set (for the units).

        Returns
        -------
        Tensor
            ``B x 1 x H x W`` for one channel (or one ``data_std``), else
            ``B x C x H x W``.
        """
        x = self._check_images(inputs)
        if x.shape[0] == 0:  # an empty batch: an empty shift of the right shape
            return x.new_zeros((0, 1) + tuple(x.shape[-2:]))
        return self.shift_from_map(self.prior_map(x, target), x, references)

    def units(self, inputs: Tensor, references: Optional[Tensor] = None) -> Tensor:
        r"""The per-channel :math:`\sigma_c` that multiplies the map.

        Chosen as described in :meth:`__call__`.

        Parameters
        ----------
        inputs : Tensor
            The ``B x C x H x W`` images.
        references : Tensor, optional
            The reference set.

        Returns
        -------
        Tensor
            ``1 x C x 1 x 1`` or ``1 x 1 x 1 x 1``.
        """
        if self._data_std_t is not None:
            t = self._data_std_t
            if t.numel() not in (1, inputs.shape[1]):
                raise ValueError(
                    f"data_std has {t.numel()} values for inputs with {inputs.shape[1]} channels; "
                    "pass one value or one per channel"
                )
            return t.view(1, -1, *([1] * (inputs.dim() - 2))).to(inputs.dtype)
        if references is not None:
            std = self._reference_stats(references)[0]
        elif self.data_std_ is not None:
            std = self.data_std_
        else:
            std = _channel_stats(inputs)[0]
        return torch.where(std > 0, std, torch.ones_like(std))

    def baseline_range(self, references: Optional[Tensor] = None) -> Optional[Tuple[Any, Any]]:
        """The ``(low, high)`` range that prior-shifted baselines are clamped to.

        Parameters
        ----------
        references : Tensor, optional
            The reference set.

        Returns
        -------
        tuple or None
            ``clamp`` if given; for ``clamp="auto"`` the per-channel min and
            max of ``references`` (or those recorded by :meth:`fit`); None for
            ``clamp=None``, with an
            :class:`~captum_prior.errors.InputRangeWarning` (baselines may then
            leave the data's range).
        """
        if self.clamp is None:
            warnings.warn(
                "clamp=None: prior-shifted baselines are not clamped and can leave the range "
                "of the data (e.g. negative pixel values); pass clamp='auto' or (low, high)",
                InputRangeWarning, stacklevel=3,
            )
            return None
        if isinstance(self.clamp, str):  # "auto"
            if references is not None:
                _, lo, hi = self._reference_stats(references)
                return lo, hi
            return self.data_range_
        return tuple(self.clamp)  # type: ignore[return-value]

    def _reference_stats(self, references: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """:func:`_channel_stats` of ``references``, reused while the same,
        unmodified tensor is passed again (:meth:`units` and
        :meth:`baseline_range` both need them on every attribution call)."""
        cached = getattr(self, "_ref_cache", None)
        if cached is not None and cached[0]() is references and cached[1] == references._version:
            return cached[2]
        stats = _channel_stats(references)
        self._ref_cache = (weakref.ref(references), references._version, stats)
        return stats

    def _check_images(self, inputs: Any) -> Tensor:
        if isinstance(inputs, tuple):
            if len(inputs) != 1:
                raise ValueError("image priors take one image tensor, got a tuple of "
                                 f"{len(inputs)}; pass a prior per input as a tuple yourself")
            inputs = inputs[0]
        (x,), _ = as_tensor_tuple(inputs, "inputs")
        if x.dim() != 4:
            raise ValueError(f"image priors need N x C x H x W inputs, got {tuple(x.shape)}")
        return x

    # -- helpers for subclasses -----------------------------------------
    def _rows(self, feats: Tensor) -> Tensor:
        """Per-image rows: ``B x (h*w) x C`` (eq. 10/15) or, for
        ``variant="reference_code"``, the released code's ``B x (C*h) x w``
        reshape of the feature tensor."""
        b, c, h, w = feats.shape
        if self.variant != "reference_code":
            return feats.flatten(2).transpose(1, 2)
        return feats.reshape(b, c * h, w)

    def _row_dim(self, feats: Tensor) -> int:
        return feats.shape[3] if self.variant == "reference_code" else feats.shape[1]

    def _grid(self, feats: Tensor) -> Tuple[int, int]:
        """Shape of the map before upsampling."""
        b, c, h, w = feats.shape
        return (c * h, w) if self.variant == "reference_code" else (h, w)

    def _maps(self, feats: Tensor, evid: Optional[Tensor]) -> Tensor:
        raise NotImplementedError

    def _fit_rows(self, rows: Tensor) -> Any:
        raise NotImplementedError


def gradcam_evidence(score: Tensor, feats: Tensor, retain_graph: bool = False) -> Tensor:
    """Grad-CAM evidence ``B x h x w`` (Selvaraju et al., 2017).

    The ReLU of the feature map ``feats`` weighted by the spatial mean of the
    gradient of ``score`` (one value per example) with respect to it.

    Parameters
    ----------
    score : Tensor
        ``B`` scores, with a graph to ``feats``.
    feats : Tensor
        ``B x C x h x w`` features.
    retain_graph : bool, optional
        Keep the graph for another backward. Default: False

    Returns
    -------
    Tensor
        ``B x h x w``, detached.
    """
    (g,) = torch.autograd.grad(score.sum(), feats, retain_graph=retain_graph)
    w = g.mean(dim=(2, 3), keepdim=True)  # Grad-CAM channel weights
    return torch.relu((w * feats).sum(1)).detach()


def minmax(v: Tensor, dim: int = -1) -> Tensor:
    """Min-max normalise along ``dim`` to ``[0, 1]`` (a constant row maps to 0).

    Examples
    --------
    >>> import torch
    >>> minmax(torch.tensor([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]]))
    tensor([[0.0000, 1.0000, 0.5000],
            [0.0000, 0.0000, 0.0000]])
    """
    lo = v.amin(dim, keepdim=True)
    hi = v.amax(dim, keepdim=True)
    rng = hi - lo
    return torch.where(rng > 0, (v - lo) / torch.where(rng > 0, rng, torch.ones_like(rng)), torch.zeros_like(v))


def orient_to_object(maps: Tensor, feats: Tensor) -> Tensor:
    r"""Orient each ``[0, 1]`` map so that it is high on the object.

    The map of a density has no inherent sign: a per-image Gaussian is
    highest on the positions that are most *typical* of the image, the
    background whenever it covers most of the frame.  Definition used here
    (label-free, no gradient): the object is where the layer responds, so a
    map whose Pearson correlation with the feature energy
    :math:`\lVert F_{:, i, j} \rVert_2` over the positions is negative is
    replaced by ``1 - map``.

    Parameters
    ----------
    maps : Tensor
        ``B x h x w`` maps in ``[0, 1]``.
    feats : Tensor
        ``B x C x h x w`` features the maps were computed from.  Maps on
        another grid are returned unchanged.

    Returns
    -------
    Tensor
        ``B x h x w``: each map, or ``1 - map`` where it anti-correlates with
        the feature energy.

    Examples
    --------
    >>> import torch
    >>> feats = torch.zeros(1, 2, 2, 2)
    >>> feats[0, :, 0, 0] = 3.0  # the layer responds at the top-left position
    >>> maps = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])  # high on the rest
    >>> orient_to_object(maps, feats)
    tensor([[[1., 0.],
             [0., 0.]]])
    """
    if maps.shape[-2:] != feats.shape[-2:]:
        return maps
    energy = feats.detach().to(maps.dtype).norm(dim=1).flatten(1)
    m = maps.flatten(1)
    mc = m - m.mean(1, keepdim=True)
    ec = energy - energy.mean(1, keepdim=True)
    corr = (mc * ec).sum(1)
    flip = (corr < 0).view(-1, 1, 1)
    return torch.where(flip, 1 - maps, maps)
