"""Random draws from one ``torch.Generator`` or from one generator per example.

The stochastic attribution methods of this project take a ``generator``
argument that may be

- ``None``: torch's global RNG;
- one ``torch.Generator``: every draw of the call comes from it, in the
  order the method has always used (results unchanged);
- a sequence of ``N`` generators, one per example of the batch: each draw
  site takes example ``j``'s block of random numbers from ``generator[j]``
  only, so example ``j``'s draws (and, for methods whose examples do not
  interact, its attribution) are those of a one-example call
  ``attribute(inputs[j:j+1], generator=generator[j])``, whatever the batch.

This is what lets :func:`captum_prior.runner.attribute_dataset` make example
``i``'s draws depend only on ``(seed, i)`` while still calling the method
once per batch.

The draw functions below take the full ``shape`` of the draw, whose
``example_dim`` has one entry per example. With one generator (or ``None``)
they make the single call ``torch.<fn>(shape, generator=generator)``; with a
sequence they make ``torch.<fn>(shape_1, generator=generator[j])`` per
example, ``shape_1`` being ``shape`` with ``example_dim`` set to 1, and
concatenate along ``example_dim``.  Because each example's block is drawn
from its own generator in the same order as a one-example call would draw
it, the successive draw sites of a method stay consistent per example.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "GeneratorArg",
    "Generators",
    "RandomState",
    "check_generator",
    "check_random_state",
    "seed_from",
    "torch_generator",
    "draw",
    "rand",
    "randint",
    "randn",
]

#: A method's ``generator`` argument: none, one, or one per example.
GeneratorArg = Union[None, torch.Generator, Sequence[torch.Generator]]

#: An estimator's ``random_state``: ``None`` (fresh entropy), an int seed, or a
#: generator of the kind the estimator draws from.
RandomState = Union[None, int, np.integer, np.random.Generator, torch.Generator]

#: What :func:`check_generator` returns: none, one, or a tuple of one per example.
Generators = Union[None, torch.Generator, Tuple[torch.Generator, ...]]


def check_generator(generator: object, n_examples: int, name: str = "generator") -> Generators:
    """Validate a ``generator`` argument for a batch of ``n_examples``.

    Returns ``None``, the generator, or a tuple of ``n_examples`` generators.

    Raises
    ------
    TypeError
        neither ``None``, a ``torch.Generator`` nor a list/tuple of them.
    ValueError
        a sequence whose length is not ``n_examples``.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if not isinstance(generator, (list, tuple)):
        raise TypeError(
            f"{name} must be None, a torch.Generator, or a list of torch.Generators "
            f"(one per example), got {type(generator).__name__}"
        )
    for j, g in enumerate(generator):
        if not isinstance(g, torch.Generator):
            raise TypeError(
                f"{name}[{j}] is a {type(g).__name__}; a list passed as {name} must hold "
                "one torch.Generator per example, e.g. "
                "[torch.Generator().manual_seed(s) for s in seeds]"
            )
    if len(generator) != n_examples:
        raise ValueError(
            f"{name} has {len(generator)} generators but the inputs have {n_examples} "
            f"examples; pass one torch.Generator per example, or a single torch.Generator "
            "for the whole batch"
        )
    return tuple(generator)


def draw(
    sampler: Callable[..., Tensor],
    generator: Generators,
    shape: Sequence[int],
    example_dim: int = 0,
    device: Optional[Union[str, torch.device]] = None,
) -> Tensor:
    """Draw ``sampler(shape, generator=..., device=...)`` from one generator
    or per example (see the module docstring).

    Parameters
    ----------
    sampler : Callable
        ``sampler(size, generator=g, device=d)``, e.g. ``torch.rand``.
    generator : None, torch.Generator or tuple
        as returned by :func:`check_generator`.
    shape : sequence of int
        the full shape of the draw.
    example_dim : int, optional
        the dimension of ``shape`` that indexes examples. Default: 0
    device : str or torch.device, optional
        where the draw is made when ``generator`` is ``None``; otherwise the
        generator's own device (per-example blocks are gathered on the first
        generator's device). Default: CPU

    Returns
    -------
    Tensor
        of shape ``shape``, on the generator's device.
    """
    shape = tuple(int(s) for s in shape)
    if not isinstance(generator, tuple):
        dev = generator.device if generator is not None else torch.device(device or "cpu")
        return sampler(shape, generator=generator, device=dev)
    dim = example_dim % len(shape)
    if len(generator) != shape[dim]:
        raise ValueError(
            f"{len(generator)} generators for {shape[dim]} examples; pass one per example"
        )
    if not generator:  # no example: an empty draw consumes nothing
        return sampler(shape, device=torch.device(device or "cpu"))
    one = shape[:dim] + (1,) + shape[dim + 1 :]
    out_dev = generator[0].device
    parts = [sampler(one, generator=g, device=g.device).to(out_dev) for g in generator]
    return torch.cat(parts, dim=dim)


