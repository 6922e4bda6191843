r"""JGMM explanations of a network: proxy model and explanatory examples.

From *Joint Gaussian Mixture Model for versatile deep visual model
explanation* (anonymous ICLR 2023 submission, OpenReview ``amyZRbMrUA``),
§3.2-3.3 and §4.1.  A :class:`~captum_prior.proxy.JointGaussianMixture` is
fitted on two layers' features of a model (a middle convolution and, by
default, the logits); then

- the proxy model ``argmax_j p(w=j | x)`` (eq. 3, 11) is checked against the
  model's own decisions (:meth:`JGMMExplainer.proxy_accuracy`);
- prototypes (eq. 4), criticisms (a normalised eq. 5) and influential
  examples (eq. 6) are mined from data or sampled;
- counterfactuals (eq. 7-8) and semi-factuals (eq. 9) for a query are
  sampled from the optimal lower component and filtered by an ℓ2
  constraint, or mined from data.
"""

from __future__ import annotations

import math
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from torch import Tensor, nn

from captum_prior._batching import RowRunner, forward_rows
from captum_prior._features import capture, eval_mode, layer_features, resolve_layer
from captum_prior._random import RandomState, torch_generator
from captum_prior._validation import (
    check_choice,
    check_device,
    check_finite,
    check_float,
    check_int,
)
from captum_prior.errors import CaptumPriorWarning
from captum_prior.proxy.jgmm import JointGaussianMixture

__all__ = ["JGMMExamples", "JGMMExplainer"]

Data = Union[Tensor, Iterable[Any]]


@dataclass
class JGMMExamples:
    """Explanatory examples returned by :class:`JGMMExplainer`.

    Parameters
    ----------
    kind : str
        ``"prototype"``, ``"criticism"``, ``"influential"``,
        ``"counterfactual"`` or ``"semifactual"``.
    source : str
        ``"mined"`` (real examples) or ``"sampled"`` (generated features).
    scores : Tensor
        The method's score of each example (higher is a better example of its
        kind), ``n``.
    decisions : Tensor
        The model's decision (class index) for each example: on the real
        input for mined examples, on the generated features (decoded through
        the rest of the network) for sampled ones.
    proxy : Tensor
        The JGMM proxy's class for each example.
    features : Tensor
        Lower features (pooled, original coordinates) in the mixture's layout
        (``n x D`` or ``n x R x C``).
    indices : Tensor
        Mined examples: the index of each example in the explained data
        (iteration order); sampled ones: the index of the nearest real
        example.
    inputs : Tensor or None, default None
        The model inputs of ``indices``, when the explainer keeps inputs.
    distances : Tensor or None, default None
        ℓ2 distance to the query (whitened RMS units), for counterfactuals
        and semi-factuals.
    info : dict
        Extra details (component, query decision, ...).

    Examples
    --------
    >>> import torch
    >>> from captum_prior.proxy.jgmm_explainer import JGMMExamples
    >>> ex = JGMMExamples("prototype", "mined", torch.ones(2), torch.zeros(2), torch.zeros(2),
    ...                   torch.zeros(2, 3), torch.arange(2))
    >>> len(ex)
    2
    """

    kind: str
    source: str
    scores: Tensor
    decisions: Tensor
    proxy: Tensor
    features: Tensor
    indices: Tensor
    inputs: Optional[Tensor] = None
    distances: Optional[Tensor] = None
    info: Dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.scores.shape[0])


_DECODERS = ("linear", "nearest", "anchored")
_MAX_NEIGHBOURHOOD_INPUTS = 4096  # 9 C + 1 above this: regress each block on its own cell


class _PoolInverse:
    """Brings an average-pooled ``C x h x w`` map (cells of ``kh x kw``) back
    to the layer's ``C x H x W``.

    Without ``weight``: nearest-neighbour upsampling (each cell's value over
    its block).  With ``weight`` (fitted by :class:`_InverseStats`): each
    block is a linear function of the pooled ``3 x 3`` neighbourhood of its
    cell (or of the cell alone), then shifted so that its mean equals the
    cell's value, i.e. ``avg_pool(decode(P)) == P`` exactly.  Rows/columns
    that the pooling dropped (``H % kh``) repeat the last decoded row/column.
    """

    def __init__(self, kernel: Tuple[int, int], size: Tuple[int, int],
                 weight: Optional[Tensor] = None, neighbourhood: bool = True) -> None:
        self.kernel, self.size = kernel, size
        self.weight, self.neighbourhood = weight, neighbourhood

    @staticmethod
    def inputs(pooled: Tensor, neighbourhood: bool) -> Tensor:
        """Regression inputs, one row per cell: ``(N h w) x (9C + 1)`` or ``(C + 1)``."""
        n, c, h, w = pooled.shape
        if neighbourhood:
            u = F.unfold(F.pad(pooled, (1, 1, 1, 1), mode="replicate"), 3)  # N x 9C x hw
        else:
            u = pooled.flatten(2)
        rows = u.transpose(1, 2).reshape(n * h * w, -1)
        return torch.cat([rows, rows.new_ones(rows.shape[0], 1)], 1)

    def decode(self, pooled: Tensor) -> Tensor:
        kh, kw = self.kernel
        n, c, h, w = pooled.shape
        if self.weight is None:
            full = pooled.repeat_interleave(kh, 2).repeat_interleave(kw, 3)
        else:
            x = self.inputs(pooled, self.neighbourhood)
            blocks = x @ self.weight.to(x.device, x.dtype)  # (N h w) x (C kh kw)
            blocks = blocks.reshape(n, h * w, c * kh * kw).transpose(1, 2)
            full = F.fold(blocks, (h * kh, w * kw), (kh, kw), stride=(kh, kw))
            shift = pooled - F.avg_pool2d(full, (kh, kw))
            full = full + shift.repeat_interleave(kh, 2).repeat_interleave(kw, 3)
        pad_h, pad_w = self.size[0] - h * kh, self.size[1] - w * kw
        if pad_h or pad_w:
            full = F.pad(full, (0, pad_w, 0, pad_h), mode="replicate")
        return full


class _InverseStats:
    """Normal equations of the linear pooling inverse, accumulated over the
    first ``max_examples`` full-resolution maps seen (float64)."""

    def __init__(self, kernel: Tuple[int, int], max_examples: int) -> None:
        self.kernel, self.max_examples = kernel, max_examples
        self.n = 0
        self.xtx: Optional[Tensor] = None
        self.xty: Optional[Tensor] = None
        self.neighbourhood = True

    def add(self, fmap: Tensor) -> None:
        take = min(fmap.shape[0], self.max_examples - self.n)
        if take <= 0:
            return
        fmap = fmap[:take].detach().to(torch.float64)
        kh, kw = self.kernel
        n, c, hh, ww = fmap.shape
        h, w = hh // kh, ww // kw
        fmap = fmap[:, :, : h * kh, : w * kw]
        self.neighbourhood = 9 * c + 1 <= _MAX_NEIGHBOURHOOD_INPUTS
        pooled = F.avg_pool2d(fmap, (kh, kw))
        x = _PoolInverse.inputs(pooled, self.neighbourhood)
        y = F.unfold(fmap, (kh, kw), stride=(kh, kw)).transpose(1, 2).reshape(n * h * w, -1)
        xtx, xty = x.T @ x, x.T @ y
        self.xtx = xtx if self.xtx is None else self.xtx + xtx
        self.xty = xty if self.xty is None else self.xty + xty
        self.n += take

    def solve(self, ridge: float = 1e-3) -> Tensor:
        """Ridge solution (``ridge`` x the mean diagonal of X'X; the bias is
        penalised too, harmlessly)."""
        assert self.xtx is not None and self.xty is not None
        a = self.xtx.clone()
        a.diagonal().add_(ridge * float(a.diagonal().mean()) + 1e-12)
        return torch.linalg.solve(a, self.xty).to(torch.float32)


