"""The embedded default model: a small CNN for Fashion-MNIST.

The architecture is deliberately small (87k parameters, 353 kB of weights) so
that it ships inside the package and every method in ``captum_prior`` can be
demonstrated and tested without a download. Its trained weights (92.4 % test
accuracy) come from a seeded training script in the source repository
(``benchmarks/train_fashion_cnn.py``).

Inputs are ``N x 1 x 28 x 28`` images with pixel values in ``[0, 1]``; the
model standardises them itself, so baselines, clip ranges and perturbations
all live in plain pixel space.
"""

from __future__ import annotations

from importlib import resources
from typing import Optional, Union

import torch
from torch import nn

#: Mean and standard deviation of Fashion-MNIST training pixels (in [0, 1]).
FASHION_MEAN = 0.2860
FASHION_STD = 0.3530

#: Class names of Fashion-MNIST, in label order (index = label).
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

WEIGHTS_FILE = "fashion_cnn.safetensors"


class FashionCNN(nn.Module):
    r"""Three-conv CNN for ``N x 1 x 28 x 28`` Fashion-MNIST images in ``[0, 1]``.

    ``conv1`` (32 @ 28x28) -> pool -> ``conv2`` (64 @ 14x14) -> pool ->
    ``conv3`` (64 @ 7x7) -> dropout -> ``fc`` (10 logits). Each convolution is
    followed by batch norm and ReLU; the model standardises its input itself,
    so baselines, clip ranges and perturbations live in plain pixel space.

    Parameters
    ----------
    width : int, default=32
        Channels of ``conv1``; ``conv2`` and ``conv3`` use ``2 * width``.
    dropout : float, default=0.25
        Dropout probability before the classifier, in ``[0, 1)``.

    Raises
    ------
    ValueError
        ``width`` < 1 or ``dropout`` outside ``[0, 1)``; in ``forward``,
        inputs that are not ``N x 1 x 28 x 28``.

    See Also
    --------
    load_fashion_cnn : this architecture with the shipped trained weights.

    Notes
    -----
    ``conv3`` is the last convolution, the layer DeepPrior-EG's priors read by
    default (64 x 7 x 7, the small analogue of EfficientNet-Lite0's
    1280 x 7 x 7); ``conv2`` is the middle layer JGMM uses.

    Examples
    --------
    >>> import torch
    >>> from captum_prior.models import FashionCNN
    >>> model = FashionCNN(width=8).eval()
    >>> tuple(model(torch.rand(2, 1, 28, 28)).shape)
    (2, 10)
    """

    def __init__(self, width: int = 32, dropout: float = 0.25) -> None:
        from captum_prior._validation import check_float, check_int

        check_int(width, "width", 1)
        check_float(dropout, "dropout", 0.0, 1.0, high_inclusive=False)
        super().__init__()
        w2 = 2 * width
        self.conv1 = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(width, w2, 3, padding=1), nn.BatchNorm2d(w2), nn.ReLU()
        )
        self.conv3 = nn.Sequential(
            nn.Conv2d(w2, w2, 3, padding=1), nn.BatchNorm2d(w2), nn.ReLU()
        )
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(w2 * 7 * 7, len(FASHION_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            hint = " (add the channel dimension: x.unsqueeze(1))" if tuple(x.shape[1:]) == (28, 28) else ""
            raise ValueError(
                f"FashionCNN's inputs must be N x 1 x 28 x 28 grey-scale images, got "
                f"shape {tuple(x.shape)}{hint}"
            )
        x = (x - FASHION_MEAN) / FASHION_STD
        x = self.pool(self.conv1(x))
        x = self.pool(self.conv2(x))
        x = self.conv3(x)
        return self.fc(self.dropout(torch.flatten(x, 1)))


def load_fashion_cnn(
    path: Optional[str] = None, device: Union[str, torch.device, None] = None
) -> FashionCNN:
    r"""Return the embedded, trained :class:`FashionCNN` in ``eval`` mode.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A ``.safetensors`` file of FashionCNN weights (as written by the source
        repository's training script); None loads the weights shipped in the
        package.
    device : str or torch.device, optional
        Where to put the model (CPU when None).

    Returns
    -------
    FashionCNN
        The trained model, in ``eval`` mode.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist or is a folder.
    TypeError
        ``path`` is not None, a str or a path-like object.
    FileFormatError
        ``path`` is not a safetensors file (truncated or corrupted) or does not
        hold FashionCNN weights (missing, extra or mis-shaped tensors).
    ValueError
        ``device`` is unknown or not available on this machine.

    Examples
    --------
    >>> from captum_prior.data import load_fashion_mnist_sample
    >>> from captum_prior.models import FASHION_CLASSES, load_fashion_cnn
    >>> model = load_fashion_cnn()
    >>> x, y = load_fashion_mnist_sample(1)
    >>> FASHION_CLASSES[int(model(x).argmax())], FASHION_CLASSES[int(y[0])]
    ('Ankle boot', 'Ankle boot')
    """
    import os

    from safetensors.torch import load_file

    from captum_prior._validation import check_device
    from captum_prior.errors import FileFormatError

    dev = check_device(device)
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be None, a str or a path-like object, got {type(path).__name__}")
    if path is None:
        ref = resources.files("captum_prior.assets").joinpath(WEIGHTS_FILE)
        with resources.as_file(ref) as p:
            state = load_file(str(p))
    else:
        path = os.fspath(path)
        if not os.path.isfile(path):
            what = "is a folder, not a file" if os.path.isdir(path) else "does not exist"
            raise FileNotFoundError(f"path {path} {what}; pass the .safetensors file of the FashionCNN weights")
        try:
            state = load_file(path)
        except Exception as exc:  # safetensors raises its own error types
            raise FileFormatError(
                f"{path} is not a safetensors file (truncated or corrupted?): {exc}"
            ) from None
    try:
        width = int(state["conv1.0.weight"].shape[0])
        model = FashionCNN(width=width)
        model.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError, IndexError) as exc:
        what = f"missing tensor {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise FileFormatError(
            f"{path} does not hold FashionCNN weights ({what}); pass a file written "
            "by benchmarks/train_fashion_cnn.py, or path=None for the shipped weights"
        ) from None
    model.eval()
    if dev is not None:
        model.to(dev)
    return model
