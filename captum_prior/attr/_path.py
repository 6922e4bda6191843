"""Pieces shared by the path methods: base class, baselines, Gaussian blur, and IDGI.

- :class:`PathAttribution`: the common base of the path classes (checked
  ``forward_func``, convergence delta, multiplies by inputs);
  :func:`check_path_args`, :func:`forward_points`, :func:`gradient_points`
  and :func:`finish_path` are the steps every ``attribute`` shares.
- :func:`format_baselines`: Captum's baseline forms as one start point per
  example and input tensor.
- :func:`scale_space`: separable Gaussian blurs, every row with its own
  width, and their derivatives with respect to the width (Blur IG's path),
  in batched matrix products.
- :func:`idgi_directions`, :class:`IDGIAccumulator` and
  :func:`idgi_fixed_paths`: the important-direction rule of IDGI (Yang et
  al., CVPR 2023), the one place it is implemented. Every path method's
  IDGI variant feeds its path points, in path order, to one of the two.
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
    """Base of the path classes.

    A path method integrates the gradient along a path times the path's
    steps, so it multiplies by (differences of) inputs and has a
    convergence delta: the attributions' sum minus the output change along
    the path.

    Parameters
    ----------
    forward_func : Callable
        The model, or any function returning ``N x C`` outputs (or ``N``
        scores).

    Raises
    ------
    TypeError
        If ``forward_func`` is not callable.

    Examples
    --------
    >>> import torch
    >>> from captum_prior.attr._path import PathAttribution
    >>> m = PathAttribution(torch.nn.Linear(3, 2))
    >>> m.has_convergence_delta(), m.multiplies_by_inputs
    (True, True)
    """

    def __init__(self, forward_func: Callable[..., Tensor]) -> None:
        if not callable(forward_func):
            raise TypeError(
                f"forward_func must be callable (a model or function), got "
                f"{type(forward_func).__name__}"
            )
        GradientAttribution.__init__(self, forward_func)

    def has_convergence_delta(self) -> bool:
        """True: the path methods return a convergence delta on request.

        Returns
        -------
        bool
            Always True.
        """
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        """True: the attributions are path integrals of gradient times step."""
        return True

    def attribute_future(self) -> Callable:
        """Not implemented for the path methods.

        Raises
        ------
        NotImplementedError
            Always.
        """
        raise NotImplementedError(
            f"attribute_future is not implemented for {type(self).__name__}"
        )


def check_path_args(
    inputs: Any, n_steps: Any, internal_batch_size: Any, return_convergence_delta: Any
) -> Tuple[Tuple[Tensor, ...], bool, int, Optional[int]]:
    """The checks every path method's ``attribute`` starts with.

    Parameters
    ----------
    inputs : Tensor or tuple of Tensor
        The user's inputs.
    n_steps : int
        Path steps, ``>= 1``.
    internal_batch_size : int or None
        Rows per model call; None: automatic.
    return_convergence_delta : bool
        Whether a delta is returned.

    Returns
    -------
    inputs : tuple of Tensor
        The input tensors, detached.
    is_tuple : bool
        Whether ``inputs`` was a tuple.
    n_steps : int
        The number of steps.
    chunk : int or None
        The chunk size.

    Raises
    ------
    TypeError, ValueError
        For inputs that are not floating-point tensors, non-integer or
        non-positive ``n_steps``/``internal_batch_size``, and a
        ``return_convergence_delta`` that is not a bool.

    Examples
    --------
    >>> xs, is_tuple, K, chunk = check_path_args(torch.rand(2, 3), 10, None, False)
    >>> len(xs), is_tuple, K, chunk
    (1, False, 10, None)
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
    """Scores of the rows ``pts`` without gradients, chunked.

    Parameters
    ----------
    runner : RowRunner
        The shared helper's runner; row ``i`` of every tensor of ``pts`` is
        its row ``i``.
    pts : sequence of Tensor
        One tensor per model input.
    chunk : int or None
        Rows per model call.
    raw : bool, optional
        Return the raw outputs instead of the target scores. Default: False.

    Returns
    -------
    Tensor
        Shape ``(rows,)`` (or the raw outputs, ``rows x ...``).

    Examples
    --------
    >>> from captum_prior._batching import RowRunner
    >>> lin = torch.nn.Linear(3, 2)
    >>> forward_points(RowRunner(lin, 4, target=1), (torch.rand(4, 3),), None).shape
    torch.Size([4])
    """
    ar = torch.arange(pts[0].shape[0], device=pts[0].device)
    return forward_rows(
        runner, lambda sl: (tuple(p[sl] for p in pts), ar[sl]), ar.shape[0], chunk, raw=raw
    )


