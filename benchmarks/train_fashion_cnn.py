"""Train the embedded default FashionCNN on the full Fashion-MNIST (seeded).

Writes the weights into the package (``captum_prior/assets/fashion_cnn.safetensors``),
the shipped test sample (first 500 test images), and a JSON record of the run
in ``benchmarks/results/train_fashion_cnn.json``.

Usage::

    python benchmarks/train_fashion_cnn.py [--epochs 12] [--seed 0] [--threads 2]

Needs the Debian package ``dataset-fashion-mnist`` (or ``--data PATH``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from captum_prior.data import load_fashion_mnist
from captum_prior.models.fashion_cnn import WEIGHTS_FILE, FashionCNN

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "captum_prior" / "assets"
import os  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 2 pixels."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    pad = nn.functional.pad(x, (2, 2, 2, 2))
    dx, dy = torch.randint(0, 5, (2,), generator=gen).tolist()
    return pad[:, :, dy : dy + 28, dx : dx + 28]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], 1000):
        correct += (model(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum().item()
    return correct / x.shape[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default=None, help="folder with the IDX files")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    xtr, ytr = load_fashion_mnist("train", args.data)
    xte, yte = load_fashion_mnist("test", args.data)

    model = FashionCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * ((xtr.shape[0] + args.batch_size - 1) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(xtr.shape[0], generator=gen)
        total = 0.0
        for i in range(0, xtr.shape[0], args.batch_size):
            idx = perm[i : i + args.batch_size]
            xb = augment(xtr[idx], gen)
            loss = loss_fn(model(xb), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * idx.numel()
        acc = accuracy(model, xte, yte)
        history.append(
            {"epoch": epoch + 1, "train_loss": total / xtr.shape[0], "test_acc": acc,
             "elapsed_s": round(time.time() - t0, 1)}
        )
        print(history[-1], flush=True)

    model.eval()
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    ASSETS.mkdir(parents=True, exist_ok=True)
    save_file(state, str(ASSETS / WEIGHTS_FILE), metadata={"format": "FashionCNN", "version": "1"})
    sample = {
        "images": (xte[:500] * 255).round().to(torch.uint8).contiguous(),
        "labels": yte[:500].to(torch.int64).contiguous(),
    }
    save_file(sample, str(ASSETS / "fashion_mnist_test_sample.safetensors"))
    record = {
        "command": "python " + " ".join(sys.argv),
        "seed": args.seed,
        "epochs": args.epochs,
        "test_accuracy": history[-1]["test_acc"],
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "weights_bytes": (ASSETS / WEIGHTS_FILE).stat().st_size,
        "history": history,
        "torch": torch.__version__,
        "machine": platform.platform(),
        "threads": args.threads,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_fashion_cnn.json").write_text(json.dumps(record, indent=2))
    print(json.dumps({k: v for k, v in record.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
