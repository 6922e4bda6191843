"""DMM-MEN local explanations (Guo et al., NeurIPS 2018, §4.2) as a Captum attribution."""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from captum.attr import PerturbationAttribution
from captum.log import log_usage
from sklearn.base import clone
from torch import Tensor

from captum_prior._batching import RowRunner, forward_rows
from captum_prior._compat import (
    BaselineType,
    TargetType,
    TensorOrTupleOfTensorsGeneric,
    _format_output,
)
from captum_prior._random import RandomState, check_random_state
from captum_prior._validation import (
    as_tensor_tuple,
    check_choice,
    check_int,
    resolve_callable_baselines,
)
from captum_prior.proxy.dmm_men import DMMMEN
from captum_prior.segmentation import patch_feature_mask, slic_feature_mask

__all__ = ["DMMMENAttribution", "patch_feature_mask", "slic_feature_mask"]


def _default_estimator() -> DMMMEN:
    return DMMMEN(n_components=4, n_penalties=2, n_iter=300, burn_in=150, n_chains=2, n_jobs=1)


class DMMMENAttribution(PerturbationAttribution):
    r"""Local explanations with DMM-MEN (Guo et al., 2018, §4.2).

    For each example, LIME-style samples are drawn around the input over the
    interpretable features of ``feature_mask`` (superpixels or patches): a
    sample keeps a random subset of the features and replaces the others by
    the baseline.  A :class:`~captum_prior.proxy.DMMMEN` mixture of
    elastic-net regressions is fitted to ``(binary feature indicators,
    target output)``, and the attribution of each feature is its
    coefficient in the mixture component that the input itself (the
    all-features-kept sample) belongs to: the paper's "for any data sample
    x_i, we can identify a regression model which best approximates the
    local decision boundary" (§3.1).

    Parameters
    ----------
    forward_func : Callable
        The model or any modification of it.
    estimator : DMMMEN or None, default None
        Template whose parameters are used for each fit; it is cloned,
        never fitted itself.  ``None`` uses ``DMMMEN(n_components=4,
        n_penalties=2, n_iter=300, burn_in=150, n_chains=2, n_jobs=1)``:
        600 sweeps in all, run in this process, a few seconds per
        explanation.

    Attributes
    ----------
    estimators_ : list of DMMMEN
        The fitted mixtures of the last call, one per example.

    Raises
    ------
    TypeError
        ``estimator`` is not a :class:`~captum_prior.proxy.DMMMEN`.

    Notes
    -----
    The paper gives no sampling details.  Here the number of kept features
    of a sample is uniform on ``1..n_features`` and the subset uniform given
    that number (the original LIME scheme); no similarity kernel weights the
    samples, since the mixture models locality itself.  The response is the
    target output as returned by ``forward_func`` (``response="raw"``) or
    its logit (``response="logit"``, for models returning probabilities, as
    the paper's footnote 1 does for the global fit).

    References
    ----------
    .. [1] Guo, W., Huang, S., Tao, Y., Xing, X., & Lin, L. (2018).
       Explaining deep learning models - a Bayesian non-parametric
       approach. NeurIPS 31.

    Examples
    --------
    >>> import torch
    >>> from captum_prior.attr import DMMMENAttribution
    >>> from captum_prior.proxy import DMMMEN
    >>> model = torch.nn.Linear(4, 2)
    >>> est = DMMMEN(n_components=2, n_iter=20, n_chains=1, n_jobs=1,
    ...              check_convergence=False)
    >>> attr = DMMMENAttribution(model, estimator=est).attribute(
    ...     torch.randn(1, 4), target=0, n_samples=60, random_state=0)
    >>> attr.shape
    torch.Size([1, 4])
    """

    def __init__(
        self, forward_func: Callable, estimator: Optional[DMMMEN] = None
    ) -> None:
        PerturbationAttribution.__init__(self, forward_func)
        if estimator is not None and not isinstance(estimator, DMMMEN):
            raise TypeError(
                f"estimator must be a captum_prior.proxy.DMMMEN, got {type(estimator).__name__}"
            )
        self.estimator = estimator
        self.estimators_: List[DMMMEN] = []

    @log_usage()
    def attribute(  # type: ignore[override]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        feature_mask: Union[None, Tensor, Tuple[Tensor, ...]] = None,
        n_samples: int = 500,
        perturbations_per_eval: int = 100,
        return_input_shape: bool = True,
        response: str = "raw",
        random_state: RandomState = None,
        show_progress: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric:
        r"""Attribute the target output to the interpretable features.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            The input(s) to explain; dimension 0 indexes examples, each
            explained with its own fit.
        baselines : scalar, Tensor, tuple or Callable, optional
            The value that replaces a removed feature: a number, a tensor of
            one example's shape (or ``1 x ...`` / ``N x ...``), or a callable
            returning one (Captum's convention: called with no argument, or
            with ``inputs``).  ``None`` is zero.
        target : int, tuple, Tensor or list, optional
            Output index explained, in any of Captum's forms.
        additional_forward_args : Any, optional
            Extra arguments of ``forward_func`` after the inputs.
        feature_mask : Tensor or tuple of Tensor, optional
            Integer feature id of every input element, broadcastable to the
            inputs (``1 x ...`` or ``N x ...``); ids are shared across the
            tuple.  ``None``: SLIC superpixels of each image
            (:func:`~captum_prior.segmentation.slic_feature_mask`) when
            ``inputs`` is one ``N x C x H x W`` tensor, as in the paper;
            otherwise every scalar is its own feature (Captum's default).
        n_samples : int, default 500
            Perturbed samples per example, the unperturbed input included.
        perturbations_per_eval : int, default 100
            Rows per forward pass.
        return_input_shape : bool, default True
            ``True`` returns attributions in the inputs' shape (every element
            gets its feature's coefficient); ``False`` returns
            ``N x n_features`` coefficients.
        response : {"raw", "logit"}, default "raw"
            ``"raw"`` fits the target output as returned; ``"logit"`` fits
            ``log(p / (1 - p))`` of outputs in ``[0, 1]``.
        random_state : None, int or numpy.random.Generator, default None
            Seed of the sampling and of the fits (unless the estimator has
            its own ``random_state``); the same seed gives the same
            attributions.
        show_progress : bool, default False
            Show a progress bar over the examples.

        Returns
        -------
        Tensor or tuple of Tensor
            Attributions with the inputs' structure, or ``N x n_features``.

        Raises
        ------
        ValueError
            Fewer than 2 features in an example's mask, mis-shaped
            baselines or masks, or ``response="logit"`` with outputs outside
            ``[0, 1]``.
        TypeError
            A float ``feature_mask``, or a ``random_state`` of another type.

        Examples
        --------
        See the class docstring.
        """
        inputs_t, is_tuple = as_tensor_tuple(inputs)
        n_samples = check_int(n_samples, "n_samples", 2)
        chunk = check_int(perturbations_per_eval, "perturbations_per_eval", 1)
        check_choice(response, "response", ("raw", "logit"))
        rng = check_random_state(random_state)
        N = inputs_t[0].shape[0]
        if N == 0:  # an empty batch: an empty result of the right shape, as torch does
            if not return_input_shape:
                return torch.zeros(0, 0, dtype=inputs_t[0].dtype, device=inputs_t[0].device)  # type: ignore[return-value]
            return _format_output(is_tuple, tuple(torch.zeros_like(x) for x in inputs_t))
        bases = self._baselines(resolve_callable_baselines(baselines, inputs), inputs_t)
        masks = self._masks(feature_mask, inputs_t)
        template = (
            self.estimator if self.estimator is not None else _default_estimator()
        )
        runner = RowRunner(self.forward_func, N, target, additional_forward_args)

        # per-example feature ids 0..F-1 and the (rows x F) designs
        ids, n_feats, designs = [], [], []
        for i in range(N):
            flat = torch.cat([m[min(i, m.shape[0] - 1)].reshape(-1) for m in masks])
            uniq, inv = torch.unique(flat, return_inverse=True)
            F = int(uniq.numel())
            if F < 2:
                raise ValueError(
                    f"feature_mask defines {F} feature for example {i}; DMM-MEN needs "
                    "at least 2 interpretable features"
                )
            parts, start = [], 0
            for x in inputs_t:
                size = int(np.prod(x.shape[1:]))
                parts.append(inv[start : start + size].reshape(x.shape[1:]))
                start += size
            ids.append(parts)
            n_feats.append(F)
            designs.append(self._design(rng, n_samples, F))

        dev = inputs_t[0].device
        Fmax = max(n_feats)
        D = torch.zeros(N, n_samples, Fmax, device=dev)
        for i, Z in enumerate(designs):
            D[i, :, : Z.shape[1]] = torch.from_numpy(Z).to(dev)
        id_t = [
            torch.stack([ids[i][t] for i in range(N)]).to(x.device)
            for t, x in enumerate(inputs_t)
        ]

        def make_rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
            rows = torch.arange(sl.start, sl.stop, device=dev)
            ex, within = rows // n_samples, rows % n_samples
            Drow = D[ex, within]  # (R, Fmax)
            out = []
            for t, (x, b) in enumerate(zip(inputs_t, bases)):
                e_x = ex.to(x.device)
                idx = id_t[t][e_x].reshape(len(rows), -1)
                keep = torch.gather(Drow.to(x.device), 1, idx).reshape(
                    (len(rows),) + tuple(x.shape[1:])
                )
                keep = keep.to(x.dtype)
                xb = x[e_x]
                bb = b[e_x] if b.shape[0] == N and N > 1 else b.expand_as(xb)
                out.append(xb * keep + bb * (1.0 - keep))
            return tuple(out), ex

        scores = forward_rows(runner, make_rows, N * n_samples, chunk).detach()
        scores = scores.to(torch.float64).cpu().numpy().reshape(N, n_samples)
        if response == "logit":
            if np.any(scores < 0) or np.any(scores > 1):
                raise ValueError(
                    "response='logit' needs target outputs in [0, 1] (probabilities); "
                    "wrap the model with a softmax or use response='raw'"
                )
            eps = 1e-12
            pc = np.clip(scores, eps, 1 - eps)
            scores = np.log(pc) - np.log1p(-pc)

        self.estimators_ = []
        coefs = []
        it = range(N)
        if show_progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="DMM-MEN explanations", leave=False)
        for i in it:
            est = clone(template)
            if est.random_state is None:
                est.set_params(random_state=int(rng.integers(2**31 - 1)))
            est.fit(designs[i].astype(np.float64), scores[i])
            comp = int(est.labels_[0])
            coefs.append(est.coef_[comp])
            self.estimators_.append(est)

        if not return_input_shape:
            F = max(n_feats)
            out = torch.zeros(N, F, dtype=inputs_t[0].dtype, device=inputs_t[0].device)
            for i, c in enumerate(coefs):
                out[i, : c.size] = torch.as_tensor(
                    c, dtype=out.dtype, device=out.device
                )
            return out  # type: ignore[return-value]
        attrs = []
        for t, x in enumerate(inputs_t):
            a = torch.empty_like(x)
            for i in range(N):
                c = torch.as_tensor(coefs[i], dtype=x.dtype, device=x.device)
                a[i] = c[ids[i][t]]
            attrs.append(a)
        return _format_output(is_tuple, tuple(attrs))

    def attribute_future(self) -> Callable:
        r"""
        This method is not implemented for DMMMENAttribution.
        """
        raise NotImplementedError(
            "attribute_future is not implemented for DMMMENAttribution"
        )

    # ----------------------------------------------------------------- helpers
    @staticmethod
    def _design(rng: np.random.Generator, n_samples: int, F: int) -> np.ndarray:
        """Row 0 keeps every feature (the input); the others keep a uniformly
        sized, uniformly chosen subset (original LIME sampling)."""
        Z = np.ones((n_samples, F), dtype=np.float32)
        k = rng.integers(1, F + 1, size=n_samples - 1)
        order = np.argsort(rng.random((n_samples - 1, F)), axis=1)
        ranks = np.argsort(order, axis=1)
        Z[1:] = (ranks < k[:, None]).astype(np.float32)
        return Z

    @staticmethod
    def _baselines(
        baselines: BaselineType, inputs: Tuple[Tensor, ...]
    ) -> Tuple[Tensor, ...]:
        if baselines is None:
            baselines = 0.0
        items = (
            baselines
            if isinstance(baselines, tuple)
            else (baselines,)
            * (len(inputs) if not isinstance(baselines, Tensor) else 1)
        )
        if len(items) != len(inputs):
            raise ValueError(
                f"baselines has {len(items)} entries but inputs has {len(inputs)}; pass "
                "one baseline per input tensor"
            )
        out = []
        for i, (b, x) in enumerate(zip(items, inputs)):
            if isinstance(b, (int, float)) and not isinstance(b, bool):
                b = torch.full(
                    (1,) + tuple(x.shape[1:]), float(b), dtype=x.dtype, device=x.device
                )
            if not isinstance(b, Tensor):
                raise TypeError(
                    f"baselines[{i}] must be a number or a Tensor, got {type(b).__name__}"
                )
            b = b.to(device=x.device, dtype=x.dtype)
            if tuple(b.shape) == tuple(x.shape[1:]):
                b = b.unsqueeze(0)
            if (
                b.dim() != x.dim()
                or b.shape[0] not in (1, x.shape[0])
                or tuple(b.shape[1:]) != tuple(x.shape[1:])
            ):
                raise ValueError(
                    f"baselines[{i}] has shape {tuple(b.shape)} but inputs[{i}] has "
                    f"{tuple(x.shape)}; pass one example's shape, 1 x ... or N x ..."
                )
            if not bool(torch.isfinite(b).all()):
                raise ValueError(f"baselines[{i}] contains NaN or Inf")
            out.append(b)
        return tuple(out)

    @staticmethod
    def _masks(feature_mask: Any, inputs: Tuple[Tensor, ...]) -> Tuple[Tensor, ...]:
        if feature_mask is None and len(inputs) == 1 and inputs[0].dim() == 4:
            # one batch of images: SLIC superpixels per image (paper §4.2)
            return (slic_feature_mask(inputs[0]),)
        if feature_mask is None:
            out, start = [], 0
            for x in inputs:
                size = int(np.prod(x.shape[1:]))
                out.append(
                    (torch.arange(size, device=x.device) + start).reshape(
                        (1,) + tuple(x.shape[1:])
                    )
                )
                start += size
            return tuple(out)
        items = feature_mask if isinstance(feature_mask, tuple) else (feature_mask,)
        if len(items) != len(inputs):
            raise ValueError(
                f"feature_mask has {len(items)} tensors but inputs has {len(inputs)}"
            )
        out = []
        for i, (m, x) in enumerate(zip(items, inputs)):
            if not isinstance(m, Tensor):
                raise TypeError(
                    f"feature_mask[{i}] must be a Tensor, got {type(m).__name__}"
                )
            if m.is_floating_point():
                raise TypeError(
                    f"feature_mask[{i}] must be an integer tensor, got {m.dtype}"
                )
            if m.dim() == x.dim() - 1:
                m = m.unsqueeze(0)
            try:
                m = m.expand((m.shape[0],) + tuple(x.shape[1:]))
            except RuntimeError:
                raise ValueError(
                    f"feature_mask[{i}] of shape {tuple(m.shape)} does not broadcast to "
                    f"the inputs' shape {tuple(x.shape)}"
                ) from None
            if m.shape[0] not in (1, x.shape[0]):
                raise ValueError(
                    f"feature_mask[{i}] has {m.shape[0]} rows; use 1 or one per example ({x.shape[0]})"
                )
            out.append(m.to(x.device).long())
        return tuple(out)
