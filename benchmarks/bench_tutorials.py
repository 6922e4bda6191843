"""Every tutorial notebook in full mode: wall time and peak memory per notebook.

``python -m benchmarks tutorials`` executes each notebook in ``tutorials/``
top to bottom with ``CAPTUM_PRIOR_QUICK`` unset (the size a reader runs),
one at a time, each in its own child process (``nbclient`` and the Jupyter
kernel it starts).  While a notebook runs, the resident memory (RSS) of the
child's whole process tree (client + kernel + anything the kernel starts) is
sampled from ``/proc`` every 0.2 s; the peak of that sum is the notebook's
peak memory.  The load average (``/proc/loadavg``) is recorded before and
after each notebook, since the machine may be shared.  A notebook whose tree
passes ``--kill-above-gb`` is stopped (and reported as such), so a memory hog
cannot take the machine down.

Results go to ``benchmarks/results/tutorials_full_mode.{json,md}``; with
``--only`` the rows of the other notebooks are kept from the previous run
(each row records its own commit and load).  Nothing is written into the
notebooks.

Two notebooks need the full Fashion-MNIST in full mode (Debian package
``dataset-fashion-mnist``, or ``CAPTUM_PRIOR_FASHION_MNIST``).

Usage::

    python -m benchmarks tutorials [--only NAME ...] [--timeout 3600] [--kill-above-gb 12]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _provenance  # noqa: E402

_provenance.stamp_at_exit()
RESULTS = _provenance.results_dir()
LIMIT_S, LIMIT_GB = 600.0, 6.0

CHILD = """
import sys, nbformat, nbclient
nb = nbformat.read(sys.argv[1], as_version=4)
nbclient.NotebookClient(nb, timeout=None, kernel_name="python3",
                        resources={"metadata": {"path": sys.argv[2]}}).execute()
