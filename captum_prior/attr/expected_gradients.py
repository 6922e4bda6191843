#!/usr/bin/env python3
"""Expected Gradients (Erion et al., Nature Machine Intelligence 2021)."""

from __future__ import annotations

from typing import (
    Any,
    Callable,
    Dict,
    Literal,
    NamedTuple,
    Optional,
    Tuple,
    Union,
    overload,
)

import torch
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor

from captum_prior import _random
from captum_prior._batching import RowRunner, forward_rows, gradient_rows
from captum_prior._compat import (
    TargetType,
    TensorOrTupleOfTensorsGeneric,
    _format_output,
)
from captum_prior._validation import (
    as_tensor_tuple,
    check_float,
    check_int,
    check_optional_int,
    check_reference_set,
    resolve_callable_baselines,
)

BaselinesType = Union[
    Tensor, Tuple[Tensor, ...], Callable[..., Union[Tensor, Tuple[Tensor, ...]]]
]


class ReferenceShift(NamedTuple):
    """How a subclass of :class:`ExpectedGradients` moves the path of every draw.

    Returned by :meth:`ExpectedGradients._references_for`, the one extension
    point of the expected-gradients family (``None`` there: plain EG).

    Attributes
    ----------
    shift : tuple of Tensor
        One tensor per input tensor, shaped like that input
        (``n_examples x ...``): the shift :math:`p` of each example, subtracted
        from every reference drawn for it (the path starts at :math:`x' - p`).
    clamp : tuple of (Tensor, Tensor) or None
        ``(low, high)``, broadcastable to every input tensor: each shifted
        point is clamped into ``[low, high]``. ``None``: no clamp.
    shift_inputs : bool
        Also subtract :math:`p` from the end point of the path (the input),
        i.e. translate the whole straight path by :math:`-p`, the multiplier
        staying :math:`x - x'`. ``False``: the path ends at the input and the
        multiplier is :math:`x - x' + p`.
    """

    shift: Tuple[Tensor, ...]
    clamp: Optional[Tuple[Tensor, Tensor]] = None
    shift_inputs: bool = False


class _Draws(NamedTuple):
    """Every random number of one call, made before any chunking.

    Rows are example-major: the ``n_samples`` draws of example 0, then of
    example 1, ... (``rows = n_examples * n_samples``)."""

    example: Tensor  # (rows,) the example of each row
    ref_idx: Tensor  # (rows,) the reference row drawn
    alpha: Tensor  # (rows,) the position on the path, U(0, 1)
    noise: Tuple[Optional[Tensor], ...]  # per input: (rows, ...) Gaussian noise, or None


def _draw(
    generator: _random.Generators,
    x: Tuple[Tensor, ...],
    n_refs: int,
    n_samples: int,
    stdevs: Tuple[float, ...],
) -> _Draws:
    """The draws of a call: each made as ``(n_examples, n_samples, ...)``, in
    one call for one generator or one block per example for a list of
    per-example generators (:mod:`captum_prior._random`), in the order
    references, :math:`\\alpha`, noise."""
    n, device = x[0].shape[0], x[0].device
    rows = n * n_samples
    ref_idx = _random.randint(n_refs, generator, (n, n_samples)).reshape(rows).to(device)
    alpha = _random.rand(generator, (n, n_samples)).reshape(rows).to(device)
    noise = tuple(
        None
        if s == 0.0
        else (
            _random.randn(generator, (n, n_samples) + tuple(xi.shape[1:])).reshape(
                (rows,) + tuple(xi.shape[1:])
            )
            * s
        ).to(device=device, dtype=xi.dtype)
        for s, xi in zip(stdevs, x)
    )
    example = torch.arange(n, device=device).repeat_interleave(n_samples)
    return _Draws(example, ref_idx, alpha, noise)


