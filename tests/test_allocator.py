"""tune_cpu_allocator: fixed glibc thresholds, fewer page faults (issue 16)."""

import json
import os
import platform
import subprocess
import sys

import pytest

from captum_prior.allocator import ENV_VARS, tune_cpu_allocator

CHILD = r"""
import json, resource, sys, torch
torch.set_num_threads(1)
if sys.argv[1] == "tuned":
    from captum_prior.allocator import ENV_VARS, tune_cpu_allocator
    assert tune_cpu_allocator()
from captum_prior.attr import ExpectedGradients
from captum_prior.data import load_fashion_mnist_sample
from captum_prior.models import load_fashion_cnn
model = load_fashion_cnn(); x, _ = load_fashion_mnist_sample()
eg = ExpectedGradients(model)
def run():
    return eg.attribute(x[:8], x[100:200], target=0, n_samples=50, generator=torch.Generator().manual_seed(0))
first = run()
a = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    again = run()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - a
print(json.dumps({"faults": faults, "sum": float(again.double().sum())}))
"""

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _child(mode):
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are a glibc feature")
def test_fixed_thresholds_stop_the_page_fault_churn_and_change_no_result():
    default, tuned = _child("default"), _child("tuned")
    assert tuned["sum"] == default["sum"]  # the same attributions
    # default malloc faults tens of thousands of pages per call in this loop
    assert tuned["faults"] < 0.2 * max(default["faults"], 1) or tuned["faults"] < 500


def test_bad_thresholds_name_the_argument():
    with pytest.raises(ValueError, match="trim_threshold"):
        tune_cpu_allocator(trim_threshold=-1)
    with pytest.raises(ValueError, match="mmap_threshold"):
        tune_cpu_allocator(mmap_threshold=64 << 20)
    with pytest.raises(ValueError, match="mmap_threshold"):
        tune_cpu_allocator(mmap_threshold=1.5)
    with pytest.raises(ValueError, match="trim_threshold"):
        tune_cpu_allocator(trim_threshold=1 << 40)
