"""On-disk store of per-example results: a manifest plus atomic safetensors shards.

Layout of a store directory::

    manifest.json            what was computed (kind, format version, the call's
                             identity: method and arguments, model, seed,
                             dataset, shard size) and the finished shards with
                             their SHA-256 checksums
    shard-00000.safetensors  examples [0, S)      (``index``, ``target``, ...)
    shard-00001.safetensors  examples [S, 2S)
    ...

A shard is written to a temporary file in the same directory and renamed into
place (``os.replace``), so a shard file either is complete or does not exist,
even after ``kill -9``.  Each shard's safetensors metadata repeats the
identity hash of the call, so a shard finished after the manifest was last
written (a killed run, another rank) is recognised on resume.  Loading never
runs code from the files (no pickle).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np
import torch
from torch import Tensor

from captum_prior.errors import CaptumPriorError, FileFormatError

__all__ = [
    "FORMAT_VERSION",
    "ManifestMismatchError",
    "ShardStore",
    "StoredAttributions",
    "load_attributions",
    "identity_hash",
    "jsonable",
]

#: Format version written into every manifest; a store of another version is refused.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_META_KEY = "captum_prior_shard"


class ManifestMismatchError(CaptumPriorError):
    """The output directory holds results of another call.

    Raised when the directory's manifest names another method, other
    arguments, seed, model or dataset: results of two calls are never mixed.
    The message names each differing field with both values.
    """


def jsonable(value: Any) -> Any:
    """Return a JSON-serialisable description of ``value``.

    Tensors and arrays become ``{"tensor": shape, "dtype": ..., "sha256": ...}``,
    so that two calls with different tensors never share an identity;
    mappings and sequences are converted recursively.

    Parameters
    ----------
    value : object
        A tensor, array, number, string, mapping or sequence of them.

    Returns
    -------
    object
        The same structure, made of JSON types only.

    Examples
    --------
    >>> import torch
    >>> from captum_prior.runner.store import jsonable
    >>> jsonable({"n_samples": 8, "baselines": torch.zeros(2, 3)})["baselines"]["tensor"]
    [2, 3]
    """
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Tensor):
        t = value.detach().to("cpu").contiguous()
        return {
            "tensor": list(t.shape),
            "dtype": str(t.dtype).replace("torch.", ""),
            "sha256": hashlib.sha256(
                t.reshape(-1).view(torch.uint8).numpy().tobytes()
            ).hexdigest()[:16],
        }
    if isinstance(value, np.ndarray):
        return jsonable(torch.from_numpy(np.ascontiguousarray(value)))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}"
    return repr(value)


def identity_hash(identity: Mapping[str, Any]) -> str:
    """Return a short stable hash of a JSON-able identity dict.

    Parameters
    ----------
    identity : dict
        A dict of JSON types (see :func:`jsonable`).

    Returns
    -------
    str
        A hexadecimal digest, the same for equal dicts whatever their key order.
    """
    blob = json.dumps(jsonable(identity), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


_MISSING = object()


def _leaf_differences(stored: Any, asked: Any, prefix: str = "") -> List[Tuple[str, Any, Any]]:
    """``(dotted field, stored value, asked value)`` for every leaf that differs:
    dictionaries are compared key by key, so a change deep inside (one
    argument of ``attribute_kwargs``) is named by its own path rather than
    by the whole dictionary."""
    if isinstance(stored, Mapping) and isinstance(asked, Mapping):
        out: List[Tuple[str, Any, Any]] = []
        for k in sorted(set(stored) | set(asked), key=str):
            out += _leaf_differences(
                stored.get(k, _MISSING), asked.get(k, _MISSING), f"{prefix}.{k}" if prefix else str(k)
            )
        return out
    return [] if stored == asked else [(prefix, stored, asked)]


def _show(value: Any, limit: int = 200) -> str:
    """A value as JSON (``(absent)`` for a missing field), whole unless very long."""
    if value is _MISSING:
        return "(absent)"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _atomic_write_bytes(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Progress:
    """``advance(n)`` moves a tqdm bar by ``n``; :meth:`lower_total` takes
    back work that turned out not to be needed (an upper bound that was
    not reached), so the bar's ETA stays right."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def __call__(self, n: int) -> None:
        self.bar.update(n)

    def lower_total(self, n: int) -> None:
        if n > 0 and self.bar.total is not None:
            self.bar.total = max(self.bar.n, self.bar.total - n)
            self.bar.refresh()


