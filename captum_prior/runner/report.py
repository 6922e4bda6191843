"""A self-contained HTML report: figures embedded as PNG data URIs, no
scripts, no external files, so it opens offline in any browser."""

from __future__ import annotations

import base64
import html
import io
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

__all__ = ["write_report", "disagreement", "run_agreement"]

#: Opposite orderings listed (folded) in the report; the rest are in comparison.json.
MAX_LISTED = 200


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _curve_figure(curves: Mapping[str, Mapping[str, np.ndarray]], metric: str, fractions: np.ndarray) -> Optional[str]:
    from matplotlib.figure import Figure

    from captum_prior.metrics.stats import mean_ci

    have = {run: c[metric] for run, c in curves.items() if metric in c and len(c[metric])}
    if not have:
        return None
    fig = Figure(figsize=(5.2, 3.4))
    ax = fig.subplots()
    for run, c in have.items():
        x = fractions if fractions.size == c.shape[1] else np.linspace(0, 1, c.shape[1])
        bands = [mean_ci(c[:, j], n_resamples=500, method="percentile") for j in range(c.shape[1])]
        mean = np.array([b["mean"] for b in bands])
        ax.plot(x, mean, label=run)
        ax.fill_between(x, [b["low"] for b in bands], [b["high"] for b in bands], alpha=0.25)
    ax.set_xlabel("fraction of pixels " + ("inserted" if metric == "insertion" else
                                           "deleted" if metric == "deletion" else "removed"))
    ax.set_ylabel("score of the target")
    ax.set_title(f"{metric} curves (mean, 95 % CI band)")
    ax.legend(fontsize=8)
    return _png(fig)


