"""Default chunk sizes from the measured activations (issue 16)."""

import torch
from torch import nn

from captum_prior import _chunking
from captum_prior._batching import RowRunner, forward_rows, gradient_rows
from captum_prior.attr import ExpectedGradients
from captum_prior.metrics import insertion_deletion


class Recording(nn.Module):
    """A CNN whose first activation is ``width x side x side`` floats per row;
    records the batch size of every call."""

    def __init__(self, width=16):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(width, 5))
        self.sizes = []

    def forward(self, x):
        self.sizes.append(x.shape[0])
        return self.net(x)


def rows_of(x):
    idx = torch.arange(x.shape[0])
    return lambda sl: ((x[sl],), idx[sl])


def test_default_sizes_chunks_from_the_activation_and_explicit_is_obeyed():
    m = Recording(width=64)  # 256 KiB per row in the first activation
    x = torch.rand(300, 3, 32, 32)
    auto = forward_rows(RowRunner(m, 300, 1), rows_of(x), 300)
    expected = _chunking.CPU_ACTIVATION_BUDGET // (64 * 32 * 32 * 4)
    assert m.sizes[0] == _chunking.PROBE_ROWS
    assert max(m.sizes[1:]) <= expected and len(set(m.sizes[1:-1])) <= 1
    assert _chunking.last_choice["largest_bytes_per_row"] == 64 * 32 * 32 * 4
    assert sum(m.sizes) == 300
    m.sizes.clear()
    explicit = forward_rows(RowRunner(m, 300, 1), rows_of(x), 300, chunk_size=300)
    assert m.sizes == [300]  # an explicit value is obeyed as given
    torch.testing.assert_close(auto, explicit, rtol=1e-5, atol=1e-6)
    m.sizes.clear()
    forward_rows(RowRunner(m, 300, 1), rows_of(x), 300, chunk_size=7)
    assert max(m.sizes) == 7 and len(m.sizes) == 43


def test_small_rows_go_in_few_calls_and_gradients_match():
    m = Recording(width=4)
    x = torch.rand(200, 3, 8, 8)
    out = [g[0] for _, _, _, g, _ in gradient_rows(RowRunner(m, 200, 2), rows_of(x), 200)]
    assert m.sizes == [_chunking.PROBE_ROWS, 200 - _chunking.PROBE_ROWS]
    ref = [g[0] for _, _, _, g, _ in gradient_rows(RowRunner(m, 200, 2), rows_of(x), 200, chunk_size=200)]
    torch.testing.assert_close(torch.cat(out), torch.cat(ref))


def test_no_hook_is_left_behind_even_when_the_caller_fails():
    from torch.nn.modules import module as mod

    m = Recording()
    x = torch.rand(20, 3, 32, 32)
    n_hooks = len(mod._global_forward_hooks)
    forward_rows(RowRunner(m, 20, 0), rows_of(x), 20)
    assert len(mod._global_forward_hooks) == n_hooks

    def broken(sl):
        raise RuntimeError("row builder failed")

    try:
        forward_rows(RowRunner(m, 20, 0), broken, 20)
    except RuntimeError:
        pass
    assert len(mod._global_forward_hooks) == n_hooks
    it = gradient_rows(RowRunner(m, 20, 0), rows_of(x), 20)
    next(it)  # abandon the loop in the probe chunk
    it.close()
    assert len(mod._global_forward_hooks) == n_hooks


def test_plain_tensor_functions_get_one_chunk_after_the_probe():
    calls = []

    def f(x):
        calls.append(x.shape[0])
        return x.flatten(1).sum(1, keepdim=True).repeat(1, 3)

    x = torch.rand(50 + _chunking.PROBE_ROWS, 2, 4, 4)
    forward_rows(RowRunner(f, len(x), 0), rows_of(x), len(x))
    assert calls == [_chunking.PROBE_ROWS, 50]


