"""Execute every tutorial notebook top to bottom in quick mode; any error fails.

Each notebook reads ``CAPTUM_PRIOR_QUICK=1`` and then uses fewer images,
samples and steps.  The kernel imports this checkout (``PYTHONPATH`` = the
repository root, derived from this file) and draws with matplotlib's Agg
backend.  Nothing is written into the repository: the notebooks are executed
in memory and their figures are only displayed.  Quick mode needs no data
installed: the kernels run with the system Fashion-MNIST hidden and guarded
(tests/conftest.py), so a notebook that reads it fails here.
"""

import os
from pathlib import Path

import nbclient  # in the test extra: pip install -c constraints.txt -e ".[test]"
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(p.name for p in TUTORIALS.glob("*.ipynb"))
EXPECTED = {
    "Attribution_Priors_Training.ipynb",
    "DMM_MEN_Explanations.ipynb",
    "Faithfulness_Metrics.ipynb",
    "FashionMNIST_DeepPriorEG_Interpret.ipynb",
    "FashionMNIST_JGMM_Explanations.ipynb",
    "FashionMNIST_OptimizedBaselines_vs_IG.ipynb",
    "ImageNet_IG_vs_EG_vs_DeepPriorEG.ipynb",
}


def test_every_tutorial_is_executed():
    assert EXPECTED <= set(NOTEBOOKS), f"missing tutorials: {EXPECTED - set(NOTEBOOKS)}"


def test_quick_mode_and_first_cell_convention():
    for name in NOTEBOOKS:
        nb = nbformat.read(TUTORIALS / name, as_version=4)
        first = nb.cells[0]
        assert first.cell_type == "markdown" and first.source.startswith("# "), name
        assert "learn" in first.source.lower(), f"{name}: the first cell must say what the reader learns"
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "CAPTUM_PRIOR_QUICK" in code, f"{name} does not read CAPTUM_PRIOR_QUICK"


def test_kernels_cannot_read_the_system_dataset(monkeypatch, tmp_path):
    # the guard of tests/conftest.py, pointed at a fake system folder: a kernel that opens a file
    # there fails its cell, and the read is logged even when the notebook swallows the error
    import conftest

    fake = tmp_path / "system"
    fake.mkdir()
    (fake / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\0" * 8)
    log = tmp_path / "reads.log"
    monkeypatch.setenv(conftest.guard.WATCH_VAR, str(fake))
    monkeypatch.setenv(conftest.guard.LOG_VAR, str(log))
    path = str(fake / "t10k-labels-idx1-ubyte.gz")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(f"try:\n    open({path!r}).close()\nexcept Exception:\n    pass"),
        nbformat.v4.new_code_cell(f"open({path!r}).close()"),
    ])
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="SystemDataRead"):
        client.execute()
    assert log.read_text().count(path) == 2


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_quick_mode(name, monkeypatch, tmp_path):
    from captum_prior.data import fashion_mnist

    assert os.environ.get(fashion_mnist.HIDE_SYSTEM_VAR) == "1"  # set by tests/conftest.py
    # the kernel is a subprocess: it inherits this environment
    monkeypatch.setenv("CAPTUM_PRIOR_QUICK", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    monkeypatch.delenv("CAPTUM_PRIOR_FIGURES", raising=False)  # never write thumbnails from a test
    nb = nbformat.read(TUTORIALS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError (naming the cell) on any error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
