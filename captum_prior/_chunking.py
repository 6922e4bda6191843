"""The default chunk size: how many rows per model call when the user gives none.

Sending every row through the model at once (the old ``None`` default) is
slow on a CPU: once a layer's activations outgrow the last-level cache each
convolution streams from memory, and 520 rows of a small 64 x 64 CNN ran
4.4x slower in one batch than in 8 batches of 65.  Too small a chunk pays the
per-call overhead instead.  So when ``internal_batch_size`` /
``max_examples_per_batch`` is None, :func:`auto_slices`

1. sends a *probe* chunk and, while the caller evaluates it, measures the
   activations the model produces per row (the tensors every ``nn.Module``
   call takes and returns, seen through a global forward hook: the largest
   one, and the sum of all outputs).  The probe has at most
   :data:`PROBE_ROWS` rows, and fewer for large rows: its input stays under
   :data:`PROBE_INPUT_BYTES` (one row of a 224 x 224 image is probed alone;
   64 rows of EfficientNet-Lite0 in one call, the old probe, allocate about
   300 MB per activation and cost 2x the time of chunks of 10, mostly in page
   faults of freshly mapped memory);
2. cuts the remaining rows into chunks of a fixed size, chosen so that the
   largest activation of a chunk fits the budget
   (:data:`CPU_ACTIVATION_BUDGET`, about the size of a last-level cache and
   below glibc's largest mmap threshold, so that the allocations are reused
   instead of being mapped and faulted in afresh; on CUDA, a quarter of the
   free device memory over the sum of all activations), never building more
   than :data:`MAX_INPUT_BYTES` of input rows at once.  The chunk size does
   not depend on the number of rows (only the last chunk is smaller), so
   peak memory is flat in the number of rows (``n_samples``, ``n_steps``).

The choice depends only on the model, the row shape and the device, never
on timings, so a call is reproducible.  An explicit chunk size is always
obeyed as given.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Iterator, Optional

import torch
from torch import Tensor

#: Rows in the first (probe) chunk, which measures the activations: large
#: enough that a small call (one image's samples) is one model call, small
#: enough to bound the first chunk's memory (the old default was every row).
PROBE_ROWS = 64
#: The probe chunk's input rows stay under this many bytes (at least one row):
#: with activations up to 16x the input per row, the probe's largest
#: activation stays within :data:`CPU_ACTIVATION_BUDGET`.
PROBE_INPUT_BYTES = 1 << 20
#: CPU: the largest single activation of one chunk stays under this many bytes.
CPU_ACTIVATION_BUDGET = int(os.environ.get("CAPTUM_PRIOR_ACTIVATION_BUDGET", 16 << 20))
#: Input rows built per chunk stay under this many bytes (any device).
MAX_INPUT_BYTES = 1 << 25
#: Hard cap on rows per chunk.
MAX_ROWS = 4096
#: The last automatic choice (diagnostics for benchmarks and tests; not thread-safe).
last_choice: dict = {}

def _nbytes(t: Any) -> int:
    if isinstance(t, Tensor) and not t.is_meta:
        return t.numel() * t.element_size()
    return 0


class ActivationMeter:
    """Records the largest and the total bytes of the tensors that the
    modules called while it is active take and return (a global module
    forward hook: removing it is order-independent and cannot disturb other
    hooks or modes, even when the caller abandons the chunk loop)."""

    def __init__(self) -> None:
        self.largest = 0
        self.total = 0
        self.device: Optional[torch.device] = None
        self._handle: Any = None

    def _hook(self, module: Any, inputs: Any, output: Any) -> None:
        for t in inputs if isinstance(inputs, tuple) else (inputs,):
            self.largest = max(self.largest, _nbytes(t))
        for t in output if isinstance(output, (tuple, list)) else (output,):
            b = _nbytes(t)
            if b:
                self.largest = max(self.largest, b)
                self.total += b
                if self.device is None:
                    self.device = t.device

    def start(self) -> None:
        self._handle = torch.nn.modules.module.register_module_forward_hook(self._hook)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def choose_chunk(
    n_rows: int,
    largest_per_row: float,
    total_per_row: float,
    device: Optional[torch.device] = None,
) -> int:
    """Rows per chunk for activations of ``largest_per_row`` (largest single
    tensor) and ``total_per_row`` (all tensors) bytes per row."""
    if largest_per_row <= 0:  # no module ran: a plain tensor function, cheap per row
        return int(max(1, min(n_rows, MAX_ROWS)))
    if device is not None and device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
        except Exception:  # pragma: no cover - no driver
            free = 1 << 32
        rows = (free // 4) / max(total_per_row, 1.0)
    else:
        rows = CPU_ACTIVATION_BUDGET / max(largest_per_row, 1.0)
    # the input rows are among the measured tensors, so they are bounded too
    rows = min(rows, MAX_INPUT_BYTES / max(largest_per_row, 1.0), MAX_ROWS)
    return int(max(1, min(n_rows, math.floor(rows))))


def probe_rows(n_rows: int, row_bytes: Optional[float] = None) -> int:
    """Rows in the probe chunk: at most :data:`PROBE_ROWS`, and at most
    :data:`PROBE_INPUT_BYTES` of input rows of ``row_bytes`` bytes each."""
    probe = min(n_rows, PROBE_ROWS)
    if row_bytes:
        probe = min(probe, max(1, int(PROBE_INPUT_BYTES // row_bytes)))
    return max(probe, 1)


def auto_slices(n_rows: int, row_bytes: Optional[Callable[[], float]] = None) -> Iterator[slice]:
    """Slices covering ``range(n_rows)``: a probe chunk (:func:`probe_rows`;
    ``row_bytes()``, if given, returns the input bytes of one row), measured
    while the caller evaluates it, then chunks of the fixed size chosen by
    :func:`choose_chunk` (the last one smaller)."""
    if n_rows <= 0:
        return
    probe = probe_rows(n_rows, None if row_bytes is None else row_bytes())
    meter = ActivationMeter()
    meter.start()
    try:
        yield slice(0, probe)
    finally:
        meter.stop()
    largest, total, device = meter.largest / probe, meter.total / probe, meter.device
    rest = n_rows - probe
    if rest <= 0:
        return
    # a fixed size, not rest split evenly: the chunk (and peak memory) must not
    # grow with the number of rows
    chunk = choose_chunk(rest, largest, total, device)
    last_choice.clear()
    last_choice.update(probe=probe, chunk=chunk, largest_bytes_per_row=largest,
                       total_bytes_per_row=total, n_rows=n_rows)
    for start in range(probe, n_rows, chunk):
        yield slice(start, min(start + chunk, n_rows))