class _UpperNetwork:
    """``features -> model output``: the network above ``layer``, run by
    replacing ``layer``'s output in a forward pass of a dummy input.

    The pooled features are brought back to the layer's ``H x W`` by a
    ``decoder`` (:class:`_PoolInverse`; nearest-neighbour interpolation when
    None), or, given an ``anchor`` (a real full-resolution map of the layer),
    as ``anchor + up(features - pool(anchor))``: the smallest (ℓ2) change of
    the anchor whose pooled version equals the features (exactly so when the
    pooling cells tile the map).
    """

    def __init__(self, model: nn.Module, layer: nn.Module, input_shape: Tuple[int, ...],
                 input_dtype: torch.dtype, layer_shape: Tuple[int, ...], device: torch.device) -> None:
        self.model, self.layer = model, layer
        self.input_shape, self.input_dtype = input_shape, input_dtype
        self.layer_shape, self.device = layer_shape, device

    def full_map(self, fmap: Tensor, anchor: Optional[Tensor] = None,
                 decoder: Optional[_PoolInverse] = None) -> Tensor:
        fmap = fmap.to(self.device)
        if len(self.layer_shape) == 3 and fmap.dim() == 4:
            size = tuple(self.layer_shape[1:])
            if anchor is None and decoder is not None:
                return decoder.decode(fmap)
            if anchor is None:
                return F.interpolate(fmap, size=size, mode="nearest")
            anchor = anchor.to(self.device, fmap.dtype)
            if decoder is not None:  # kernel pooling: cells of kh x kw, leftovers unchanged
                (kh, kw), (h, w) = decoder.kernel, fmap.shape[-2:]
                delta = fmap - F.avg_pool2d(anchor[..., : h * kh, : w * kw], (kh, kw))
                delta = delta.repeat_interleave(kh, 2).repeat_interleave(kw, 3)
                return anchor + F.pad(delta, (0, size[1] - w * kw, 0, size[0] - h * kh))
            delta = fmap - F.adaptive_avg_pool2d(anchor, fmap.shape[-2:])
            return anchor + F.interpolate(delta, size=size, mode="nearest")
        return fmap.reshape((fmap.shape[0],) + tuple(self.layer_shape))

    def __call__(self, fmap: Tensor, anchor: Optional[Tensor] = None,
                 decoder: Optional[_PoolInverse] = None) -> Tensor:
        full = self.full_map(fmap, anchor, decoder)

        def hook(_m: nn.Module, _i: Any, out: Any) -> Tensor:
            ref = out[0] if isinstance(out, (tuple, list)) else out
            return full.to(ref.dtype)

        dummy = torch.zeros((fmap.shape[0],) + self.input_shape, dtype=self.input_dtype, device=self.device)
        handle = self.layer.register_forward_hook(hook)
        try:
            with eval_mode(self.model):
                return self.model(dummy)
        finally:
            handle.remove()


