"""The default chunk size: how many rows per model call when the user gives none.

Sending every row through the model at once (the old ``None`` default) is
slow on a CPU: once a layer's activations outgrow the last-level cache each
convolution streams from memory, and 520 rows of a small 64 x 64 CNN ran
4.4x slower in one batch than in 8 batches of 65.  Too small a chunk pays the
per-call overhead instead.  So when ``internal_batch_size`` /
``max_examples_per_batch`` is None, :func:`auto_slices`

1. sends a *probe* chunk (at most :data:`PROBE_ROWS` rows) and, while the
   caller evaluates it, measures the activations the model produces per row
   (the tensors every ``nn.Module`` call takes and returns, seen through a
   global forward hook: the largest one, and the sum of all outputs);
2. sizes the remaining chunks so that the largest activation of a chunk fits
   the budget (:data:`CPU_ACTIVATION_BUDGET`, about the size of a last-level
   cache; on CUDA, a quarter of the free device memory over the sum of all
   activations), and never builds more than :data:`MAX_INPUT_BYTES` of input
   rows at once; the rows are then split into equal chunks.

The choice depends only on the model, the row shape and the device, never
on timings, so a call is reproducible.  An explicit chunk size is always
obeyed as given.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterator, Optional

import torch
from torch import Tensor

#: Rows in the first (probe) chunk, which measures the activations: large
#: enough that a small call (one image's samples) is one model call, small
#: enough to bound the first chunk's memory (the old default was every row).
PROBE_ROWS = 64
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


def auto_slices(n_rows: int) -> Iterator[slice]:
    """Slices covering ``range(n_rows)``: a probe chunk, measured while the
    caller evaluates it, then equal chunks sized by :func:`choose_chunk`."""
    if n_rows <= 0:
        return
    probe = min(n_rows, PROBE_ROWS)
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
    chunk = choose_chunk(rest, largest, total, device)
    n_chunks = math.ceil(rest / chunk)
    chunk = math.ceil(rest / n_chunks)
    last_choice.clear()
    last_choice.update(probe=probe, chunk=chunk, largest_bytes_per_row=largest,
                       total_bytes_per_row=total, n_rows=n_rows)
    for start in range(probe, n_rows, chunk):
        yield slice(start, min(start + chunk, n_rows))
