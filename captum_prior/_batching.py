"""The one chunked forward/backward helper that every method uses.

Every method in ``captum_prior`` evaluates a model on *rows*: copies of an
example moved along a path, perturbed, masked or shifted.  Each row belongs to
one example (its index into the user's batch), which is all that is needed to
give it the right ``target`` and ``additional_forward_args``.  The functions
here

- build the rows chunk by chunk (``make_rows(slice) -> (inputs, example_index)``),
  so memory is bounded by ``chunk_size`` rows however many rows the method needs;
  ``make_rows`` must be a pure function of the slice (draw every random number
  before the loop): with the default chunking it is also called once on the
  first row, to size the first chunk by the bytes of a row;
- select each row's target (every Captum target form) and its slice of the
  additional forward arguments;
- validate the model's output and the target on the first chunk (shape,
  target range, dtype against the model's, train-mode and value-range
  warnings), and every chunk's outputs and gradients for NaN/Inf (one check
  here, raising :class:`~captum_prior.errors.ModelOutputError` that names the
  model and the first offending example, so no method needs its own copy);
- run either a forward pass (:func:`forward_rows`) or a forward and backward
  pass (:func:`gradient_rows`) per chunk, with gradients enabled even when the
  caller runs under ``torch.no_grad`` (as Captum's metrics and NoiseTunnel do).
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

from captum_prior._chunking import auto_slices
from captum_prior._compat import TargetType, _format_additional_forward_args
from captum_prior._validation import (
    check_finite_output,
    check_input_dtype,
    check_model_mode,
    check_model_output,
    check_target,
    check_value_range,
    expected_input_range,
    model_name,
)

RowBuilder = Callable[[slice], Tuple[Tuple[Tensor, ...], Tensor]]


def chunk_slices(
    n_rows: int, chunk_size: Optional[int], make_rows: Optional[RowBuilder] = None
) -> Iterator[slice]:
    """Consecutive slices of at most ``chunk_size`` rows covering ``range(n_rows)``
    (``chunk_size=None``: sized from the model's activations, :mod:`captum_prior._chunking`;
    ``make_rows``, if given, is called once on the first row to size the
    probe chunk by the bytes of a row, so it must be free of side effects).

    With ``n_rows == 0`` (an empty batch) one empty slice, so that the model
    is run once on an empty chunk and every method returns an empty result
    of the right shape, the same way (as torch does), without special cases.
    """
    if n_rows == 0:
        yield slice(0, 0)
        return
    if chunk_size is None:
        yield from auto_slices(n_rows, None if make_rows is None else lambda: row_nbytes(make_rows))
        return
    step = max(1, int(chunk_size))
    for start in range(0, n_rows, max(step, 1)):
        yield slice(start, min(start + step, n_rows))


def row_nbytes(make_rows: RowBuilder) -> int:
    """Bytes of the input tensors of the first row built by ``make_rows``."""
    with torch.no_grad():
        rows, _ = make_rows(slice(0, 1))
    return sum(r.numel() * r.element_size() for r in rows if isinstance(r, Tensor))


def rows_target(target: TargetType, index: Tensor) -> TargetType:
    """The target of each row, given the example ``index`` of each row."""
    if target is None or isinstance(target, (tuple,)):
        return target
    if isinstance(target, numbers.Integral):
        return int(target)
    if isinstance(target, Tensor):
        if target.numel() == 1:
            return int(target.item())
        return target.to(index.device)[index]
    if isinstance(target, list):
        idx = index.tolist()
        if any(isinstance(t, tuple) for t in target):
            return [
                target[i] if isinstance(target[i], tuple) else (int(target[i]),)
                for i in idx
            ]
        return torch.as_tensor(target, device=index.device)[index]
    return target


def rows_args(args: Optional[Tuple[Any, ...]], index: Tensor, n_examples: int) -> Optional[Tuple[Any, ...]]:
    """Slice every per-example tensor of ``args`` by the rows' example index.

    Tensors whose first dimension equals ``n_examples`` are per-example (as in
    Captum, which expands every tensor argument); anything else is passed as is.
    """
    if args is None:
        return None
    out = []
    for a in args:
        if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == n_examples:
            out.append(a[index.to(a.device)])
        else:
            out.append(a)
    return tuple(out)


def select_output(output: Tensor, target: TargetType) -> Tensor:
    """Pick each row's target score (the forms of Captum's ``_select_targets``).

    ``output`` may have any rank: an int, a tensor or a list of ints select a
    column of ``N x C`` outputs; a tuple ``(c, h, w)`` (all rows) or a list of
    tuples (one per row) index every dimension after the batch, e.g. one pixel
    of one class of a segmentation model's ``N x C x H x W`` output. The
    result always has one score per row, shape ``(rows,)``.
    """
    if target is None:
        sel = output if output.dim() == 1 else output.reshape(output.shape[0], -1)[:, 0]
    elif isinstance(target, numbers.Integral):
        sel = output[:, int(target)]
    elif isinstance(target, tuple):
        sel = output[(slice(None),) + tuple(int(t) for t in target)]
    elif isinstance(target, Tensor):
        if target.numel() == 1:
            sel = output[:, int(target.item())]
        else:
            sel = output.gather(1, target.reshape(-1, 1).to(output.device)).squeeze(1)
    elif isinstance(target, list):
        if len(target) and isinstance(target[0], tuple):
            sel = torch.stack([output[(i,) + tuple(t)] for i, t in enumerate(target)])
        else:
            t = torch.as_tensor(target, device=output.device).reshape(-1, 1)
            sel = output.gather(1, t).squeeze(1)
    else:
        raise TypeError(f"target of type {type(target).__name__} is not supported")
    if sel.dim() != 1:
        raise ValueError(
            f"target {target!r} selects a {tuple(sel.shape)} block of the model's "
            f"{tuple(output.shape)} output, not one score per example; pass one "
            f"index per output dimension after the batch, e.g. a tuple of "
            f"{output.dim() - 1} ints"
        )
    return sel


class RowRunner:
    """Run ``forward_func`` on rows that belong to the examples of one batch.

    Parameters
    ----------
    forward_func : Callable
        the model or function.
    n_examples : int
        number of examples in the user's batch.
    target : int, tuple, Tensor, list, optional
        Captum target.
    additional_forward_args : Any, optional
        extra arguments after the inputs.
    validate : bool
        check output shape and target on the first call.

    Every call checks the outputs for NaN/Inf (``ModelOutputError`` naming the
    model and the first offending example).  The first call also checks the
    rows' dtype against the model's parameters (``TypeError``), warns once if
    the model has dropout/batch-norm layers in training mode
    (``ModelModeWarning``) and if the rows lie far outside the model's known
    input range (``InputRangeWarning``).
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        n_examples: int,
        target: TargetType = None,
        additional_forward_args: Any = None,
        validate: bool = True,
    ) -> None:
        self.forward_func = forward_func
        self.n_examples = n_examples
        self.target = target
        self.args = _format_additional_forward_args(additional_forward_args)
        self._checked = not validate
        self._first = True
        self.n_calls = 0

    def _first_call(self, inputs: Tuple[Tensor, ...]) -> None:
        self._first = False
        check_input_dtype(inputs[0], self.forward_func)
        check_model_mode(self.forward_func)
        rng = expected_input_range(self.forward_func)
        if rng is not None:
            check_value_range(inputs[0], rng[0], rng[1], "inputs/baselines", "the model")

    def outputs(self, inputs: Tuple[Tensor, ...], index: Tensor) -> Tensor:
        """Raw model output (N x C) for the rows ``inputs`` of examples ``index``."""
        if self._first:
            self._first_call(inputs)
        args = rows_args(self.args, index, self.n_examples)
        try:
            out = self.forward_func(*inputs, *(args or ()))
        except RuntimeError as exc:
            if self.n_calls or isinstance(exc, torch.OutOfMemoryError):
                raise  # the first chunk worked / out of memory: not the inputs' shape
            msg = str(exc).split("\n")[0]
            if "dtype" in msg or ("type (" in msg and "should be the same" in msg):
                raise TypeError(
                    f"the model failed on inputs of dtype {inputs[0].dtype} ({msg}); "
                    "pass inputs and baselines in the model's dtype, e.g. .float()"
                ) from exc
            raise ValueError(
                f"the model ({model_name(self.forward_func)}) failed on the first rows, "
                f"built from the inputs (rows of shape {tuple(inputs[0].shape)}): "
                f"{msg}. Check that the inputs have the shape the model expects "
                "(e.g. N x C x H x W with the channel dimension)"
            ) from exc
        self.n_calls += 1
        out = check_model_output(out, inputs[0].shape[0])
        check_finite_output(out, self.forward_func, index)
        if not self._checked:
            check_target(
                self.target, self.n_examples, None if out.dim() == 1 else tuple(out.shape[1:])
            )
            self._checked = True
        return out

    def scores(self, inputs: Tuple[Tensor, ...], index: Tensor) -> Tensor:
        """The target score of each row, shape ``(rows,)``."""
        return select_output(self.outputs(inputs, index), rows_target(self.target, index))


