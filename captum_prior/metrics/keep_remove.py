"""Keep/remove positive/negative/absolute mask metrics: KPM, KNM, KAM, RPM, RNM, RAM.

Two protocols:

- ``"image"``: the sequential-perturbation variant that produced DeepPrior-EG's
  Tables 1-3 (shap 0.43 ``benchmark/_sequential.py`` as modified in the
  authors' ``torchmetric.py``);
- ``"tabular"``: the original definitions of Lundberg et al. 2020 (``shap``'s
  ``benchmark/metrics.py`` and ``measures.py``) with mean imputation.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from captum_prior._batching import forward_rows
from captum_prior._compat import TargetType, TensorOrTupleOfTensorsGeneric
from captum_prior._image import gaussian_blur
from captum_prior._validation import check_choice, check_float, check_int
from captum_prior.errors import CaptumPriorWarning
from captum_prior.metrics._masking import inpaint_telea
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

METRICS = ("KPM", "KNM", "KAM", "RPM", "RNM", "RAM")
PROTOCOLS = ("auto", "image", "tabular")
MASKERS = ("inpaint_telea", "mean", "blur", "zero")
# metric -> (keep?, order: 0 positive, 1 negative, 2 absolute)
_SPEC = {
    "KPM": (True, 0),
    "KNM": (True, 1),
    "KAM": (True, 2),
    "RPM": (False, 0),
    "RNM": (False, 1),
    "RAM": (False, 2),
}


class KeepRemoveResult(NamedTuple):
    r"""Results of :func:`keep_remove` (a field is None if not requested).

    Attributes
    ----------
    KPM, KNM, KAM, RPM, RNM, RAM : Tensor or None
        per-example values, shape ``(N,)``; their mean is the dataset value
        of the papers. In the tabular protocol KAM and RAM are dataset-level
        (an R² across examples) and 0-d.
    curves : dict or None
        with ``return_curves=True``, metric name -> curve (``N x K``) at
        ``fractions``: the (sign-adjusted) score for the image protocol, the
        model score per feature count for the tabular one (R² for KAM/RAM,
        ``K``).
    fractions : Tensor
        x-axis of the curves, fractions of the units.
    masker : str
        the masker used (``"inpaint_telea"``, ``"mean"``, ``"blur"``,
        ``"zero"``, ``"value"`` for a number or tensor), or ``"baselines"``
        for the tabular protocol.
    protocol : str
        ``"image"`` or ``"tabular"``.
    """

    KPM: Optional[Tensor]
    KNM: Optional[Tensor]
    KAM: Optional[Tensor]
    RPM: Optional[Tensor]
    RNM: Optional[Tensor]
    RAM: Optional[Tensor]
    curves: Optional[Dict[str, Tensor]]
    fractions: Tensor
    masker: str
    protocol: str


def _intlogspace(n_units: int, count: int) -> Tensor:
    """``count`` log-spaced integer feature counts from 0 to ``n_units``
    (duplicates removed), as Lundberg et al.'s benchmark."""
    t = torch.linspace(0.0, 1.0, count, dtype=torch.float64)
    c = torch.round(n_units * (torch.pow(10.0, t) - 1.0) / 9.0).long()
    return torch.unique(c)


