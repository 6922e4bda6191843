"""Insertion and deletion curves and their areas (RISE, Petsiuk et al. 2018).

The protocol of the path-attribution paper (Akhtar & Jalwana, ICML 2023,
§5 "insertion − deletion AUC") and of DeepPrior-EG's Table 4, with the
defaults of RISE's reference evaluation (Petsiuk et al., BMVC 2018).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

from captum_prior._batching import forward_rows
from captum_prior._compat import TargetType, TensorOrTupleOfTensorsGeneric
from captum_prior._image import gaussian_blur
from captum_prior._validation import check_choice, check_float, check_int
from captum_prior.metrics._perturbation import (
    UnitLayout,
    broadcast_fill,
    format_inputs_attributions,
    make_runner,
    progress_bar,
    rank_units,
    resolve_chunk_size,
    trapezoid,
)

SUBSTRATES = ("zero", "blur", "mean")
MODES = ("both", "insertion", "deletion")

SubstrateType = Union[str, float, Tensor, Tuple[Tensor, ...], Callable[[Tensor], Tensor]]


class InsertionDeletionResult(NamedTuple):
    r"""Per-example results of :func:`insertion_deletion`.

    Attributes
    ----------
    insertion : Tensor or None
        insertion AUC per example, shape ``(N,)``.
    deletion : Tensor or None
        deletion AUC per example, shape ``(N,)``.
    difference : Tensor or None
        ``insertion - deletion`` per example (the headline metric of Akhtar
        & Jalwana 2023); None unless both curves were computed.
    insertion_curve : Tensor or None
        ``N x (n_steps + 1)`` scores, only with ``return_curves=True``.
    deletion_curve : Tensor or None
        likewise.
    fractions : Tensor
        ``n_steps + 1`` fractions of units inserted or deleted at each point
        of the curves (from 0 to 1).
    insertion_substrate : str
        the insertion substrate used (``"auto"`` resolved to ``"blur"`` or
        ``"zero"``; ``"value"`` for a number or tensor, ``"callable"`` for a
        function); ``""`` if the insertion curve was not computed.
    deletion_substrate : str
        likewise for deletion.
    """

    insertion: Optional[Tensor]
    deletion: Optional[Tensor]
    difference: Optional[Tensor]
    insertion_curve: Optional[Tensor]
    deletion_curve: Optional[Tensor]
    fractions: Tensor
    insertion_substrate: str = ""
    deletion_substrate: str = ""


def _substrate_name(value: Any) -> str:
    if isinstance(value, str):
        return value
    if callable(value) and not isinstance(value, (Tensor, tuple)):
        return "callable"
    return "value"


def _substrate(
    value: SubstrateType,
    inputs: Tuple[Tensor, ...],
    layout: UnitLayout,
    name: str,
    blur_sigma: float,
    blur_kernel_size: int,
) -> Tuple[Tensor, ...]:
    """The fully perturbed version of each input tensor (``N x shape``)."""
    if isinstance(value, str):
        check_choice(value, name, SUBSTRATES)
    if callable(value) and not isinstance(value, (str, Tensor)):
        out = []
        for i, x in enumerate(inputs):
            s = value(x)
            if not isinstance(s, Tensor) or tuple(s.shape) != tuple(x.shape):
                raise ValueError(
                    f"{name}(inputs[{i}]) must return a Tensor of the inputs' shape "
                    f"{tuple(x.shape)}, got "
                    f"{tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__}"
                )
            out.append(s.detach().to(device=x.device, dtype=x.dtype))
        return tuple(out)
    if isinstance(value, tuple):
        if len(value) != len(inputs):
            raise ValueError(
                f"{name} has {len(value)} tensors but inputs has {len(inputs)}"
            )
        return tuple(
            broadcast_fill(v, x, f"{name}[{i}]") for i, (v, x) in enumerate(zip(value, inputs, strict=True))
        )
    out = []
    for i, (x, cd) in enumerate(zip(inputs, layout.channel_dims, strict=True)):
        if value == "zero":
            out.append(torch.zeros_like(x))
        elif value == "blur":
            if x.dim() != 4 or cd != 1:
                raise ValueError(
                    f"{name}='blur' needs N x C x H x W image inputs, but inputs[{i}] "
                    f"has shape {tuple(x.shape)}; use 'zero', 'mean' or a Tensor"
                )
            out.append(gaussian_blur(x, blur_sigma, blur_kernel_size))
        elif value == "mean":
            dims = tuple(d for d in range(1, x.dim()) if d != cd)
            out.append(x.mean(dim=dims, keepdim=True).expand_as(x).clone())
        else:
            out.append(broadcast_fill(value, x, name))
    return tuple(out)


def insertion_deletion(
    forward_func: Callable[..., Tensor],
    inputs: TensorOrTupleOfTensorsGeneric,
    attributions: TensorOrTupleOfTensorsGeneric,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    n_steps: Optional[int] = None,
    pixels_per_step: Optional[int] = None,
    mode: str = "both",
    insertion_substrate: SubstrateType = "auto",
    deletion_substrate: SubstrateType = "zero",
    score: str = "probability",
    blur_sigma: float = 5.0,
    blur_kernel_size: int = 11,
    channel_dim: Union[int, str, None] = "auto",
    return_curves: bool = False,
    show_progress: bool = False,
) -> InsertionDeletionResult:
    r"""Insertion and deletion AUCs of attributions (RISE's causal metrics).

    Units (pixels of ``N x C x H x W`` images, with the attribution summed over
    the channels; scalar entries of any other input) are ranked by attribution,
    largest first (ties in unit order).  The *deletion* curve replaces the
    top-ranked units of the input by the deletion substrate, ``pixels_per_step``
    more at each step; the *insertion* curve starts from the insertion
    substrate and puts the top-ranked units of the input back.  At each point
    the model's ``score`` is recorded; the AUC is the trapezoid area under the
    curve over the fraction of units changed (``[0, 1]``), so AUCs of
    probabilities lie in ``[0, 1]``.

    Defaults follow RISE's reference evaluation (``eclique/RISE``,
    ``evaluation.py``): deletion towards a zero substrate *in
    the model's input space* (RISE's zeros are in normalised space, the
    ImageNet-mean grey; pass ``deletion_substrate=<tensor>`` to reproduce that
    for a model taking ``[0, 1]`` pixels), insertion from a Gaussian blur with
    kernel 11 and σ 5, ``W`` pixels per step for ``H x W`` images (RISE's step
    224 for 224 x 224), softmax probability of the target.  RISE's AUC
    ``(Σ s − s₀/2 − s_n/2)/n`` is the trapezoid rule on the uniform grid used
    here; where the last step is partial, the actual fractions are used.

    Batching: all rows (perturbed copies) of all curves of all examples are
    built lazily, ``max_examples_per_batch`` at a time, and go through the
    model in ``ceil(rows / max_examples_per_batch)`` forward calls, where
    ``rows = N * (2 * n_steps + 1)`` for ``mode="both"`` (the unperturbed input
    is shared by the last insertion and first deletion points).

    Parameters
    ----------
    forward_func : Callable
        the model, returning ``N x C`` outputs (or ``N`` scores with
        ``score="logit"``).
    inputs : Tensor or tuple of Tensor
        the explained examples.
    attributions : Tensor or tuple of Tensor
        one per input tensor, of its shape, or ``N x 1 x H x W`` for images
        (a map shared by all channels).
    target : int, tuple, Tensor or list, optional
        Captum target, the class whose score is tracked (RISE tracks the
        top-1 class of the unperturbed input: pass ``model(x).argmax(1)``).
        Ignored for ``score="max_logit"``. Default: None
    additional_forward_args : Any, optional
        passed to ``forward_func`` after the inputs; per-example tensors are
        sliced per row. Default: None
    max_examples_per_batch : int, optional
        rows per forward call. None takes as many as fit in 32 MiB of
        perturbed input. Default: None
    n_steps : int, optional
        number of steps of each curve (the curve has ``n_steps + 1``
        points); exclusive with ``pixels_per_step``. Default: None
    pixels_per_step : int, optional
        units changed per step. If neither is given: the image width for
        image inputs (RISE), else ``n_steps = min(U, 100)`` for ``U`` units.
        Default: None
    mode : str, optional
        ``"both"``, ``"insertion"`` or ``"deletion"``. Default: ``"both"``
    insertion_substrate : str, number, Tensor, tuple or Callable, optional
        the start of the insertion curve: ``"blur"``, ``"zero"``, ``"mean"``
        (per-example, per-channel mean), a number, a tensor broadcastable to
        the inputs, or a function ``x -> substrate``; ``"auto"`` is
        ``"blur"`` for image inputs and ``"zero"`` otherwise. Default:
        ``"auto"``
    deletion_substrate : same types, optional
        what deleted units become. Default: ``"zero"``
    score : str, optional
        ``"probability"`` (softmax, then target), ``"logit"`` (target
        output) or ``"max_logit"`` (largest output). Default:
        ``"probability"``
    blur_sigma : float, optional
        σ of the blur substrate. Default: 5.0
    blur_kernel_size : int, optional
        odd kernel length of the blur. Default: 11
    channel_dim : int, str or None, optional
        dimension summed into one unit; ``"auto"`` is 1 for 4-D inputs and
        none otherwise. Default: ``"auto"``
    return_curves : bool, optional
        also return the curves. Default: False
    show_progress : bool, optional
        progress bar over rows. Default: False

    Returns
    -------
    InsertionDeletionResult
        ``insertion``, ``deletion`` and ``difference`` (each ``(N,)``), the
        curves (``N x (n_steps + 1)``) when requested and the ``fractions``
        of the curve points.

    Raises
    ------
    ValueError
        Attributions of another shape than the inputs, inputs without
        features, both ``n_steps`` and ``pixels_per_step``, an unknown
        ``mode`` or ``score``, a non-positive ``blur_sigma``, or a target
        that does not fit the model's output.
    TypeError
        Inputs or attributions that are not tensors.

    References
    ----------
    V. Petsiuk, A. Das, K. Saenko, "RISE: Randomized Input Sampling for
    Explanation of Black-box Models", BMVC 2018.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    >>> x = torch.rand(2, 3, 8, 8)
    >>> attr = torch.rand(2, 3, 8, 8)
    >>> from captum_prior.metrics import insertion_deletion
    >>> res = insertion_deletion(model, x, attr, target=0, n_steps=4)
    >>> res.insertion.shape, res.deletion.shape
    (torch.Size([2]), torch.Size([2]))
    >>> bool(((res.insertion >= 0) & (res.insertion <= 1)).all())
    True
    """
    check_choice(mode, "mode", MODES)
    check_choice(score, "score", ("probability", "logit", "max_logit"))
    inputs_t, attrs, _ = format_inputs_attributions(inputs, attributions)
    layout = UnitLayout(inputs_t, channel_dim)
    n_units = layout.n_units
    if n_units == 0:
        raise ValueError("inputs have no features to insert or delete")
    blur_sigma = check_float(blur_sigma, "blur_sigma", 0.0, low_inclusive=False)
    blur_kernel_size = check_int(blur_kernel_size, "blur_kernel_size", 1)
    if n_steps is not None and pixels_per_step is not None:
        raise ValueError("pass either n_steps or pixels_per_step, not both")
    if n_steps is None and pixels_per_step is None and not layout.is_image:
        n_steps = min(n_units, 100)
    if n_steps is not None:
        n_steps = check_int(n_steps, "n_steps", 1)
        n_steps = min(n_steps, n_units)
        counts = [(k * n_units + n_steps - 1) // n_steps for k in range(n_steps + 1)]
    else:
        if pixels_per_step is None:
            pixels_per_step = inputs_t[0].shape[-1]
        step = check_int(pixels_per_step, "pixels_per_step", 1)
        n_steps = -(-n_units // step)
        counts = [min(k * step, n_units) for k in range(n_steps + 1)]
    chunk = resolve_chunk_size(max_examples_per_batch, inputs_t)

    device = inputs_t[0].device
    n = inputs_t[0].shape[0]
    counts_t = torch.tensor(counts, device=device)
    fractions = counts_t.double() / n_units
    rank = rank_units(layout.unit_scores(attrs))

    if isinstance(insertion_substrate, str) and insertion_substrate == "auto":
        insertion_substrate = "blur" if layout.is_image else "zero"
    do_del = mode in ("both", "deletion")
    do_ins = mode in ("both", "insertion")
    del_sub = (
        _substrate(deletion_substrate, inputs_t, layout, "deletion_substrate", blur_sigma, blur_kernel_size)
        if do_del
        else None
    )
    ins_sub = (
        _substrate(insertion_substrate, inputs_t, layout, "insertion_substrate", blur_sigma, blur_kernel_size)
        if do_ins
        else None
    )

    # Row table: (example, is_deletion, units changed). With both curves the
    # unperturbed input (deletion step 0 == insertion step n) is evaluated once.
    k_del = torch.arange(n_steps + 1, device=device) if do_del else torch.empty(0, dtype=torch.long, device=device)
    k_ins = (
        torch.arange(n_steps if do_del else n_steps + 1, device=device)
        if do_ins
        else torch.empty(0, dtype=torch.long, device=device)
    )
    per_ex_k = torch.cat([k_del, k_ins])
    per_ex_del = torch.cat(
        [torch.ones(len(k_del), dtype=torch.bool, device=device), torch.zeros(len(k_ins), dtype=torch.bool, device=device)]
    )
    rows_per_ex = len(per_ex_k)
    n_rows = n * rows_per_ex

    def make_rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
        r = torch.arange(sl.start, sl.stop, device=device)
        ex = r // rows_per_ex
        j = r % rows_per_ex
        is_del = per_ex_del[j]
        changed = rank[ex] < counts_t[per_ex_k[j]].unsqueeze(1)
        masks = layout.expand(changed)
        rows = []
        for t, x in enumerate(inputs_t):
            xe = x[ex]
            shape = (-1,) + (1,) * (x.dim() - 1)
            if del_sub is not None and ins_sub is not None:
                d = is_del.view(shape)
                on = torch.where(d, del_sub[t][ex], xe)
                off = torch.where(d, xe, ins_sub[t][ex])
            elif del_sub is not None:
                on, off = del_sub[t][ex], xe
            else:
                on, off = xe, ins_sub[t][ex]
            rows.append(torch.where(masks[t], on, off))
        return tuple(rows), ex

    runner = make_runner(forward_func, n, target, additional_forward_args, score)
    bar = progress_bar(show_progress, n_rows, "insertion/deletion")
    try:
        scores = forward_rows(runner, make_rows, n_rows, chunk, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    scores = scores.reshape(n, rows_per_ex).to(torch.float64)

    del_curve = ins_curve = None
    if do_del:
        del_curve = scores[:, : n_steps + 1]
    if do_ins:
        ins_curve = scores[:, len(k_del) :]
        if do_del:
            ins_curve = torch.cat([ins_curve, del_curve[:, :1]], dim=1)
    ins_auc = trapezoid(ins_curve, fractions) if ins_curve is not None else None
    del_auc = trapezoid(del_curve, fractions) if del_curve is not None else None
    diff = ins_auc - del_auc if (ins_auc is not None and del_auc is not None) else None
    dtype = inputs_t[0].dtype if inputs_t[0].is_floating_point() else torch.float32

    def cast(t: Optional[Tensor]) -> Optional[Tensor]:
        return None if t is None else t.to(dtype)

    return InsertionDeletionResult(
        insertion=cast(ins_auc),
        deletion=cast(del_auc),
        difference=cast(diff),
        insertion_curve=cast(ins_curve) if return_curves else None,
        deletion_curve=cast(del_curve) if return_curves else None,
        fractions=fractions.to(dtype),
        insertion_substrate=_substrate_name(insertion_substrate) if do_ins else "",
        deletion_substrate=_substrate_name(deletion_substrate) if do_del else "",
    )


class DiffIDResult(NamedTuple):
    r"""Per-example results of :func:`diff_id`.

    Attributes
    ----------
    insertion : Tensor
        mean over ratios of the insertion score, ``(N,)``.
    deletion : Tensor
        mean over ratios of the deletion score, ``(N,)``.
    difference : Tensor
        ``insertion - deletion`` (DiffID), ``(N,)``.
    insertion_curve : Tensor or None
        ``N x len(ratios)``, with ``return_curves=True``.
    deletion_curve : Tensor or None
        likewise.
    ratios : Tensor
        the ratios of pixels kept (insertion) or removed (deletion).
    """

    insertion: Tensor
    deletion: Tensor
    difference: Tensor
    insertion_curve: Optional[Tensor]
    deletion_curve: Optional[Tensor]
    ratios: Tensor


def diff_id(
    forward_func: Callable[..., Tensor],
    inputs: TensorOrTupleOfTensorsGeneric,
    attributions: TensorOrTupleOfTensorsGeneric,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    ratios: Tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    absolute: bool = True,
    channel_dim: Union[int, str, None] = "auto",
    return_curves: bool = False,
    show_progress: bool = False,
) -> DiffIDResult:
    r"""DiffID: the insertion/deletion variant of Yang, Akhtar et al.

    The alternative protocol of the same group's evaluator (``ypeiyu/LPI``
    and ``attribution_recalibration``, ``evaluator.py``):
    units are ranked by ``|attribution|`` summed over channels
    (``absolute=False`` ranks by the signed sum); at each ratio ``r`` the
    *insertion* input keeps the top ``r`` of the units and the *deletion*
    input removes them; the units not kept are filled with the per-channel
    mean of the kept ones (per example).  The score is the target logit of
    the perturbed input divided by that of the original input, and DiffID is
    the mean over ratios of insertion minus deletion.  A logit near zero
    makes the ratio unstable, as in the original; the function raises if an
    original target logit is exactly zero.

    Rows: ``N * (1 + 2 * len(ratios))``, ``max_examples_per_batch`` per
    forward call.

    Parameters
    ----------
    forward_func, inputs, attributions, target, additional_forward_args
        As :func:`insertion_deletion`.
    max_examples_per_batch, channel_dim, show_progress
        As :func:`insertion_deletion`.
    ratios : tuple of float, optional
        fractions in ``(0, 1)``. Default: 0.1, …, 0.9
    absolute : bool, optional
        rank by absolute attribution. Default: True
    return_curves : bool, optional
        also return the per-ratio scores. Default: False

    Returns
    -------
    DiffIDResult
        ``insertion``, ``deletion`` and their ``difference`` (DiffID) per
        example, and the per-ratio scores when requested.

    Raises
    ------
    ValueError
        Ratios outside ``(0, 1)``, attributions of the wrong shape, or an
        original target logit of exactly zero.

    References
    ----------
    P. Yang, N. Akhtar, Z. Wen, A. Mian, "Local Path Integration for
    Attribution", AAAI 2023 (the DiffID protocol of its released
    evaluator).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    >>> x = torch.rand(2, 3, 8, 8)
    >>> attr = torch.rand(2, 3, 8, 8)
    >>> from captum_prior.metrics import diff_id
    >>> res = diff_id(model, x, attr, target=0, ratios=(0.25, 0.5))
    >>> res.difference.shape
    torch.Size([2])
    """
    from captum_prior.metrics._perturbation import check_fractions

    inputs_t, attrs, _ = format_inputs_attributions(inputs, attributions)
    fr = check_fractions(ratios, "ratios")
    layout = UnitLayout(inputs_t, channel_dim)
    n_units = layout.n_units
    chunk = resolve_chunk_size(max_examples_per_batch, inputs_t)
    device = inputs_t[0].device
    n = inputs_t[0].shape[0]
    scores = layout.unit_scores(attrs)
    if absolute:
        scores = scores.abs()
    rank = rank_units(scores)
    counts = torch.tensor(
        [min(n_units - 1, max(1, int(round(float(r) * n_units)))) for r in fr], device=device
    )
    n_r = len(fr)
    per_ex = 1 + 2 * n_r

    def make_rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
        r = torch.arange(sl.start, sl.stop, device=device)
        ex = r // per_ex
        j = r % per_ex
        is_orig = j == 0
        is_ins = (j >= 1) & (j <= n_r)
        k = torch.where(is_ins, j - 1, (j - 1 - n_r).clamp(min=0))
        top = rank[ex] < counts[k].unsqueeze(1)
        kept = torch.where(is_ins.unsqueeze(1), top, ~top) | is_orig.unsqueeze(1)
        masks = layout.expand(kept)
        rows = []
        for m, x, cd in zip(masks, inputs_t, layout.channel_dims, strict=True):
            xe = x[ex]
            mf = m.to(xe.dtype).expand_as(xe)
            dims = tuple(d for d in range(1, xe.dim()) if d != cd)
            fill = (xe * mf).sum(dims, keepdim=True) / mf.sum(dims, keepdim=True).clamp(min=1)
            rows.append(torch.where(m, xe, fill.expand_as(xe)))
        return tuple(rows), ex

    runner = make_runner(forward_func, n, target, additional_forward_args, "logit")
    bar = progress_bar(show_progress, n * per_ex, "DiffID")
    try:
        out = forward_rows(runner, make_rows, n * per_ex, chunk, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    out = out.reshape(n, per_ex).to(torch.float64)
    orig = out[:, :1]
    if bool((orig == 0).any()):
        raise ValueError(
            "DiffID divides by the original target logit, which is 0 for some "
            "example; use insertion_deletion instead"
        )
    ins = out[:, 1 : 1 + n_r] / orig
    dele = out[:, 1 + n_r :] / orig
    dtype = inputs_t[0].dtype if inputs_t[0].is_floating_point() else torch.float32
    return DiffIDResult(
        insertion=ins.mean(1).to(dtype),
        deletion=dele.mean(1).to(dtype),
        difference=(ins - dele).mean(1).to(dtype),
        insertion_curve=ins.to(dtype) if return_curves else None,
        deletion_curve=dele.to(dtype) if return_curves else None,
        ratios=fr.to(dtype),
    )
