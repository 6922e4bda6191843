"""captum_prior.runner: sharded, resumable, per-example deterministic dataset attribution."""

from __future__ import annotations

import json
import os

import pytest
import torch
from captum.attr import GradientShap, IntegratedGradients, Saliency

from captum_prior.attr import BayLime, ExpectedGradients
from captum_prior.errors import CaptumPriorError
from captum_prior.runner import (
    ManifestMismatchError,
    attribute_dataset,
    example_seed,
    load_attributions,
)
from captum_prior.runner.evaluate import compare_runs, evaluate_attributions


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    from captum_prior.data import load_fashion_mnist_sample
    from captum_prior.models import load_fashion_cnn

    model = load_fashion_cnn()
    x, y = load_fashion_mnist_sample(20)
    return model, torch.utils.data.TensorDataset(x, y), x


def _eg(setup, out, **kw):
    model, ds, x = setup
    args = dict(batch_size=5, shard_size=8, progress=False)
    args.update(kw)
    return attribute_dataset(
        ExpectedGradients(model), ds, out, {"baselines": x[:6], "n_samples": 3}, **args
    )


def test_example_seed_depends_only_on_seed_and_index():
    assert example_seed(0, 5) == example_seed(0, 5)
    assert len({example_seed(0, i) for i in range(100)}) == 100
    assert example_seed(1, 5) != example_seed(0, 5)


# Batched calls (one generator per example) give every example the same draws
# whatever the batch; batched kernels may still round differently with another
# number of rows, hence a float32-rounding tolerance across batch sizes.
_ROUNDING = dict(rtol=1e-5, atol=1e-5)


def test_results_do_not_depend_on_batch_or_shard_size(setup, tmp_path):
    _eg(setup, tmp_path / "a", batch_size=3, shard_size=8)
    _eg(setup, tmp_path / "b", batch_size=20, shard_size=20)
    a, b = load_attributions(tmp_path / "a"), load_attributions(tmp_path / "b")
    assert a.index.tolist() == list(range(20))
    torch.testing.assert_close(a.attributions, b.attributions, **_ROUNDING)
    torch.testing.assert_close(a.delta, b.delta, **_ROUNDING)
    # and they are the method's own output for that example and seed
    model, ds, x = setup
    ref = ExpectedGradients(model).attribute(
        x[7:8], x[:6], target=a.target[7:8], n_samples=3,
        generator=torch.Generator().manual_seed(example_seed(0, 7)),
    )
    torch.testing.assert_close(ref, a.attributions[7:8], **_ROUNDING)
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["complete"] and len(m["shards"]) == 3 and m["identity"]["randomness"] == "generators"
    # another seed changes the draws, far beyond rounding
    _eg(setup, tmp_path / "c", batch_size=3, shard_size=8, seed=1)
    c = load_attributions(tmp_path / "c")
    assert (c.attributions - a.attributions).abs().max() > 1e-2


def test_batched_generators_match_one_call_per_example(setup, tmp_path):
    """randomness="generators" (one call per batch, one generator per example)
    gives what one call per example with that example's generator gives."""
    _eg(setup, tmp_path / "batched", batch_size=7, shard_size=8)
    _eg(setup, tmp_path / "single", batch_size=7, shard_size=8, randomness="generator")
    a, b = load_attributions(tmp_path / "batched"), load_attributions(tmp_path / "single")
    torch.testing.assert_close(a.attributions, b.attributions, **_ROUNDING)
    torch.testing.assert_close(a.delta, b.delta, **_ROUNDING)
    ident = json.loads((tmp_path / "single" / "manifest.json").read_text())["identity"]
    assert ident["randomness"] == "generator"
    # the same batch and shard sizes give the same bits (resume, several ranks)
    _eg(setup, tmp_path / "again", batch_size=7, shard_size=8)
    again = load_attributions(tmp_path / "again")
    assert torch.equal(a.attributions, again.attributions) and torch.equal(a.delta, again.delta)


