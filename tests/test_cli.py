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


# ---------------------------------------------------------------- issue 28


def _fashion_folders(root: Path, names=("boot", "sneaker"), n: int = 4) -> Path:
    """Shipped Fashion-MNIST images the CNN classifies right, as PNGs in one
    sub-folder per class: ``names[0]`` holds ankle boots (class 9),
    ``names[1]`` sneakers (class 7)."""
    from PIL import Image

    from captum_prior.data import load_fashion_mnist_sample
    from captum_prior.models import load_fashion_cnn

    x, y = load_fashion_mnist_sample()
    with torch.no_grad():
        pred = load_fashion_cnn()(x).argmax(1)
    for folder, cls in zip(names, (9, 7)):
        idx = ((pred == cls) & (y == cls)).nonzero().flatten()[:n].tolist()
        (root / folder).mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(idx):
            arr = (x[i, 0] * 255).round().to(torch.uint8).numpy()
            Image.fromarray(arr, mode="L").save(root / folder / f"{k}.png")
    return root


def test_class_index_mapping_and_label_disagreement_warning(tmp_path, capsys):
    """Sub-folders 'boot' and 'sneaker' are labels 0 and 1 (T-shirt, Trouser)
    without a mapping: the command warns that they disagree with the model;
    --class-index maps them to classes 9 and 7, and the warning goes away."""
    import json

    from captum_prior.runner import load_attributions

    data = _fashion_folders(tmp_path / "imgs")
    base = ["explain", "--model", "fashion-cnn", "--data", data, "--method", "saliency",
            "--target", "label", "--no-progress"]
    assert main([str(a) for a in base + ["--out", tmp_path / "plain"]]) == 0
    err = capsys.readouterr().err
    assert "warning: --target label" in err and "agree with the model's top class on only 0 of 8" in err, err
    assert "--class-index" in err
    assert load_attributions(tmp_path / "plain").target.tolist() == [0] * 4 + [1] * 4

    (tmp_path / "map.json").write_text(json.dumps({"boot": 9, "sneaker": 7}))
    assert main([str(a) for a in base + ["--class-index", tmp_path / "map.json", "--out", tmp_path / "mapped"]]) == 0
    err = capsys.readouterr().err
    assert "warning" not in err, err
    assert load_attributions(tmp_path / "mapped").target.tolist() == [9] * 4 + [7] * 4

    # a synset-style text file: one class per line, first word = folder name
    lines = [f"c{i} class number {i}" for i in range(10)]
    (tmp_path / "synsets.txt").write_text("\n".join(lines) + "\n")
    data2 = _fashion_folders(tmp_path / "imgs2", names=("c9", "c7"), n=2)
    assert main([str(a) for a in base[:4] + [data2] + base[5:] + ["--class-index", tmp_path / "synsets.txt",
                                                                 "--out", tmp_path / "syn"]]) == 0
    assert "warning" not in capsys.readouterr().err
    # sorted folders: c7 (class 7) first, then c9
    assert load_attributions(tmp_path / "syn").target.tolist() == [7, 7, 9, 9]

    # a mapping that lacks a folder is refused, naming it
    (tmp_path / "short.json").write_text(json.dumps({"boot": 9}))
    line = _fail(capsys, base + ["--class-index", tmp_path / "short.json", "--out", tmp_path / "x"])
    assert "--class-index" in line and "'sneaker'" in line


def test_refused_rerun_names_n_samples_with_both_values(tiny, tmp_path, capsys):
    argv = ["explain", "--model", "fashion-cnn", "--data", tiny, "--limit", "4", "--method",
            "expected-gradients", "--n-references", "10", "--out", tmp_path / "o", "--no-progress"]
    assert main([str(a) for a in argv + ["--n-samples", "4"]]) == 0
    capsys.readouterr()
    # the stored identity holds the model's fingerprint and the references' hash,
    # so this check comes after they are loaded (and after their warnings)
    rc = main([str(a) for a in argv + ["--n-samples", "5"]])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert "error:" in line and "attribute_kwargs.n_samples: stored 4, asked 5" in line, line
    # the baselines are the same: not reported as differing
    assert "baselines" not in line, line


