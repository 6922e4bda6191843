"""Pieces shared by the path methods: base class, baselines, Gaussian blur, and IDGI.

- :class:`PathAttribution`: the common base of the path classes (checked
  ``forward_func``, convergence delta, multiplies by inputs);
  :func:`check_path_args`, :func:`forward_points`, :func:`gradient_points`
  and :func:`finish_path` are the steps every ``attribute`` shares.
- :func:`format_baselines`: Captum's baseline forms as one start point per
  example and input tensor.
- :func:`gaussian_blur`: separable Gaussian blur and its derivative with
  respect to the width, in ``torch.nn.functional`` (Blur IG's path).
- :class:`IDGIAccumulator` and :func:`idgi_fixed_paths`: the important-direction
  rule of IDGI (Yang et al., CVPR 2023), the one place it is implemented.
  Every path method's IDGI variant feeds its path points, in path order, to an
  accumulator.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple

import torch
from captum.attr import GradientAttribution
from torch import Tensor

from captum_prior._batching import RowRunner, forward_rows, gradient_rows
from captum_prior._compat import _format_output
from captum_prior._validation import (
    as_tensor_tuple,
    check_finite,
    check_int,
    check_optional_int,
    check_value_range,
    expected_input_range,
    resolve_callable_baselines,
)


# ----------------------------------------------------------------- base class
class PathAttribution(GradientAttribution):
    """Base of the path classes: a path integral of gradients times the path's
    steps, so it multiplies by (differences of) inputs and has a
    convergence delta (the attributions' sum minus the output change along
    the path)."""

    def __init__(self, forward_func: Callable[..., Tensor]) -> None:
        if not callable(forward_func):
            raise TypeError(
                f"forward_func must be callable (a model or function), got "
                f"{type(forward_func).__name__}"
            )
        GradientAttribution.__init__(self, forward_func)

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return True

    def attribute_future(self) -> Callable:
        r"""Not implemented for the path methods."""
        raise NotImplementedError(
            f"attribute_future is not implemented for {type(self).__name__}"
        )


def check_path_args(
    inputs: Any, n_steps: Any, internal_batch_size: Any, return_convergence_delta: Any
) -> Tuple[Tuple[Tensor, ...], bool, int, Optional[int]]:
    """The checks every path method's ``attribute`` starts with.

    Returns the detached input tensors, whether ``inputs`` was a tuple, the
    number of steps (``>= 1``) and the chunk size (``None``: automatic).
    """
    xs, is_tuple = as_tensor_tuple(inputs, "inputs")
    K = check_int(n_steps, "n_steps", 1)
    chunk = check_optional_int(internal_batch_size, "internal_batch_size")
    if not isinstance(return_convergence_delta, bool):
        raise TypeError("return_convergence_delta must be True or False")
    return tuple(x.detach() for x in xs), is_tuple, K, chunk


def forward_points(
    runner: RowRunner, pts: Sequence[Tensor], chunk: Optional[int], raw: bool = False
) -> Tensor:
    """Scores (raw outputs with ``raw``) of the rows ``pts`` (row ``i`` of
    every tensor is runner row ``i``), without gradients, chunked."""
    ar = torch.arange(pts[0].shape[0], device=pts[0].device)
    return forward_rows(
        runner, lambda sl: (tuple(p[sl] for p in pts), ar[sl]), ar.shape[0], chunk, raw=raw
    )


def gradient_points(
    runner: RowRunner, pts: Sequence[Tensor], chunk: Optional[int]
) -> Iterator[Tuple[slice, Tuple[Tensor, ...], Tensor, Tuple[Tensor, ...], Tensor]]:
    """:func:`gradient_rows` over the rows ``pts`` (row ``i`` of every tensor
    is runner row ``i``)."""
    ar = torch.arange(pts[0].shape[0], device=pts[0].device)
    return gradient_rows(runner, lambda sl: (tuple(p[sl] for p in pts), ar[sl]), ar.shape[0], chunk)


def finish_path(
    is_tuple: bool,
    attributions: Tuple[Tensor, ...],
    return_convergence_delta: bool,
    output_change: Callable[[], Tensor],
) -> Any:
    """Format the attributions as the inputs were given and, if asked, add
    the convergence delta ``sum(attributions) - output_change()`` per example
    (``output_change`` is only called then: it may cost forward passes)."""
    out = _format_output(is_tuple, attributions)
    if not return_convergence_delta:
        return out
    N = attributions[0].shape[0]
    s = sum(a.reshape(N, -1).sum(1) for a in attributions)
    return out, s - output_change().to(s.dtype)


# ------------------------------------------------------------------ baselines
def format_baselines(baselines: Any, xs: Tuple[Tensor, ...], inputs: Any) -> Tuple[Tensor, ...]:
    """One baseline per example: a tuple of tensors of the inputs' shapes.

    Accepts Captum's forms: ``None`` (zeros), a number, a tensor of one
    example's shape, of shape ``1 x ...`` or of the inputs' shape, a tuple of
    those (one per input tensor), or a callable returning one of them.
    """
    baselines = resolve_callable_baselines(baselines, inputs)
    if baselines is None:
        return tuple(torch.zeros_like(x) for x in xs)
    items = baselines if isinstance(baselines, tuple) else (baselines,)
    if len(items) != len(xs):
        raise ValueError(
            f"baselines has {len(items)} entries but inputs has {len(xs)} tensors; "
            "pass one baseline per input tensor"
        )
    out = []
    for i, (b, x) in enumerate(zip(items, xs)):
        label = f"baselines[{i}]" if len(xs) > 1 else "baselines"
        if isinstance(b, numbers.Real) and not isinstance(b, bool):
            out.append(torch.full_like(x, float(b)))
            continue
        if not isinstance(b, Tensor):
            raise TypeError(
                f"{label} must be None, a number, a Tensor or a callable, got "
                f"{type(b).__name__}"
            )
        if not b.is_floating_point():
            raise TypeError(
                f"{label} must be a floating-point tensor, got {b.dtype}; convert "
                "it as you converted the inputs (e.g. .float() / 255 for 0..255 images)"
            )
        check_finite(b, label)
        b = b.to(device=x.device, dtype=x.dtype)
        if b.shape == x.shape[1:] or (
            b.dim() == x.dim() and b.shape[1:] == x.shape[1:] and b.shape[0] in (1, x.shape[0])
        ):
            out.append(b.expand_as(x).detach())
        else:
            raise ValueError(
                f"{label} has shape {tuple(b.shape)}; use a number, one example's "
                f"shape {tuple(x.shape[1:])}, 1 x {tuple(x.shape[1:])} or the inputs' "
                f"shape {tuple(x.shape)}"
            )
    return tuple(out)


def check_inputs_range(forward_func: Any, xs: Tuple[Tensor, ...]) -> None:
    """Warn (:class:`~captum_prior.errors.InputRangeWarning`) if the inputs lie
    far outside the model's known input range. The shared helper checks the
    first rows it evaluates; paths that start at a baseline check the inputs
    here."""
    rng = expected_input_range(forward_func)
    if rng is not None and xs[0].numel():
        check_value_range(xs[0], rng[0], rng[1], "inputs/baselines", "the model")


# ---------------------------------------------------------------- Gaussian blur
def gaussian_kernel(
    sigma: float, size: int, truncate: float = 4.0, dtype: torch.dtype = torch.float32,
    device: Any = None,
) -> Tuple[Tensor, Tensor]:
    """The 1-D Gaussian kernel of width ``sigma`` and its derivative in ``sigma``.

    As :func:`scipy.ndimage.gaussian_filter`: radius ``int(truncate * sigma +
    0.5)``, weights ``exp(-t^2 / (2 sigma^2))`` normalised to sum 1. Taps
    further than ``size - 1`` from the centre only ever meet the zero
    padding of a signal of length ``size``, so they are dropped after
    normalising (the result is unchanged). ``sigma = 0`` is the identity.
    """
    if sigma <= 0:
        one = torch.ones(1, dtype=torch.float64, device=device)
        return one.to(dtype), torch.zeros_like(one).to(dtype)
    r = int(truncate * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float64, device=device)
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    k = w / w.sum()
    t2 = t * t / sigma**3
    dk = k * (t2 - (k * t2).sum())  # d k / d sigma of the normalised kernel
    keep = min(r, max(size - 1, 0))
    k, dk = k[r - keep : r + keep + 1], dk[r - keep : r + keep + 1]
    return k.to(dtype), dk.to(dtype)


def blur_dims(x: Tensor) -> int:
    """How many trailing dimensions are blurred: two (``H x W``) for inputs
    with four or more dimensions, else one (feature vectors, signals)."""
    return 2 if x.dim() >= 4 else 1


def _toeplitz(k: Tensor, size: int) -> Tensor:
    """The ``size x size`` matrix of a zero-padded convolution with the
    symmetric kernel ``k`` (``T[i, j] = k[j - i + r]`` for ``|j - i| <= r``)."""
    r = (k.numel() - 1) // 2
    i = torch.arange(size, device=k.device)
    d = i.view(1, -1) - i.view(-1, 1)
    return torch.where(d.abs() <= r, k[(d + r).clamp(0, 2 * r)], torch.zeros((), dtype=k.dtype, device=k.device))


def gaussian_blur(x: Tensor, sigma: float, derivative: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    """Gaussian blur of width ``sigma`` of the trailing dimensions of ``x``
    (:func:`blur_dims`), zero padding (scipy's ``mode="constant"``), and, if
    ``derivative``, its derivative with respect to ``sigma``.

    The separable blur is two matrix products with the banded (Toeplitz)
    matrices of the 1-D kernel, ``T_h X T_w``: the kernel is cropped to the
    image, so the cost does not grow with ``sigma``.
    """
    nd = blur_dims(x)
    h, w = (x.shape[-2], x.shape[-1]) if nd == 2 else (1, x.shape[-1])
    kw, dkw = gaussian_kernel(sigma, w, dtype=x.dtype, device=x.device)
    Tw = _toeplitz(kw, w)
    if nd == 1:
        out = x @ Tw
        d = (x @ _toeplitz(dkw, w)) if derivative else None
        return out, d
    kh, dkh = gaussian_kernel(sigma, h, dtype=x.dtype, device=x.device)
    Th = _toeplitz(kh, h)
    rows = Th @ x  # blurred along H
    out = rows @ Tw
    d = None
    if derivative:
        d = rows @ _toeplitz(dkw, w) + (_toeplitz(dkh, h) @ x) @ Tw
    return out, d


# ---------------------------------------------------------------------- IDGI
class IDGIAccumulator:
    r"""The important-direction rule of IDGI (Yang et al., CVPR 2023, Alg. 1).

    For consecutive points ``x_k, x_{k+1}`` of one path, with gradient
    ``g_k = grad f(x_k)`` of the target score,

    ``A_i += g_{k,i}^2 / ||g_k||^2 * (f(x_{k+1}) - f(x_k))``,

    the output change of the step split over the features in proportion to
    the squared gradient: the projection of the step onto the gradient
    direction, which alone changes ``f`` to first order. The norm runs over
    every feature of every input tensor. Summed over a path the attributions
    telescope to ``f(end) - f(start)`` exactly; a step whose gradient is zero
    everywhere contributes nothing (its output change is lost, and shows in
    the convergence delta).

    Points are fed with :meth:`add` in path order per slot (a slot is one
    path of one example); each call may hold any set of distinct slots.
    """

    def __init__(self, shapes: Tuple[Tuple[int, ...], ...], device: Any, dtype: torch.dtype) -> None:
        n_slots = shapes[0][0]
        self.attr = tuple(torch.zeros(s, device=device, dtype=dtype) for s in shapes)
        self._last_u = tuple(torch.zeros(s, device=device, dtype=dtype) for s in shapes)
        self._last_f = torch.zeros(n_slots, device=device, dtype=dtype)
        self.first_f = torch.zeros(n_slots, device=device, dtype=dtype)
        self._seen = torch.zeros(n_slots, device=device, dtype=torch.bool)

    def add(self, slots: Tensor, grads: Tuple[Tensor, ...], f: Tensor) -> None:
        """Feed the next point of each of ``slots``: its gradients and score."""
        f = f.detach().to(self._last_f.dtype)
        sq = tuple(g.detach().to(a.dtype) ** 2 for g, a in zip(grads, self.attr))
        norm = sum(s.reshape(s.shape[0], -1).sum(1) for s in sq)
        inv = torch.where(norm > 0, 1.0 / norm.where(norm > 0, torch.ones_like(norm)), 0.0)
        prev = self._seen[slots]
        df = torch.where(prev, f - self._last_f[slots], 0.0)
        for a, lu, s in zip(self.attr, self._last_u, sq):
            shape = (-1,) + (1,) * (s.dim() - 1)
            a.index_add_(0, slots, lu[slots] * df.view(shape))
            lu[slots] = s * inv.view(shape)
        self.first_f[slots] = torch.where(prev, self.first_f[slots], f)
        self._last_f[slots] = f
        self._seen[slots] = True

    @property
    def last_f(self) -> Tensor:
        """The score at the latest point of each slot."""
        return self._last_f


def idgi_fixed_paths(
    runner: RowRunner,
    point: Callable[[Tensor, Tensor], Tuple[Tensor, ...]],
    n_points: int,
    slot_example: Tensor,
    shapes: Tuple[Tuple[int, ...], ...],
    chunk: Optional[int],
) -> Tuple[Tuple[Tensor, ...], Tensor]:
    """IDGI along precomputed paths, through the shared chunked helper.

    ``point(k, s)`` returns the ``k``-th point (``0 .. n_points - 1``, start to
    end) of the paths of slots ``s``; slot ``s`` belongs to example
    ``slot_example[s]``. Rows are point-major, so chunks walk every path in
    order and memory is one chunk plus one gradient per slot.

    Returns the per-slot attributions (shapes ``shapes``) and the output
    difference ``f(end) - f(start)`` of each slot.
    """
    S = slot_example.shape[0]
    acc = IDGIAccumulator(shapes, slot_example.device, torch.float64 if shapes else torch.float32)
    dev = slot_example.device

    def rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
        r = torch.arange(sl.start, sl.stop, device=dev)
        k, s = r // max(S, 1), r % max(S, 1)
        return point(k, s), slot_example[s]

    for sl, _rows, _idx, grads, scores in gradient_rows(runner, rows, n_points * S, chunk):
        r = torch.arange(sl.start, sl.stop, device=dev)
        k, s = r // max(S, 1), r % max(S, 1)
        for kk in torch.unique(k).tolist():
            m = k == kk
            acc.add(s[m], tuple(g[m] for g in grads), scores[m])
    return acc.attr, acc.last_f - acc.first_f


def alpha_partition(nodes: Tensor) -> Tensor:
    """Points ``0 = a_0 < ... < a_J = 1`` of a straight path: the quadrature
    nodes of the wrapped method with both end points added."""
    ends = torch.tensor([0.0, 1.0], dtype=nodes.dtype, device=nodes.device)
    a = torch.unique(torch.cat([ends, nodes.clamp(0.0, 1.0)]))
    return a


def check_positive_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite real number, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return float(value)
