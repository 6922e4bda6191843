"""Command line: ``captum-prior demo``."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import List, Optional


def demo(n_images: int = 4, n_samples: int = 64, out: Optional[str] = None, seed: int = 0) -> str:
    """Explain a few shipped Fashion-MNIST test images with Captum's
    IntegratedGradients, ExpectedGradients, DeepMGM-EG and DeepBGMM-EG on the
    embedded CNN and write one side-by-side figure. Returns the PNG path."""
    import torch
    from captum.attr import IntegratedGradients
    from tqdm.auto import tqdm

    from captum_prior.attr import DeepPriorExpectedGradients, ExpectedGradients
    from captum_prior.data import load_fashion_mnist_sample
    from captum_prior.models import FASHION_CLASSES, load_fashion_cnn
    from captum_prior.priors import BGMMPrior, MGMPrior
    from captum_prior.visualization import attribution_grid

    torch.manual_seed(seed)
    model = load_fashion_cnn()
    x_all, y_all = load_fashion_mnist_sample()
    x, refs = x_all[:n_images], x_all[-100:]
    with torch.no_grad():
        pred = model(x).argmax(1)
    methods = {
        "IntegratedGradients": lambda: IntegratedGradients(model).attribute(
            x, baselines=0.0, target=pred, n_steps=n_samples
        ),
        "ExpectedGradients": lambda: ExpectedGradients(model).attribute(
            x, refs, target=pred, n_samples=n_samples,
            generator=torch.Generator().manual_seed(seed),
        ),
        "DeepMGM-EG": lambda: DeepPriorExpectedGradients(model, MGMPrior(model)).attribute(
            x, refs, target=pred, n_samples=n_samples,
            generator=torch.Generator().manual_seed(seed),
        ),
        "DeepBGMM-EG": lambda: DeepPriorExpectedGradients(
            model, BGMMPrior(model, random_state=seed)
        ).attribute(
            x, refs, target=pred, n_samples=n_samples,
            generator=torch.Generator().manual_seed(seed),
        ),
    }
    attrs = {}
    for name, fn in tqdm(methods.items(), desc="explaining", unit="method"):
        attrs[name] = fn()
    if out is None:
        out = os.path.join(tempfile.gettempdir(), "captum_prior_demo.png")
    titles = [
        f"{FASHION_CLASSES[int(t)]}\n(pred {FASHION_CLASSES[int(p)]})"
        for t, p in zip(y_all[:n_images], pred)
    ]
    return attribution_grid(x, attrs, out, row_titles=titles)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="captum-prior", description="captum_prior command line")
    sub = parser.add_subparsers(dest="command")
    p_demo = sub.add_parser("demo", help="explain shipped Fashion-MNIST images; write a PNG")
    p_demo.add_argument("--n-images", type=int, default=4)
    p_demo.add_argument("--n-samples", type=int, default=64)
    p_demo.add_argument("--out", default=None, help="PNG path (default: a temp file)")
    p_demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command != "demo":
        parser.print_help()
        return 2
    t0 = time.time()
    path = demo(args.n_images, args.n_samples, args.out, args.seed)
    print(f"wrote {path} ({time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
