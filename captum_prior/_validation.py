"""Input checks shared by every method.

Each check raises a ``ValueError`` or ``TypeError`` whose message names the
offending argument and says how to fix it, so users never see a silent NaN or
a long trace from inside torch.  Checks of what the *model* returns (NaN/Inf
outputs or gradients) raise :class:`~captum_prior.errors.ModelOutputError`;
models in training mode and inputs far outside a known value range warn
(:class:`~captum_prior.errors.ModelModeWarning`,
:class:`~captum_prior.errors.InputRangeWarning`).
"""

from __future__ import annotations

import inspect
import numbers
import os
import sys
import warnings
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence, Tuple, Union

import captum
import numpy as np
import torch
from torch import Tensor, nn

from captum_prior._compat import TargetType
from captum_prior.errors import InputRangeWarning, ModelModeWarning, ModelOutputError

_STATE = {"mode_check": True}

#: folders whose frames are library code, not the user's call site
_LIBRARY_DIRS = tuple(
    os.path.dirname(os.path.abspath(f)) + os.sep
    for f in (__file__, getattr(captum, "__file__", None))
    if f
)


def warn_at_call_site(message: str, category: type) -> None:
    """``warnings.warn`` attributed to the first frame outside captum_prior
    and Captum: the user's line that called the library.

    Python's default filter shows a warning once per (text, category, line);
    with a fixed ``stacklevel`` the line would be one inside the library that
    differs with the path taken (e.g. the optimized-baseline and the path
    stage of one ``ValidPathGradients`` call), so the same condition would be
    shown several times.  Texts must not embed per-call values either.
    """
    level, frame = 2, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame = frame.f_back
        level += 1
    if frame is None:  # called from library code only (e.g. a worker thread)
        warnings.warn(message, category, stacklevel=2)
        return
    # Python forgets which warnings it has shown whenever any code changes the
    # filters, and some dependencies do so on every call (arviz_stats wraps
    # its FFT in warnings.catch_warnings()), so under the "default", "module"
    # and "once" actions a loop would show the warning on every call.  Keep
    # our own memory, keyed by the active filters, so a user who changes the
    # filters sees it again, and "always"/"error"/"ignore" behave as usual.
    module = frame.f_globals.get("__name__", "<string>")
    action = _filter_action(message, category, module, frame.f_lineno)
    if action in ("default", "module", "once"):
        site = {"default": (frame.f_code.co_filename, frame.f_lineno),
                "module": (frame.f_code.co_filename,), "once": ()}[action]
        key = (message, category, site, tuple(warnings.filters))
        if key in _SHOWN:
            return
        _SHOWN.add(key)
    warnings.warn(message, category, stacklevel=level)


_SHOWN: set = set()


def _filter_action(message: str, category: type, module: str, lineno: int) -> str:
    """The action of the first of ``warnings.filters`` that matches, as
    ``warnings.warn_explicit`` finds it (``warnings.defaultaction`` if none)."""
    for action, msg, cat, mod, ln in warnings.filters:
        if (
            (msg is None or msg.match(message))
            and issubclass(category, cat)
            and (mod is None or mod.match(module))
            and (ln == 0 or lineno == ln)
        ):
            return action
    return warnings.defaultaction


@contextmanager
def _no_mode_check() -> Iterator[None]:
    """Private: skip the train-mode warning (training deliberately runs the
    model in train mode)."""
    old = _STATE["mode_check"]
    _STATE["mode_check"] = False
    try:
        yield
    finally:
        _STATE["mode_check"] = old


# ---------------------------------------------------------------- the model
def find_module(forward_func: Any) -> Optional[nn.Module]:
    """The ``nn.Module`` behind ``forward_func``: the module itself, the owner
    of a bound method, or (following ``__wrapped__``, ``forward_func`` and
    ``model`` attributes of wrappers) the module they call; ``None`` if none."""
    f = forward_func
    for _ in range(6):
        if f is None:
            return None
        if isinstance(f, nn.Module):
            return f
        owner = getattr(f, "__self__", None)
        if isinstance(owner, nn.Module):
            return owner
        nxt = None
        for attr in ("__wrapped__", "forward_func", "model"):
            nxt = getattr(f, attr, None)
            if nxt is not None:
                break
        f = nxt
    return None


