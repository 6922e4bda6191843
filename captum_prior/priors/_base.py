"""Shared machinery of the deep-feature priors (MGM and BGMM).

A deep-feature prior reads the feature map ``F`` (``B x C x h x w``) of one
layer of the model for each explained image, turns it into an ``h x w`` map,
and upsamples that map bilinearly to the input's ``H x W``. Subclasses
provide the density model (:meth:`_fit_rows`, :meth:`_map_from_rows`).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from captum_prior._batching import rows_target, select_output
from captum_prior._compat import TargetType
from captum_prior._features import capture, resolve_layer
from captum_prior._image import resize
from captum_prior._validation import (
    as_tensor_tuple,
    check_choice,
    check_float,
    check_int,
    check_target,
)

MODES = ("paper", "reference_code")


class DeepFeaturePrior:
    """Base class; see :class:`~captum_prior.priors.MGMPrior`."""

    #: whether the reduction needs Grad-CAM evidence (gradients of the target)
    _needs_evidence = False

    def __init__(
        self,
        model: nn.Module,
        layer: Union[str, nn.Module, None] = None,
        scale: float = 1.0,
        mode: str = "paper",
        batch_size: int = 64,
    ) -> None:
        self.model = model
        self.layer = resolve_layer(model, layer)
        self.scale = check_float(scale, "scale", low=0.0)
        self.mode = check_choice(mode, "mode", MODES)
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.fitted_: Optional[Any] = None

    # -- features -------------------------------------------------------
    def features(
        self, inputs: Tensor, target: TargetType = None, evidence: bool = False
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Layer features ``B x C x h x w`` (one forward per batch), and with
        ``evidence=True`` the Grad-CAM evidence map ``B x h x w`` of the target
        (predicted class if ``target`` is None). The model is left as found."""
        feats, evid = [], []
        n = inputs.shape[0]
        with capture(self.model, self.layer) as store:
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
                        score = select_output(out, t)
                        (g,) = torch.autograd.grad(score.sum(), f)
                        w = g.mean(dim=(2, 3), keepdim=True)  # Grad-CAM channel weights
                        evid.append(torch.relu((w * f).sum(1)).detach())
                feats.append(f.detach())
        return torch.cat(feats), (torch.cat(evid) if evidence else None)

    # -- public API -----------------------------------------------------
    def fit(self, reference_inputs: Tensor) -> "DeepFeaturePrior":
        """Fit the density once on the feature rows of ``reference_inputs``
        (all positions of all images), instead of per explained image.

        Returns self."""
        (x,), _ = as_tensor_tuple(reference_inputs, "reference_inputs")
        feats, _ = self.features(x)
        self.fitted_ = self._fit_rows(self._rows(feats).reshape(-1, self._row_dim(feats)))
        return self

    def __call__(self, inputs: Any, target: TargetType = None) -> Tensor:
        """The prior map ``B x 1 x H x W`` for images ``inputs`` (``B x C x H x W``),
        in ``[0, 1]`` times ``scale`` (``mode="paper"``)."""
        if isinstance(inputs, tuple):
            if len(inputs) != 1:
                raise ValueError("image priors take one image tensor, got a tuple of "
                                 f"{len(inputs)}; pass a prior per input as a tuple yourself")
            inputs = inputs[0]
        (x,), _ = as_tensor_tuple(inputs, "inputs")
        if x.dim() != 4:
            raise ValueError(f"image priors need N x C x H x W inputs, got {tuple(x.shape)}")
        feats, evid = self.features(x, target, evidence=self._needs_evidence)
        maps = self._maps(feats, evid)  # B x h' x w'
        maps = resize(maps.unsqueeze(1).to(x.dtype), tuple(x.shape[-2:]))
        return (maps * self.scale).to(x.device)

    # -- helpers for subclasses -----------------------------------------
    def _rows(self, feats: Tensor) -> Tensor:
        """Per-image rows: ``B x (h*w) x C`` (paper, eq. 10/15) or the released
        code's ``B x (C*h) x w`` reshape (methods.md §1.2)."""
        b, c, h, w = feats.shape
        if self.mode == "paper":
            return feats.flatten(2).transpose(1, 2)
        return feats.reshape(b, c * h, w)

    def _row_dim(self, feats: Tensor) -> int:
        return feats.shape[1] if self.mode == "paper" else feats.shape[3]

    def _grid(self, feats: Tensor) -> Tuple[int, int]:
        """Shape of the map before upsampling."""
        b, c, h, w = feats.shape
        return (h, w) if self.mode == "paper" else (c * h, w)

    def _maps(self, feats: Tensor, evid: Optional[Tensor]) -> Tensor:
        raise NotImplementedError

    def _fit_rows(self, rows: Tensor) -> Any:
        raise NotImplementedError


def minmax(v: Tensor, dim: int = -1) -> Tensor:
    """Min-max normalise along ``dim`` to ``[0, 1]`` (a constant row maps to 0)."""
    lo = v.amin(dim, keepdim=True)
    hi = v.amax(dim, keepdim=True)
    rng = hi - lo
    return torch.where(rng > 0, (v - lo) / torch.where(rng > 0, rng, torch.ones_like(rng)), torch.zeros_like(v))
