"""Tests of JGMMExplainer on the default FashionCNN and the shipped sample."""

import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from torch.utils.data import DataLoader, TensorDataset

from captum_prior.data import load_fashion_mnist_sample
from captum_prior.models import load_fashion_cnn
from captum_prior.proxy import JGMMExplainer, JointGaussianMixture
from captum_prior.proxy.jgmm_explainer import _UpperNetwork


@pytest.fixture(scope="module")
def fitted():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny problems: avoid OpenMP contention on 2 shared cores
    model = load_fashion_cnn()
    x, _ = load_fashion_mnist_sample()
    xtr, xte = x[:400], x[400:]
    ex = JGMMExplainer(model, "conv2", mixture=JointGaussianMixture(n_lower=12, max_iter=150), pool_grid=2,
                       random_state=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ex.fit(xtr)
    yield model, ex, xtr, xte
    torch.set_num_threads(old)


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_fit_reads_two_layers_with_hooks_then_removes_them(fitted):
    model, ex, xtr, _ = fitted
    assert _no_hooks(model)
    m = ex.mixture_
    # higher layer defaults to the logits: K_y = 10 classes, D_y = 10
    assert m.n_higher_features_in_ == 10 and m.weights_.shape == (10,)
    # lower: conv2 (64 x 14 x 14) pooled to 2 x 2, spatial: R = 4 positions of 64
    assert (m.n_positions_, m.n_features_in_) == (4, 64)
    assert m.Q_.shape == (4, 12, 10)
    # each component maps to a class; initialised from the model's classes
    assert sorted(ex.component_classes_.tolist()) == list(range(10))
    # model left in train mode if it was in train mode
    model.train()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            JGMMExplainer(model, "conv2", mixture=JointGaussianMixture(n_lower=4, max_iter=5), random_state=0,
                          progress=False).fit(xtr[:64])
        assert model.training and _no_hooks(model)
    finally:
        model.eval()


def test_proxy_accuracy_matches_definition_and_is_faithful(fitted):
    model, ex, _, xte = fitted
    acc = ex.proxy_accuracy(xte)
    low, _, out, _ = ex.extract(xte)
    pw = ex.mixture_.predict_proba(low)
    cls = torch.zeros(len(xte), 10, dtype=pw.dtype).index_add_(1, ex.component_classes_, pw).argmax(1)
    with torch.no_grad():
        model_pred = model(xte).argmax(1)
    assert acc == pytest.approx(float((cls == model_pred).double().mean()))
    # 100 held-out images, proxy fitted on 400 with K_x = 12: modest but far
    # above chance (0.1); benchmarks/results/jgmm_proxy_table1.md has full-size numbers
    assert acc > 0.45, acc


def test_upper_network_reproduces_the_model_without_pooling(fitted):
    model, ex, xtr, _ = fitted
    from captum_prior._features import layer_features

    x = xtr[:16]
    fmap, out = layer_features(model, model.conv2, x, with_outputs=True)
    upper = _UpperNetwork(model, model.conv2, (1, 28, 28), torch.float32, tuple(fmap.shape[1:]), torch.device("cpu"))
    with torch.no_grad():
        torch.testing.assert_close(upper(fmap), out, rtol=1e-5, atol=1e-5)
    assert _no_hooks(model)
    # decide() anchored on the example itself reproduces the model's decision exactly
    feats = ex._ex_lower[:64]
    torch.testing.assert_close(ex.decide(feats, xtr[:64]), ex._ex_decisions[:64])
    # an anchored map is the anchor changed so that its pooled grid equals the features
    pooled = torch.nn.functional.adaptive_avg_pool2d(fmap, 2)
    target = torch.roll(pooled, 1, 0)
    full = upper.full_map(target, fmap)
    torch.testing.assert_close(torch.nn.functional.adaptive_avg_pool2d(full, 2), target, rtol=1e-5, atol=1e-5)
    # and the smallest such change: the difference is constant on each pooling cell
    diff = (full - fmap).reshape(16, 64, 2, 7, 2, 7)
    torch.testing.assert_close(diff, diff[:, :, :, :1, :, :1].expand_as(diff))
    assert _no_hooks(model)


def test_prototypes_mined_and_sampled(fitted):
    _, ex, _, _ = fitted
    r = ex.prototypes(3, n=5)
    lp = ex.mixture_.log_prob_given_higher(ex._ex_lower)[:, 3]
    assert r.kind == "prototype" and r.source == "mined" and len(r) == 5
    assert int(r.indices[0]) == int(lp.argmax())
    torch.testing.assert_close(r.scores, lp[r.indices].float())
    assert bool((r.scores[:-1] >= r.scores[1:]).all())
    assert r.inputs.shape == (5, 1, 28, 28) and r.decisions.shape == (5,)
    torch.testing.assert_close(r.decisions, ex._ex_decisions[r.indices])
    s1 = ex.prototypes(3, n=6, source="sampled", random_state=5)
    s2 = ex.prototypes(3, n=6, source="sampled", random_state=5)
    assert s1.source == "sampled" and len(s1) == 6
    torch.testing.assert_close(s1.features, s2.features)
    assert s1.features.shape == (6, 4, 64) and s1.inputs.shape == (6, 1, 28, 28)
    # samples of p(x | w=3) are mostly explained by component 3
    comp = ex.mixture_.predict(s1.features)
    assert float((comp == 3).double().mean()) >= 0.5
    low = ex.prototypes(2, n=4, level="lower")
    assert low.info["level"] == "lower" and len(low) == 4


def test_criticisms_are_normalised_and_ranked(fitted):
    _, ex, _, _ = fitted
    r = ex.criticisms(6, n_reference=500, random_state=0)
    assert r.kind == "criticism" and len(r) == 6
    assert bool(((r.scores >= 0) & (r.scores <= 1)).all())
    assert bool((r.scores[:-1] >= r.scores[1:]).all())
    again = ex.criticism_scores(r.features, n_reference=500, random_state=0)
    torch.testing.assert_close(again.float(), r.scores)
    every = ex.criticism_scores(ex._ex_lower, n_reference=500, random_state=0)
    assert float(r.scores[0]) == pytest.approx(float(every.max()))
    # the typical example is much less critical than the criticisms
    assert float(every.median()) < float(r.scores.min())


def test_influential_is_entropy_of_p_w_given_x(fitted):
    _, ex, _, _ = fitted
    r = ex.influential(5)
    p = ex.mixture_.predict_proba(ex._ex_lower)
    ent = -(p * p.clamp_min(1e-300).log()).sum(1)
    assert int(r.indices[0]) == int(ent.argmax())
    torch.testing.assert_close(r.scores, ent[r.indices].float())
    assert r.info["top2"].shape == (5, 2)
    s = ex.influential(4, source="sampled", n_samples=400, random_state=1)
    assert s.source == "sampled" and len(s) == 4 and bool((s.scores > 0).all())


def test_counterfactuals_and_semifactuals_respect_their_constraints(fitted):
    model, ex, _, xte = fitted
    q = xte[0]
    with torch.no_grad():
        q_dec = int(model(q[None]).argmax(1))
    found = 0
    for k in range(12):  # sampled counterfactuals are rare: search a few queries
        qk = xte[k]
        with torch.no_grad():
            dk = int(model(qk[None]).argmax(1))
        cf = ex.counterfactuals(qk, n=5, max_distance=3.0, n_samples=300, random_state=k)
        assert cf.info["query_decision"] == dk
        assert len(cf) == min(5, cf.info["n_accepted"])
        assert cf.info["decoder"] == "linear inverse"
        if len(cf) == 0:
            continue
        found += 1
        assert bool((cf.decisions != dk).all()) and bool((cf.distances <= 3.0).all())
        # the decision carried is the model's decision on the features through the decoder
        torch.testing.assert_close(cf.decisions, ex.decide(cf.features))
        coef = cf.info["coefficients"]
        torch.testing.assert_close(torch.as_tensor(cf.info["component"]), coef.argmax(1))
        assert bool((cf.scores[:-1] >= cf.scores[1:]).all())
        break
    assert found > 0
    cm = ex.counterfactuals(q, n=5, max_distance=3.0, source="mined")
    assert len(cm) == 5 and bool((cm.decisions != q_dec).all()) and bool((cm.distances <= 3.0).all())
    torch.testing.assert_close(cm.decisions, ex._ex_decisions[cm.indices])
    sf = ex.semifactuals(q, n=5, min_distance=0.5, n_samples=400, random_state=0)
    assert len(sf) > 0 and bool((sf.decisions == q_dec).all()) and bool((sf.distances >= 0.5).all())
    sm = ex.semifactuals(q, n=5, source="mined")
    assert bool((sm.decisions == q_dec).all())
    assert _no_hooks(model)


def test_optimal_alpha_is_a_vertex_and_scores_follow_eq7_eq9(fitted):
    _, ex, _, xte = fitted
    q_low, _ = ex._query(xte[3])
    m = ex.mixture_
    pz = m.predict_lower_proba(q_low)[0]  # R x Kx
    psi = m.Psi_  # R x Kx x Ky
    r_, kx, ky = psi.shape
    for kind in ("counterfactual", "semifactual"):
        coef = ex._coefficients(q_low, kind)
        for r in range(r_):
            # brute force of eq. 8 / the eq. 9 analogue
            brute = torch.zeros(kx, dtype=torch.float64)
            for i in range(kx):
                for j in range(ky):
                    if kind == "counterfactual":
                        brute[i] += psi[r, i, j] * (1 - psi[r, i, j]) * pz[r, i]
                    else:
                        brute[i] += psi[r, i, j] * sum(psi[r, k, j] * pz[r, k] for k in range(kx) if k != i)
            torch.testing.assert_close(coef[r], brute)
            # the LP max_alpha alpha.c s.t. sum alpha = 1, alpha >= 0 has the vertex optimum
            lp = linprog(-coef[r].numpy(), A_eq=np.ones((1, kx)), b_eq=[1.0], bounds=[(0, None)] * kx)
            assert -lp.fun == pytest.approx(float(coef[r].max()), abs=1e-9)
    # eq. 7 score of candidates = mean over positions of sum_i p(z=i|x) c_i
    coef = ex._coefficients(q_low, "counterfactual")
    cand = ex._ex_lower[:7]
    pzc = m.predict_lower_proba(cand)
    torch.testing.assert_close(ex._local_scores(cand, coef), (pzc * coef[None]).sum(2).mean(1).float(),
                               check_dtype=False)


def test_dataloader_equals_tensor_input_and_explicit_higher_layer(fitted):
    model, _, xtr, _ = fitted
    x = xtr[:160]
    kw = dict(mixture=JointGaussianMixture(n_lower=6, max_iter=20), pool_grid=2, random_state=3, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = JGMMExplainer(model, "conv2", **kw).fit(x)
        b = JGMMExplainer(model, "conv2", **kw).fit(DataLoader(TensorDataset(x, torch.zeros(160)), batch_size=50))
        torch.testing.assert_close(a.mixture_.lower_means_, b.mixture_.lower_means_)
        c = JGMMExplainer(model, model.conv2, higher_layer="conv3",
                          mixture=JointGaussianMixture(n_lower=5, n_higher=4, max_iter=20), pool_grid=1,
                          spatial=False, random_state=0, progress=False).fit(x)
    assert c.mixture_.n_higher_features_in_ == 64 and c.mixture_.weights_.shape == (4,)
    assert c.mixture_.n_features_in_ == 64 and c.mixture_.n_positions_ == 1
    assert 0.0 <= c.proxy_accuracy(x[:40]) <= 1.0
    assert _no_hooks(model)


def test_explainer_bad_input(fitted):
    model, ex, xtr, _ = fitted
    with pytest.raises(NotFittedError):
        JGMMExplainer(model, "conv2").prototypes(0)
    with pytest.raises(ValueError, match="unknown source"):
        ex.prototypes(0, source="generated")
    with pytest.raises(ValueError, match="j must be <= 9"):
        ex.prototypes(10)
    with pytest.raises(ValueError, match="x_query must be one input"):
        ex.counterfactuals(xtr[:2])
    with pytest.raises(ValueError, match="min_distance=2.0 exceeds max_distance=1.0"):
        ex.semifactuals(xtr[0], min_distance=2.0, max_distance=1.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_lower'"):
        JGMMExplainer(model, "conv2", n_lower=3)
    with pytest.raises(TypeError, match="mixture must be None or a captum_prior.proxy.JointGaussianMixture"):
        JGMMExplainer(model, "conv2", mixture=dict(n_lower=3))
    with pytest.raises(ValueError, match="not a submodule"):
        JGMMExplainer(model, "conv9")
    with pytest.raises(ValueError, match="spatial=True needs a 4-D"):
        JGMMExplainer(model, "fc", progress=False).fit(xtr[:20])
    bad = xtr[:20].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        JGMMExplainer(model, "conv2", progress=False).fit(bad)
