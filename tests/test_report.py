"""The evaluation report: verdict, metric agreement, MPRT sanity section,
maps with class names; `evaluate --metric mprt` sharded and resumable."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, Saliency

from captum_prior.cli import main
from captum_prior.models.fashion_cnn import FASHION_CLASSES
from captum_prior.runner import attribute_dataset, load_attributions
from captum_prior.runner.evaluate import (
    compare_runs,
    evaluate_attributions,
    load_metrics,
)
from captum_prior.runner.store import read_manifest

warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")

METRICS = "deletion,insertion,road-morf,road-lerf,mprt"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    base = ["explain", "--model", "fashion-cnn", "--data", "fashion-mnist-test-sample", "--limit", "16",
            "--shard-size", "8", "--no-progress"]
    assert main(base + ["--method", "saliency", "--out", str(d / "sal")]) == 0
    assert main(base + ["--method", "integrated-gradients", "--n-steps", "8", "--out", str(d / "ig")]) == 0
    argv = ["evaluate", "--attributions", str(d / "sal"), str(d / "ig"), "--metric", METRICS,
            "--batch-size", "8", "--out", str(d / "ev"), "--no-progress"]
    assert main(argv) == 0
    return d, argv


def test_mprt_metric_sharded_and_resumable(evaluated):
    d, argv = evaluated
    ev = d / "ev" / "saliency"
    header = (ev / "per_example.csv").read_text().splitlines()[0]
    assert header == "index,deletion,insertion,road-morf,road-lerf,mprt"
    man = read_manifest(ev)
    assert man["info"]["mprt_layers"] == ["fc", "conv3.0", "conv2.0", "conv1.0"]
    vals, curves, _ = load_metrics(ev)
    assert curves["mprt"].shape == (16, 4)
    np.testing.assert_allclose(vals["mprt"], curves["mprt"].mean(1), rtol=1e-6)
    # the same numbers as the library call on one batch
    from captum_prior.data import load_fashion_mnist_sample
    from captum_prior.metrics.sanity import mprt_scores
    from captum_prior.models import load_fashion_cnn

    x, _ = load_fashion_mnist_sample(8)
    t = load_attributions(d / "sal", list(range(8))).target
    ref = mprt_scores(Saliency, load_fashion_cnn().eval(), x, t)
    np.testing.assert_allclose(curves["mprt"][:8], ref["curve_mprt"].numpy(), atol=1e-6)
    # ROAD at dataset scale: the library call on the same batch, the same seed
    from captum_prior.metrics import road

    a = load_attributions(d / "sal", list(range(8))).attributions
    r = road(load_fashion_cnn().eval(), x, a, target=t, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(vals["road-morf"][:8], r.morf.numpy(), atol=1e-6)
    np.testing.assert_allclose(vals["road-lerf"][:8], r.lerf.numpy(), atol=1e-6)
    # resuming rewrites no shard
    stamps = {p: os.stat(ev / p).st_mtime_ns for p in os.listdir(ev) if p.startswith("shard-")}
    assert len(stamps) == 2
    assert main(argv) == 0
    assert stamps == {p: os.stat(ev / p).st_mtime_ns for p in stamps}


def test_report_verdict_agreement_and_sanity(evaluated):
    d, _ = evaluated
    page = (d / "ev" / "report.html").read_text()
    pos = [page.index(s) for s in ("<h2>Verdict</h2>", "<h2>Do the metrics agree?</h2>",
                                   "<h2>Sanity check: model-parameter randomisation</h2>",
                                   "<h2>Means and paired differences</h2>")]
    assert pos == sorted(pos)
    verdict = page[pos[0]:pos[1]]
    for m, d_ in (("deletion", "lower"), ("insertion", "higher"), ("road-morf", "lower"),
                  ("road-lerf", "higher"), ("mprt", "lower")):
        assert f"<td>{m}</td><td>{d_}</td>" in verdict
    assert "16 paired" in verdict and "fashion-mnist-test-sample" in verdict and "n_steps=8" in verdict
    t0 = int(load_attributions(d / "sal", [0]).target[0])
    assert FASHION_CLASSES[t0] in verdict  # classes by name
    assert "Kendall" in page[pos[1]:pos[2]]
    sanity = page[pos[2]:pos[3]]
    assert "<td>saliency</td>" in sanity and "class='ok'>passes" in sanity
    assert "integrated-gradients FAILS" in sanity  # |IG| keeps the input's zero background
    cmp = json.loads((d / "ev" / "comparison.json").read_text())
    ag = cmp["agreement"]
    assert ag["higher_is_better"] == {"deletion": False, "insertion": True, "road-morf": False,
                                      "road-lerf": True, "mprt": False}
    assert ag["rankings"]["mprt"] == ["saliency", "integrated-gradients"]
    assert len(ag["tau"]) == 10 and all(-1 <= e["tau"] <= 1 for e in ag["tau"])
    # every opposite ordering of the two runs has its sentence
    means = ag["means"]
    sign = {m: (1 if ag["higher_is_better"][m] else -1) for m in means}
    best = {m: max(means[m], key=lambda k: sign[m] * means[m][k]) for m in means}
    n_opposite = sum(best[a] != best[b] for i, a in enumerate(means) for b in list(means)[i + 1:])
    assert len(ag["disagreements"]) == n_opposite
    assert all("in opposite order" in s for s in ag["disagreements"])
    # the page summarises them per pair of metrics, the full list folded
    assert sum(c["n_opposite"] for c in ag["conflicts"]) == n_opposite
    agree = page[pos[1]:pos[2]]
    for c in ag["conflicts"]:
        assert html.escape(c["text"]) in agree
    assert ("<details><summary>All " in agree) == (n_opposite > 0)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert page.count("data:image/png;base64,") == 4  # MPRT curves, 2 metric curves, map grid
    assert "Agreement between metrics" in (d / "ev" / "comparison.md").read_text()


def _sobel(model, inputs, target=None):
    k = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    return (F.conv2d(inputs, k, padding=1) ** 2 + F.conv2d(inputs, k.transpose(2, 3), padding=1) ** 2).sqrt()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from captum_prior.data import load_fashion_mnist_sample
    from captum_prior.models import load_fashion_cnn

    d = tmp_path_factory.mktemp("small")
    model = load_fashion_cnn().eval()
    x, y = load_fashion_mnist_sample(6)
    ds = torch.utils.data.TensorDataset(x, y)
    attribute_dataset(Saliency(model), ds, d / "sal", progress=False)
    attribute_dataset(IntegratedGradients(model), ds, d / "ig", {"n_steps": 4}, progress=False)
    return d, model, ds


def test_report_flags_model_independent_method_and_small_n(small):
    d, model, ds = small
    runs = {
        "edges": evaluate_attributions(d / "sal", model, ds, d / "ev_edges", metrics="deletion,mprt",
                                       mprt_method=_sobel, progress=False),
        "saliency": evaluate_attributions(d / "sal", model, ds, d / "ev_sal", metrics="deletion,mprt",
                                          mprt_method=Saliency, progress=False),
    }
    np.testing.assert_allclose(load_metrics(runs["edges"])[0]["mprt"], 1.0, atol=1e-9)
    compare_runs(runs, d / "cmp", dataset=ds)
    page = (d / "cmp" / "report.html").read_text()
    assert "Too few examples to decide" in page and "6 paired" in page
    sanity = page[page.index("<h2>Sanity check"):page.index("<h2>Means and")]
    assert "<td>edges</td><td>1.000 [1.000, 1.000] (n = 6)</td><td class='warn'>n too small" in sanity
    assert "n too small" in page


def test_mprt_needs_a_method_for_api_runs(small):
    d, model, ds = small
    with pytest.raises(ValueError, match="mprt_method"):
        evaluate_attributions(d / "ig", model, ds, d / "ev_x", metrics="mprt", progress=False)
    from captum_prior.runner.store import ManifestMismatchError

    evaluate_attributions(d / "ig", model, ds, d / "ev_y", metrics="mprt", mprt_method=Saliency, progress=False)
    # resuming with another method is refused rather than mixed into the same directory
    with pytest.raises(ManifestMismatchError):
        evaluate_attributions(d / "ig", model, ds, d / "ev_y", metrics="mprt", mprt_method=_sobel,
                              progress=False)


def test_one_run_report(small):
    d, model, ds = small
    runs = {"ig": evaluate_attributions(d / "ig", model, ds, d / "ev_ig", metrics="deletion", progress=False)}
    compare_runs(runs, d / "cmp1", dataset=ds)
    page = (d / "cmp1" / "report.html").read_text()
    assert "One run: there is no method to compare it with." in page
    assert "Agreement needs at least two metrics and two runs." in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium (Debian package) not installed")
def test_report_renders_in_chromium(evaluated, tmp_path):
    from PIL import Image

    d, _ = evaluated
    shot = tmp_path / "shot.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1200,2400", f"--screenshot={shot}", (d / "ev" / "report.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape == (2400, 1200)
    assert (img < 128).mean() > 0.01  # text and figures were drawn, not a blank page
