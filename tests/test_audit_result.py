"""The typed audit result: frozen, versioned JSON, rendered by report/ without a model or an analysis."""
from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from latentfield.probe.analyses.verdict import verdict
from latentfield.probe.report.audit import render_html, write_report
from latentfield.probe.rundir import ProbeConfig
from latentfield.probe.workflows.audit import (SCHEMA_VERSION, AuditOverview, AuditResult, CalibratedCopying,
                                               Convergence, EntropyCount, GalleryEntry, GeneralizationEntropy,
                                               Memorization, Neighbour)

ROOT = Path(__file__).resolve().parents[1]


def constructed() -> AuditResult:
    """A two-attractor audit written by hand: numbers no model produced."""
    g = torch.Generator().manual_seed(0)
    train = torch.rand(5, 1, 4, 4, generator=g)
    sizes, cos = (7, 3), (0.99, 0.5)
    conv = Convergence(n_seeds=12, counts={"converged": 10, "max_steps": 2, "diverged": 0}, n_attractors=2,
                       n_attractors_euclid=2, basin_sizes=sizes, attractor_ids=(1, 0),
                       steps_to_converge={"median": 40.0, "p90": 61.0, "max": 70},
                       unconverged={"n": 2, "max_steps": 100, "tol": 1e-6, "sq_step_median": 3e-6,
                                    "sq_step_max": 4e-6, "relative_step_median": 0.002},
                       cos_threshold=0.99, euclid_rtol=0.01)
    mem = Memorization(n_train=5, mean=float(np.mean(cos)), std=float(np.std(cos)), per_attractor=cos, n_noise=5,
                       noise_baseline_mean=0.6, noise_baseline_std=0.01, n_heldout=4, baseline_mean=0.8,
                       baseline_std=0.05, copying=CalibratedCopying(0.05, 0.95, 0.5, 0.05, 0.7, 0.0))
    v = verdict(12, 10, sizes, n_stopped=2, relative_step=0.002, cosines=cos, threshold=0.95, heldout_mean=0.8,
                noise_mean=0.6, noise_std=0.01, have_train=True, have_heldout=True)
    overview = AuditOverview(model="hand:made", fingerprint="f" * 64, image_shape=(1, 4, 4), latent_shape=(3,),
                             dtype="float32", low_precision=False, config=ProbeConfig(n_seeds=12, max_steps=100),
                             n_evals=500, wall_time_s=0.5, environment={"torch": "x", "device": "cpu"})
    gallery = tuple(GalleryEntry(r, k, n, (Neighbour(r, c), Neighbour(4, 0.1)))
                    for r, (k, n, c) in enumerate(zip((1, 0), sizes, cos)))
    return AuditResult(overview=overview, convergence=conv, verdict=v, gallery=gallery,
                       decoded=torch.rand(2, 1, 4, 4, generator=g), attractors=torch.randn(2, 3, generator=g),
                       memorization=mem, train=train,
                       generalization_entropy=GeneralizationEntropy(EntropyCount(1, 2, 0.5)))


def test_audit_result_is_frozen_and_its_json_is_versioned():
    res = constructed()
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.verdict = None  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.memorization.mean = 0.0  # type: ignore[misc]
    data = res.to_json()
    assert list(data)[:2] == ["schema_version", "verdict"] and data["schema_version"] == SCHEMA_VERSION == 1
    assert json.loads(json.dumps(data)) == data  # plain JSON: nothing a reader cannot parse
    # summary.json's names only; the old flat aliases are gone
    assert not {"n_converged", "n_max_steps", "n_diverged", "steps_median", "steps_p90", "steps_max",
                "probe_config"} & set(data)
    assert data["counts"]["converged"] == 10 and data["basin_sizes"] == [7, 3] and data["attractor_ids"] == [1, 0]
    # the verdict read the typed numbers: attractor #0 (cosine 0.99 > 0.95) is the one near-copy, 7 of 10 seeds
    assert data["verdict"]["copy_ranks"] == [0] and data["verdict"]["copy_seed_share"] == pytest.approx(0.7)
    assert data["memorization"]["copy_threshold_cosine"] == 0.95 and "ct_statistic" not in data["memorization"]
    assert [a["nearest_train"][0]["index"] for a in data["attractors"]] == [0, 1]


def test_report_renders_a_constructed_result_without_a_model(tmp_path):
    res = constructed()
    page = render_html(res)
    for title in ("Verdict", "Model and probe", "Convergence and basins", "Attractors", "Memorization",
                  "Memorization baselines and calibrated copy rate", "Generalization entropy"):
        assert f"<h2>{title}</h2>" in page, title
    assert page.index("<h2>Verdict") < page.index("<h2>Model and probe")
    assert "hand:made" in page and "cos 0.990" in page
    # the verdict names parameters; the page adds what to type
    assert "max_steps" in res.verdict.sentences["convergence"] and "--" not in res.verdict.sentences["convergence"]
    assert "On the command line: raise --max-steps or try --solver anderson" in page
    extra = write_report(res, tmp_path, sections=[lambda r: ("Mine", f"<p>{r.convergence.n_seeds} seeds</p>")])
    assert extra == (tmp_path / "report.json", tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert html.endswith("<h2>Mine</h2>\n<p>12 seeds</p>\n</body></html>\n")
    assert (tmp_path / "attractors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "report.json").exists()  # the workflow writes the numbers, the report only renders


def test_report_modules_compute_nothing():
    """report/audit.py and report/audit_sections.py import no analysis, engine or model code: they render."""
    for name in ("audit.py", "audit_sections.py"):
        tree = ast.parse((ROOT / "probe" / "report" / name).read_text())
        mods = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        bad = {m for m in mods if m.split(".")[-1] in {"analyses", "engine", "adapters", "rundir.runner"}
               or any(p in m for p in ("analyses", "engine", "latentfield.adapters"))}
        assert not bad, (name, bad)


def test_report_refuses_a_folder_of_another_audit(tmp_path):
    """The page and model card are never written beside another run's report.json; its own run's is fine."""
    from latentfield.adapters.errors import UsageError
    res = constructed()
    other = {**res.to_json(), "run_key": "f" * 64}
    (tmp_path / "report.json").write_text(json.dumps(other))
    with pytest.raises(UsageError, match="belongs to another audit"):
        write_report(res, tmp_path)
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "model_card.md").exists()
    (tmp_path / "report.json").write_text(json.dumps(res.to_json()))
    write_report(res, tmp_path)
    assert (tmp_path / "report.html").is_file()
