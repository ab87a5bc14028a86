"""The notebooks in notebooks/ are stored without outputs and run top to bottom on tiny settings.

Each notebook runs in a fresh python3 kernel (nbclient) in its own temporary working directory, with
``VAPORTOK_NB_TINY=1``: a tiny random-init tokenizer and a handful of steps, so the notebooks cannot rot.
The kernel is the current interpreter's ``python3`` kernelspec; where none is registered, a throwaway one is
installed into a temporary prefix and put on JUPYTER_PATH (nothing is written to the user's Jupyter folders).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("01_quickstart", "02_custom_reward", "03_sweep_analysis")
TIMEOUT = 300  # seconds per cell


def read(name: str):
    return nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)


def test_every_notebook_is_listed_here():
    assert sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name):
    notebook = read(name)
    nbformat.validate(notebook)
    for i, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name} cell {i}: clear the outputs"
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert 'TINY = os.environ.get("VAPORTOK_NB_TINY") == "1"' in first.source, "first code cell: the parameters"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """Environment for the kernels: tiny settings, one CPU thread, the repository importable, and a python3
    kernelspec (a temporary one if the current interpreter has none registered)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    env = {
        "VAPORTOK_NB_TINY": "1",
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
        usable = Path(spec.argv[0]).name.startswith("python") or spec.argv[0] == sys.executable
    except NoSuchKernel:
        usable = False
    if not usable:
        from ipykernel.kernelspec import install

        prefix = tmp_path_factory.mktemp("jupyter")
        install(prefix=str(prefix), kernel_name="python3")
        env["JUPYTER_PATH"] = os.pathsep.join([str(prefix / "share" / "jupyter"), os.environ.get("JUPYTER_PATH", "")])
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.delenv("WANDB_MODE", raising=False)
        yield env


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_tiny_settings(name, tmp_path, kernel_env):
    notebook = read(name)
    client = nbclient.NotebookClient(
        notebook,
        timeout=TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{name}: {error}"[-4000:])
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{name}: no figure was displayed"
    assert (tmp_path / "nb_runs").is_dir(), "the notebook writes under its working directory"
    assert not (ROOT / "notebooks" / "nb_runs").exists()