def test_randomness_choice_per_method(setup, tmp_path):
    """auto: batched with per-example generators for EG and for VPG without
    its discrete valid-feature filter and with fixed baselines; per example
    for DeepPrior-EG (the prior may couple a batch's images) and for the
    other VPG settings (a filter flip or an optimized-baseline sign step can
    amplify a batched kernel's rounding; the range may be inferred from the
    batch)."""
    from captum_prior.attr import DeepPriorExpectedGradients, ValidPathGradients
    from captum_prior.runner.explain import _detect_randomness

    model, ds, x = setup
    eg = ExpectedGradients(model)
    assert _detect_randomness(eg, {"baselines": x[:6]}) == "generators"
    assert _detect_randomness(eg, {"baselines": lambda: x[:6]}) == "generator"
    dp = DeepPriorExpectedGradients(model, 0.0)
    assert _detect_randomness(dp, {"baselines": x[:6]}) == "generator"
    vpg = ValidPathGradients(model)
    assert _detect_randomness(vpg, {"input_range": (0.0, 1.0)}) == "generator"
    assert _detect_randomness(vpg, {"baselines": 0.0}) == "generator"
    assert _detect_randomness(vpg, {}) == "generator"
    ig_like = ValidPathGradients(model, filter_path_features=False)
    assert _detect_randomness(ig_like, {"baselines": 0.0}) == "generators"
    assert _detect_randomness(ig_like, {"baselines": lambda: 0.0}) == "generator"
    assert _detect_randomness(ig_like, {"input_range": (0.0, 1.0)}) == "generator"
    with pytest.raises(ValueError, match="randomness='generators'.*'generator' argument"):
        attribute_dataset(Saliency(model), ds, tmp_path / "s", randomness="generators",
                          progress=False)


def test_vpg_monte_carlo_batched_matches_per_example(setup, tmp_path):
    from captum_prior.attr import ValidPathGradients

    model, ds, x = setup
    kw = {"method": "monte_carlo", "n_steps": 6, "baselines": 0.0}
    sub = torch.utils.data.Subset(ds, range(8))
    for name, rnd in (("b", "auto"), ("s", "generator")):
        attribute_dataset(ValidPathGradients(model, filter_path_features=False), sub, tmp_path / name,
                          kw, batch_size=4, shard_size=8, randomness=rnd, progress=False)
    a, b = load_attributions(tmp_path / "b"), load_attributions(tmp_path / "s")
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["identity"]["randomness"] == "generators"
    torch.testing.assert_close(a.attributions, b.attributions, **_ROUNDING)
    torch.testing.assert_close(a.delta, b.delta, **_ROUNDING)


def test_load_subset_reads_only_its_shards(setup, tmp_path):
    _eg(setup, tmp_path / "a")
    full = load_attributions(tmp_path / "a")
    os.remove(tmp_path / "a" / "shard-00000.safetensors")  # the subset must not need it
    part = load_attributions(tmp_path / "a", [17, 9, 16])
    assert part.index.tolist() == [17, 9, 16]
    assert torch.equal(part.attributions, full.attributions[[17, 9, 16]])
    assert torch.equal(load_attributions(tmp_path / "a", range(8, 10)).target, full.target[8:10])
    with pytest.raises(FileNotFoundError):
        load_attributions(tmp_path / "a", [0])
    with pytest.raises(KeyError, match="indices"):
        load_attributions(tmp_path / "a", [20])


def test_mismatching_manifest_is_refused(setup, tmp_path):
    model, ds, x = setup
    _eg(setup, tmp_path / "a")
    with pytest.raises(ManifestMismatchError, match="seed: stored 0, asked 1"):
        _eg(setup, tmp_path / "a", seed=1)
    with pytest.raises(ManifestMismatchError, match="method"):
        attribute_dataset(Saliency(model), ds, tmp_path / "a", shard_size=8, progress=False)
    # the field that differs is named by its path, with both values in full
    with pytest.raises(ManifestMismatchError, match=r"attribute_kwargs\.n_samples: stored 3, asked 4\)"):
        attribute_dataset(
            ExpectedGradients(model), ds, tmp_path / "a", {"baselines": x[:6], "n_samples": 4},
            batch_size=5, shard_size=8, progress=False,
        )


