"""Attribute a whole dataset into a sharded, resumable store."""

from __future__ import annotations

import hashlib
import inspect
import os
import random
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from captum_prior.runner._dist import Group, resolve_device
from captum_prior.runner.store import ShardStore, jsonable

__all__ = ["attribute_dataset", "example_seed", "model_fingerprint", "RANDOMNESS"]

#: How the runner makes each example's random draws depend only on (seed, index).
RANDOMNESS = ("auto", "none", "generators", "generator", "random_state", "object_random_state", "global")

# Captum classes whose attributions draw nothing at random: run batched.
_DETERMINISTIC = (
    "IntegratedGradients", "Saliency", "InputXGradient", "DeepLift", "DeepLiftShap",
    "GuidedBackprop", "Deconvolution", "GuidedGradCam", "LayerGradCam",
    "LayerIntegratedGradients", "LayerConductance", "Occlusion", "FeatureAblation", "LRP",
)


def example_seed(seed: int, index: int) -> int:
    """The seed of example ``index``: a function of ``(seed, index)`` only.

    Parameters
    ----------
    seed : int
        The run's seed.
    index : int
        The example's index in the dataset.

    Returns
    -------
    int
        In ``[0, 2**31)``, from NumPy's ``SeedSequence([seed, index])``.

    Examples
    --------
    >>> example_seed(0, 7) == example_seed(0, 7) != example_seed(1, 7)
    True
    """
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0] >> 1)


def model_fingerprint(model: Any) -> str:
    """Class name and a SHA-256 of the parameters and buffers of an ``nn.Module``.

    Parameters
    ----------
    model : Any
        The model; anything other than an ``nn.Module`` gives its class name
        only.

    Returns
    -------
    str
        ``module.Class@<16 hex digits>``; the same for the same weights.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> a = nn.Linear(2, 1)
    >>> b = nn.Linear(2, 1)
    >>> _ = b.load_state_dict(a.state_dict())
    >>> model_fingerprint(a) == model_fingerprint(b)
    True
    >>> model_fingerprint(a).split("@")[0]
    'torch.nn.modules.linear.Linear'
    """
    if not isinstance(model, nn.Module):
        return f"{type(model).__module__}.{type(model).__qualname__}"
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        t = t.detach().to("cpu").contiguous()
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"{type(model).__module__}.{type(model).__qualname__}@{h.hexdigest()[:16]}"


def _takes_generator_list(attribution: Any, kwargs: Mapping[str, Any]) -> bool:
    """Whether ``attribution`` declares that, with these ``attribute`` arguments,
    one call with one generator per example gives every example the result of
    its own one-example call: its method ``_per_example_generators(kwargs)``
    says so (see ExpectedGradients and ValidPathGradients); classes without
    it (Captum's) are called one example at a time."""
    declares = getattr(attribution, "_per_example_generators", None)
    if declares is None or callable(kwargs.get("baselines")):
        return False
    return bool(declares(dict(kwargs)))


def _detect_randomness(attribution: Any, kwargs: Mapping[str, Any]) -> str:
    params = inspect.signature(attribution.attribute).parameters
    if "generator" in params:
        return "generators" if _takes_generator_list(attribution, kwargs) else "generator"
    if "random_state" in params:
        return "random_state"
    if getattr(attribution, "random_state", None) is not None:
        return "object_random_state"
    if type(attribution).__name__ in _DETERMINISTIC and type(attribution).__module__.startswith("captum."):
        return "none"
    return "global"


def _split_item(item: Any) -> Tuple[Tensor, Optional[int]]:
    if isinstance(item, Tensor):
        return item, None
    if isinstance(item, Mapping):
        x = item.get("inputs", item.get("image"))
        y = item.get("labels", item.get("label"))
    elif isinstance(item, (tuple, list)) and len(item) >= 1:
        x, y = item[0], item[1] if len(item) > 1 else None
    else:
        raise TypeError(
            f"dataset items must be a Tensor, an (input, label) pair or a dict with "
            f"'inputs'; got {type(item).__name__}"
        )
    if not isinstance(x, Tensor):
        x = torch.as_tensor(np.asarray(x))
    return x, (None if y is None else int(y))


