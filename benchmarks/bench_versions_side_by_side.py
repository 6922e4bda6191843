"""Old code against new code, side by side in one run.

A ratio in ``benchmarks/results/summary.md`` compares ours with a peer run
interleaved in the same process, so the load of the machine cancels only
partly: the peer (e.g. RISE's per-step loop of single images) and ours (large
chunks) do not slow down by the same factor under load. To tell whether a
ratio that moved between two committed summaries moved because the code
changed, this script runs ``python -m benchmarks --only TEXT`` from an old
commit (a temporary ``git worktree``) and from the working tree, alternating
old, new, old, new, ... on the same machine, and reports both ratios per round.

Usage::

    python benchmarks/bench_versions_side_by_side.py --old da0b6c0 \\
        --only insertion_deletion --rounds 4 --tag insertion_deletion

Writes ``benchmarks/results/side_by_side_<tag>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()


def run_once(tree: Path, only: str, repeats: int, out: Path, extra_env: Dict[str, str]) -> List[dict]:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra_env)
    cmd = [sys.executable, "-m", "benchmarks", "--only", only, "--repeats", str(repeats), "--out", str(out)]
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.with_suffix(".json").read_text())["rows"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True, help="the old commit")
    p.add_argument("--only", required=True, help="passed to python -m benchmarks --only")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3, help="repeats inside each python -m benchmarks")
    p.add_argument("--tag", required=True)
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for both sides (repeatable)")
    a = p.parse_args()
    extra_env = dict(kv.split("=", 1) for kv in a.env)
    old_sha = subprocess.run(["git", "rev-parse", "--short", a.old], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
    new_sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "captum_prior", "benchmarks/run_all.py"],
                                cwd=ROOT, capture_output=True, text=True).stdout.strip())
    per: Dict[str, Dict[str, List[dict]]] = {}
    load = [os.getloadavg()[0]]
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old_tree), a.old], cwd=ROOT, check=True)
        try:
            for r in range(a.rounds):
                for label, tree in (("old", old_tree), ("new", ROOT)):
                    for row in run_once(tree, a.only, a.repeats, Path(tmp) / f"{label}{r}", extra_env):
                        key = f"{row['method']} | {row['model']}"
                        per.setdefault(key, {"old": [], "new": []})[label].append(row)
                    load.append(os.getloadavg()[0])
                print(f"round {r + 1}/{a.rounds} done, load {load[-1]:.1f}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)

    def med(rows: List[dict], field: str) -> float:
        return statistics.median(x[field]["median"] for x in rows)

    lines = [
        f"# Old vs new code, side by side: `--only {a.only}`",
        "",
        f"Command: `python benchmarks/bench_versions_side_by_side.py --old {a.old} --only '{a.only}' "
        f"--rounds {a.rounds} --repeats {a.repeats} --tag {a.tag}"
        + "".join(f" --env {kv}" for kv in a.env) + "`  ",
        f"old = {old_sha}, new = {new_sha}{' + uncommitted changes' if dirty else ''}; "
        f"{a.rounds} rounds of `python -m benchmarks --only {a.only} --repeats {a.repeats}` "
        "alternating old, new; 1 thread; "
        f"load average {min(load):.1f}-{max(load):.1f}; wall {(time.time() - t0) / 60:.1f} min.",
        "",
        "Each cell: median over rounds of that round's median ratio (per-round values in brackets).",
        "",
        "| row | old × peer | new × peer | old × floor | new × floor |",
        "|---|---|---|---|---|",
    ]
    out = {"command": sys.argv, "env": extra_env, "old": old_sha, "new": new_sha, "dirty": dirty, "load": load, "rows": {}}
    for key, d in per.items():
        cells = []
        for field in ("ratio_to_peer", "ratio_to_floor"):
            for label in ("old", "new"):
                vals = ", ".join(f"{x[field]['median']:.2f}" for x in d[label])
                cells.append(f"{med(d[label], field):.2f} [{vals}]" if d[label] else "n/a")
        lines.append(f"| {key} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")
        out["rows"][key] = d
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"side_by_side_{a.tag}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"side_by_side_{a.tag}.json").write_text(json.dumps(out, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