class ShardStore:
    """A directory of shards for one call: the engine under the runner.

    Shard ``k`` holds examples ``[k * shard_size, (k + 1) * shard_size)``; it
    is written to a temporary file and renamed into place, and its SHA-256 is
    recorded in ``manifest.json``. A rerun computes only the missing shards.

    Parameters
    ----------
    path : str or os.PathLike
        The directory.
    kind : {"attributions", "metrics"}
        What the shards hold.
    identity : dict
        Everything that determines the results; a directory whose manifest has
        another identity is refused with :class:`ManifestMismatchError`.
    n_examples : int
        Dataset length.
    shard_size : int
        Examples per shard.
    info : dict, optional
        Descriptive fields stored in the manifest but not compared (e.g. the
        command line).

    See Also
    --------
    captum_prior.runner.attribute_dataset : writes attributions through a store.
    load_attributions : reads them back.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike],
        kind: str,
        identity: Mapping[str, Any],
        n_examples: int,
        shard_size: int,
        info: Optional[Mapping[str, Any]] = None,
    ) -> None:
        self.path = os.fspath(path)
        self.kind = kind
        self.identity = jsonable(dict(identity))
        self.n_examples = int(n_examples)
        self.shard_size = int(shard_size)
        self.info = jsonable(dict(info or {}))
        self.id_hash = identity_hash(
            {"kind": kind, "identity": self.identity, "n": self.n_examples, "s": self.shard_size}
        )

    # -- layout -----------------------------------------------------------------
    @property
    def n_shards(self) -> int:
        return (self.n_examples + self.shard_size - 1) // self.shard_size

    def shard_range(self, k: int) -> range:
        return range(k * self.shard_size, min((k + 1) * self.shard_size, self.n_examples))

    def shard_file(self, k: int) -> str:
        return os.path.join(self.path, f"shard-{k:05d}.safetensors")

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.path, MANIFEST)

    # -- manifest ---------------------------------------------------------------
    def _fresh_manifest(self) -> Dict[str, Any]:
        from captum_prior import __version__

        return {
            "format": "captum_prior.store",
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "identity": self.identity,
            "identity_hash": self.id_hash,
            "n_examples": self.n_examples,
            "shard_size": self.shard_size,
            "n_shards": self.n_shards,
            "info": self.info,
            "captum_prior_version": __version__,
            "complete": False,
            "shards": {},
        }

    def check_directory(self) -> Optional[Dict[str, Any]]:
        """Refuse a directory that holds something else or another call's
        results; return its manifest (or None for a new/empty directory)."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise CaptumPriorError(f"output {self.path} exists and is not a directory")
        if not os.path.isdir(self.path):
            return None
        # one listing decides: under torchrun rank 0 may move the manifest into
        # place between a separate existence check and the listing
        others = [f for f in os.listdir(self.path) if not f.startswith(".")]
        if MANIFEST not in others:
            if others:
                raise CaptumPriorError(
                    f"output directory {self.path} is not empty and holds no {MANIFEST} "
                    f"(found e.g. {sorted(others)[0]!r}); choose a new or empty directory"
                )
            return None
        manifest = read_manifest(self.path)
        self._compare(manifest)
        return manifest

    def _compare(self, manifest: Mapping[str, Any]) -> None:
        mine = {
            "kind": self.kind,
            "n_examples": self.n_examples,
            "shard_size": self.shard_size,
            **{f"identity.{k}": v for k, v in self.identity.items()},
        }
        theirs = {
            "kind": manifest.get("kind"),
            "n_examples": manifest.get("n_examples"),
            "shard_size": manifest.get("shard_size"),
            **{f"identity.{k}": v for k, v in (manifest.get("identity") or {}).items()},
        }
        first = ["identity.method", "identity.seed", "identity.model", "identity.dataset", "n_examples"]
        diff = _leaf_differences(theirs, mine)
        diff.sort(key=lambda d: (next((i for i, f in enumerate(first) if d[0] == f or d[0].startswith(f + ".")), 99), d[0]))
        if diff:
            shown = [
                f"{k.replace('identity.', '')}: stored {_show(a)}, asked {_show(b)}" for k, a, b in diff[:8]
            ]
            more = f"; and {len(diff) - 8} more field(s)" if len(diff) > 8 else ""
            raise ManifestMismatchError(
                f"{self.manifest_path} was written by another call ("
                + "; ".join(shown) + more
                + "); results are never mixed: use another output directory or delete this one"
            )

    def create(self) -> Dict[str, Any]:
        """Check the directory, create it and its manifest if new; return the manifest."""
        manifest = self.check_directory()
        if manifest is None:
            os.makedirs(self.path, exist_ok=True)
            manifest = self._fresh_manifest()
            self.write_manifest(manifest)
        return manifest

    def remove_temporaries(self) -> None:
        """Delete temporary files a killed run left behind (call before any
        rank starts writing)."""
        for f in os.listdir(self.path):
            if f.startswith((".shard-", ".manifest.json.")) and f.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(self.path, f))
                except OSError:
                    pass

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        _atomic_write_bytes(
            self.manifest_path, (json.dumps(manifest, indent=1, sort_keys=False) + "\n").encode()
        )

    # -- shards -----------------------------------------------------------------
    def write_shard(self, k: int, tensors: Mapping[str, Tensor]) -> str:
        """Write shard ``k`` atomically; return its SHA-256."""
        from safetensors.torch import save

        clean = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
        n = clean["index"].shape[0]
        if n != len(self.shard_range(k)):
            raise ValueError(f"shard {k} must hold {len(self.shard_range(k))} examples, got {n}")
        meta = {_META_KEY: json.dumps({"identity_hash": self.id_hash, "shard": k, "n": n})}
        data = save(clean, metadata=meta)
        _atomic_write_bytes(self.shard_file(k), data)
        return hashlib.sha256(data).hexdigest()

    def _shard_ok(self, k: int, recorded: Optional[str]) -> Optional[str]:
        """Checksum of a valid finished shard ``k``, or None."""
        from safetensors import safe_open

        path = self.shard_file(k)
        if not os.path.isfile(path):
            return None
        digest = _sha256_file(path)
        if recorded is not None:
            return digest if digest == recorded else None
        try:
            with safe_open(path, framework="pt") as fh:
                meta = json.loads((fh.metadata() or {}).get(_META_KEY, "{}"))
                n = fh.get_slice("index").get_shape()[0]
        except Exception:
            return None
        if meta.get("identity_hash") != self.id_hash or meta.get("shard") != k:
            return None
        if n != len(self.shard_range(k)):
            return None
        return digest

    def finished(self, manifest: Optional[Mapping[str, Any]] = None) -> Dict[int, str]:
        """Finished, valid shards ``{k: sha256}`` (those listed in the manifest
        with a matching checksum, plus complete shards of this call not yet
        listed)."""
        manifest = manifest if manifest is not None else read_manifest(self.path)
        listed = manifest.get("shards", {})
        out: Dict[int, str] = {}
        for k in range(self.n_shards):
            entry = listed.get(f"{k:05d}")
            digest = self._shard_ok(k, entry["sha256"] if entry else None)
            if digest is not None:
                out[k] = digest
        return out

    def record(self, manifest: Dict[str, Any], done: Mapping[int, str], complete: bool = False) -> None:
        manifest["shards"] = {
            f"{k:05d}": {
                "file": os.path.basename(self.shard_file(k)),
                "first": self.shard_range(k).start,
                "n": len(self.shard_range(k)),
                "sha256": done[k],
            }
            for k in sorted(done)
        }
        manifest["complete"] = bool(complete)
        self.write_manifest(manifest)

    def start(self, group: Any) -> Tuple[Dict[str, Any], Dict[int, str], List[int]]:
        """Open the directory for the ranks of ``group`` (a
        :class:`~captum_prior.runner._dist.Group`): rank 0 creates it (or checks
        it) and removes what a killed run left behind; every rank then sees the
        same finished shards before anyone writes. Returns ``(manifest, done,
        mine)``: the finished shards' checksums and this rank's pending shards."""
        if group.rank == 0:
            self.create()
            self.remove_temporaries()
        group.barrier()
        manifest = self.check_directory()
        assert manifest is not None
        done = self.finished(manifest)
        group.barrier()  # nobody writes before every rank has seen the same finished set
        pending = [k for k in range(self.n_shards) if k not in done]
        return manifest, done, pending[group.rank :: group.world]

    def run(
        self,
        group: Any,
        shard_tensors: Callable[[List[int], "Progress"], Mapping[str, Tensor]],
        desc: str,
        progress: bool = True,
        after_finalize: Optional[Callable[[], None]] = None,
        total: Optional[Callable[[List[int]], int]] = None,
        unit: str = "ex",
    ) -> None:
        """Compute and write every pending shard of this rank, then finish.

        The loop shared by ``explain`` and ``evaluate``: :meth:`start`, then
        for each of this rank's shards ``shard_tensors(rows, advance)``
        (``rows``: the shard's dataset positions; ``advance(n)`` moves the
        tqdm bar, shown on rank 0 only, by ``n`` ``unit``; its total is the
        number of examples of this rank's pending shards, or ``total(rows)``
        summed over them) gives the tensors that :meth:`write_shard` writes
        atomically, rank 0 recording each in the manifest; after a barrier
        rank 0 :meth:`finalize` s the manifest and calls ``after_finalize``
        (if given), and all ranks meet at a last barrier.
        """
        from tqdm.auto import tqdm

        manifest, done, mine = self.start(group)
        count = total or len
        bar = tqdm(
            total=sum(count(list(self.shard_range(k))) for k in mine), unit=unit,
            disable=not progress or group.rank != 0, desc=desc, dynamic_ncols=True,
        )
        advance = Progress(bar)
        for k in mine:
            done[k] = self.write_shard(k, shard_tensors(list(self.shard_range(k)), advance))
            if group.rank == 0:
                self.record(manifest, done)
        bar.close()
        group.barrier()
        if group.rank == 0:
            self.finalize(manifest)
            if after_finalize is not None:
                after_finalize()
        group.barrier()

    def finalize(self, manifest: Dict[str, Any]) -> None:
        """Mark the run complete once every shard is on disk (rank 0, after
        the barrier that follows the last shard); an error names the missing ones."""
        final = self.finished(manifest)
        missing = [k for k in range(self.n_shards) if k not in final]
        if missing:
            raise RuntimeError(
                f"{self.kind} shards {missing[:5]} were not written; rerun the same "
                "command to finish them"
            )
        self.record(manifest, final, complete=True)


