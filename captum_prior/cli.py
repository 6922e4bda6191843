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
import warnings
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


def _fraction(text: str) -> float:
    """An argparse ``type`` for a fraction in ``(0, 1]``."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}") from None
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {v}")
    return v


def _fractions(text: str) -> List[float]:
    """An argparse ``type`` for comma-separated fractions in ``(0, 1)``."""
    try:
        vals = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers in (0, 1), got {text!r}") from None
    if not vals or any(not 0 < v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers in (0, 1), got {text!r}")
    return vals


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


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


class _Formatter(argparse.HelpFormatter):
    """Every option's help ends with its default (unless the help names it),
    or says that it is required."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        if isinstance(action, (argparse._VersionAction, argparse._HelpAction)):
            return text
        if action.required:
            return text + " (required)"
        if action.default is None:
            return text + " (default: not set)"
        if action.default is False:
            return text + " (default: off)"
        return text + " (default: %(default)s)"


def _build_parser() -> _Parser:
    from captum_prior import __version__
    from captum_prior.runner.evaluate import METRICS
    from captum_prior.runner.specs import DATASETS, METHODS, MODELS, REFERENCE_METHODS

    version = f"%(prog)s {__version__}"
    parser = _Parser(prog=_PROG, description="captum_prior command line", formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=version)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("demo", help="explain shipped Fashion-MNIST images; write a PNG",
                       formatter_class=_Formatter,
                       description="Explain a few shipped Fashion-MNIST test images with IG, EG, "
                       "DeepMGM-EG and DeepBGMM-EG and write one figure.")
    p.add_argument("--version", action="version", version=version)
    p.add_argument("--n-images", type=_positive_int, default=4, help="images to explain, 1..400")
    p.add_argument("--n-samples", type=_positive_int, default=64, help="samples/steps per image")
    p.add_argument("--out", default=None, help="PNG path (default: ./captum_prior_demo.png)")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="seed of every random draw")

    p = sub.add_parser(
        "explain", help="attribute a whole dataset into a sharded, resumable directory",
        formatter_class=_Formatter,
        description="Attribute every example of --data with --method into --out "
        "(manifest.json + shard-NNNNN.safetensors). Rerun the same command to resume. "
        "Under torchrun the ranks share the shards (gloo on CPU, NCCL on CUDA). "
        "Arguments and the data are checked before the model is loaded.",
    )
    p.add_argument("--version", action="version", version=version)
    p.add_argument("--model", required=True,
                   help=f"bundled ({', '.join(MODELS)}) or package.module:factory returning an nn.Module")
    p.add_argument("--data", required=True,
                   help=f"image folder, .safetensors/.npz with 'inputs' (+'labels'), or bundled ({', '.join(DATASETS)})")
    p.add_argument("--method", required=True, help="one of: " + ", ".join(METHODS))
    p.add_argument("--out", required=True, help="output directory (new, empty, or a previous run to resume)")
    p.add_argument("--target", type=_target, default="pred",
                   help="pred (the model's top class) | label (the data's labels) | a class index")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="examples per attribute call")
    p.add_argument("--n-samples", type=_positive_int, default=None,
                   help="samples per example (default: 50 for EG, DeepPrior-EG and GradientShap, "
                   "200 for bay-lime, 500 for dmm-men)")
    p.add_argument("--n-steps", type=_positive_int, default=None,
                   help="path steps (default: 50 for integrated-gradients, 150 for valid-path-gradients)")
    p.add_argument("--references", default=None,
                   help=f"reference set for {', '.join(REFERENCE_METHODS)}: an image folder (read with the "
                   "--size/--mean/--std of --data), .safetensors/.npz or a bundled dataset (default: drawn "
                   "from --data itself, with a warning)")
    p.add_argument("--n-references", type=_positive_int, default=100,
                   help="references drawn (seeded) from --references (or --data); all of them, with a "
                   "warning, when there are fewer")
    p.add_argument("--baseline", type=float, default=0.0, help="constant baseline for IG / LIME")
    p.add_argument("--patch-size", type=_positive_int, default=4, help="patch features of LIME/DMM-MEN")
    p.add_argument("--internal-batch-size", type=_positive_int, default=None,
                   help="rows per model call (default: the package's chunking, sized from the "
                   "model's activations, for Captum's methods too)")
    p.add_argument("--shard-size", type=_positive_int, default=256, help="examples per shard file")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="seed of every random draw")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (cuda:LOCAL_RANK under torchrun)")
    p.add_argument("--float16", action="store_true", help="store attributions as float16")
    p.add_argument("--no-delta", action="store_true",
                   help="do not compute/store the convergence delta (saves IG/EG's extra forward passes)")
    p.add_argument("--size", default=None,
                   help="image folder: N resizes the shorter side to N and crops the central N x N "
                   "(torchvision's Resize + CenterCrop evaluation transform, done here with pillow, "
                   "without torchvision); H,W crops H x W (default: keep the images' size)")
    p.add_argument("--resize", choices=("crop", "stretch"), default="crop",
                   help="with --size: crop (keep the aspect ratio, crop the centre) or stretch "
                   "(scale both sides to --size)")
    p.add_argument("--resize-shorter", type=_positive_int, default=None,
                   help="with --size: scale the shorter side to this before the centre crop, e.g. "
                   "--size 224 --resize-shorter 256 as in torchvision's ImageNet evaluation "
                   "(default: --size itself)")
    p.add_argument("--class-index", default=None,
                   help="image folder: FILE mapping sub-folder names to the model's class indices "
                   "(JSON {\"folder\": index}, Keras' imagenet_class_index.json, or text with one "
                   "folder name per line, line number = index, e.g. ImageNet's synset list) "
                   "(default: sorted sub-folders are classes 0, 1, ...)")
    p.add_argument("--mean", default=None, help="image folder: per-channel mean, e.g. 0.485,0.456,0.406")
    p.add_argument("--std", default=None, help="image folder: per-channel std, e.g. 0.229,0.224,0.225")
    p.add_argument("--limit", type=_positive_int, default=None,
                   help="explain only the first N examples (default: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-tune-allocator", action="store_true", help=TUNE_HELP)

    p = sub.add_parser(
        "evaluate", help="score stored attributions; compare runs; HTML report",
        formatter_class=_Formatter,
        description="Compute metrics over one or more attribution directories (sharded, "
        "resumable), then write per-example CSVs, summaries with 95 % CIs, paired "
        "differences and a self-contained report.html. The number of forward passes is "
        "printed before starting; the progress bars count them, one bar per run.",
    )
    p.add_argument("--version", action="version", version=version)
    p.add_argument("--attributions", required=True, nargs="+",
                   help="attribution directories written by explain (several to compare)")
    p.add_argument("--metric", default="deletion,insertion", help="comma-separated: " + ",".join(METRICS))
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--steps", type=_positive_int, default=None,
                   help="steps of each insertion/deletion curve (its resolution: a curve has "
                   "steps + 1 points, each a forward pass) (default: one image row per step, "
                   "as RISE: H steps for H x W images)")
    p.add_argument("--reference", default=None,
                   help="the run every other is compared with, by its name (the method, -2, -3 "
                   "for repeats) (default: the first of --attributions)")
    p.add_argument("--model", default=None, help="override the model recorded by explain "
                   "(default: the recorded one)")
    p.add_argument("--data", default=None, help="override the data recorded by explain "
                   "(default: the recorded one)")
    p.add_argument("--batch-size", type=_positive_int, default=32,
                   help="examples perturbed together (their forward passes are chunked)")
    p.add_argument("--masker", choices=("inpaint_telea", "mean", "blur", "zero"), default="inpaint_telea",
                   help="how keep/remove (KPM...RAM) fills masked pixels: OpenCV Telea inpainting "
                   "(the papers' protocol), the per-channel mean colour, a blur, or zero")
    p.add_argument("--percent", type=_fraction, default=None,
                   help="keep/remove: fraction of the pixels flipped per step, in (0, 1] "
                   "(default: 0.01, the papers' 1 %%)")
    p.add_argument("--road-fractions", type=_fractions, default=None,
                   help="ROAD: comma-separated removal fractions in (0, 1) "
                   "(default: the paper's 0.1,0.2,0.3,0.4,0.5,0.7,0.9)")
    p.add_argument("--road-noise", type=_nonneg_float, default=None,
                   help="ROAD: std of the imputation noise, in the model's input units (default: 0.01, "
                   "the paper's for [0, 1] pixels; for normalised inputs pass 0.01 / std)")
    p.add_argument("--mprt-layers", default=None,
                   help="MPRT: the layers randomised in cascade, output layer first: comma-separated "
                   "module names (see model.named_modules()), or a number K for K layers spread from "
                   "the output layer down to the middle of the network (default: every layer with "
                   "parameters)")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the randomised metrics")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
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


