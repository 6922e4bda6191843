"""Fashion-MNIST: the full set from disk, and a small sample shipped inside the package.

The full set is read from the original IDX files (``*-ubyte.gz``), which the
Debian package ``dataset-fashion-mnist`` installs in
``/usr/share/datasets/fashion-mnist``.  Nothing is ever downloaded.  The full
set is optional: the tests and the tutorials' quick mode use the shipped
sample only.
"""

from __future__ import annotations

import gzip
import os
from importlib import resources
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np
import torch

#: Environment variable naming a folder that holds the four IDX files.
ENV_VAR = "CAPTUM_PRIOR_FASHION_MNIST"
#: Where Debian's ``dataset-fashion-mnist`` puts the files.
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
#: Private switch: when set to ``"1"`` the Debian folder is not searched. The
#: test suite sets it so that it runs as on a machine without the system data.
HIDE_SYSTEM_VAR = "_CAPTUM_PRIOR_HIDE_SYSTEM_DATA"
SAMPLE_FILE = "fashion_mnist_test_sample.safetensors"

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_idx(path: Path, header: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return np.frombuffer(fh.read(), dtype=np.uint8, offset=header)


def _candidates(path: Union[str, os.PathLike, None]) -> List[Path]:
    # an explicit place (``path``, else the environment variable) is the only
    # place searched: falling back to another copy would hide a typo
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a folder (str or os.PathLike) or None, got {type(path).__name__}")
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"path={str(path)!r} is not an existing folder: pass the folder that "
                "holds the Fashion-MNIST IDX files (e.g. "
                f"{DEBIAN_DIR!r}), or path=None to search the default places"
            )
        return [folder]
    env = os.environ.get(ENV_VAR)
    if env:
        folder = Path(env)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"the environment variable {ENV_VAR}={env!r} names no existing "
                f"folder: set it to the folder that holds the Fashion-MNIST IDX "
                f"files, or unset it to search {DEBIAN_DIR!r}"
            )
        return [folder]
    if os.environ.get(HIDE_SYSTEM_VAR) == "1":
        return []
    return [Path(DEBIAN_DIR)]


def load_fashion_mnist(
    split: str = "train", path: Union[str, os.PathLike, None] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""Read the full Fashion-MNIST split from the original IDX files.

    Parameters
    ----------
    split : {"train", "test"}, default="train"
        ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
    path : str or os.PathLike, optional
        A folder holding the IDX files (gzipped or not); when given, the only
        place searched. With ``path=None`` the folder named by the environment
        variable ``CAPTUM_PRIOR_FASHION_MNIST`` is the only place searched when
        it is set; otherwise ``/usr/share/datasets/fashion-mnist`` (Debian
        package ``dataset-fashion-mnist``).

    Returns
    -------
    images : torch.Tensor
        ``float32`` images of shape ``N x 1 x 28 x 28`` in ``[0, 1]``.
    labels : torch.Tensor
        ``int64`` labels of shape ``N``.

    Raises
    ------
    ValueError
        ``split`` is not ``"train"`` or ``"test"``, or the image and label
        files disagree on the number of examples.
    TypeError
        ``path`` is not a str, an ``os.PathLike`` or None.
    FileNotFoundError
        ``path`` (or the environment variable) names a folder that does not
        exist, or the files are not in the place searched; the message names
        what was looked at and how to install the data.

    See Also
    --------
    load_fashion_mnist_sample : the 500 test images shipped in the package.

    Notes
    -----
    A folder given explicitly (``path`` or the environment variable) is never
    replaced by another copy: a typo raises instead of silently reading other
    data. Nothing is downloaded.

    Examples
    --------
    >>> from captum_prior.data import load_fashion_mnist
    >>> load_fashion_mnist("validation")
    Traceback (most recent call last):
    ...
    ValueError: split must be 'train' or 'test', got 'validation'
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    img_name, lab_name = _FILES[split]
    looked: List[str] = []
    places = _candidates(path)
    if not places:
        looked.append(f"{DEBIAN_DIR} (not searched: {HIDE_SYSTEM_VAR}=1 hides it)")
    for folder in places:
        for suffix in (".gz", ""):
            img_p = folder / (img_name + suffix)
            lab_p = folder / (lab_name + suffix)
            looked.append(str(img_p))
            if img_p.is_file() and lab_p.is_file():
                images = _read_idx(img_p, 16).reshape(-1, 1, 28, 28)
                labels = _read_idx(lab_p, 8)
                if images.shape[0] != labels.shape[0]:
                    raise ValueError(
                        f"{img_p} holds {images.shape[0]} images but {lab_p} "
                        f"holds {labels.shape[0]} labels: the files are corrupt"
                    )
                x = torch.from_numpy(images.astype(np.float32) / 255.0)
                return x, torch.from_numpy(labels.astype(np.int64))
    raise FileNotFoundError(
        f"Fashion-MNIST {split!r} files not found. Looked for:\n  "
        + "\n  ".join(looked)
        + f"\nInstall them with `apt-get install dataset-fashion-mnist`, or pass "
        f"path=... / set {ENV_VAR} to a folder holding {img_name}[.gz] and "
        f"{lab_name}[.gz]. The package also ships a small test sample: "
        "captum_prior.data.load_fashion_mnist_sample()."
    )


def load_fashion_mnist_sample(
    n: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""Return the Fashion-MNIST test images shipped inside the package.

    The sample holds the first 500 images of the official test split, in the
    split's own order (the classes are not exactly balanced), so demos and
    tests run with no data installed.

    Parameters
    ----------
    n : int, optional
        Return only the first ``n`` images (all 500 when None).

    Returns
    -------
    images : torch.Tensor
        ``float32`` images of shape ``n x 1 x 28 x 28`` in ``[0, 1]``.
    labels : torch.Tensor
        ``int64`` labels of shape ``n``.

    Raises
    ------
    ValueError
        ``n`` is not a positive int.

    See Also
    --------
    load_fashion_mnist : the full training or test split from disk.

    Examples
    --------
    >>> from captum_prior.data import load_fashion_mnist_sample
    >>> x, y = load_fashion_mnist_sample(4)
    >>> tuple(x.shape), x.dtype, tuple(y.shape)
    ((4, 1, 28, 28), torch.float32, (4,))
    >>> float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    True
    """
    from safetensors.torch import load_file

    ref = resources.files("captum_prior.assets").joinpath(SAMPLE_FILE)
    with resources.as_file(ref) as p:
        state = load_file(str(p))
    x = state["images"].to(torch.float32) / 255.0
    y = state["labels"].to(torch.int64)
    if n is not None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        x, y = x[:n], y[:n]
    return x, y