class JGMMExplainer:
    r"""Explain a model with a joint Gaussian mixture over two of its layers.

    Parameters
    ----------
    model : nn.Module
        The network; its output must be ``N x C`` class scores.
    lower_layer : str or nn.Module
        The lower (middle) layer, e.g. ``"conv2"``; its ``N x C x H x W``
        output is average-pooled (§4.1; see ``pool_kernel``).
    higher_layer : str, nn.Module or None, default None
        The higher layer; ``None`` uses the model's output logits (§4.1: "the
        classification output ... is always selected as a higher feature").
        A 4-D higher feature map is globally average-pooled.
    mixture : JointGaussianMixture or None, default None
        The mixture's settings (``n_lower``, ``n_higher``, ``max_iter``,
        ``variant``, ...); it is cloned at :meth:`fit`, never fitted itself.
        ``None`` is ``JointGaussianMixture(n_lower=32, n_higher=C)`` with
        ``C`` the number of model outputs.  A given mixture is used as set;
        only a ``random_state`` or ``device`` left at ``None`` is filled in
        from this explainer's.
    pool_kernel : int or None, default 2
        Average-pool the lower map with a ``pool_kernel x pool_kernel``
        kernel and the same stride (§4.1: 2x2 or 3x3 kernels), e.g.
        ``conv2``'s 14x14 to 7x7 for 2; rows and columns left over are
        dropped.  ``None`` (or 1) keeps the full map.  Ignored when
        ``pool_grid`` is given.
    pool_grid : int or None, default None
        Instead of a kernel, adaptive average pooling to a
        ``pool_grid x pool_grid`` output grid whatever the map size.
    spatial : bool, default True
        The spatial extension (§3.3): each pooled position is one ``x^(r)``
        (``mu``/``Sigma`` shared, one ``Q^(r)`` per position); ``False``
        flattens the pooled map into one vector.
    decoder : {"linear", "nearest", "anchored"}, default "linear"
        How pooled features are brought back to the layer's resolution so
        that the rest of the network decides on them (see Notes).
    decoder_examples : int, default 2048
        Training examples whose full maps fit the linear decoder.
    random_state : None, int or torch.Generator, default None
        Seed of the mixture (when it has none) and of all sampling.
    device : str, torch.device or None, default None
        Device of the mixture (when it has none); ``None`` is the model's.
    batch_size : int, default 256
        Examples per forward pass.
    progress : bool, default True
        Show progress bars.
    keep_inputs : bool, default True
        Keep the explained inputs in memory so that mined examples come with
        their images.

    Attributes
    ----------
    mixture_ : JointGaussianMixture
        The fitted mixture.
    component_classes_ : Tensor
        The class the model predicts most often for each higher component.
    n_classes_ : int
        Number of model outputs.
    decoder_ : object or None
        The fitted linear pooling inverse (``None`` without pooling).
    grid_ : tuple of int or None
        The pooled map's ``h x w``.

    Raises
    ------
    ValueError
        No ``lower_layer``, a layer that is not a submodule, an unknown
        ``decoder`` or device, or a non-positive size.
    TypeError
        ``mixture`` is not a :class:`~captum_prior.proxy.JointGaussianMixture`,
        or an argument of the wrong type.

    Notes
    -----
    Where the method departs from the paper, and why:

    - **Criticism score.**  Eq. 5, ``1 - max_j p(x | w=j)``, subtracts a
      density from 1: it is not scale-free and can be negative.  Here each
      ``p(x | w=j)`` is replaced by its tail probability under the model,
      ``F_j(x) = P_{x' ~ p(.|w=j)}[p(x'|w=j) <= p(x|w=j)]`` (estimated from
      ``n_reference`` seeded samples), and the score is ``1 - max_j F_j(x)``
      in ``[0, 1]``; ties are broken by the lower ``max_j log p(x | w=j)``.
    - **Optimal α.**  The linear programmes of eq. 8 (and its semi-factual
      counterpart) have a one-hot optimum on the simplex, so sampling under
      α is sampling from one lower component ``i* = argmax_i c_i`` with
      ``c_i = p(z_q=i | x_q) (1 - sum_j Psi_ij^2)`` (counterfactual) or
      ``c_i = (Psi v)_i - p(z_q=i | x_q) sum_j Psi_ij^2``,
      ``v_j = sum_i' Psi_i'j p(z_q=i' | x_q)`` (semi-factual); no LP
      solver.  Spatially this is done per position with ``Q^(r)``, and a
      candidate's score is the mean over positions of eq. 7 / eq. 9.
    - **The model's decision on sampled features.**  The paper does not say
      how generated features are pushed through the network.  Here the
      pooled map is brought back to the layer's resolution by a decoder and
      put in place of the layer's output in a forward pass (a forward
      hook), so the rest of the network decides; this needs the layer's
      output to be the only path to the output (true for sequential CNNs).
      ``decoder="linear"`` is a least-squares inverse of the pooling fitted
      on the training maps: each cell's ``k x k x C`` block is a ridge
      regression on the pooled ``3 x 3`` neighbourhood (on the cell alone
      when ``9 C`` is large), corrected so that its average pool equals the
      features exactly.  ``"nearest"`` upsamples.  ``"anchored"`` changes a
      real full map (the query's for counterfactuals and semi-factuals, the
      nearest real example's otherwise) by the upsampled pooled difference;
      its decisions follow the anchor, so counterfactuals rarely flip.
      :meth:`decoder_fidelity` measures how often the decision through the
      decoder equals the decision on the image.  Mined examples always
      carry the model's decision on the real input.
    - **ℓ2 distances** are measured in the whitened lower-feature space and
      divided by ``sqrt(R * D)`` (root mean square per dimension); the paper
      does not give its units.  The query's distance to its nearest unlike
      neighbour (``info["nun_distance"]`` of :meth:`counterfactuals` and
      :meth:`semifactuals`) is a scale that means something for one query.
    - **Component and class.**  With the logits as higher features and as
      many higher components as classes, the higher mixture is initialised
      from the model's predicted classes (one component per class) instead
      of k-means, and each component is mapped to the class the model
      predicts most often for the examples it explains
      (``component_classes_``); the proxy's class probability is the sum of
      ``p(w=j | x)`` over that class's components.

    References
    ----------
    .. [1] Joint Gaussian Mixture Model for versatile deep visual model
       explanation. Anonymous ICLR 2023 submission, OpenReview amyZRbMrUA.

    Examples
    --------
    >>> import torch
    >>> from captum_prior.proxy import JGMMExplainer, JointGaussianMixture
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(),
    ...                             torch.nn.Flatten(), torch.nn.Linear(48, 2)).eval()
    >>> mixture = JointGaussianMixture(n_lower=2, n_higher=2, max_iter=5)
    >>> ex = JGMMExplainer(model, "1", mixture=mixture, random_state=0, progress=False)
    >>> ex = ex.fit(torch.rand(60, 1, 4, 4))
    >>> ex.mixture_.n_lower, mixture.random_state is None
    (2, True)
    >>> 0.0 <= ex.proxy_accuracy(torch.rand(10, 1, 4, 4)) <= 1.0
    True
    """

    def __init__(
        self,
        model: nn.Module,
        lower_layer: Union[str, nn.Module],
        higher_layer: Union[str, nn.Module, None] = None,
        mixture: Optional[JointGaussianMixture] = None,
        pool_kernel: Optional[int] = 2,
        pool_grid: Optional[int] = None,
        spatial: bool = True,
        decoder: str = "linear",
        decoder_examples: int = 2048,
        random_state: RandomState = None,
        device: Union[str, torch.device, None] = None,
        batch_size: int = 256,
        progress: bool = True,
        keep_inputs: bool = True,
    ) -> None:
        if lower_layer is None:
            raise ValueError("lower_layer is required, e.g. 'conv2' (a middle convolution)")
        if mixture is not None and not isinstance(mixture, JointGaussianMixture):
            raise TypeError(
                "mixture must be None or a captum_prior.proxy.JointGaussianMixture, got "
                f"{type(mixture).__name__}; e.g. mixture=JointGaussianMixture(n_lower=16, max_iter=50)"
            )
        self.model = model
        self.lower_module = resolve_layer(model, lower_layer, "lower_layer")
        self.higher_module = None if higher_layer is None else resolve_layer(model, higher_layer, "higher_layer")
        self.mixture = mixture
        self.pool_kernel = None if pool_kernel is None else check_int(pool_kernel, "pool_kernel", 1)
        self.pool_grid = None if pool_grid is None else check_int(pool_grid, "pool_grid", 1)
        self.decoder = check_choice(decoder, "decoder", _DECODERS)
        self.decoder_examples = check_int(decoder_examples, "decoder_examples", 1)
        if not isinstance(spatial, bool):
            raise TypeError("spatial must be a bool")
        self.spatial = spatial
        self.random_state = random_state
        self.device = device
        check_device(device)
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.progress = bool(progress)
        self.keep_inputs = bool(keep_inputs)

    # ------------------------------------------------------------- features
    def _model_device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    def _batches(self, data: Data) -> Tuple[Iterable[Any], Optional[int]]:
        if isinstance(data, Tensor):
            n = data.shape[0]
            bs = self.batch_size
            return (data[i : i + bs] for i in range(0, n, bs)), (n + bs - 1) // bs
        if isinstance(data, (str, bytes)) or not hasattr(data, "__iter__"):
            raise TypeError(
                "data must be a Tensor of inputs or an iterable of batches (e.g. a "
                f"DataLoader yielding x or (x, y)), got {type(data).__name__}"
            )
        return data, (len(data) if hasattr(data, "__len__") else None)  # type: ignore[arg-type]

    def _lower_layout(self, fmap: Tensor) -> Tensor:
        """Raw layer output -> the mixture's lower input (pooled)."""
        if fmap.dim() == 4:
            if self.pool_grid is not None:
                fmap = F.adaptive_avg_pool2d(fmap, self.pool_grid)
            elif self.pool_kernel is not None and self.pool_kernel > 1:
                k = self.pool_kernel
                if k > fmap.shape[-2] or k > fmap.shape[-1]:
                    raise ValueError(
                        f"pool_kernel={k} is larger than the lower feature map "
                        f"({fmap.shape[-2]} x {fmap.shape[-1]}); pass a smaller pool_kernel"
                    )
                fmap = F.avg_pool2d(fmap, k)
            if self.spatial:
                return fmap.flatten(2).transpose(1, 2).contiguous()  # N x R x C
            return fmap.flatten(1)
        if self.spatial:
            raise ValueError(
                f"spatial=True needs a 4-D (N x C x H x W) lower feature map, but the "
                f"lower layer returns shape {tuple(fmap.shape)}; pass spatial=False"
            )
        return fmap.flatten(1)

    def _to_map(self, feats: Tensor) -> Tensor:
        """The mixture's lower layout -> pooled map N x C x g x g (or N x D)."""
        if len(self.layer_shape_) != 3:
            return feats
        c, h, w = self.layer_shape_
        g = self.grid_
        if self.spatial:
            return feats.transpose(1, 2).reshape(feats.shape[0], c, g[0], g[1])
        return feats.reshape(feats.shape[0], c, g[0], g[1])

    def _pool_cell(self, layer_shape: Tuple[int, ...]) -> Optional[Tuple[int, int]]:
        """The pooling cell (kh, kw) of a C x H x W lower map, or None when
        there is no pooling or the adaptive grid does not divide the map."""
        if len(layer_shape) != 3:
            return None
        _, h, w = layer_shape
        if self.pool_grid is not None:
            g = self.pool_grid
            return (h // g, w // g) if (h % g == 0 and w % g == 0) else None
        if self.pool_kernel is not None and self.pool_kernel > 1:
            return (self.pool_kernel, self.pool_kernel)
        return None

    def extract(self, data: Data) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
        """Lower features (pooled), higher features and model outputs for ``data``.

        One forward pass per batch, through hooks that are removed afterwards.
        The first ``decoder_examples`` full-resolution lower maps also feed
        the linear decoder that :meth:`fit_features` fits next.

        Parameters
        ----------
        data : Tensor or iterable
            Model inputs, or a DataLoader / iterable of batches ``x`` or
            ``(x, y, ...)``.

        Returns
        -------
        tuple
            ``(lower, higher, outputs, inputs)``; ``inputs`` is the
            concatenated model inputs with ``keep_inputs``, else ``None``.

        Raises
        ------
        ValueError
            NaN or Inf in the inputs, outputs that are not ``N x C``, or a
            lower layer that does not fit the pooling.
        """
        return self._extract(data, collect=True)

    def _extract(self, data: Data, collect: bool) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
        from tqdm.auto import tqdm

        batches, total = self._batches(data)
        dev = self._model_device()
        lows: List[Tensor] = []
        highs: List[Tensor] = []
        outs: List[Tensor] = []
        ins: List[Tensor] = []
        self._input_meta = None
        stats: Optional[_InverseStats] = None
        with ExitStack() as stack:
            store = (
                stack.enter_context(capture(self.model, self.higher_module))
                if self.higher_module is not None else None
            )
            for batch in tqdm(batches, total=total, disable=not self.progress, desc="JGMM features"):
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                if not isinstance(x, Tensor):
                    raise TypeError(f"each batch must be a Tensor or (Tensor, ...), got {type(x).__name__}")
                check_finite(x, "inputs")
                fmap, out = layer_features(
                    self.model, self.lower_module, x, batch_size=x.shape[0], device=dev,
                    with_outputs=True,
                )
                if out.dim() != 2:
                    raise ValueError(
                        f"the model returned shape {tuple(out.shape)}; JGMMExplainer needs "
                        "N x C class scores"
                    )
                low = self._lower_layout(fmap).float().cpu()  # checks the pooling first
                if self._input_meta is None:
                    self._input_meta = (tuple(x.shape[1:]), x.dtype, tuple(fmap.shape[1:]))
                    cell = self._pool_cell(tuple(fmap.shape[1:]))
                    stats = (
                        _InverseStats(cell, self.decoder_examples)
                        if collect and cell is not None and self.decoder == "linear" else None
                    )
                if stats is not None:
                    stats.add(fmap)
                lows.append(low)
                if store is not None:
                    h = store.pop()
                    store.clear()
                    h = h.mean((2, 3)) if h.dim() == 4 else h.flatten(1)
                    highs.append(h.float().cpu())
                else:
                    highs.append(out.float().cpu())
                outs.append(out.float().cpu())
                if self.keep_inputs:
                    ins.append(x.detach().cpu())
        if not lows:
            raise ValueError("data holds no examples")
        if collect:
            self._inverse_stats = stats
        return torch.cat(lows), torch.cat(highs), torch.cat(outs), (torch.cat(ins) if ins else None)

    # ------------------------------------------------------------------ fit
    def fit(self, data: Data) -> "JGMMExplainer":
        r"""Extract both layers' features of ``data`` and fit the mixture.

        ``data`` is the model's training data (§4.1); it also becomes the set
        that examples are mined from (see :meth:`set_examples`).

        Parameters
        ----------
        data : Tensor or iterable
            Model inputs, or a DataLoader / iterable of batches ``x`` or
            ``(x, y, ...)``.

        Returns
        -------
        JGMMExplainer
            ``self``, fitted.

        Raises
        ------
        ValueError
            As :meth:`extract`, or as ``JointGaussianMixture.fit``.
        """
        low, high, out, inputs = self.extract(data)
        return self.fit_features(low, high, out, inputs)

    def fit_features(
        self, lower: Tensor, higher: Tensor, outputs: Tensor, inputs: Optional[Tensor] = None
    ) -> "JGMMExplainer":
        """Fit from features already returned by :meth:`extract` of this explainer.

        One extraction can then serve several fits.  The linear decoder is
        fitted on the full-resolution maps seen by the latest :meth:`extract`
        call, so extract the training data last.

        Parameters
        ----------
        lower, higher, outputs : Tensor
            The first three items returned by :meth:`extract`.
        inputs : Tensor or None, default None
            The fourth item (the model inputs), for mined examples' images.

        Returns
        -------
        JGMMExplainer
            ``self``, fitted.

        Raises
        ------
        ValueError
            :meth:`extract` was not called, or the row counts differ.
        """
        if getattr(self, "_input_meta", None) is None:
            raise ValueError("call extract(data) on this explainer before fit_features")
        if not (lower.shape[0] == higher.shape[0] == outputs.shape[0]):
            raise ValueError(
                f"lower, higher and outputs have {lower.shape[0]}, {higher.shape[0]} and "
                f"{outputs.shape[0]} rows; pass the features of the same examples"
            )
        low, high, out = lower, higher, outputs
        in_shape, in_dtype, layer_shape = self._input_meta
        self.input_shape_, self.input_dtype_, self.layer_shape_ = in_shape, in_dtype, layer_shape
        if len(layer_shape) == 3:
            _, h, w = layer_shape
            if self.pool_grid is not None:
                self.grid_ = (self.pool_grid, self.pool_grid)
            elif self.pool_kernel is not None and self.pool_kernel > 1:
                self.grid_ = (h // self.pool_kernel, w // self.pool_kernel)
            else:
                self.grid_ = (h, w)
        else:
            self.grid_ = None
        self.decoder_ = self._fit_decoder(layer_shape)
        n_classes = out.shape[1]
        preds = out.argmax(1)
        dev = torch.device(self.device) if self.device is not None else self._model_device()
        if self.mixture is None:
            mix = JointGaussianMixture(n_lower=32, n_higher=n_classes)
        else:
            mix = clone(self.mixture)
        if mix.random_state is None:
            mix.set_params(random_state=self.random_state)
        if mix.device is None:
            mix.set_params(device=dev)
        k_y = check_int(mix.n_higher, "mixture.n_higher", 1)
        labels = preds if (self.higher_module is None and k_y == n_classes) else None
        if labels is not None and int(torch.bincount(labels, minlength=k_y).min()) == 0:
            labels = None  # a class is never predicted: fall back to k-means
        self.mixture_ = mix.fit(low, high, higher_labels=labels)
        # component -> class: the class the model predicts most for each component
        h = self.mixture_.predict_higher_proba(high.to(dev))
        votes = torch.zeros(k_y, n_classes, dtype=h.dtype, device=h.device)
        votes.index_add_(1, preds.to(h.device), h.T.contiguous())
        self.component_classes_ = votes.argmax(1).cpu()
        self.n_classes_ = n_classes
        self._set_examples(low, out, inputs)
        self._reference_cache: Dict[Any, Tensor] = {}
        return self

    def _fit_decoder(self, layer_shape: Tuple[int, ...]) -> Optional[_PoolInverse]:
        """The pooling inverse used by :meth:`decide` (None: no pooling, or an
        adaptive grid that does not divide the map, decoded by interpolation)."""
        cell = self._pool_cell(layer_shape)
        if cell is None or self.decoder == "anchored":
            return None if cell is None else _PoolInverse(cell, tuple(layer_shape[1:]))
        stats = getattr(self, "_inverse_stats", None)
        if self.decoder == "nearest" or stats is None or stats.kernel != cell or stats.n == 0:
            if self.decoder == "linear":
                warnings.warn(
                    "no full-resolution maps were collected for the linear decoder (call "
                    "extract(data) right before fit_features); using nearest upsampling",
                    CaptumPriorWarning, stacklevel=3,
                )
            return _PoolInverse(cell, tuple(layer_shape[1:]))
        return _PoolInverse(cell, tuple(layer_shape[1:]), stats.solve(), stats.neighbourhood)

    def _check_fitted(self) -> None:
        if not hasattr(self, "mixture_"):
            raise NotFittedError("This JGMMExplainer is not fitted yet; call fit(data) first.")

    def set_examples(self, data: Data) -> "JGMMExplainer":
        """Use ``data`` as the set that examples are mined from.

        E.g. training plus test data, as the paper's explaining step does.

        Parameters
        ----------
        data : Tensor or iterable
            Model inputs, or a DataLoader / iterable of batches ``x`` or
            ``(x, y, ...)``.

        Returns
        -------
        JGMMExplainer
            ``self``.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        """
        self._check_fitted()
        low, _, out, inputs = self._extract(data, collect=False)
        self._set_examples(low, out, inputs)
        return self

    def set_example_features(
        self, lower: Tensor, outputs: Tensor, inputs: Optional[Tensor] = None
    ) -> "JGMMExplainer":
        """As :meth:`set_examples`, from features returned by :meth:`extract`.

        Parameters
        ----------
        lower, outputs : Tensor
            Lower features and model outputs from :meth:`extract`.
        inputs : Tensor or None, default None
            The model inputs, for mined examples' images.

        Returns
        -------
        JGMMExplainer
            ``self``.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        ValueError
            ``lower`` and ``outputs`` have different row counts.
        """
        self._check_fitted()
        if lower.shape[0] != outputs.shape[0]:
            raise ValueError(f"lower has {lower.shape[0]} rows but outputs {outputs.shape[0]}")
        self._set_examples(lower, outputs, inputs)
        return self

    def _set_examples(self, low: Tensor, out: Tensor, inputs: Optional[Tensor]) -> None:
        self._ex_lower = low
        self._ex_decisions = out.argmax(1)
        self._ex_inputs = inputs
        self._ex_white: Optional[Tensor] = None
        self._ex_cache: Dict[str, Tensor] = {}

    # --------------------------------------------------------- proxy model
    def _class_proba(self, feats: Tensor) -> Tensor:
        pw = self.mixture_.predict_proba(feats)
        out = torch.zeros(pw.shape[0], self.n_classes_, dtype=pw.dtype, device=pw.device)
        out.index_add_(1, self.component_classes_.to(pw.device), pw)
        return out

    def proxy_predict_features(self, features: Tensor) -> Tensor:
        """The proxy's class for lower features in the mixture's layout.

        Parameters
        ----------
        features : Tensor
            ``n x D`` or ``n x R x C`` lower features (as :meth:`extract`).

        Returns
        -------
        Tensor
            ``(n,)`` class indices.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        """
        self._check_fitted()
        if features.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long)
        return self._class_proba(features).argmax(1).cpu()

    def proxy_accuracy(self, data: Data) -> float:
        r"""Faithfulness of the proxy model (§4.2, Table 1).

        The fraction of ``data`` (held out from :meth:`fit`) on which the
        proxy's class, ``argmax_c sum_{j -> c} p(w=j | x)``, equals the
        model's own decision.

        Parameters
        ----------
        data : Tensor or iterable
            Model inputs, or a DataLoader / iterable of batches ``x`` or
            ``(x, y, ...)``.

        Returns
        -------
        float
            In ``[0, 1]``.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        """
        self._check_fitted()
        low, _, out, _ = self._extract(data, collect=False)
        pred = self.proxy_predict_features(low)
        return float((pred == out.argmax(1)).double().mean())

    def decide(self, features: Tensor, anchor_inputs: Optional[Tensor] = None) -> Tensor:
        """The model's decision for lower features in the mixture's layout.

        The lower layer's output is replaced by the features brought back to
        the layer's resolution, and the rest of the network decides (see the
        class Notes).  Without ``anchor_inputs`` the explainer's decoder does
        this (the fitted linear inverse of the pooling by default;
        nearest-neighbour upsampling for ``decoder="nearest"`` or
        ``"anchored"``).  With ``anchor_inputs`` the layer's real map on the
        anchor is changed by the upsampled difference of pooled features, the
        smallest change whose pooled version equals the features; real
        examples anchored on themselves are then decided exactly as the model
        decides on them.

        Parameters
        ----------
        features : Tensor
            ``n x D`` or ``n x R x C`` lower features.
        anchor_inputs : Tensor or None, default None
            One model input, or one per feature row.

        Returns
        -------
        Tensor
            ``(n,)`` class indices.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        ValueError
            ``anchor_inputs`` with neither 1 nor ``n`` rows.
        """
        self._check_fitted()
        if features.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long)
        maps = self._to_map(features.float())
        n = maps.shape[0]
        upper = self._upper()
        args: Optional[Tuple[Any, ...]] = None
        if anchor_inputs is not None:
            if tuple(anchor_inputs.shape) == tuple(self.input_shape_):
                anchor_inputs = anchor_inputs[None]
            if anchor_inputs.shape[0] not in (1, n):
                raise ValueError(
                    f"anchor_inputs has {anchor_inputs.shape[0]} rows; pass one input or one per "
                    f"feature row ({n})"
                )
            anchors = self._full_lower(anchor_inputs)
            args = (anchors.expand((n,) + tuple(anchors.shape[1:])), self.decoder_)
        else:
            args = (None, self.decoder_)
        runner = RowRunner(upper, n, additional_forward_args=args, validate=False)

        def rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
            return (maps[sl],), torch.arange(sl.start, sl.stop)

        out = forward_rows(runner, rows, n, chunk_size=self.batch_size, raw=True)
        return out.argmax(1).cpu()

    def _decoder_name(self, anchored: bool, anchor: str) -> str:
        if anchored:
            return f"anchored on {anchor}"
        if self.decoder_ is None:
            return "none (unpooled)" if self.grid_ is None or self.pool_grid is None else "interpolated"
        return "linear inverse" if self.decoder_.weight is not None else "nearest upsampling"

    def _upper(self) -> "_UpperNetwork":
        return _UpperNetwork(self.model, self.lower_module, self.input_shape_, self.input_dtype_,
                             self.layer_shape_, self._model_device())

    def decoder_fidelity(self, data: Data) -> float:
        r"""How faithfully the model's decision survives the pooling and the decoder.

        The fraction of ``data`` (use held-out data) on which the model's
        decision on the pooled features, decoded by :meth:`decide` (no
        anchor), equals its decision on the image; 1.0 without pooling.
        Decisions on sampled features (counterfactuals, prototypes) can be
        trusted about as far as this figure.

        Parameters
        ----------
        data : Tensor or iterable
            Model inputs, or a DataLoader / iterable of batches ``x`` or
            ``(x, y, ...)``.

        Returns
        -------
        float
            In ``[0, 1]``.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        """
        self._check_fitted()
        low, _, out, _ = self._extract(data, collect=False)
        return float((self.decide(low) == out.argmax(1)).double().mean())

    def _full_lower(self, inputs: Tensor) -> Tensor:
        """The lower layer's full-resolution output for model inputs."""
        maps = [
            layer_features(self.model, self.lower_module, inputs[i : i + self.batch_size],
                           batch_size=self.batch_size, device=self._model_device()).float()
            for i in range(0, inputs.shape[0], self.batch_size)
        ]
        return torch.cat(maps)

    # ------------------------------------------------------------- helpers
    def _rms_dist(self, a_white: Tensor, b_white: Tensor) -> Tensor:
        """RMS-per-dimension ℓ2 distances between rows (whitened, flattened)."""
        d = a_white.shape[1]
        return torch.cdist(a_white, b_white) / math.sqrt(d)

    def _white(self, feats: Tensor) -> Tensor:
        w = self.mixture_.whiten_lower(feats.to(self.mixture_._dev))
        return w.reshape(w.shape[0], -1).float()

    def _examples_white(self) -> Tensor:
        if self._ex_white is None:
            chunks = [self._white(self._ex_lower[i : i + 4096]) for i in range(0, self._ex_lower.shape[0], 4096)]
            self._ex_white = torch.cat(chunks)
        return self._ex_white

    def _nearest(self, feats: Tensor) -> Tensor:
        ref = self._examples_white()
        q = self._white(feats).to(ref.device)
        best = torch.full((q.shape[0],), math.inf, device=ref.device)
        arg = torch.zeros(q.shape[0], dtype=torch.long, device=ref.device)
        for i in range(0, ref.shape[0], 8192):
            d = torch.cdist(q, ref[i : i + 8192])
            m, a = d.min(1)
            better = m < best
            best = torch.where(better, m, best)
            arg = torch.where(better, a + i, arg)
        return arg.cpu()

    def _mined(self, kind: str, idx: Tensor, scores: Tensor, **extra: Any) -> JGMMExamples:
        idx = idx.cpu()
        feats = self._ex_lower[idx]
        return JGMMExamples(
            kind=kind, source="mined", scores=scores.detach().cpu().float(),
            decisions=self._ex_decisions[idx], proxy=self.proxy_predict_features(feats),
            features=feats, indices=idx,
            inputs=None if self._ex_inputs is None else self._ex_inputs[idx], **extra,
        )

    def _sampled(self, kind: str, feats: Tensor, scores: Tensor,
                 decisions: Optional[Tensor] = None, **extra: Any) -> JGMMExamples:
        feats = feats.float().cpu()
        near = self._nearest(feats) if feats.shape[0] else torch.zeros(0, dtype=torch.long)
        if decisions is None:
            anchors = None
            if self.decoder == "anchored" and self._ex_inputs is not None:
                # decode each sample on the full-resolution map of its nearest real example
                anchors = self._ex_inputs[near]
            decisions = self.decide(feats, anchors)
            extra.setdefault("info", {})["decoder"] = self._decoder_name(anchors is not None, "the nearest real example")
        return JGMMExamples(
            kind=kind, source="sampled", scores=scores.detach().cpu().float(),
            decisions=decisions.cpu(),
            proxy=self.proxy_predict_features(feats), features=feats, indices=near,
            inputs=None if self._ex_inputs is None else self._ex_inputs[near], **extra,
        )

    def _ex_scores(self, name: str) -> Tensor:
        """Per-example arrays over the mining set, computed once."""
        if name not in self._ex_cache:
            m, low = self.mixture_, self._ex_lower
            step = 8192
            parts = []
            for i in range(0, low.shape[0], step):
                f = low[i : i + step].to(m._dev)
                if name == "log_p_given_w":
                    parts.append(m.log_prob_given_higher(f).cpu())
                elif name == "p_w":
                    parts.append(m.predict_proba(f).cpu())
                elif name == "log_g":
                    lg = m.log_prob_lower_components(f)
                    parts.append((lg if lg.dim() == 3 else lg[:, None]).cpu())
                elif name == "p_z":
                    pz = m.predict_lower_proba(f)
                    parts.append((pz if pz.dim() == 3 else pz[:, None]).cpu())
            self._ex_cache[name] = torch.cat(parts)
        return self._ex_cache[name]

    @staticmethod
    def _check_source(source: str, allowed: Tuple[str, ...] = ("mined", "sampled")) -> str:
        return check_choice(source, "source", allowed)

    # ---------------------------------------------------------- prototypes
    def prototypes(
        self, j: int, n: int = 8, source: str = "mined", level: str = "higher",
        random_state: RandomState = None,
    ) -> JGMMExamples:
        r"""Prototypes of a component (eq. 4).

        Parameters
        ----------
        j : int
            The component: a higher component ``w = j`` (``level="higher"``;
            with logits, class ``component_classes_[j]``) or a lower
            component ``z = j`` (``level="lower"``).
        n : int, default 8
            Number of examples.
        source : {"mined", "sampled"}, default "mined"
            ``"mined"``: the examples with the highest ``p(x | w=j)`` (for
            ``level="lower"``, the highest ``max_r G(x^(r) | mu_j,
            Sigma_j)``); ``"sampled"``: draws from ``p(x | w=j)`` (or from
            ``G(mu_j, Sigma_j)`` at every position), ranked by the same score.
        level : {"higher", "lower"}, default "higher"
            Which mixture ``j`` indexes.
        random_state : None, int or torch.Generator, default None
            Seed for sampling; ``None`` uses the explainer's.

        Returns
        -------
        JGMMExamples
            ``scores`` are log-densities (original pooled-feature
            coordinates).

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        ValueError
            ``j`` out of range, or an unknown ``source`` or ``level``.
        """
        self._check_fitted()
        self._check_source(source)
        check_choice(level, "level", ("higher", "lower"))
        m = self.mixture_
        k = m.weights_.shape[0] if level == "higher" else m.lower_means_.shape[0]
        j = check_int(j, "j", 0, k - 1)
        n = check_int(n, "n", 1)
        if source == "mined":
            if level == "higher":
                s = self._ex_scores("log_p_given_w")[:, j]
            else:
                s = self._ex_scores("log_g")[:, :, j].amax(1)
            top = s.topk(min(n, s.shape[0]))
            return self._mined("prototype", top.indices, top.values, info={"component": j, "level": level})
        seed = self.random_state if random_state is None else random_state
        if level == "higher":
            feats = m.sample(n, higher_component=j, random_state=seed)[0]
            s = m.log_prob_given_higher(feats)[:, j]
        else:
            feats = m.sample(n, lower_component=j, random_state=seed)[0]
            lg = m.log_prob_lower_components(feats)
            s = (lg if lg.dim() == 3 else lg[:, None])[:, :, j].amax(1)
        order = s.argsort(descending=True)
        return self._sampled("prototype", feats[order], s[order], info={"component": j, "level": level})

    # ---------------------------------------------------------- criticisms
    def _reference(self, n_reference: int, seed: Any) -> Tensor:
        """Sorted log p(x' | w=j) of n_reference samples x' ~ p(.|w=j), K_y x n."""
        key = (n_reference, seed if isinstance(seed, int) else None)
        if key in self._reference_cache and key[1] is not None:
            return self._reference_cache[key]
        m = self.mixture_
        gen = torch_generator(seed)
        refs = []
        for j in range(m.weights_.shape[0]):
            feats = m.sample(n_reference, higher_component=j, random_state=gen)[0]
            refs.append(m.log_prob_given_higher(feats)[:, j].sort().values.cpu())
        out = torch.stack(refs)
        self._reference_cache[key] = out
        return out

    def criticism_scores(self, features: Tensor, n_reference: int = 2000,
                         random_state: RandomState = None) -> Tensor:
        r"""Criticism score of lower features: the normalised eq. 5.

        ``1 - max_j F_j(x)``, with ``F_j(x)`` the fraction of
        ``n_reference`` samples of ``p(. | w=j)`` whose density is at most
        ``p(x | w=j)`` (a tail probability in ``[0, 1]``; see the class
        Notes).

        Parameters
        ----------
        features : Tensor
            ``n x D`` or ``n x R x C`` lower features.
        n_reference : int, default 2000
            Reference samples per higher component.
        random_state : None, int or torch.Generator, default None
            Seed for sampling; ``None`` uses the explainer's.

        Returns
        -------
        Tensor
            ``(n,)`` scores in ``[0, 1]``.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        """
        self._check_fitted()
        ref = self._reference(check_int(n_reference, "n_reference", 10), self.random_state if random_state is None else random_state)
        lp = self.mixture_.log_prob_given_higher(features.to(self.mixture_._dev)).cpu()
        return self._crit_from_logp(lp, ref)

    @staticmethod
    def _crit_from_logp(lp: Tensor, ref: Tensor) -> Tensor:
        n_ref = ref.shape[1]
        tails = torch.stack(
            [torch.searchsorted(ref[j].to(lp.dtype), lp[:, j].contiguous(), right=True) for j in range(ref.shape[0])],
            1,
        ).to(torch.float64) / n_ref
        return 1.0 - tails.amax(1)

    def criticisms(self, n: int = 8, n_reference: int = 2000,
                   random_state: RandomState = None) -> JGMMExamples:
        r"""Criticisms: real examples that no higher component represents well.

        Eq. 5, normalised (see the class Notes).  Sampling criticisms is not
        supported, as in the paper.

        Parameters
        ----------
        n : int, default 8
            Number of examples.
        n_reference : int, default 2000
            Reference samples per higher component.
        random_state : None, int or torch.Generator, default None
            Seed for sampling; ``None`` uses the explainer's.

        Returns
        -------
        JGMMExamples
            ``scores`` in ``[0, 1]`` (1 is less typical than every reference
            sample of every component); ties are broken by the lower
            ``max_j log p(x | w=j)``, given in ``info["max_log_density"]``.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        """
        self._check_fitted()
        n = check_int(n, "n", 1)
        lp = self._ex_scores("log_p_given_w")
        ref = self._reference(check_int(n_reference, "n_reference", 10), self.random_state if random_state is None else random_state)
        crit = self._crit_from_logp(lp, ref)
        best = lp.amax(1).double()
        # sort by (criticism desc, best log-density asc)
        order = torch.argsort(best)
        order = order[torch.argsort(crit[order], descending=True, stable=True)]
        idx = order[:n]
        return self._mined("criticism", idx, crit[idx], info={"max_log_density": best[idx]})

    # --------------------------------------------------------- influential
    @staticmethod
    def _entropy(p: Tensor) -> Tensor:
        return -(p * torch.log(p.clamp_min(1e-300))).sum(1)

    def influential(self, n: int = 8, source: str = "mined", n_samples: int = 2000,
                    random_state: RandomState = None) -> JGMMExamples:
        r"""Influential examples: the highest entropy of ``p(w | x)`` (eq. 6).

        Parameters
        ----------
        n : int, default 8
            Number of examples.
        source : {"mined", "sampled"}, default "mined"
            ``"sampled"`` draws ``n_samples`` features (from each lower
            component in turn for the plain model; ancestrally from the joint
            model for the spatial one) and keeps the ``n`` of highest
            entropy.
        n_samples : int, default 2000
            Draws for ``source="sampled"``.
        random_state : None, int or torch.Generator, default None
            Seed for sampling; ``None`` uses the explainer's.

        Returns
        -------
        JGMMExamples
            ``scores`` are entropies; ``info["top2"]`` holds the two most
            likely classes of each example.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        ValueError
            An unknown ``source``.
        """
        self._check_fitted()
        self._check_source(source)
        n = check_int(n, "n", 1)
        m = self.mixture_
        if source == "mined":
            ent = self._entropy(self._ex_scores("p_w").double())
            top = ent.topk(min(n, ent.shape[0]))
            res = self._mined("influential", top.indices, top.values)
        else:
            n_samples = check_int(n_samples, "n_samples", 1)
            gen = torch_generator(self.random_state if random_state is None else random_state)
            if m.n_positions_ == 1:
                kx = m.lower_means_.shape[0]
                per = max(1, n_samples // kx)
                feats = torch.cat([m.sample(per, lower_component=i, random_state=gen)[0] for i in range(kx)])
            else:
                feats = m.sample(n_samples, random_state=gen)[0]
            ent = self._entropy(m.predict_proba(feats).double())
            top = ent.topk(min(n, ent.shape[0]))
            res = self._sampled("influential", feats[top.indices], top.values)
        cp = self._class_proba(res.features.to(m._dev))
        res.info["top2"] = cp.topk(min(2, cp.shape[1]), 1).indices.cpu()
        return res

    # ------------------------------------------- counterfactuals/semi-factuals
    def _query(self, x_query: Tensor) -> Tuple[Tensor, int]:
        if not isinstance(x_query, Tensor):
            raise TypeError(f"x_query must be a Tensor, got {type(x_query).__name__}")
        if tuple(x_query.shape) == tuple(self.input_shape_):
            x_query = x_query[None]
        if x_query.dim() != len(self.input_shape_) + 1 or x_query.shape[0] != 1:
            raise ValueError(
                f"x_query must be one input of shape {tuple(self.input_shape_)} (or 1 x that), "
                f"got {tuple(x_query.shape)}"
            )
        check_finite(x_query, "x_query")
        low, _, out, _ = self._extract_quiet(x_query)
        return low, int(out.argmax(1)[0])

    def _extract_quiet(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
        keep, prog = self.keep_inputs, self.progress
        self.keep_inputs, self.progress = False, False
        try:
            return self._extract(x, collect=False)
        finally:
            self.keep_inputs, self.progress = keep, prog

    def _coefficients(self, q_low: Tensor, kind: str) -> Tensor:
        """c^(r)_i of the (one-hot) optimal α, R x K_x."""
        m = self.mixture_
        pz = m.predict_lower_proba(q_low.to(m._dev))
        pz = (pz if pz.dim() == 3 else pz[:, None])[0]  # R x Kx
        psi = m.Psi_ if m.Psi_.dim() == 3 else m.Psi_[None]  # R x Kx x Ky
        purity = (psi * psi).sum(2)  # R x Kx
        if kind == "counterfactual":
            return pz * (1.0 - purity)
        v = torch.einsum("rij,ri->rj", psi, pz)  # R x Ky
        return torch.einsum("rij,rj->ri", psi, v) - pz * purity

    def _local_scores(self, feats: Tensor, coef: Tensor) -> Tensor:
        """Eq. 7 / eq. 9 for candidate features: mean_r sum_i p(z^(r)=i|x) c^(r)_i."""
        m = self.mixture_
        out = []
        for i in range(0, feats.shape[0], 8192):
            pz = m.predict_lower_proba(feats[i : i + 8192].to(m._dev))
            pz = pz if pz.dim() == 3 else pz[:, None]
            out.append((pz * coef[None]).sum(2).mean(1).cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def _local(
        self, kind: str, x_query: Tensor, n: int, min_distance: Optional[float],
        max_distance: Optional[float], source: str, n_samples: int, random_state: RandomState,
    ) -> JGMMExamples:
        self._check_fitted()
        self._check_source(source)
        n = check_int(n, "n", 1)
        n_samples = check_int(n_samples, "n_samples", 1)
        lo = 0.0 if min_distance is None else check_float(min_distance, "min_distance", 0.0)
        hi = math.inf if max_distance is None else check_float(max_distance, "max_distance", 0.0)
        if lo > hi:
            raise ValueError(f"min_distance={lo} exceeds max_distance={hi}")
        q_low, q_dec = self._query(x_query)
        coef = self._coefficients(q_low, kind).cpu()
        istar = coef.argmax(1)  # one-hot optimum of the LP, per position
        q_white = self._white(q_low)
        info = {"query_decision": q_dec, "component": istar if istar.numel() > 1 else int(istar[0]),
                "coefficients": coef, "min_distance": lo, "max_distance": hi}
        want_same = kind == "semifactual"
        m = self.mixture_
        ref = self._examples_white()
        ex_dist = self._rms_dist(ref, q_white.to(ref.device))[:, 0].cpu()
        unlike = self._ex_decisions != q_dec
        # the scale a reader can use: the query's nearest unlike neighbour in the mining set
        info["nun_distance"] = float(ex_dist[unlike].min()) if bool(unlike.any()) else math.inf
        if source == "sampled":
            feats = m.sample(n_samples, lower_component=istar, random_state=self.random_state if random_state is None else random_state)[0].float().cpu()
            dist = self._rms_dist(self._white(feats), q_white.to(m._dev).float())[:, 0].cpu()
            keep = (dist >= lo) & (dist <= hi)
            feats, dist = feats[keep], dist[keep]
            anchored = self.decoder == "anchored"
            dec = (self.decide(feats, x_query if anchored else None) if feats.shape[0]
                   else torch.zeros(0, dtype=torch.long))
            info["decoder"] = self._decoder_name(anchored, "the query")
            ok = (dec == q_dec) if want_same else (dec != q_dec)
            feats, dist, dec = feats[ok], dist[ok], dec[ok]
            s = self._local_scores(feats, coef.to(m._dev))
            order = s.argsort(descending=True)[:n]
            info.update(n_generated=n_samples, n_within_distance=int(keep.sum()), n_accepted=int(ok.sum()))
            return self._sampled(kind, feats[order], s[order], decisions=dec[order],
                                 distances=dist[order], info=info)
        dist = ex_dist
        dec = self._ex_decisions
        ok = (dist >= lo) & (dist <= hi) & ((dec == q_dec) if want_same else (dec != q_dec))
        if want_same:
            ok &= dist > 0  # not the query itself
        cand = ok.nonzero()[:, 0]
        s = self._local_scores(self._ex_lower[cand], coef.to(m._dev))
        order = s.argsort(descending=True)[:n]
        info.update(n_candidates=int(cand.numel()))
        return self._mined(kind, cand[order], s[order], distances=dist[cand[order]], info=info)

    def counterfactuals(
        self, x_query: Tensor, n: int = 8, max_distance: Optional[float] = None,
        source: str = "sampled", n_samples: int = 1000, random_state: RandomState = None,
    ) -> JGMMExamples:
        r"""Counterfactuals for one query (eq. 7-8).

        Examples close to the query in the lower feature space on which the
        model decides otherwise.  ``source="sampled"``: draw ``n_samples``
        features from the lower component ``i*`` of the one-hot optimal α
        (per position spatially), reject those farther than
        ``max_distance`` from the query (whitened RMS ℓ2) or on which the
        model keeps the query's decision, and return the ``n`` with the
        highest eq. 7 score.  ``source="mined"``: the same filter and
        ranking over the real examples.

        Parameters
        ----------
        x_query : Tensor
            One model input (``C x H x W`` or ``1 x C x H x W``).
        n : int, default 8
            Number of examples.
        max_distance : float or None, default None
            The ℓ2 constraint σ; ``None`` is no constraint.
        source : {"sampled", "mined"}, default "sampled"
            Generate or mine.
        n_samples : int, default 1000
            Draws before filtering.
        random_state : None, int or torch.Generator, default None
            Seed for sampling; ``None`` uses the explainer's.

        Returns
        -------
        JGMMExamples
            With ``distances``; ``info`` holds the query's decision, ``i*``,
            the α coefficients, the acceptance counts and ``nun_distance``
            (the query's distance to its nearest unlike neighbour in the
            mining set, in the units of ``distances``).

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        ValueError
            ``x_query`` is not one input, or a negative distance.
        TypeError
            ``x_query`` is not a Tensor.
        """
        return self._local("counterfactual", x_query, n, None, max_distance, source, n_samples, random_state)

    def semifactuals(
        self, x_query: Tensor, n: int = 8, min_distance: Optional[float] = None,
        max_distance: Optional[float] = None, source: str = "sampled",
        n_samples: int = 1000, random_state: RandomState = None,
    ) -> JGMMExamples:
        r"""Semi-factuals for one query (eq. 9).

        Examples likely from another lower component than the query's but
        with the same decision: as :meth:`counterfactuals`, with the
        semi-factual coefficients, keeping candidates on which the model
        keeps the query's decision and whose distance lies in
        ``[min_distance, max_distance]``.

        Parameters
        ----------
        x_query : Tensor
            One model input (``C x H x W`` or ``1 x C x H x W``).
        n : int, default 8
            Number of examples.
        min_distance, max_distance : float or None, default None
            The distance window (whitened RMS ℓ2); ``None`` is unbounded.
        source : {"sampled", "mined"}, default "sampled"
            Generate or mine.
        n_samples : int, default 1000
            Draws before filtering.
        random_state : None, int or torch.Generator, default None
            Seed for sampling; ``None`` uses the explainer's.

        Returns
        -------
        JGMMExamples
            As :meth:`counterfactuals`.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        ValueError
            ``x_query`` is not one input, or ``min_distance`` exceeds
            ``max_distance``.
        """
        return self._local("semifactual", x_query, n, min_distance, max_distance, source, n_samples, random_state)
