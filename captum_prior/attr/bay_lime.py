"""BayLIME (Zhao, Huang, Huang, Robu & Flynn, UAI 2021) on Captum's Lime.

BayLIME replaces LIME's linear surrogate by Bayesian linear regression, so that
prior knowledge about the explanation (a prior mean and precision of the
coefficients) can be combined with the perturbation samples, and returns the
posterior mean as the explanation.  Captum's
``SkLearnLinearModel("linear_model.BayesianRidge")`` keeps only the point
coefficients of a non-informative fit, hence the :class:`BayesianLinearModel`
surrogate here.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from captum.attr import Lime
from captum.log import log_usage
from torch import Tensor
from torch.utils.data import DataLoader

from captum_prior._compat import (
    BaselineType,
    Model,
    TargetType,
    TensorOrTupleOfTensorsGeneric,
    _format_output,
    construct_feature_mask,
)
from captum_prior._validation import (
    as_tensor_tuple,
    check_feature_mask,
    check_finite,
    check_finite_output,
    check_float,
    check_input_dtype,
    check_int,
    check_model_mode,
    check_model_output,
    check_target,
    check_value_range,
    expected_input_range,
)

PriorType = Union[float, Tensor, None]


def _as_vector(value: Any, name: str, n: int, device: torch.device, positive: bool) -> Tensor:
    """A number or a length-``n`` tensor as a float64 vector on ``device``."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        v = torch.full((n,), check_float(value, name), dtype=torch.float64, device=device)
    elif isinstance(value, Tensor):
        check_finite(value, name)
        v = value.detach().reshape(-1).to(device=device, dtype=torch.float64)
        if v.numel() == 1:
            v = v.expand(n).clone()
        if v.numel() != n:
            raise ValueError(
                f"{name} has {v.numel()} values but the surrogate has {n} "
                "interpretable features; pass a number or one value per feature"
            )
    else:
        raise TypeError(f"{name} must be a number or a Tensor, got {type(value).__name__}")
    if positive and not bool((v > 0).all()):
        raise ValueError(f"{name} must be > 0 (a precision), got a minimum of {float(v.min())}")
    return v


def _check_prior_value(value: Any, name: str, positive: bool) -> None:
    """Eager check of a prior option (its length is checked at fit time)."""
    if value is None:
        return
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        check_float(value, name, 0.0 if positive else None, low_inclusive=not positive)
    elif isinstance(value, Tensor):
        check_finite(value, name)
        if positive and value.numel() and not bool((value > 0).all()):
            raise ValueError(f"{name} must be > 0 (a precision), got a minimum of {float(value.min())}")
    else:
        raise TypeError(f"{name} must be a number or a Tensor, got {type(value).__name__}")