def read_manifest(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Read and check ``path/manifest.json``."""
    path = os.fspath(path)
    mpath = os.path.join(path, MANIFEST)
    if not os.path.isfile(mpath):
        raise FileNotFoundError(f"{path} holds no {MANIFEST}: not a captum_prior result directory")
    try:
        with open(mpath) as fh:
            manifest = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"{mpath} is not readable JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "captum_prior.store":
        raise FileFormatError(f"{mpath} is not a captum_prior manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise FileFormatError(
            f"{mpath} has format version {manifest.get('format_version')!r}; this "
            f"captum_prior reads version {FORMAT_VERSION}"
        )
    return manifest


class StoredAttributions(NamedTuple):
    """What :func:`load_attributions` returns, rows in the order asked for.

    A named tuple of ``index`` (dataset positions, ``long``), ``target`` (the
    target each example was attributed to), ``attributions`` (one row per
    example, the input's shape) and ``delta`` (the convergence delta per
    example, or None when the method gives none).
    """

    index: Tensor
    target: Tensor
    attributions: Tensor
    delta: Optional[Tensor]


def _shard_files(path: str, manifest: Mapping[str, Any]) -> Dict[int, Dict[str, Any]]:
    return {int(k): v for k, v in manifest.get("shards", {}).items()}


def iter_shards(
    path: Union[str, os.PathLike], kind: Optional[str] = None, verify: bool = False
) -> Iterator[Dict[str, Tensor]]:
    """Yield the tensors of every finished shard, in order (one shard in memory
    at a time)."""
    from safetensors.torch import load_file

    path = os.fspath(path)
    manifest = read_manifest(path)
    if kind is not None and manifest.get("kind") != kind:
        raise FileFormatError(f"{path} holds {manifest.get('kind')!r}, not {kind!r}")
    for _k, entry in sorted(_shard_files(path, manifest).items()):
        f = os.path.join(path, entry["file"])
        if verify and _sha256_file(f) != entry["sha256"]:
            raise FileFormatError(f"{f}: checksum does not match {MANIFEST}; the file was changed")
        try:
            yield load_file(f)
        except Exception as exc:
            raise FileFormatError(f"{f} is not readable ({exc})") from None


def load_attributions(
    path: Union[str, os.PathLike],
    indices: Union[None, Sequence[int], Tensor, range, slice] = None,
    dtype: Optional[torch.dtype] = torch.float32,
    verify: bool = False,
) -> StoredAttributions:
    r"""Read stored attributions, all or some, without reading the others.

    Only the shards that hold the requested indices are opened, and from each
    only the requested rows are read (safetensors slices are memory-mapped).

    Parameters
    ----------
    path : str or os.PathLike
        A directory written by
        :func:`~captum_prior.runner.attribute_dataset`.
    indices : sequence of int, torch.Tensor, range or slice, optional
        Dataset positions to read, in the order wanted (all finished examples
        when None).
    dtype : torch.dtype or None, default=torch.float32
        Convert the attributions to this dtype (None keeps the stored one,
        e.g. float16).
    verify : bool, default=False
        Check every opened shard's SHA-256 against the manifest.

    Returns
    -------
    StoredAttributions
        ``index``, ``target``, ``attributions`` and ``delta`` (None when the
        method gives none).

    Raises
    ------
    KeyError
        An index is outside the dataset or in a shard that is not finished.
    FileFormatError
        The directory holds no attributions, or a shard is unreadable or
        (with ``verify=True``) does not match its checksum.

    Examples
    --------
    >>> import tempfile, torch
    >>> from captum.attr import Saliency
    >>> from captum_prior.data import load_fashion_mnist_sample
    >>> from captum_prior.models import load_fashion_cnn
    >>> from captum_prior.runner import attribute_dataset, load_attributions
    >>> x, y = load_fashion_mnist_sample(6)
    >>> out = tempfile.mkdtemp()
    >>> _ = attribute_dataset(Saliency(load_fashion_cnn()), torch.utils.data.TensorDataset(x, y),
    ...                       out, shard_size=4, progress=False)
    >>> part = load_attributions(out, indices=[5, 0])
    >>> part.index.tolist(), tuple(part.attributions.shape)
    ([5, 0], (2, 1, 28, 28))
    """
    from safetensors import safe_open

    path = os.fspath(path)
    manifest = read_manifest(path)
    if manifest.get("kind") != "attributions":
        raise FileFormatError(f"{path} holds {manifest.get('kind')!r}, not attributions")
    n, size = int(manifest["n_examples"]), int(manifest["shard_size"])
    shards = _shard_files(path, manifest)
    if indices is None:
        idx = torch.cat([torch.arange(e["first"], e["first"] + e["n"]) for _, e in sorted(shards.items())]) \
            if shards else torch.zeros(0, dtype=torch.long)
    elif isinstance(indices, slice):
        idx = torch.arange(n)[indices]
    else:
        idx = torch.as_tensor(list(indices) if isinstance(indices, range) else indices, dtype=torch.long).reshape(-1)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise KeyError(f"indices must lie in [0, {n}); got {int(idx.min())}..{int(idx.max())}")
    shard_of = idx // size
    parts: Dict[str, List[Tensor]] = {"target": [], "attributions": [], "delta": []}
    order: List[Tensor] = []
    has_delta = True
    for k in torch.unique(shard_of).tolist():
        if k not in shards:
            raise KeyError(f"shard {k} (examples {k * size}..) is not finished in {path}; rerun to finish it")
        sel = torch.nonzero(shard_of == k).reshape(-1)
        local = (idx[sel] - k * size).tolist()
        f = os.path.join(path, shards[k]["file"])
        if verify and _sha256_file(f) != shards[k]["sha256"]:
            raise FileFormatError(f"{f}: checksum does not match {MANIFEST}")
        lo, hi = min(local), max(local) + 1
        rel = torch.tensor(local) - lo
        with safe_open(f, framework="pt") as fh:
            keys = set(fh.keys())
            parts["target"].append(fh.get_slice("target")[lo:hi][rel])
            parts["attributions"].append(fh.get_slice("attributions")[lo:hi][rel])
            if "delta" in keys:
                parts["delta"].append(fh.get_slice("delta")[lo:hi][rel])
            else:
                has_delta = False
        order.append(sel)
    if order:
        perm = torch.empty(idx.numel(), dtype=torch.long)
        perm[torch.cat(order)] = torch.arange(idx.numel())
        attrs = torch.cat(parts["attributions"])[perm]
        target = torch.cat(parts["target"])[perm]
        delta = torch.cat(parts["delta"])[perm] if has_delta and parts["delta"] else None
    else:
        shape = manifest.get("info", {}).get("attribution_shape") or []
        attrs = torch.zeros((0, *shape))
        target = torch.zeros(0, dtype=torch.long)
        delta = None
    if dtype is not None:
        attrs = attrs.to(dtype)
    return StoredAttributions(idx, target, attrs, delta)