class _Paths:
    """The straight path of every row: start and end points built on demand
    for a chunk of rows (pure functions of the rows, as
    :mod:`captum_prior._batching` requires)."""

    def __init__(
        self,
        x: Tuple[Tensor, ...],
        refs: Tuple[Tensor, ...],
        draws: _Draws,
        shift: Optional[ReferenceShift],
        n_samples: int,
    ) -> None:
        self.x, self.refs, self.draws, self.shift = x, refs, draws, shift
        self.n_samples = n_samples

    def _shifted(self, points: Tuple[Tensor, ...], example: Tensor) -> Tuple[Tensor, ...]:
        assert self.shift is not None
        points = tuple(pt - p[example] for pt, p in zip(points, self.shift.shift))
        if self.shift.clamp is not None:
            lo, hi = self.shift.clamp
            points = tuple(torch.maximum(torch.minimum(pt, hi), lo) for pt in points)
        return points

    def starts(self, sl: slice) -> Tuple[Tensor, ...]:
        """Start points of the rows ``sl``: the drawn references, minus the
        shift (each ``(rows, ...)``)."""
        starts = tuple(r[self.draws.ref_idx[sl]] for r in self.refs)
        if self.shift is not None:
            starts = self._shifted(starts, self.draws.example[sl])
        return starts

    def ends_at(self, rows: Tensor) -> Tuple[Tensor, ...]:
        """End points of the rows ``rows`` (an index tensor): the input plus
        the row's noise, minus the shift if it applies to the inputs."""
        example = self.draws.example[rows]
        ends = tuple(
            xi[example] if nz is None else xi[example] + nz[rows]
            for xi, nz in zip(self.x, self.draws.noise)
        )
        if self.shift is not None and self.shift.shift_inputs:
            ends = self._shifted(ends, example)
        return ends

    def ends(self, sl: slice) -> Tuple[Tensor, ...]:
        return self.ends_at(torch.arange(sl.start, sl.stop, device=self.x[0].device))

    def points(self, sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
        """The rows ``sl`` on their paths, ``start + alpha * (end - start)``,
        and each row's example (the row builder of :func:`gradient_rows`)."""
        rows = []
        for s, e in zip(self.starts(sl), self.ends(sl)):
            a = self.draws.alpha[sl].view((-1,) + (1,) * (e.dim() - 1)).to(e.dtype)
            rows.append(s + a * (e - s))
        return tuple(rows), self.draws.example[sl]


def _integrate(
    runner: RowRunner,
    paths: _Paths,
    internal_batch_size: Optional[int],
    multiply_by_inputs: bool,
    row_sums: Optional[Tensor] = None,
    create_graph: bool = False,
) -> Tuple[Tensor, ...]:
    """The Monte Carlo estimate: for each example, the mean over its rows of
    ``grad * (end - start)`` (or ``grad`` alone without
    ``multiply_by_inputs``), one forward/backward chunk at a time. If
    ``row_sums`` (``(rows,)``) is given, each row's ``sum(grad * (end -
    start))`` is written into it (for the convergence delta)."""
    x = paths.x
    attrs = [torch.zeros_like(xi) for xi in x]  # per input: (n_examples, ...)
    n_rows = paths.draws.example.shape[0]
    for sl, _rows, idx, grads, _scores in gradient_rows(
        runner, paths.points, n_rows, internal_batch_size, create_graph=create_graph
    ):
        if multiply_by_inputs:
            contrib = [g * (e - s) for g, s, e in zip(grads, paths.starts(sl), paths.ends(sl))]
        else:
            contrib = list(grads)
        if row_sums is not None:
            row_sums[sl] = sum(
                (g * (e - s)).detach().flatten(1).sum(1)
                for g, s, e in zip(grads, paths.starts(sl), paths.ends(sl))
            )
        if create_graph:  # out of place, so the graph survives
            attrs = [a.index_add(0, idx, c) for a, c in zip(attrs, contrib)]
        else:
            for a, c in zip(attrs, contrib):
                a.index_add_(0, idx, c.detach())
    return tuple(a / paths.n_samples for a in attrs)


def _delta(
    runner: RowRunner,
    paths: _Paths,
    row_sums: Tensor,
    internal_batch_size: Optional[int],
) -> Tensor:
    """Each row's completeness gap along the path it took:
    ``row_sums - (f(end) - f(start))``, shape ``(rows,)``."""
    draws, n_samples = paths.draws, paths.n_samples
    n_rows = draws.example.shape[0]
    n = paths.x[0].shape[0]

    def start_rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
        return paths.starts(sl), draws.example[sl]

    def end_rows(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
        return paths.ends(sl), draws.example[sl]

    f_start = forward_rows(runner, start_rows, n_rows, internal_batch_size)  # (rows,)
    if any(nz is not None for nz in draws.noise):
        f_end = forward_rows(runner, end_rows, n_rows, internal_batch_size)
    else:  # the end point is the same for all draws of an example
        first = torch.arange(n, device=paths.x[0].device) * n_samples

        def end_once(sl: slice) -> Tuple[Tuple[Tensor, ...], Tensor]:
            return paths.ends_at(first[sl]), draws.example[first[sl]]

        f_end = forward_rows(runner, end_once, n, internal_batch_size).repeat_interleave(n_samples)
    return row_sums - (f_end - f_start)


class ExpectedGradients(GradientAttribution):
    r"""Expected Gradients: integrated gradients averaged over a reference set.

    For an input :math:`x`, a reference set :math:`D` and a score :math:`f`
    (the ``target`` output), Erion et al. (2021, eq. 3) define

    .. math::
        \phi_i(x) = \mathbb{E}_{x' \sim D,\ \alpha \sim U(0, 1)}
        \big[(x_i - x'_i)\ \partial_i f(x' + \alpha (x - x'))\big],

    estimated here by Monte Carlo with ``n_samples`` draws per example. Each
    draw takes one reference row uniformly with replacement and one
    :math:`\alpha`.

    Parameters
    ----------
    forward_func : callable
        The model, or any function returning ``N x C`` scores (or ``N``
        scores with ``target=None``).
    multiply_by_inputs : bool, default=True
        Multiply the expected gradient by :math:`(x - x')` ("global"
        attribution, the EG of the paper) or not ("local" attribution: the
        expected plain gradient; Ancona et al., 2018).

    Notes
    -----
    This is the estimator of Captum's ``GradientShap`` with ``stdevs=0.0``,
    and ``attribute`` takes ``GradientShap.attribute``'s arguments, so code
    written for it runs unchanged with this class swapped in. It departs
    from ``GradientShap`` where that helps reproducibility and memory:

    - every draw comes from a ``torch.Generator`` (``GradientShap`` uses
      NumPy's global generator), and all draws are made before chunking, so
      the result does not depend on ``internal_batch_size``;
    - ``generator`` may be a list of one generator per example: example
      ``j``'s draws then come from ``generator[j]`` only, so its attribution
      does not depend on the rest of the batch (this is how
      :func:`~captum_prior.runner.attribute_dataset` seeds each example while
      calling once per batch);
    - for tuple inputs, one reference row is drawn *jointly* for all input
      tensors (``GradientShap`` draws each tensor's reference independently,
      which is not the joint expectation of eq. 3);
    - memory is bounded by ``internal_batch_size`` rows per forward/backward
      chunk, so it stays flat as ``n_samples`` grows.

    Subclasses change the path of every draw through one hook,
    :meth:`_references_for`, which returns a :class:`ReferenceShift` (see
    :class:`~captum_prior.attr.DeepPriorExpectedGradients`).

    References
    ----------
    .. [1] G. Erion, J. D. Janizek, P. Sturmfels, S. M. Lundberg, S.-I. Lee,
       "Improving performance of deep learning models with axiomatic
       attribution priors and expected gradients", Nature Machine
       Intelligence 3, 620-631 (2021).
    .. [2] M. Ancona, E. Ceolini, C. Oztireli, M. Gross, "Towards better
       understanding of gradient-based attribution methods for deep neural
       networks", ICLR 2018.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_prior.attr import ExpectedGradients
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    >>> images, references = torch.rand(2, 1, 4, 4), torch.rand(10, 1, 4, 4)
    >>> eg = ExpectedGradients(model)
    >>> attr, delta = eg.attribute(images, references, n_samples=20, target=1,
    ...                            return_convergence_delta=True,
    ...                            generator=torch.Generator().manual_seed(0))
    >>> attr.shape, delta.shape
    (torch.Size([2, 1, 4, 4]), torch.Size([40]))
    >>> bool(delta.abs().max() < 1e-4)  # a linear model: EG is complete
    True
    """

    def __init__(
        self, forward_func: Callable[..., Tensor], multiply_by_inputs: bool = True
    ) -> None:
        GradientAttribution.__init__(self, forward_func)
        self._multiply_by_inputs = bool(multiply_by_inputs)

    def _per_example_generators(self, attribute_kwargs: Dict[str, Any]) -> bool:
        """Whether, with these ``attribute`` keyword arguments and one
        generator per example, example ``j``'s result is that of its own
        one-example call (up to float rounding), so that
        :func:`captum_prior.runner.attribute_dataset` may call once per batch.

        Always true here: example ``j``'s rows depend only on ``inputs[j]``,
        the reference set and ``generator[j]``."""
        return True

    def _references_for(
        self, inputs: TensorOrTupleOfTensorsGeneric, target: TargetType,
        references: Tuple[Tensor, ...],
    ) -> Optional[ReferenceShift]:
        """The extension point of the expected-gradients family.

        Called once per ``attribute`` call, after validation and before any
        draw, with ``inputs`` and ``target`` as the user passed them and the
        validated reference set as a tuple of tensors (``n_references x
        ...``, one per input tensor). A subclass returns a
        :class:`ReferenceShift` to move the path of every draw; ``None``
        (here) keeps plain expected gradients."""
        return None

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselinesType,
        n_samples: int = 50,
        stdevs: Union[float, Tuple[float, ...]] = 0.0,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        *,
        return_convergence_delta: Literal[True],
        internal_batch_size: Optional[int] = None,
        generator: _random.GeneratorArg = None,
        delta_per_example: bool = False,
    ) -> Tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselinesType,
        n_samples: int = 50,
        stdevs: Union[float, Tuple[float, ...]] = 0.0,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        return_convergence_delta: Literal[False] = False,
        internal_batch_size: Optional[int] = None,
        generator: _random.GeneratorArg = None,
        delta_per_example: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @log_usage()
    def attribute(  # type: ignore[misc]
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselinesType,
        n_samples: int = 50,
        stdevs: Union[float, Tuple[float, ...]] = 0.0,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        return_convergence_delta: bool = False,
        internal_batch_size: Optional[int] = None,
        generator: _random.GeneratorArg = None,
        delta_per_example: bool = False,
    ) -> Union[TensorOrTupleOfTensorsGeneric, Tuple[TensorOrTupleOfTensorsGeneric, Tensor]]:
        r"""Attribute the ``target`` score of each example by expected gradients.

        The first seven arguments are those of Captum's
        ``GradientShap.attribute``, with the same names, order and meaning;
        the arguments after them are this class's own.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            The examples to explain; the first dimension indexes examples.
        baselines : Tensor, tuple of Tensor, or callable
            The reference set. Its first dimension indexes references (any
            number ``R >= 1``); the other dimensions match one input example.
            For tuple inputs, a tuple with one tensor per input, all with the
            same ``R``; a row is drawn jointly. As in Captum, a callable is
            called with no argument, or with ``inputs`` if it takes one, and
            must return such a reference set.
        n_samples : int, default=50
            Draws (reference, :math:`\alpha`, and noise if ``stdevs > 0``)
            per example (``GradientShap``'s default is 5).
        stdevs : float or tuple of float, default=0.0
            Standard deviation of the Gaussian noise added to each input of
            each draw before the path is taken (``GradientShap``'s SmoothGrad
            step; one value per input tensor for tuple inputs). ``0.0`` is
            Erion et al.'s estimator.
        target : int, tuple, Tensor or list, optional
            Output indices for which gradients are computed, in any of
            Captum's forms: an int, a one-element tensor, a list of ints or a
            1-D tensor (one per example) for ``N x C`` outputs; a tuple
            ``(c, h, w, ...)`` (all examples) or a list of tuples (one per
            example) with one index per output dimension after the batch, for
            outputs of any rank. ``None``: the model returns one score per
            example.
        additional_forward_args : Any, optional
            Extra arguments passed to ``forward_func`` after the inputs;
            tensors whose first dimension equals the number of examples are
            matched to each example's rows, anything else is passed as is.
        return_convergence_delta : bool, default=False
            Also return the completeness gap of every draw, as
            ``GradientShap`` does.
        internal_batch_size : int, optional
            The most rows per forward/backward pass. ``None``: chosen from
            the model's activation sizes (:mod:`captum_prior._chunking`).
        generator : torch.Generator or list of torch.Generator, optional
            Source of every random draw. One generator: all draws of the call
            come from it. A list (or tuple) of one generator per example:
            example ``j``'s draws (references, :math:`\alpha`, noise) come
            from ``generator[j]`` only, exactly as in the one-example call
            ``attribute(inputs[j:j+1], ..., generator=generator[j])``.
            ``None``: torch's global generator.
        delta_per_example : bool, default=False
            Return the delta averaged over each example's draws, shape
            ``(n_examples,)``, instead of one value per draw.

        Returns
        -------
        attributions : Tensor or tuple of Tensor
            Same shape as ``inputs``.
        delta : Tensor
            Only with ``return_convergence_delta=True``. As ``GradientShap``'s,
            shape ``(n_examples * n_samples,)``, example-major (the draws of
            example 0, then of example 1, ...): for draw ``k`` of example
            ``e``, :math:`\sum_i (\tilde x_i - x'_i) \partial_i f(x' +
            \alpha(\tilde x - x')) - (f(\tilde x) - f(x'))` with :math:`\tilde
            x` the (noisy) input. Its mean over an example's draws
            (``delta_per_example=True``, shape ``(n_examples,)``) is
            :math:`\sum\phi - (\overline{f(\tilde x)} - \overline{f(x')})`.

        Raises
        ------
        TypeError
            ``inputs`` or ``baselines`` are not tensors, or ``generator`` is
            neither a generator nor a list of them.
        ValueError
            The reference set does not match the inputs, ``n_samples < 1``,
            a negative ``stdevs``, a generator list of the wrong length, or a
            ``target`` that does not fit the model's output.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> from captum_prior.attr import ExpectedGradients
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
        >>> images, references = torch.rand(3, 1, 4, 4), torch.rand(10, 1, 4, 4)
        >>> gens = [torch.Generator().manual_seed(s) for s in range(3)]
        >>> attr = ExpectedGradients(model).attribute(
        ...     images, references, n_samples=8, target=[0, 1, 2], generator=gens)
        >>> one = ExpectedGradients(model).attribute(
        ...     images[1:2], references, n_samples=8, target=[1],
        ...     generator=torch.Generator().manual_seed(1))
        >>> torch.allclose(attr[1:2], one)  # example 1 as in its own call
        True
        """
        x, is_tuple = as_tensor_tuple(inputs, "inputs")
        internal_batch_size = check_optional_int(internal_batch_size, "internal_batch_size")
        paths = self._paths(x, inputs, baselines, target, n_samples, stdevs, generator)
        runner = RowRunner(self.forward_func, x[0].shape[0], target, additional_forward_args)
        row_sums = None
        if return_convergence_delta:  # (rows,): each row's sum of grad * (end - start)
            row_sums = torch.zeros(paths.draws.example.shape[0], device=x[0].device, dtype=x[0].dtype)
        attrs = _integrate(runner, paths, internal_batch_size, self.multiplies_by_inputs, row_sums)
        out = _format_output(is_tuple, attrs)
        if row_sums is None:
            return out
        delta = _delta(runner, paths, row_sums, internal_batch_size)  # (rows,)
        if delta_per_example:
            delta = delta.view(x[0].shape[0], paths.n_samples).mean(1)  # (n_examples,)
        return out, delta

    def _paths(
        self,
        x: Tuple[Tensor, ...],
        inputs: Any,
        baselines: Any,
        target: TargetType,
        n_samples: int,
        stdevs: Any,
        generator: Any,
    ) -> _Paths:
        """Validate the arguments, ask the hook for the shift, and make every draw."""
        generator = _random.check_generator(generator, x[0].shape[0])
        refs = check_reference_set(resolve_callable_baselines(baselines, inputs), x)
        n_samples = check_int(n_samples, "n_samples", 1)
        sd = _check_stdevs(stdevs, len(x))
        shift = self._references_for(inputs, target, refs)
        draws = _draw(generator, x, refs[0].shape[0], n_samples, sd)
        return _Paths(x, refs, draws, shift, n_samples)

    def _attributions_with_graph(
        self,
        inputs: Tensor,
        baselines: Tensor,
        target: TargetType,
        n_samples: int,
        internal_batch_size: Optional[int],
        generator: _random.GeneratorArg,
    ) -> Tensor:
        """The attributions of :meth:`attribute`, differentiable in the
        model's parameters (``create_graph=True``), for training with
        attribution priors (:mod:`captum_prior.training`)."""
        x, _ = as_tensor_tuple(inputs, "inputs")
        internal_batch_size = check_optional_int(internal_batch_size, "internal_batch_size")
        paths = self._paths(x, inputs, baselines, target, n_samples, 0.0, generator)
        runner = RowRunner(self.forward_func, x[0].shape[0], target, None)
        attrs = _integrate(
            runner, paths, internal_batch_size, self.multiplies_by_inputs, create_graph=True
        )
        return attrs[0]

    def has_convergence_delta(self) -> bool:
        """True: :meth:`attribute` can return the convergence delta."""
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        """Whether the expected gradient is multiplied by :math:`(x - x')`."""
        return self._multiply_by_inputs

    def attribute_future(self) -> Callable:
        """Not implemented (Captum's asynchronous API).

        Raises
        ------
        NotImplementedError
            Always.
        """
        raise NotImplementedError("attribute_future is not implemented for ExpectedGradients")


def _check_stdevs(stdevs: Any, n_inputs: int) -> Tuple[float, ...]:
    """``stdevs`` as one non-negative float per input tensor (GradientShap's
    convention: a float for all inputs, or a tuple with one per input)."""
    items = stdevs if isinstance(stdevs, tuple) else (stdevs,) * n_inputs
    if len(items) != n_inputs:
        raise ValueError(
            f"stdevs has {len(items)} values but inputs has {n_inputs} tensors; pass "
            "one float, or a tuple with one standard deviation per input tensor"
        )
    return tuple(
        check_float(s, f"stdevs[{i}]" if isinstance(stdevs, tuple) else "stdevs", 0.0)
        for i, s in enumerate(items)
    )