def test_default_insertion_deletion_and_eg_are_not_the_slow_all_at_once_call():
    """The robust part of the speed claim (the ratios are in benchmarks/):
    with defaults, the big 64 x 64 rows are chunked, and the results equal the
    explicit one-batch call."""
    m = Recording(width=32)
    x, sal = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    res = insertion_deletion(m, x, sal, target=0, n_steps=32)
    assert max(m.sizes) < 2 * 33 * 2 and len(m.sizes) > 2
    ref = insertion_deletion(m, x, sal, target=0, n_steps=32, max_examples_per_batch=10_000)
    torch.testing.assert_close(res.insertion, ref.insertion)
    torch.testing.assert_close(res.deletion, ref.deletion)
    m.sizes.clear()
    g, refs = torch.Generator(), torch.rand(4, 3, 64, 64)
    a = ExpectedGradients(m).attribute(x, refs, target=0, n_samples=40, generator=g.manual_seed(0))
    assert max(m.sizes) < 80
    b = ExpectedGradients(m).attribute(x, refs, target=0, n_samples=40, internal_batch_size=80,
                                       generator=g.manual_seed(0))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_chunk_size_does_not_grow_with_the_number_of_rows():
    """The default chunk is a fixed size (the last chunk smaller), so the
    rows per model call, hence peak memory, are the same at 50 and 400 samples."""
    m = Recording(width=64)  # 256 KiB per row in the first activation
    x, refs = torch.rand(4, 3, 32, 32), torch.rand(8, 3, 32, 32)
    sizes = {}
    for n in (50, 400):
        m.sizes.clear()
        ExpectedGradients(m).attribute(x, refs, target=0, n_samples=n, generator=torch.Generator().manual_seed(0))
        sizes[n] = list(m.sizes)
    assert sum(sizes[400]) == 4 * 400 and len(sizes[400]) > len(sizes[50])
    assert max(sizes[50]) == max(sizes[400]) == _chunking.last_choice["chunk"]
    assert sizes[400][: len(sizes[50]) - 1] == sizes[50][:-1]  # same cut, only the tail differs


def test_probe_chunk_is_small_for_large_rows():
    m = Recording(width=8)
    x = torch.rand(40, 3, 256, 256)  # 768 KiB per input row
    forward_rows(RowRunner(m, 40, 0), rows_of(x), 40)
    assert m.sizes[0] == max(1, _chunking.PROBE_INPUT_BYTES // (3 * 256 * 256 * 4)) == 1
    assert sum(m.sizes) == 40
    assert _chunking.probe_rows(1000, 3 * 28 * 28 * 4) == _chunking.PROBE_ROWS
    assert _chunking.probe_rows(10, None) == 10


MEMORY_CHILD = r"""
import gc, sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads(1)
from torch import nn
from captum_prior.attr import ExpectedGradients

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024

torch.manual_seed(0)
# 34 x 32 x 32 floats per row: default chunks of 120 rows after a 64-row probe
m = nn.Sequential(nn.Conv2d(3, 34, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                  nn.Linear(34, 5)).eval()
x, refs = torch.rand(4, 3, 32, 32), torch.rand(8, 3, 32, 32)
run = lambda n: ExpectedGradients(m).attribute(x, refs, target=0, n_samples=n,
                                               generator=torch.Generator().manual_seed(0))
run(1)
gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = status("VmRSS:")
run({n})
print(status("VmHWM:") - base)
"""


def test_peak_memory_is_flat_in_n_samples():
    """Peak resident memory of ExpectedGradients at default chunking, 50 vs
    400 samples (200 vs 1600 rows, both more than the probe and one chunk),
    each in a fresh process.  (Splitting the rows after the probe into equal
    chunks, as before, gave chunks of 68 vs 119 rows here.)  glibc is told to map every
    allocation over 64 KiB separately (MALLOC_MMAP_THRESHOLD_), so that the
    resident set follows the live tensors instead of the allocator's cache."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pytest

    if not (os.path.exists("/proc/self/clear_refs") and sys.platform.startswith("linux")):
        pytest.skip("needs Linux /proc/self/clear_refs")
    root = str(Path(_chunking.__file__).resolve().parents[1])
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1")
    peak = {}
    for n in (50, 400):
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD.format(root=root, n=n)], env=env,
                             capture_output=True, text=True, check=True)
        peak[n] = int(out.stdout.strip().splitlines()[-1])
    assert peak[50] > 8 << 20  # the measurement sees the chunk's activations
    assert peak[400] < 1.3 * peak[50], peak
