#!/usr/bin/env python3
"""Important Direction Gradient Integration (Yang et al., CVPR 2023)."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Tuple

import torch
from captum.attr import GradientAttribution, IntegratedGradients
from captum.log import log_usage
from torch import Tensor

from captum_prior._batching import RowRunner
from captum_prior._compat import (
    SUPPORTED_METHODS,
    _format_additional_forward_args,
    _format_output,
    approximation_parameters,
)
from captum_prior._validation import as_tensor_tuple, check_int, check_optional_int
from captum_prior.attr._path import (
    alpha_partition,
    check_inputs_range,
    format_baselines,
    idgi_fixed_paths,
)
from captum_prior.attr.blur_integrated_gradients import BlurIntegratedGradients
from captum_prior.attr.expected_gradients import ExpectedGradients
from captum_prior.attr.guided_integrated_gradients import GuidedIntegratedGradients
from captum_prior.attr.valid_path_gradients import ValidPathGradients

#: the path methods IDGI wraps
PATH_METHODS = (
    IntegratedGradients,
    ValidPathGradients,
    BlurIntegratedGradients,
    GuidedIntegratedGradients,
)


class IDGI(GradientAttribution):
    r"""Important Direction Gradient Integration of a path method.

    Yang, Wang & Bilgic, "IDGI: A Framework to Eliminate Explanation Noise
    from Integrated Gradients", CVPR 2023 (https://arxiv.org/abs/2303.14242),
    Algorithm 1. For the points ``x_0, ..., x_J`` of the wrapped method's
    path (from its start to the input) and the gradient ``g_j = grad f(x_j)``
    of the target score,

    .. math::
        \phi_i = \sum_{j=0}^{J-1} \frac{g_{j,i}^2}{\lVert g_j \rVert^2}
        \big(f(x_{j+1}) - f(x_j)\big):

    each step's output change is credited along the gradient direction only,
    the part of the step that changes ``f`` to first order; the orthogonal
    part of the step, which the path integral also integrates and which
    carries the noise, is dropped. The sum telescopes, so
    ``sum(phi) = f(x_J) - f(x_0)`` exactly (the convergence delta is zero up
    to rounding, except where a gradient vanishes entirely).

    ``IDGI(method).attribute`` takes exactly the arguments of
    ``method.attribute``, in the same order, and walks the same path:

    - ``IntegratedGradients`` (Captum) and :class:`~captum_prior.attr.ValidPathGradients`: the
      straight line from each baseline, at the points ``0``, the
      quadrature nodes of ``method`` for ``n_steps`` and ``1``
      (``riemann_left``/``riemann_right``: the uniform grid of the paper).
      For ValidPathGradients, the ``B`` (optimised or given) baselines give
      ``B`` paths of ``n_steps // B`` steps, averaged as in the method;
      the important-direction rule takes the place of the valid-feature
      filter (``filter_path_features`` is not used), and ``monte_carlo``
      uses the uniform grid.
    - :class:`~captum_prior.attr.BlurIntegratedGradients`: the blur path from ``max_sigma`` to 0
      at ``n_steps + 1`` equally spaced widths.
    - :class:`~captum_prior.attr.GuidedIntegratedGradients`: the adaptive path, one point per
      step, built by the method's own selection rule.

    Expected Gradients is not wrapped: each of its draws evaluates one
    random point of one path, so there are no consecutive points whose
    output difference the rule needs; IDGI over its reference set would be
    IDGI of integrated gradients averaged over references, a different
    estimator. The wrapped method must multiply by inputs (the rule has no
    local form).

    Parameters
    ----------
    path_method : IntegratedGradients, ValidPathGradients, BlurIntegratedGradients or GuidedIntegratedGradients
        The path method (an instance) whose path is used.

    Raises
    ------
    TypeError
        For anything but an instance of one of the path methods above
        (ExpectedGradients included, with the reason).
    ValueError
        For a path method built with ``multiply_by_inputs=False``.

    Notes
    -----
    Gradient evaluations: one per path point, i.e. ``n_steps + 1`` (``+ 2``
    for quadratures without end points) per path, where the wrapped method
    takes ``n_steps``; Guided IG adds one forward pass at the input. Points
    known in advance (every path but Guided IG's) are evaluated in chunks of
    ``internal_batch_size`` rows and each chunk's steps are credited at
    once; Guided IG's are credited as its steps are taken.

    References
    ----------
    R. Yang, B. Wang, M. Bilgic. IDGI: A Framework to Eliminate Explanation
    Noise from Integrated Gradients. CVPR 2023.

    Examples
    --------
    >>> import torch
    >>> from captum.attr import IntegratedGradients
    >>> from captum_prior.attr import IDGI
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Softplus(),
    ...                             torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 6, 3)).eval()
    >>> images = torch.rand(2, 1, 8, 8)
    >>> idgi = IDGI(IntegratedGradients(model))
    >>> attr, delta = idgi.attribute(images, baselines=0.0, target=1, n_steps=20,
    ...                              method="riemann_left", return_convergence_delta=True)
    >>> attr.shape, bool(delta.abs().max() < 1e-5)  # the sum telescopes
    (torch.Size([2, 1, 8, 8]), True)
    """

    def __init__(self, path_method: Any) -> None:
        if isinstance(path_method, ExpectedGradients):
            raise TypeError(
                "IDGI does not wrap ExpectedGradients: each of its draws evaluates "
                "one random point of a path, so there are no consecutive path points "
                "for the important-direction rule; wrap IntegratedGradients (one path "
                "per baseline) instead"
            )
        if isinstance(path_method, type) or not isinstance(path_method, PATH_METHODS):
            names = ", ".join(c.__name__ for c in PATH_METHODS)
            raise TypeError(
                f"IDGI wraps an instance of a path method ({names}), got "
                f"{path_method!r}; e.g. IDGI(IntegratedGradients(model))"
            )
        if not path_method.multiplies_by_inputs:
            raise ValueError(
                "IDGI needs the path method with multiply_by_inputs=True: the "
                "important-direction rule credits output differences, which has no "
                "local (gradient-only) form"
            )
        GradientAttribution.__init__(self, path_method.forward_func)
        self.path_method = path_method

    def has_convergence_delta(self) -> bool:
        """True: IDGI returns a convergence delta on request.

        Returns
        -------
        bool
            Always True.
        """
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        """True: the attributions credit output differences along the path."""
        return True

    @log_usage()
    def attribute(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        r"""IDGI attributions along the wrapped method's path.

        Parameters
        ----------
        inputs, *args, **kwargs
            Exactly those of ``path_method.attribute`` (same names, order and
            defaults), including ``return_convergence_delta``, which returns
            ``sum(phi) - (f(end) - f(start))`` per example (averaged over
            paths for several baselines).

        Returns
        -------
        attributions : Tensor or tuple of Tensor
            The inputs' shapes (and the delta, shape ``(N,)``).

        Raises
        ------
        TypeError
            For arguments ``path_method.attribute`` does not take, and
            everything the wrapped method rejects.

        Examples
        --------
        >>> import torch
        >>> from captum_prior.attr import IDGI, BlurIntegratedGradients
        >>> model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh(),
        ...                             torch.nn.Linear(4, 2))
        >>> attr = IDGI(BlurIntegratedGradients(model)).attribute(
        ...     torch.rand(3, 6), target=0, n_steps=10, max_sigma=2.0)
        >>> attr.shape
        torch.Size([3, 6])
        """
        m = self.path_method
        sig = inspect.signature(type(m).attribute)
        try:
            bound = sig.bind(m, inputs, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(
                f"IDGI({type(m).__name__}).attribute takes the arguments of "
                f"{type(m).__name__}.attribute: {exc}"
            ) from None
        bound.apply_defaults()
        a: Dict[str, Any] = dict(bound.arguments)
        a.pop("self", None)
        if isinstance(m, BlurIntegratedGradients):
            return m._attribute(
                a["inputs"], a["target"], a["additional_forward_args"], a["n_steps"],
                a["max_sigma"], a["internal_batch_size"], a["return_convergence_delta"],
                idgi=True,
            )
        if isinstance(m, GuidedIntegratedGradients):
            return m._attribute(
                a["inputs"], a["baselines"], a["target"], a["additional_forward_args"],
                a["n_steps"], a["fraction"], a["max_dist"], a["internal_batch_size"],
                a["return_convergence_delta"], idgi=True,
            )
        return self._straight(m, a)

    def _straight(self, m: Any, a: Dict[str, Any]) -> Any:
        """IG and ValidPathGradients: straight lines from the baselines."""
        xs, is_tuple = as_tensor_tuple(a["inputs"], "inputs")
        xs = tuple(x.detach() for x in xs)
        n_steps = check_int(a["n_steps"], "n_steps", 1)
        method = a["method"]
        if method not in SUPPORTED_METHODS and method != "monte_carlo":
            raise ValueError(
                f"unknown method {method!r}; choose one of: "
                + ", ".join(repr(c) for c in SUPPORTED_METHODS)
            )
        chunk = check_optional_int(a["internal_batch_size"], "internal_batch_size")
        if not isinstance(a["return_convergence_delta"], bool):
            raise TypeError("return_convergence_delta must be True or False")
        args = _format_additional_forward_args(a["additional_forward_args"])
        check_inputs_range(self.forward_func, xs)
        N = xs[0].shape[0]
        dev, dtype = xs[0].device, xs[0].dtype
        if isinstance(m, ValidPathGradients):
            base = m._baselines(
                xs, a["baselines"], a["n_baselines"], args, chunk,
                a["baseline_kwargs"], a["input_range"],
            )
        else:
            base = tuple(b.unsqueeze(0) for b in format_baselines(a["baselines"], xs, a["inputs"]))
        B = base[0].shape[0]
        K = n_steps // B
        if K < 1:
            raise ValueError(
                f"n_steps = {n_steps} is smaller than the {B} baselines; each "
                "baseline needs at least one path step"
            )
        if method == "monte_carlo":
            nodes = torch.arange(K, dtype=torch.float64) / K
        else:
            nodes = torch.tensor(approximation_parameters(method)[1](K), dtype=torch.float64)
        alphas = alpha_partition(nodes).to(device=dev, dtype=dtype)
        S = B * N
        runner = RowRunner(self.forward_func, N, a["target"], args)

        def point(k: Tensor, s: Tensor) -> Tuple[Tensor, ...]:
            b, n = s // N, s % N
            out = []
            for x, xb in zip(xs, base):
                al = alphas[k].view((-1,) + (1,) * (x.dim() - 1))
                start = xb[b, n]
                out.append(start + al * (x[n] - start))
            return tuple(out)

        shapes = tuple((S,) + tuple(x.shape[1:]) for x in xs)
        attr, gap = idgi_fixed_paths(
            runner, point, alphas.numel(), torch.arange(S, device=dev) % max(N, 1), shapes, chunk
        )
        attributions = tuple(
            at.view((B,) + tuple(x.shape)).mean(0).to(dtype) for at, x in zip(attr, xs)
        )
        out = _format_output(is_tuple, attributions)
        if not a["return_convergence_delta"]:
            return out
        s = sum(t.reshape(N, -1).sum(1) for t in attributions)
        return out, s - gap.view(B, N).mean(0).to(s.dtype)

    def attribute_future(self) -> Callable:
        """Not implemented for IDGI.

        Raises
        ------
        NotImplementedError
            Always.
        """
        raise NotImplementedError("attribute_future is not implemented for IDGI")


__all__ = ["IDGI", "PATH_METHODS"]
