"""The documentation site builds offline with warnings as errors, and its API
reference lists every public name.

``sphinx-build -W -b html docs <tmp>`` runs once per session (about a minute on
2 cores, hence ``slow``); the build needs no network (no intersphinx, notebooks
rendered from their committed outputs, never executed).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys

import pytest

import captum_prior

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")

def public_names() -> list[tuple[str, str]]:
    """``(module, name)`` for every name in the ``__all__`` of every public
    module (no dotted component starting with ``_``)."""
    found = [("captum_prior", n) for n in captum_prior.__all__]
    for info in pkgutil.walk_packages(captum_prior.__path__, "captum_prior."):
        if any(p.startswith("_") for p in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        found += [(info.name, n) for n in getattr(module, "__all__", ())]
    return found


def test_docs_config_is_offline():
    with open(os.path.join(DOCS, "conf.py"), encoding="utf-8") as f:
        conf = f.read()
    assert '"sphinx.ext.intersphinx"' not in conf
    assert re.search(r'^nb_execution_mode = "off"$', conf, re.M)


def test_every_public_module_has_all():
    modules = {m for m, _ in public_names()}
    for must in ("captum_prior.attr", "captum_prior.allocator", "captum_prior.models",
                 "captum_prior.runner.store", "captum_prior.segmentation"):
        assert must in modules


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    warnings = out / "warnings.txt"
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["MPLBACKEND"] = "Agg"
    # no network: a build that tried to fetch anything would fail or hang here
    env["http_proxy"] = env["https_proxy"] = "http://127.0.0.1:9"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-w", str(warnings), DOCS, str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )
    lines = warnings.read_text().splitlines() if warnings.exists() else []
    return proc, out, [ln for ln in lines if "WARNING" in ln or "ERROR" in ln]


@pytest.mark.slow
def test_sphinx_build_strict(build):
    """``sphinx-build -W`` passes: no warning from any page or docstring."""
    proc, out, warnings = build
    assert (out / "index.html").exists(), proc.stderr[-4000:]
    assert not warnings, "sphinx warnings:\n" + "\n".join(warnings)
    assert proc.returncode == 0, proc.stderr[-6000:]


@pytest.mark.slow
def test_api_reference_lists_every_public_name(build):
    _, out, _ = build
    api = out / "api"
    ids, pages = set(), {}
    for root, _, files in os.walk(api):
        for name in files:
            if name.endswith(".html"):
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    html = f.read()
                ids.update(re.findall(r'id="([^"]+)"', html))
                pages[os.path.relpath(os.path.join(root, name), api)] = html
    missing = []
    for module, name in public_names():
        if f"{module}.{name}" in ids:
            continue  # documented on its own page or as a constant of the module
        page = pages.get(f"{module}.html", "")
        targets = re.findall(r'href="[^"]*#([^"]+)"', page)
        if not any(t in ids and t.endswith("." + name) for t in targets):
            missing.append(f"{module}.{name}")
    assert not missing, "not in the API reference: " + ", ".join(missing)