def model_name(forward_func: Any) -> str:
    """A short name for error messages: the model's class name if there is one."""
    m = find_module(forward_func)
    if m is not None:
        return type(m).__name__
    return getattr(forward_func, "__name__", type(forward_func).__name__)


_MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


def check_model_mode(forward_func: Any) -> None:
    """Warn (:class:`ModelModeWarning`) when dropout or batch-norm layers of the
    model are in training mode.  The mode is never changed."""
    if not _STATE["mode_check"]:
        return
    m = find_module(forward_func)
    if m is None:
        return
    offenders = sorted(
        {
            type(s).__name__
            for s in m.modules()
            if s.training
            and isinstance(s, _MODE_DEPENDENT)
            and not (isinstance(s, nn.modules.dropout._DropoutNd) and s.p == 0)
        }
    )
    if offenders:
        warn_at_call_site(
            f"the model ({type(m).__name__}) has {', '.join(offenders)} layers in "
            "training mode, so its outputs are random or depend on the batch and "
            "the attributions are not reproducible; call model.eval() first "
            "(captum_prior never changes the model's mode)",
            ModelModeWarning,
        )


def model_dtype(forward_func: Any) -> Optional[torch.dtype]:
    """The floating dtype of the model's first floating parameter, if known."""
    m = find_module(forward_func)
    if m is None:
        return None
    for p in m.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def check_input_dtype(t: Tensor, forward_func: Any, name: str = "inputs") -> None:
    """``TypeError`` if the floating dtype of ``t`` differs from the model's."""
    dt = model_dtype(forward_func)
    if dt is not None and t.is_floating_point() and t.dtype != dt:
        raise TypeError(
            f"{name} are {t.dtype} but the model's parameters are {dt}; convert "
            f"the inputs (and baselines) with .to({dt}) or the model with "
            f"model.to({t.dtype})"
        )


def expected_input_range(forward_func: Any) -> Optional[Tuple[float, float]]:
    """The value range the model expects, where the project knows it: the
    model's ``input_range`` attribute, or ``[0, 1]`` for the bundled
    :class:`~captum_prior.models.FashionCNN`."""
    m = find_module(forward_func)
    if m is None:
        return None
    rng = getattr(m, "input_range", None)
    if rng is not None:
        return float(rng[0]), float(rng[1])
    from captum_prior.models.fashion_cnn import FashionCNN

    if isinstance(m, FashionCNN):
        return 0.0, 1.0
    return None


def _far_outside(
    t: Tensor, low: float, high: float, slack: float
) -> Optional[Tuple[float, float, bool]]:
    """``(min, max, looks like 0..255)`` of ``t`` when it lies more than
    ``slack`` times the width outside ``[low, high]``; None otherwise (and
    when ``t`` is empty or not floating point)."""
    if t.numel() == 0 or not t.is_floating_point():
        return None
    tol = slack * (high - low)
    td = t.detach()
    lo, hi = float(td.min()), float(td.max())
    if lo < low - tol or hi > high + tol:
        return lo, hi, hi > 2 * high + 1 and hi <= 255 + tol
    return None


def check_value_range(
    t: Tensor, low: float, high: float, name: str, source: str, slack: float = 0.5
) -> None:
    """Warn (:class:`InputRangeWarning`) if ``t`` lies far outside
    ``[low, high]`` (by more than ``slack`` times its width).

    The message names the condition and the expected range but not the
    batch's own values, so that the same condition gives the same text on
    every call and Python's default filter shows it once per calling line
    (a loop over images warns once, not once per image); the line is the
    user's (:func:`warn_at_call_site`)."""
    found = _far_outside(t, low, high, slack)
    if found is not None:
        hint = " (0..255 images? divide by 255)" if found[2] else ""
        warn_at_call_site(
            f"{name} has values far outside [{low:g}, {high:g}], the range {source} "
            f"expects{hint}; attributions far outside the model's input range are "
            "meaningless",
            InputRangeWarning,
        )


