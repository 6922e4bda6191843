"""Sphinx configuration for the captum_prior documentation.

The build works offline: no intersphinx, no notebook execution.  The API
reference (``api/``) and the copy of the tutorials (``tutorials/``) are
generated here at every build, from the package's ``__all__`` lists and from
the repository's ``tutorials/`` folder, so they can never fall out of step.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import captum_prior  # noqa: E402

project = "captum_prior"
author = "captum_prior contributors"
copyright = "captum_prior contributors"
release = captum_prior.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served from the built site: maths renders offline
    "numpydoc",
    "myst_nb",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "findings/README.md"]
templates_path = ["_templates"]

# -- notebooks: rendered with their committed outputs, never executed ---------
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

# -- API reference -------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # numpydoc's Parameters section carries the types
autodoc_member_order = "bysource"
autodoc_inherit_docstrings = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = False

# -- HTML ----------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"captum_prior {release}"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False

# no network: everything the pages link to is in this build
intersphinx_mapping: dict = {}

# -- generated sources ---------------------------------------------------------

#: public modules documented in the API reference, in reading order; any other
#: public module with an ``__all__`` found by the walk below is appended.
MODULE_ORDER = [
    "captum_prior",
    "captum_prior.attr",
    "captum_prior.priors",
    "captum_prior.proxy",
    "captum_prior.metrics",
    "captum_prior.training",
    "captum_prior.runner",
    "captum_prior.data",
    "captum_prior.models",
    "captum_prior.segmentation",
    "captum_prior.visualization",
    "captum_prior.allocator",
    "captum_prior.errors",
]


def public_modules() -> list[str]:
    """Every importable module of the package whose dotted name has no
    component starting with ``_`` and that defines ``__all__``."""
    found = []
    for info in pkgutil.walk_packages(captum_prior.__path__, "captum_prior."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional extra is missing
            continue
        if hasattr(module, "__all__"):
            found.append(info.name)
    ordered = [m for m in MODULE_ORDER if m in found or m == "captum_prior"]
    return ordered + sorted(m for m in found if m not in ordered)


def _canonical(modules: list[str]) -> dict[int, str]:
    """The one module each object is documented under: the first module of
    ``modules`` that exports it (package-level names win over re-exports)."""
    where: dict[int, str] = {}
    for name in modules:
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if _is_documentable(obj):
                where.setdefault(id(obj), f"{name}.{attr}")
    return where


def _is_documentable(obj) -> bool:
    return callable(obj) or isinstance(obj, type)


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def write_api_pages() -> None:
    """Write ``api/index.rst`` and one page per public module."""
    api = os.path.join(HERE, "api")
    shutil.rmtree(api, ignore_errors=True)
    os.makedirs(api)
    modules = public_modules()
    canonical = _canonical(modules)
    for name in modules:
        module = importlib.import_module(name)
        own, elsewhere, data = [], [], []
        for attr in module.__all__:
            obj = getattr(module, attr)
            if not _is_documentable(obj):
                data.append(attr)
            elif canonical[id(obj)] == f"{name}.{attr}":
                own.append(attr)
            else:
                elsewhere.append((attr, canonical[id(obj)]))
        lines = [_title(f"``{name}``"), f".. automodule:: {name}\n   :no-members:\n",
                 f".. currentmodule:: {name}\n"]
        if own:
            lines.append(".. autosummary::\n   :toctree: generated\n   :nosignatures:\n")
            lines += [f"   {attr}" for attr in own]
            lines.append("")
        if data:
            lines.append(_title("Constants", "-"))
            for attr in data:
                lines.append(f".. autodata:: {name}.{attr}\n   :no-value:\n")
        if elsewhere:
            lines.append(_title("Also exported here", "-"))
            lines += [f"- ``{attr}``: :obj:`{target}`" for attr, target in elsewhere]
            lines.append("")
        with open(os.path.join(api, f"{name}.rst"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    index = [
        ".. _api:\n",
        _title("API reference"),
        "Every public class, function and constant, one page per module, generated",
        "from the docstrings. A name exported by several modules (for example",
        "``captum_prior.runner.attribute_dataset`` and",
        "``captum_prior.runner.explain.attribute_dataset``) is documented once,",
        "under the first module listed here, and linked from the others.\n",
        ".. toctree::\n   :maxdepth: 1\n",
    ]
    index += [f"   {name}" for name in modules]
    with open(os.path.join(api, "index.rst"), "w", encoding="utf-8") as f:
        f.write("\n".join(index) + "\n")


def copy_tutorials() -> None:
    """Copy ``tutorials/`` (notebooks and figures) into the source tree."""
    dest = os.path.join(HERE, "tutorials")
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "tutorials"), dest,
                    ignore=shutil.ignore_patterns("*.ipynb_checkpoints", "*.run.ipynb"))


write_api_pages()
copy_tutorials()


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Leave out members the package does not define itself (scikit-learn's
    generated ``set_*_request`` methods, Captum's and torch's inherited API)."""
    module = getattr(obj, "__module__", None)
    if what == "class" and callable(obj) and module and not module.startswith("captum_prior"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)
