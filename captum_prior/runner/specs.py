"""What the command line's ``--model``, ``--data`` and ``--method`` strings mean.

Every user mistake raises :class:`SpecError` (a ``ValueError``) with a
one-line message naming the option and the fix; the CLI prints it and exits
with status 2.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from captum_prior.errors import CaptumPriorError

__all__ = [
    "SpecError",
    "MODELS",
    "DATASETS",
    "METHODS",
    "load_model",
    "load_data",
    "ImageFolder",
    "build_method",
    "read_class_index",
    "has_labels",
    "RunnerWarning",
    "REFERENCE_METHODS",
    "METHOD_BUILDERS",
    "MethodContext",
    "register_method",
]


class SpecError(CaptumPriorError):
    """A ``--model``, ``--data`` or ``--method`` value that cannot be used.

    A ``ValueError``; the command line prints its one-line message and exits
    with status 2.
    """


class RunnerWarning(UserWarning):
    """Something the command line did that the user should know about.

    For example: the references are the explained images, there are fewer
    references than asked, or the labels disagree with the model's predictions.
    The CLI prints it as one line.
    """


# ---------------------------------------------------------------- models
def _fashion_cnn() -> nn.Module:
    from captum_prior.models import load_fashion_cnn

    return load_fashion_cnn()


def _efficientnet() -> nn.Module:
    try:
        from captum_prior.models.efficientnet import load_efficientnet_lite0

        return load_efficientnet_lite0()
    except ImportError as exc:
        raise SpecError(f"--model efficientnet-lite0: {exc}") from None


#: Bundled ``--model`` names -> loader.
MODELS: Dict[str, Callable[[], nn.Module]] = {
    "fashion-cnn": _fashion_cnn,
    "efficientnet-lite0": _efficientnet,
}


def load_model(spec: str) -> nn.Module:
    """Return the model a ``--model`` string names, in eval mode.

    Parameters
    ----------
    spec : str
        A bundled name (a key of :data:`MODELS`) or ``package.module:factory``:
        a callable returning an ``nn.Module``, or an ``nn.Module`` object. The
        current directory is importable, as for ``uvicorn`` / ``gunicorn``
        applications.

    Returns
    -------
    torch.nn.Module
        The model, put in eval mode.

    Raises
    ------
    SpecError
        The name is not bundled, the module cannot be imported, or the
        attribute is missing or does not give an ``nn.Module``.

    Examples
    --------
    >>> from captum_prior.runner.specs import load_model
    >>> type(load_model("fashion-cnn")).__name__
    'FashionCNN'
    """
    if spec in MODELS:
        model = MODELS[spec]()
    else:
        if ":" not in spec:
            raise SpecError(
                f"--model {spec!r} is neither a bundled model ({', '.join(MODELS)}) nor "
                "'package.module:factory'"
            )
        mod_name, _, attr = spec.partition(":")
        if not mod_name or not attr:
            raise SpecError(f"--model {spec!r}: write it as 'package.module:factory'")
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(mod_name)
        except Exception as exc:  # noqa: BLE001 - any import failure is the user's spec
            raise SpecError(
                f"--model {spec!r}: cannot import module {mod_name!r} ({type(exc).__name__}: {exc})"
            ) from None
        obj: Any = module
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise SpecError(f"--model {spec!r}: module {mod_name!r} has no attribute {attr!r}")
            obj = getattr(obj, part)
        if not isinstance(obj, nn.Module):
            if not callable(obj):
                raise SpecError(
                    f"--model {spec!r} is a {type(obj).__name__}, not an nn.Module or a factory returning one"
                )
            try:
                obj = obj()
            except Exception as exc:  # noqa: BLE001
                raise SpecError(
                    f"--model {spec!r}: calling the factory failed ({type(exc).__name__}: {exc})"
                ) from None
        if not isinstance(obj, nn.Module):
            raise SpecError(
                f"--model {spec!r} returned a {type(obj).__name__}, not a torch.nn.Module"
            )
        model = obj
    return model.eval()


# ---------------------------------------------------------------- data
_IMAGE_EXT = (".jpg", ".jpeg", ".png")


class TensorData(torch.utils.data.Dataset):
    """In-memory inputs (and optional labels)."""

    def __init__(self, inputs: Tensor, labels: Optional[Tensor] = None) -> None:
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def __getitem__(self, i: int) -> Any:
        if self.labels is None:
            return self.inputs[i]
        return self.inputs[i], int(self.labels[i])


def _parse_floats(value: Optional[str], name: str) -> Optional[Tuple[float, ...]]:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in str(value).split(","))
    except ValueError:
        raise SpecError(f"{name} must be numbers separated by commas, got {value!r}") from None
    if not all(np.isfinite(out)):
        raise SpecError(f"{name} must be finite, got {value!r}")
    return out


def _parse_size(value: Optional[str]) -> Optional[Tuple[int, int]]:
    if value is None:
        return None
    parts = str(value).lower().replace("x", ",").split(",")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise SpecError(f"--size must be N or H,W (pixels), got {value!r}") from None
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2 or min(nums) < 1:
        raise SpecError(f"--size must be N or H,W with positive integers, got {value!r}")
    return nums[0], nums[1]


RESIZE_MODES = ("crop", "stretch")


def read_class_index(path: str) -> Dict[str, int]:
    """Read a map from sub-folder name to class index (``--class-index``).

    Parameters
    ----------
    path : str
        A ``.json`` file holding ``{"folder": index, ...}``, Keras' ImageNet
        file ``{"0": ["n01440764", "tench"], ...}`` (index -> [folder, name])
        or a list of folder names (position = index); or any other text file
        with one class per line, index = line number from 0, the folder name
        the line's first word (ImageNet's ``LOC_synset_mapping.txt``:
        ``n01440764 tench, Tinca tinca``). Empty lines and lines starting with
        ``#`` are skipped.

    Returns
    -------
    dict of str to int
        Folder name -> class index.

    Raises
    ------
    SpecError
        The file is unreadable, not valid JSON, of another layout, empty, or
        holds a negative index.
    """
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise SpecError(f"--class-index {path!r} is not readable ({exc.strerror})") from None
    mapping: Dict[str, int] = {}
    if path.lower().endswith(".json"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"--class-index {path!r} is not valid JSON ({exc})") from None
        if isinstance(obj, list) and all(isinstance(v, str) for v in obj):
            mapping = {v: i for i, v in enumerate(obj)}
        elif isinstance(obj, dict) and all(isinstance(v, int) and not isinstance(v, bool) for v in obj.values()):
            mapping = {str(k): int(v) for k, v in obj.items()}
        elif isinstance(obj, dict) and all(
            isinstance(v, list) and v and isinstance(v[0], str) and str(k).isdigit() for k, v in obj.items()
        ):
            mapping = {v[0]: int(k) for k, v in obj.items()}
        else:
            raise SpecError(
                f"--class-index {path!r}: expected {{\"folder\": index}}, {{\"index\": [\"folder\", ...]}} "
                "or a list of folder names"
            )
    else:
        lines = [ln.split()[0] for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        mapping = {name: i for i, name in enumerate(lines)}
    if not mapping:
        raise SpecError(f"--class-index {path!r} holds no classes")
    if any(v < 0 for v in mapping.values()):
        raise SpecError(f"--class-index {path!r}: class indices must be >= 0")
    return mapping


class ImageFolder(torch.utils.data.Dataset):
    """JPEG/PNG images of a folder, as a dataset.

    Labels come from sub-folder names (sorted, as torchvision's
    ``ImageFolder``, or through ``class_index``); images lying directly in the
    folder have no labels. Images are decoded with pillow to ``[0, 1]``
    floats. Every file's header is read up front, so unreadable files and
    mixed sizes (without ``size``) are reported before any work.

    Parameters
    ----------
    root : str
        The folder.
    size : tuple of int, optional
        ``(h, w)`` to bring every image to (images must share one size when
        None).
    mean, std : sequence of float, optional
        Per-channel normalisation applied after resizing.
    resize : {"crop", "stretch"}, default="crop"
        ``"crop"`` is torchvision's evaluation transform (``Resize`` then
        ``CenterCrop``), written with pillow: the shorter side scaled to
        ``resize_shorter`` keeping the aspect ratio (bilinear, antialiased),
        then the central crop. ``"stretch"`` scales both sides to ``size``
        (the aspect ratio changes).
    resize_shorter : int, optional
        The shorter side before the crop (``max(size)`` when None); at least
        ``max(size)``.
    class_index : dict of str to int, optional
        Sub-folder name -> class index (see :func:`read_class_index`).

    Raises
    ------
    SpecError
        Pillow is missing, an option is inconsistent, the folder is unreadable
        or holds no images, or a file cannot be decoded.
    """

    def __init__(
        self,
        root: str,
        size: Optional[Tuple[int, int]] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        resize: str = "crop",
        resize_shorter: Optional[int] = None,
        class_index: Optional[Dict[str, int]] = None,
    ) -> None:
        try:
            from PIL import Image
        except ImportError:
            raise SpecError("--data: reading an image folder needs pillow (pip install pillow)") from None
        if resize not in RESIZE_MODES:
            raise SpecError(f"--resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        if resize_shorter is not None:
            if size is None:
                raise SpecError("--resize-shorter needs --size (the crop)")
            if resize == "stretch":
                raise SpecError("--resize-shorter applies to --resize crop, not stretch")
            if resize_shorter < max(size):
                raise SpecError(
                    f"--resize-shorter {resize_shorter} is smaller than the crop --size "
                    f"{size[0]},{size[1]}; it must be >= {max(size)}"
                )
        self.root, self.size, self.resize, self.resize_shorter = root, size, resize, resize_shorter
        try:
            entries = sorted(os.listdir(root))
        except OSError as exc:
            raise SpecError(f"--data {root!r} is not readable ({exc.strerror})") from None
        classes = [e for e in entries if os.path.isdir(os.path.join(root, e)) and not e.startswith(".")]
        loose = [e for e in entries if e.lower().endswith(_IMAGE_EXT)]
        files: List[Tuple[str, Optional[int]]] = []
        if classes and not loose:
            self.classes = classes
            if class_index is not None:
                missing = [c for c in classes if c not in class_index]
                if missing:
                    raise SpecError(
                        f"--class-index has no entry for {len(missing)} of the {len(classes)} sub-folders "
                        f"of --data {root!r} (e.g. {', '.join(repr(m) for m in missing[:3])}); "
                        "it must map every sub-folder name to a class index"
                    )
                labels = [class_index[c] for c in classes]
            else:
                labels = list(range(len(classes)))
            for c, name in zip(labels, classes):
                for dirpath, _, names in sorted(os.walk(os.path.join(root, name))):
                    for f in sorted(names):
                        if f.lower().endswith(_IMAGE_EXT):
                            files.append((os.path.join(dirpath, f), c))
        else:
            if class_index is not None:
                raise SpecError(
                    f"--class-index maps sub-folder names to classes, but --data {root!r} "
                    "has its images directly in the folder (no class sub-folders)"
                )
            self.classes = []
            files = [(os.path.join(root, f), None) for f in loose]
        if not files:
            raise SpecError(
                f"--data {root!r} holds no JPEG/PNG images (directly or in class sub-folders)"
            )
        self.files = files
        self.class_index = class_index
        sizes, modes = set(), set()
        for path, _ in files:
            try:
                with Image.open(path) as im:
                    sizes.add(im.size)
                    modes.add(im.mode)
            except Exception as exc:  # noqa: BLE001 - pillow raises many types
                raise SpecError(f"--data: cannot read image {path!r} ({type(exc).__name__}: {exc})") from None
        if size is None and len(sizes) > 1:
            ex = sorted(sizes)[:3]
            raise SpecError(
                f"--data {root!r} holds images of {len(sizes)} different sizes (e.g. "
                + ", ".join(f"{w}x{h}" for w, h in ex)
                + "); pass --size N (resize the shorter side to N and crop the centre N x N) "
                "or --size H,W"
            )
        self.mode = "L" if modes <= {"L", "1", "I;16", "I"} else "RGB"
        channels = 1 if self.mode == "L" else 3
        for name, v in (("--mean", mean), ("--std", std)):
            if v is not None and len(v) not in (1, channels):
                raise SpecError(f"{name} needs 1 or {channels} values for these images, got {len(v)}")
        if std is not None and min(std) <= 0:
            raise SpecError("--std values must be > 0")
        self.mean = None if mean is None else torch.tensor(mean).view(-1, 1, 1)
        self.std = None if std is None else torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Any:
        from PIL import Image

        from captum_prior._image import resize_center_crop_pil

        path, label = self.files[i]
        with Image.open(path) as im:
            im = im.convert(self.mode)
            if self.size is not None and (im.size[1], im.size[0]) != tuple(self.size):
                if self.resize == "crop":
                    im = resize_center_crop_pil(im, self.size, self.resize_shorter)
                else:
                    im = im.resize((self.size[1], self.size[0]), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / 255.0
        x = torch.from_numpy(arr.copy())
        x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
        if self.mean is not None:
            x = x - self.mean
        if self.std is not None:
            x = x / self.std
        return x if label is None else (x, label)


def _load_tensor_file(path: str) -> TensorData:
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        else:
            from safetensors.torch import load_file

            tensors = load_file(path)
    except Exception as exc:  # noqa: BLE001 - numpy/safetensors raise many types
        raise SpecError(f"--data {path!r} is not a readable {os.path.splitext(path)[1]} file ({exc})") from None
    if "inputs" not in tensors:
        raise SpecError(f"--data {path!r} holds no 'inputs' array (found: {sorted(tensors)[:5]})")
    x = tensors["inputs"]
    if x.dtype == torch.uint8:
        x = x.float() / 255.0  # documented: uint8 images are scaled to [0, 1]
    elif not x.is_floating_point():
        raise SpecError(
            f"--data {path!r}: 'inputs' has dtype {x.dtype}; store float images (or uint8 0..255)"
        )
    x = x.float()
    if x.dim() < 2 or x.shape[0] == 0:
        raise SpecError(f"--data {path!r}: 'inputs' must be N x ... with N >= 1, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise SpecError(f"--data {path!r}: 'inputs' contains NaN or Inf")
    y = tensors.get("labels")
    if y is not None:
        if y.is_floating_point() or y.reshape(-1).shape[0] != x.shape[0]:
            raise SpecError(f"--data {path!r}: 'labels' must be N integers, got {tuple(y.shape)} {y.dtype}")
        y = y.reshape(-1).long()
    return TensorData(x, y)


def _fashion_full() -> TensorData:
    from captum_prior.data import load_fashion_mnist

    try:
        x, y = load_fashion_mnist("test")
    except FileNotFoundError as exc:
        raise SpecError(str(exc).splitlines()[0] + " (use fashion-mnist-test-sample)") from None
    return TensorData(x, y)


def _fashion_sample() -> TensorData:
    from captum_prior.data import load_fashion_mnist_sample

    return TensorData(*load_fashion_mnist_sample())


#: Bundled ``--data`` names -> loader.
DATASETS: Dict[str, Callable[[], TensorData]] = {
    "fashion-mnist-test": _fashion_full,
    "fashion-mnist-test-sample": _fashion_sample,
}


def load_data(
    spec: str, size: Optional[str] = None, mean: Optional[str] = None, std: Optional[str] = None,
    limit: Optional[int] = None, resize: str = "crop", resize_shorter: Optional[int] = None,
    class_index: Optional[str] = None, option: str = "--data",
) -> torch.utils.data.Dataset:
    """Return the dataset a ``--data`` string names.

    Parameters
    ----------
    spec : str
        A bundled name (a key of :data:`DATASETS`), an image folder (see
        :class:`ImageFolder`), or a ``.safetensors`` / ``.npz`` file holding
        ``inputs`` (float, or uint8 scaled to ``[0, 1]``) and optionally
        ``labels``.
    size, mean, std : str, optional
        The command line's ``--size`` (``"N"`` or ``"H,W"``), ``--mean`` and
        ``--std`` (comma-separated floats); image folders only.
    limit : int, optional
        Keep only the first ``limit`` examples.
    resize : {"crop", "stretch"}, default="crop"
        How an image folder's images are brought to ``size``.
    resize_shorter : int, optional
        The shorter side before the crop.
    class_index : str, optional
        A file for :func:`read_class_index`.
    option : str, default="--data"
        The option's name in messages.

    Returns
    -------
    torch.utils.data.Dataset
        Items are ``inputs`` or ``(inputs, label)``.

    Raises
    ------
    SpecError
        An unknown name, a missing file, folder-only options given for a file,
        or a bad ``limit``.

    Examples
    --------
    >>> from captum_prior.runner.specs import load_data
    >>> len(load_data("fashion-mnist-test-sample", limit=10))
    10
    """
    mapping = None if class_index is None else read_class_index(class_index)
    folder_only = {"--size": size, "--mean": mean, "--std": std, "--class-index": class_index,
                   "--resize-shorter": resize_shorter}
    if spec in DATASETS or not os.path.isdir(spec):
        given = [k for k, v in folder_only.items() if v is not None]
        if given and option == "--data":
            raise SpecError(
                f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to image folders; "
                f"--data {spec!r} is not one"
            )
    if spec in DATASETS:
        ds: torch.utils.data.Dataset = DATASETS[spec]()
    elif os.path.isdir(spec):
        ds = ImageFolder(spec, _parse_size(size), _parse_floats(mean, "--mean"), _parse_floats(std, "--std"),
                         resize=resize, resize_shorter=resize_shorter, class_index=mapping)
    elif spec.endswith((".safetensors", ".npz")):
        if not os.path.isfile(spec):
            raise SpecError(f"{option} {spec!r}: no such file")
        ds = _load_tensor_file(spec)
    else:
        raise SpecError(
            f"{option} {spec!r} is not a folder, a .safetensors/.npz file or a bundled dataset "
            f"({', '.join(DATASETS)})"
        )
    if limit is not None:
        if limit < 1:
            raise SpecError(f"--limit must be >= 1, got {limit}")
        if limit < len(ds):
            ds = torch.utils.data.Subset(ds, range(limit))
    return ds


def has_labels(dataset: Any) -> bool:
    """Return whether the dataset's items carry a label.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Checked on its first item.

    Returns
    -------
    bool
    """
    from captum_prior.runner.explain import _split_item

    return _split_item(dataset[0])[1] is not None


# ---------------------------------------------------------------- methods
def _patch_mask(shape: Sequence[int], patch: int) -> Tensor:
    from captum_prior.attr.dmm_men_attribution import patch_feature_mask

    return patch_feature_mask(tuple(shape), patch)


def _references(dataset: Any, n: int, seed: int, source: str) -> Tuple[Tensor, List[int]]:
    """``n`` references drawn without replacement (seeded) from ``dataset``;
    all of them, with a :class:`RunnerWarning`, when it holds fewer."""
    import warnings

    from captum_prior.runner.explain import _load_batch

    total = len(dataset)
    k = min(int(n), total)
    if k < n:
        warnings.warn(
            f"--n-references {n} asked, but {source} holds {total} example(s): using all {total}",
            RunnerWarning, stacklevel=2,
        )
    idx = sorted(np.random.default_rng(seed).choice(total, size=k, replace=False).tolist())
    x, _ = _load_batch(dataset, idx)
    return x, idx


def _int(v: Optional[int], default: int) -> int:
    return default if v is None else int(v)


class MethodContext:
    """What a method builder of :data:`METHOD_BUILDERS` receives.

    The model, the explained dataset, the command line's method options, and
    helpers for the reference set and patch masks. ``args`` is recorded in the
    manifest (and compared on resume): a builder adds the options it uses.

    Parameters
    ----------
    name : str
        The ``--method`` name.
    model : torch.nn.Module
        The model explained.
    dataset : torch.utils.data.Dataset
        The explained data.
    n_samples, n_steps : int or None
        ``--n-samples`` / ``--n-steps`` (None: the method's default).
    n_references : int
        ``--n-references``.
    baseline : float
        ``--baseline``, the constant baseline of IG-style methods.
    patch_size : int
        ``--patch-size`` for perturbation methods.
    seed : int
        ``--seed``.
    internal_batch_size : int or None
        ``--internal-batch-size``.
    references : torch.utils.data.Dataset or None
        The ``--references`` dataset (None: draw from ``dataset``).
    references_spec : str or None
        How ``--references`` was given, recorded in the manifest.
    """

    def __init__(
        self, name: str, model: nn.Module, dataset: Any, *, n_samples: Optional[int], n_steps: Optional[int],
        n_references: int, baseline: float, patch_size: int, seed: int,
        internal_batch_size: Optional[int], references: Any, references_spec: Optional[str],
    ) -> None:
        self.name, self.model, self.dataset = name, model, dataset
        self.n_samples, self.n_steps, self.n_references = n_samples, n_steps, n_references
        self.baseline, self.patch_size, self.seed = baseline, patch_size, seed
        self.internal_batch_size = internal_batch_size
        self.references, self.references_spec = references, references_spec
        self.args: Dict[str, Any] = {"name": name}

    @property
    def ib(self) -> Dict[str, int]:
        """``{"internal_batch_size": n}`` when ``--internal-batch-size`` is given, else ``{}``."""
        return {} if self.internal_batch_size is None else {"internal_batch_size": int(self.internal_batch_size)}

    def refs(self) -> Tensor:
        """The reference set: ``n_references`` examples drawn (seeded) from
        ``--references``, or from the explained data with a warning."""
        import warnings

        if self.references is None:
            warnings.warn(
                "the references are drawn from the explained images (--data); pass "
                "--references PATH for a separate reference set (e.g. training images)",
                RunnerWarning, stacklevel=3,
            )
            x, idx = _references(self.dataset, self.n_references, self.seed, "--data")
        else:
            x, idx = _references(self.references, self.n_references, self.seed,
                                 f"--references {self.references_spec!r}")
            self.args.update(references=self.references_spec)
        self.args.update(n_references=len(idx))
        return x

    def patch_mask(self) -> Tensor:
        """Square-patch feature mask of ``--patch-size`` for the data's shape."""
        x0 = self.dataset[0][0] if isinstance(self.dataset[0], (tuple, list)) else self.dataset[0]
        self.args.update(patch_size=self.patch_size)
        return _patch_mask(x0.shape, self.patch_size)


Builder = Callable[[MethodContext], Tuple[Any, Dict[str, Any]]]
#: ``--method`` name -> builder returning ``(attribution, attribute_kwargs)``.
METHOD_BUILDERS: Dict[str, Builder] = {}
#: ``--method`` names and what they are (for ``--help``).
METHODS: Dict[str, str] = {}
#: ``--method`` names that take a reference set (``--references``, ``--n-references``).
REFERENCE_METHODS: List[str] = []


def register_method(name: str, description: str, references: bool = False) -> Callable[[Builder], Builder]:
    """Return a decorator that adds a ``--method``.

    Parameters
    ----------
    name : str
        The ``--method`` name.
    description : str
        One line for ``--help``.
    references : bool, default=False
        True for methods that take ``--references`` (the builder calls
        ``ctx.refs()``).

    Returns
    -------
    callable
        The decorator; it registers ``builder(ctx) -> (attribution,
        attribute_kwargs)`` and returns it unchanged.

    Examples
    --------
    >>> from captum.attr import Saliency
    >>> from captum_prior.runner.specs import METHODS, register_method
    >>> @register_method("abs-saliency", "Captum Saliency of |gradient|")
    ... def _abs_saliency(ctx):
    ...     return Saliency(ctx.model), {"abs": True}
    >>> "abs-saliency" in METHODS
    True
    >>> from captum_prior.runner.specs import METHOD_BUILDERS
    >>> del METHODS["abs-saliency"], METHOD_BUILDERS["abs-saliency"]
    """

    def deco(fn: Builder) -> Builder:
        METHOD_BUILDERS[name] = fn
        METHODS[name] = description
        if references:
            REFERENCE_METHODS.append(name)
        return fn

    return deco


@register_method("expected-gradients", "captum_prior ExpectedGradients (references: --references or the data)",
                 references=True)
def _expected_gradients(ctx: MethodContext) -> Tuple[Any, Dict[str, Any]]:
    from captum_prior.attr import ExpectedGradients

    return ExpectedGradients(ctx.model), dict(baselines=ctx.refs(), n_samples=_int(ctx.n_samples, 50), **ctx.ib)


def _deep_prior_eg(prior_name: str) -> Builder:
    def build(ctx: MethodContext) -> Tuple[Any, Dict[str, Any]]:
        from captum_prior.attr import DeepPriorExpectedGradients
        from captum_prior.priors import BGMMPrior, MGMPrior

        prior = MGMPrior(ctx.model) if prior_name == "mgm" else BGMMPrior(ctx.model, random_state=ctx.seed)
        return (
            DeepPriorExpectedGradients(ctx.model, prior),
            dict(baselines=ctx.refs(), n_samples=_int(ctx.n_samples, 50), **ctx.ib),
        )

    return build


register_method("deep-mgm-eg", "captum_prior DeepPriorExpectedGradients with MGMPrior",
                references=True)(_deep_prior_eg("mgm"))
register_method("deep-bgmm-eg", "captum_prior DeepPriorExpectedGradients with BGMMPrior",
                references=True)(_deep_prior_eg("bgmm"))


@register_method("valid-path-gradients", "captum_prior ValidPathGradients (optimized baselines)")
def _vpg(ctx: MethodContext) -> Tuple[Any, Dict[str, Any]]:
    from captum_prior.attr import ValidPathGradients

    return ValidPathGradients(ctx.model), dict(n_steps=_int(ctx.n_steps, 150), **ctx.ib)


@register_method("bay-lime", "captum_prior BayLime on square patches")
def _bay_lime(ctx: MethodContext) -> Tuple[Any, Dict[str, Any]]:
    from captum_prior.attr import BayLime

    return (
        BayLime(ctx.model, random_state=ctx.seed),
        dict(feature_mask=ctx.patch_mask(), n_samples=_int(ctx.n_samples, 200), baselines=float(ctx.baseline)),
    )


@register_method("dmm-men", "captum_prior DMMMENAttribution on square patches")
def _dmm_men(ctx: MethodContext) -> Tuple[Any, Dict[str, Any]]:
    from captum_prior.attr import DMMMENAttribution

    return (
        DMMMENAttribution(ctx.model),
        dict(feature_mask=ctx.patch_mask(), n_samples=_int(ctx.n_samples, 500), baselines=float(ctx.baseline)),
    )


@register_method("integrated-gradients", "Captum IntegratedGradients (constant baseline)")
def _integrated_gradients(ctx: MethodContext) -> Tuple[Any, Dict[str, Any]]:
    from captum.attr import IntegratedGradients

    ctx.args.update(baseline=ctx.baseline)
    return IntegratedGradients(ctx.model), dict(baselines=float(ctx.baseline), n_steps=_int(ctx.n_steps, 50), **ctx.ib)


@register_method("gradient-shap", "Captum GradientShap (references: --references or the data)", references=True)
def _gradient_shap(ctx: MethodContext) -> Tuple[Any, Dict[str, Any]]:
    from captum.attr import GradientShap

    return GradientShap(ctx.model), dict(baselines=ctx.refs(), n_samples=_int(ctx.n_samples, 50))


@register_method("saliency", "Captum Saliency")
def _saliency(ctx: MethodContext) -> Tuple[Any, Dict[str, Any]]:
    from captum.attr import Saliency

    return Saliency(ctx.model), {}


@register_method("blur-integrated-gradients", "captum_prior BlurIntegratedGradients (blur path, max_sigma 50)")
def _blur_ig(ctx: MethodContext) -> Tuple[Any, Dict[str, Any]]:
    from captum_prior.attr import BlurIntegratedGradients

    return BlurIntegratedGradients(ctx.model), dict(n_steps=_int(ctx.n_steps, 100), **ctx.ib)


@register_method("guided-integrated-gradients", "captum_prior GuidedIntegratedGradients (constant baseline)")
def _guided_ig(ctx: MethodContext) -> Tuple[Any, Dict[str, Any]]:
    from captum_prior.attr import GuidedIntegratedGradients

    ctx.args.update(baseline=ctx.baseline)
    kw = dict(baselines=float(ctx.baseline), n_steps=_int(ctx.n_steps, 200), **ctx.ib)
    return GuidedIntegratedGradients(ctx.model), kw


@register_method("adversarial-gradient-integration",
                 "captum_prior AdversarialGradientIntegration (AGI, 20 false classes)")
def _agi(ctx: MethodContext) -> Tuple[Any, Dict[str, Any]]:
    from captum_prior.attr import AdversarialGradientIntegration

    return AdversarialGradientIntegration(ctx.model), dict(n_steps=_int(ctx.n_steps, 20), **ctx.ib)


@register_method("idgi", "captum_prior IDGI of Captum IntegratedGradients (constant baseline)")
def _idgi(ctx: MethodContext) -> Tuple[Any, Dict[str, Any]]:
    from captum.attr import IntegratedGradients

    from captum_prior.attr import IDGI

    ctx.args.update(baseline=ctx.baseline)
    kw = dict(baselines=float(ctx.baseline), n_steps=_int(ctx.n_steps, 50), **ctx.ib)
    return IDGI(IntegratedGradients(ctx.model)), kw


def build_method(
    name: str, model: nn.Module, dataset: Any, *, n_samples: Optional[int] = None,
    n_steps: Optional[int] = None, n_references: int = 100, baseline: float = 0.0,
    patch_size: int = 4, seed: int = 0, internal_batch_size: Optional[int] = None,
    references: Any = None, references_spec: Optional[str] = None,
) -> Tuple[Any, Dict[str, Any], Dict[str, Any]]:
    """Build the attribution object a ``--method`` name stands for.

    The methods of :data:`REFERENCE_METHODS` draw ``n_references`` references
    (seeded by ``seed``) from ``references``, or from the explained
    ``dataset`` when it is None, with a :class:`RunnerWarning` saying so (an
    image that is its own reference contributes a zero path).

    Parameters
    ----------
    name : str
        A key of :data:`METHOD_BUILDERS` (add one with :func:`register_method`).
    model : torch.nn.Module
        The model explained.
    dataset : torch.utils.data.Dataset
        The explained data.
    n_samples, n_steps : int, optional
        Samples or steps (None: the method's default).
    n_references : int, default=100
        References drawn for the methods of :data:`REFERENCE_METHODS`.
    baseline : float, default=0.0
        The constant baseline of IG-style methods.
    patch_size : int, default=4
        Square-patch size of perturbation methods.
    seed : int, default=0
        Seed of the reference draw.
    internal_batch_size : int, optional
        Rows per forward/backward pass (the method's default chunking when
        None).
    references : torch.utils.data.Dataset, optional
        Where references are drawn from.
    references_spec : str, optional
        How ``references`` was given, recorded in the manifest.

    Returns
    -------
    attribution : object
        The attribution object.
    attribute_kwargs : dict
        Keyword arguments for its ``attribute``.
    method_args : dict
        The options used, recorded in the manifest.

    Raises
    ------
    SpecError
        ``name`` is not a registered method.
    """
    if name not in METHOD_BUILDERS:
        raise SpecError(f"--method {name!r} is unknown; choose one of: {', '.join(METHODS)}")
    ctx = MethodContext(
        name, model, dataset, n_samples=n_samples, n_steps=n_steps, n_references=n_references,
        baseline=baseline, patch_size=patch_size, seed=seed, internal_batch_size=internal_batch_size,
        references=references, references_spec=references_spec,
    )
    attribution, kwargs = METHOD_BUILDERS[name](ctx)
    return attribution, kwargs, ctx.args