def test_directory_holding_something_else_is_refused(setup, tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "notes.txt").write_text("mine")
    with pytest.raises(CaptumPriorError, match="not empty"):
        _eg(setup, tmp_path / "o")
    (tmp_path / "f").write_text("x")
    with pytest.raises(CaptumPriorError, match="not a directory"):
        _eg(setup, tmp_path / "f")


def test_resume_skips_finished_and_redoes_corrupt_shards(setup, tmp_path):
    out = tmp_path / "a"
    _eg(setup, out)
    full = load_attributions(out)
    s0, s1 = out / "shard-00000.safetensors", out / "shard-00001.safetensors"
    t0 = s0.stat().st_mtime_ns
    s1.write_bytes(s1.read_bytes()[:100])  # truncated: checksum no longer matches
    _eg(setup, out)
    assert s0.stat().st_mtime_ns == t0
    assert torch.equal(load_attributions(out, verify=True).attributions, full.attributions)


def test_float16_and_constant_target(setup, tmp_path):
    model, ds, x = setup
    attribute_dataset(
        IntegratedGradients(model), ds, tmp_path / "ig", {"baselines": 0.0, "n_steps": 4},
        target=3, shard_size=8, float16=True, progress=False,
    )
    st = load_attributions(tmp_path / "ig", dtype=None)
    assert st.attributions.dtype == torch.float16 and (st.target == 3).all()
    ref = IntegratedGradients(model).attribute(x, baselines=0.0, target=3, n_steps=4)
    torch.testing.assert_close(st.attributions.float(), ref, atol=2e-3, rtol=2e-2)


def test_global_rng_methods_seeded_per_example(setup, tmp_path):
    model, ds, x = setup
    kw = {"baselines": x[:6], "n_samples": 3}
    for name, bs in (("a", 3), ("b", 10)):
        torch.manual_seed(123 + bs)  # the global state before the call must not matter
        attribute_dataset(GradientShap(model), ds, tmp_path / name, kw, batch_size=bs,
                          shard_size=10, progress=False)
    a, b = load_attributions(tmp_path / "a"), load_attributions(tmp_path / "b")
    assert torch.equal(a.attributions, b.attributions)
    assert a.delta.shape == (20, 3)  # GradientShap gives one delta per sample


def test_object_random_state_bay_lime(setup, tmp_path):
    from captum_prior.attr.dmm_men_attribution import patch_feature_mask

    model, ds, x = setup
    sub = torch.utils.data.Subset(ds, range(4))
    kw = {"feature_mask": patch_feature_mask((1, 28, 28), 7), "n_samples": 12}
    for name, bs in (("a", 1), ("b", 4)):
        attribute_dataset(BayLime(model, random_state=0), sub, tmp_path / name, kw,
                          batch_size=bs, shard_size=2, progress=False)
    a, b = load_attributions(tmp_path / "a"), load_attributions(tmp_path / "b")
    assert torch.equal(a.attributions, b.attributions)
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["identity"]["randomness"] == "object_random_state"


def test_bad_arguments(setup, tmp_path):
    model, ds, x = setup
    with pytest.raises(ValueError, match="empty"):
        attribute_dataset(Saliency(model), torch.utils.data.TensorDataset(x[:0]), tmp_path / "e")
    with pytest.raises(ValueError, match="target"):
        attribute_dataset(Saliency(model), ds, tmp_path / "t", target="nope")
    with pytest.raises(ValueError, match="label"):
        attribute_dataset(Saliency(model), torch.utils.data.TensorDataset(x), tmp_path / "l",
                          target="label", progress=False)
    with pytest.raises(ValueError, match="randomness"):
        attribute_dataset(Saliency(model), ds, tmp_path / "r", randomness="sometimes")


