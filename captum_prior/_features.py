"""Feature extraction from a model's layer with a forward hook.

Shared by the priors (DeepPrior-EG) and the proxies (JGMM): one hook, one
forward per batch, the model left exactly as found (hook removed, train/eval
mode restored) even when the forward raises.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from captum_prior._validation import check_finite_output, check_input_dtype


@contextmanager
def eval_mode(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Context manager: ``model`` in eval mode inside, and every submodule's
    ``training`` flag exactly as found afterwards (also when the body raises),
    e.g. a training model whose frozen batch norms are kept in eval mode.

    A model already in eval mode is not touched (``model.eval()`` walks every
    submodule, a cost comparable to the forward of a small CNN on one image).
    ``enabled=False`` leaves the mode alone."""
    modules = list(model.modules()) if enabled else []
    flags = [m.training for m in modules]
    if not any(flags):
        yield model
        return
    try:
        model.eval()
        yield model
    finally:
        for m, flag in zip(modules, flags):
            m.training = flag


def resolve_layer(
    model: nn.Module,
    layer: Union[str, nn.Module, None],
    name: str = "layer",
    example: Optional[Tensor] = None,
) -> nn.Module:
    """Return the submodule ``layer`` (a module or its dotted name) of ``model``.

    ``None`` selects :func:`last_spatial_layer` of ``model`` on ``example``
    (one forward with hooks), which must then be given.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module to hook its layers, got {type(model).__name__}"
        )
    if layer is None:
        if example is None:
            raise ValueError(
                f"{name}=None finds the layer by running the model once; pass an example "
                "input, or pass the layer (a module or its dotted name)"
            )
        return last_spatial_layer(model, example, name)[0]
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n][:12]
            raise ValueError(
                f"{name}={layer!r} is not a submodule of the model; some valid names: "
                + ", ".join(names)
            ) from None
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError(
                f"{name} is an nn.Module that is not part of the model; pass one of "
                "model.modules() or its dotted name"
            )
        return layer
    raise TypeError(f"{name} must be None, a str or an nn.Module, got {type(layer).__name__}")


def _is_spatial(out: Any) -> bool:
    return isinstance(out, Tensor) and out.dim() == 4 and out.shape[-1] * out.shape[-2] > 1


def last_spatial_layer(
    model: nn.Module, example: Tensor, name: str = "layer"
) -> Tuple[nn.Module, str]:
    """The module whose output is the model's last spatial feature map.

    Runs ``model`` once on ``example[:1]`` (no grad, eval mode, model left as
    found) with a forward hook on every submodule, and takes the last output,
    in the order the forwards *finish*, that is an ``N x C x h x w`` tensor
    with ``h * w > 1``. Registration order plays no part: on a ResNet the
    last registered convolution is often a 1x1 shortcut, whose output is
    added inside the block and is not the final feature map.

    The same tensor object can be returned by several modules (a block's
    last ReLU, the block, its ``nn.Sequential`` stage; an eval-mode
    ``Dropout`` returns its input): the module chosen is the outermost
    ancestor, below the root, of the first module that produced it, among
    those returning that same tensor, e.g. ``layer4`` of a ResNet (= its
    final block's output), ``conv3`` of :class:`~captum_prior.models.FashionCNN`.
    A module called several times per forward is read at its last call.

    Returns
    -------
    tuple of (nn.Module, str)
        The module and its dotted name.
    """
    names = {m: n for n, m in model.named_modules()}
    seen: List[Tuple[nn.Module, Any]] = []

    def hook(m: nn.Module, _inp: Any, out: Any) -> None:
        seen.append((m, out))

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    try:
        with eval_mode(model), torch.no_grad():
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
    spatial = [(m, o) for m, o in seen if _is_spatial(o)]
    if not spatial:
        raise ValueError(
            f"{name}=None looks for the last module with an N x C x h x w output, but no "
            "submodule of the model returns one; pass the layer to read features from"
        )
    out = spatial[-1][1]
    same = [m for m, o in seen if o is out]
    first = same[0]
    chosen = first
    same_ids = {id(m) for m in same}
    for m in same:  # outermost ancestor of ``first`` that returned the same tensor
        n = names[m]
        if id(m) in same_ids and (names[first] == n or names[first].startswith(n + ".")):
            if n.count(".") < names[chosen].count("."):
                chosen = m
    return chosen, names[chosen]


@contextmanager
def capture(model: nn.Module, layer: nn.Module, set_eval: bool = True) -> Iterator[List[Tensor]]:
    """Context manager: every forward of ``model`` appends ``layer``'s output.

    The features and the model's outputs are checked for NaN/Inf as they are
    computed
    (:class:`~captum_prior.errors.ModelOutputError` naming the model and the
    first offending example, counted over every forward inside the context).
    With ``set_eval`` (default) the model runs in eval mode inside the
    context (:func:`eval_mode`).
    """
    store: List[Tensor] = []
    seen = [0]

    def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
        f = out[0] if isinstance(out, (tuple, list)) else out
        if isinstance(f, Tensor) and f.dim() > 0:
            index = torch.arange(seen[0], seen[0] + f.shape[0])
            seen[0] += f.shape[0]
            check_finite_output(f, model, index, what=f"feature map of layer {type(layer).__name__}")
        store.append(f)

    def out_hook(_m: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, Tensor) and out.dim() > 0:
            index = torch.arange(done[0], done[0] + out.shape[0])
            done[0] += out.shape[0]
            check_finite_output(out, model, index)

    done = [0]

    def pre_hook(_m: nn.Module, inp: Any) -> None:
        if not done[0] and inp and isinstance(inp[0], Tensor):
            check_input_dtype(inp[0], model)

    handle = layer.register_forward_hook(hook)
    out_handle = model.register_forward_hook(out_hook)
    pre_handle = model.register_forward_pre_hook(pre_hook)
    try:
        with eval_mode(model, set_eval):
            yield store
    finally:
        handle.remove()
        out_handle.remove()
        pre_handle.remove()


def layer_features(
    model: nn.Module,
    layer: nn.Module,
    inputs: Union[Tensor, Iterable[Any]],
    batch_size: int = 256,
    device: Union[str, torch.device, None] = None,
    progress: bool = False,
    with_outputs: bool = False,
    desc: str = "features",
) -> Any:
    """Features of ``layer`` for ``inputs`` (a tensor, or an iterable of batches
    such as a DataLoader yielding ``x`` or ``(x, y, ...)``), one forward per batch.

    Returns the features (``N x ...``) on CPU-or-``device``; with
    ``with_outputs=True`` returns ``(features, model_outputs)``.
    """
    from tqdm.auto import tqdm

    if isinstance(inputs, Tensor):
        batches: Iterable[Any] = (
            inputs[i : i + batch_size] for i in range(0, inputs.shape[0], batch_size)
        )
        total: Optional[int] = (inputs.shape[0] + batch_size - 1) // batch_size
    else:
        batches = inputs
        total = len(inputs) if hasattr(inputs, "__len__") else None  # type: ignore[arg-type]
    feats: List[Tensor] = []
    outs: List[Tensor] = []
    dev = device if device is not None else _model_device(model)
    with capture(model, layer) as store, torch.no_grad():
        for batch in tqdm(batches, total=total, disable=not progress, desc=desc):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            out = model(x.to(dev))
            if with_outputs and isinstance(out, Tensor) and out.dim() > 0:
                done = sum(f.shape[0] for f in feats)
                check_finite_output(out, model, torch.arange(done, done + out.shape[0]))
            if not store:
                raise ValueError("the layer was not called during the model's forward")
            feats.append(store.pop().detach())
            store.clear()
            if with_outputs:
                outs.append(out.detach())
    f = torch.cat(feats)
    return (f, torch.cat(outs)) if with_outputs else f


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
