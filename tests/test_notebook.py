"""Notebook use: results display themselves (``_repr_html_`` and a short ``repr``), and the worked notebook
docs/examples/audit_in_a_notebook.ipynb runs top to bottom in a real Jupyter kernel."""
from __future__ import annotations

from pathlib import Path

import pytest

from latentfield.probe import AttractorIndex, ProbeConfig, audit, run_probe

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "examples" / "audit_in_a_notebook.ipynb"
pytestmark = pytest.mark.usefixtures("one_thread")


def test_results_display_their_key_numbers(tmp_path):
    res = audit("demo:memorize", tmp_path, ProbeConfig(n_seeds=16, max_steps=300), progress=False)
    c = res.convergence
    text, page = repr(res), res._repr_html_()
    assert len(text) < 200 and f"{c.n_converged}/{c.n_seeds}" in text and "demo:memorize" in text
    assert res.verdict.sentences["memorization"].split(" (")[0] in page
    assert page.count("<img") == min(len(res.decoded), 12) and f"#0: {c.basin_sizes[0]} seeds" in page

    probe = run_probe("demo:memorize", ProbeConfig(n_seeds=16, max_steps=300), progress=False)
    counts = probe.counts
    assert repr(probe).startswith("ProbeResult('demo:memorize': ") and "tensor(" not in repr(probe)
    assert f"{counts['converged']} / {counts['max_steps']} / {counts['diverged']}" in probe._repr_html_()

    index = AttractorIndex.build(res.attractors, "cosine", fingerprint="f" * 64)
    assert f"<td style='text-align:right'>{len(index)}</td>" in index._repr_html_()


def test_committed_notebook_has_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs for c in code), "commit the notebook executed, so it reads on GitHub"
    assert any("text/html" in o.get("data", {}) and "<img" in o["data"]["text/html"] for c in code for o in c.outputs)


def test_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("AuditResult" in h and "<img" in h for h in html) and any("AttractorIndex" in h for h in html)
    assert (tmp_path / "runs" / "notebook-audit" / "model_card.md").is_file()