def _file_digest(path: str) -> str:
    import hashlib

    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:16]


def _data_spec(args: argparse.Namespace) -> dict:
    """How --data was read: what load_data needs to read it again (evaluate)."""
    spec = {"data": args.data, "size": args.size, "mean": args.mean, "std": args.std}
    if args.size is not None:
        spec["resize"] = args.resize
        if args.resize_shorter is not None:
            spec["resize_shorter"] = args.resize_shorter
    if args.class_index is not None:
        spec["class_index"] = args.class_index
    return spec


def _check_labels(model, dataset, args: argparse.Namespace, device, n: int = 16) -> None:
    """--target label without --class-index: warn when the labels disagree with
    the model's top class on most of ``n`` examples spread over the data."""
    import warnings

    import numpy as np
    import torch

    from captum_prior.runner.explain import _load_batch
    from captum_prior.runner.specs import RunnerWarning

    idx = sorted(set(np.linspace(0, len(dataset) - 1, min(n, len(dataset))).round().astype(int).tolist()))
    x, y = _load_batch(dataset, idx)
    with torch.no_grad():
        pred = model(x.to(device)).argmax(1).cpu()
    agree = int((pred == y).sum())
    if 2 * agree < len(idx):
        folder = " (sub-folder names, numbered 0, 1, ... in sorted order)" if os.path.isdir(args.data) else ""
        warnings.warn(
            f"--target label: the labels{folder} agree with the model's top class on only {agree} of "
            f"{len(idx)} examples checked; if they are not the model's class indices, pass "
            "--class-index FILE (folder name -> class index) or use --target pred",
            RunnerWarning, stacklevel=2,
        )


