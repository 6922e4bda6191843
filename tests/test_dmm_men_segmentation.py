"""SLIC superpixels and patches as feature masks; SLIC as DMM-MEN's default."""

import numpy as np
import pytest
import torch

from captum_prior.attr import DMMMENAttribution
from captum_prior.attr.dmm_men_attribution import patch_feature_mask as old_path
from captum_prior.proxy import DMMMEN
from captum_prior.segmentation import patch_feature_mask, slic_feature_mask


def _blobs(n=2, seed=0):
    """Images of a few flat rectangles: superpixels must follow their edges."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    for i in range(n):
        x[i, 0, 3:14, 4:20] = 0.8
        x[i, 0, 16:26, 10:25] = 0.4
        x[i] += 0.02 * torch.rand(1, 28, 28, generator=g)
    return x


def test_slic_mask_shape_ids_and_edges():
    x = _blobs()
    m = slic_feature_mask(x, n_segments=30)
    assert m.shape == x.shape and m.dtype == torch.long
    for i in range(len(x)):
        ids = torch.unique(m[i])
        assert torch.equal(ids, torch.arange(len(ids)))  # consecutive 0..n-1
        assert 10 <= len(ids) <= 60
        # no superpixel straddles the bright rectangle's border
        inside = torch.zeros(28, 28, dtype=torch.bool)
        inside[3:14, 4:20] = True
        for s in ids:
            where = m[i, 0] == s
            frac = (where & inside).sum() / where.sum()
            assert frac < 0.2 or frac > 0.8
    # more segments asked, more given; deterministic
    assert int(slic_feature_mask(x[:1], n_segments=80).max()) > int(m[0].max())
    assert torch.equal(slic_feature_mask(x, n_segments=30), m)


def test_slic_mask_shapes_colour_constant_and_errors():
    rgb = torch.rand(3, 32, 32)
    m = slic_feature_mask(rgb, n_segments=20)
    assert m.shape == (3, 32, 32)
    assert torch.equal(m[0], m[2])  # channels share a pixel's id
    assert slic_feature_mask(torch.rand(20, 20)).shape == (20, 20)
    assert int(slic_feature_mask(torch.ones(1, 1, 10, 10)).max()) == 0
    with pytest.raises(ValueError, match="NaN"):
        slic_feature_mask(torch.full((1, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        slic_feature_mask(torch.rand(1, 1, 1, 8, 8))
    with pytest.raises(TypeError):
        slic_feature_mask(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="n_segments"):
        slic_feature_mask(torch.rand(8, 8), n_segments=0)


def test_patch_mask_still_available_from_both_modules():
    assert old_path is patch_feature_mask
    m = patch_feature_mask((1, 28, 28), 7)
    assert m.shape == (1, 1, 28, 28) and int(m.max()) == 15


def test_dmm_men_attribution_defaults_to_superpixels():
    """feature_mask=None on an image batch: one coefficient per SLIC
    superpixel, constant within it, and the same as passing the mask."""
    x = _blobs(1, seed=3)
    w = torch.zeros(1, 28, 28)
    w[0, 3:14, 4:20] = 1.0

    def f(inp):
        return (inp * w).flatten(1).sum(1, keepdim=True)

    est = DMMMEN(
        n_components=2, n_penalties=1, n_iter=40, n_chains=1, check_convergence=False
    )
    a = DMMMENAttribution(f, estimator=est).attribute(
        x, target=0, n_samples=120, random_state=0
    )
    mask = slic_feature_mask(x)
    b = DMMMENAttribution(f, estimator=est).attribute(
        x, target=0, n_samples=120, random_state=0, feature_mask=mask
    )
    torch.testing.assert_close(a, b)
    for s in torch.unique(mask):
        vals = a[mask == s]
        assert torch.all(vals == vals[0])
    # superpixels on the weighted rectangle matter more than the others
    inside = (mask == mask[0, 0, 8, 10]).squeeze()
    assert a[0, 0][inside].mean() > a[0, 0][~(w[0] > 0)].abs().mean()