def keep_remove(
    forward_func: Callable[..., Tensor],
    inputs: TensorOrTupleOfTensorsGeneric,
    attributions: TensorOrTupleOfTensorsGeneric,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    metrics: Sequence[str] = METRICS,
    protocol: str = "auto",
    masker: Union[str, float, Tensor] = "inpaint_telea",
    percent: float = 0.01,
    score: Optional[str] = None,
    n_interp: int = 100,
    baselines: Union[None, float, Tensor, Tuple[Tensor, ...]] = None,
    labels: Optional[Tensor] = None,
    n_counts: int = 11,
    blur_sigma: float = 5.0,
    blur_kernel_size: int = 11,
    channel_dim: Union[int, str, None] = "auto",
    random_state: int = 0,
    return_curves: bool = False,
    show_progress: bool = False,
) -> KeepRemoveResult:
    r"""KPM, KNM, KAM, RPM, RNM and RAM of attributions.

    *Keep* metrics start from a fully masked input and reveal units in the
    order of the attributions; *remove* metrics start from the input and mask
    units in that order.  *Positive* orders go from the largest attribution
    down and flip only units with a positive attribution, *negative* orders go
    from the most negative up and flip only negative units, *absolute* orders
    go by ``|attribution|`` and flip every unit.

    **Image protocol** (the default for ``N x C x H x W``
    inputs). Units are pixels (attributions summed over channels; the
    authors' mean gives the same order).  Masked pixels are filled by
    ``masker``: OpenCV Telea inpainting with radius 3 (``"inpaint_telea"``;
    a fully masked image becomes its per-channel mean colour), the per-channel
    ``"mean"`` colour, a ``"blur"`` of the image, ``"zero"``, a number or a
    tensor.  The default, Telea (the authors' choice), uses OpenCV
    (``opencv-python-headless``, a dependency of the package).
    ``result.masker`` records the masker used.  Each step flips
    ``max(1, int(percent * U))`` pixels of ``U``; the recorded value is the
    ``score`` (default the maximum logit over all classes, as the authors'
    code), negated for remove metrics.  Each curve is a step function over
    the ``U + 1`` pixel counts (flat after the last same-signed pixel),
    interpolated onto ``n_interp`` points of ``[0, 1]``; the metric is
    ``sign · ∫₀¹ (y(t) − y(0)) dt`` (trapezoid), ``sign = −1`` for negative
    orders.  Per example; since the integral is linear, the mean over
    examples equals the paper's "area of the mean curve minus its start".

    **Tabular protocol** (the default otherwise). Units are
    scalar features; masked ones take ``baselines`` (default: the column mean
    of ``inputs``; pass the training-set means for Lundberg et al.'s
    protocol).  The attributions (times +1, −1, or absolute) get a fixed
    ``1e-6`` random jitter (``random_state``) to break ties; at each of
    ``n_counts`` log-spaced feature counts ``c`` from 0 to ``M`` the top
    ``c`` features are kept (others masked) or removed, capped for the
    signed variants at the number of features with a non-negative
    sign-adjusted attribution.  KPM/KNM/RPM/RNM integrate the model score
    over the counts, ``auc(counts, score) / M``, negated for KNM and RPM
    (shap's ``negate`` transform), per example.  KAM integrates the R²
    between the masked outputs and ``labels`` (default: the unmasked model
    outputs) across examples, RAM ``1 − R²``: dataset-level, 0-d tensors.

    Batching: every row of every curve goes through ``forward_func`` via
    the shared chunked helper, ``max_examples_per_batch`` rows a call; image
    rows after the last same-signed pixel are not evaluated (the curve is
    flat there), and the fully masked / unmasked starts are shared by the
    keep / remove curves.

    Parameters
    ----------
    forward_func : Callable
        the model.
    inputs : Tensor or tuple of Tensor
        the explained examples.
    attributions : Tensor or tuple of Tensor
        of the inputs' shape (or ``N x 1 x H x W`` for images).
    target : int, tuple, Tensor or list, optional
        Captum target, used by ``score="logit"`` and ``"probability"``.
        Default: None
    additional_forward_args : Any, optional
        extra model arguments. Default: None
    max_examples_per_batch : int, optional
        rows per forward call; None takes as many as fit in 32 MiB of
        perturbed input. Default: None
    metrics : sequence of str, optional
        which of KPM, KNM, KAM, RPM, RNM, RAM to compute. Default: all six
    protocol : str, optional
        ``"image"``, ``"tabular"`` or ``"auto"`` (image when every input is
        ``N x C x H x W``). Default: ``"auto"``
    masker : str, number or Tensor, optional
        image protocol only. Default: ``"inpaint_telea"``
    percent : float, optional
        image protocol: fraction of pixels per step, in ``(0, 1]``. Default:
        0.01
    score : str, optional
        ``"max_logit"``, ``"logit"`` (target output) or ``"probability"``;
        None is ``"max_logit"`` for images and ``"logit"`` for tabular
        inputs. Default: None
    n_interp : int, optional
        image protocol: points of ``[0, 1]`` the curves are interpolated on.
        Default: 100
    baselines : number, Tensor or tuple, optional
        tabular protocol: values of masked features. Default: None (column
        means)
    labels : Tensor, optional
        tabular KAM/RAM reference values, ``(N,)``. Default: None (unmasked
        model scores)
    n_counts : int, optional
        tabular protocol: number of log-spaced feature counts. Default: 11
    blur_sigma : float, optional
        σ of the ``"blur"`` masker. Default: 5.0
    blur_kernel_size : int, optional
        its kernel length. Default: 11
    channel_dim : int, str or None, optional
        image protocol: dimension summed into one pixel. Default: ``"auto"``
    random_state : int, optional
        seed of the tabular tie-breaking jitter. Default: 0
    return_curves : bool, optional
        also return the curves. Default: False
    show_progress : bool, optional
        progress bar over rows. Default: False

    Returns
    -------
    KeepRemoveResult
        Per-example values of the requested metrics (and curves when asked).

    Raises
    ------
    ValueError
        An empty or unknown ``metrics`` list, an unknown ``protocol`` or
        ``masker``, Telea inpainting with several input tensors, the image
        protocol on inputs that are not ``N x C x H x W``, ``labels`` of the
        wrong length, or the tabular KAM/RAM with fewer than 2 examples.
    TypeError
        ``labels`` that is not a tensor.

    References
    ----------
    S. M. Lundberg, G. Erion, H. Chen, et al., "From local explanations to
    global understanding with explainable AI for trees", Nature Machine
    Intelligence 2020 (the keep/remove metrics).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    >>> x = torch.rand(2, 3, 8, 8)
    >>> attr = torch.rand(2, 3, 8, 8)
    >>> from captum_prior.metrics import keep_remove
    >>> res = keep_remove(model, x, attr, target=0, metrics=["KPM", "RPM"], percent=0.25)
    >>> res.masker, res.KPM.shape
    ('inpaint_telea', torch.Size([2]))
    """
    inputs_t, attrs, is_tuple = format_inputs_attributions(inputs, attributions)
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError("metrics is empty; choose from " + ", ".join(METRICS))
    for m in metrics:
        check_choice(m, "metrics entry", METRICS)
    check_choice(protocol, "protocol", PROTOCOLS)
    if protocol == "auto":
        protocol = "image" if all(t.dim() == 4 for t in inputs_t) else "tabular"
    if score is None:
        score = "max_logit" if protocol == "image" else "logit"
    check_choice(score, "score", ("probability", "logit", "max_logit"))
    # numeric options are checked where given, whichever protocol uses them
    check_int(n_counts, "n_counts", 2)
    check_float(blur_sigma, "blur_sigma", 0.0, low_inclusive=False)
    check_int(blur_kernel_size, "blur_kernel_size", 1)
    if labels is not None and not isinstance(labels, Tensor):
        raise TypeError(f"labels must be None or a Tensor of one value per example, got {type(labels).__name__}")
    chunk = resolve_chunk_size(max_examples_per_batch, inputs_t)
    runner = make_runner(forward_func, inputs_t[0].shape[0], target, additional_forward_args, score)
    if protocol == "image":
        return _image_protocol(
            runner, inputs_t, attrs, metrics, masker, percent, n_interp, blur_sigma,
            blur_kernel_size, channel_dim, chunk, return_curves, show_progress,
        )
    return _tabular_protocol(
        runner, inputs_t, attrs, is_tuple, metrics, baselines, labels, n_counts,
        random_state, chunk, return_curves, show_progress,
    )


