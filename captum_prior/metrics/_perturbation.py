"""Shared machinery of the perturbation metrics.

Every metric in :mod:`captum_prior.metrics` does the same three things:

1. turn the attributions into one score per *unit* (a pixel of an image with
   its channels summed, or a single scalar feature of any other input);
2. build many perturbed copies ("rows") of each example, each defined by a
   boolean mask over the units, lazily chunk by chunk;
3. push the rows through the model with :func:`captum_prior._batching.forward_rows`
   (the one chunked forward helper), reducing each row to one score.

This module holds steps 1 and 3 and the input checks; the metric modules hold
the row definitions.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from captum_prior._batching import RowRunner
from captum_prior._compat import TargetType
from captum_prior._validation import (
    as_tensor_tuple,
    check_choice,
    check_finite,
    check_int,
    check_model_output,
    check_real_sequence,
)

SCORES = ("probability", "logit", "max_logit")

#: Bytes of perturbed *input* built per chunk when ``max_examples_per_batch``
#: is None (32 MiB: ~55 rows of 3 x 224 x 224 float32, ~10 000 rows of 28 x 28).
DEFAULT_CHUNK_BYTES = 1 << 25


class UnitLayout:
    """How the input tensors map to units (pixels or scalar features).

    A tensor with a channel dimension ``cd`` has one unit per position of its
    other (non-batch) dimensions, covering all its channels; any other tensor
    has one unit per scalar entry.  Units of a tuple of inputs are numbered
    tensor after tensor.

    Parameters
    ----------
    inputs : tuple of Tensor
        the formatted inputs.
    channel_dim : int, str or None
        ``"auto"`` (dimension 1 of 4-D ``N x C x H x W`` tensors, none
        otherwise), ``None`` (every scalar is a unit) or a dimension index
        ``>= 1``.
    """

    def __init__(self, inputs: Tuple[Tensor, ...], channel_dim: Union[int, str, None]) -> None:
        if channel_dim is not None and channel_dim != "auto":
            if isinstance(channel_dim, bool) or not isinstance(channel_dim, int):
                raise TypeError(
                    "channel_dim must be 'auto', None or an int dimension index, "
                    f"got {channel_dim!r}"
                )
        self.channel_dims = []
        self.unit_shapes = []
        for i, t in enumerate(inputs):
            if channel_dim == "auto":
                cd = 1 if t.dim() == 4 else None
            elif channel_dim is None:
                cd = None
            else:
                cd = int(channel_dim)
                if not 1 <= cd < t.dim():
                    raise ValueError(
                        f"channel_dim={cd} is not a non-batch dimension of inputs[{i}] "
                        f"with shape {tuple(t.shape)}; use 1..{t.dim() - 1} or None"
                    )
            shape = list(t.shape[1:])
            if cd is not None:
                del shape[cd - 1]
            self.channel_dims.append(cd)
            self.unit_shapes.append(tuple(shape))
        self.sizes = [int(torch.Size(s).numel()) for s in self.unit_shapes]
        self.n_units = sum(self.sizes)
        self.shapes = [tuple(t.shape[1:]) for t in inputs]

    @property
    def is_image(self) -> bool:
        """True when every input tensor is ``N x C x H x W`` with channels summed."""
        return all(cd == 1 and len(s) == 3 for cd, s in zip(self.channel_dims, self.shapes, strict=True))

    def unit_scores(self, attributions: Tuple[Tensor, ...]) -> Tensor:
        """Attribution per unit (summed over the channel dimension), ``N x U``."""
        parts = []
        for a, cd in zip(attributions, self.channel_dims, strict=True):
            if cd is not None:
                a = a.sum(dim=cd)
            parts.append(a.reshape(a.shape[0], a.shape[1:].numel()))
        return torch.cat(parts, dim=1)

    def expand(self, unit_mask: Tensor) -> Tuple[Tensor, ...]:
        """Split an ``R x U`` unit mask into per-tensor masks broadcastable to
        the rows (``R x shape`` with the channel dimension of size 1)."""
        out = []
        start = 0
        for size, ushape, cd in zip(self.sizes, self.unit_shapes, self.channel_dims, strict=True):
            m = unit_mask[:, start : start + size].reshape((unit_mask.shape[0],) + ushape)
            if cd is not None:
                m = m.unsqueeze(cd)
            out.append(m)
            start += size
        return tuple(out)


def format_inputs_attributions(
    inputs: Any, attributions: Any
) -> Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...], bool]:
    """Check ``inputs`` and ``attributions`` and return both as tuples.

    Each attribution tensor must have the shape of its input tensor, or that
    shape with a channel dimension of size 1 (a saliency map shared by all
    channels, e.g. an upsampled Grad-CAM). It is moved to the input's device.
    """
    inputs_t, is_tuple = as_tensor_tuple(inputs, "inputs")
    if isinstance(attributions, tuple) != is_tuple:
        raise ValueError(
            "attributions must have the structure of inputs: a Tensor for a Tensor "
            "input, a tuple of the same length for a tuple input"
        )
    attrs = attributions if is_tuple else (attributions,)
    if len(attrs) != len(inputs_t):
        raise ValueError(
            f"attributions has {len(attrs)} tensors but inputs has {len(inputs_t)}; "
            "pass one attribution tensor per input tensor"
        )
    out = []
    for i, (a, x) in enumerate(zip(attrs, inputs_t, strict=True)):
        label = f"attributions[{i}]" if is_tuple else "attributions"
        if not isinstance(a, Tensor):
            raise TypeError(f"{label} must be a torch.Tensor, got {type(a).__name__}")
        ok = tuple(a.shape) == tuple(x.shape)
        if not ok and a.dim() == x.dim() and x.dim() >= 3 and a.shape[1] == 1:
            ok = tuple(a.shape[2:]) == tuple(x.shape[2:]) and a.shape[0] == x.shape[0]
        if not ok:
            raise ValueError(
                f"{label} has shape {tuple(a.shape)} but the inputs have shape "
                f"{tuple(x.shape)}; pass one attribution per input entry (or, for "
                "images, an N x 1 x H x W map shared by all channels)"
            )
        if a.is_complex():
            raise TypeError(f"{label} must be a real tensor, got {a.dtype}")
        check_finite(a, label)
        dtype = a.dtype if a.is_floating_point() else torch.float32
        out.append(a.detach().to(device=x.device, dtype=dtype))
    return inputs_t, tuple(out), is_tuple


def resolve_chunk_size(max_examples_per_batch: Optional[int], inputs: Tuple[Tensor, ...]) -> Optional[int]:
    """Rows per forward call: ``max_examples_per_batch``, or None for the shared
    default (sized from the model's activations, :mod:`captum_prior._chunking`)."""
    if max_examples_per_batch is not None:
        return check_int(max_examples_per_batch, "max_examples_per_batch", 1)
    return None


def _checked(out: Any, inputs: Tuple[Tensor, ...]) -> Tensor:
    return check_model_output(out, inputs[0].shape[0])


def make_runner(
    forward_func: Callable[..., Tensor],
    n_examples: int,
    target: TargetType,
    additional_forward_args: Any,
    score: str,
) -> RowRunner:
    """A :class:`RowRunner` whose ``scores`` are the requested ``score`` of each row.

    ``"probability"``: softmax over the outputs, then the target's column;
    ``"logit"``: the target's raw output; ``"max_logit"``: the largest raw
    output (the target is ignored).
    """
    check_choice(score, "score", SCORES)
    if score == "logit":
        return RowRunner(forward_func, n_examples, target, additional_forward_args)

    if score == "probability":

        def prob(*args: Any) -> Tensor:
            out = _checked(forward_func(*args), args)
            if out.dim() != 2:
                raise ValueError(
                    "score='probability' needs an N x C output to take a softmax "
                    "over, but forward_func returns one value per example; use "
                    "score='logit'"
                )
            return F.softmax(out, dim=1)

        prob.__wrapped__ = forward_func  # type: ignore[attr-defined]  # error messages name the model
        return RowRunner(prob, n_examples, target, additional_forward_args)

    def max_logit(*args: Any) -> Tensor:
        out = _checked(forward_func(*args), args)
        return out if out.dim() == 1 else out.max(dim=1).values

    max_logit.__wrapped__ = forward_func  # type: ignore[attr-defined]
    return RowRunner(max_logit, n_examples, None, additional_forward_args)


def progress_bar(show_progress: bool, total: int, desc: str) -> Any:
    """A tqdm bar over rows when ``show_progress`` is set, else None."""
    if not show_progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row")


def rank_units(scores: Tensor, descending: bool = True) -> Tensor:
    """Position of each unit in the (stable) ordering, ``N x U`` (int32 when
    it fits, to halve the memory of large images).

    Ties keep the unit order, so the result is deterministic.
    """
    order = torch.argsort(scores, dim=1, descending=descending, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order))
    return rank.to(torch.int32) if scores.shape[1] < 2**31 - 1 else rank


