"""Nothing is lost: rejected training steps and interrupted saves (issue 11)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from captum_prior import CaptumPriorWarning, ModelOutputError
from captum_prior.proxy import DMMMEN
from captum_prior.training import AttributionPriorTrainer


def bn_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Softplus(),
        nn.Flatten(), nn.Linear(4 * 8 * 8, 3),
    )


def snapshot(trainer):
    model = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    opt = trainer.optimizer.state_dict()
    opt_state = {k: {n: (t.clone() if torch.is_tensor(t) else t) for n, t in s.items()}
                 for k, s in opt["state"].items()}
    return model, opt_state, repr(opt["param_groups"])


def assert_bitwise_equal(a, b):
    ma, oa, ga = a
    mb, ob, gb = b
    assert ma.keys() == mb.keys()
    for k in ma:  # bitwise: same dtype, and identical bytes
        assert ma[k].dtype == mb[k].dtype and torch.equal(ma[k].view(torch.uint8) if ma[k].dim() else ma[k],
                                                          mb[k].view(torch.uint8) if mb[k].dim() else mb[k]), k
    assert oa.keys() == ob.keys()
    for k in oa:
        for n in oa[k]:
            x, y = oa[k][n], ob[k][n]
            assert torch.equal(x, y) if torch.is_tensor(x) else x == y, (k, n)
    assert ga == gb


def nan_penalty(attributions):
    return attributions.sum() * float("nan")


@pytest.mark.parametrize("alternating", [True, False])
@pytest.mark.parametrize("optimizer", ["sgd_momentum", "adam"])
def test_rejected_step_leaves_model_and_optimiser_bitwise_unchanged(alternating, optimizer):
    model = bn_cnn()
    opt = (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if optimizer == "sgd_momentum"
           else torch.optim.Adam(model.parameters(), lr=1e-2))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(6, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])
    good = AttributionPriorTrainer(model, opt, lam=0.0)
    good.step(x, y)  # the optimiser now has state (momentum / Adam moments)
    trainer = AttributionPriorTrainer(model, opt, penalty=nan_penalty, lam=0.5, alternating=alternating,
                                      generator=torch.Generator().manual_seed(1))
    before = snapshot(trainer)
    with pytest.raises(ModelOutputError, match="penalty"):
        trainer.step(x, y)
    assert_bitwise_equal(before, snapshot(trainer))
    # with the option, the batch is skipped with a warning, still changing nothing
    trainer.on_nonfinite = "skip"
    with pytest.warns(CaptumPriorWarning, match="penalty"):
        rec = trainer.step(x, y)
    assert rec["skipped"] is True
    assert_bitwise_equal(before, snapshot(trainer))
    # and a good step afterwards does change the model (the test could fail)
    trainer.penalty = lambda a: a.abs().mean()
    assert trainer.step(x, y)["skipped"] is False
    after = snapshot(trainer)
    assert any(not torch.equal(before[0][k], after[0][k]) for k in before[0])


def test_non_finite_loss_from_huge_inputs_changes_nothing():
    model = bn_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = AttributionPriorTrainer(model, opt, lam=0.0)
    before = snapshot(trainer)
    x = torch.full((4, 1, 8, 8), 3e38)  # finite, but the model overflows
    with pytest.raises(ModelOutputError, match="NaN or Inf"):
        trainer.step(x, torch.tensor([0, 1, 2, 0]))
    assert_bitwise_equal(before, snapshot(trainer))  # BatchNorm running stats included


def test_nan_batch_is_rejected_before_the_forward():
    model = bn_cnn()
    trainer = AttributionPriorTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), lam=0.0)
    before = snapshot(trainer)
    x = torch.rand(4, 1, 8, 8)
    x[2, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        trainer.step(x, torch.tensor([0, 1, 2, 0]))
    assert_bitwise_equal(before, snapshot(trainer))


# -------------------------------------------------------------------- saves
@pytest.fixture(scope="module")
def two_models():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ np.array([1.0, -1.0, 0.0]) + 0.1 * rng.normal(size=40)
    a = DMMMEN(n_components=2, n_iter=20, random_state=0).fit(X, y)
    b = DMMMEN(n_components=2, n_iter=20, random_state=1).fit(X, 2 * y)
    return a, b, X


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
def test_interrupted_save_leaves_the_previous_file_intact(tmp_path, monkeypatch, two_models, interrupt):
    import safetensors.torch as st

    old, new, X = two_models
    path = tmp_path / "model.safetensors"
    old.save(path)
    before = path.read_bytes()
    real_save = st.save_file

    def dies_half_way(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as fh:  # the write is cut off half way
            fh.truncate(os.path.getsize(filename) // 2)
        raise interrupt("simulated crash during save")

    monkeypatch.setattr(st, "save_file", dies_half_way)
    with pytest.raises(interrupt):
        new.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # no temp file left
    np.testing.assert_array_equal(DMMMEN.load(path).predict(X), old.predict(X))
    new.save(path)  # a completed save replaces it
    np.testing.assert_array_equal(DMMMEN.load(path).predict(X), new.predict(X))