def check_inside_range(
    t: Tensor, low: float, high: float, name: str, source: str, fix: str, slack: float = 0.5
) -> None:
    """Raise ``ValueError`` if ``t`` lies far outside ``[low, high]`` (by more
    than ``slack`` times its width): for options that *constrain* results to
    a range (a clip range), where inputs outside it give results pinned at
    its edge rather than a merely doubtful attribution.  ``fix`` ends the
    message."""
    found = _far_outside(t, low, high, slack)
    if found is not None:
        lo, hi, looks_255 = found
        hint = " (0..255 images? divide them by 255)" if looks_255 else ""
        raise ValueError(
            f"{name} has values in [{lo:.3g}, {hi:.3g}], far outside {source} = "
            f"({low:g}, {high:g}); results kept inside that range would be pinned "
            f"at its edge. Scale {name} into the range{hint}, or {fix}"
        )


def check_finite_output(
    out: Tensor, forward_func: Any, index: Optional[Tensor] = None, what: str = "output"
) -> None:
    """Raise :class:`ModelOutputError` if ``out`` holds NaN/Inf, naming the model
    and the first offending example (``index[row]``, or the row itself)."""
    if not out.is_floating_point():
        return
    finite = torch.isfinite(out)
    if bool(finite.all()):
        return
    bad_rows = (~finite).reshape(out.shape[0], -1).any(1).nonzero()
    row = int(bad_rows[0, 0]) if bad_rows.numel() else 0
    example = int(index[row]) if index is not None and index.numel() > row else row
    raise ModelOutputError(
        f"the model ({model_name(forward_func)}) gave a NaN or Inf {what} for "
        f"example {example} (first offending row); check that example's inputs and "
        "baselines, and the model's weights"
    )


def as_tensor_tuple(
    inputs: Any, name: str = "inputs", floating: bool = True
) -> Tuple[Tuple[Tensor, ...], bool]:
    """Return ``(tuple_of_tensors, was_tuple)``; reject anything else."""
    is_tuple = isinstance(inputs, tuple)
    items = inputs if is_tuple else (inputs,)
    if len(items) == 0:
        raise ValueError(f"{name} is an empty tuple; pass a Tensor or a tuple of Tensors")
    for i, t in enumerate(items):
        label = f"{name}[{i}]" if is_tuple else name
        if not isinstance(t, Tensor):
            raise TypeError(
                f"{label} must be a torch.Tensor (or a tuple of Tensors), got "
                f"{type(t).__name__}"
            )
        if t.dim() == 0:
            raise ValueError(f"{label} must have a batch dimension, got a 0-d tensor")
        if floating and not t.is_floating_point():
            raise TypeError(
                f"{label} must be a floating-point tensor, got {t.dtype}; convert "
                "it with .float() (and scale 8-bit images into the model's range, "
                "e.g. .float() / 255)"
            )
        check_finite(t, label)
    n = items[0].shape[0]
    for i, t in enumerate(items[1:], 1):
        if t.shape[0] != n:
            raise ValueError(
                f"{name}[{i}] has {t.shape[0]} examples but {name}[0] has {n}; "
                "every input tensor needs the same first dimension"
            )
    return tuple(items), is_tuple


def check_finite(t: Union[Tensor, np.ndarray], name: str) -> None:
    """Raise ``ValueError`` if ``t`` holds NaN or Inf."""
    if isinstance(t, Tensor):
        if t.is_floating_point() or t.is_complex():
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} contains NaN or Inf; clean or impute it first")
    else:
        arr = np.asarray(t)
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or Inf; clean or impute it first")