def disagreement(attr_dirs: Mapping[str, str], indices: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Per example, the lowest cosine similarity between any two runs' maps.

    Maps are summed over channels and flattened; a low value means that at
    least two methods explain the example differently.

    Parameters
    ----------
    attr_dirs : dict
        Run name -> attribution directory written by ``explain``.
    indices : ndarray
        The examples, as indices into the directories.
    chunk : int, optional
        Examples loaded at a time. Default: 512

    Returns
    -------
    ndarray
        ``(len(indices),)`` similarities in ``[-1, 1]``; all 1 for fewer
        than two runs.
    """
    from captum_prior.runner.store import load_attributions

    names = list(attr_dirs)
    out = np.ones(len(indices))
    if len(names) < 2:
        return out
    for s in range(0, len(indices), chunk):
        idx = indices[s : s + chunk].tolist()
        maps = []
        for name in names:
            a = load_attributions(attr_dirs[name], idx).attributions
            a = a.sum(1) if a.dim() == 4 else a
            maps.append(torch.nn.functional.normalize(a.reshape(len(idx), -1).double(), dim=1))
        low = torch.ones(len(idx), dtype=torch.float64)
        for i in range(len(maps)):
            for j in range(i + 1, len(maps)):
                low = torch.minimum(low, (maps[i] * maps[j]).sum(1))
        out[s : s + len(idx)] = low.numpy()
    return out


def _class_names(dataset: Any, infos: Sequence[Mapping[str, Any]]) -> Optional[List[str]]:
    """Class names from the dataset (``.classes``), or the bundled data's."""
    names = getattr(dataset, "classes", None)
    if isinstance(names, (list, tuple)) and names and all(isinstance(c, str) for c in names):
        return list(names)
    for info in infos:
        data = str((info.get("data_spec") or {}).get("data", ""))
        if data.startswith("fashion-mnist"):
            from captum_prior.models.fashion_cnn import FASHION_CLASSES

            return list(FASHION_CLASSES)
    return None


def _class_label(t: int, names: Optional[Sequence[str]]) -> str:
    return names[t] if names is not None and 0 <= t < len(names) else f"class {t}"


def _grid_figure(dataset: Any, attr_dirs: Mapping[str, str], picks: Sequence[int], sims: Sequence[float],
                 class_names: Optional[Sequence[str]] = None) -> str:
    """Input and maps of every run for ``picks``, on one diverging scale with
    one colour bar (the package's figure convention).  When the runs' maps
    differ in magnitude by more than 3x (e.g. Saliency beside IG), each
    run's maps are divided by that run's 99th percentile of ``|A|`` so that
    none is too faint to read; the colour bar says so."""
    from captum_prior.runner.explain import _load_batch
    from captum_prior.runner.store import load_attributions
    from captum_prior.visualization import plot_attributions

    x, _ = _load_batch(dataset, list(picks))
    stored = {n: load_attributions(d, list(picks)) for n, d in attr_dirs.items()}
    maps = {n: s.attributions.float() for n, s in stored.items()}
    targets = next(iter(stored.values())).target.tolist()
    imgs = x.float()
    if imgs.dim() != 4 or imgs.shape[1] not in (1, 3):
        imgs = None
    else:
        lo = imgs.amin(dim=(1, 2, 3), keepdim=True)
        hi = imgs.amax(dim=(1, 2, 3), keepdim=True)
        imgs = (imgs - lo) / (hi - lo).clamp_min(1e-12)
    scale = {n: float(np.percentile(np.abs(m.sum(1).numpy() if m.dim() == 4 else m.numpy()), 99)) or 1.0
             for n, m in maps.items()}
    label = "attribution"
    if max(scale.values()) > 3 * min(scale.values()):
        maps = {n: m / scale[n] for n, m in maps.items()}
        label = "attribution / the run's 99th pct of |A|"
    rows = [f"#{i} {_class_label(int(t), class_names)}\ncos {s:.2f}" for i, t, s in zip(picks, targets, sims)]
    fig = plot_attributions(imgs, maps, rows, colorbar_label=label, panel_size=1.8, fontsize=8)
    return _png(fig)


def _direction(metric: str) -> str:
    from captum_prior.runner.evaluate import HIGHER_IS_BETTER

    if metric not in HIGHER_IS_BETTER:
        return ""
    return "higher is better" if HIGHER_IS_BETTER[metric] else "lower is better"


def _table(metric: str, summary: Mapping[str, Mapping[str, Any]], reference: str) -> str:
    from captum_prior.metrics.stats import format_ci

    rows = ["<tr><th>run</th><th>mean [95 % CI]</th><th>n</th>"
            f"<th>paired Δ vs {html.escape(reference)} [95 % CI]</th></tr>"]
    for name, e in summary.items():
        vs = e.get("vs", {}).get(reference)
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{format_ci(e)}</td><td>{e['n']}</td>"
            f"<td>{format_ci(vs) if vs else '—'}</td></tr>"
        )
    d = _direction(metric)
    head = f"{html.escape(metric)} <small>({d})</small>" if d else html.escape(metric)
    return f"<h3>{head}</h3><table>" + "".join(rows) + "</table>"


def run_agreement(aligned: Mapping[str, Mapping[str, np.ndarray]], metrics: Sequence[str],
                  higher_is_better: Mapping[str, bool], seed: int = 0) -> Any:
    """:func:`~captum_prior.metrics.agreement.metric_agreement` of runs.

    Parameters
    ----------
    aligned : dict
        Run -> metric -> per-example values, the same examples in the same
        order for every run.
    metrics : sequence of str
        The metrics to compare; those without a direction in
        ``higher_is_better`` are left out.
    higher_is_better : dict
        Metric -> whether larger is better.
    seed : int, optional
        Seed of the bootstrap. Default: 0

    Returns
    -------
    AgreementResult or None
        None when no metric or no run is left.

    Examples
    --------
    >>> import numpy as np
    >>> from captum_prior.runner.report import run_agreement
    >>> rng = np.random.default_rng(0)
    >>> aligned = {"A": {"insertion": rng.random(12)}, "B": {"insertion": rng.random(12)}}
    >>> run_agreement(aligned, ["insertion", "sanity"], {"insertion": True}).metrics
    ['insertion']
    """
    from captum_prior.metrics.agreement import metric_agreement

    metrics = [m for m in metrics if m in higher_is_better]
    if not metrics or not aligned:
        return None
    values = {m: {run: aligned[run][m] for run in aligned} for m in metrics}
    return metric_agreement(values, higher_is_better, seed=seed)