def forward_rows(
    runner: RowRunner,
    make_rows: RowBuilder,
    n_rows: int,
    chunk_size: Optional[int] = None,
    raw: bool = False,
    progress: Any = None,
) -> Tensor:
    """Evaluate all ``n_rows`` rows without gradients, ``chunk_size`` at a time.

    Returns the concatenated target scores ``(n_rows,)`` (or raw outputs
    ``n_rows x C`` with ``raw=True``).
    """
    outs: List[Tensor] = []
    with torch.no_grad():
        for sl in chunk_slices(n_rows, chunk_size, make_rows):
            rows, index = make_rows(sl)
            outs.append(runner.outputs(rows, index) if raw else runner.scores(rows, index))
            if progress is not None:
                progress.update(sl.stop - sl.start)
    return torch.cat(outs) if outs else torch.empty(0)


def gradient_rows(
    runner: RowRunner,
    make_rows: RowBuilder,
    n_rows: int,
    chunk_size: Optional[int] = None,
    create_graph: bool = False,
    progress: Any = None,
) -> Iterator[Tuple[slice, Tuple[Tensor, ...], Tensor, Tuple[Tensor, ...], Tensor]]:
    """Forward and backward over all rows, ``chunk_size`` at a time.

    Yields ``(slice, rows, index, grads, scores)`` per chunk, where ``grads``
    are the gradients of each row's target score with respect to that row,
    and ``scores`` the (detached) scores.  The caller reduces each chunk
    before the next is built, so peak memory is one chunk.
    """
    for sl in chunk_slices(n_rows, chunk_size, make_rows):
        rows, index = make_rows(sl)
        with torch.enable_grad():
            rows = tuple(
                r if (r.requires_grad and create_graph) else r.detach().requires_grad_()
                for r in rows
            )
            scores = runner.scores(rows, index)
            grads = torch.autograd.grad(
                scores.sum(), rows, create_graph=create_graph, allow_unused=True
            )
        grads = tuple(
            torch.zeros_like(r) if g is None else g for g, r in zip(grads, rows)
        )
        for g in grads:
            check_finite_output(g, runner.forward_func, index, what="gradient")
        if not create_graph:
            rows = tuple(r.detach() for r in rows)
            scores = scores.detach()
        if progress is not None:
            progress.update(sl.stop - sl.start)
        yield sl, rows, index, grads, scores