def check_magnitude(t: Union[Tensor, np.ndarray], name: str, dtype: Any = None) -> None:
    """Raise ``ValueError`` if ``t`` holds values so large that squaring and
    summing them (variances, Gram matrices) overflows ``dtype`` (default: the
    dtype of ``t``): ``max |t| > sqrt(finfo.max / numel) / 100``, about
    ``1e150`` for a few thousand float64 values and ``1e16`` for float32.
    Call it on finite data (see :func:`check_finite`)."""
    if isinstance(t, Tensor):
        if not t.is_floating_point() or t.numel() == 0:
            return
        dt = dtype if dtype is not None else t.dtype
        big = float(t.detach().abs().max())
        count = t.numel()
    else:
        arr = np.asarray(t)
        if arr.dtype.kind not in "fiu" or arr.size == 0:
            return
        dt = dtype if dtype is not None else (arr.dtype if arr.dtype.kind == "f" else np.float64)
        big = float(np.abs(arr).max())
        count = arr.size
    fmax = float(torch.finfo(dt).max) if isinstance(dt, torch.dtype) else float(np.finfo(dt).max)
    limit = (fmax / count) ** 0.5 / 100.0
    if big > limit:
        raise ValueError(
            f"{name} has values as large as {big:.3g} in absolute value; sums of their "
            f"squares overflow {str(dt).replace('torch.', '')} (values up to about "
            f"{limit:.1g} are safe here). Rescale {name} first, e.g. standardise each "
            "feature (subtract its mean, divide by its standard deviation)"
        )


