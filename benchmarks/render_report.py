"""Render an evaluation report in headless Chromium and save a screenshot.

Explains the first ``--n`` shipped Fashion-MNIST test images with several
methods (``captum-prior explain``), scores them with ``captum-prior evaluate
--metric deletion,insertion,mprt``, and screenshots ``report.html`` with the
Debian ``chromium`` package (``apt-get install -y chromium``).

Usage::

    python benchmarks/render_report.py                       # 32 images
    python benchmarks/render_report.py --n 8 --out /tmp/rr   # smoke run

Writes ``benchmarks/results/report_screenshot.png`` (the top of the page:
verdict, agreement, sanity check) and ``report_screenshot_maps.png`` (the
rest), and ``report_screenshot.md`` with the command, commit and load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()
METHODS = ("saliency", "integrated-gradients", "expected-gradients", "valid-path-gradients")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--out", default=None, help="work directory (default: a temporary one)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed: apt-get install -y chromium")
    from PIL import Image

    from captum_prior.cli import main as cli

    work = Path(args.out or tempfile.mkdtemp(prefix="report_"))
    base = ["explain", "--model", "fashion-cnn", "--data", "fashion-mnist-test-sample", "--limit", str(args.n),
            "--n-steps", "16", "--n-samples", "16", "--shard-size", "16", "--no-progress"]
    dirs = []
    for m in [s.strip() for s in args.methods.split(",") if s.strip()]:
        assert cli(base + ["--method", m, "--out", str(work / m)]) == 0
        dirs.append(str(work / m))
    assert cli(["evaluate", "--attributions", *dirs, "--metric", "deletion,insertion,mprt",
                "--out", str(work / "ev"), "--no-progress"]) == 0
    page = work / "ev" / "report.html"
    shot = work / "full.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1200,5600", f"--screenshot={shot}", page.as_uri()],
                   check=True, capture_output=True, timeout=300)
    img = Image.open(shot)
    html = page.read_text()
    # crop at the end of the sanity section: the first image below it is the insertion curve
    RESULTS.mkdir(exist_ok=True)
    for name, box in (("report_screenshot.png", (0, 0, 1200, 2700)),
                      ("report_screenshot_maps.png", (0, 2700, 1200, img.size[1]))):
        part = img.convert("RGB").crop(box).quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        part.save(RESULTS / name, optimize=True)  # 128 colours keep the committed files small
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    cmd = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    (RESULTS / "report_screenshot.md").write_text(
        "# The evaluation report in headless Chromium\n\n"
        f"`report_screenshot.png` (verdict, agreement, sanity check) and `report_screenshot_maps.png` "
        f"(curves, tables, maps): `captum-prior evaluate --metric deletion,insertion,mprt` of "
        f"{args.methods} on the first {args.n} shipped Fashion-MNIST test images (FashionCNN), "
        f"rendered by `{subprocess.run([chromium, '--version'], capture_output=True, text=True).stdout.strip()}`"
        f" at 1200 px wide; {len(html) // 1024} kB of self-contained HTML.\n\n"
        f"Command: `{cmd}`  \nCommit: {commit}  \nLoad: `{os.popen('uptime').read().strip()}`\n"
    )
    print(RESULTS / "report_screenshot.png")


if __name__ == "__main__":
    main()
