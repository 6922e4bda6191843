"""ROAD: Remove And Debias (Rong et al., ICML 2022)."""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from captum_prior._batching import RowRunner, forward_rows
from captum_prior._compat import TargetType, TensorOrTupleOfTensorsGeneric
from captum_prior._random import GeneratorArg, check_generator, randint
from captum_prior._validation import check_choice, check_float, check_model_output
from captum_prior.metrics._masking import noisy_linear_imputation
from captum_prior.metrics._perturbation import (
    UnitLayout,
    check_fractions,
    format_inputs_attributions,
    progress_bar,
    rank_units,
    resolve_chunk_size,
)

ORDERS = ("morf", "lerf")

#: The removal fractions of the authors' experiments (their released configurations).
PAPER_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)


class RoadResult(NamedTuple):
    r"""Per-example results of :func:`road` (a field is None if its order was
    not requested).

    Attributes
    ----------
    morf_accuracy : Tensor or None
        ``N x K``, 1 where the model's top class on the imputed image is the
        target, after removing the ``fractions[k]`` most relevant pixels;
        the paper's MoRF accuracy curve is its mean over examples.
    morf_probability : Tensor or None
        ``N x K`` softmax probability of the target on the same images.
    lerf_accuracy : Tensor or None
        likewise, removing the least relevant pixels first.
    lerf_probability : Tensor or None
        likewise.
    morf : Tensor or None
        ``(N,)`` mean of ``morf_probability`` over the fractions (lower is
        better: a faithful map removes the evidence first).
    lerf : Tensor or None
        ``(N,)`` mean of ``lerf_probability`` (higher is better).
    fractions : Tensor
        the ``K`` removal fractions.
    target : Tensor
        ``(N,)`` the class tracked for each example.
    """

    morf_accuracy: Optional[Tensor]
    morf_probability: Optional[Tensor]
    lerf_accuracy: Optional[Tensor]
    lerf_probability: Optional[Tensor]
    morf: Optional[Tensor]
    lerf: Optional[Tensor]
    fractions: Tensor
    target: Tensor


