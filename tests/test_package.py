"""Package set-up: data loading, embedded default, house rules, CLI (issue 2)."""

import gzip
import os
import re
import subprocess
import sys
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
    # an explicit place is the only place searched: no fall-back to another copy
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path))
    monkeypatch.delenv(fashion_mnist.HIDE_SYSTEM_VAR)
    given = tmp_path / "given"
    given.mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load_fashion_mnist("train", path=given)
    msg = str(err.value)
    assert str(given / "train-images-idx3-ubyte.gz") in msg and str(tmp_path / "train-") not in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    monkeypatch.setenv(fashion_mnist.ENV_VAR, str(given))
    with pytest.raises(FileNotFoundError, match="given"):
        load_fashion_mnist("train")
    monkeypatch.setenv(fashion_mnist.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=f"{fashion_mnist.ENV_VAR}=.*nowhere.*names no existing folder"):
        load_fashion_mnist("train")
    with pytest.raises(ValueError, match="split must be"):
        load_fashion_mnist("validation")


def _fake_system_folder(tmp_path, monkeypatch):
    fake = tmp_path / "usr_share_datasets_fashion_mnist"
    fake.mkdir()
    write_idx(fake, "t10k", np.full((3, 28, 28), 7, np.uint8), np.array([1, 2, 3], np.uint8), True)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(fake))
    monkeypatch.delenv(fashion_mnist.ENV_VAR, raising=False)
    return fake


def test_system_dataset_is_hidden_from_the_test_run(tmp_path, monkeypatch):
    # tests/conftest.py hides the Debian folder from the whole run (and the processes it starts)
    assert os.environ.get(fashion_mnist.HIDE_SYSTEM_VAR) == "1"
    fake = _fake_system_folder(tmp_path, monkeypatch)
    with pytest.raises(FileNotFoundError) as err:
        load_fashion_mnist("test")
    assert "not searched" in str(err.value) and "apt-get install dataset-fashion-mnist" in str(err.value)
    # the same call reads the folder once it is not hidden: the check above can fail
    monkeypatch.delenv(fashion_mnist.HIDE_SYSTEM_VAR)
    x, y = load_fashion_mnist("test")
    assert torch.equal(y, torch.tensor([1, 2, 3])) and fake.is_dir()


def test_reading_the_system_dataset_fails_the_test_in_any_process(tmp_path, monkeypatch):
    # the audit hook of tests/_system_data_guard, pointed at a fake system folder and a private log
    import conftest

    guard = conftest.guard
    fake = _fake_system_folder(tmp_path, monkeypatch)
    log = tmp_path / "reads.log"
    monkeypatch.setattr(guard, "WATCHED", [str(fake)])
    monkeypatch.setattr(guard, "LOG_PATH", str(log))
    monkeypatch.delenv(fashion_mnist.HIDE_SYSTEM_VAR)  # a loader that ignored the switch
    with pytest.raises(guard.SystemDataRead, match="must not read the system dataset"):
        load_fashion_mnist("test")
    assert "t10k-images-idx3-ubyte.gz" in log.read_text()
    # a subprocess started by a test inherits the hook (through PYTHONPATH) and the log
    env = dict(os.environ, **{guard.WATCH_VAR: str(fake), guard.LOG_VAR: str(tmp_path / "child.log")})
    code = f"import os\ntry:\n    open({str(fake / 't10k-labels-idx1-ubyte.gz')!r}).close()\nexcept Exception:\n    pass\n"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr  # the child even swallowed the error ...
    assert "t10k-labels-idx1-ubyte.gz" in (tmp_path / "child.log").read_text()  # ... and it is still logged


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