def _settings(runs: Mapping[str, str]) -> List[Dict[str, Any]]:
    """Per run: the explain call's method, arguments, target, seed, model and
    data, read from the manifests."""
    from captum_prior.runner.store import read_manifest

    out = []
    for name, d in runs.items():
        row: Dict[str, Any] = {"run": name}
        try:
            minfo = read_manifest(d)
            adir = minfo["info"]["attributions_dir"]
            am = read_manifest(adir)
        except (OSError, KeyError, ValueError):
            out.append(row)
            continue
        ident, info = am.get("identity", {}), am.get("info", {})
        margs = {k: v for k, v in (ident.get("method_args") or {}).items() if k != "name"}
        akw = {k: v for k, v in (ident.get("attribute_kwargs") or {}).items()
               if isinstance(v, (int, float, str, bool))}
        row.update(
            method=ident.get("method"), arguments={**margs, **akw}, target=ident.get("target"),
            seed=ident.get("seed"), model=info.get("model_spec") or ident.get("model"),
            data=(info.get("data_spec") or {}).get("data") or ident.get("dataset"),
            metric_seed=minfo.get("identity", {}).get("seed"), info=info,
            attributions_dir=adir, mprt_layers=minfo.get("info", {}).get("mprt_layers"),
        )
        out.append(row)
    return out