def _check_orders(order: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    orders = (order,) if isinstance(order, str) else tuple(order)
    if not orders:
        raise ValueError("order is empty; pass 'morf', 'lerf' or both")
    for o in orders:
        check_choice(o, "order", ORDERS)
    return tuple(o for o in ORDERS if o in orders)


def _check_class_target(target: TargetType) -> None:
    """ROAD tracks one class per example: reject the tuple forms of targets."""
    if isinstance(target, tuple) or (
        isinstance(target, list) and any(isinstance(t, tuple) for t in target)
    ):
        raise ValueError(
            "target must give one class index per example (an int, a Tensor or a "
            "list of ints) for ROAD, which scores class probabilities and accuracy; "
            f"got {target!r}"
        )
    if target is not None and not isinstance(target, (numbers.Integral, Tensor, list)):
        raise TypeError(
            "target must be None, an int, a Tensor or a list of ints, got "
            f"{type(target).__name__}"
        )


def _classes(target: TargetType, n: int, device: torch.device) -> Optional[Tensor]:
    """The target class of each example, ``(n,)`` (None for ``target=None``)."""
    if target is None:
        return None
    t = torch.as_tensor(target, device=device).reshape(-1).long()
    return t.expand(n) if t.numel() == 1 else t


def _removal_counts(fractions: Tensor, n_units: int) -> List[int]:
    """``floor(f * U)`` pixels per fraction (rounded to 9 digits first, so
    that e.g. 0.29 * 100 removes 29 pixels, not 28)."""
    return [int(math.floor(round(float(f) * n_units, 9))) for f in fractions]


def road(
    forward_func: Callable[..., Tensor],
    inputs: TensorOrTupleOfTensorsGeneric,
    attributions: TensorOrTupleOfTensorsGeneric,
    target: TargetType = None,
    additional_forward_args: Any = None,
    fractions: Sequence[float] = PAPER_FRACTIONS,
    order: Union[str, Sequence[str]] = ORDERS,
    noise: float = 0.01,
    generator: GeneratorArg = None,
    max_examples_per_batch: Optional[int] = None,
    show_progress: bool = False,
) -> RoadResult:
    r"""ROAD (Remove And Debias): accuracy and probability after removing
    pixels by noisy linear imputation.

    Pixels are ranked by their attribution summed over the channels.  At each
    removal fraction :math:`p` the :math:`\lfloor pHW \rfloor` most relevant
    pixels (*MoRF*) or least relevant pixels (*LeRF*) of every ``H x W``
    image are removed and replaced by the *noisy linear imputation* of the
    paper: the values :math:`v_i` of the removed pixels solve, per image and
    for every channel,

    .. math::

        v_i = \frac{\sum_{j \in \mathcal N(i)} w_{ij} u_j}{\sum_{j \in \mathcal N(i)} w_{ij}},
        \qquad u_j = \begin{cases} v_j & j \text{ removed} \\ x_j & j \text{ kept}\end{cases}

    over the 8-neighbourhood :math:`\mathcal N(i)` inside the image, with
    :math:`w_{ij} = 1/6` for the four direct neighbours and :math:`1/12` for
    the four diagonal ones; then :math:`\tilde x_i = v_i + \varepsilon_i`,
    :math:`\varepsilon_i \sim \mathcal N(0, \sigma^2)`, :math:`\sigma` =
    ``noise`` (0.01 in the paper).  The imputed image goes through the model
    unchanged (no retraining), and ROAD records whether its top class is the
    target (accuracy) and the softmax probability of the target.  A faithful
    attribution makes the MoRF curve fall fast and the LeRF curve stay high.

    The linear equations of all removed pixels of one image form one sparse
    symmetric positive-definite system, solved for all channels with one
    factorisation; the systems of all images and fractions in a chunk of
    rows are stacked block-diagonally and factorised together (a banded
    Cholesky for narrow images; otherwise a sparse LU with a minimum-degree
    ordering and no pivoting, which the positive-definite matrix allows and
    which keeps the fill-in low), in float64 on the CPU; the model runs on the inputs' device through the package's chunked
    forward helper, ``max_examples_per_batch`` imputed images per call.

    Where this departs from the authors' code, and why:

    - ties in the attribution are broken by pixel order (deterministic),
      where the authors add a small random jitter to the map;
    - imputation and noise act on the inputs as the model receives them; the
      authors impute ``[0, 1]`` pixels before normalising.  The weighted mean
      commutes with a per-channel ``(x - mean) / std``, so only the noise
      scale differs: for normalised inputs pass ``noise = 0.01 / std`` to
      reproduce their noise level;
    - LeRF at fraction :math:`p` removes the :math:`p` least relevant
      pixels, so both curves share one x-axis (the authors' code keeps the
      :math:`p` most relevant pixels instead, i.e. our :math:`1 - p`);
    - accuracy and probability refer to one class, ``target`` (the authors
      score accuracy against the labels and probability against the model's
      prediction): pass the labels for their accuracy, or ``None`` for the
      model's own prediction on the unperturbed image;
    - with a tuple of image inputs the pixels of all tensors are ranked
      together; a tensor whose every pixel is removed has no neighbour to
      impute from and becomes zero plus the noise.

    Parameters
    ----------
    forward_func : Callable
        The model, returning ``N x C`` class scores (logits; a softmax is
        taken for the probability).
    inputs : Tensor or tuple of Tensor
        ``N x C x H x W`` images.
    attributions : Tensor or tuple of Tensor
        Of the inputs' shape, or ``N x 1 x H x W`` (one map for all channels).
    target : int, Tensor or list of int, optional
        The class tracked per example; None takes the model's top class on
        the unperturbed inputs (one extra forward row per example).
        Default: None
    additional_forward_args : Any, optional
        Passed to ``forward_func`` after the inputs; per-example tensors are
        sliced per row. Default: None
    fractions : sequence of float, optional
        Removal fractions in ``(0, 1)``. Default: the authors' 0.1, 0.2, 0.3,
        0.4, 0.5, 0.7, 0.9
    order : str or sequence of str, optional
        ``"morf"``, ``"lerf"`` or both. Default: both
    noise : float, optional
        Standard deviation σ of the imputation noise, ``>= 0`` (0 gives the
        plain linear imputation). Default: 0.01
    generator : torch.Generator or list of torch.Generator, optional
        Source of the noise; one generator per example makes each example's
        result independent of the rest of the batch. Default: None (torch's
        global generator)
    max_examples_per_batch : int, optional
        Imputed images per forward call; None sizes chunks from the model's
        activations. Default: None
    show_progress : bool, optional
        Progress bar over rows. Default: False

    Returns
    -------
    RoadResult
        Per-example accuracy and probability curves (``N x K``) for each
        order, their per-example means ``morf`` and ``lerf`` over the
        fractions, the ``fractions`` and the ``target`` classes.

    Raises
    ------
    ValueError
        Inputs that are not ``N x C x H x W`` images, attributions of another
        shape, fractions outside ``(0, 1)``, an unknown ``order``, a negative
        ``noise``, a target with one entry per output dimension, a target out
        of range, or a model that does not return ``N x C`` scores.
    TypeError
        Inputs that are not floating-point tensors, or a target, noise or
        generator of the wrong type.

    Notes
    -----
    Rows: ``N * (len(order) * K + [target is None])``.  The imputation costs
    one banded or sparse factorisation per chunk of rows, shared by the
    channels; the forward passes are those of any removal metric.

    References
    ----------
    Y. Rong, T. Leemann, V. Borisov, G. Kasneci, E. Kasneci, "A Consistent
    and Efficient Evaluation Strategy for Attribution Methods", ICML 2022.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    >>> x = torch.rand(2, 3, 8, 8)
    >>> attr = torch.rand(2, 3, 8, 8)
    >>> from captum_prior.metrics import road
    >>> res = road(model, x, attr, target=0, fractions=[0.2, 0.5],
    ...            generator=torch.Generator().manual_seed(0))
    >>> res.morf_accuracy.shape  # N x K; its mean over examples is the paper's curve
    torch.Size([2, 2])
    >>> res.morf.shape, res.lerf.shape
    (torch.Size([2]), torch.Size([2]))
    """
    inputs_t, attrs, _ = format_inputs_attributions(inputs, attributions)
    layout = UnitLayout(inputs_t, "auto")
    if not layout.is_image:
        shapes = ", ".join(str(tuple(t.shape)) for t in inputs_t)
        raise ValueError(
            f"road needs N x C x H x W image inputs, got inputs of shape {shapes}; "
            "add the channel dimension (e.g. x.unsqueeze(1)) for single-channel images"
        )
    fr = check_fractions(fractions, "fractions")
    orders = _check_orders(order)
    noise = check_float(noise, "noise", 0.0)
    _check_class_target(target)
    chunk = resolve_chunk_size(max_examples_per_batch, inputs_t)
    n = inputs_t[0].shape[0]
    gens = check_generator(generator, n)
    device = inputs_t[0].device

    n_units = layout.n_units
    counts = torch.tensor(_removal_counts(fr, n_units), device=device)
    rank = rank_units(layout.unit_scores(attrs))  # N x U, 0 = most relevant
    k = len(fr)
    with_orig = target is None
    # rows of one example: [unperturbed], then per order, per fraction
    per_ex = int(with_orig) + len(orders) * k
    n_rows = n * per_ex
    j_order = torch.full((per_ex,), -1, dtype=torch.long, device=device)
    j_count = torch.zeros(per_ex, dtype=torch.long, device=device)
    for oi, o in enumerate(orders):
        sl = slice(int(with_orig) + oi * k, int(with_orig) + (oi + 1) * k)
        j_order[sl] = ORDERS.index(o)
        j_count[sl] = counts
    seeds = None
    if noise > 0 and n_rows:  # one seed per row, drawn before any chunk
        seeds = randint(2**62, gens, (n, per_ex), device=device).reshape(-1).tolist()

    def make_rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
        r = torch.arange(sl.start, sl.stop, device=device)
        ex = r // per_ex
        j = r % per_ex
        c = j_count[j].unsqueeze(1)
        rk = rank[ex]
        morf = (j_order[j] == 0).unsqueeze(1)
        lerf = (j_order[j] == 1).unsqueeze(1)
        removed = (morf & (rk < c)) | (lerf & (rk >= n_units - c))  # rows x U
        masks = layout.expand(removed)
        row_gens = (
            None if seeds is None
            else [torch.Generator().manual_seed(int(s)) for s in seeds[sl]]
        )
        rows = []
        for x, m in zip(inputs_t, masks, strict=True):
            m = m[:, 0]  # rows x H x W
            xe = x[ex]
            full = m.flatten(1).all(1) if m.numel() else torch.zeros(0, dtype=torch.bool)
            if bool(full.any()):  # nothing left to impute from: zero (+ noise)
                xe = torch.where(full.view(-1, 1, 1, 1), torch.zeros_like(xe), xe)
                m = m & ~full.view(-1, 1, 1)
                xe = _noise_only(xe, full, noise, row_gens)
            rows.append(noisy_linear_imputation(xe, m, noise, row_gens))
        return tuple(rows), ex

    # target=None is ROAD's documented default (the model's prediction), so the
    # runner's check that None fits the output is skipped then
    runner = RowRunner(_class_scores(forward_func), n, target, additional_forward_args,
                       validate=target is not None)
    bar = progress_bar(show_progress, n_rows, "ROAD")
    try:
        out = forward_rows(runner, make_rows, n_rows, chunk, raw=True, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    out = out.reshape(n, per_ex, out.shape[-1])
    classes = _classes(target, n, out.device)
    if classes is None:
        classes = out[:, 0].argmax(1)
    prob = F.softmax(out.to(torch.float64), dim=2).gather(
        2, classes.view(n, 1, 1).expand(n, per_ex, 1)
    )[..., 0]
    acc = (out.argmax(2) == classes.view(n, 1)).to(torch.float64)
    dtype = inputs_t[0].dtype
    fields = {}
    for o in ORDERS:
        if o not in orders:
            fields[o] = (None, None, None)
            continue
        pos = orders.index(o)
        sl = slice(int(with_orig) + pos * k, int(with_orig) + (pos + 1) * k)
        p = prob[:, sl].to(dtype)
        fields[o] = (acc[:, sl].to(dtype), p, prob[:, sl].mean(1).to(dtype))
    return RoadResult(
        morf_accuracy=fields["morf"][0],
        morf_probability=fields["morf"][1],
        lerf_accuracy=fields["lerf"][0],
        lerf_probability=fields["lerf"][1],
        morf=fields["morf"][2],
        lerf=fields["lerf"][2],
        fractions=fr.to(dtype),
        target=classes.to(device),
    )


def _class_scores(forward_func: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``forward_func`` checked to return ``N x C`` class scores (before the
    target is checked against them)."""

    def scores(*args: Any) -> Tensor:
        out = check_model_output(forward_func(*args), args[0].shape[0])
        if out.dim() != 2:
            raise ValueError(
                "road needs a model returning N x C class scores (it takes a softmax "
                f"over them), but forward_func returned shape {tuple(out.shape)}"
            )
        return out

    scores.__wrapped__ = forward_func  # type: ignore[attr-defined]  # messages name the model
    return scores


def _noise_only(
    x: Tensor, rows: Tensor, noise: float, gens: Optional[List[torch.Generator]]
) -> Tensor:
    """Add the imputation noise to the (zeroed) images of ``rows``."""
    if noise <= 0:
        return x
    out = x.clone()
    for i in torch.nonzero(rows).flatten().tolist():
        g = None if gens is None else gens[i]
        eps = torch.randn(x.shape[1:], generator=g, dtype=torch.float64)
        out[i] = (noise * eps).to(out)
    return out
