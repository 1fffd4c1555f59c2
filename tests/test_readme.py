"""The README's Python block runs as written and does what the CLI does."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_block_runs_and_matches_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = _python_block()
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    assert (tmp_path / "runs" / "mem" / "summary.json").exists()
    assert (tmp_path / "runs" / "mem.faiss").exists() and (tmp_path / "runs" / "mem.faiss.json").exists()
    api = json.loads((tmp_path / "runs" / "mem-report" / "report.json").read_text())
    assert api == scope["audited"].to_json() and api["schema_version"] == 1  # report.json is the result
    assert api["memorization"]["mean"] is not None  # the API, like the CLI, knows the demo's training set
    assert (tmp_path / "runs" / "mem-report" / "report.html").exists()

    from latentfield.probe.cli import main
    assert main(["audit", "demo:memorize", "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    cli = json.loads((tmp_path / "cli" / "report.json").read_text())
    for key in ("n_attractors", "basin_sizes", "memorization", "verdict"):
        assert api[key] == cli[key], key
    assert len(scope["basin"]) == len(scope["test"]) and scope["basin"].max() < len(scope["result"].attractors)


def test_everyday_names_import_from_the_package():
    import latentfield.probe as lp
    for name in ("load_adapter", "run_probe", "ProbeConfig", "audit", "write_report", "AttractorIndex", "load_images",
                 "load_result"):
        assert callable(getattr(lp, name)), name
    from latentfield.probe.workflows.audit import AuditResult, audit
    assert lp.audit is audit and lp.AuditResult is AuditResult  # the workflow, not a report function
    with pytest.raises(AttributeError):
        lp.not_a_name  # noqa: B018
