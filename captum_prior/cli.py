"""Command line: ``captum-prior {demo,explain,evaluate}`` (also ``python -m captum_prior``).

Every user mistake (bad argument, unusable model/data/method, an output
directory holding something else) prints one line ``captum-prior CMD: error:
...`` on stderr and exits with status 2, as argparse does; no traceback.  Set
``CAPTUM_PRIOR_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from typing import Callable, List, Optional

_PROG = "captum-prior"


class _UsageError(Exception):
    """Raised by the parser instead of exiting, so main() prints one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: error: {message}")


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type`` for integers >= ``low`` (one-line error otherwise)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v

    return parse


_positive_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


def _target(text: str):
    if text in ("pred", "label"):
        return text
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'pred', 'label' or a class index, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"class index must be >= 0, got {v}")
    return v


def demo(n_images: int = 4, n_samples: int = 64, out: Optional[str] = None, seed: int = 0) -> str:
    """Explain a few shipped Fashion-MNIST test images with Captum's
    IntegratedGradients, ExpectedGradients, DeepMGM-EG and DeepBGMM-EG on the
    embedded CNN and write one side-by-side figure. Returns the PNG path
    (default ``captum_prior_demo.png`` in the current directory)."""
    import torch
    from captum.attr import IntegratedGradients
    from tqdm.auto import tqdm

    from captum_prior.attr import DeepPriorExpectedGradients, ExpectedGradients
    from captum_prior.data import load_fashion_mnist_sample
    from captum_prior.models import FASHION_CLASSES, load_fashion_cnn
    from captum_prior.priors import BGMMPrior, MGMPrior
    from captum_prior.visualization import attribution_grid

    if isinstance(n_images, bool) or not isinstance(n_images, int) or not 1 <= n_images <= 400:
        raise ValueError(f"n_images must be an int in 1..400 (the shipped sample keeps 100 references), got {n_images!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
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
        out = os.path.join(os.getcwd(), "captum_prior_demo.png")
    titles = [
        f"{FASHION_CLASSES[int(t)]}\n(pred {FASHION_CLASSES[int(p)]})"
        for t, p in zip(y_all[:n_images], pred)
    ]
    return attribution_grid(x, attrs, out, row_titles=titles)


def _build_parser() -> _Parser:
    from captum_prior import __version__
    from captum_prior.runner.evaluate import METRICS
    from captum_prior.runner.specs import DATASETS, METHODS, MODELS

    version = f"%(prog)s {__version__}"
    parser = _Parser(prog=_PROG, description="captum_prior command line")
    parser.add_argument("--version", action="version", version=version)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("demo", help="explain shipped Fashion-MNIST images; write a PNG",
                       description="Explain a few shipped Fashion-MNIST test images with IG, EG, "
                       "DeepMGM-EG and DeepBGMM-EG and write one figure.")
    p.add_argument("--version", action="version", version=version)
    p.add_argument("--n-images", type=_positive_int, default=4, help="images to explain, 1..400 (default 4)")
    p.add_argument("--n-samples", type=_positive_int, default=64, help="samples/steps per image (default 64)")
    p.add_argument("--out", default=None, help="PNG path (default: ./captum_prior_demo.png)")
    p.add_argument("--seed", type=_nonneg_int, default=0)

    p = sub.add_parser(
        "explain", help="attribute a whole dataset into a sharded, resumable directory",
        description="Attribute every example of --data with --method into --out "
        "(manifest.json + shard-NNNNN.safetensors). Rerun the same command to resume. "
        "Under torchrun the ranks share the shards (gloo on CPU, NCCL on CUDA).",
    )
    p.add_argument("--version", action="version", version=version)
    p.add_argument("--model", required=True,
                   help=f"bundled ({', '.join(MODELS)}) or package.module:factory returning an nn.Module")
    p.add_argument("--data", required=True,
                   help=f"image folder, .safetensors/.npz with 'inputs' (+'labels'), or bundled ({', '.join(DATASETS)})")
    p.add_argument("--method", required=True, help="one of: " + ", ".join(METHODS))
    p.add_argument("--out", required=True, help="output directory (new, empty, or a previous run to resume)")
    p.add_argument("--target", type=_target, default="pred", help="pred | label | class index (default pred)")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--n-samples", type=_positive_int, default=None, help="samples per example (EG, GradientShap, LIME...)")
    p.add_argument("--n-steps", type=_positive_int, default=None, help="path steps (IG, ValidPathGradients)")
    p.add_argument("--n-references", type=_positive_int, default=100,
                   help="references drawn (seeded) from the data for EG/GradientShap (default 100)")
    p.add_argument("--baseline", type=float, default=0.0, help="constant baseline for IG / LIME (default 0)")
    p.add_argument("--patch-size", type=_positive_int, default=4, help="patch features of LIME/DMM-MEN (default 4)")
    p.add_argument("--internal-batch-size", type=_positive_int, default=None)
    p.add_argument("--shard-size", type=_positive_int, default=256)
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (cuda:LOCAL_RANK under torchrun)")
    p.add_argument("--float16", action="store_true", help="store attributions as float16")
    p.add_argument("--no-delta", action="store_true",
                   help="do not compute/store the convergence delta (saves IG/EG's extra forward passes)")
    p.add_argument("--size", default=None, help="image folder: resize to N or H,W")
    p.add_argument("--mean", default=None, help="image folder: per-channel mean, e.g. 0.485,0.456,0.406")
    p.add_argument("--std", default=None, help="image folder: per-channel std")
    p.add_argument("--limit", type=_positive_int, default=None, help="explain only the first N examples")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-tune-allocator", action="store_true", help=TUNE_HELP)

    p = sub.add_parser(
        "evaluate", help="score stored attributions; compare runs; HTML report",
        description="Compute metrics over one or more attribution directories (sharded, "
        "resumable), then write per-example CSVs, summaries with 95 %% CIs, paired "
        "differences and a self-contained report.html.",
    )
    p.add_argument("--version", action="version", version=version)
    p.add_argument("--attributions", required=True, nargs="+",
                   help="attribution directories written by explain (several to compare)")
    p.add_argument("--metric", default="deletion,insertion", help="comma-separated: " + ",".join(METRICS))
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--model", default=None, help="override the model recorded by explain")
    p.add_argument("--data", default=None, help="override the data recorded by explain")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--masker", default="mean", help="keep/remove masker (default mean)")
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-tune-allocator", action="store_true", help=TUNE_HELP)
    return parser


TUNE_HELP = ("leave glibc's malloc thresholds alone (by default they are fixed for this process, "
             "captum_prior.allocator.tune_cpu_allocator, unless MALLOC_*_THRESHOLD_ or GLIBC_TUNABLES is set)")


def _tune_allocator(args: argparse.Namespace) -> None:
    from captum_prior.allocator import (
        allocator_chosen_by_environment,
        tune_cpu_allocator,
    )

    if not args.no_tune_allocator and not allocator_chosen_by_environment():
        tune_cpu_allocator()


def _probe(model, dataset, args: argparse.Namespace) -> None:
    """Run the model on the first example so that a model/data mismatch is a
    one-line error before any work."""
    import torch

    from captum_prior.runner.explain import _load_batch
    from captum_prior.runner.specs import SpecError

    x, _ = _load_batch(dataset, [0])
    try:
        with torch.no_grad():
            y = model(x)
    except Exception as exc:  # noqa: BLE001 - any failure here is a model/data mismatch
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpecError(
            f"--model {args.model!r} cannot take --data items of shape {tuple(x.shape[1:])} "
            f"({type(exc).__name__}: {first})"
        ) from None
    if not isinstance(y, torch.Tensor) or y.dim() != 2 or y.shape[0] != 1:
        raise SpecError(
            f"--model {args.model!r} must return N x n_classes scores; for one example it "
            f"returned {type(y).__name__} {tuple(getattr(y, 'shape', ()))}"
        )
    if isinstance(args.target, int) and args.target >= y.shape[1]:
        raise SpecError(f"--target {args.target} is out of range: the model has {y.shape[1]} outputs")


def _explain(args: argparse.Namespace) -> str:
    from captum_prior.runner import attribute_dataset
    from captum_prior.runner._dist import resolve_device
    from captum_prior.runner.specs import (
        METHODS,
        SpecError,
        build_method,
        load_data,
        load_model,
    )

    if args.method not in METHODS:  # before loading anything
        raise SpecError(f"--method {args.method!r} is unknown; choose one of: {', '.join(METHODS)}")
    _tune_allocator(args)
    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        raise SpecError(f"--device {args.device!r}: {exc}") from None
    model = load_model(args.model)
    dataset = load_data(args.data, args.size, args.mean, args.std, args.limit)
    _probe(model, dataset, args)
    attribution, kwargs, method_args = build_method(
        args.method, model, dataset, n_samples=args.n_samples, n_steps=args.n_steps,
        n_references=args.n_references, baseline=args.baseline, patch_size=args.patch_size,
        seed=args.seed, internal_batch_size=args.internal_batch_size,
    )
    data_desc = {"data": args.data, "size": args.size, "mean": args.mean, "std": args.std}
    return attribute_dataset(
        attribution, dataset, args.out, attribute_kwargs=kwargs, target=args.target,
        batch_size=args.batch_size, shard_size=args.shard_size, seed=args.seed,
        float16=args.float16, device=device,
        return_convergence_delta=False if args.no_delta else "auto", method=args.method, method_args=method_args,
        dataset_description=" ".join(f"{k}={v}" for k, v in data_desc.items() if v is not None),
        info={"model_spec": args.model, "data_spec": dict(data_desc, limit=args.limit),
              "command": " ".join(shlex.quote(a) for a in sys.argv)},
        progress=not args.no_progress,
    )


def _evaluate(args: argparse.Namespace) -> str:
    from captum_prior.runner._dist import Group, resolve_device
    from captum_prior.runner.evaluate import (
        _parse_metrics,
        compare_runs,
        evaluate_attributions,
    )
    from captum_prior.runner.specs import SpecError, load_data, load_model
    from captum_prior.runner.store import read_manifest

    metrics = _parse_metrics(args.metric)
    _tune_allocator(args)
    manifests = []
    for d in args.attributions:
        try:
            manifests.append(read_manifest(d))
        except FileNotFoundError as exc:
            raise SpecError(f"--attributions: {exc}") from None
    info = manifests[0].get("info", {})
    mspec = args.model or info.get("model_spec")
    dspec = info.get("data_spec") or {}
    if mspec is None or (args.data is None and not dspec):
        raise SpecError(f"--attributions {args.attributions[0]!r} records no model/data spec; pass --model and --data")
    model = load_model(mspec)
    if args.data is not None:
        dataset = load_data(args.data)
    else:
        dataset = load_data(dspec["data"], dspec.get("size"), dspec.get("mean"), dspec.get("std"), dspec.get("limit"))
    device = resolve_device(args.device)
    group = Group(device)  # one process group for every run (torchrun)
    try:
        runs = {}
        for d, manifest in zip(args.attributions, manifests):
            name = manifest["identity"].get("method", os.path.basename(os.path.normpath(d)))
            base, j = name, 2
            while name in runs:
                name, j = f"{base}-{j}", j + 1
            runs[name] = evaluate_attributions(
                d, model, dataset, os.path.join(args.out, name), metrics=metrics,
                batch_size=args.batch_size, metric_kwargs={"keep_remove": {"masker": args.masker}},
                seed=args.seed, device=device, progress=not args.no_progress,
            )
        if group.rank == 0:
            compare_runs(runs, args.out, dataset=dataset)
        group.barrier()
    finally:
        group.close()
    return os.path.join(args.out, "report.html")


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; return the exit status (2 for user mistakes)."""
    from captum_prior.errors import CaptumPriorError

    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = next((a for a in argv if not a.startswith("-")), "")
    prog = f"{_PROG} {cmd}".strip() if cmd in ("demo", "explain", "evaluate") else _PROG
    debug = os.environ.get("CAPTUM_PRIOR_DEBUG") == "1"
    try:
        parser = _build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        t0 = time.time()
        if args.command == "demo":
            path = demo(args.n_images, args.n_samples, args.out, args.seed)
        elif args.command == "explain":
            path = _explain(args)
        else:
            path = _evaluate(args)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"wrote {path} ({time.time() - t0:.1f} s)")
        return 0
    except _UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (CaptumPriorError, ValueError, TypeError, FileNotFoundError, ImportError,
            PermissionError, IsADirectoryError, NotADirectoryError, KeyError) as exc:
        if debug:
            raise
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if debug:
            raise
        msg = " ".join(str(exc).split())[:500] or type(exc).__name__
        print(f"{prog}: error: {msg} (set CAPTUM_PRIOR_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