def _load_batch(dataset: Any, rows: Sequence[int]) -> Tuple[Tensor, Optional[Tensor]]:
    xs, ys = [], []
    for i in rows:
        x, y = _split_item(dataset[i])
        xs.append(x)
        ys.append(y)
    try:
        x = torch.stack(xs)
    except RuntimeError:
        shapes = sorted({tuple(t.shape) for t in xs})
        raise ValueError(
            f"dataset items {rows[0]}..{rows[-1]} have different shapes {shapes[:3]}; "
            "resize them to one size first"
        ) from None
    y = None if any(v is None for v in ys) else torch.tensor(ys, dtype=torch.long)
    return x, y


def _targets(spec: Any, model: Callable, x: Tensor, y: Optional[Tensor]) -> Tensor:
    n = x.shape[0]
    if isinstance(spec, str) and spec == "pred":
        with torch.no_grad():
            return model(x).argmax(1).to("cpu")
    if isinstance(spec, str) and spec == "label":
        if y is None:
            raise ValueError("target='label' but the dataset gives no labels; use target='pred' or an int")
        return y
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return torch.full((n,), int(spec), dtype=torch.long)
    raise ValueError(f"target must be 'pred', 'label' or an int class index, got {spec!r}")


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_to_device(v, device) for v in value)
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


def default_chunk_rows(model: Callable, x: Tensor) -> int:
    """Rows per model call that the package's default chunking gives ``model``.

    Parameters
    ----------
    model : callable
        The model.
    x : Tensor
        Example rows; one forward pass of ``x[:1]`` is measured.

    Returns
    -------
    int
        The chunk of :mod:`captum_prior._chunking`: sized so that the
        largest activation of a chunk fits the activation budget.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> n = default_chunk_rows(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), torch.rand(2, 1, 4, 4))
    >>> n >= 1
    True
    """
    from captum_prior._chunking import MAX_ROWS, ActivationMeter, choose_chunk

    meter = ActivationMeter()
    meter.start()
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        meter.stop()
    return choose_chunk(MAX_ROWS, meter.largest, meter.total, meter.device)


class _ChunkedForward(nn.Module):
    """``model`` run ``chunk`` rows at a time. Under autograd each chunk is
    checkpointed (:func:`torch.utils.checkpoint.checkpoint`): only the
    chunk's inputs are kept and its forward pass is recomputed in the
    backward pass, so a Captum method that sends all its rows through the
    model at once (GradientShap's ``n_samples`` per example) holds one
    chunk's activations at a time, at the cost of a second forward pass per
    chunk. Outputs equal the model's (to float rounding of batched kernels)."""

    def __init__(self, model: Callable, chunk: int) -> None:
        super().__init__()
        self.model = model
        self.chunk = int(chunk)

    def forward(self, x: Tensor, *args: Any) -> Tensor:
        n = x.shape[0]
        if args or n <= self.chunk:
            return self.model(x, *args)
        from torch.utils.checkpoint import checkpoint

        grad = torch.is_grad_enabled() and x.requires_grad
        outs = []
        for s in range(0, n, self.chunk):
            part = x[s : s + self.chunk]
            outs.append(checkpoint(self.model, part, use_reentrant=False) if grad else self.model(part))
        return torch.cat(outs)


def _chunks_itself(attribution: Any, kwargs: Mapping[str, Any]) -> bool:
    """Whether the method bounds its rows per model call by itself: this
    package's methods (default chunking), or an explicit
    ``internal_batch_size`` / ``perturbations_per_eval``."""
    if not type(attribution).__module__.startswith("captum."):
        return True
    return any(kwargs.get(k) is not None for k in ("internal_batch_size", "perturbations_per_eval"))