def rand(generator: Generators, shape: Sequence[int], example_dim: int = 0,
         device: Optional[Union[str, torch.device]] = None) -> Tensor:
    """``torch.rand(shape)`` from one generator or per example (:func:`draw`)."""
    return draw(torch.rand, generator, shape, example_dim, device)


def randn(generator: Generators, shape: Sequence[int], example_dim: int = 0,
          device: Optional[Union[str, torch.device]] = None) -> Tensor:
    """``torch.randn(shape)`` from one generator or per example (:func:`draw`)."""
    return draw(torch.randn, generator, shape, example_dim, device)


def randint(high: int, generator: Generators, shape: Sequence[int], example_dim: int = 0,
            device: Optional[Union[str, torch.device]] = None) -> Tensor:
    """``torch.randint(high, shape)`` from one generator or per example (:func:`draw`)."""

    def sampler(size: Tuple[int, ...], **kw: object) -> Tensor:
        return torch.randint(int(high), size, **kw)  # type: ignore[call-overload]

    return draw(sampler, generator, shape, example_dim, device)


# ------------------------------------------------------------ random_state
def _check_seed_type(random_state: object, name: str, allowed: str) -> None:
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise TypeError(f"{name} must be None, an int or {allowed}, got {type(random_state).__name__}")


def check_random_state(random_state: RandomState, name: str = "random_state") -> np.random.Generator:
    """Turn an estimator's ``random_state`` into a ``numpy.random.Generator``.

    The one NumPy seed converter of the package, in scikit-learn's sense:
    a ``numpy.random.Generator`` is returned as it is (draws advance it),
    ``None`` gives a generator seeded from fresh OS entropy, and an int gives
    ``numpy.random.default_rng(seed)``, so the same int always gives the same
    draws.

    Raises
    ------
    TypeError
        ``random_state`` is of another type (``bool`` included).
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None:
        return np.random.default_rng()
    _check_seed_type(random_state, name, "a numpy.random.Generator")
    return np.random.default_rng(int(random_state))


def torch_generator(random_state: RandomState, name: str = "random_state") -> torch.Generator:
    """Turn an estimator's ``random_state`` into a CPU ``torch.Generator``.

    The one torch seed converter of the package: a ``torch.Generator`` is
    returned as it is, an int gives ``torch.Generator().manual_seed(seed)``,
    and ``None`` seeds a new generator from torch's global RNG (so
    ``torch.manual_seed`` makes it reproducible).

    Raises
    ------
    TypeError
        ``random_state`` is of another type (``bool`` included).
    """
    if isinstance(random_state, torch.Generator):
        return random_state
    if random_state is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    else:
        _check_seed_type(random_state, name, "a torch.Generator")
        seed = int(random_state)
    return torch.Generator().manual_seed(seed)


def seed_from(random_state: RandomState, name: str = "random_state") -> int:
    """An int seed from ``random_state``: the int itself, or one drawn from the generator.

    ``None`` draws the seed from torch's global RNG.  Use it where several
    independent streams are derived from one user seed.
    """
    if isinstance(random_state, torch.Generator):
        return int(torch.randint(0, 2**62, (1,), generator=random_state).item())
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**62))
    if random_state is None:
        return int(torch.randint(0, 2**62, (1,)).item())
    _check_seed_type(random_state, name, "a generator")
    return int(random_state)