def gradient_points(
    runner: RowRunner, pts: Sequence[Tensor], chunk: Optional[int]
) -> Iterator[Tuple[slice, Tuple[Tensor, ...], Tensor, Tuple[Tensor, ...], Tensor]]:
    """The shared helper's chunked forward and backward passes over the rows ``pts``.

    Parameters
    ----------
    runner : RowRunner
        The shared helper's runner; row ``i`` of every tensor of ``pts`` is
        its row ``i``.
    pts : sequence of Tensor
        One tensor per model input.
    chunk : int or None
        Rows per model call.

    Yields
    ------
    tuple
        ``(slice, rows, index, grads, scores)`` per chunk, as
        ``captum_prior._batching.gradient_rows``.

    Examples
    --------
    >>> from captum_prior._batching import RowRunner
    >>> lin = torch.nn.Linear(3, 2)
    >>> [g[0].shape for _s, _r, _i, g, _f in
    ...  gradient_points(RowRunner(lin, 4, target=0), (torch.rand(4, 3),), 3)]
    [torch.Size([3, 3]), torch.Size([1, 3])]
    """
    ar = torch.arange(pts[0].shape[0], device=pts[0].device)
    return gradient_rows(runner, lambda sl: (tuple(p[sl] for p in pts), ar[sl]), ar.shape[0], chunk)


def finish_path(
    is_tuple: bool,
    attributions: Tuple[Tensor, ...],
    return_convergence_delta: bool,
    output_change: Callable[[], Tensor],
) -> Any:
    """Format the attributions as the inputs were given and, if asked, add
    the convergence delta.

    Parameters
    ----------
    is_tuple : bool
        Whether the inputs were a tuple.
    attributions : tuple of Tensor
        One per input tensor.
    return_convergence_delta : bool
        Whether to add the delta.
    output_change : Callable
        Returns the output change along the path per example; only called
        for the delta (it may cost forward passes).

    Returns
    -------
    attributions : Tensor or tuple of Tensor
        As the inputs were given.
    delta : Tensor
        ``sum(attributions) - output_change()`` per example, shape ``(N,)``,
        with ``return_convergence_delta``.

    Examples
    --------
    >>> a = (torch.ones(2, 3),)
    >>> out, delta = finish_path(False, a, True, lambda: torch.tensor([3.0, 2.0]))
    >>> out.shape, delta.tolist()
    (torch.Size([2, 3]), [0.0, 1.0])
    """
    out = _format_output(is_tuple, attributions)
    if not return_convergence_delta:
        return out
    N = attributions[0].shape[0]
    s = sum(a.reshape(N, -1).sum(1) for a in attributions)
    return out, s - output_change().to(s.dtype)


