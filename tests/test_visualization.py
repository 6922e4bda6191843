"""captum_prior.visualization: one colour convention, colour bars, shared scales, legends."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from captum_prior.visualization import (  # noqa: E402
    DIVERGING_CMAP,
    SEQUENTIAL_CMAP,
    attribution_grid,
    image_grid,
    plot_attributions,
    plot_curves,
    plot_images,
    plot_intervals,
)


def _heat_images(fig):
    """AxesImages of the heat maps (not the input column, not colour bars)."""
    out = []
    for ax in fig.axes:
        for im in ax.get_images():
            if im.get_cmap().name in (DIVERGING_CMAP, SEQUENTIAL_CMAP):
                out.append(im)
    return out


def _colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def _data():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 1, 8, 8, generator=g)
    # methods with very different magnitudes: a shared scale must not hide that
    attrs = {"small": 0.01 * torch.randn(3, 1, 8, 8, generator=g),
             "large": 5.0 * torch.randn(3, 1, 8, 8, generator=g)}
    return images, attrs


def test_grid_panels_share_one_symmetric_scale_by_default():
    images, attrs = _data()
    fig = plot_attributions(images, attrs, row_titles=["a", "b", "c"])
    assert isinstance(fig, Figure)
    heat = _heat_images(fig)
    assert len(heat) == 6  # 3 rows x 2 methods
    clims = {im.get_clim() for im in heat}
    assert len(clims) == 1, f"panels are on different scales: {clims}"
    lo, hi = clims.pop()
    assert lo == -hi > -np.inf and hi > 0  # symmetric: white is zero
    # the scale is set by the large method; the small one is then nearly white
    large = np.abs(np.stack([a[0].numpy() for a in attrs["large"]]))
    assert hi == pytest.approx(np.percentile(large.ravel().tolist() + np.abs(attrs["small"].numpy()).ravel().tolist(), 99))
    assert all(im.get_cmap().name == DIVERGING_CMAP for im in heat)
    cbs = _colorbars(fig)
    assert len(cbs) == 1 and "shared scale" in cbs[0].get_ylabel()
    titles = [ax.get_title() for ax in fig.axes]
    assert "small" in titles and "large" in titles


def test_per_panel_scale_is_an_option_and_labelled():
    images, attrs = _data()
    fig = plot_attributions(images, attrs, scale="per_panel")
    heat = _heat_images(fig)
    assert len({im.get_clim() for im in heat}) == 6
    assert len(_colorbars(fig)) == 6  # every heat map gets its own colour bar
    assert "own" in fig._suptitle.get_text()


def test_non_negative_maps_use_the_sequential_map_from_zero():
    images, attrs = _data()
    fig = plot_attributions(images, attrs, sign="absolute_value")
    heat = _heat_images(fig)
    assert {im.get_cmap().name for im in heat} == {SEQUENTIAL_CMAP}
    (lo, hi), = {im.get_clim() for im in heat}
    assert lo == 0 and hi > 0


def test_rgb_channels_are_summed_and_zero_maps_do_not_fail():
    images = torch.rand(2, 3, 6, 6)
    attrs = {"zeros": torch.zeros(2, 3, 6, 6), "ones": torch.ones(2, 3, 6, 6)}
    fig = plot_attributions(images, attrs)
    heat = _heat_images(fig)
    np.testing.assert_allclose(heat[1].get_array(), np.full((6, 6), 3.0))
    assert heat[0].get_clim()[1] == pytest.approx(3.0)


def test_bad_arguments_raise_value_errors_naming_them():
    images, attrs = _data()
    with pytest.raises(ValueError, match="scale"):
        plot_attributions(images, attrs, scale="per_row")
    with pytest.raises(ValueError, match="sign"):
        plot_attributions(images, attrs, sign="pos")
    with pytest.raises(ValueError, match="row_titles"):
        plot_attributions(images, attrs, row_titles=["one"])
    with pytest.raises(ValueError, match="rows"):
        plot_attributions(images, {"a": attrs["small"], "b": attrs["large"][:2]})


def test_curves_have_a_legend_labels_and_a_band():
    x = torch.linspace(0, 1, 5)
    curves = {"insertion": {"IG": torch.rand(4, 5), "EG": torch.rand(4, 5)},
              "deletion": {"IG": torch.rand(4, 5), "EG": torch.rand(4, 5)}}
    fig = plot_curves(x, curves, xlabel="fraction", ylabel="p(class)",
                      label_values={"insertion": {"IG": 0.5}})
    axes = [ax for ax in fig.axes if ax.get_lines()]
    assert len(axes) == 2
    for ax in axes:
        leg = ax.get_legend()
        assert leg is not None and {t.get_text().split(" ")[0] for t in leg.get_texts()} == {"IG", "EG"}
        assert ax.get_xlabel() == "fraction"
        assert len(ax.collections) == 2  # one CI band per method
    assert "IG (0.500)" in [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert "95% CI" in fig._suptitle.get_text()


def test_intervals_have_a_legend_and_whiskers():
    est = {"KPM": {"IG": (0.5, 0.4, 0.6), "EG": {"mean": 0.7, "low": 0.6, "high": 0.8, "n": 3}},
           "RPM": {"IG": (0.2, 0.1, 0.3), "EG": (0.1, 0.0, 0.2)}}
    fig = plot_intervals(est, xlabel="score", better={"KPM": "higher"})
    assert len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["IG", "EG"]
    assert "higher is better" in fig.axes[0].get_title()


def test_file_writing_forms_keep_their_call_form(tmp_path):
    images, attrs = _data()
    p = attribution_grid(images, attrs, tmp_path / "g.png", row_titles=["a", "b", "c"])
    assert p == str(tmp_path / "g.png") and (tmp_path / "g.png").stat().st_size > 1000
    p = image_grid(images, tmp_path / "i.png", titles=["a", "b", "c"], ncols=2)
    assert (tmp_path / "i.png").stat().st_size > 500
    assert isinstance(plot_images(images), Figure)


def test_library_never_uses_pyplot():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    images, attrs = _data()
    plot_attributions(images, attrs)
    plot_curves(np.arange(3), {"a": np.ones(3)})
    assert plt.get_fignums() == before


def test_single_panel_intervals_are_labelled_by_their_axis():
    fig = plot_intervals({"a": (1.0, 0.5, 1.5), "b": (0.0, -1.0, 1.0)}, reference=0.0)
    assert not fig.legends
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a", "b"]
    fig = plot_intervals({"a": (1.0, 0.5, 1.5)}, legend=True)
    assert len(fig.legends) == 1
