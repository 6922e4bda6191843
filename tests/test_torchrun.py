"""``torchrun --nproc_per_node=2 -m captum_prior explain`` (gloo, CPU) equals one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_torchrun_two_ranks_equal_single_process(tmp_path):
    from safetensors.torch import save_file

    from captum_prior.data import load_fashion_mnist_sample
    from captum_prior.runner import load_attributions

    x, y = load_fashion_mnist_sample(40)
    data = tmp_path / "tiny.safetensors"
    save_file({"inputs": x, "labels": y}, str(data))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    args = ["-m", "captum_prior", "explain", "--model", "fashion-cnn", "--data", str(data),
            "--method", "expected-gradients", "--n-samples", "4", "--n-references", "10",
            "--shard-size", "8", "--batch-size", "5", "--device", "cpu", "--no-progress"]
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         *args, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = load_attributions(tmp_path / "one"), load_attributions(tmp_path / "two", verify=True)
    assert b.index.tolist() == list(range(40))  # none missing, none duplicated
    assert torch.equal(a.attributions, b.attributions) and torch.equal(a.delta, b.delta)
    assert torch.equal(a.target, b.target)
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["complete"] and sorted(manifest["shards"]) == [f"{k:05d}" for k in range(5)]
    assert two.stdout.count("wrote") == 1  # only rank 0 reports

    # evaluate under torchrun too: ranks share the metric shards, rank 0 writes the report
    ev = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "captum_prior", "evaluate", "--attributions", str(tmp_path / "one"), str(tmp_path / "two"),
         "--metric", "deletion", "--out", str(tmp_path / "ev"), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert ev.returncode == 0, ev.stderr[-3000:]
    comp = json.loads((tmp_path / "ev" / "comparison.json").read_text())
    assert comp["n_examples"] == 40
    diff = comp["metrics"]["deletion"]["expected-gradients-2"]["vs"]["expected-gradients"]
    assert diff["mean"] == 0.0  # identical attributions, identical scores
    assert (tmp_path / "ev" / "report.html").is_file()
