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
]


class SpecError(CaptumPriorError):
    """A ``--model``, ``--data`` or ``--method`` value that cannot be used."""


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


MODELS: Dict[str, Callable[[], nn.Module]] = {
    "fashion-cnn": _fashion_cnn,
    "efficientnet-lite0": _efficientnet,
}


def load_model(spec: str) -> nn.Module:
    """A bundled name or ``package.module:factory`` (a callable returning an
    ``nn.Module``, or an ``nn.Module`` object), put in eval mode.  The current
    directory is importable, as for ``uvicorn``/``gunicorn`` applications."""
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


class ImageFolder(torch.utils.data.Dataset):
    """JPEG/PNG images of a folder; labels from sub-folder names (sorted, as
    torchvision's ``ImageFolder``), or no labels when the images lie directly
    in the folder.  Images are decoded with pillow to ``[0, 1]`` floats,
    resized to ``size`` (bilinear, antialiased) and normalised with
    ``mean``/``std``.  Every file's header is read up front, so unreadable
    files and mixed sizes (without ``size``) are reported before any work."""

    def __init__(
        self,
        root: str,
        size: Optional[Tuple[int, int]] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
    ) -> None:
        try:
            from PIL import Image
        except ImportError:
            raise SpecError("--data: reading an image folder needs pillow (pip install pillow)") from None
        self.root, self.size = root, size
        try:
            entries = sorted(os.listdir(root))
        except OSError as exc:
            raise SpecError(f"--data {root!r} is not readable ({exc.strerror})") from None
        classes = [e for e in entries if os.path.isdir(os.path.join(root, e)) and not e.startswith(".")]
        loose = [e for e in entries if e.lower().endswith(_IMAGE_EXT)]
        files: List[Tuple[str, Optional[int]]] = []
        if classes and not loose:
            self.classes = classes
            for c, name in enumerate(classes):
                for dirpath, _, names in sorted(os.walk(os.path.join(root, name))):
                    for f in sorted(names):
                        if f.lower().endswith(_IMAGE_EXT):
                            files.append((os.path.join(dirpath, f), c))
        else:
            self.classes = []
            files = [(os.path.join(root, f), None) for f in loose]
        if not files:
            raise SpecError(
                f"--data {root!r} holds no JPEG/PNG images (directly or in class sub-folders)"
            )
        self.files = files
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
                + "); pass --size H,W to resize them"
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

        from captum_prior._image import resize

        path, label = self.files[i]
        with Image.open(path) as im:
            arr = np.asarray(im.convert(self.mode), dtype=np.float32) / 255.0
        x = torch.from_numpy(arr.copy())
        x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = resize(x.unsqueeze(0), self.size)[0]
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


DATASETS: Dict[str, Callable[[], TensorData]] = {
    "fashion-mnist-test": _fashion_full,
    "fashion-mnist-test-sample": _fashion_sample,
}


def load_data(
    spec: str, size: Optional[str] = None, mean: Optional[str] = None, std: Optional[str] = None,
    limit: Optional[int] = None,
) -> torch.utils.data.Dataset:
    """A bundled name, an image folder, or a ``.safetensors``/``.npz`` file."""
    if spec in DATASETS:
        ds: torch.utils.data.Dataset = DATASETS[spec]()
    elif os.path.isdir(spec):
        ds = ImageFolder(spec, _parse_size(size), _parse_floats(mean, "--mean"), _parse_floats(std, "--std"))
    elif spec.endswith((".safetensors", ".npz")):
        if not os.path.isfile(spec):
            raise SpecError(f"--data {spec!r}: no such file")
        ds = _load_tensor_file(spec)
    else:
        raise SpecError(
            f"--data {spec!r} is not a folder, a .safetensors/.npz file or a bundled dataset "
            f"({', '.join(DATASETS)})"
        )
    if limit is not None:
        if limit < 1:
            raise SpecError(f"--limit must be >= 1, got {limit}")
        if limit < len(ds):
            ds = torch.utils.data.Subset(ds, range(limit))
    return ds


# ---------------------------------------------------------------- methods
def _patch_mask(shape: Sequence[int], patch: int) -> Tensor:
    from captum_prior.attr.dmm_men_attribution import patch_feature_mask

    return patch_feature_mask(tuple(shape), patch)


def _references(dataset: Any, n: int, seed: int) -> Tuple[Tensor, List[int]]:
    from captum_prior.runner.explain import _load_batch

    total = len(dataset)
    k = min(int(n), total)
    idx = sorted(np.random.default_rng(seed).choice(total, size=k, replace=False).tolist())
    x, _ = _load_batch(dataset, idx)
    return x, idx


def _int(v: Optional[int], default: int) -> int:
    return default if v is None else int(v)


