"""The bundled demo checkpoints and the main job, ``latentfield audit demo``."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from latentfield.adapters import load_adapter
from latentfield.probe.analyses.memorization import memorization_coefficient
from latentfield.probe.engine.latents import decode_unit
from latentfield.probe.cli import main
from latentfield.probe.workflows.audit import audit, reference_sets
from latentfield.probe.workflows.train_demo import RECIPES, DemoRecipe, train_demo, training_subset
from latentfield.probe.rundir import ProbeConfig, run_probe


def coefficient(spec: str) -> tuple[float, float]:
    adapter = load_adapter(spec)
    train, heldout = reference_sets(adapter)
    res = run_probe(adapter, ProbeConfig(n_seeds=64, max_steps=400), progress=False)
    assert res.counts["converged"] > 32, res.counts
    mem = memorization_coefficient(decode_unit(adapter, res.attractors), train)["mean"]
    base = memorization_coefficient(heldout, train)["mean"]
    return mem, base


def test_memorizing_checkpoint_scores_higher_than_generalizing_one():
    mem_m, base_m = coefficient("demo:memorize")
    mem_g, base_g = coefficient("demo:generalize")
    assert mem_m > mem_g + 0.02
    assert mem_m > base_m  # its attractors sit closer to training images than unseen digits do
    assert mem_g < base_g  # the generalizing model's attractors are no copies


def test_checkpoints_record_their_training_subset():
    for variant, recipe in RECIPES.items():
        adapter = load_adapter(f"demo:{variant}")
        record = adapter.training_record
        assert record["train_indices"] == training_subset(recipe).tolist()
        assert record["recipe"]["bottleneck"] == adapter.latent_shape[0]
        assert adapter.path.stat().st_size < 1_000_000


def test_train_demo_is_deterministic():
    recipe = DemoRecipe(bottleneck=4, n_train=32, epochs=3, batch_size=16, width=4, latent_penalty=1e-3)
    a, rec_a = train_demo(recipe, progress=False)
    b, rec_b = train_demo(recipe, progress=False)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert rec_a == rec_b and len(rec_a["train_indices"]) == 32


def test_audit_demo_end_to_end(tmp_path, capsys):
    """The API returns the typed result and writes it as report.json; the CLI renders and prints the same."""
    result = audit(load_adapter("demo:memorize"), tmp_path, ProbeConfig(n_seeds=48, max_steps=300), progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report == result.to_json()  # report.json is the result, nothing added or renamed on the way
    assert list(report)[:2] == ["schema_version", "verdict"] and report["schema_version"] == 1
    assert not {"n_converged", "n_max_steps", "n_diverged", "steps_median", "steps_p90", "steps_max",
                "probe_config"} & set(report)  # the old flat aliases are gone
    c = result.convergence
    assert report["model"] == "demo:memorize" and report["n_seeds"] == c.n_seeds == 48
    assert sum(report["counts"].values()) == 48 and report["counts"] == dict(c.counts)
    assert sum(report["basin_sizes"]) == c.n_converged and list(c.basin_sizes) == sorted(c.basin_sizes, reverse=True)
    assert set(report["steps_to_converge"]) == {"median", "p90", "max"}
    mem = report["memorization"]
    assert {"mean", "std", "baseline_mean"} <= set(mem) and mem["mean"] > mem["baseline_mean"]
    assert mem["per_attractor"] == list(result.memorization.per_attractor) and len(mem["per_attractor"]) == c.n_attractors
    assert report["verdict"] == result.verdict.to_json()

    assert main(["audit", "demo:memorize", "--seeds", "48", "--max-steps", "300", "--quiet",
                 "--out", str(tmp_path)]) == 0  # resumes the probe above
    out = capsys.readouterr().out
    assert f"{c.n_converged}/48 seeds converged to {c.n_attractors} attractors" in out and "report.html" in out
    assert json.loads((tmp_path / "report.json").read_text())["basin_sizes"] == report["basin_sizes"]
    html = (tmp_path / "report.html").read_text()
    n_imgs = html.count("<img src='data:image/png;base64,")
    assert n_imgs >= 2 * report["n_attractors"]  # each attractor beside its nearest training image
    assert "<h2>Trajectories</h2>" in html and "<h2>Memorization</h2>" in html
    assert "http" not in html.split("<body>")[1]  # self-contained: nothing fetched
    assert (tmp_path / "probe" / "summary.json").exists() and Path(tmp_path / "attractors.png").stat().st_size > 0