class BayesianLinearModel(Model):
    r"""Weighted Bayesian linear regression with an informative Gaussian prior.

    Model (BayLIME, Zhao et al. 2021, §3; Bishop 2006, §3.3 and §3.5)::

        y_i = b + z_i·β + ε_i,   ε_i ~ N(0, 1 / α)  (weight w_i per sample)
        β ~ N(μ₀, Λ⁻¹),  Λ = diag(λ)  (λ a scalar or one value per feature)
        b: flat prior (the data are centred with the weighted means)

    The posterior of β is Gaussian with

        Σ = (Λ + α ZᵀWZ)⁻¹,   μ = Σ (Λ μ₀ + α ZᵀW y)

    on centred ``Z`` and ``y`` — BayLIME's posterior mean, a precision-weighted
    average of the prior mean μ₀ and the weighted least-squares estimate.

    * ``prior_precision`` and ``noise_precision`` both given: BayLIME's "full
      informative" prior; closed form, nothing estimated.
    * ``noise_precision=None``: α is estimated by evidence maximisation
      (MacKay 1992 fixed-point updates with Gamma(α₁, α₂) hyperpriors, as
      sklearn's ``BayesianRidge``): BayLIME's "partial informative" prior
      when ``prior_precision`` is given.
    * ``prior_precision=None``: a scalar λ is estimated the same way
      (``λ ← (γ + 2λ₁)/(‖μ − μ₀‖² + 2λ₂)``).  With ``prior_mean=0`` and both
      estimated this is BayLIME's "non-informative" prior and reproduces
      sklearn's ``BayesianRidge`` on the same samples and weights.

    Sample weights are frequency weights (rows scaled by ``√w``, α's update
    uses ``Σ w``), as in sklearn.  Credible intervals are the equal-tailed
    Normal intervals ``μ ± z σ`` of the Gaussian posterior with the point
    (type-II ML/MAP) estimates of α and λ plugged in; the uncertainty of
    those estimates is not propagated (a Normal–Gamma treatment would give
    Student-t intervals, slightly wider for few samples).

    Parameters
    ----------
    prior_mean : float or Tensor, optional
        μ₀, a number or one value per interpretable feature. Default: 0.0
    prior_precision : float or Tensor, optional
        λ (> 0), a number or one value per feature; None estimates a scalar λ.
        Default: None
    noise_precision : float, optional
        α (> 0); None estimates it. Default: None
    fit_intercept : bool, optional
        Fit an unpenalised intercept. Default: True
    max_iter : int, optional
        Evidence-maximisation iterations. Default: 300
    tol : float, optional
        Stop when the coefficients move less than this (L1). Default: 1e-3
    alpha_1, alpha_2, lambda_1, lambda_2 : float, optional
        Gamma hyperprior shape and rate of α and λ. Default: 1e-6

    Attributes
    ----------
    coef_ : Tensor
        Posterior-mean coefficients, shape ``(p,)``, float64.
    intercept_ : Tensor
        The intercept (0-d).
    sigma_ : Tensor
        Posterior covariance of the coefficients, ``p x p``.
    alpha_ : float
        The noise precision used (given or estimated).
    lambda_ : Tensor
        The prior precision per feature used (given or estimated).
    n_iter_ : int
        Evidence-maximisation iterations run (0 when nothing is estimated).
    fits_ : list of (Tensor, Tensor)
        One ``(coef, std)`` pair per fit since the last :meth:`reset_history`.

    Raises
    ------
    ValueError
        At fit time: a non-positive precision, a prior vector of the wrong
        length, non-finite data or invalid sample weights.
    sklearn.exceptions.NotFittedError
        Predicting or reading coefficients before a fit.

    References
    ----------
    .. [1] X. Zhao, W. Huang, X. Huang, V. Robu, D. Flynn, "BayLIME: Bayesian
       local interpretable model-agnostic explanations", UAI 2021.
    .. [2] C. M. Bishop, "Pattern Recognition and Machine Learning",
       Springer, 2006, §3.3 and §3.5.
    .. [3] D. J. C. MacKay, "Bayesian interpolation", Neural Computation 4,
       415-447 (1992).

    Examples
    --------
    >>> import torch
    >>> from captum_prior.attr import BayesianLinearModel
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(200, 3, generator=g, dtype=torch.float64)
    >>> y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.3
    >>> m = BayesianLinearModel().fit_tensors(x, y)
    >>> [round(v, 2) for v in m.coef_.tolist()], round(float(m.intercept_), 2)
    ([1.0, -2.0, 0.5], 0.3)
    >>> lo, hi = m.credible_intervals(0.95)
    >>> bool((lo <= m.coef_).all() and (m.coef_ <= hi).all())
    True
    """

    def __init__(
        self,
        prior_mean: PriorType = 0.0,
        prior_precision: PriorType = None,
        noise_precision: Optional[float] = None,
        fit_intercept: bool = True,
        max_iter: int = 300,
        tol: float = 1e-3,
        alpha_1: float = 1e-6,
        alpha_2: float = 1e-6,
        lambda_1: float = 1e-6,
        lambda_2: float = 1e-6,
    ) -> None:
        self.prior_mean = prior_mean
        self.prior_precision = prior_precision
        self.noise_precision = noise_precision
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.alpha_1 = alpha_1
        self.alpha_2 = alpha_2
        self.lambda_1 = lambda_1
        self.lambda_2 = lambda_2
        self.fits_: List[Tuple[Tensor, Tensor]] = []
        self._pending_prior_means: List[Optional[Tensor]] = []

    # ------------------------------------------------------------ Model API
    def fit(self, train_data: DataLoader, **kwargs: Any) -> Dict[str, Union[int, float, Tensor]]:
        """Fit on the ``(x, y[, w])`` batches of ``train_data`` (Lime's format).

        Parameters
        ----------
        train_data : DataLoader
            Batches of interpretable samples ``x``, model outputs ``y`` and
            optional similarity weights ``w``, as Captum's ``Lime`` builds
            them.
        **kwargs
            Ignored (Captum's ``Model.fit`` signature).

        Returns
        -------
        dict
            ``n_iter``, ``alpha`` and ``lambda`` of the fit.
        """
        xs, ys, ws = [], [], []
        for batch in train_data:
            xs.append(batch[0])
            ys.append(batch[1])
            ws.append(batch[2] if len(batch) > 2 else torch.ones_like(batch[1]))
        prior_mean = self._pending_prior_means.pop(0) if self._pending_prior_means else None
        self.fit_tensors(torch.cat(xs), torch.cat(ys), torch.cat(ws), prior_mean=prior_mean)
        return {"n_iter": self.n_iter_, "alpha": self.alpha_, "lambda": self.lambda_}

    def representation(self) -> Tensor:
        """Posterior-mean coefficients, shape ``1 x p`` (Captum's linear-model layout)."""
        self._check_fitted()
        return self.coef_.to(torch.float32).unsqueeze(0)

    def __call__(self, x: Tensor) -> Tensor:
        """Posterior-mean prediction ``x @ coef_ + intercept_``, shape ``N x 1``."""
        self._check_fitted()
        x = x.to(self.coef_.device, torch.float64)
        return (x @ self.coef_ + self.intercept_).unsqueeze(1).to(torch.float32)

    # --------------------------------------------------------------- fitting
    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("BayesianLinearModel is not fitted yet; call fit first")

    def reset_history(self) -> None:
        """Forget the per-fit history ``fits_`` and queued prior means."""
        self.fits_ = []
        self._pending_prior_means = []

    def fit_tensors(
        self, x: Tensor, y: Tensor, sample_weight: Optional[Tensor] = None,
        prior_mean: PriorType = None,
    ) -> "BayesianLinearModel":
        """Fit on an ``n x p`` design ``x``, targets ``y`` and weights.

        Parameters
        ----------
        x : Tensor
            The design, ``n x p``.
        y : Tensor
            The targets, ``n`` values.
        sample_weight : Tensor, optional
            ``n`` non-negative frequency weights with a positive sum; ``None``:
            all 1.
        prior_mean : float or Tensor, optional
            Overrides the constructor's μ₀ for this fit.

        Returns
        -------
        BayesianLinearModel
            ``self``, fitted.

        Raises
        ------
        ValueError
            Shapes that do not match, NaN/Inf, invalid weights or precisions.
        """
        max_iter = check_int(self.max_iter, "max_iter", 1)
        tol = check_float(self.tol, "tol", 0.0)
        if x.dim() != 2:
            raise ValueError(f"x must be n_samples x n_features, got shape {tuple(x.shape)}")
        device = x.device
        X = x.detach().to(torch.float64)
        Y = y.detach().reshape(-1).to(device, torch.float64)
        n, p = X.shape
        if Y.numel() != n:
            raise ValueError(f"y has {Y.numel()} values for {n} samples")
        W = (
            torch.ones(n, dtype=torch.float64, device=device)
            if sample_weight is None
            else sample_weight.detach().reshape(-1).to(device, torch.float64)
        )
        check_finite(X, "x")
        check_finite(Y, "y")
        check_finite(W, "sample_weight")
        if W.numel() != n or bool((W < 0).any()) or not float(W.sum()) > 0:
            raise ValueError("sample_weight must hold n non-negative weights with a positive sum")
        mu0 = _as_vector(
            self.prior_mean if prior_mean is None else prior_mean, "prior_mean", p, device, False
        )
        lam_fixed = self.prior_precision is not None
        lam_vec = (
            _as_vector(self.prior_precision, "prior_precision", p, device, True)
            if lam_fixed
            else torch.ones(p, dtype=torch.float64, device=device)
        )
        alpha_fixed = self.noise_precision is not None
        if alpha_fixed:
            alpha = check_float(self.noise_precision, "noise_precision", 0.0, low_inclusive=False)

        sw = W.sum()
        if self.fit_intercept:
            x_off = (W @ X) / sw
            y_off = (W @ Y) / sw
        else:
            x_off = torch.zeros(p, dtype=torch.float64, device=device)
            y_off = torch.zeros((), dtype=torch.float64, device=device)
        # Reduce to a prior N(0, λ⁻¹ I) on b = D⁻¹(β − μ₀), D = diag(λ_vec^-½):
        # a fixed per-feature precision becomes λ = 1 on rescaled columns.
        d = lam_vec.rsqrt()
        Zc = (X - x_off) * d
        r = (Y - y_off) - (X - x_off) @ mu0
        sq = W.sqrt()
        Zs = Zc * sq.unsqueeze(1)
        rs = r * sq
        evals, V = torch.linalg.eigh(Zs.T @ Zs)
        evals = evals.clamp(min=0.0)
        Ztr = V.T @ (Zs.T @ rs)  # eigenbasis projection of Zᵀ W r

        def posterior(a: float, lam: float) -> Tuple[Tensor, Tensor]:
            b = V @ (a * Ztr / (lam + a * evals))
            sse = ((rs - Zs @ b) ** 2).sum()
            return b, sse

        lam = 1.0
        if not alpha_fixed:
            var = (W @ (r - (W @ r) / sw) ** 2) / sw
            alpha = 1.0 / (float(var) + torch.finfo(torch.float64).eps)
        n_iter = 0
        if not (alpha_fixed and lam_fixed):
            b_old = None
            for it in range(max_iter):
                b, sse = posterior(alpha, lam)
                gamma = float((alpha * evals / (lam + alpha * evals)).sum())
                if not lam_fixed:
                    lam = (gamma + 2 * self.lambda_1) / (float((b**2).sum()) + 2 * self.lambda_2)
                if not alpha_fixed:
                    alpha = (float(sw) - gamma + 2 * self.alpha_1) / (float(sse) + 2 * self.alpha_2)
                n_iter = it + 1
                if b_old is not None and float((b_old - b).abs().sum()) < tol:
                    break
                b_old = b
        b, _ = posterior(alpha, lam)
        sigma_b = (V / (lam + alpha * evals)) @ V.T
        coef = mu0 + d * b
        self.coef_ = coef
        self.sigma_ = sigma_b * d.unsqueeze(1) * d.unsqueeze(0)
        self.intercept_ = y_off - x_off @ coef
        self.alpha_ = float(alpha)
        self.lambda_ = lam_vec * lam if lam_fixed else torch.full_like(lam_vec, lam)
        self.n_iter_ = n_iter
        self.fits_.append((coef.clone(), self.sigma_.diagonal().clamp(min=0).sqrt()))
        return self

    def credible_intervals(self, level: float = 0.95) -> Tuple[Tensor, Tensor]:
        """Equal-tailed credible intervals of the coefficients.

        Parameters
        ----------
        level : float, default=0.95
            In ``(0, 1)``.

        Returns
        -------
        lower, upper : Tensor
            Each of shape ``(p,)``: ``coef_ -+ z * std`` of the Gaussian
            posterior.
        """
        self._check_fitted()
        z = _z_value(level)
        std = self.sigma_.diagonal().clamp(min=0).sqrt()
        return self.coef_ - z * std, self.coef_ + z * std