class _Attributor:
    """Calls ``attribution.attribute`` so that example ``i``'s draws depend
    only on ``(seed, i)``: batched for deterministic methods and for methods
    taking one generator per example, one example per call with a
    per-example seed for the others.

    Captum's deterministic methods, which send every row of a call through
    the model at once unless told otherwise, get the package's default
    chunking (``auto_chunk``): the batch is cut into groups of at most
    :func:`default_chunk_rows` examples, and a method with an
    ``internal_batch_size`` (IntegratedGradients...) receives that many
    rows per pass, so each model call has about the rows this package's
    own methods would send. Captum's randomised methods, called one example
    at a time (GradientShap, whose ``n_samples`` rows go through the model
    in one pass), get the model wrapped in :class:`_ChunkedForward` with
    that chunk."""

    def __init__(self, attribution: Any, kwargs: Mapping[str, Any], seed: int,
                 randomness: str, want_delta: bool, auto_chunk: bool = True) -> None:
        self.attribution = attribution
        self.kwargs = dict(kwargs)
        self.seed = int(seed)
        self.randomness = randomness
        self.want_delta = want_delta
        unchunked = auto_chunk and not _chunks_itself(attribution, kwargs)
        self.auto_chunk = unchunked and randomness == "none"
        # Captum methods called one example at a time that send all its rows at once
        self.wrap_model = unchunked and randomness != "none" and isinstance(attribution.forward_func, nn.Module)
        self.takes_ibs = "internal_batch_size" in inspect.signature(attribution.attribute).parameters
        self.chunk_rows: Optional[int] = None

    def restore(self) -> None:
        """Give the attribution its own model back (after the run)."""
        f = self.attribution.forward_func
        if isinstance(f, _ChunkedForward):
            self.attribution.forward_func = f.model

    def _wrap(self, x: Tensor) -> None:
        if self.chunk_rows is None:
            self.chunk_rows = default_chunk_rows(self.attribution.forward_func, x)
            self.attribution.forward_func = _ChunkedForward(self.attribution.forward_func, self.chunk_rows)

    def _chunked(self, x: Tensor, target: Tensor, advance: Callable[[int], Any]) -> Tuple[Tensor, Optional[Tensor]]:
        if self.chunk_rows is None:
            self.chunk_rows = default_chunk_rows(self.attribution.forward_func, x)
        c = self.chunk_rows
        extra = {"internal_batch_size": c} if self.takes_ibs else {}
        if x.shape[0] <= c:
            out = self._call(x, target, dict(extra, internal_batch_size=max(c, x.shape[0])) if extra else {})
            advance(x.shape[0])
            return out
        attrs, deltas = [], []
        for s in range(0, x.shape[0], c):
            a, d = self._call(x[s : s + c], target[s : s + c], extra)
            attrs.append(a)
            deltas.append(d)
            advance(a.shape[0])
        return torch.cat(attrs), (None if deltas[0] is None else torch.cat(deltas))

    def _call(self, x: Tensor, target: Tensor, extra: Dict[str, Any]) -> Tuple[Tensor, Optional[Tensor]]:
        kw = dict(self.kwargs, **extra)
        if self.want_delta:
            kw["return_convergence_delta"] = True
        out = self.attribution.attribute(x, target=target, **kw)
        if self.want_delta:
            attr, delta = out
            delta = torch.as_tensor(delta).detach().to("cpu", torch.float32).reshape(x.shape[0], -1)
            if delta.shape[1] == 1:
                delta = delta[:, 0]
        else:
            attr, delta = out, None
        if isinstance(attr, tuple):
            raise TypeError("the runner stores one attribution tensor per example; tuple inputs are not supported")
        return attr.detach(), delta

    def __call__(
        self, x: Tensor, target: Tensor, index: Sequence[int], advance: Callable[[int], Any] = lambda n: None,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Attributions (and deltas) of the batch; ``advance(n)`` is called as
        each group of ``n`` examples is finished (per example where the
        method is called one example at a time)."""
        if self.randomness == "none" and self.auto_chunk:
            return self._chunked(x, target, advance)
        if self.randomness in ("none", "generators"):
            extra = {}
            if self.randomness == "generators":
                extra = {"generator": [torch.Generator().manual_seed(example_seed(self.seed, i)) for i in index]}
            out = self._call(x, target, extra)
            advance(x.shape[0])
            return out
        if self.wrap_model:
            self._wrap(x)
        attrs, deltas = [], []
        for j, i in enumerate(index):
            s = example_seed(self.seed, i)
            extra: Dict[str, Any] = {}
            if self.randomness == "generator":
                extra["generator"] = torch.Generator().manual_seed(s)
            elif self.randomness == "random_state":
                extra["random_state"] = s
            elif self.randomness == "object_random_state":
                self.attribution.random_state = s
            else:  # global RNGs (e.g. Captum's GradientShap: torch and NumPy)
                torch.manual_seed(s)
                np.random.seed(s)
                random.seed(s)
            a, d = self._call(x[j : j + 1], target[j : j + 1], extra)
            attrs.append(a)
            deltas.append(d)
            advance(1)
        delta = None if deltas[0] is None else torch.cat(deltas)
        return torch.cat(attrs), delta


def attribute_dataset(
    attribution: Any,
    dataset: Any,
    out: Union[str, os.PathLike],
    attribute_kwargs: Optional[Mapping[str, Any]] = None,
    target: Union[str, int] = "pred",
    batch_size: int = 32,
    shard_size: int = 256,
    seed: int = 0,
    randomness: str = "auto",
    return_convergence_delta: Union[str, bool] = "auto",
    float16: bool = False,
    device: Union[None, str, torch.device] = None,
    method: Optional[str] = None,
    method_args: Optional[Mapping[str, Any]] = None,
    dataset_description: Optional[str] = None,
    info: Optional[Mapping[str, Any]] = None,
    progress: bool = True,
) -> str:
    r"""Attribute every example of ``dataset`` and store the results in ``out``.

    Works with any attribution object of this project or of Captum (an object
    with ``attribute(inputs, target=..., **kwargs)``).  The dataset is cut into
    shards of ``shard_size`` consecutive examples; each finished shard is
    written atomically to ``out/shard-NNNNN.safetensors`` (``index``,
    ``target``, ``attributions`` and, where the method gives one, ``delta``),
    and ``out/manifest.json`` records the call and the finished shards with
    their SHA-256 checksums.

    Parameters
    ----------
    attribution : Attribution
        E.g. ``ExpectedGradients(model)`` or Captum's
        ``IntegratedGradients(model)``; its ``forward_func`` is the model (used
        for ``target="pred"``).
    dataset : Dataset or DataLoader
        Indexable; item ``i`` is a Tensor, an ``(input, label)`` pair or a dict
        with ``"inputs"`` (``"labels"``). A DataLoader's ``.dataset`` is used.
    out : str or PathLike
        The output directory.
    attribute_kwargs : dict, optional
        Further arguments of ``attribute`` (``baselines``, ``n_samples``...),
        the same for every batch. Default: None
    target : str or int, optional
        ``"pred"`` (the model's top class), ``"label"`` or a class index.
        Default: ``"pred"``
    batch_size : int, optional
        Examples per ``attribute`` call (for the batched modes ``"none"`` and
        ``"generators"``) and per target prediction. Not part of the call's
        identity. Default: 32
    shard_size : int, optional
        Examples per shard file. Default: 256
    seed : int, optional
        Seed of every random draw. Default: 0
    randomness : str, optional
        See above. Default: ``"auto"``
    return_convergence_delta : bool or str, optional
        Store the method's convergence delta; ``"auto"`` does when
        ``attribute`` accepts ``return_convergence_delta``. Default: ``"auto"``
    float16 : bool, optional
        Store attributions as float16. Default: False
    device : str or torch.device, optional
        ``None``/``"auto"`` is ``cuda:LOCAL_RANK`` when CUDA exists, else CPU;
        the model (an ``nn.Module`` ``forward_func``) is moved there. Default:
        None
    method : str, optional
        Name recorded in the manifest. Default: the attribution's class name
    method_args : dict, optional
        The attribution's constructor arguments, recorded and compared on
        resume. Default: None
    dataset_description : str, optional
        Recorded and compared. Default: the dataset's class name
    info : dict, optional
        Extra descriptive fields for the manifest (not compared). Default: None
    progress : bool, optional
        Tqdm bar (examples/s, ETA) on rank 0, labelled with the method, moved
        as each group of examples (each example, for methods called one example
        at a time) is done. Default: True

    Returns
    -------
    str
        ``out``.

    Raises
    ------
    TypeError
        ``attribution`` has no ``attribute`` method, ``dataset`` has no
        length, or the method returns tuples.
    ValueError
        An empty dataset, an invalid size, seed or ``randomness``.
    ManifestMismatchError
        ``out`` holds the results of another call.

    Notes
    -----
    **Resuming.** Calling again with the same arguments (after an interruption,
    even ``kill -9``) computes only the shards that are not finished; finished
    shards are neither recomputed nor rewritten.  A directory written by
    another call (other method, arguments, seed, model, dataset length, shard
    size or target) is refused with
    :class:`~captum_prior.runner.store.ManifestMismatchError`; a non-empty
    directory without a manifest is refused too.

    **Determinism per example.** The draws of example ``i`` depend only on
    ``seed`` and ``i`` (:func:`example_seed`), never on the batch, shard or
    number of processes.  ``randomness`` says how the seed reaches the method:

    - ``"none"``: deterministic method, called on whole batches;
    - ``"generators"``: one call per batch with one generator per example,
      ``attribute(x, ..., generator=[torch.Generator().manual_seed(s_i) for
      i in batch])`` (this project's ExpectedGradients): example ``i``'s
      draws come from its own generator, exactly as in a one-example call.
      Pass it explicitly for another method whose ``attribute`` accepts such
      a list when its examples do not interact (e.g. DeepPrior-EG with
      :class:`~captum_prior.priors.MGMPrior`);
    - ``"generator"``: one call per example with
      ``attribute(..., generator=torch.Generator().manual_seed(s_i))``
      (DeepPrior-EG, whose prior may couple the images of a batch;
      ValidPathGradients with its valid-feature filter or optimized
      baselines, whose discrete tests and sign steps can turn a batched
      kernel's last-bit rounding into a flipped feature; any other method
      with a ``generator`` argument);
    - ``"random_state"``: ``attribute(..., random_state=s_i)`` (DMM-MEN);
    - ``"object_random_state"``: ``attribution.random_state = s_i`` before the
      call (BayLime constructed with a ``random_state``);
    - ``"global"``: seeds torch's, NumPy's and Python's global generators with
      ``s_i`` (Captum's GradientShap, NoiseTunnel, Lime...).  Limit: anything
      else that draws from the global generators between calls (another
      thread) breaks reproducibility;
    - ``"auto"`` (default) picks from the signature of ``attribute``: the
      first that applies of the above, ``"generators"`` when the class
      declares (``_per_example_generators``) that with these arguments an
      example's result depends only on the example and its generator, up
      to float rounding (ExpectedGradients; ValidPathGradients only with
      ``filter_path_features=False`` and fixed baselines; never with
      callable ``baselines``), ``"none"`` only for Captum's deterministic
      classes (IntegratedGradients, Saliency, DeepLift, ...).

    The modes that call one example at a time (``"generator"``,
    ``"random_state"``, ``"object_random_state"``, ``"global"``) give
    bit-identical results whatever the batching. The batched modes
    (``"none"``, ``"generators"``) give every example the same draws
    whatever the batching, but batched kernels may round differently with a
    different number of rows: results across batch sizes agree to
    floating-point rounding (about 1e-7 relative), and bit for bit for the
    same ``batch_size`` and ``shard_size`` (any number of processes,
    resumed or not, since every rank cuts a shard into the same batches).
    Batched calls are the faster choice for small ``n_samples``; for large
    ``n_samples`` on a CPU, set ``internal_batch_size`` in
    ``attribute_kwargs`` so that a batch's rows stay in cache.

    **Chunking.** This package's methods bound the rows of each model call
    by themselves. Captum's deterministic methods (IntegratedGradients,
    Saliency, ...) would send all ``batch_size * n_steps`` rows of a call
    through the model at once; unless ``attribute_kwargs`` sets
    ``internal_batch_size``, the runner gives them the package's default
    chunk (:func:`default_chunk_rows`, measured once on the first example):
    groups of at most that many examples per call and that many rows per
    pass; those called one example at a time (GradientShap, whose
    ``n_samples`` rows of an example go through the model in one pass) get
    the model run that many rows at a time, each chunk checkpointed so that
    one chunk's activations are held at a time. The chunk is not part of the
    call's identity (it changes the results by float rounding only).

    **Several processes.** Under ``torchrun`` each rank takes every
    ``world_size``-th unfinished shard (gloo on CPU, NCCL on CUDA with one
    device per rank from ``LOCAL_RANK``) and rank 0 finalises the manifest;
    the attributions equal a single-process run's.

    Examples
    --------
    >>> import tempfile
    >>> import torch
    >>> from torch import nn
    >>> from captum_prior.attr import ExpectedGradients
    >>> from captum_prior.runner import attribute_dataset, load_attributions
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    >>> data = torch.utils.data.TensorDataset(torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1]))
    >>> with tempfile.TemporaryDirectory() as out:
    ...     _ = attribute_dataset(ExpectedGradients(model), data, out,
    ...                           {"baselines": torch.zeros(3, 1, 4, 4), "n_samples": 4},
    ...                           target="label", batch_size=2, progress=False)
    ...     stored = load_attributions(out)
    >>> stored.attributions.shape
    torch.Size([5, 1, 4, 4])
    """
    from captum_prior._validation import check_choice, check_int

    if not hasattr(attribution, "attribute"):
        raise TypeError(f"attribution must have an attribute() method, got {type(attribution).__name__}")
    if isinstance(dataset, torch.utils.data.DataLoader):
        dataset = dataset.dataset
    try:
        n = len(dataset)
    except TypeError:
        raise TypeError("dataset must have a length (a map-style Dataset or a DataLoader over one)") from None
    if n == 0:
        raise ValueError("dataset is empty; there is nothing to attribute")
    batch_size = check_int(batch_size, "batch_size", 1)
    shard_size = check_int(shard_size, "shard_size", 1)
    seed = check_int(seed, "seed", 0)
    randomness = check_choice(randomness, "randomness", RANDOMNESS)
    if randomness == "auto":
        randomness = _detect_randomness(attribution, dict(attribute_kwargs or {}))
    elif randomness == "generators" and "generator" not in inspect.signature(attribution.attribute).parameters:
        raise ValueError(
            f"randomness='generators' passes a list of generators, but "
            f"{type(attribution).__name__}.attribute has no 'generator' argument; "
            "use randomness='auto'"
        )
    if return_convergence_delta == "auto":
        want_delta = "return_convergence_delta" in inspect.signature(attribution.attribute).parameters
    elif isinstance(return_convergence_delta, bool):
        want_delta = return_convergence_delta
    else:
        raise TypeError("return_convergence_delta must be True, False or 'auto'")
    if not (target in ("pred", "label") or (isinstance(target, (int, np.integer)) and not isinstance(target, bool))):
        raise ValueError(f"target must be 'pred', 'label' or an int class index, got {target!r}")

    dev = resolve_device(device)
    model = getattr(attribution, "forward_func", None)
    if model is None:
        raise TypeError("attribution has no forward_func (the model); pass a Captum-style attribution object")
    if isinstance(model, nn.Module):
        model.to(dev)
    kwargs = _to_device(dict(attribute_kwargs or {}), dev)
    x0, _ = _split_item(dataset[0])
    identity = {
        "method": method or type(attribution).__name__,
        "method_class": f"{type(attribution).__module__}.{type(attribution).__qualname__}",
        "method_args": jsonable(dict(method_args or {})),
        "attribute_kwargs": jsonable(dict(attribute_kwargs or {})),
        "model": model_fingerprint(model),
        "seed": seed,
        "randomness": randomness,
        "target": target,
        "dataset": dataset_description or type(dataset).__name__,
        "float16": bool(float16),
        "delta": want_delta,
    }
    store = ShardStore(
        out, "attributions", identity, n, shard_size,
        info=dict(info or {}, input_shape=list(x0.shape), attribution_shape=list(x0.shape)),
    )
    store.check_directory()  # every rank: refuse a wrong directory before any work
    runner = _Attributor(attribution, kwargs, seed, randomness, want_delta)
    group = Group(dev)
    try:

        def shard_tensors(rows: List[int], advance: Callable[[int], Any]) -> Dict[str, Tensor]:
            parts: Dict[str, List[Tensor]] = {"target": [], "attributions": [], "delta": []}
            for b in range(0, len(rows), batch_size):
                idx = rows[b : b + batch_size]
                x, y = _load_batch(dataset, idx)
                x = x.to(dev)
                t = _targets(target, model, x, y)
                a, d = runner(x, t.to(dev), idx, advance)
                parts["attributions"].append(a.to("cpu", torch.float16 if float16 else torch.float32))
                parts["target"].append(t.to("cpu", torch.long))
                if d is not None:
                    parts["delta"].append(d)
            tensors = {
                "index": torch.tensor(rows, dtype=torch.long),
                "target": torch.cat(parts["target"]),
                "attributions": torch.cat(parts["attributions"]),
            }
            if parts["delta"]:
                tensors["delta"] = torch.cat(parts["delta"])
            return tensors

        store.run(
            group, shard_tensors, progress=progress,
            desc=f"explain {identity['method']}" + (f" rank 0/{group.world}" if group.world > 1 else ""),
        )
    finally:
        runner.restore()
        group.close()
    return os.fspath(out)
