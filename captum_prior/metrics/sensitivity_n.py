"""Sensitivity-N (Ancona et al., ICLR 2018), as used by Akhtar & Jalwana 2023."""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from captum_prior._batching import forward_rows
from captum_prior._compat import TargetType, TensorOrTupleOfTensorsGeneric
from captum_prior._random import seed_from
from captum_prior._validation import check_choice, check_int
from captum_prior.errors import CaptumPriorWarning
from captum_prior.metrics._perturbation import (
    UnitLayout,
    broadcast_fill,
    check_fractions,
    format_inputs_attributions,
    make_runner,
    progress_bar,
    resolve_chunk_size,
)

DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SAMPLINGS = ("fixed", "bernoulli")


def _pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation along the last dimension (NaN where undefined)."""
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    den = a.norm(dim=-1) * b.norm(dim=-1)
    num = (a * b).sum(-1)
    out = num / den
    return torch.where(den > 0, out, torch.full_like(out, float("nan")))


def sensitivity_n(
    forward_func: Callable[..., Tensor],
    inputs: TensorOrTupleOfTensorsGeneric,
    attributions: TensorOrTupleOfTensorsGeneric,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    n_subsets: int = 100,
    baselines: Union[float, Tensor, Tuple[Tensor, ...]] = 0.0,
    sampling: str = "fixed",
    score: str = "logit",
    channel_dim: Union[int, str, None] = "auto",
    random_state: Union[None, int, torch.Generator] = None,
    show_progress: bool = False,
) -> Tensor:
    r"""Sensitivity-N: do attributions predict the effect of removing features?

    For each fraction ``q`` and each of ``n_subsets`` random subsets ``S`` of
    the units (pixels of ``N x C x H x W`` images, with all their channels;
    scalar entries of other inputs), the units of ``S`` are set to the
    baseline and the output change ``f(x) − f(x_[S ← baseline])`` is compared
    with ``Σ_{i∈S} A_i``, the attributions summed over the subset (over its
    channels too).  The result is the Pearson correlation of the two over the
    subsets, per example and per fraction (Ancona et al. 2018, §4; the paper
    averages it over examples, ``result.mean(0)``).  Exact attributions of a
    linear model with the same baseline correlate perfectly (1).

    ``sampling="fixed"`` draws subsets of exactly ``max(1, round(q U))`` units
    uniformly (Ancona et al.'s ``N = q U``); ``"bernoulli"`` keeps each unit
    with probability ``q`` (the evaluator released by Yang, Akhtar et al.).
    The subsets depend only on ``random_state``, the fraction and the
    number of units, not on the other examples of the batch, so per-example
    results do not depend on batch composition or ``max_examples_per_batch``.

    Batching: ``N * (1 + len(fractions) * n_subsets)`` rows, built lazily and
    evaluated ``max_examples_per_batch`` at a time.

    Parameters
    ----------
    forward_func : Callable
        the model.
    inputs : Tensor or tuple of Tensor
        the explained examples.
    attributions : Tensor or tuple of Tensor
        of the inputs' shape (or ``N x 1 x H x W`` for images).
    target : int, tuple, Tensor or list, optional
        Captum target. Default: None
    additional_forward_args : Any, optional
        extra arguments to ``forward_func``. Default: None
    max_examples_per_batch : int, optional
        rows per forward call; None takes as many as fit in 32 MiB of
        perturbed input. Default: None
    fractions : sequence of float, optional
        subset sizes as fractions of the units, each in ``(0, 1)``. Default:
        0.1, 0.2, …, 0.9
    n_subsets : int, optional
        subsets per fraction (Ancona et al.: 100). Default: 100
    baselines : number, Tensor or tuple, optional
        values the removed units take, broadcastable to the inputs. Default:
        0.0
    sampling : str, optional
        ``"fixed"`` or ``"bernoulli"``. Default: ``"fixed"``
    score : str, optional
        ``"logit"`` (target output), ``"probability"`` or ``"max_logit"``.
        Default: ``"logit"``
    channel_dim : int, str or None, optional
        see :func:`~captum_prior.metrics.insertion_deletion`. Default:
        ``"auto"``
    random_state : int or torch.Generator, optional
        seed of the subsets; None draws one from torch's global generator.
        Default: None
    show_progress : bool, optional
        progress bar over rows. Default: False

    Returns
    -------
    Tensor
        ``N x len(fractions)`` correlations. A correlation is undefined
        (NaN, with a warning) where the attribution sums or the output
        changes do not vary over the subsets.

    Raises
    ------
    ValueError
        Fractions outside ``(0, 1)``, an unknown ``sampling``, fewer than 2
        subsets, or ``baselines`` that do not match the inputs.

    References
    ----------
    M. Ancona, E. Ceolini, C. Öztireli, M. Gross, "Towards better
    understanding of gradient-based attribution methods for Deep Neural
    Networks", ICLR 2018.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    >>> x = torch.rand(2, 3, 8, 8)
    >>> attr = torch.rand(2, 3, 8, 8)
    >>> from captum_prior.metrics import sensitivity_n
    >>> corr = sensitivity_n(model, x, attr, target=0, fractions=[0.1, 0.5], n_subsets=20)
    >>> corr.shape
    torch.Size([2, 2])
    """
    inputs_t, attrs, is_tuple = format_inputs_attributions(inputs, attributions)
    fr = check_fractions(fractions, "fractions")
    n_subsets = check_int(n_subsets, "n_subsets", 2)
    check_choice(sampling, "sampling", SAMPLINGS)
    check_choice(score, "score", ("probability", "logit", "max_logit"))
    layout = UnitLayout(inputs_t, channel_dim)
    n_units = layout.n_units
    chunk = resolve_chunk_size(max_examples_per_batch, inputs_t)
    seed = seed_from(random_state)

    if isinstance(baselines, tuple) != is_tuple and isinstance(baselines, tuple):
        raise ValueError("baselines is a tuple but inputs is a single Tensor")
    base_items = baselines if isinstance(baselines, tuple) else (baselines,) * len(inputs_t)
    if len(base_items) != len(inputs_t):
        raise ValueError(
            f"baselines has {len(base_items)} tensors but inputs has {len(inputs_t)}"
        )
    base = tuple(
        broadcast_fill(b, x, f"baselines[{i}]" if is_tuple else "baselines")
        for i, (b, x) in enumerate(zip(base_items, inputs_t, strict=True))
    )

    device = inputs_t[0].device
    n = inputs_t[0].shape[0]
    n_fr = len(fr)
    sizes = [max(1, int(round(float(q) * n_units))) for q in fr]
    cache: Dict[int, Tensor] = {}

    def subsets(j: int) -> Tensor:
        """``n_subsets x U`` boolean masks of fraction ``j`` (same for every example)."""
        if j not in cache:
            for old in [k for k in cache if k < j]:
                del cache[old]
            g = torch.Generator().manual_seed((seed + 1_000_003 * (j + 1)) % (2**63))
            keys = torch.rand(n_subsets, n_units, generator=g)
            if sampling == "bernoulli":
                m = keys < float(fr[j])
            else:
                idx = keys.argsort(dim=1)[:, : sizes[j]]
                m = torch.zeros(n_subsets, n_units, dtype=torch.bool)
                m.scatter_(1, idx, True)
            cache[j] = m.to(device)
        return cache[j]

    per_fraction = n * n_subsets
    n_rows = n + n_fr * per_fraction

    def make_rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
        r = torch.arange(sl.start, sl.stop, device=device)
        q = (r - n).clamp(min=0)
        j = torch.where(r < n, torch.full_like(r, -1), q // per_fraction)
        ex = torch.where(r < n, r, (q // n_subsets) % n)
        s = q % n_subsets
        mask = torch.zeros(len(r), n_units, dtype=torch.bool, device=device)
        for jj in torch.unique(j).tolist():
            if jj < 0:
                continue
            sel = j == jj
            mask[sel] = subsets(jj)[s[sel]]
        masks = layout.expand(mask)
        rows = tuple(
            torch.where(m, b[ex], x[ex]) for m, b, x in zip(masks, base, inputs_t, strict=True)
        )
        return rows, ex

    runner = make_runner(forward_func, n, target, additional_forward_args, score)
    bar = progress_bar(show_progress, n_rows, "sensitivity-n")
    try:
        out = forward_rows(runner, make_rows, n_rows, chunk, progress=bar).to(torch.float64)
    finally:
        if bar is not None:
            bar.close()
    f_x = out[:n]
    change = f_x.view(1, n, 1) - out[n:].view(n_fr, n, n_subsets)
    unit_attr = layout.unit_scores(attrs).to(torch.float64)
    result = torch.empty(n, n_fr, dtype=torch.float64, device=device)
    for j in range(n_fr):
        sums = unit_attr @ subsets(j).to(torch.float64).T  # N x S
        result[:, j] = _pearson(sums, change[j])
    n_nan = int(torch.isnan(result).sum())
    if n_nan:
        warnings.warn(
            "sensitivity_n: some correlations are undefined (NaN) because the "
            "attribution sums or the output changes are constant over the subsets "
            "(e.g. all-zero attributions or a model insensitive to the inputs)",
            CaptumPriorWarning,
            stacklevel=2,
        )
    dtype = inputs_t[0].dtype if inputs_t[0].is_floating_point() else torch.float32
    return result.to(dtype)