def _run(runner: Any, make_rows: Callable, n_rows: int, chunk: int, show_progress: bool, desc: str) -> Tensor:
    bar = progress_bar(show_progress, n_rows, desc)
    try:
        return forward_rows(runner, make_rows, n_rows, chunk, progress=bar).to(torch.float64)
    finally:
        if bar is not None:
            bar.close()


def _row_builder(
    inputs_t: Tuple[Tensor, ...],
    layout: UnitLayout,
    ranks: Dict[int, Tensor],
    row_ex: Tensor,
    row_order: Tensor,
    row_keep: Tensor,
    row_flip: Tensor,
    fill: Optional[Tuple[Tensor, ...]],
    telea: bool,
) -> Callable[[slice], Tuple[Tuple[Tensor, ...], Tensor]]:
    """Rows ``(example, order, keep?, number of top units flipped)``."""

    def make_rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
        ex = row_ex[sl]
        order = row_order[sl]
        flip = row_flip[sl].unsqueeze(1)
        flipped = torch.zeros(len(ex), layout.n_units, dtype=torch.bool, device=ex.device)
        for o, rank in ranks.items():
            sel = order == o
            if bool(sel.any()):
                flipped[sel] = rank[ex[sel]] < flip[sel]
        masked = flipped != row_keep[sl].unsqueeze(1)
        masks = layout.expand(masked)
        if telea:
            return (inpaint_telea(inputs_t[0][ex], masks[0]),), ex
        rows = tuple(
            torch.where(m, f[ex], x[ex]) for m, f, x in zip(masks, fill, inputs_t, strict=True)
        )
        return rows, ex

    return make_rows


