"""Shape-EG: binary object masks as the prior (Guo & Gong, 2025, §5.1)."""

from __future__ import annotations

from typing import Any, Union

import numpy as np
import torch
from torch import Tensor

from captum_prior._compat import TargetType
from captum_prior._image import resize
from captum_prior._validation import as_tensor_tuple, check_finite, check_float


class MaskPrior:
    r"""Shape prior for Shape-EG: :math:`p_{prior}` is a binary object mask
    (Guo & Gong, 2025, §5.1).

    Shape-EG subtracts an object mask from the references, so the path starts
    ``scale`` below the reference on the object and at the reference
    elsewhere: attributions on the object are amplified. The paper released
    no code for it; the mask is read as values in ``[0, 1]`` and resized
    (nearest neighbour) to the input size when it differs.

    Parameters
    ----------
    masks : Tensor or numpy.ndarray
        ``H x W``, ``N x H x W`` or ``N x 1 x H x W`` masks: boolean, integer
        ``{0, 1}``, floating-point in ``[0, 1]``, or ``uint8`` ``{0, 255}``
        images (divided by 255; exactly ``{0, 255}`` in another dtype is read
        the same way). ``N`` must be 1 (one mask for every image) or the
        number of explained images, in the same order.
    scale : float, optional
        Multiplier of the mask. Default: 1.0

    Raises
    ------
    TypeError
        ``masks`` is not a Tensor or array, or is complex.
    ValueError
        Values outside those above (e.g. a ``{0, 2}`` mask, a float mask
        above 1, NaN), or a wrong number of dimensions.

    References
    ----------
    Guo and Gong, "Enhancing neural network interpretability through deep
    prior-guided expected gradients", preprint, 2025.

    Examples
    --------
    >>> import torch
    >>> from captum_prior.priors import MaskPrior
    >>> mask = torch.zeros(4, 4, dtype=torch.bool)
    >>> mask[1:3, 1:3] = True
    >>> p = MaskPrior(mask, scale=0.5)(torch.rand(2, 3, 8, 8))
    >>> p.shape, p.unique().tolist()
    (torch.Size([1, 1, 8, 8]), [0.0, 0.5])
    """

    def __init__(self, masks: Union[Tensor, np.ndarray], scale: float = 1.0) -> None:
        if isinstance(masks, np.ndarray):
            masks = torch.from_numpy(masks)
        if not isinstance(masks, Tensor):
            raise TypeError(f"masks must be a Tensor or numpy array, got {type(masks).__name__}")
        m = self._normalise(masks)
        if m.dim() == 2:
            m = m[None, None]
        elif m.dim() == 3:
            m = m[:, None]
        elif m.dim() != 4:
            raise ValueError(f"masks must be H x W, N x H x W or N x 1 x H x W, got {tuple(m.shape)}")
        self.masks = m
        self.scale = check_float(scale, "scale", low=0.0)

    @staticmethod
    def _normalise(masks: Tensor) -> Tensor:
        """The mask as float in [0, 1]; rejects anything ambiguous."""
        if masks.dtype == torch.bool:
            return masks.to(torch.float32)
        if masks.is_complex():
            raise TypeError(f"masks must be real, got {masks.dtype}")
        values = set(torch.unique(masks).tolist()) if masks.numel() else set()
        if values <= {0, 255} and 255 in values:  # an 8-bit image (any dtype)
            return masks.to(torch.float32) / 255.0
        if masks.is_floating_point():
            m = masks.to(torch.float32)
            check_finite(m, "masks")
            if m.numel() and (m.min() < 0 or m.max() > 1):
                raise ValueError(
                    f"masks must hold values in [0, 1] (a {masks.dtype} mask), got "
                    f"[{float(m.min()):g}, {float(m.max()):g}]; pass a bool or {{0, 1}} "
                    "mask, or a uint8 {0, 255} image"
                )
            return m
        if values <= {0, 1}:
            return masks.to(torch.float32)
        shown = sorted(values)[:6]
        raise ValueError(
            f"masks must hold values in [0, 1] ({{0, 1}} for integer masks, or {{0, 255}} "
            f"for uint8 images), got {masks.dtype} values {shown}; convert it, e.g. "
            "masks > 0"
        )

    def __call__(self, inputs: Any, target: TargetType = None) -> Tensor:
        """The mask for ``inputs`` times ``scale``.

        Parameters
        ----------
        inputs : Tensor
            ``N x C x H x W`` images (or a tuple whose first element they are).
        target : optional
            Ignored (priors are called with the target).

        Returns
        -------
        Tensor
            ``N x 1 x H x W`` (``1 x 1 x H x W`` for one mask, which
            broadcasts over the images), on the inputs' device and dtype.

        Raises
        ------
        ValueError
            Inputs that are not 4-D, or a number of masks that is neither 1
            nor ``N``.
        """
        if isinstance(inputs, tuple):
            inputs = inputs[0]
        (x,), _ = as_tensor_tuple(inputs, "inputs")
        if x.dim() != 4:
            raise ValueError(f"MaskPrior needs N x C x H x W inputs, got {tuple(x.shape)}")
        m = self.masks
        if m.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"MaskPrior holds {m.shape[0]} masks for {x.shape[0]} images; pass one "
                "mask, or one per explained image"
            )
        if tuple(m.shape[-2:]) != tuple(x.shape[-2:]):
            m = resize(m, tuple(x.shape[-2:]), mode="nearest")
        return (m * self.scale).to(device=x.device, dtype=x.dtype)
