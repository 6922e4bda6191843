"""Reference outputs of the expected-gradients family, for a bit-identity test.

Run from the repository root at the commit whose outputs are the reference::

    PYTHONPATH=$PWD python tests/data/make_eg_reference.py

It writes ``tests/data/eg_reference.npz``: a small CNN's weights, the inputs
and references, the maps and clamp ranges of an :class:`MGMPrior` and a
:class:`BGMMPrior`, and the attributions (and deltas) of ExpectedGradients,
DeepPriorExpectedGradients (both variants, one generator and one generator
per example, with and without noise) and ``training_attributions``.
``tests/test_eg_reference.py`` recomputes every case with :func:`compute_cases`
and asserts equality bit for bit. The DeepPrior-EG cases use a
:class:`FrozenPrior` that replays the recorded maps, so the test checks the
attribution code, not the priors' fits (which have their own tests).

The file was generated at commit 110ed58 (before the EG family's refactor).
"""

from __future__ import annotations

import inspect
import os
import sys
from typing import Any, Dict, Optional

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "eg_reference.npz")


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 3),
    ).eval()


def images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 16, 16)
    x[:, :, 4:12, 5:11] = 0.3 + 0.7 * torch.rand(n, 1, 8, 6, generator=g)
    return x


class FrozenPrior:
    """Replays a recorded prior map ``p`` and clamp range (a deep-feature
    prior's interface: ``__call__(inputs, target, references)`` and
    ``baseline_range(references)``)."""

    def __init__(self, p: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> None:
        self.p, self.lo, self.hi = p, lo, hi

    def __call__(self, inputs: Any, target: Any = None, references: Any = None) -> torch.Tensor:
        return self.p.clone()

    def baseline_range(self, references: Any = None) -> Any:
        return self.lo.clone(), self.hi.clone()


def _variant_kw(variant: str) -> Dict[str, str]:
    from captum_prior.attr import DeepPriorExpectedGradients

    params = inspect.signature(DeepPriorExpectedGradients.__init__).parameters
    return {"variant": variant} if "variant" in params else {"path": variant}


def _gens(n: int, seed: int) -> list:
    return [torch.Generator().manual_seed(seed + j) for j in range(n)]


def compute_cases(data: Dict[str, Any], priors: Optional[Dict[str, Any]] = None) -> Dict[str, np.ndarray]:
    """Every reference case as ``name -> array`` (``data``: the arrays of the
    npz file; ``priors``: name -> prior, by default the frozen ones)."""
    from captum_prior.attr import DeepPriorExpectedGradients, ExpectedGradients
    from captum_prior.training import training_attributions

    model = small_cnn()
    model.load_state_dict({k[len("w_"):]: torch.from_numpy(v) for k, v in data.items() if k.startswith("w_")})
    x = torch.from_numpy(data["x"])
    refs = torch.from_numpy(data["refs"])
    target = torch.from_numpy(data["target"])
    if priors is None:
        priors = {
            name: FrozenPrior(*(torch.from_numpy(data[f"{name}_{k}"]) for k in ("p", "lo", "hi")))
            for name in ("mgm", "bgmm")
        }
    n = x.shape[0]
    out: Dict[str, np.ndarray] = {}

    def put(name: str, res: Any) -> None:
        if isinstance(res, tuple):
            out[name] = res[0].detach().numpy()
            out[name + "_delta"] = res[1].detach().numpy()
        else:
            out[name] = res.detach().numpy()

    eg = ExpectedGradients(model)
    put("eg_one", eg.attribute(x, refs, n_samples=12, target=target, generator=torch.Generator().manual_seed(0),
                               return_convergence_delta=True))
    put("eg_list", eg.attribute(x, refs, n_samples=12, target=target, generator=_gens(n, 10),
                                return_convergence_delta=True, delta_per_example=True, internal_batch_size=7))
    put("eg_noise", eg.attribute(x, refs, n_samples=6, stdevs=0.1, target=1, generator=torch.Generator().manual_seed(3),
                                 return_convergence_delta=True))
    put("eg_local", ExpectedGradients(model, multiply_by_inputs=False).attribute(
        x, refs, n_samples=5, target=target, generator=torch.Generator().manual_seed(4)))
    fixed = 0.05 * torch.from_numpy(data["mgm_p"])  # a tensor prior: no clamp
    for variant in ("paper", "reference_code"):
        kw = _variant_kw(variant)
        for name in ("mgm", "bgmm"):
            dp = DeepPriorExpectedGradients(model, priors[name], **kw)
            put(f"dp_{name}_{variant}_one", dp.attribute(
                x, refs, n_samples=12, target=target, generator=torch.Generator().manual_seed(1),
                return_convergence_delta=True))
            put(f"dp_{name}_{variant}_list", dp.attribute(
                x, refs, n_samples=12, target=target, generator=_gens(n, 20),
                return_convergence_delta=True, internal_batch_size=5))
            put(f"dp_{name}_{variant}_noise", dp.attribute(
                x, refs, n_samples=4, stdevs=0.05, target=target, generator=torch.Generator().manual_seed(2),
                return_convergence_delta=True, delta_per_example=True))
        put(f"dp_fixed_{variant}", DeepPriorExpectedGradients(model, fixed, **kw).attribute(
            x, refs, n_samples=8, target=target, generator=torch.Generator().manual_seed(5),
            return_convergence_delta=True))
    put("train_eg", training_attributions(model, x, target, refs, n_samples=2,
                                          generator=torch.Generator().manual_seed(6)))
    put("train_mgm", training_attributions(model, x, target, refs, prior=priors["mgm"], n_samples=2,
                                           generator=torch.Generator().manual_seed(7)))
    return out


def main() -> None:
    from captum_prior.priors import BGMMPrior, MGMPrior

    model = small_cnn()
    x, refs = images(4, 0), images(10, 1)
    target = torch.tensor([0, 1, 2, 1])
    data: Dict[str, np.ndarray] = {"x": x.numpy(), "refs": refs.numpy(), "target": target.numpy()}
    data.update({"w_" + k: v.numpy() for k, v in model.state_dict().items()})
    real = {"mgm": MGMPrior(model, scale=1.0), "bgmm": BGMMPrior(model, scale=1.0, random_state=0)}
    for name, prior in real.items():
        data[f"{name}_p"] = prior(x, target=target, references=refs).numpy()
        lo, hi = prior.baseline_range(refs)
        data[f"{name}_lo"] = torch.as_tensor(lo).numpy()
        data[f"{name}_hi"] = torch.as_tensor(hi).numpy()
    frozen = compute_cases(data)
    # the frozen priors replay the real ones exactly
    again = {"mgm": MGMPrior(model, scale=1.0), "bgmm": BGMMPrior(model, scale=1.0, random_state=0)}
    with_real = compute_cases(data, priors=again)
    for k, v in frozen.items():
        if not np.array_equal(v, with_real[k]):
            sys.exit(f"case {k}: the frozen prior does not replay the real one")
    data.update({"out_" + k: v for k, v in frozen.items()})
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT}: {len(frozen)} arrays of outputs")


if __name__ == "__main__":
    main()