def _image_protocol(
    runner: Any,
    inputs_t: Tuple[Tensor, ...],
    attrs: Tuple[Tensor, ...],
    metrics: Tuple[str, ...],
    masker: Union[str, float, Tensor],
    percent: float,
    n_interp: int,
    blur_sigma: float,
    blur_kernel_size: int,
    channel_dim: Union[int, str, None],
    chunk: int,
    return_curves: bool,
    show_progress: bool,
) -> KeepRemoveResult:
    percent = check_float(percent, "percent", 0.0, 1.0, low_inclusive=False)
    n_interp = check_int(n_interp, "n_interp", 2)
    layout = UnitLayout(inputs_t, channel_dim)
    if not layout.is_image:
        raise ValueError(
            "protocol='image' needs N x C x H x W inputs with channel_dim 1; use "
            "protocol='tabular' for other inputs"
        )
    if isinstance(masker, str):
        check_choice(masker, "masker", MASKERS)
        if masker == "inpaint_telea":
            if len(inputs_t) != 1:
                raise ValueError("masker='inpaint_telea' supports a single image input tensor")
    masker_name = masker if isinstance(masker, str) else "value"
    telea = masker_name == "inpaint_telea"
    fill: Optional[Tuple[Tensor, ...]] = None
    if not telea:
        if masker_name == "mean":
            fill = tuple(x.mean(dim=(2, 3), keepdim=True).expand_as(x) for x in inputs_t)
        elif masker_name == "blur":
            blur_sigma = check_float(blur_sigma, "blur_sigma", 0.0, low_inclusive=False)
            fill = tuple(gaussian_blur(x, blur_sigma, blur_kernel_size) for x in inputs_t)
        elif masker_name == "zero":
            fill = tuple(torch.zeros_like(x) for x in inputs_t)
        else:
            fill = tuple(broadcast_fill(masker, x, "masker") for x in inputs_t)

    device = inputs_t[0].device
    n = inputs_t[0].shape[0]
    n_units = layout.n_units
    step = max(1, int(percent * n_units))
    s = layout.unit_scores(attrs)
    orders_needed = sorted({_SPEC[m][1] for m in metrics})
    ranks = {}
    eligible = torch.zeros(3, n, dtype=torch.long, device=device)
    for o in orders_needed:
        if o == 0:
            ranks[0] = rank_units(s, descending=True)
            eligible[0] = (s > 0).sum(1)
        elif o == 1:
            ranks[1] = rank_units(s, descending=False)
            eligible[1] = (s < 0).sum(1)
        else:
            ranks[2] = rank_units(s.abs(), descending=True)
            eligible[2] = n_units
    n_steps = -(-eligible // step)  # 3 x N

    # Row table. Starts: fully masked (keep) and unmasked (remove), shared by
    # all metrics of that mode; then steps 1..n_steps of each curve.
    want_keep = any(_SPEC[m][0] for m in metrics)
    want_remove = any(not _SPEC[m][0] for m in metrics)
    ex_all = torch.arange(n, device=device)
    cols = {"ex": [], "order": [], "keep": [], "flip": []}
    start_row = {}
    offset = 0
    for keep, wanted in ((True, want_keep), (False, want_remove)):
        if wanted:
            cols["ex"].append(ex_all)
            cols["order"].append(torch.zeros(n, dtype=torch.long, device=device))
            cols["keep"].append(torch.full((n,), keep, device=device))
            cols["flip"].append(torch.zeros(n, dtype=torch.long, device=device))
            start_row[keep] = offset + ex_all
            offset += n
    curve_rows = {}
    for m in metrics:
        keep, o = _SPEC[m]
        ns = n_steps[o]
        total = int(ns.sum())
        ex = torch.repeat_interleave(ex_all, ns)
        first = torch.cumsum(ns, 0) - ns
        k = torch.arange(total, device=device) - torch.repeat_interleave(first, ns) + 1
        cols["ex"].append(ex)
        cols["order"].append(torch.full((total,), o, dtype=torch.long, device=device))
        cols["keep"].append(torch.full((total,), keep, device=device))
        cols["flip"].append(torch.minimum(k * step, eligible[o][ex]))
        curve_rows[m] = (offset, first, ns)
        offset += total
    row_ex = torch.cat(cols["ex"])
    make_rows = _row_builder(
        inputs_t, layout, ranks, row_ex, torch.cat(cols["order"]), torch.cat(cols["keep"]),
        torch.cat(cols["flip"]), fill, telea,
    )
    values = _run(runner, make_rows, len(row_ex), chunk, show_progress, "keep/remove")

    xs = torch.linspace(0.0, 1.0, n_interp, dtype=torch.float64, device=device)
    t = xs * n_units
    j0 = torch.floor(t).long().clamp(max=n_units)
    j1 = torch.ceil(t).long().clamp(max=n_units)
    w = t - j0.double()
    k0 = -(-j0 // step)
    k1 = -(-j1 // step)
    out: Dict[str, Tensor] = {}
    curves: Dict[str, Tensor] = {}
    for m in metrics:
        keep, o = _SPEC[m]
        offset, first, ns = curve_rows[m]
        sign = -1.0 if o == 1 else 1.0
        start = values[start_row[keep]]
        # v[i, k]: value after k steps (k = 0 is the start), flat after n_steps[i]
        kmax = int(ns.max()) if n > 0 else 0
        kk = torch.arange(kmax + 1, device=device)
        kc = torch.minimum(kk.unsqueeze(0), ns.unsqueeze(1))  # N x (kmax+1)
        idx = (offset + first).unsqueeze(1) + kc - 1
        v = torch.where(kc > 0, values[idx.clamp(min=0, max=max(len(values) - 1, 0))], start.unsqueeze(1))
        y0 = v.gather(1, torch.minimum(k0.unsqueeze(0), ns.unsqueeze(1)))
        y1 = v.gather(1, torch.minimum(k1.unsqueeze(0), ns.unsqueeze(1)))
        y = y0 * (1 - w) + y1 * w
        if not keep:
            y = -y
        out[m] = sign * trapezoid(y - y[:, :1], xs)
        curves[m] = y
    dtype = inputs_t[0].dtype
    return KeepRemoveResult(
        **{m: (out[m].to(dtype) if m in out else None) for m in METRICS},
        curves={m: c.to(dtype) for m, c in curves.items()} if return_curves else None,
        fractions=xs.to(dtype),
        masker=masker_name,
        protocol="image",
    )


def _tabular_protocol(
    runner: Any,
    inputs_t: Tuple[Tensor, ...],
    attrs: Tuple[Tensor, ...],
    is_tuple: bool,
    metrics: Tuple[str, ...],
    baselines: Union[None, float, Tensor, Tuple[Tensor, ...]],
    labels: Optional[Tensor],
    n_counts: int,
    random_state: int,
    chunk: int,
    return_curves: bool,
    show_progress: bool,
) -> KeepRemoveResult:
    n_counts = check_int(n_counts, "n_counts", 2)
    random_state = check_int(random_state, "random_state", 0)
    layout = UnitLayout(inputs_t, None)
    device = inputs_t[0].device
    n = inputs_t[0].shape[0]
    n_units = layout.n_units
    if baselines is None:
        fill = tuple(x.mean(dim=0, keepdim=True).expand_as(x) for x in inputs_t)
    else:
        if isinstance(baselines, tuple) and not is_tuple:
            raise ValueError("baselines is a tuple but inputs is a single Tensor")
        items = baselines if isinstance(baselines, tuple) else (baselines,) * len(inputs_t)
        if len(items) != len(inputs_t):
            raise ValueError(f"baselines has {len(items)} tensors but inputs has {len(inputs_t)}")
        fill = tuple(
            broadcast_fill(b, x, f"baselines[{i}]" if is_tuple else "baselines")
            for i, (b, x) in enumerate(zip(items, inputs_t, strict=True))
        )
    if any(_SPEC[m][1] == 2 for m in metrics):
        if labels is not None:
            if not isinstance(labels, Tensor) or labels.reshape(-1).shape[0] != n:
                raise ValueError(f"labels must be a Tensor of {n} values, one per example")
        elif n < 2:
            raise ValueError("KAM and RAM (tabular) need at least 2 examples for an R²")

    counts = _intlogspace(n_units, n_counts).to(device)
    g = torch.Generator().manual_seed(random_state)
    jitter = (1e-6 * torch.randn(n_units, generator=g, dtype=torch.float64)).to(device)
    s = layout.unit_scores(attrs).to(torch.float64)
    ranks = {}
    caps = torch.full((3, n), n_units, dtype=torch.long, device=device)
    for o, a in enumerate((s + jitter, -s + jitter, s.abs() + jitter)):
        ranks[o] = rank_units(a, descending=True)
        if o < 2:
            caps[o] = (a >= 0).sum(1)

    n_c = len(counts)
    cols = {"ex": [], "order": [], "keep": [], "flip": []}
    ex = torch.arange(n, device=device).repeat_interleave(n_c)
    cc = counts.repeat(n)
    blocks = {}
    offset = 0
    for m in metrics:
        keep, o = _SPEC[m]
        cols["ex"].append(ex)
        cols["order"].append(torch.full_like(ex, o))
        cols["keep"].append(torch.full((len(ex),), keep, device=device))
        cols["flip"].append(torch.minimum(cc, caps[o][ex]))
        blocks[m] = offset
        offset += len(ex)
    need_ref = any(_SPEC[m][1] == 2 for m in metrics) and labels is None
    if need_ref:  # unmasked rows for the R² reference
        cols["ex"].append(torch.arange(n, device=device))
        cols["order"].append(torch.zeros(n, dtype=torch.long, device=device))
        cols["keep"].append(torch.zeros(n, dtype=torch.bool, device=device))
        cols["flip"].append(torch.zeros(n, dtype=torch.long, device=device))
    row_ex = torch.cat(cols["ex"])
    make_rows = _row_builder(
        inputs_t, layout, ranks, row_ex, torch.cat(cols["order"]), torch.cat(cols["keep"]),
        torch.cat(cols["flip"]), fill, False,
    )
    values = _run(runner, make_rows, len(row_ex), chunk, show_progress, "keep/remove")
    ref = values[-n:] if need_ref else (labels.reshape(-1).to(device, torch.float64) if labels is not None else None)
    x_axis = counts.double()
    out: Dict[str, Tensor] = {}
    curves: Dict[str, Tensor] = {}
    for m in metrics:
        keep, o = _SPEC[m]
        pred = values[blocks[m] : blocks[m] + n * n_c].view(n, n_c)
        if o < 2:
            negate = m in ("KNM", "RPM")
            auc = trapezoid(pred, x_axis) / n_units
            out[m] = -auc if negate else auc
            curves[m] = pred
        else:
            ss_tot = ((ref - ref.mean()) ** 2).sum()
            if not ss_tot > 0:
                warnings.warn(
                    f"{m}: the reference outputs are constant, so R² is undefined (NaN)",
                    CaptumPriorWarning,
                    stacklevel=3,
                )
            r2 = 1.0 - ((ref.unsqueeze(1) - pred) ** 2).sum(0) / ss_tot
            if m == "RAM":
                r2 = 1.0 - r2
            out[m] = trapezoid(r2, x_axis) / n_units
            curves[m] = r2
    dtype = inputs_t[0].dtype if inputs_t[0].is_floating_point() else torch.float32
    return KeepRemoveResult(
        **{m: (out[m].to(dtype) if m in out else None) for m in METRICS},
        curves={m: c.to(dtype) for m, c in curves.items()} if return_curves else None,
        fractions=(x_axis / n_units).to(dtype),
        masker="baselines",
        protocol="tabular",
    )