def _explain(args: argparse.Namespace) -> str:
    from captum_prior.runner import attribute_dataset
    from captum_prior.runner._dist import resolve_device
    from captum_prior.runner.specs import (
        METHODS,
        REFERENCE_METHODS,
        SpecError,
        build_method,
        has_labels,
        load_data,
        load_model,
    )

    # 1. everything that needs neither the model nor the device
    if args.method not in METHODS:
        raise SpecError(f"--method {args.method!r} is unknown; choose one of: {', '.join(METHODS)}")
    if args.references is not None and args.method not in REFERENCE_METHODS:
        raise SpecError(
            f"--references applies to the methods that take a reference set ({', '.join(REFERENCE_METHODS)}), "
            f"not to --method {args.method}"
        )
    if args.class_index is not None and args.target != "label":
        raise SpecError("--class-index gives the folders' labels; it needs --target label")
    dataset = load_data(args.data, args.size, args.mean, args.std, args.limit, resize=args.resize,
                        resize_shorter=args.resize_shorter, class_index=args.class_index)
    if args.target == "label" and not has_labels(dataset):
        raise SpecError(
            f"--target label, but --data {args.data!r} gives no labels (an image folder needs class "
            "sub-folders; a .safetensors/.npz file a 'labels' array); use --target pred or a class index"
        )
    references = None
    if args.references is not None:
        references = load_data(args.references, args.size, args.mean, args.std, resize=args.resize,
                               resize_shorter=args.resize_shorter, option="--references")
        from captum_prior.runner.explain import _split_item

        shape_x = tuple(_split_item(dataset[0])[0].shape)
        shape_r = tuple(_split_item(references[0])[0].shape)
        if shape_x != shape_r:
            raise SpecError(
                f"--references items have shape {shape_r} but --data items {shape_x}; "
                "pass references of the explained images' shape (--size applies to both folders)"
            )
    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        raise SpecError(f"--device {args.device!r}: {exc}") from None
    # 2. the model
    _tune_allocator(args)
    model = load_model(args.model)
    _probe(model, dataset, args)
    if args.target == "label" and args.class_index is None:
        _check_labels(model, dataset, args, device="cpu")
    attribution, kwargs, method_args = build_method(
        args.method, model, dataset, n_samples=args.n_samples, n_steps=args.n_steps,
        n_references=args.n_references, baseline=args.baseline, patch_size=args.patch_size,
        seed=args.seed, internal_batch_size=args.internal_batch_size,
        references=references, references_spec=args.references,
    )
    data_desc = _data_spec(args)
    desc = dict(data_desc)
    if args.class_index is not None:
        desc["class_index"] = f"{args.class_index}@{_file_digest(args.class_index)}"
    return attribute_dataset(
        attribution, dataset, args.out, attribute_kwargs=kwargs, target=args.target,
        batch_size=args.batch_size, shard_size=args.shard_size, seed=args.seed,
        float16=args.float16, device=device,
        return_convergence_delta=False if args.no_delta else "auto", method=args.method, method_args=method_args,
        dataset_description=" ".join(f"{k}={v}" for k, v in desc.items() if v is not None),
        info={"model_spec": args.model, "data_spec": dict(data_desc, limit=args.limit),
              "command": " ".join(shlex.quote(a) for a in sys.argv)},
        progress=not args.no_progress,
    )