def test_size_centre_crop_against_hand_computed_crop(tmp_path):
    """--size N: shorter side to N, then the central N x N (torchvision's
    Resize + CenterCrop, rounding the offset as it does); --resize stretch
    scales both sides."""
    import numpy as np
    from PIL import Image

    from captum_prior.runner.specs import load_data

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(4, 7), dtype=np.uint8)  # H=4, W=7
    (tmp_path / "a").mkdir()
    Image.fromarray(arr, mode="L").save(tmp_path / "a" / "x.png")
    x = load_data(str(tmp_path / "a"), size="4")[0]
    # shorter side already 4: no scaling; left offset round((7 - 4) / 2) = round(1.5) = 2
    expect = torch.from_numpy(arr[:, 2:6].astype(np.float32) / 255.0)
    assert x.shape == (1, 4, 4)
    torch.testing.assert_close(x[0], expect, rtol=0, atol=0)

    # a 16 x 8 (W x H) image to --size 4: scaled to 8 x 4, then columns 2..5
    big = rng.integers(0, 256, size=(8, 16), dtype=np.uint8)
    (tmp_path / "b").mkdir()
    Image.fromarray(big, mode="L").save(tmp_path / "b" / "y.png")
    y = load_data(str(tmp_path / "b"), size="4")[0]
    scaled = np.asarray(Image.fromarray(big, mode="L").resize((8, 4), Image.BILINEAR), dtype=np.float32) / 255.0
    torch.testing.assert_close(y[0], torch.from_numpy(scaled[:, 2:6].copy()), rtol=0, atol=0)
    # stretch: the whole image squeezed to 4 x 4
    z = load_data(str(tmp_path / "b"), size="4", resize="stretch")[0]
    squeezed = np.asarray(Image.fromarray(big, mode="L").resize((4, 4), Image.BILINEAR), dtype=np.float32) / 255.0
    torch.testing.assert_close(z[0], torch.from_numpy(squeezed.copy()), rtol=0, atol=0)
    assert not torch.equal(y, z)
    # --resize-shorter 8 --size 4: scale to 16 x 8 (no change), crop rows 2..5, columns 6..9
    w = load_data(str(tmp_path / "b"), size="4", resize_shorter=8)[0]
    torch.testing.assert_close(w[0], torch.from_numpy(big[2:6, 6:10].astype(np.float32) / 255.0), rtol=0, atol=0)


SLEEPY_MODEL = """
import time
CALLS = []

def factory():
    CALLS.append(time.time())
    time.sleep(5)
    from captum_prior.models import load_fashion_cnn
    return load_fashion_cnn()
"""