# ------------------------------------------------------------------ baselines
def format_baselines(baselines: Any, xs: Tuple[Tensor, ...], inputs: Any) -> Tuple[Tensor, ...]:
    """One baseline per example: a tuple of tensors of the inputs' shapes.

    Parameters
    ----------
    baselines : None, number, Tensor, tuple or callable
        Captum's forms: ``None`` (zeros), a number, a tensor of one
        example's shape, of shape ``1 x ...`` or of the inputs' shape, a
        tuple of those (one per input tensor), or a callable returning one
        of them.
    xs : tuple of Tensor
        The input tensors.
    inputs : Any
        The inputs as the user gave them (passed to a callable baseline).

    Returns
    -------
    tuple of Tensor
        The baselines, expanded to the inputs' shapes.

    Raises
    ------
    TypeError
        For baselines that are neither numbers nor floating-point tensors.
    ValueError
        For a wrong number of baselines, shapes that do not broadcast, and
        non-finite values.

    Examples
    --------
    >>> x = torch.rand(2, 3)
    >>> [b.tolist() for b in format_baselines(0.5, (x,), x)]
    [[[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]]
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
    """Warn if the inputs lie far outside the model's known input range.

    The shared helper checks the first rows it evaluates; paths that start
    at a baseline check the inputs here.

    Parameters
    ----------
    forward_func : Callable
        The model; only models that declare an input range are checked.
    xs : tuple of Tensor
        The input tensors (the first is checked).

    Warns
    -----
    InputRangeWarning
        :class:`~captum_prior.errors.InputRangeWarning`, for inputs far
        outside the range.

    Examples
    --------
    >>> check_inputs_range(torch.nn.Linear(3, 2), (torch.rand(2, 3),))  # no range known
    """
    rng = expected_input_range(forward_func)
    if rng is not None and xs[0].numel():
        check_value_range(xs[0], rng[0], rng[1], "inputs/baselines", "the model")


# ---------------------------------------------------------------- Gaussian blur
def gaussian_kernels(sigmas: Tensor, size: int, truncate: float = 4.0) -> Tuple[Tensor, Tensor]:
    """1-D Gaussian kernels of the widths ``sigmas`` and their derivatives in sigma.

    As ``scipy.ndimage.gaussian_filter``: radius ``int(truncate * sigma +
    0.5)``, weights ``exp(-t^2 / (2 sigma^2))`` normalised to sum 1;
    ``sigma = 0`` is the identity. All kernels are computed at once, centred
    in rows of one common length; taps further than ``size - 1`` from the
    centre only ever meet the zero padding of a signal of length ``size``,
    so they are dropped after normalising (the result is unchanged).

    Parameters
    ----------
    sigmas : Tensor
        Widths, shape ``(S,)``, ``>= 0``.
    size : int
        Length of the signals the kernels will blur.
    truncate : float, optional
        Radius in widths. Default: 4.0 (scipy's).

    Returns
    -------
    kernels, derivatives : Tensor
        Shape ``(S, 2 * r + 1)``, float64, ``r`` the largest radius kept.

    Examples
    --------
    >>> k, dk = gaussian_kernels(torch.tensor([0.0, 1.0]), size=9)
    >>> k.shape, k[0, 4].item(), round(k[1].sum().item(), 12), abs(dk[1].sum().item()) < 1e-12
    (torch.Size([2, 9]), 1.0, 1.0, True)
    """
    sig = sigmas.detach().to(torch.float64)
    S = sig.shape[0]
    # int(truncate * sigma + 0.5) (a floor: the argument is positive)
    radius = torch.floor(truncate * sig + 0.5)
    r_max = int(radius.max()) if S else 0
    s = torch.where(sig > 0, sig, torch.ones_like(sig)).view(S, 1)
    t = torch.arange(-r_max, r_max + 1, dtype=torch.float64, device=sig.device).view(1, -1)
    w = torch.where(t.abs() <= radius.view(S, 1), torch.exp(-0.5 * (t / s) ** 2), 0.0)
    k = w / w.sum(1, keepdim=True)  # S x (2 r_max + 1); sigma = 0: one tap of 1
    t2 = t * t / s**3
    dk = k * (t2 - (k * t2).sum(1, keepdim=True))  # d k / d sigma of the normalised kernel
    keep = min(r_max, max(size - 1, 0))
    return k[:, r_max - keep : r_max + keep + 1], dk[:, r_max - keep : r_max + keep + 1]


def _toeplitz(k: Tensor, size: int) -> Tensor:
    """``S x size x size``: the matrices of zero-padded convolutions with the
    symmetric kernels ``k`` (``S x (2 r + 1)``), ``T[s, i, j] = k[s, j - i + r]``
    for ``|j - i| <= r``."""
    r = (k.shape[1] - 1) // 2
    i = torch.arange(size, device=k.device)
    d = i.view(1, -1) - i.view(-1, 1)
    T = k[:, (d + r).clamp(0, 2 * r)]
    if r < size - 1:
        T = T * (d.abs() <= r).to(k.dtype)
    return T


def blur_dims(x: Tensor) -> int:
    """How many trailing dimensions Blur IG blurs.

    Parameters
    ----------
    x : Tensor
        Rows ``R x ...``.

    Returns
    -------
    int
        Two (``H x W``) for inputs with four or more dimensions, else one
        (feature vectors, signals).

    Examples
    --------
    >>> blur_dims(torch.zeros(2, 3, 8, 8)), blur_dims(torch.zeros(2, 10))
    (2, 1)
    """
    return 2 if x.dim() >= 4 else 1


def _blur_layout(x: Tensor) -> Tuple[int, int, int, int]:
    """``(R, M, H, W)``: rows, channels (all dimensions between the first and
    the blurred ones), and the blurred height and width (``H = 1`` for one
    blurred dimension)."""
    R = x.shape[0]
    if blur_dims(x) == 2:
        H, W = x.shape[-2], x.shape[-1]
    else:
        H, W = 1, (x.shape[-1] if x.dim() >= 2 else 1)
    return R, math.prod(x.shape[1:]) // max(H * W, 1), H, W


def scale_space(x: Tensor, sigmas: Tensor, derivative: bool = False) -> Tensor:
    r"""Row ``r`` of ``x`` blurred with width ``sigmas[r]`` (or, with
    ``derivative``, the derivative of that blur with respect to the width).

    The Gaussian blur of :func:`blur_dims` trailing dimensions with zero
    padding (scipy's ``mode="constant"``), every row with its own width, in
    batched matrix products: for images ``L = T_h X T_w`` with the banded
    (Toeplitz) matrices of the 1-D kernels, and ``dL/dsigma = T_h' X T_w +
    T_h X T_w'`` with those of the kernels' derivatives. The kernels are
    cropped to the image, so the cost does not grow with the width.

    Parameters
    ----------
    x : Tensor
        Rows ``R x ...``.
    sigmas : Tensor
        One width per row, shape ``(R,)``, ``>= 0``.
    derivative : bool, optional
        Return ``dL/dsigma`` instead of ``L``. Default: False.

    Returns
    -------
    Tensor
        The shape and dtype of ``x``.

    Examples
    --------
    >>> img = torch.zeros(2, 1, 5, 5); img[:, 0, 2, 2] = 1.0
    >>> out = scale_space(img, torch.tensor([0.0, 1.0]))
    >>> bool((out[0] == img[0]).all()), [round(v, 4) for v in out[1, 0, 2].tolist()]
    (True, [0.0215, 0.0965, 0.1592, 0.0965, 0.0215])
    """
    R, M, H, W = _blur_layout(x)
    kw, dkw = (t.to(x.dtype) for t in gaussian_kernels(sigmas.to(x.device), W))
    Tw = _toeplitz(kw, W)  # R x W x W
    if H == 1:
        X = x.reshape(R, M, W)
        out = torch.bmm(X, _toeplitz(dkw, W) if derivative else Tw)
        return out.view(x.shape)
    if H == W:
        kh, dkh = kw, dkw
    else:
        kh, dkh = (t.to(x.dtype) for t in gaussian_kernels(sigmas.to(x.device), H))
    Th = Tw if H == W else _toeplitz(kh, H)  # R x H x H
    Xp = x.reshape(R, M, H, W).transpose(1, 2).reshape(R, H, M * W)  # H first
    if not derivative:
        A = torch.bmm(Th, Xp)  # blurred along H: R x H x (M W)
        out = torch.bmm(A.view(R, H * M, W), Tw)  # and along W
        return out.view(R, H, M, W).transpose(1, 2).reshape(x.shape)
    dTh = _toeplitz(dkh, H)
    dTw = dTh if H == W else _toeplitz(dkw, W)
    AA = torch.bmm(torch.cat([Th, dTh], 1), Xp)  # [T_h X; T_h' X]: R x 2H x (M W)
    A, dA = AA[:, :H].reshape(R, H * M, W), AA[:, H:].reshape(R, H * M, W)
    d = torch.bmm(A, dTw) + torch.bmm(dA, Tw)
    return d.view(R, H, M, W).transpose(1, 2).reshape(x.shape)


def scale_space_and_derivative(x: Tensor, sigmas: Tensor) -> Tuple[Tensor, Tensor]:
    """:func:`scale_space` and its derivative with respect to the width, together.

    Shares the blur along ``H`` between the two (five batched products of
    the image's size instead of six).

    Parameters
    ----------
    x : Tensor
        Rows ``R x ...``.
    sigmas : Tensor
        One width per row, shape ``(R,)``, ``>= 0``.

    Returns
    -------
    blurred, derivative : Tensor
        The shape and dtype of ``x``.

    Examples
    --------
    >>> x, s = torch.rand(3, 2, 6, 7), torch.tensor([0.0, 1.5, 4.0])
    >>> L, dL = scale_space_and_derivative(x, s)
    >>> torch.allclose(L, scale_space(x, s)), torch.allclose(dL, scale_space(x, s, True))
    (True, True)
    """
    R, M, H, W = _blur_layout(x)
    if H == 1:
        return scale_space(x, sigmas), scale_space(x, sigmas, derivative=True)
    kw, dkw = (t.to(x.dtype) for t in gaussian_kernels(sigmas.to(x.device), W))
    kh, dkh = (kw, dkw) if H == W else (
        t.to(x.dtype) for t in gaussian_kernels(sigmas.to(x.device), H))
    Tw, dTw = _toeplitz(kw, W), _toeplitz(dkw, W)
    Th, dTh = (Tw, dTw) if H == W else (_toeplitz(kh, H), _toeplitz(dkh, H))
    Xp = x.reshape(R, M, H, W).transpose(1, 2).reshape(R, H, M * W)
    AA = torch.bmm(torch.cat([Th, dTh], 1), Xp)  # [T_h X; T_h' X]: R x 2H x (M W)
    BB = torch.bmm(AA.view(R, 2 * H * M, W), Tw)  # [T_h X T_w; T_h' X T_w]
    d = torch.baddbmm(BB[:, H * M :], AA[:, :H].reshape(R, H * M, W), dTw)  # + T_h X T_w'

    def back(t: Tensor) -> Tensor:
        return t.reshape(R, H, M, W).transpose(1, 2).reshape(x.shape)

    return back(BB[:, : H * M]), back(d)


def gaussian_blur(x: Tensor, sigma: float, derivative: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    """Gaussian blur of width ``sigma`` of every row of ``x`` and, if
    ``derivative``, its derivative with respect to ``sigma``
    (:func:`scale_space` with one width for all rows).

    Parameters
    ----------
    x : Tensor
        Rows ``R x ...``.
    sigma : float
        The width, ``>= 0``.
    derivative : bool, optional
        Also return ``dL/dsigma``. Default: False.

    Returns
    -------
    blurred : Tensor
        The shape of ``x``.
    derivative : Tensor or None
        ``dL/dsigma`` if ``derivative``, else None.

    Examples
    --------
    >>> out, d = gaussian_blur(torch.ones(1, 1, 4, 4), 0.0, derivative=True)
    >>> bool((out == 1).all()), bool((d == 0).all())
    (True, True)
    """
    sig = torch.full((x.shape[0],), float(sigma), dtype=torch.float64, device=x.device)
    out = scale_space(x, sig)
    return out, (scale_space(x, sig, derivative=True) if derivative else None)


def sum_by_example(values: Tensor, start: int, n_examples: int) -> Tensor:
    """Sum rows by example, for rows numbered step-major.

    The rows are padded to whole blocks of ``n_examples`` and summed over
    blocks, so the order of the additions is fixed on every device (no
    atomic scatter).

    Parameters
    ----------
    values : Tensor
        Rows ``start, start + 1, ...``; row ``r`` belongs to example
        ``r % n_examples``.
    start : int
        The number of the first row.
    n_examples : int
        The number of examples.

    Returns
    -------
    Tensor
        ``n_examples x ...``.

    Examples
    --------
    >>> sum_by_example(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), 1, 2).tolist()
    [6.0, 9.0]
    """
    N = max(n_examples, 1)
    lead, R = start % N, values.shape[0]
    tail = (-(lead + R)) % N
    if lead or tail:
        pad = values.new_zeros((lead + R + tail,) + values.shape[1:])
        pad[lead : lead + R] = values
        values = pad
    return values.view((-1, N) + values.shape[1:]).sum(0)


# ---------------------------------------------------------------------- IDGI
def idgi_directions(grads: Tuple[Tensor, ...], dtype: torch.dtype) -> Tuple[Tensor, ...]:
    """IDGI's share of each feature in a step's output change, ``g_i^2 / ||g||^2``.

    Parameters
    ----------
    grads : tuple of Tensor
        The gradients of the rows, one ``R x ...`` tensor per input.
    dtype : torch.dtype
        The dtype of the result.

    Returns
    -------
    tuple of Tensor
        The shares, shaped as ``grads``; the norm runs over every feature of
        every input tensor; zero where the gradient vanishes.

    Examples
    --------
    >>> [u.tolist() for u in idgi_directions((torch.tensor([[3.0, 4.0], [0.0, 0.0]]),), torch.float64)]
    [[[0.36, 0.64], [0.0, 0.0]]]
    """
    sq = tuple(g.detach().to(dtype) ** 2 for g in grads)
    R = sq[0].shape[0]
    norm = sum(s.reshape(R, -1).sum(1) for s in sq)
    inv = torch.where(norm > 0, 1.0 / norm.where(norm > 0, torch.ones_like(norm)), 0.0)
    return tuple(s * inv.view((-1,) + (1,) * (s.dim() - 1)) for s in sq)


class IDGIAccumulator:
    r"""The important-direction rule of IDGI (Yang et al., CVPR 2023, Alg. 1)
    along paths whose points arrive one at a time.

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

    Parameters
    ----------
    shapes : tuple of tuple of int
        The attribution's shapes, one per input tensor; the first dimension
        is the number of slots (a slot is one path of one example).
    device : torch.device or str
        Where the sums are kept.
    dtype : torch.dtype
        Their dtype.

    Notes
    -----
    Points are fed with :meth:`add` in path order per slot; each call may
    hold any set of distinct slots. Paths whose points are known in advance
    use :func:`idgi_fixed_paths`, which applies the same rule a chunk of
    points at a time.

    References
    ----------
    R. Yang, B. Wang, M. Bilgic. IDGI: A Framework to Eliminate Explanation
    Noise from Integrated Gradients. CVPR 2023.

    Examples
    --------
    >>> acc = IDGIAccumulator(((1, 2),), "cpu", torch.float64)
    >>> s = torch.tensor([0])
    >>> acc.add(s, (torch.tensor([[1.0, 1.0]]),), torch.tensor([0.0]))
    >>> acc.add(s, (torch.tensor([[0.0, 2.0]]),), torch.tensor([3.0]))
    >>> acc.attr[0].tolist(), float(acc.last_f[0] - acc.first_f[0])
    ([[1.5, 1.5]], 3.0)
    """

    def __init__(self, shapes: Tuple[Tuple[int, ...], ...], device: Any, dtype: torch.dtype) -> None:
        n_slots = shapes[0][0]
        self.attr = tuple(torch.zeros(s, device=device, dtype=dtype) for s in shapes)
        self._last_u = tuple(torch.zeros(s, device=device, dtype=dtype) for s in shapes)
        self._last_f = torch.zeros(n_slots, device=device, dtype=dtype)
        self.first_f = torch.zeros(n_slots, device=device, dtype=dtype)
        self._seen = torch.zeros(n_slots, device=device, dtype=torch.bool)

    def add(self, slots: Tensor, grads: Tuple[Tensor, ...], f: Tensor) -> None:
        """Feed the next point of each of ``slots``: its gradients and score.

        Parameters
        ----------
        slots : Tensor
            Distinct slot indices, shape ``(S,)``.
        grads : tuple of Tensor
            The gradients at the points, one ``S x ...`` tensor per input.
        f : Tensor
            The scores at the points, shape ``(S,)``.
        """
        f = f.detach().to(self._last_f.dtype)
        u = idgi_directions(grads, self._last_f.dtype)
        prev = self._seen[slots]
        df = torch.where(prev, f - self._last_f[slots], 0.0)
        for a, lu, s in zip(self.attr, self._last_u, u):
            shape = (-1,) + (1,) * (s.dim() - 1)
            a.index_add_(0, slots, lu[slots] * df.view(shape))
            lu[slots] = s
        self.first_f[slots] = torch.where(prev, self.first_f[slots], f)
        self._last_f[slots] = f
        self._seen[slots] = True

    @property
    def last_f(self) -> Tensor:
        """The score at the latest point of each slot, shape ``(slots,)``."""
        return self._last_f


def idgi_fixed_paths(
    runner: RowRunner,
    point: Callable[[Tensor, Tensor], Tuple[Tensor, ...]],
    n_points: int,
    slot_example: Tensor,
    shapes: Tuple[Tuple[int, ...], ...],
    chunk: Optional[int],
) -> Tuple[Tuple[Tensor, ...], Tensor]:
    """IDGI (the rule of :class:`IDGIAccumulator`) along precomputed paths,
    through the shared chunked helper.

    Rows are point-major (row ``r`` is point ``r // S`` of slot ``r % S``),
    so each chunk continues every path where the last one stopped; each
    chunk's steps are credited at once, and memory is one chunk plus one
    gradient direction and score per slot.

    Parameters
    ----------
    runner : RowRunner
        The shared helper's runner, with one example per input example.
    point : Callable
        ``point(k, s)`` returns the ``k``-th points (``0 .. n_points - 1``,
        start to end) of the paths of slots ``s`` (two index tensors of one
        length), one tensor per model input.
    n_points : int
        Points per path, end points included.
    slot_example : Tensor
        The example of each slot, shape ``(S,)``.
    shapes : tuple of tuple of int
        The attribution's shapes per input, first dimension ``S``.
    chunk : int or None
        Rows per model call.

    Returns
    -------
    attributions : tuple of Tensor
        Per slot, float64, shapes ``shapes``.
    output_change : Tensor
        ``f(end) - f(start)`` per slot, shape ``(S,)``.

    Examples
    --------
    >>> from captum_prior._batching import RowRunner
    >>> lin = torch.nn.Linear(2, 1, bias=False)
    >>> x = torch.ones(1, 2)
    >>> line = lambda k, s: (k.view(-1, 1) / 4 * x[s],)  # 0, x/4, ..., x
    >>> attr, gap = idgi_fixed_paths(RowRunner(lin, 1, 0), line, 5, torch.arange(1),
    ...                              ((1, 2),), None)
    >>> torch.allclose(attr[0].sum(), gap.double()), torch.allclose(gap, lin(x)[:, 0].double())
    (True, True)
    """
    S = slot_example.shape[0]
    dev = slot_example.device
    dt = torch.float64
    attr = tuple(torch.zeros(s, device=dev, dtype=dt) for s in shapes)
    last_u = tuple(torch.zeros(s, device=dev, dtype=dt) for s in shapes)
    last_f = torch.zeros(S, device=dev, dtype=dt)
    first_f = torch.zeros(S, device=dev, dtype=dt)
    Sm = max(S, 1)

    def rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
        r = torch.arange(sl.start, sl.stop, device=dev)
        return point(r // Sm, r % Sm), slot_example[r % Sm]

    for sl, _rows, _idx, grads, scores in gradient_rows(runner, rows, n_points * S, chunk):
        a, R = sl.start, sl.stop - sl.start
        if R == 0:
            continue
        f = scores.detach().to(dt)
        u = idgi_directions(grads, dt)
        # the rows a - S .. b - 1: the latest point of every slot before the
        # chunk, then the chunk; row r's predecessor on its path is r - S
        rot = (a + torch.arange(S, device=dev)) % Sm
        ext_f = torch.cat([last_f[rot], f])
        r = torch.arange(a, a + R, device=dev)
        df = torch.where(r >= S, f - ext_f[:R], 0.0)  # the first point has no step
        for at, lu, uu in zip(attr, last_u, u):
            ext_u = torch.cat([lu[rot], uu])
            step = ext_u[:R] * df.view((-1,) + (1,) * (uu.dim() - 1))
            at += sum_by_example(step, a, S)
            lu[(a + R + torch.arange(S, device=dev)) % Sm] = ext_u[R:]
        first = r < S
        first_f[r[first]] = f[first]
        last_f[(a + R + torch.arange(S, device=dev)) % Sm] = ext_f[R:]
    return attr, last_f - first_f


def alpha_partition(nodes: Tensor) -> Tensor:
    """Points ``0 = a_0 < ... < a_J = 1`` of a straight path.

    Parameters
    ----------
    nodes : Tensor
        The quadrature nodes of the wrapped method, in ``[0, 1]``.

    Returns
    -------
    Tensor
        The sorted distinct nodes with both end points added.

    Examples
    --------
    >>> alpha_partition(torch.tensor([0.25, 0.75])).tolist()
    [0.0, 0.25, 0.75, 1.0]
    """
    ends = torch.tensor([0.0, 1.0], dtype=nodes.dtype, device=nodes.device)
    a = torch.unique(torch.cat([ends, nodes.clamp(0.0, 1.0)]))
    return a


def check_positive_float(value: Any, name: str) -> float:
    """A finite real number ``> 0``, as a float.

    Parameters
    ----------
    value : Any
        The user's value.
    name : str
        The argument's name, for the message.

    Returns
    -------
    float
        ``value``.

    Raises
    ------
    TypeError
        For anything but a finite real number.
    ValueError
        For values ``<= 0``.

    Examples
    --------
    >>> check_positive_float(2, "max_sigma")
    2.0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite real number, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return float(value)