def test_evaluate_compare_and_report(setup, tmp_path):
    model, ds, x = setup
    sub = torch.utils.data.Subset(ds, range(12))
    attribute_dataset(IntegratedGradients(model), sub, tmp_path / "ig",
                      {"baselines": 0.0, "n_steps": 8}, shard_size=6, progress=False)
    attribute_dataset(Saliency(model), sub, tmp_path / "sal", shard_size=6, progress=False)
    kw = {"insertion_deletion": {"n_steps": 7}}
    runs = {}
    for name in ("ig", "sal"):
        runs[name] = evaluate_attributions(tmp_path / name, model, sub, tmp_path / f"ev_{name}",
                                           metrics="deletion,insertion", metric_kwargs=kw,
                                           batch_size=4, progress=False)
    summ = json.loads((tmp_path / "ev_ig" / "summary.json").read_text())
    d = summ["metrics"]["deletion"]
    assert d["n"] == 12 and d["low"] <= d["mean"] <= d["high"]
    csv_lines = (tmp_path / "ev_ig" / "per_example.csv").read_text().splitlines()
    assert csv_lines[0] == "index,deletion,insertion" and len(csv_lines) == 13
    # resumable: a second call rewrites no shard
    t = (tmp_path / "ev_ig" / "shard-00000.safetensors").stat().st_mtime_ns
    evaluate_attributions(tmp_path / "ig", model, sub, tmp_path / "ev_ig", metrics="deletion,insertion",
                          metric_kwargs=kw, batch_size=4, progress=False)
    assert (tmp_path / "ev_ig" / "shard-00000.safetensors").stat().st_mtime_ns == t
    with pytest.raises(ManifestMismatchError):
        evaluate_attributions(tmp_path / "ig", model, sub, tmp_path / "ev_ig", metrics="deletion",
                              progress=False)
    res = compare_runs(runs, tmp_path / "cmp", dataset=sub)
    vs = res["deletion"]["sal"]["vs"]["ig"]
    from captum_prior.metrics.stats import paired_difference
    from captum_prior.runner.evaluate import load_metrics

    a, b = load_metrics(runs["sal"])[0]["deletion"], load_metrics(runs["ig"])[0]["deletion"]
    assert vs["mean"] == pytest.approx(paired_difference(a, b)["mean"])
    page = (tmp_path / "cmp" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # two curve plots + the disagreement grid
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "deletion" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_evaluate_refuses_unfinished_or_wrong_dataset(setup, tmp_path):
    model, ds, x = setup
    attribute_dataset(Saliency(model), ds, tmp_path / "s", shard_size=8, progress=False)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_attributions(tmp_path / "s", model, ds, tmp_path / "e", metrics="AUC")
    with pytest.raises(ValueError, match="examples"):
        evaluate_attributions(tmp_path / "s", model, torch.utils.data.Subset(ds, range(3)), tmp_path / "e")
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    m["complete"] = False
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="not finished"):
        evaluate_attributions(tmp_path / "s", model, ds, tmp_path / "e")


def test_forward_pass_count_matches_the_metrics(setup):
    """The count printed before evaluate starts (and its progress bars' total)
    is what the metrics send through the model."""
    from captum_prior.runner.evaluate import (
        _CountingModel,
        _score_batch,
        forward_passes_per_example,
    )

    model, ds, x = setup
    xb = x[:3]
    attrs = torch.randn(xb.shape, generator=torch.Generator().manual_seed(0))
    target = model(xb).argmax(1)
    cases = [
        ("deletion,insertion", {}),
        ("deletion,insertion", {"insertion_deletion": {"n_steps": 9}}),
        ("insertion", {"insertion_deletion": {"n_steps": 5}}),
        ("KAM,RAM", {"keep_remove": {"masker": "mean"}}),
        ("KPM,RNM", {"keep_remove": {"masker": "mean", "percent": 0.05}}),
        ("sensitivity-n", {"sensitivity_n": {"n_subsets": 4, "fractions": (0.2, 0.5)}}),
    ]
    for metrics, kw in cases:
        seen = []
        counted = _CountingModel(model, seen.append)
        _score_batch(counted, xb, attrs, target, metrics.split(","), kw, 0)
        low, high = forward_passes_per_example(metrics, xb.shape[1:], kw)
        assert sum(seen) == counted.rows
        assert 3 * low <= counted.rows <= 3 * high, (metrics, kw, low, high, counted.rows)
        if metrics != "KPM,RNM":  # only curves of positive/negative units stop early
            assert low == high and counted.rows == 3 * low, (metrics, kw, low, counted.rows)
    assert forward_passes_per_example("deletion,insertion", (1, 28, 28))[0] == 2 * 28 + 1
