"""Package set-up: data loading, embedded default, house rules, CLI (issue 2)."""

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import captum_prior
from captum_prior.data import (
    fashion_mnist,
    load_fashion_mnist,
    load_fashion_mnist_sample,
)
from captum_prior.models import FASHION_CLASSES, load_fashion_cnn

PKG = Path(captum_prior.__file__).parent


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool) -> None:
    op = gzip.open if gz else open
    suffix = ".gz" if gz else ""
    with op(folder / f"{prefix}-images-idx3-ubyte{suffix}", "wb") as f:
        f.write(b"\x00\x00\x08\x03" + np.array(images.shape, ">i4").tobytes() + images.tobytes())
    with op(folder / f"{prefix}-labels-idx1-ubyte{suffix}", "wb") as f:
        f.write(b"\x00\x00\x08\x01" + np.array(labels.shape, ">i4").tobytes() + labels.tobytes())


@pytest.mark.parametrize("gz", [True, False])
def test_load_fashion_mnist_reads_idx_from_given_path(tmp_path, gz):
    imgs = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    labels = np.array([4, 0, 9], dtype=np.uint8)
    write_idx(tmp_path, "t10k", imgs, labels, gz)
    x, y = load_fashion_mnist("test", path=tmp_path)
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(y, torch.tensor([4, 0, 9]))
    assert torch.allclose(x[1, 0], torch.from_numpy(imgs[1]).float() / 255)


def test_load_fashion_mnist_env_var_and_missing_files(tmp_path, monkeypatch):
    write_idx(tmp_path, "train", np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.uint8), True)
    monkeypatch.setenv(fashion_mnist.ENV_VAR, str(tmp_path))
    assert load_fashion_mnist("train")[0].shape == (2, 1, 28, 28)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as err:
        load_fashion_mnist("test", path=tmp_path / "given")
    msg = str(err.value)
    for place in (tmp_path / "given", tmp_path, tmp_path / "nowhere"):
        assert str(place / "t10k-images-idx3-ubyte.gz") in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    with pytest.raises(ValueError, match="split must be"):
        load_fashion_mnist("validation")


def test_embedded_default_model_and_sample():
    weights = PKG / "assets" / "fashion_cnn.safetensors"
    assert weights.stat().st_size <= 1_000_000
    x, y = load_fashion_mnist_sample()
    assert x.shape == (500, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    model = load_fashion_cnn()
    assert not model.training
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc >= 0.88  # >= 90 % on the full test set (benchmarks/results)
    assert len(FASHION_CLASSES) == 10
    with pytest.raises(ValueError, match="n must be a positive int"):
        load_fashion_mnist_sample(0)


def test_house_rules_private_captum_imports_and_no_torchvision():
    private = re.compile(r"^\s*(from|import)\s+captum\.(_utils|attr\._utils|attr\._core|metrics\._)", re.M)
    tv = re.compile(r"^\s*(import torchvision|from torchvision)", re.M)
    for f in PKG.rglob("*.py"):
        text = f.read_text()
        if f.name != "_compat.py":
            assert not private.search(text), f"private Captum import outside _compat.py: {f}"
        assert not tv.search(text), f"torchvision imported in {f}"


def test_public_exports_resolve():
    import captum_prior.attr as attr
    import captum_prior.priors as priors

    for mod, names in ((attr, ["ExpectedGradients", "DeepPriorExpectedGradients"]),
                       (priors, ["MGMPrior", "BGMMPrior", "MaskPrior"])):
        for n in names:
            assert n in mod.__all__ and callable(getattr(mod, n))
    with pytest.raises(AttributeError):
        attr.NoSuchMethod  # noqa: B018


def test_cli_demo_writes_png(tmp_path, capsys):
    from captum_prior.cli import main

    out = tmp_path / "demo.png"
    assert main(["demo", "--n-images", "2", "--n-samples", "8", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert str(out) in capsys.readouterr().out
    assert main([]) == 2