def build_method(
    name: str, model: nn.Module, dataset: Any, *, n_samples: Optional[int] = None,
    n_steps: Optional[int] = None, n_references: int = 100, baseline: float = 0.0,
    patch_size: int = 4, seed: int = 0, internal_batch_size: Optional[int] = None,
) -> Tuple[Any, Dict[str, Any], Dict[str, Any]]:
    """``(attribution, attribute_kwargs, method_args)`` for a ``--method`` name."""
    from captum.attr import GradientShap, IntegratedGradients, Saliency

    from captum_prior.attr import (
        BayLime,
        DeepPriorExpectedGradients,
        DMMMENAttribution,
        ExpectedGradients,
        ValidPathGradients,
    )
    from captum_prior.priors import BGMMPrior, MGMPrior

    if name not in METHODS:
        raise SpecError(f"--method {name!r} is unknown; choose one of: {', '.join(METHODS)}")
    ib = {} if internal_batch_size is None else {"internal_batch_size": int(internal_batch_size)}
    args: Dict[str, Any] = {"name": name}

    def refs() -> Tensor:
        x, idx = _references(dataset, n_references, seed)
        args.update(n_references=len(idx))
        return x

    if name == "integrated-gradients":
        args.update(baseline=baseline)
        return IntegratedGradients(model), dict(baselines=float(baseline), n_steps=_int(n_steps, 50), **ib), args
    if name == "saliency":
        return Saliency(model), {}, args
    if name == "gradient-shap":
        return GradientShap(model), dict(baselines=refs(), n_samples=_int(n_samples, 50)), args
    if name == "expected-gradients":
        return ExpectedGradients(model), dict(baselines=refs(), n_samples=_int(n_samples, 50), **ib), args
    if name in ("deep-mgm-eg", "deep-bgmm-eg"):
        prior = MGMPrior(model) if name == "deep-mgm-eg" else BGMMPrior(model, random_state=seed)
        return (
            DeepPriorExpectedGradients(model, prior),
            dict(baselines=refs(), n_samples=_int(n_samples, 50), **ib),
            args,
        )
    if name == "valid-path-gradients":
        return ValidPathGradients(model), dict(n_steps=_int(n_steps, 150), **ib), args
    if name in PATH_FAMILY_METHODS:  # the path family (issue 27)
        from captum_prior.attr import (
            IDGI,
            AdversarialGradientIntegration,
            BlurIntegratedGradients,
            GuidedIntegratedGradients,
        )

        if name == "blur-integrated-gradients":
            return BlurIntegratedGradients(model), dict(n_steps=_int(n_steps, 100), **ib), args
        if name == "guided-integrated-gradients":
            args.update(baseline=baseline)
            kw = dict(baselines=float(baseline), n_steps=_int(n_steps, 200), **ib)
            return GuidedIntegratedGradients(model), kw, args
        if name == "adversarial-gradient-integration":
            return AdversarialGradientIntegration(model), dict(n_steps=_int(n_steps, 20), **ib), args
        args.update(baseline=baseline)  # idgi: IDGI of integrated gradients
        kw = dict(baselines=float(baseline), n_steps=_int(n_steps, 50), **ib)
        return IDGI(IntegratedGradients(model)), kw, args
    x0 = dataset[0][0] if isinstance(dataset[0], (tuple, list)) else dataset[0]
    mask = _patch_mask(x0.shape, patch_size)
    args.update(patch_size=patch_size)
    if name == "bay-lime":
        return (
            BayLime(model, random_state=seed),
            dict(feature_mask=mask, n_samples=_int(n_samples, 200), baselines=float(baseline)),
            args,
        )
    if name == "dmm-men":
        return (
            DMMMENAttribution(model),
            dict(feature_mask=mask, n_samples=_int(n_samples, 500), baselines=float(baseline)),
            args,
        )
    raise AssertionError(name)


#: ``--method`` names and what they are.
METHODS: Dict[str, str] = {
    "expected-gradients": "captum_prior ExpectedGradients (references drawn from the data)",
    "deep-mgm-eg": "captum_prior DeepPriorExpectedGradients with MGMPrior",
    "deep-bgmm-eg": "captum_prior DeepPriorExpectedGradients with BGMMPrior",
    "valid-path-gradients": "captum_prior ValidPathGradients (optimized baselines)",
    "bay-lime": "captum_prior BayLime on square patches",
    "dmm-men": "captum_prior DMMMENAttribution on square patches",
    "integrated-gradients": "Captum IntegratedGradients (constant baseline)",
    "gradient-shap": "Captum GradientShap (references drawn from the data)",
    "saliency": "Captum Saliency",
}
#: the path family (issue 27)
PATH_FAMILY_METHODS: Dict[str, str] = {
    "blur-integrated-gradients": "captum_prior BlurIntegratedGradients (blur path, max_sigma 50)",
    "guided-integrated-gradients": "captum_prior GuidedIntegratedGradients (constant baseline)",
    "adversarial-gradient-integration": "captum_prior AdversarialGradientIntegration (AGI, 20 false classes)",
    "idgi": "captum_prior IDGI of Captum IntegratedGradients (constant baseline)",
}
METHODS.update(PATH_FAMILY_METHODS)
