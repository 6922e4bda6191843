"""The command line: explain/evaluate, one-line exit-2 errors, kill -9 and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from captum_prior.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _env(extra_path: str = "") -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), extra_path) if p)
    env["OMP_NUM_THREADS"] = "1"
    env.pop("CAPTUM_PRIOR_DEBUG", None)
    return env


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """40 shipped Fashion-MNIST images as a .safetensors file."""
    from safetensors.torch import save_file

    from captum_prior.data import load_fashion_mnist_sample

    d = tmp_path_factory.mktemp("data")
    x, y = load_fashion_mnist_sample(40)
    save_file({"inputs": x, "labels": y}, str(d / "tiny.safetensors"))
    return d / "tiny.safetensors"


def _fail(capsys, argv):
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    return lines[0]


def _png(path: Path, size, mode="L"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=128).save(path)


def test_explain_and_evaluate_in_process(tiny, tmp_path, capsys):
    base = ["explain", "--model", "fashion-cnn", "--data", tiny, "--limit", "12",
            "--shard-size", "6", "--no-progress"]
    assert main([str(a) for a in base + ["--method", "saliency", "--out", tmp_path / "sal"]]) == 0
    assert main([str(a) for a in base + ["--method", "integrated-gradients", "--n-steps", "6",
                                         "--target", "label", "--out", tmp_path / "ig"]]) == 0
    from captum_prior.runner import load_attributions

    ig = load_attributions(tmp_path / "ig")
    assert ig.attributions.shape == (12, 1, 28, 28) and ig.delta.shape == (12,)
    from safetensors.torch import load_file

    assert torch.equal(ig.target, load_file(str(tiny))["labels"][:12])
    rc = main(["evaluate", "--attributions", str(tmp_path / "sal"), str(tmp_path / "ig"),
               "--metric", "deletion", "--out", str(tmp_path / "ev"), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "ev" / "report.html").is_file()
    assert (tmp_path / "ev" / "saliency" / "per_example.csv").is_file()
    assert "integrated-gradients" in (tmp_path / "ev" / "comparison.md").read_text()


@pytest.mark.parametrize(
    "method",
    ["expected-gradients", "deep-mgm-eg", "deep-bgmm-eg", "valid-path-gradients", "bay-lime",
     "dmm-men", "integrated-gradients", "gradient-shap", "saliency"],
)
def test_every_method_runs(method, tiny, tmp_path, capsys):
    argv = ["explain", "--model", "fashion-cnn", "--data", tiny, "--limit", "2", "--method", method,
            "--n-samples", "20", "--n-steps", "3", "--n-references", "6", "--patch-size", "7",
            "--shard-size", "1", "--out", tmp_path / "o", "--no-progress"]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    from captum_prior.runner import load_attributions

    st = load_attributions(tmp_path / "o")
    assert st.attributions.shape == (2, 1, 28, 28) and torch.isfinite(st.attributions).all()
    assert st.attributions.abs().sum() > 0


def test_image_folder_labels_and_size(tmp_path, capsys):
    for c in ("cat", "dog"):
        for i in range(2):
            _png(tmp_path / "imgs" / c / f"{i}.png", (30, 26) if i else (28, 28))
    argv = ["explain", "--model", "fashion-cnn", "--data", tmp_path / "imgs", "--method", "saliency",
            "--out", tmp_path / "o", "--target", "label", "--no-progress"]
    line = _fail(capsys, argv)
    assert "different sizes" in line and "--size" in line
    assert main([str(a) for a in argv + ["--size", "28"]]) == 0
    from captum_prior.runner import load_attributions

    assert load_attributions(tmp_path / "o").target.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize(
    "case, expect",
    [
        ("unknown_method", "unknown"),
        ("unimportable_model", "cannot import"),
        ("model_not_module", "not an nn.Module"),
        ("factory_returns_other", "not a torch.nn.Module"),
        ("empty_folder", "no JPEG/PNG"),
        ("unreadable_image", "cannot read image"),
        ("missing_data_file", "no such file"),
        ("out_holds_other", "not empty"),
        ("out_is_file", "not a directory"),
        ("mismatching_manifest", "another call"),
        ("bad_target", "--target"),
        ("zero_batch", "--batch-size"),
        ("negative_seed", "--seed"),
        ("unknown_option", "unrecognized"),
        ("missing_required", "required"),
        ("demo_zero_images", "--n-images"),
        ("demo_negative_images", "--n-images"),
        ("evaluate_not_a_run", "manifest"),
        ("evaluate_bad_metric", "unknown metric"),
        ("data_does_not_fit_model", "cannot take --data items of shape (3, 20, 20)"),
        ("target_out_of_range", "out of range"),
        ("npz_without_inputs", "no 'inputs'"),
        ("integer_inputs", "dtype"),
    ],
)
def test_bad_input_one_line_exit_2(case, expect, tiny, tmp_path, capsys):
    ok = ["--model", "fashion-cnn", "--data", tiny, "--method", "saliency", "--out", tmp_path / "o",
          "--no-progress"]
    argv = ["explain"] + ok
    if case == "unknown_method":
        argv = ["explain", "--model", "fashion-cnn", "--data", tiny, "--method", "shap-magic", "--out", tmp_path / "o"]
    elif case == "unimportable_model":
        argv[2] = "no_such_pkg.models:build"
    elif case == "model_not_module":
        argv[2] = "math:pi"
    elif case == "factory_returns_other":
        argv[2] = "os:getcwd"
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        argv[4] = tmp_path / "empty"
    elif case == "unreadable_image":
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "x.png").write_bytes(b"not a png at all")
        argv[4] = tmp_path / "bad"
    elif case == "missing_data_file":
        argv[4] = tmp_path / "nothing.safetensors"
    elif case == "out_holds_other":
        (tmp_path / "o").mkdir()
        (tmp_path / "o" / "thesis.tex").write_text("precious")
    elif case == "out_is_file":
        (tmp_path / "o").write_text("x")
    elif case == "mismatching_manifest":
        assert main([str(a) for a in argv + ["--limit", "8"]]) == 0
        capsys.readouterr()
        argv += ["--limit", "8", "--seed", "3"]
    elif case == "data_does_not_fit_model":
        for i in range(2):
            _png(tmp_path / "rgb" / f"{i}.png", (20, 20), mode="RGB")
        argv[4] = tmp_path / "rgb"
    elif case == "target_out_of_range":
        argv += ["--target", "10"]
    elif case == "npz_without_inputs":
        import numpy as np

        np.savez(tmp_path / "d.npz", images=np.zeros((2, 1, 28, 28), np.float32))
        argv[4] = tmp_path / "d.npz"
    elif case == "integer_inputs":
        import numpy as np

        np.savez(tmp_path / "d.npz", inputs=np.zeros((2, 1, 28, 28), np.int64))
        argv[4] = tmp_path / "d.npz"
    elif case == "bad_target":
        argv += ["--target", "best"]
    elif case == "zero_batch":
        argv += ["--batch-size", "0"]
    elif case == "negative_seed":
        argv += ["--seed", "-1"]
    elif case == "unknown_option":
        argv += ["--n-stepz", "3"]
    elif case == "missing_required":
        argv = ["explain", "--model", "fashion-cnn"]
    elif case == "demo_zero_images":
        argv = ["demo", "--n-images", "0"]
    elif case == "demo_negative_images":
        argv = ["demo", "--n-images", "-1"]
    elif case == "evaluate_not_a_run":
        argv = ["evaluate", "--attributions", tmp_path, "--out", tmp_path / "ev"]
    elif case == "evaluate_bad_metric":
        argv = ["evaluate", "--attributions", tmp_path, "--metric", "AUC", "--out", tmp_path / "ev"]
    line = _fail(capsys, argv)
    assert expect in line, line
    if case == "out_holds_other":
        assert (tmp_path / "o" / "thesis.tex").read_text() == "precious"


def test_version_and_help_on_every_command(capsys):
    from captum_prior import __version__

    for args in (["--version"], ["demo", "--version"], ["explain", "--version"], ["evaluate", "--version"]):
        with pytest.raises(SystemExit) as ex:
            main(args)
        assert ex.value.code == 0 and __version__ in capsys.readouterr().out
    for args in (["--help"], ["demo", "--help"], ["explain", "--help"], ["evaluate", "--help"]):
        with pytest.raises(SystemExit) as ex:
            main(args)
        assert ex.value.code == 0 and "usage:" in capsys.readouterr().out


def test_python_m_captum_prior_one_line_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "captum_prior", "explain", "--model", "fashion-cnn",
                        "--data", "fashion-mnist-test-sample", "--method", "nope", "--out", str(tmp_path)],
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "unknown" in r.stderr


SLOW_MODEL = """
import time
import torch
from captum_prior.models import load_fashion_cnn