"""


def _page_kb() -> int:
    return os.sysconf("SC_PAGE_SIZE") // 1024


def _tree(root_pid: int) -> Dict[int, Tuple[int, float]]:
    """``{pid: (RSS kB, CPU s)}`` of ``root_pid`` and all its descendants, from /proc.

    CPU s is user + system time of the process and of its waited-for children.
    """
    children: Dict[int, List[int]] = {}
    info: Dict[int, Tuple[int, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{d}/statm") as fh:
                resident = int(fh.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
        pid, ppid = int(d), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        cpu = sum(int(f) for f in fields[11:15]) / tick  # utime, stime, cutime, cstime
        info[pid] = (resident * _page_kb(), cpu)
    out: Dict[int, Tuple[int, float]] = {}
    stack = [root_pid]
    while stack:
        p = stack.pop()
        if p in info:
            out[p] = info[p]
        stack.extend(children.get(p, []))
    return out


def _kill_tree(root_pid: int) -> None:
    for pid in _tree(root_pid):  # the kernel may run in a session of its own
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _load() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def run_notebook(name: str, timeout: float, kill_above_gb: float) -> Dict[str, object]:
    env = dict(os.environ)
    env.pop("CAPTUM_PRIOR_QUICK", None)
    env.pop("CAPTUM_PRIOR_FIGURES", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    load_before = _load()
    with tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(TUTORIALS / name), work], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        peak_kb, status, cpu = 0, None, {}
        while proc.poll() is None:
            tree = _tree(proc.pid)
            peak_kb = max(peak_kb, sum(r for r, _ in tree.values()))
            for pid, (_, c) in tree.items():  # CPU time of every process seen, at its last sample
                cpu[pid] = max(cpu.get(pid, 0.0), c)
            if peak_kb > kill_above_gb * 2**20:
                status = f"stopped above {kill_above_gb:g} GB"
            elif time.perf_counter() - t0 > timeout:
                status = f"stopped after {timeout:g} s"
            if status:
                _kill_tree(proc.pid)
                break
            time.sleep(0.2)
        out = proc.communicate()[0]
        wall = time.perf_counter() - t0
    if status is None:
        status = "ok" if proc.returncode == 0 else f"error (exit {proc.returncode})"
    row: Dict[str, object] = {
        "notebook": name, "status": status, "wall_s": round(wall, 1), "peak_rss_gb": round(peak_kb / 2**20, 2),
        "cpu_s": round(sum(cpu.values()), 1),
        "load_before": load_before, "load_after": _load(), "commit": _commit(),
        "within_limits": status == "ok" and wall <= LIMIT_S and peak_kb / 2**20 <= LIMIT_GB,
    }
    if status != "ok":
        row["output_tail"] = out[-3000:]
    return row


def _commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "tutorials", "captum_prior"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine() -> str:
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {mem_kb / 2**20:.0f} GB RAM, Python {platform.python_version()}"


def write_markdown(data: Dict[str, object], path: Path) -> None:
    rows = data["rows"]
    lines = [
        "# Tutorials in full mode: wall time and peak memory per notebook",
        "",
        "Each notebook in `tutorials/` executed top to bottom with `CAPTUM_PRIOR_QUICK` unset (the size a",
        "reader runs), one at a time, each in its own child process (nbclient + Jupyter kernel). Peak memory",
        "is the peak of the summed RSS of the child's whole process tree (client, kernel and anything it",
        "starts), sampled from /proc every 0.2 s. Limits: "
        f"{LIMIT_S / 60:.0f} min and {LIMIT_GB:g} GB per notebook on 2 cores / 24 GB.",
        "The machine was shared with other work: the load average (1/5/15 min) is recorded before and after",
        "each notebook, and CPU time (user + system over the whole tree, sampled every 0.2 s) is given beside",
        "the wall time: each notebook sets 2 threads (1 for FashionMNIST_OptimizedBaselines_vs_IG), so on an idle",
        "machine its wall time would be roughly between half its CPU time and its CPU time.",
        "",
        f"Command: `{data['command']}`  ",
        f"Machine: {data['machine']}",
        "",
    ]
    earlier = sorted({r["command"] for r in rows if r.get("command") and r["command"] != data["command"]})
    if earlier:
        lines += ["Rows kept from earlier runs (`--only` keeps the other notebooks' rows) came from: "
                  + "; ".join(f"`{c}`" for c in earlier), ""]
    lines += [
        "| notebook | status | wall time (s) | CPU time (s) | peak RSS (GB) | within limits | load before | load after "
        "| commit |",
        "|---|---|---:|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['notebook']} | {r['status']} | {r['wall_s']} | {r.get('cpu_s', 'not recorded')} | {r['peak_rss_gb']} | "
                     f"{'yes' if r['within_limits'] else 'NO'} | {r['load_before']} | {r['load_after']} | "
                     f"{r['commit']} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    p = argparse.ArgumentParser(prog="python -m benchmarks tutorials", description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", default=None, help="notebook names (default: all)")
    p.add_argument("--timeout", type=float, default=3600.0, help="stop a notebook after this many seconds")
    p.add_argument("--kill-above-gb", type=float, default=12.0, help="stop a notebook whose tree passes this RSS")
    p.add_argument("--out", default=str(RESULTS / "tutorials_full_mode"), help="path stem of the .json/.md")
    args = p.parse_args(argv)
    names = sorted(n.name for n in TUTORIALS.glob("*.ipynb"))
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown:
            p.error(f"--only: no such notebook {sorted(unknown)}; choose from {names}")
        names = [n for n in names if n in args.only]
    stem = Path(args.out)
    old: Dict[str, dict] = {}
    if args.only and stem.with_suffix(".json").exists():
        old = {r["notebook"]: r for r in json.loads(stem.with_suffix(".json").read_text())["rows"]}
    command = "python -m benchmarks tutorials " + " ".join(argv if argv is not None else sys.argv[1:])
    stem.parent.mkdir(parents=True, exist_ok=True)
    data: Dict[str, object] = {}
    for name in names:
        print(f"{name}: running (load {_load()})", flush=True)
        row = run_notebook(name, args.timeout, args.kill_above_gb)
        row["command"] = command
        print(f"  {row['status']}, {row['wall_s']} s, CPU {row['cpu_s']} s, peak {row['peak_rss_gb']} GB "
              f"(load after {row['load_after']})", flush=True)
        if "output_tail" in row:
            print(row["output_tail"], flush=True)
        old[name] = row
        # written after every notebook, so an interrupted run keeps what it measured
        data = {"command": command, "machine": _machine(), "rows": [old[n] for n in sorted(old)]}
        stem.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
        write_markdown(data, stem.with_suffix(".md"))
    return data


if __name__ == "__main__":
    main()