def broadcast_fill(
    value: Any, x: Tensor, name: str
) -> Tensor:
    """A number or a tensor broadcastable to ``x`` (per example or shared)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.full_like(x, float(value))
    if isinstance(value, Tensor):
        check_finite(value, name)
        v = value.to(device=x.device, dtype=x.dtype)
        if v.dim() == x.dim() - 1:
            v = v.unsqueeze(0)
        try:
            return torch.broadcast_to(v, x.shape)
        except RuntimeError:
            raise ValueError(
                f"{name} has shape {tuple(value.shape)}, which does not broadcast to "
                f"the inputs' shape {tuple(x.shape)}"
            ) from None
    raise TypeError(f"{name} must be a string, a number or a Tensor, got {type(value).__name__}")


def check_fractions(fractions: Sequence[float], name: str = "fractions") -> Tensor:
    """A non-empty list of numbers strictly inside (0, 1)."""
    vals = check_real_sequence(fractions, name, "numbers in (0, 1)")
    if not vals:
        raise ValueError(f"{name} is empty; pass at least one fraction in (0, 1)")
    for f in vals:
        if not 0.0 < f < 1.0:
            raise ValueError(f"{name} must lie strictly inside (0, 1), got {f}")
    return torch.tensor(vals, dtype=torch.float64)


class Curves(NamedTuple):
    """Scores of the perturbed inputs: ``values[i, k]`` at ``fractions[k]``."""

    fractions: Tensor
    values: Tensor


def trapezoid(values: Tensor, fractions: Tensor) -> Tensor:
    """Trapezoid area under ``values`` (``N x K``) over ``fractions`` (``K``)."""
    return torch.trapezoid(values, fractions.to(values), dim=-1)
