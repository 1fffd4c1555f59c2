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
    """The block runs as written; the CLI's audit into the same folder then finds a run of its own settings
    (another key would be refused), iterates nothing, and reports what the API reported."""
    monkeypatch.chdir(tmp_path)
    code = _python_block()
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    run = tmp_path / "runs" / "mem"
    assert (run / "probe" / "summary.json").exists()
    assert scope["audited"].overview.run_key == scope["result"].run_key  # the audit resumed the README's probe
    assert (tmp_path / "runs" / "mem.faiss").exists() and (tmp_path / "runs" / "mem.faiss.json").exists()
    api = json.loads((run / "report.json").read_text())
    assert api == scope["audited"].to_json() and api["schema_version"] == 1  # report.json is the result
    assert api["memorization"]["mean"] is not None  # the API, like the CLI, knows the demo's training set
    assert (run / "report.html").exists()

    chunks = {p: p.stat().st_mtime_ns for p in (run / "probe" / "chunks").glob("*.safetensors")}
    from latentfield.probe.cli import main
    cfg = scope["config"]
    assert main(["audit", "demo:memorize", "--seeds", str(cfg.n_seeds), "--max-steps", str(cfg.max_steps), "--out", str(run),
                 "--quiet"]) == 0
    assert chunks and all(p.stat().st_mtime_ns == t for p, t in chunks.items())  # nothing iterated again
    cli = json.loads((run / "report.json").read_text())
    for key in ("run_key", "n_attractors", "basin_sizes", "memorization", "verdict"):
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


def test_readme_model_object_block_runs(tmp_path, monkeypatch):
    """The "model you already hold" block, with the Hub id pointing at a tiny AutoencoderKL saved here, and
    (to keep the suite fast) smaller images and fewer seeds and steps."""
    from builders import save_tiny_autoencoder_kl
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### A model you already hold"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert '"stabilityai/sd-vae-ft-mse"' in code
    local = save_tiny_autoencoder_kl(tmp_path / "sd-vae-ft-mse")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    small = {'"stabilityai/sd-vae-ft-mse"': repr(str(local)), "(3, 64, 64)": "(3, 32, 32)",
             "n_seeds=64, tol=1e-5, max_steps=500": "n_seeds=8, tol=1e-5, max_steps=30"}
    for old, new in small.items():
        assert old in code, old
        code = code.replace(old, new)
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    out = tmp_path / "runs" / "sd-vae"
    assert (out / "report.html").exists() and (out / "model_card.md").exists()
    assert json.loads((out / "report.json").read_text())["fingerprint"] == scope["model"].fingerprint
    assert scope["model"].family == "sd-vae" and scope["model"].image_shape == (3, 32, 32)
