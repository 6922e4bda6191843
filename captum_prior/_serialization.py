"""Saving and loading fitted objects without pickle.

A file is a ``safetensors`` archive: the tensors, plus one metadata entry
``captum_prior`` holding JSON with the object's ``kind``, a ``format_version``
and its JSON-serialisable parameters.  Loading runs no code from the file.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, Tuple, Union

import torch
from torch import Tensor

META_KEY = "captum_prior"


def save_state(
    path: Union[str, os.PathLike],
    kind: str,
    format_version: int,
    tensors: Dict[str, Tensor],
    meta: Dict[str, Any],
) -> None:
    """Write ``tensors`` and JSON ``meta`` to ``path`` (safetensors format)."""
    from safetensors.torch import save_file

    header = json.dumps({"kind": kind, "format_version": format_version, "meta": meta})
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    save_file(clean, os.fspath(path), metadata={META_KEY: header})


def load_state(
    path: Union[str, os.PathLike], kind: str, supported_versions: Iterable[int]
) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """Read a file written by :func:`save_state`, checking kind and version.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a captum_prior file, holds another kind of
            object, or has an unsupported format version.
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
        raise ValueError(
            f"{path} is not a safetensors file written by captum_prior ({exc})"
        ) from None
    if META_KEY not in meta:
        raise ValueError(
            f"{path} has no captum_prior header; it was not written by "
            f"{kind}.save()"
        )
    header = json.loads(meta[META_KEY])
    if header.get("kind") != kind:
        raise ValueError(
            f"{path} holds a {header.get('kind')!r}, not a {kind!r}; load it with "
            "the matching class"
        )
    versions = tuple(supported_versions)
    if header.get("format_version") not in versions:
        raise ValueError(
            f"{path} has format version {header.get('format_version')!r}; this "
            f"captum_prior reads versions {versions}. Re-fit and save it again, or "
            "use the captum_prior version that wrote it"
        )
    return tensors, header["meta"]


def to_device(tensors: Dict[str, Tensor], device: Union[str, torch.device, None]) -> Dict[str, Tensor]:
    return {k: v.to(device) if device is not None else v for k, v in tensors.items()}