def _run_names(dirs: List[str], manifests: List[dict]) -> List[str]:
    names: List[str] = []
    for d, manifest in zip(dirs, manifests):
        name = manifest["identity"].get("method", os.path.basename(os.path.normpath(d)))
        base, j = name, 2
        while name in names:
            name, j = f"{base}-{j}", j + 1
        names.append(name)
    return names


def _evaluate(args: argparse.Namespace) -> str:
    import torch

    from captum_prior.runner._dist import Group, resolve_device
    from captum_prior.runner.evaluate import (
        _parse_metrics,
        compare_runs,
        evaluate_attributions,
        forward_passes_per_example,
    )
    from captum_prior.runner.specs import SpecError, load_data, load_model
    from captum_prior.runner.store import read_manifest

    # 1. everything that needs neither the model nor the device
    metrics = _parse_metrics(args.metric)
    manifests = []
    for d in args.attributions:
        try:
            manifests.append(read_manifest(d))
        except FileNotFoundError as exc:
            raise SpecError(f"--attributions: {exc}") from None
    for d, m in zip(args.attributions, manifests):
        if m.get("kind") != "attributions":
            raise SpecError(f"--attributions {d!r} holds {m.get('kind')!r} results, not attributions")
        if not m.get("complete"):
            raise SpecError(f"--attributions {d!r} is not finished; rerun its explain command to finish it")
    names = _run_names(args.attributions, manifests)
    if args.reference is not None and args.reference not in names:
        raise SpecError(f"--reference {args.reference!r} is not one of the runs: {', '.join(names)}")
    info = manifests[0].get("info", {})
    mspec = args.model or info.get("model_spec")
    dspec = info.get("data_spec") or {}
    if mspec is None or (args.data is None and not dspec):
        raise SpecError(f"--attributions {args.attributions[0]!r} records no model/data spec; pass --model and --data")
    if args.data is not None:
        dataset = load_data(args.data)
    else:
        # runs written before --resize existed were stretched
        resize = dspec.get("resize", "stretch" if dspec.get("size") is not None else "crop")
        dataset = load_data(dspec["data"], dspec.get("size"), dspec.get("mean"), dspec.get("std"),
                            dspec.get("limit"), resize=resize, resize_shorter=dspec.get("resize_shorter"),
                            class_index=dspec.get("class_index"))
    for d, m in zip(args.attributions, manifests):
        if int(m["n_examples"]) != len(dataset):
            raise SpecError(
                f"--attributions {d!r} holds {m['n_examples']} examples but the data has {len(dataset)}; "
                "pass the --data that was explained"
            )
    metric_kwargs: dict = {"keep_remove": {"masker": args.masker}}
    if args.percent is not None:
        metric_kwargs["keep_remove"]["percent"] = args.percent
    if args.steps is not None:
        metric_kwargs["insertion_deletion"] = {"n_steps": args.steps}
    road_kw = {k: v for k, v in (("fractions", args.road_fractions), ("noise", args.road_noise)) if v is not None}
    if road_kw:
        metric_kwargs["road"] = road_kw
    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        raise SpecError(f"--device {args.device!r}: {exc}") from None
    shape = info.get("input_shape") or []
    low, high = forward_passes_per_example(metrics, shape, metric_kwargs)
    if int(os.environ.get("RANK", "0")) == 0:
        n = len(dataset)
        per = f"{low}" if low == high else f"{low} to {high}"
        total = f"{len(names) * n * low:,}" if low == high else f"{len(names) * n * low:,} to {len(names) * n * high:,}"
        print(f"{_PROG} evaluate: {len(names)} run(s) x {n} examples x {per} forward passes per example "
              f"({', '.join(metrics)}) = {total} forward passes of one perturbed example each "
              "(finished shards are skipped)", file=sys.stderr, flush=True)
    # 2. the model
    _tune_allocator(args)
    model = load_model(mspec)
    if args.mprt_layers is not None and "mprt" in metrics:
        from captum_prior.metrics.sanity import spread_layers

        try:
            k = int(args.mprt_layers)
        except ValueError:
            layers = [t.strip() for t in args.mprt_layers.split(",") if t.strip()]
            known = dict(model.named_modules()) if isinstance(model, torch.nn.Module) else {}
            missing = [name for name in layers if name not in known]
            if missing or not layers:
                raise SpecError(f"--mprt-layers: {missing[0] if missing else args.mprt_layers!r} is not a "
                                "layer of the model; name modules of model.named_modules() or pass a count") from None
        else:
            try:
                layers = spread_layers(model, k)
            except ValueError as exc:
                raise SpecError(f"--mprt-layers: {exc}") from None
        metric_kwargs["mprt"] = {"layers": layers}
    group = Group(device)  # one process group for every run (torchrun)
    try:
        runs = {}
        for d, name in zip(args.attributions, names):
            runs[name] = evaluate_attributions(
                d, model, dataset, os.path.join(args.out, name), metrics=metrics,
                batch_size=args.batch_size, metric_kwargs=metric_kwargs,
                seed=args.seed, device=device, progress=not args.no_progress, name=name,
            )
        if group.rank == 0:
            compare_runs(runs, args.out, dataset=dataset, reference=args.reference)
        group.barrier()
    finally:
        group.close()
    return os.path.join(args.out, "report.html")


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; return the exit status (2 for user mistakes)."""

    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = next((a for a in argv if not a.startswith("-")), "")
    prog = f"{_PROG} {cmd}".strip() if cmd in ("demo", "explain", "evaluate") else _PROG
    debug = os.environ.get("CAPTUM_PRIOR_DEBUG") == "1"
    with warnings.catch_warnings():
        _show_runner_warnings(prog)
        return _main(argv, prog, debug)


def _show_runner_warnings(prog: str) -> None:
    """Print the runner's warnings as one line each, ``PROG: warning: ...``."""
    from captum_prior.runner.specs import RunnerWarning

    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if issubclass(category, RunnerWarning):
            print(f"{prog}: warning: {message}", file=sys.stderr, flush=True)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.simplefilter("always", RunnerWarning)
    # Captum's gradient methods say this on every call; the CLI's inputs never need gradients
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    warnings.showwarning = show


def _main(argv: List[str], prog: str, debug: bool) -> int:
    from captum_prior.errors import CaptumPriorError

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