def test_argument_errors_come_before_the_model_loads(tiny, tmp_path, capsys, monkeypatch):
    """With a model factory that sleeps 5 s, every argument error, the
    data-dependent ones included, ends the command well before 5 s and
    without calling the factory."""
    import importlib
    import json

    (tmp_path / "sleepymodel.py").write_text(SLEEPY_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    sleepy = importlib.import_module("sleepymodel")
    loose = tmp_path / "loose"
    for i in range(2):
        _png(loose / f"{i}.png", (28, 28))
    folders = tmp_path / "folders"
    for c in ("a", "b"):
        _png(folders / c / "0.png", (28, 28))
    (tmp_path / "map.json").write_text(json.dumps({"a": 1}))
    base = ["explain", "--model", "sleepymodel:factory", "--out", tmp_path / "o", "--no-progress"]
    cases = [
        (["--data", loose, "--method", "saliency", "--target", "label"], "gives no labels"),
        (["--data", folders, "--method", "saliency", "--target", "label", "--class-index", tmp_path / "map.json"],
         "no entry"),
        (["--data", folders, "--method", "saliency", "--class-index", tmp_path / "map.json"], "--target label"),
        (["--data", tiny, "--method", "saliency", "--references", tiny], "--references applies"),
        (["--data", tiny, "--method", "expected-gradients", "--references", tmp_path / "none.npz"], "no such file"),
        (["--data", folders, "--method", "saliency", "--size", "0"], "--size"),
        (["--data", tiny, "--method", "saliency", "--size", "28"], "image folders"),
        (["--data", folders, "--method", "saliency", "--size", "28", "--resize-shorter", "20"], "--resize-shorter"),
        (["--data", tiny, "--method", "nope"], "unknown"),
        (["--data", tiny, "--method", "saliency", "--device", "cuda:7"] if not torch.cuda.is_available() else
         (["--data", tiny, "--method", "nope"]), "cuda" if not torch.cuda.is_available() else "unknown"),
    ]
    for extra, expect in cases:
        t0 = time.perf_counter()
        line = _fail(capsys, base + extra)
        elapsed = time.perf_counter() - t0
        assert expect in line, (extra, line)
        assert elapsed < 2.5, (extra, elapsed)
    # evaluate: an unknown --reference run and a run of other data, before the model
    assert main([str(a) for a in ["explain", "--model", "fashion-cnn", "--data", tiny, "--limit", "3",
                                  "--method", "saliency", "--out", tmp_path / "sal", "--no-progress"]]) == 0
    m = json.loads((tmp_path / "sal" / "manifest.json").read_text())
    m["info"]["model_spec"] = "sleepymodel:factory"
    (tmp_path / "sal" / "manifest.json").write_text(json.dumps(m))
    capsys.readouterr()
    for extra, expect in (
        (["--reference", "ig"], "--reference 'ig' is not one of the runs: saliency"),
        (["--data", tiny], "holds 3 examples but the data has 40"),
    ):
        t0 = time.perf_counter()
        line = _fail(capsys, ["evaluate", "--attributions", tmp_path / "sal", "--out", tmp_path / "ev"] + extra)
        assert expect in line and time.perf_counter() - t0 < 2.5, line
    assert sleepy.CALLS == []


CHUNK_MODEL = """
import torch
ROWS = []

class Wide(torch.nn.Module):
    # 64 channels of 32 x 32 per row: 256 KiB of activation per row
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 64, 3, padding=1)
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        ROWS.append(x.shape[0])
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

def factory():
    return Wide()
"""


def test_captum_ig_in_explain_is_chunked_by_default(tmp_path, capsys, monkeypatch):
    import importlib

    import numpy as np
    from captum.attr import IntegratedGradients

    from captum_prior._chunking import CPU_ACTIVATION_BUDGET
    from captum_prior.runner import load_attributions

    (tmp_path / "chunkmodel.py").write_text(CHUNK_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("chunkmodel")
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    np.savez(tmp_path / "d.npz", inputs=x.numpy())
    argv = ["explain", "--model", "chunkmodel:factory", "--data", tmp_path / "d.npz", "--method",
            "integrated-gradients", "--n-steps", "40", "--out", tmp_path / "ig", "--no-progress"]
    mod.ROWS.clear()
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    chunk = CPU_ACTIVATION_BUDGET // (64 * 32 * 32 * 4)  # rows whose largest activation fits the budget
    assert 6 * 40 > chunk >= 6  # unchunked, IG would send all 240 rows at once
    assert max(mod.ROWS) <= chunk, mod.ROWS
    assert sum(mod.ROWS) >= 6 * 40
    # the same attributions as Captum's unchunked call, to float rounding
    model = mod.factory()
    ref = IntegratedGradients(model).attribute(x, baselines=0.0, target=model(x).argmax(1), n_steps=40)
    torch.testing.assert_close(load_attributions(tmp_path / "ig").attributions, ref, rtol=1e-4, atol=1e-6)
    # an explicit --internal-batch-size is obeyed as given
    mod.ROWS.clear()
    assert main([str(a) for a in argv[:-3] + ["--internal-batch-size", "240", "--out", tmp_path / "ig2",
                                              "--no-progress"]]) == 0
    assert max(mod.ROWS) == 240


def test_references_option_and_warnings(tiny, tmp_path, capsys):
    import json

    import numpy as np

    base = ["explain", "--model", "fashion-cnn", "--data", tiny, "--limit", "3", "--method",
            "expected-gradients", "--n-samples", "4", "--no-progress"]
    assert main([str(a) for a in base + ["--n-references", "10", "--out", tmp_path / "self"]]) == 0
    err = capsys.readouterr().err
    assert "references are drawn from the explained images" in err
    assert "--n-references 10 asked, but --data holds 3 example(s): using all 3" in err
    m = json.loads((tmp_path / "self" / "manifest.json").read_text())
    assert m["identity"]["method_args"]["n_references"] == 3

    from captum_prior.data import load_fashion_mnist_sample

    refs = load_fashion_mnist_sample()[0][-20:]
    np.savez(tmp_path / "refs.npz", inputs=refs.numpy())
    argv = base + ["--references", tmp_path / "refs.npz", "--n-references", "8", "--out", tmp_path / "sep"]
    assert main([str(a) for a in argv]) == 0
    err = capsys.readouterr().err
    assert "warning" not in err, err
    args = json.loads((tmp_path / "sep" / "manifest.json").read_text())["identity"]["method_args"]
    assert args["n_references"] == 8 and args["references"] == str(tmp_path / "refs.npz")
    np.savez(tmp_path / "wrong.npz", inputs=np.zeros((4, 1, 20, 20), np.float32))
    line = _fail(capsys, base + ["--references", tmp_path / "wrong.npz", "--out", tmp_path / "w"])
    assert "--references items have shape (1, 20, 20)" in line


def test_evaluate_steps_reference_and_forward_pass_count(tiny, tmp_path, capsys):
    import json

    base = ["explain", "--model", "fashion-cnn", "--data", tiny, "--limit", "5", "--no-progress"]
    for method in ("saliency", "integrated-gradients"):
        assert main([str(a) for a in base + ["--method", method, "--n-steps", "4", "--out", tmp_path / method]]) == 0
    capsys.readouterr()
    rc = main(["evaluate", "--attributions", str(tmp_path / "saliency"), str(tmp_path / "integrated-gradients"),
               "--metric", "deletion,insertion", "--steps", "7", "--reference", "integrated-gradients",
               "--out", str(tmp_path / "ev"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    # 2 runs x 5 examples x (2 * 7 + 1) forward passes
    assert "2 run(s) x 5 examples x 15 forward passes per example" in err and "= 150 forward passes" in err, err
    cmp = json.loads((tmp_path / "ev" / "comparison.json").read_text())
    assert cmp["reference"] == "integrated-gradients"
    assert "integrated-gradients" in cmp["metrics"]["deletion"]["saliency"]["vs"]
    from captum_prior.runner.evaluate import load_metrics

    _, curves, fractions = load_metrics(tmp_path / "ev" / "saliency")
    assert curves["deletion"].shape == (5, 8) and len(fractions) == 8


def test_help_shows_every_default_and_no_double_percent(capsys):
    import re

    for cmd in ("demo", "explain", "evaluate"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        out = capsys.readouterr().out
        assert "%%" not in out, out
        # every option's help (from its flag to the next flag) names a default
        text = out.split("options:", 1)[1]
        blocks = re.split(r"\n  (?=-)", text)
        for b in blocks:
            if not b.strip():
                continue
            flag = b.strip().split()[0]
            if flag in ("-h,", "--version"):
                continue
            assert "default" in b or "(required)" in b, f"{cmd} {flag} shows no default:\n{b}"
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "CenterCrop" in out and "without torchvision" in out


def test_captum_gradient_shap_in_explain_is_chunked_and_unchanged(tmp_path, capsys, monkeypatch):
    """GradientShap (no internal_batch_size; one example per call) gets the
    model run in chunks, with the draws and results of Captum's own call."""
    import importlib
    import random

    import numpy as np
    from captum.attr import GradientShap

    from captum_prior._chunking import CPU_ACTIVATION_BUDGET
    from captum_prior.runner import example_seed, load_attributions

    (tmp_path / "chunkmodel2.py").write_text(CHUNK_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("chunkmodel2")
    gen = torch.Generator().manual_seed(2)
    x, refs = torch.rand(3, 3, 32, 32, generator=gen), torch.rand(10, 3, 32, 32, generator=gen)
    np.savez(tmp_path / "d.npz", inputs=x.numpy())
    np.savez(tmp_path / "r.npz", inputs=refs.numpy())
    argv = ["explain", "--model", "chunkmodel2:factory", "--data", tmp_path / "d.npz", "--method",
            "gradient-shap", "--references", tmp_path / "r.npz", "--n-references", "10",
            "--n-samples", "100", "--out", tmp_path / "gs", "--no-progress"]
    mod.ROWS.clear()
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    chunk = CPU_ACTIVATION_BUDGET // (64 * 32 * 32 * 4)
    assert 100 > chunk and max(mod.ROWS) <= chunk, mod.ROWS
    st = load_attributions(tmp_path / "gs")
    model = mod.factory()
    for i in range(3):
        s = example_seed(0, i)
        torch.manual_seed(s)
        np.random.seed(s)
        random.seed(s)
        ref, delta = GradientShap(model).attribute(x[i : i + 1], refs, n_samples=100, target=st.target[i : i + 1],
                                                   return_convergence_delta=True)
        torch.testing.assert_close(st.attributions[i : i + 1], ref, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(st.delta[i], delta, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("method", ["blur-integrated-gradients", "guided-integrated-gradients",
                                    "adversarial-gradient-integration", "idgi"])
def test_path_family_methods_in_explain(method, tmp_path):
    from captum_prior.runner import load_attributions

    out = tmp_path / method
    argv = ["explain", "--model", "fashion-cnn", "--data", "fashion-mnist-test-sample", "--limit", "3",
            "--method", method, "--n-steps", "4", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    stored = load_attributions(out, [0, 1, 2])
    assert stored.attributions.shape == (3, 1, 28, 28)
    assert torch.isfinite(stored.attributions).all() and stored.attributions.abs().sum() > 0


def test_evaluate_masker_default_is_the_functions_and_protocol_options(tiny, tmp_path, capsys):
    """`evaluate --masker` defaults to keep_remove's own default (Telea
    inpainting); --percent, --road-fractions, --road-noise and --mprt-layers
    reach the metrics and are recorded in the metric manifest."""
    import inspect
    import json

    from captum_prior.cli import _build_parser
    from captum_prior.metrics import keep_remove
    from captum_prior.metrics.sanity import randomizable_layers
    from captum_prior.models import load_fashion_cnn
    from captum_prior.runner.evaluate import load_metrics

    default = inspect.signature(keep_remove).parameters["masker"].default
    args = _build_parser().parse_args(["evaluate", "--attributions", "a", "--out", "b"])
    assert args.masker == default == "inpaint_telea"
    base = ["explain", "--model", "fashion-cnn", "--data", tiny, "--limit", "3", "--no-progress"]
    assert main([str(a) for a in base + ["--method", "saliency", "--out", tmp_path / "sal"]]) == 0
    capsys.readouterr()
    rc = main(["evaluate", "--attributions", str(tmp_path / "sal"), "--metric", "KPM,road-morf,mprt",
               "--percent", "0.25", "--road-fractions", "0.2,0.6", "--road-noise", "0",
               "--mprt-layers", "2", "--out", str(tmp_path / "ev"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    man = json.loads((tmp_path / "ev" / "saliency" / "manifest.json").read_text())
    kw = man["identity"]["metric_kwargs"]
    assert kw["keep_remove"] == {"masker": "inpaint_telea", "percent": 0.25}
    assert kw["road"] == {"fractions": [0.2, 0.6], "noise": 0.0}
    layers = randomizable_layers(load_fashion_cnn())
    assert man["info"]["mprt_layers"] == [layers[0], layers[len(layers) // 2]]
    values, curves, _ = load_metrics(tmp_path / "ev" / "saliency")
    assert curves["mprt"].shape == (3, 2) and values["KPM"].shape == (3,)
    # bad values: one line, exit 2
    for extra, msg in ((["--percent", "0"], "--percent"), (["--road-fractions", "0.5,1.5"], "--road-fractions"),
                       (["--masker", "auto"], "--masker")):
        line = _fail(capsys, ["evaluate", "--attributions", tmp_path / "sal", "--metric", "mprt",
                              "--out", tmp_path / "ev2"] + extra)
        assert msg in line, line
    # a layer count the model does not have: refused once the model is loaded
    rc = main(["evaluate", "--attributions", str(tmp_path / "sal"), "--metric", "mprt", "--mprt-layers", "99",
               "--out", str(tmp_path / "ev2")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("captum-prior evaluate: error: --mprt-layers: k must be"), err
    rc = main(["evaluate", "--attributions", str(tmp_path / "sal"), "--metric", "mprt", "--mprt-layers",
               f"{layers[0]},fc9", "--out", str(tmp_path / "ev2")])
    err = capsys.readouterr().err
    assert rc == 2 and "--mprt-layers: 'fc9' is not a layer of the model" in err.strip().splitlines()[-1], err