class Slow(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = load_fashion_cnn()
    def forward(self, x):
        time.sleep(0.03)
        return self.net(x)

def factory():
    return Slow()
"""


def test_sigkill_then_resume_rewrites_nothing_and_matches(tiny, tmp_path):
    (tmp_path / "slowmodel.py").write_text(SLOW_MODEL)
    env = _env(str(tmp_path))

    def cmd(out):
        return [sys.executable, "-m", "captum_prior", "explain", "--model", "slowmodel:factory",
                "--data", str(tiny), "--method", "expected-gradients", "--n-samples", "4",
                "--n-references", "10", "--shard-size", "8", "--batch-size", "5",
                "--out", str(out), "--no-progress"]

    out = tmp_path / "run"
    proc = subprocess.Popen(cmd(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / "shard-00000.safetensors"
    deadline = time.time() + 240
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists(), proc.stderr.read().decode()
    finished = sorted(out.glob("shard-*.safetensors"))
    assert 1 <= len(finished) < 5, "the kill must interrupt the run"
    mtimes = {p.name: p.stat().st_mtime_ns for p in finished}

    r = subprocess.run(cmd(out), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert {p.name: p.stat().st_mtime_ns for p in finished} == mtimes
    assert not list(out.glob(".*tmp")), "no temporary file left behind"

    ref = tmp_path / "ref"
    r = subprocess.run(cmd(ref), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    from captum_prior.runner import load_attributions

    a, b = load_attributions(out, verify=True), load_attributions(ref)
    assert a.index.tolist() == list(range(40))
    assert torch.equal(a.attributions, b.attributions) and torch.equal(a.delta, b.delta)