def _z_value(level: float) -> float:
    level = check_float(level, "credible_level", 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    return float(torch.special.ndtri(torch.tensor((1.0 + level) / 2.0, dtype=torch.float64)))


class BayLime(Lime):
    r"""BayLIME: LIME with a Bayesian linear surrogate and an informative prior.

    Zhao et al. (UAI 2021) keep LIME's sampling and similarity kernel and fit
    the weighted samples with Bayesian linear regression; the explanation is
    the posterior mean, which combines a prior explanation ``prior_mean`` (with
    precision ``prior_precision``) with the ``n_samples`` perturbation
    samples (their eq. for μₙ, a precision-weighted average of μ₀ and the
    maximum-likelihood estimate).  The prior modes of the paper map to the
    arguments: *non-informative* (``prior_mean=0``, both precisions None,
    estimated from the samples: sklearn's ``BayesianRidge``), *partial
    informative* (``prior_mean`` and ``prior_precision`` given, the noise
    precision estimated), *full informative* (all given).  See
    :class:`BayesianLinearModel` for the exact model and estimates.

    The sampling, kernel and interpretable representation are Captum's
    ``Lime`` defaults (binary uniform samples, exponential cosine kernel of
    width 1) rather than the paper's use of the ``lime`` package, so that
    the class is a drop-in ``Lime``; credible intervals are Normal with
    plugged-in precisions.

    Parameters
    ----------
    forward_func : Callable
        The model.
    prior_mean : float or Tensor, optional
        μ₀ per interpretable feature. Default: 0.0
    prior_precision : float or Tensor, optional
        λ; None estimates it. Default: None
    noise_precision : float, optional
        α; None estimates it. Default: None
    similarity_func : Callable, optional
        Lime's similarity kernel. Default: None (Captum's exponential cosine
        kernel)
    perturb_func : Callable, optional
        Lime's sampler. Default: None (binary uniform samples; seeded by
        ``random_state``)
    random_state : int, optional
        Seed of the default sampler, reset at every :meth:`attribute` call;
        None uses torch's global generator exactly as Captum's ``Lime``.
        Default: None
    fit_intercept, max_iter, tol : optional
        Passed to :class:`BayesianLinearModel`.

    Raises
    ------
    TypeError
        A prior, ``similarity_func`` or ``perturb_func`` of the wrong type.
    ValueError
        A non-positive precision, a negative ``random_state``, ``max_iter < 1``
        or a negative ``tol``.

    References
    ----------
    .. [1] X. Zhao, W. Huang, X. Huang, V. Robu, D. Flynn, "BayLIME: Bayesian
       local interpretable model-agnostic explanations", UAI 2021.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_prior.attr import BayLime
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval()
    >>> x = torch.rand(1, 1, 4, 4)
    >>> mask = torch.arange(4).repeat_interleave(4).view(1, 1, 4, 4)  # 4 rows
    >>> bl = BayLime(model, random_state=0)
    >>> attr, (lo, hi) = bl.attribute(x, target=1, feature_mask=mask, n_samples=40,
    ...                               return_intervals=True)
    >>> attr.shape, bool((lo <= attr).all() and (attr <= hi).all())
    (torch.Size([1, 1, 4, 4]), True)
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        prior_mean: PriorType = 0.0,
        prior_precision: PriorType = None,
        noise_precision: Optional[float] = None,
        similarity_func: Optional[Callable] = None,
        perturb_func: Optional[Callable] = None,
        random_state: Optional[int] = None,
        fit_intercept: bool = True,
        max_iter: int = 300,
        tol: float = 1e-3,
    ) -> None:
        self.prior_mean = prior_mean
        self.prior_precision = prior_precision
        self.noise_precision = noise_precision
        self.random_state = random_state
        if random_state is not None:
            check_int(random_state, "random_state", 0)
        if noise_precision is not None:
            check_float(noise_precision, "noise_precision", low=0.0, low_inclusive=False)
        _check_prior_value(prior_mean, "prior_mean", False)
        _check_prior_value(prior_precision, "prior_precision", True)
        check_int(max_iter, "max_iter", 1)
        check_float(tol, "tol", low=0.0)
        for name, fn in (("similarity_func", similarity_func), ("perturb_func", perturb_func)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None, got {type(fn).__name__}")
        self._generator = torch.Generator()
        if perturb_func is None and random_state is not None:
            perturb_func = self._seeded_perturb
        model = BayesianLinearModel(
            prior_mean=prior_mean,
            prior_precision=prior_precision,
            noise_precision=noise_precision,
            fit_intercept=fit_intercept,
            max_iter=max_iter,
            tol=tol,
        )
        super().__init__(
            forward_func,
            interpretable_model=model,
            similarity_func=similarity_func,
            perturb_func=perturb_func,
        )

    def _seeded_perturb(self, original_inp: Any, **kwargs: Any) -> Tensor:
        """Captum's default binary sample, drawn from this object's generator."""
        n = int(kwargs["num_interp_features"])
        inp = original_inp if isinstance(original_inp, Tensor) else original_inp[0]
        probs = torch.full((1, n), 0.5)
        return torch.bernoulli(probs, generator=self._generator).to(inp.device).long()

    @log_usage()
    def attribute(  # type: ignore[override]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        feature_mask: Union[None, Tensor, Tuple[Tensor, ...]] = None,
        n_samples: int = 25,
        perturbations_per_eval: int = 1,
        return_input_shape: bool = True,
        show_progress: bool = False,
        return_intervals: bool = False,
        credible_level: float = 0.95,
        prior_mean: Union[None, float, Tensor, Tuple[Tensor, ...]] = None,
    ) -> Union[TensorOrTupleOfTensorsGeneric, Tuple[Any, Tuple[Any, Any]]]:
        r"""Posterior-mean attributions (and credible intervals).

        The arguments up to ``show_progress`` are those of Captum's
        ``Lime.attribute``: one surrogate is fitted per example.

        Parameters
        ----------
        return_intervals : bool, optional
            Also return the equal-tailed ``credible_level`` intervals ``(lower,
            upper)``, each shaped like the attributions. Default: False
        credible_level : float, optional
            In ``(0, 1)``. Default: 0.95
        prior_mean : float, Tensor or tuple, optional
            Overrides the constructor's prior mean for this call: a number, one
            value per interpretable feature (``p`` or ``N x p``), or a tensor
            (tuple) of the inputs' shape, averaged over each ``feature_mask``
            group (e.g. a prior explanation map). Default: None

        Returns
        -------
        attributions : Tensor or tuple of Tensor
            Those of Captum's ``Lime``: the posterior means.
        (lower, upper) : tuple
            Only with ``return_intervals=True``: the credible intervals,
            each shaped like the attributions.

        Raises
        ------
        ValueError
            ``n_samples < 2``, ``credible_level`` outside ``(0, 1)``, a
            ``prior_mean`` of the wrong shape, or a model that fails on the
            perturbed inputs.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
        >>> x = torch.rand(1, 4)
        >>> # a confident prior explanation pulls the posterior mean towards it
        >>> bl = BayLime(model, prior_precision=1e6, noise_precision=1.0, random_state=0)
        >>> attr = bl.attribute(x, target=0, n_samples=30, prior_mean=0.25)
        >>> torch.allclose(attr, torch.full_like(attr, 0.25), atol=1e-3)
        True
        """
        z = _z_value(credible_level)
        n_samples = check_int(n_samples, "n_samples", 2)
        perturbations_per_eval = check_int(perturbations_per_eval, "perturbations_per_eval", 1)
        # the checks every other method gets from the shared helpers
        formatted, is_tuple = as_tensor_tuple(inputs, "inputs")
        bsz = formatted[0].shape[0]
        if bsz == 0:  # an empty batch: empty attributions (and intervals)
            empty = _format_output(is_tuple, tuple(t.clone() for t in formatted))
            return (empty, (empty, empty)) if return_intervals else empty
        original = self.forward_func
        check_input_dtype(formatted[0], original)
        check_model_mode(original)
        rng = expected_input_range(original)
        if rng is not None:
            check_value_range(formatted[0], rng[0], rng[1], "inputs", "the model")
        model: BayesianLinearModel = self.interpretable_model  # type: ignore[assignment]
        first = [True]

        def checked(*args: Any) -> Any:
            """Captum's Lime calls the model itself: check what it returns."""
            try:
                out = original(*args)
            except RuntimeError as exc:
                if not first[0]:
                    raise
                raise ValueError(
                    f"the model failed on the first perturbed inputs (shape "
                    f"{tuple(formatted[0].shape[1:])} per example): "
                    f"{str(exc).splitlines()[0]}. Check that the inputs have the shape "
                    "the model expects (e.g. N x C x H x W with the channel dimension)"
                ) from exc
            if not isinstance(out, Tensor):
                check_model_output(out, 0, "the model (forward_func)")
            if out.dim() > 0:
                if first[0] and out.dim() == 2:
                    check_target(target, bsz, out.shape[1])
                first[0] = False
                example = torch.full((out.shape[0],), min(len(model.fits_), bsz - 1))
                check_finite_output(out, original, example)
            return out

        checked.__wrapped__ = original  # type: ignore[attr-defined]
        model.reset_history()
        check_feature_mask(feature_mask, tuple(formatted))
        mask_tuple, n_interp = construct_feature_mask(feature_mask, tuple(formatted))
        if prior_mean is not None:
            model._pending_prior_means = self._per_example_prior(
                prior_mean, formatted, mask_tuple, n_interp, bsz
            )
        if self.random_state is not None:
            self._generator.manual_seed(int(self.random_state))
        self.forward_func = checked
        try:
            attrs = super().attribute(
                inputs,
                baselines=baselines,
                target=target,
                additional_forward_args=additional_forward_args,
                feature_mask=feature_mask,
                n_samples=n_samples,
                perturbations_per_eval=perturbations_per_eval,
                return_input_shape=return_input_shape,
                show_progress=show_progress,
            )
        finally:
            model._pending_prior_means = []
            self.forward_func = original
        if not return_intervals:
            return attrs
        lowers, uppers = [], []
        single_fit = len(model.fits_) == 1 and bsz > 1
        for i, (coef, std) in enumerate(model.fits_):
            lo, hi = (coef - z * std).to(torch.float32), (coef + z * std).to(torch.float32)
            if not return_input_shape:
                lowers.append(lo.unsqueeze(0))
                uppers.append(hi.unsqueeze(0))
                continue
            if single_fit:
                inp_i, mask_i = tuple(formatted), mask_tuple
            else:
                inp_i = tuple(t[i : i + 1] for t in formatted)
                mask_i = tuple(m[i : i + 1] if m.shape[0] > 1 else m for m in mask_tuple)
            conv = [
                self._convert_output_shape(inp_i, mask_i, v, n_interp, True, leading_dim_one=single_fit)
                for v in (lo, hi)
            ]
            lowers.append(conv[0])
            uppers.append(conv[1])
        if not return_input_shape:
            return attrs, (torch.cat(lowers), torch.cat(uppers))
        lower = tuple(torch.cat([lw[j] for lw in lowers]) for j in range(len(formatted)))
        upper = tuple(torch.cat([up[j] for up in uppers]) for j in range(len(formatted)))
        if not is_tuple:
            return attrs, (lower[0], upper[0])
        return attrs, (lower, upper)

    @staticmethod
    def _per_example_prior(
        prior_mean: Any,
        formatted: Tuple[Tensor, ...],
        mask_tuple: Tuple[Tensor, ...],
        n_interp: int,
        bsz: int,
    ) -> List[Optional[Tensor]]:
        """One prior-mean vector (``n_interp``) per example, in fit order."""
        if isinstance(prior_mean, numbers.Real) and not isinstance(prior_mean, bool):
            return [torch.full((n_interp,), float(prior_mean), dtype=torch.float64)] * bsz
        items = prior_mean if isinstance(prior_mean, tuple) else (prior_mean,)
        if not all(isinstance(t, Tensor) for t in items):
            raise TypeError("prior_mean must be a number, a Tensor or a tuple of Tensors")
        for t in items:
            check_finite(t, "prior_mean")
        first = items[0]
        if len(items) == 1 and first.dim() <= 2 and first.shape[-1] == n_interp and (
            first.dim() == 1 or first.shape[0] in (1, bsz)
        ) and tuple(first.shape) != tuple(formatted[0].shape):
            rows = first.reshape(-1, n_interp).to(torch.float64)
            return [rows[i if rows.shape[0] > 1 else 0] for i in range(bsz)]
        if len(items) != len(formatted) or any(
            tuple(t.shape) != tuple(x.shape) and tuple(t.shape) != tuple(x.shape[1:])
            for t, x in zip(items, formatted, strict=True)
        ):
            raise ValueError(
                f"prior_mean must be a number, {n_interp} values per interpretable "
                "feature (or N x that), or tensors of the inputs' shape"
            )
        out: List[Optional[Tensor]] = []
        for i in range(bsz):
            total = torch.zeros(n_interp, dtype=torch.float64)
            count = torch.zeros(n_interp, dtype=torch.float64)
            for t, x, m in zip(items, formatted, mask_tuple, strict=True):
                v = t[i] if t.dim() == x.dim() else t
                mi = (m[i] if m.shape[0] > 1 else m[0]).expand_as(v).reshape(-1).long().cpu()
                total.index_add_(0, mi, v.reshape(-1).double().cpu())
                count.index_add_(0, mi, torch.ones_like(mi, dtype=torch.float64))
            out.append(total / count.clamp(min=1))
        return out


__all__ = ["BayLime", "BayesianLinearModel"]