def check_int(
    value: Any, name: str, minimum: Optional[int] = 1, maximum: Optional[int] = None
) -> int:
    """Return ``value`` as ``int`` if it is an integer within the bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_optional_int(value: Any, name: str, minimum: int = 1) -> Optional[int]:
    return None if value is None else check_int(value, name, minimum)


def check_float(
    value: Any,
    name: str,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Return ``value`` as ``float`` if it is a finite real within the bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        op = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {op} {low}, got {value}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        op = "<=" if high_inclusive else "<"
        raise ValueError(f"{name} must be {op} {high}, got {value}")
    return value


def check_device(device: Any, name: str = "device") -> Optional[torch.device]:
    """``None`` or a ``torch.device`` that exists on this machine; a
    ``ValueError`` naming ``name`` for an unknown device string or an
    accelerator that is not available (instead of torch's deep error)."""
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise TypeError(
            f"{name} must be None, a str such as 'cpu' or 'cuda:0', or a torch.device, "
            f"got {type(device).__name__}"
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"unknown {name} {device!r}; use 'cpu', 'cuda', 'cuda:<index>' or 'mps'"
        ) from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(f"{name}={device!r} but CUDA is not available on this machine; use 'cpu'")
        if dev.index is not None and dev.index >= n:
            raise ValueError(
                f"{name}={device!r} but this machine has {n} CUDA device(s) "
                f"(cuda:0..cuda:{n - 1})"
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"{name}={device!r} but MPS is not available on this machine; use 'cpu'")
    return dev


def check_real_sequence(values: Any, name: str, what: str = "numbers") -> list:
    """A sequence (list, tuple, 1-D array or tensor) of real numbers, as a
    list of floats; numbers given as strings (``'0.5'``, ``('0.5',)``) or a
    bare number are a ``TypeError`` naming ``name`` and showing the fix."""
    if isinstance(values, Tensor):
        if values.is_complex() or values.dtype == torch.bool:
            raise TypeError(f"{name} must hold real {what}, got a {values.dtype} tensor")
        return [float(v) for v in values.detach().reshape(-1).tolist()]
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real {what}, got an array of dtype {values.dtype}")
        return [float(v) for v in values.reshape(-1)]
    if isinstance(values, (str, bytes)) or isinstance(values, numbers.Number):
        raise TypeError(
            f"{name} must be a sequence of {what}, got {type(values).__name__} {values!r}; "
            f"pass a tuple of numbers, e.g. {name}=(0.5,)"
        )
    try:
        items = list(values)
    except TypeError:
        raise TypeError(
            f"{name} must be a sequence of {what}, got {type(values).__name__}"
        ) from None
    out = []
    for i, v in enumerate(items):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(
                f"{name}[{i}] must be a number, got {type(v).__name__} {v!r}"
                + ("; write the number without quotes" if isinstance(v, str) else "")
            )
        out.append(float(v))
    return out


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """Raise ``ValueError`` listing ``choices`` if ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(
            f"unknown {name} {value!r}; choose one of: "
            + ", ".join(repr(c) for c in choices)
        )
    return value


#: The values of the ``variant`` keyword, shared by every class that can run
#: either as its paper prints it or as its authors' released code does.
VARIANTS = ("paper", "reference_code", "corrected")


def check_variant(value: Any, owner: str, supported: Sequence[str]) -> str:
    """Validate a ``variant`` argument.

    ``variant`` is the package's one switch between readings of a method:
    ``"paper"`` (the equations as printed), ``"reference_code"`` (what the
    authors' released code computes) and ``"corrected"`` (the package's fix
    where both are numerically unsound).  Each class accepts the subset it
    implements, ``supported``.
    """
    if value not in VARIANTS:
        raise ValueError(
            f"unknown variant {value!r}; choose one of: " + ", ".join(repr(c) for c in supported)
        )
    if value not in supported:
        raise ValueError(
            f"{owner} has no variant {value!r}; it implements: "
            + ", ".join(repr(c) for c in supported)
        )
    return value


def resolve_callable_baselines(baselines: Any, inputs: Any) -> Any:
    """Call ``baselines`` if it is a callable, as Captum does.

    Captum's convention (``_format_callable_baseline``): a callable with no
    parameters is called as ``baselines()``, any other as
    ``baselines(inputs)``, with ``inputs`` as the user passed them (a Tensor
    or a tuple). Anything else is returned unchanged.
    """
    if not callable(baselines) or isinstance(baselines, Tensor):
        return baselines
    try:
        n_params = len(inspect.signature(baselines).parameters)
    except (TypeError, ValueError):  # builtins without a signature
        n_params = 1
    out = baselines() if n_params == 0 else baselines(inputs)
    if callable(out) and not isinstance(out, Tensor):
        raise TypeError("the baselines callable returned another callable; return Tensors")
    return out


def check_reference_set(
    baselines: Any, inputs: Tuple[Tensor, ...], name: str = "baselines"
) -> Tuple[Tensor, ...]:
    """Validate a reference *set* (first dim indexes references) for ``inputs``.

    Accepts a Tensor (one input) or a tuple of Tensors (one per input), each of
    shape ``R x inputs[i].shape[1:]``; a tensor of exactly ``inputs[i].shape[1:]``
    is taken as a single reference; a Python number as a constant single
    reference. Returns a tuple of tensors on each input's device and dtype.
    """
    baselines = resolve_callable_baselines(baselines, inputs if len(inputs) > 1 else inputs[0])
    if baselines is None:
        raise ValueError(
            f"{name} is required: pass a reference set, e.g. a batch of "
            "training images (first dimension indexes the references)"
        )
    items = baselines if isinstance(baselines, tuple) else (baselines,)
    if len(items) != len(inputs):
        raise ValueError(
            f"{name} has {len(items)} tensors but inputs has {len(inputs)}; pass "
            "one reference tensor per input tensor"
        )
    out = []
    for i, (b, x) in enumerate(zip(items, inputs)):
        label = f"{name}[{i}]" if len(items) > 1 else name
        if isinstance(b, numbers.Real) and not isinstance(b, bool):
            b = torch.full((1,) + tuple(x.shape[1:]), float(b))
        if not isinstance(b, Tensor):
            raise TypeError(
                f"{label} must be a Tensor or a number, got {type(b).__name__}"
            )
        if not (b.is_floating_point() or b.dtype == torch.bool) and x.is_floating_point():
            raise TypeError(
                f"{label} is a {b.dtype} tensor; convert it with .float() (and "
                "scale 8-bit images like the inputs, e.g. .float() / 255)"
            )
        if tuple(b.shape) == tuple(x.shape[1:]):
            b = b.unsqueeze(0)
        if tuple(b.shape[1:]) != tuple(x.shape[1:]):
            hint = ""
            if b.dim() == x.dim() + 1 and tuple(b.shape[2:]) == tuple(x.shape[1:]):
                hint = (
                    "; the inputs may lack a dimension the baselines have (a channel "
                    "dimension? inputs.unsqueeze(1))"
                )
            raise ValueError(
                f"{label} has trailing shape {tuple(b.shape[1:])} but the inputs "
                f"(shape {tuple(x.shape)}) have {tuple(x.shape[1:])}; each reference "
                f"must have the shape of one input example{hint}"
            )
        if b.shape[0] == 0:
            raise ValueError(f"{label} is an empty reference set; pass at least one row")
        check_finite(b, label)
        out.append(b.to(device=x.device, dtype=x.dtype))
    n_ref = out[0].shape[0]
    for i, b in enumerate(out[1:], 1):
        if b.shape[0] != n_ref:
            raise ValueError(
                f"{name}[{i}] has {b.shape[0]} references but {name}[0] has {n_ref}; "
                "references are drawn jointly, so every tensor needs the same count"
            )
    return tuple(out)


def check_feature_mask(
    feature_mask: Any, inputs: Tuple[Tensor, ...], name: str = "feature_mask"
) -> None:
    """A Captum feature mask for ``inputs``: ``None``, or one integer tensor per
    input whose shape broadcasts to that input's (``1 x ...`` or ``N x ...``
    with the input's rank, or fewer leading dimensions, e.g. ``H x W`` for
    ``N x C x H x W`` images)."""
    if feature_mask is None:
        return
    items = feature_mask if isinstance(feature_mask, tuple) else (feature_mask,)
    if len(items) != len(inputs):
        raise ValueError(
            f"{name} has {len(items)} tensors but inputs has {len(inputs)}; pass one "
            "mask per input tensor"
        )
    for i, (m, x) in enumerate(zip(items, inputs)):
        label = f"{name}[{i}]" if len(items) > 1 else name
        if not isinstance(m, Tensor):
            raise TypeError(f"{label} must be an integer Tensor, got {type(m).__name__}")
        if m.is_floating_point() or m.is_complex() or m.dtype == torch.bool:
            raise TypeError(
                f"{label} must hold integer feature indices, got {m.dtype}; use .long()"
            )
        ok = m.dim() <= x.dim()
        if ok:
            try:
                ok = tuple(torch.broadcast_shapes(m.shape, x.shape)) == tuple(x.shape)
            except RuntimeError:
                ok = False
        if not ok:
            raise ValueError(
                f"{label} has shape {tuple(m.shape)}, which does not match the inputs' "
                f"shape {tuple(x.shape)}; pass one feature index per input value, shaped "
                f"like one example {(1,) + tuple(x.shape[1:])}, like the batch, or "
                f"broadcastable to it (e.g. {tuple(x.shape[-2:])} for images)"
            )


def check_target(
    target: TargetType,
    n_examples: int,
    n_outputs: Union[None, int, Tuple[int, ...]],
) -> None:
    """Check a Captum-style ``target`` against ``n_examples`` rows of a model
    output.

    ``n_outputs`` is the shape of one example's output: ``None`` for a 1-D
    output (one score per example), an ``int`` ``C`` for ``N x C`` outputs, or
    the tuple ``output.shape[1:]`` for outputs of any rank (e.g. ``(C, H, W)``
    for a segmentation model). Every target must pick exactly one score per
    example, as Captum's gradient methods need:

    - ``None``: 1-D outputs (or ``N x 1``);
    - an int, a one-element tensor, a list of ints or a 1-D tensor with one
      index per example: ``N x C`` outputs;
    - a tuple ``(c, h, w)`` (all examples) or a list of such tuples (one per
      example): one index per output dimension after the batch, any rank.
    """
    if n_outputs is None:
        shape: Tuple[int, ...] = ()
    elif isinstance(n_outputs, numbers.Integral):
        shape = (int(n_outputs),)
    else:
        shape = tuple(int(d) for d in n_outputs)
    if target is None:
        if len(shape) > 1 or (shape and shape[0] > 1):
            what = (
                f"{shape[0]} outputs per example; pass target=<class index> "
                "(int, list or tensor)"
                if len(shape) == 1
                else f"outputs of shape {shape} per example; pass a tuple "
                f"target of {len(shape)} indices, e.g. target={(0,) * len(shape)}"
            )
            raise ValueError(f"target is None but the model returns {what}")
        return
    if not shape:
        raise ValueError(
            "target was given but the model returns one value per example "
            "(1-D output); pass target=None"
        )

    def _check_index(v: int, where: str, dim: int = 0) -> None:
        size = shape[dim]
        if not 0 <= v < size:
            what = (
                f"a model with {size} outputs"
                if len(shape) == 1
                else f"output dimension {dim + 1} of size {size} (outputs {shape})"
            )
            raise ValueError(
                f"target{where} = {v} is out of range for {what}; use 0..{size - 1}"
            )

    def _check_tuple(t: tuple, where: str) -> None:
        if len(t) != len(shape):
            raise ValueError(
                f"target{where} = {t} has {len(t)} indices but each example's "
                f"output has shape {shape}; a tuple target needs one index per "
                f"output dimension ({len(shape)}) so that it picks one score"
            )
        for d, v in enumerate(t):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"target{where}[{d}] must be an int, got {v!r}")
            _check_index(int(v), f"{where}[{d}]", d)

    def _need_2d(form: str) -> None:
        if len(shape) != 1:
            raise ValueError(
                f"target is {form} but the model's output has shape {shape} per "
                f"example; {form} targets select a column of N x C outputs. For "
                f"this output pass a tuple of {len(shape)} indices (the same for "
                "every example) or a list of such tuples (one per example)"
            )

    if isinstance(target, bool):
        raise TypeError("target must be an int, list, tuple or Tensor, not bool")
    if isinstance(target, numbers.Integral):
        _need_2d("an int")
        _check_index(int(target), "")
    elif isinstance(target, Tensor):
        if target.is_floating_point():
            raise TypeError(f"target tensor must be integer, got {target.dtype}")
        if target.numel() != 1 and (target.dim() != 1 or target.numel() != n_examples):
            raise ValueError(
                f"target tensor has shape {tuple(target.shape)}; use a scalar or "
                f"one index per example ({n_examples},)"
            )
        _need_2d("a tensor")
        for v in target.reshape(-1).tolist():
            _check_index(int(v), "")
    elif isinstance(target, list):
        if len(target) != n_examples:
            raise ValueError(
                f"target list has {len(target)} entries for {n_examples} examples"
            )
        for j, v in enumerate(target):
            if isinstance(v, numbers.Integral) and not isinstance(v, bool):
                _need_2d("a list of ints")
                _check_index(int(v), f"[{j}]")
            elif isinstance(v, tuple):
                _check_tuple(v, f"[{j}]")
            else:
                raise TypeError(f"target[{j}] must be an int or a tuple, got {v!r}")
    elif isinstance(target, tuple):
        _check_tuple(target, "")
    else:
        raise TypeError(
            f"target must be None, an int, a tuple, a list or a Tensor, got "
            f"{type(target).__name__}"
        )


def check_model_output(output: Any, n_rows: int, name: str = "forward_func") -> Tensor:
    """A model output must be a Tensor with one row per input row."""
    if not isinstance(output, Tensor):
        hint = ""
        if isinstance(output, (tuple, list)):
            hint = (
                "; if the model returns several outputs, pass a function that returns "
                "the scores, e.g. lambda x: model(x)[0]"
            )
        elif hasattr(output, "logits"):
            hint = "; pass a function that returns the scores, e.g. lambda x: model(x).logits"
        raise TypeError(f"{name} must return a Tensor, got {type(output).__name__}{hint}")
    if output.dim() == 0 or output.shape[0] != n_rows:
        raise ValueError(
            f"{name} returned shape {tuple(output.shape)} for {n_rows} input rows; "
            "it must return one row per example (N, N x C or N x ...)"
        )
    # outputs of any rank (N x C x H x W, ...) are fine: check_target makes
    # sure the target picks one score per example
    return output
