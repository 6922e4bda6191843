"""Score stored attributions with the project's metrics; compare runs.

:func:`evaluate_attributions` reads an attribution directory shard by shard,
runs the metrics on those examples and writes a metric store of the same
shape (atomic shards + manifest, resumable, shared between ``torchrun``
ranks), then ``per_example.csv`` and ``summary.json``/``summary.md`` with the
mean and 95 % BCa confidence interval of every metric
(:mod:`captum_prior.metrics.stats`).  :func:`compare_runs` pairs two or more
evaluated runs example by example and reports paired differences.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from captum_prior.runner._dist import Group, resolve_device
from captum_prior.runner.explain import _load_batch, _split_item, model_fingerprint
from captum_prior.runner.store import (
    ShardStore,
    iter_shards,
    jsonable,
    load_attributions,
    read_manifest,
)

__all__ = ["METRICS", "evaluate_attributions", "load_metrics", "compare_runs", "summarize_run"]

#: Metric names: RISE insertion/deletion AUC, the keep/remove family, Sensitivity-N
#: (mean Pearson correlation over the default fractions), MPRT (mean Spearman
#: similarity of the absolute maps over the cascading randomisation steps, lower is better),
#: ROAD (mean target probability over the removal fractions after noisy linear
#: imputation, most- and least-relevant first).
METRICS = (
    "deletion", "insertion", "KPM", "KNM", "KAM", "RPM", "RNM", "RAM", "sensitivity-n",
    "road-morf", "road-lerf", "mprt",
)
_KR = ("KPM", "KNM", "KAM", "RPM", "RNM", "RAM")
#: Whether larger is better, for the report.
HIGHER_IS_BETTER = {"deletion": False, "insertion": True, "sensitivity-n": True, **{m: True for m in _KR}}
HIGHER_IS_BETTER["mprt"] = False
HIGHER_IS_BETTER["road-morf"] = False
HIGHER_IS_BETTER["road-lerf"] = True


def _parse_metrics(metrics: Union[str, Sequence[str]]) -> List[str]:
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else list(metrics)
    names = [m for m in names if m]
    if not names:
        raise ValueError("metrics is empty; name at least one of " + ", ".join(METRICS))
    bad = [m for m in names if m not in METRICS]
    if bad:
        raise ValueError(f"unknown metric {bad[0]!r}; choose from {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def _units(shape: Sequence[int]) -> Tuple[int, bool]:
    """(units, is_image) of one example of ``shape`` (pixels of C x H x W
    images, every scalar otherwise), as the metrics count them."""
    shape = tuple(int(v) for v in shape)
    if len(shape) == 3:
        return shape[1] * shape[2], True
    return int(np.prod(shape)) if shape else 1, False


def _rows_insertion_deletion(metrics: List[str], shape: Sequence[int], kw: Mapping[str, Any]) -> Tuple[int, int]:
    want = [m for m in ("insertion", "deletion") if m in metrics]
    if not want:
        return 0, 0
    units, image = _units(shape)
    if kw.get("n_steps") is not None:
        steps = min(int(kw["n_steps"]), units)
    elif kw.get("pixels_per_step") is not None:
        steps = -(-units // int(kw["pixels_per_step"]))
    elif image:
        steps = -(-units // int(shape[-1]))  # one image row per step (RISE)
    else:
        steps = min(units, 100)
    rows = 2 * steps + 1 if len(want) == 2 else steps + 1
    return rows, rows


def _rows_keep_remove(metrics: List[str], shape: Sequence[int], kw: Mapping[str, Any]) -> Tuple[int, int]:
    kr = [m for m in _KR if m in metrics]
    if not kr:
        return 0, 0
    units, image = _units(shape)
    starts = len({m[0] for m in kr})  # K... and R... share their start rows
    if image and kw.get("protocol", "auto") != "tabular":
        step = max(1, int(float(kw.get("percent", 0.01)) * units))
        per = -(-units // step)
        # curves stop at the last positive (negative) unit: |A| orders are exact
        exact_part = sum(per for m in kr if m.endswith("AM"))
        return starts + exact_part, starts + per * len(kr)
    n_counts = int(kw.get("n_counts", 11))
    return 0, 1 + n_counts * len(kr)


def _rows_sensitivity_n(metrics: List[str], shape: Sequence[int], kw: Mapping[str, Any]) -> Tuple[int, int]:
    if "sensitivity-n" not in metrics:
        return 0, 0
    from captum_prior.metrics.sensitivity_n import DEFAULT_FRACTIONS

    rows = 1 + len(kw.get("fractions", DEFAULT_FRACTIONS)) * int(kw.get("n_subsets", 100))
    return rows, rows


def _rows_road(metrics: List[str], shape: Sequence[int], kw: Mapping[str, Any]) -> Tuple[int, int]:
    orders = [m for m in ("road-morf", "road-lerf") if m in metrics]
    if not orders:
        return 0, 0
    from captum_prior.metrics.road import PAPER_FRACTIONS

    rows = len(orders) * len(kw.get("fractions", PAPER_FRACTIONS))
    return rows, rows


#: Forward passes per example of each metric family: ``f(metrics, example
#: shape, that family's metric_kwargs) -> (at least, at most)``. A metric
#: family added here is counted in the progress bar and the printed total.
ROWS_PER_EXAMPLE: Dict[str, Callable[[List[str], Sequence[int], Mapping[str, Any]], Tuple[int, int]]] = {
    "insertion_deletion": _rows_insertion_deletion,
    "keep_remove": _rows_keep_remove,
    "sensitivity_n": _rows_sensitivity_n,
    "road": _rows_road,
}


def forward_passes_per_example(
    metrics: Union[str, Sequence[str]], shape: Sequence[int],
    metric_kwargs: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> Tuple[int, int]:
    """Model evaluations the metrics need per example.

    One evaluation is one perturbed copy of one example.  The two bounds
    differ only for the keep/remove metrics of positive or negative
    attributions, whose curves stop at the last positive (negative) pixel.

    Parameters
    ----------
    metrics : str or sequence of str
        Names from :data:`METRICS` (a comma-separated string allowed).
    shape : sequence of int
        The shape of one example (``C x H x W`` for images).
    metric_kwargs : dict, optional
        As in :func:`evaluate_attributions`. Default: None

    Returns
    -------
    tuple of int
        ``(at least, at most)``.

    Raises
    ------
    ValueError
        An empty or unknown metric name.

    Examples
    --------
    >>> from captum_prior.runner.evaluate import forward_passes_per_example
    >>> forward_passes_per_example("deletion,insertion", (1, 28, 28))  # 2 x 28 steps + 1
    (57, 57)
    """
    names = _parse_metrics(metrics)
    kw = metric_kwargs or {}
    low = high = 0
    for family, f in ROWS_PER_EXAMPLE.items():
        a, b = f(names, shape, kw.get(family, {}))
        low, high = low + a, high + b
    return low, high


class _CountingModel:
    """Calls the model and moves a progress bar by the rows of each call.
    Error messages and model checks see the model (``__wrapped__``)."""

    def __init__(self, model: Callable, advance: Callable[[int], Any]) -> None:
        self.__wrapped__ = model
        self.advance = advance
        self.rows = 0

    def __call__(self, x: Tensor, *args: Any) -> Any:
        out = self.__wrapped__(x, *args)
        n = int(x.shape[0])
        self.rows += n
        self.advance(n)
        return out


def _score_batch(
    model: Any, x: Tensor, attrs: Tensor, target: Tensor, metrics: List[str],
    kwargs: Mapping[str, Any], seed: int, mprt: Any = None,
) -> Dict[str, Tensor]:
    from captum_prior.metrics import insertion_deletion, keep_remove, sensitivity_n

    out: Dict[str, Tensor] = {}
    want_id = [m for m in ("insertion", "deletion") if m in metrics]
    if want_id:
        mode = "both" if len(want_id) == 2 else want_id[0]
        r = insertion_deletion(
            model, x, attrs, target=target, mode=mode, return_curves=True,
            **dict(kwargs.get("insertion_deletion", {})),
        )
        for m in want_id:
            out[m] = getattr(r, m).detach().cpu().double()
            out[f"curve_{m}"] = getattr(r, f"{m}_curve").detach().cpu().float()
        out["fractions"] = r.fractions.detach().cpu().float()
    kr = [m for m in _KR if m in metrics]
    if kr:
        kw = dict(kwargs.get("keep_remove", {}))
        r = keep_remove(model, x, attrs, target=target, metrics=kr, random_state=seed, **kw)
        for m in kr:
            out[m] = getattr(r, m).detach().cpu().double()
    if "sensitivity-n" in metrics:
        s = sensitivity_n(
            model, x, attrs, target=target, random_state=seed,
            **dict(kwargs.get("sensitivity_n", {})),
        )
        out["sensitivity-n"] = s.detach().cpu().double().nanmean(1)
    orders = [m for m in ("road-morf", "road-lerf") if m in metrics]
    if orders:
        from captum_prior.metrics.road import road

        r = road(
            model, x, attrs, target=target, order=[m[5:] for m in orders],
            generator=torch.Generator().manual_seed(int(seed)), **dict(kwargs.get("road", {})),
        )
        for m in orders:
            out[m] = getattr(r, m[5:]).detach().cpu().double()
    if "mprt" in metrics:
        from captum_prior.metrics.sanity import mprt_scores

        kw = dict(kwargs.get("mprt", {}))
        model = getattr(model, "__wrapped__", model)  # the module itself, not the progress counter
        r = mprt_scores(mprt, model, x, target, kw.get("attribute_kwargs"), kw.get("layers"), seed)
        out.update({k: v.cpu() for k, v in r.items()})
    return out


class _Bound:
    """An attribution object with fixed ``attribute`` arguments (deep-copied
    onto each randomised model by ``model_randomization_test``)."""

    def __init__(self, attribution: Any, kwargs: Mapping[str, Any]) -> None:
        self.attribution, self.kwargs = attribution, dict(kwargs)
        self.forward_func = getattr(attribution, "forward_func", None)

    def attribute(self, inputs: Tensor, target: Any = None) -> Tensor:
        return self.attribution.attribute(inputs, target=target, **self.kwargs)


def _mprt_method(amanifest: Mapping[str, Any], model: Any, dataset: Any) -> Any:
    """The explained method rebuilt from an attribution manifest written by
    ``captum-prior explain`` (its ``--method`` name and arguments), with its
    ``attribute`` arguments bound, for :func:`~captum_prior.metrics.sanity.mprt_scores`."""
    from captum_prior.runner.specs import METHODS, build_method

    ident = amanifest["identity"]
    margs, akw = ident.get("method_args") or {}, ident.get("attribute_kwargs") or {}
    name = margs.get("name", ident.get("method"))
    if name not in METHODS:
        raise ValueError(
            f"metric 'mprt' re-runs the explained method, but {name!r} is not a --method name; "
            "pass mprt_method= (a Captum-style class, instance, or f(model, inputs, target, **kw))"
        )
    attribution, kw, _ = build_method(
        name, model, dataset, n_samples=akw.get("n_samples"), n_steps=akw.get("n_steps"),
        n_references=int(margs.get("n_references", 100)), baseline=float(margs.get("baseline", 0.0)),
        patch_size=int(margs.get("patch_size", 4)), seed=int(ident.get("seed", 0)),
        internal_batch_size=akw.get("internal_batch_size"),
    )
    return _Bound(attribution, kw)


def evaluate_attributions(
    attributions: Union[str, os.PathLike],
    model: Any,
    dataset: Any,
    out: Union[str, os.PathLike],
    metrics: Union[str, Sequence[str]] = ("deletion", "insertion"),
    batch_size: int = 32,
    metric_kwargs: Optional[Mapping[str, Mapping[str, Any]]] = None,
    seed: int = 0,
    device: Union[None, str, torch.device] = None,
    progress: bool = True,
    mprt_method: Any = None,
    name: Optional[str] = None,
) -> str:
    r"""Compute metrics for every example of a finished attribution directory.

    The metrics perturb ``batch_size`` examples at a time and send the
    perturbed copies of all of them through the model in chunks of the
    package's default size (:mod:`captum_prior._chunking`; a metric's own
    ``max_examples_per_batch`` in ``metric_kwargs`` overrides it). The
    progress bar counts these forward passes (one perturbed copy each) and
    is labelled with ``name``; its total is
    :func:`forward_passes_per_example` summed over the examples.

    Parameters
    ----------
    attributions : str
        a directory written by
        :func:`~captum_prior.runner.attribute_dataset`.
    model : nn.Module or Callable
        the model that was explained.
    dataset : Dataset
        the dataset that was explained (same order).
    out : str
        the metric directory: shards + ``manifest.json``, then
        ``per_example.csv``, ``summary.json`` and ``summary.md``. Rerunning
        resumes; another call's directory is refused.
    metrics : str or sequence of str, optional
        names from :data:`METRICS` (comma-separated string allowed).
        Default: ``("deletion", "insertion")``
    batch_size : int, optional
        examples per metric call. Default: 32
    metric_kwargs : dict, optional
        extra arguments per metric function, keyed ``"insertion_deletion"``,
        ``"keep_remove"`` (the function's defaults otherwise, Telea
        inpainting included), ``"sensitivity_n"``, ``"road"`` and
        ``"mprt"``. Default: None
    seed : int, optional
        seed of the randomised metrics. Default: 0
    device : str, optional
        as in ``attribute_dataset``. Default: None
    progress : bool, optional
        tqdm bar on rank 0. Default: True
    mprt_method : optional
        for ``"mprt"``, the method to re-run on the randomised models (a
        Captum-style class, instance or callable, as in
        :func:`~captum_prior.metrics.sanity.model_randomization_test`);
        ``metric_kwargs["mprt"]`` may give ``"attribute_kwargs"`` and
        ``"layers"``. Default: rebuilt from the ``explain`` manifest's
        ``--method`` and arguments
    name : str, optional
        the run's name in the progress bar. Default: the attribution
        directory's method

    Returns
    -------
    str
        ``out``.

    Raises
    ------
    ValueError
        An unknown metric, a directory that does not hold finished
        attributions, a dataset of another length, or an ``out`` directory
        of another call.

    Examples
    --------
    >>> import os, tempfile
    >>> import torch
    >>> from torch import nn
    >>> from captum.attr import Saliency
    >>> from captum_prior.runner import attribute_dataset
    >>> from captum_prior.runner.evaluate import evaluate_attributions, load_metrics
    >>> _ = torch.manual_seed(0)
    >>> data = torch.utils.data.TensorDataset(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]))
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    >>> tmp = tempfile.mkdtemp()
    >>> attr_dir = attribute_dataset(Saliency(model), data, os.path.join(tmp, "sal"), progress=False)
    >>> out = evaluate_attributions(attr_dir, model, data, os.path.join(tmp, "ev"),
    ...                             metrics="deletion,insertion", progress=False)
    >>> values, curves, fractions = load_metrics(out)
    >>> values["deletion"].shape, curves["deletion"].shape
    ((4,), (4, 9))
    """
    from captum_prior._validation import check_int

    names = _parse_metrics(metrics)
    batch_size = check_int(batch_size, "batch_size", 1)
    src = os.fspath(attributions)
    amanifest = read_manifest(src)
    if amanifest.get("kind") != "attributions":
        raise ValueError(f"{src} holds {amanifest.get('kind')!r}, not attributions")
    if not amanifest.get("complete"):
        raise ValueError(f"{src} is not finished; rerun the same explain command to finish it first")
    n = int(amanifest["n_examples"])
    if isinstance(dataset, torch.utils.data.DataLoader):
        dataset = dataset.dataset
    if len(dataset) != n:
        raise ValueError(
            f"dataset has {len(dataset)} examples but {src} holds {n}; pass the dataset that was explained"
        )
    dev = resolve_device(device)
    if isinstance(model, torch.nn.Module):
        model.to(dev)
    mk = jsonable(dict(metric_kwargs or {}))
    identity = {
        "attributions": amanifest["identity_hash"],
        "metrics": names,
        "metric_kwargs": mk,
        "model": model_fingerprint(model),
        "seed": int(seed),
    }
    info = {"attributions_dir": os.path.abspath(src), "method": amanifest["identity"].get("method")}
    if "mprt" in names:
        from captum_prior.metrics.sanity import randomizable_layers

        if mprt_method is None:
            mprt_method = _mprt_method(amanifest, model, dataset)
            identity["mprt_method"] = "rebuilt from the explain manifest"
        else:  # a class or function by name, an instance by its class
            m = mprt_method
            by_name = isinstance(m, type) or (callable(m) and not hasattr(m, "attribute"))
            identity["mprt_method"] = jsonable(m) if by_name else (
                f"{type(m).__module__}.{type(m).__qualname__}")
        info["mprt_layers"] = list((metric_kwargs or {}).get("mprt", {}).get("layers") or randomizable_layers(model))
    store = ShardStore(out, "metrics", identity, n, int(amanifest["shard_size"]), info=info)
    store.check_directory()
    shape = (amanifest.get("info") or {}).get("input_shape") or list(_split_item(dataset[0])[0].shape)
    _, high = forward_passes_per_example(names, shape, metric_kwargs)
    group = Group(dev)
    try:
        def shard_tensors(rows: List[int], advance: Any) -> Dict[str, Tensor]:
            parts: Dict[str, List[Tensor]] = {}
            for b in range(0, len(rows), batch_size):
                idx = rows[b : b + batch_size]
                stored = load_attributions(src, idx)
                x, _ = _load_batch(dataset, idx)
                counted = _CountingModel(model, advance)
                res = _score_batch(
                    counted, x.to(dev), stored.attributions.to(dev), stored.target.to(dev),
                    names, metric_kwargs or {}, seed, mprt_method,
                )
                for key, v in res.items():
                    parts.setdefault(key, []).append(v)
                if hasattr(advance, "lower_total"):
                    advance.lower_total(high * len(idx) - counted.rows)
            tensors = {"index": torch.tensor(rows, dtype=torch.long)}
            for key, vs in parts.items():
                tensors[key] = vs[0] if key == "fractions" else torch.cat(vs)
            return tensors

        label = name or amanifest["identity"].get("method") or os.path.basename(os.path.normpath(src))
        store.run(group, shard_tensors, desc=f"evaluate {label}", progress=progress,
                  after_finalize=lambda: summarize_run(out), total=lambda rows: high * len(rows),
                  unit="pass")
    finally:
        group.close()
    return os.fspath(out)


def load_metrics(path: Union[str, os.PathLike]) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray], np.ndarray]:
    """Read a metric directory written by :func:`evaluate_attributions`.

    Parameters
    ----------
    path : str
        The metric directory.

    Returns
    -------
    values : dict
        Metric -> ``(N,)`` per-example values, plus ``"index"``: the
        examples' indices in the dataset.
    curves : dict
        Metric -> ``N x K`` per-example curves (insertion/deletion, MPRT).
    fractions : ndarray
        The x-axis of the insertion/deletion curves (empty without them).

    Raises
    ------
    FileNotFoundError
        No manifest in ``path``.
    """
    manifest = read_manifest(path)
    names = manifest["identity"]["metrics"]
    vals: Dict[str, List[np.ndarray]] = {"index": []}
    curves: Dict[str, List[np.ndarray]] = {}
    fractions = np.zeros(0)
    for shard in iter_shards(path, kind="metrics"):
        vals["index"].append(shard["index"].numpy())
        for m in names:
            vals.setdefault(m, []).append(shard[m].numpy())
            if f"curve_{m}" in shard:
                curves.setdefault(m, []).append(shard[f"curve_{m}"].numpy())
        if "fractions" in shard:
            fractions = shard["fractions"].numpy()
    return (
        {k: np.concatenate(v) for k, v in vals.items() if v},
        {k: np.concatenate(v) for k, v in curves.items()},
        fractions,
    )


def summarize_run(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Summarise a metric directory: mean and 95 % BCa interval per metric.

    Writes ``per_example.csv``, ``summary.json`` and ``summary.md`` into
    the directory.

    Parameters
    ----------
    path : str
        A metric directory written by :func:`evaluate_attributions`.

    Returns
    -------
    dict
        ``{"method": ..., "metrics": {metric: {"mean", "low", "high", "n",
        "n_nonfinite"}}}``.
    """
    from captum_prior.metrics.stats import format_ci, mean_ci

    path = os.fspath(path)
    manifest = read_manifest(path)
    names = manifest["identity"]["metrics"]
    vals, _, _ = load_metrics(path)
    with open(os.path.join(path, "per_example.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index"] + names)
        for j in range(len(vals["index"])):
            w.writerow([int(vals["index"][j])] + [f"{float(vals[m][j]):.6g}" for m in names])
    summary: Dict[str, Any] = {"method": manifest["info"].get("method"), "metrics": {}}
    for m in names:
        v = vals[m][np.isfinite(vals[m])]
        summary["metrics"][m] = dict(mean_ci(v), n_nonfinite=int(len(vals[m]) - len(v)))
    with open(os.path.join(path, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    lines = ["| metric | mean [95 % CI] | n |", "|---|---|---|"]
    lines += [f"| {m} | {format_ci(e)} | {e['n']} |" for m, e in summary["metrics"].items()]
    with open(os.path.join(path, "summary.md"), "w") as fh:
        fh.write(f"# {summary['method']}\n\n" + "\n".join(lines) + "\n")
    return summary


def compare_runs(
    runs: Mapping[str, Union[str, os.PathLike]],
    out: Union[str, os.PathLike],
    dataset: Any = None,
    reference: Optional[str] = None,
    n_disagree: int = 8,
) -> Dict[str, Any]:
    r"""Paired comparison of two or more evaluated runs of the same dataset.

    For every metric the runs are paired example by example (on the indices
    they share) and each run is compared with ``reference`` (default the first)
    by :func:`captum_prior.metrics.stats.summarize` (BCa intervals of means
    and of paired differences).  Writes ``comparison.json``,
    ``comparison.md`` and ``report.html`` (self-contained; see
    :func:`captum_prior.runner.report.write_report`).

    Parameters
    ----------
    runs : dict
        run name -> metric directory.
    out : str
        where to write.
    dataset : Dataset, optional
        the explained dataset, for the report's grid of the examples where
        the methods disagree most. Default: None (no grid)
    reference : str, optional
        the run every other is compared with. Default: the first
    n_disagree : int, optional
        examples in that grid. Default: 8

    Returns
    -------
    dict
        ``{metric: summarize(...)}``.

    Raises
    ------
    ValueError
        No run, a ``reference`` that is not a run, or runs that share no
        example.

    Examples
    --------
    >>> import os, tempfile
    >>> import torch
    >>> from torch import nn
    >>> from captum.attr import IntegratedGradients, Saliency
    >>> from captum_prior.runner import attribute_dataset
    >>> from captum_prior.runner.evaluate import compare_runs, evaluate_attributions
    >>> _ = torch.manual_seed(0)
    >>> data = torch.utils.data.TensorDataset(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]))
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    >>> tmp = tempfile.mkdtemp()
    >>> runs = {}
    >>> for name, method in (("sal", Saliency(model)), ("ig", IntegratedGradients(model))):
    ...     a = attribute_dataset(method, data, os.path.join(tmp, name), progress=False)
    ...     runs[name] = evaluate_attributions(a, model, data, os.path.join(tmp, "ev", name),
    ...                                        metrics="deletion", progress=False)
    >>> res = compare_runs(runs, os.path.join(tmp, "ev"))
    >>> sorted(res["deletion"]), os.path.exists(os.path.join(tmp, "ev", "report.html"))
    (['ig', 'sal'], True)
    """
    from captum_prior.metrics.stats import markdown_table, summarize
    from captum_prior.runner.report import write_report

    if len(runs) < 1:
        raise ValueError("runs is empty")
    loaded = {name: load_metrics(p) for name, p in runs.items()}
    reference = reference or next(iter(runs))
    if reference not in runs:
        raise ValueError(f"reference {reference!r} is not one of the runs {list(runs)}")
    common = None
    for vals, _, _ in loaded.values():
        common = set(vals["index"].tolist()) if common is None else common & set(vals["index"].tolist())
    common_idx = np.array(sorted(common or ()))
    if common_idx.size == 0:
        raise ValueError("the runs share no example; were they computed on the same dataset?")
    shared = set.intersection(*(set(k for k in v[0] if k != "index") for v in loaded.values()))
    metric_names = [m for m in METRICS if m in shared]
    aligned: Dict[str, Dict[str, np.ndarray]] = {}
    curves: Dict[str, Dict[str, np.ndarray]] = {}
    fractions = np.zeros(0)
    for name, (vals, cv, fr) in loaded.items():
        pos = {int(i): j for j, i in enumerate(vals["index"].tolist())}
        sel = np.array([pos[int(i)] for i in common_idx])
        aligned[name] = {m: vals[m][sel] for m in metric_names}
        curves[name] = {m: c[sel] for m, c in cv.items()}
        if fr.size:
            fractions = fr
    result: Dict[str, Any] = {}
    md = [f"Paired over {common_idx.size} examples; reference: {reference}; 95 % BCa intervals; * = the paired interval excludes 0.\n"]
    for m in metric_names:
        per = {name: aligned[name][m] for name in runs}
        ok = np.all([np.isfinite(v) for v in per.values()], axis=0)
        per = {k: v[ok] for k, v in per.items()}
        result[m] = summarize(per, reference=reference if len(runs) > 1 else None)
        better = "higher" if HIGHER_IS_BETTER.get(m, True) else "lower"
        md.append(f"## {m} ({better} is better)\n\n" + markdown_table(result[m], title="run") + "\n")
    from captum_prior.runner.report import run_agreement

    agreement = run_agreement(aligned, metric_names, HIGHER_IS_BETTER)
    if agreement is not None:
        md.append("## Agreement between metrics\n\n" + agreement.ranking_table() + "\n\n"
                  + agreement.tau_table() + "\n\n" + "\n".join(f"- {t}" for t in agreement.summary()))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "comparison.json"), "w") as fh:
        json.dump({"reference": reference, "n_examples": int(common_idx.size), "metrics": result,
                   "agreement": None if agreement is None else agreement.to_dict()}, fh, indent=1)
    with open(os.path.join(out, "comparison.md"), "w") as fh:
        fh.write("\n".join(md))
    write_report(
        os.path.join(out, "report.html"), result, curves, fractions, runs, common_idx,
        dataset=dataset, reference=reference, n_disagree=n_disagree, agreement=agreement,
    )
    return result