def _class_counts(attr_dir: Optional[str], indices: np.ndarray, names: Optional[Sequence[str]]) -> str:
    from captum_prior.runner.store import load_attributions

    if not attr_dir or not os.path.isdir(attr_dir) or len(indices) == 0:
        return "unknown"
    t = load_attributions(attr_dir, [int(i) for i in indices]).target.numpy()
    vals, counts = np.unique(t, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    parts = [f"{_class_label(int(vals[j]), names)} ({int(counts[j])})" for j in order[:12]]
    more = f", and {len(vals) - 12} more" if len(vals) > 12 else ""
    return f"{len(vals)} explained class(es): " + ", ".join(parts) + more


def _verdict_html(agreement: Any, n: int, runs: Mapping[str, str], settings: Sequence[Mapping[str, Any]],
                  classes: str) -> str:
    from captum_prior.metrics.agreement import MIN_EXAMPLES

    esc = html.escape
    parts = ["<section id='verdict'><h2>Verdict</h2>"]
    if n < MIN_EXAMPLES:
        parts.append(f"<p class='warn'><b>Too few examples to decide:</b> {n} paired example(s); "
                     f"at least {MIN_EXAMPLES} are needed before a lead is called significant.</p>")
    if len(runs) < 2:
        parts.append("<p>One run: there is no method to compare it with.</p>")
    if agreement is not None:
        rows = ["<tr><th>metric</th><th>better</th><th>leader</th><th>runner-up</th>"
                "<th>paired lead [95 % CI]</th><th>status</th></tr>"]
        for m in agreement.metrics:
            e = agreement.leaders[m]
            d = e.get("difference")
            ci = f"{d['mean']:.3g} [{d['low']:.3g}, {d['high']:.3g}]" if d else "—"
            cls = {"significant": "ok", "n too small": "warn"}.get(e["status"], "")
            rows.append(
                f"<tr><td>{esc(m)}</td><td>{'higher' if agreement.higher_is_better[m] else 'lower'}</td>"
                f"<td><b>{esc(str(e['leader']))}</b></td><td>{esc(str(e['runner_up'] or '—'))}</td>"
                f"<td>{ci}</td><td class='{cls}'>{esc(e['status'])}</td></tr>"
            )
        parts.append("<table>" + "".join(rows) + "</table>")
        parts.append("<ul>" + "".join(f"<li>{esc(agreement.leaders[m]['text'])}</li>" for m in agreement.metrics)
                     + "</ul>")
        if agreement.disagreements:
            conflicts = agreement.conflicts
            strong = sum(c["n_significant"] for c in conflicts)
            n_metric_pairs = len(agreement.metrics) * (len(agreement.metrics) - 1) // 2
            parts.append(
                f"<p class='warn'><b>The metrics disagree:</b> {len(conflicts)} of {n_metric_pairs} pair(s) "
                f"of metrics rank some runs in opposite order ({len(agreement.disagreements)} opposite "
                f"ordering(s), {strong} with both differences significant); see "
                "<a href='#agreement'>agreement</a>.</p>")
        elif len(agreement.metrics) > 1 and len(agreement.methods) > 1:
            parts.append("<p>The metrics order the methods' means the same way.</p>")
    parts.append(f"<p><b>Examples:</b> {n} paired. <b>Classes:</b> {esc(classes)}.</p>")
    rows = ["<tr><th>run</th><th>method</th><th>arguments</th><th>target</th><th>seed</th>"
            "<th>model</th><th>data</th></tr>"]
    for r in settings:
        args = ", ".join(f"{k}={v}" for k, v in sorted((r.get("arguments") or {}).items()))
        rows.append("<tr>" + "".join(f"<td>{esc(str(r.get(k, '—')))}</td>" for k in ("run", "method"))
                    + f"<td>{esc(args) or '—'}</td>"
                    + "".join(f"<td>{esc(str(r.get(k, '—')))}</td>" for k in ("target", "seed", "model", "data"))
                    + "</tr>")
    parts.append("<h3>Settings</h3><table>" + "".join(rows) + "</table></section>")
    return "".join(parts)


def _agreement_html(agreement: Any) -> str:
    esc = html.escape
    parts = ["<section id='agreement'><h2>Do the metrics agree?</h2>"]
    if agreement is None or len(agreement.metrics) < 2 or len(agreement.methods) < 2:
        parts.append("<p>Agreement needs at least two metrics and two runs.</p></section>")
        return "".join(parts)
    rows = ["<tr><th>metric</th><th>better</th><th>ranking, best first (mean)</th></tr>"]
    for m in agreement.metrics:
        rank = " &gt; ".join(f"{esc(k)} ({agreement.means[m][k]:.3g})" for k in agreement.rankings[m])
        rows.append(f"<tr><td>{esc(m)}</td><td>{'higher' if agreement.higher_is_better[m] else 'lower'}</td>"
                    f"<td>{rank}</td></tr>")
    parts.append("<table>" + "".join(rows) + "</table>")
    head = "".join(f"<th>{esc(m)}</th>" for m in agreement.metrics)
    rows = [f"<tr><th>Kendall τ [95 % CI]</th>{head}</tr>"]
    for a in agreement.metrics:
        cells = []
        for b in agreement.metrics:
            if a == b:
                cells.append("<td>1</td>")
                continue
            e = agreement.tau.get((a, b)) or agreement.tau.get((b, a)) or {}
            t = e.get("tau")
            txt = "—" if t is None else f"{t:.2f}" + (f" [{e['low']:.2f}, {e['high']:.2f}]" if e.get("low") is not None else "")
            cls = "" if t is None else ("bad" if t < 0 else "ok" if t > 0 else "")
            cells.append(f"<td class='{cls}'>{txt}</td>")
        rows.append(f"<tr><th>{esc(a)}</th>{''.join(cells)}</tr>")
    parts.append(f"<p>Kendall's τ-b between the metrics' rankings of the {len(agreement.methods)} runs "
                 "(1: same order, -1: reversed), with a 95 % percentile bootstrap interval over the "
                 f"{agreement.n_examples} examples (resampled jointly for all metrics and runs).</p>")
    parts.append("<table>" + "".join(rows) + "</table>")
    if agreement.disagreements:
        parts.append("<p>Per pair of metrics: how many pairs of runs the two rank in opposite order, "
                     "naming those where both metrics' paired differences are significant.</p>")
        parts.append("<ul>" + "".join(f"<li>{esc(t)}</li>" for t in agreement.summary()) + "</ul>")
        shown = agreement.disagreements[:MAX_LISTED]
        rest = len(agreement.disagreements) - len(shown)
        more = (f"<p>… and {rest} more in comparison.json (<code>agreement.disagreements</code>).</p>"
                if rest > 0 else "")
        parts.append(f"<details><summary>All {len(agreement.disagreements)} opposite ordering(s)</summary>"
                     "<ul>" + "".join(f"<li>{esc(t)}</li>" for t in shown) + f"</ul>{more}</details>")
    else:
        parts.append("<p>No two metrics order any two runs oppositely.</p>")
    parts.append("</section>")
    return "".join(parts)


def _sanity_html(curves: Mapping[str, Mapping[str, np.ndarray]], settings: Sequence[Mapping[str, Any]],
                 threshold: float = 0.5) -> str:
    from captum_prior.metrics.agreement import MIN_EXAMPLES
    from captum_prior.metrics.sanity import _verdict
    from captum_prior.metrics.stats import mean_ci
    from captum_prior.visualization import plot_similarity_curves

    have = {run: c["mprt"] for run, c in curves.items() if "mprt" in c and len(c["mprt"])}
    if not have:
        return ""
    layers = next((r.get("mprt_layers") for r in settings if r.get("mprt_layers")), None)
    n_steps = next(iter(have.values())).shape[1]
    if not layers or len(layers) != n_steps:
        layers = [f"step {j + 1}" for j in range(n_steps)]
    esc = html.escape
    parts = ["<section id='sanity'><h2>Sanity check: model-parameter randomisation</h2>",
             "<p>Each run's method was re-run on copies of the model whose layers were re-drawn at "
             "random, from the output layer down (cascading, Adebayo et al. 2018). The curve is the "
             "Spearman rank correlation of |map| with the trained model's map; a method that depends "
             "on what the model learned falls towards 0. A method fails when the lower 95 % bound "
             f"with all the listed layers randomised stays above {threshold:g}; below {MIN_EXAMPLES} examples no "
             "verdict is given. The signed-map, SSIM and HOG similarities, independent randomisation "
             "and the random-logit test are in captum_prior.metrics.sanity.model_randomization_test.</p>"]
    rows = ["<tr><th>run</th><th>similarity, all listed layers randomised [95 % CI]</th><th>verdict</th></tr>"]
    texts = []
    for run, c in have.items():
        ok = np.isfinite(c[:, -1])
        final = mean_ci(c[ok, -1])
        v = _verdict(run, final, "spearman_abs", threshold, "cascading", layers, MIN_EXAMPLES)
        cls = {"fails": "bad", "passes": "ok"}.get(v["status"], "warn")
        rows.append(f"<tr><td>{esc(run)}</td><td>{final['mean']:.3f} [{final['low']:.3f}, "
                    f"{final['high']:.3f}] (n = {final['n']})</td><td class='{cls}'>{v['status']}</td></tr>")
        texts.append(v["text"])
    parts.append("<table>" + "".join(rows) + "</table>")
    parts.append("<ul>" + "".join(f"<li>{esc(t)}</li>" for t in texts) + "</ul>")
    fig = plot_similarity_curves(layers, have, threshold=threshold,
                                 title="similarity to the trained model's maps (mean, 95 % bootstrap band)")
    parts.append(f"<img alt='model randomisation curves' src='{_png(fig)}'></section>")
    return "".join(parts)


def write_report(
    path: str,
    result: Mapping[str, Mapping[str, Mapping[str, Any]]],
    curves: Mapping[str, Mapping[str, np.ndarray]],
    fractions: np.ndarray,
    runs: Mapping[str, str],
    indices: np.ndarray,
    dataset: Any = None,
    reference: Optional[str] = None,
    n_disagree: int = 8,
    agreement: Any = None,
    class_names: Optional[Sequence[str]] = None,
) -> str:
    """Write the self-contained HTML report of compared runs.

    In order: a verdict (the leader under each metric with its direction,
    whether its paired lead over the runner-up is significant, or that n is
    too small; how many examples; which classes; every run's settings), the
    agreement between metrics (rankings, Kendall's tau with CIs, one
    sentence per pair of metrics that order some runs oppositely, the full
    list folded), the model-randomisation sanity check when ``mprt`` was
    scored, the metric curves per run with 95 % bands, the paired-difference
    tables, and (with ``dataset``) a grid of the examples whose attribution
    maps disagree most between the runs, with class names and one colour
    bar.  :func:`~captum_prior.runner.evaluate.compare_runs` calls it.

    Parameters
    ----------
    path : str
        The HTML file to write.
    result : dict
        Metric -> run -> summary (``mean``, ``low``, ``high``, ``n`` and
        ``vs``: paired differences), as in ``comparison.json``.
    curves : dict
        Run -> metric -> ``N x K`` per-example curves.
    fractions : ndarray
        The x-axis of the insertion/deletion curves.
    runs : dict
        Run name -> metric directory.
    indices : ndarray
        The paired examples.
    dataset : Dataset, optional
        For the grid of maps; None leaves the grid out. Default: None
    reference : str, optional
        The run of the paired-difference columns. Default: the first run
    n_disagree : int, optional
        Examples in the grid. Default: 8
    agreement : AgreementResult, optional
        The metrics' agreement; None leaves the tables out. Default: None
    class_names : sequence of str, optional
        Class names; default the dataset's ``.classes`` or the bundled
        data's names. Default: None

    Returns
    -------
    str
        ``path``.
    """
    reference = reference or next(iter(runs))
    settings = _settings(runs)
    names = list(class_names) if class_names is not None else _class_names(
        dataset, [r.get("info") or {} for r in settings])
    first_attr = next((r.get("attributions_dir") for r in settings if r.get("attributions_dir")), None)
    classes = _class_counts(first_attr, np.asarray(indices), names)
    style = ("<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px}"
             "img{max-width:100%}.ok{background:#e3f4e3}.bad{background:#fbe0e0}.warn{background:#fff3cd}"
             "section{margin-bottom:2em}small{color:#555}</style>")
    parts: List[str] = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>captum-prior evaluation</title>",
        style + "</head><body>",
        f"<h1>captum-prior evaluation</h1><p>{len(runs)} run(s), {len(indices)} paired examples. "
        "Intervals: 95 % bootstrap (BCa, scipy.stats.bootstrap); a * marks a paired "
        "difference whose interval excludes 0.</p>",
        _verdict_html(agreement, len(indices), runs, settings, classes),
        _agreement_html(agreement),
        _sanity_html(curves, settings),
    ]
    curve_metrics = ["insertion", "deletion"] + [m for m in result if m not in ("insertion", "deletion", "mprt")]
    for metric in curve_metrics:  # every per-example curve the metric directories hold
        uri = _curve_figure(curves, metric, fractions)
        if uri:
            d = _direction(metric)
            parts.append(f"<h2>{html.escape(metric)} curves" + (f" <small>({d})</small>" if d else "")
                         + f"</h2><img alt='{html.escape(metric)} curves' src='{uri}'>")
    parts.append("<h2>Means and paired differences</h2>")
    for metric, summary in result.items():
        parts.append(_table(metric, summary, reference))
    if dataset is not None and len(runs) > 1 and n_disagree > 0:
        attr_dirs = {r["run"]: r["attributions_dir"] for r in settings if r.get("attributions_dir")}
        if len(attr_dirs) == len(runs) and all(os.path.isdir(d) for d in attr_dirs.values()):
            sims = disagreement(attr_dirs, indices)
            order = np.argsort(sims, kind="stable")[: min(n_disagree, len(indices))]
            picks = [int(indices[j]) for j in order]
            uri = _grid_figure(dataset, attr_dirs, picks, [float(sims[j]) for j in order], names)
            parts.append(
                "<h2>Where the methods disagree most</h2><p>Examples with the lowest "
                "cosine similarity between any two runs' maps (summed over channels); rows name the "
                "explained class. Red: evidence for the class, blue: against, white: 0.</p>"
                f"<img alt='disagreement grid' src='{uri}'>"
            )
    parts.append("</body></html>")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(p for p in parts if p))
    return path
