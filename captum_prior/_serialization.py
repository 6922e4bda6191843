"""Saving and loading fitted objects without pickle.

A file is a ``safetensors`` archive: the tensors, plus one metadata entry
``captum_prior`` holding JSON with the object's ``kind``, a ``format_version``
and its JSON-serialisable parameters.  Loading runs no code from the file.

Saving is atomic: the file is written to a temporary file in the same
directory, flushed to disk and renamed over ``path`` (``os.replace``), so an
interrupted save leaves any previous file intact.  The folder must exist:
saving into a missing folder raises ``FileNotFoundError`` naming it (folders
are never created, so a mistyped path fails instead of appearing somewhere).  Loading raises one error
type, :class:`~captum_prior.errors.FileFormatError` (a ``ValueError``), naming
the file and what is wrong with it: not a safetensors file (truncated or
corrupted), no or unreadable captum_prior header, another kind of object,
an unsupported format version, a missing or mis-shaped tensor, or a
non-finite parameter.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from typing import (
    Any,
    Dict,
    Iterable,
    Iterator,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch
from torch import Tensor

from captum_prior.errors import FileFormatError

META_KEY = "captum_prior"

#: a dimension of a shape spec: a fixed int or a symbol shared across tensors
Dim = Union[int, str]


def save_state(
    path: Union[str, os.PathLike],
    kind: str,
    format_version: int,
    tensors: Dict[str, Tensor],
    meta: Dict[str, Any],
) -> None:
    """Write ``tensors`` and JSON ``meta`` to ``path`` (safetensors format),
    atomically: temporary file in the same directory, fsync, ``os.replace``."""
    from safetensors.torch import save_file

    header = json.dumps({"kind": kind, "format_version": format_version, "meta": meta})
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"cannot save to {path}: the folder {folder} does not exist; create it "
            "first, e.g. os.makedirs(folder, exist_ok=True) (save never creates folders, "
            "so a mistyped path is not silently created)"
        )
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save to {path}: it is a folder; pass a file name inside it")
    try:
        fd, tmp = tempfile.mkstemp(
            prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder
        )
    except PermissionError:
        raise PermissionError(
            f"cannot save to {path}: the folder {folder} is not writable"
        ) from None
    os.close(fd)
    try:
        save_file(clean, tmp, metadata={META_KEY: header})
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def reading(path: Union[str, os.PathLike]) -> Iterator[None]:
    """Turn any error raised while rebuilding an object from the file at
    ``path`` (missing keys, wrong types, bad values) into a
    :class:`FileFormatError` naming the file."""
    try:
        yield
    except FileFormatError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as exc:
        what = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
        raise FileFormatError(
            f"{os.fspath(path)}: the saved object cannot be rebuilt ({what}); the "
            "file is corrupted or was not written by this class's save()"
        ) from exc


def load_state(
    path: Union[str, os.PathLike],
    kind: str,
    supported_versions: Iterable[int],
    shapes: Optional[Mapping[str, Sequence[Dim]]] = None,
    allow_nonfinite: Sequence[str] = (),
) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """Read a file written by :func:`save_state`, checking what it holds.

    Parameters
    ----------
    path
        the file.
    kind
        the class name the file must hold.
    supported_versions
        format versions this code reads.
    shapes
        optional spec ``{name: (dim, ...)}``: each listed tensor must exist
        with that many dimensions; an int dim must match exactly, a str dim
        must be the same wherever the symbol is used.
    allow_nonfinite
        names of tensors that may hold NaN/Inf (every other floating tensor
        must be finite).

    Raises
    ------
    FileNotFoundError
        no such file.
    FileFormatError
        the file is truncated or corrupted, is not a captum_prior file, holds
        another kind of object or an unsupported format version, or a tensor is
        missing, mis-shaped or non-finite.
    """
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with safe_open(path, framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise FileFormatError(
            f"{path} is not a safetensors file written by captum_prior (truncated or "
            f"corrupted?): {exc}"
        ) from None
    if META_KEY not in meta:
        raise FileFormatError(
            f"{path} has no captum_prior header; it was not written by {kind}.save()"
        )
    try:
        header = json.loads(meta[META_KEY])
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{path} has a corrupted captum_prior header ({exc})") from None
    if not isinstance(header, dict):
        raise FileFormatError(f"{path} has a corrupted captum_prior header (not a JSON object)")
    if header.get("kind") != kind:
        raise FileFormatError(
            f"{path} holds a {header.get('kind')!r}, not a {kind!r}; load it with "
            "the matching class"
        )
    versions = tuple(supported_versions)
    if header.get("format_version") not in versions:
        raise FileFormatError(
            f"{path} has format version {header.get('format_version')!r}; this "
            f"captum_prior reads versions {versions}. Re-fit and save it again, or "
            "use the captum_prior version that wrote it"
        )
    if not isinstance(header.get("meta"), dict):
        raise FileFormatError(f"{path} has a corrupted captum_prior header (no 'meta' object)")
    if shapes is None:
        shapes = _known_shapes(path, kind, header["meta"])
    if shapes is not None:
        check_shapes(path, tensors, shapes)
    for name, t in tensors.items():
        if name in allow_nonfinite or not t.is_floating_point():
            continue
        if not bool(torch.isfinite(t).all()):
            raise FileFormatError(
                f"{path}: parameter {name!r} holds NaN or Inf; the file is corrupted "
                "or was saved from a diverged fit"
            )
    return tensors, header["meta"]


def check_shapes(
    path: Union[str, os.PathLike], tensors: Mapping[str, Tensor], shapes: Mapping[str, Sequence[Dim]]
) -> Dict[str, int]:
    """Check ``tensors`` against a shape spec (see :func:`load_state`); returns
    the value of every symbolic dimension."""
    path = os.fspath(path)
    sizes: Dict[str, int] = {}
    for name, spec in shapes.items():
        if name not in tensors:
            raise FileFormatError(f"{path}: tensor {name!r} is missing")
        shape = tuple(tensors[name].shape)
        if len(shape) != len(spec):
            raise FileFormatError(
                f"{path}: tensor {name!r} has shape {shape}, expected {len(spec)} dimensions {tuple(spec)}"
            )
        for d, (got, want) in enumerate(zip(shape, spec)):
            if isinstance(want, str):
                if sizes.setdefault(want, got) != got:
                    raise FileFormatError(
                        f"{path}: tensor {name!r} has shape {shape}: dimension {d} is "
                        f"{got} but {want} = {sizes[want]} elsewhere in the file"
                    )
            elif got != want:
                raise FileFormatError(
                    f"{path}: tensor {name!r} has shape {shape}; dimension {d} must be {want}"
                )
    return sizes


def _known_shapes(path: str, kind: str, meta: Dict[str, Any]) -> Optional[Dict[str, Tuple[Dim, ...]]]:
    """The shapes the project's fitted classes save, tied to their metadata
    (so a file whose parameters do not fit its own header is rejected)."""
    try:
        if kind == "JointGaussianMixture":
            p = meta["params"]
            K, J = int(p["n_lower"]), int(p["n_higher"])
            dx, dy = int(meta["n_features_in"]), int(meta["n_higher_features_in"])
            return {
                "lower_means": (K, dx), "lower_covariances": (K, dx),
                "higher_means": (J, dy), "higher_covariances": (J, dy),
                "log_pi": (J,), "log_q": (int(meta["n_positions"]), K, J),
                "wx_mean": (dx,), "wx_components": (dx, dx), "wx_scale": (dx,),
                "wy_mean": (dy,), "wy_components": (dy, dy), "wy_scale": (dy,),
            }
        if kind == "DMMMEN":
            K, d = int(meta["params"]["n_components"]), int(meta["n_features_in_"])
            chains = (int(meta["n_chains_"]), "T")
            traces = {"trace_": chains, "log_likelihood_trace_": chains, "marginal_trace_": chains}
            return {
                "coef_": (K, d), "intercept_": (K,), "weights_": (K,), "sigma2_": (K,),
                "penalty_": (K, "Q"), "labels_": ("N",), "component_sizes_": (K,),
                **traces,
                "beta_draws_": ("S", K, "B"), "weights_draws_": ("S", K),
                "sigma2_draws_": ("S", K), "counts_draws_": ("S", K),
                "relabel_permutations_": ("S", K),
            }
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(
            f"{path} has a corrupted captum_prior header (bad or missing entry {exc})"
        ) from None
    return None


def to_device(tensors: Dict[str, Tensor], device: Union[str, torch.device, None]) -> Dict[str, Tensor]:
    return {k: v.to(device) if device is not None else v for k, v in tensors.items()}
