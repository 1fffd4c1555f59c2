"""Smoke runs of every experiment in ``experiments/`` (tiny sizes), so the scripts cannot rot. e5 and e7
need real weights from ../shared and skip where they are absent.

Each script's ``main(argv)`` runs in this process with ``--smoke``; we check its outputs (table.json,
table.md, run.json, figures under 300 KB) and that a second run writes the same table.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from builders import load_script

PNG = b"\x89PNG\r\n\x1a\n"


def load(name: str):
    return load_script("experiments", name, f"experiments_{name}")


def run_smoke(name: str, out: Path, *extra: str) -> dict:
    load(name).main(["--out", str(out), "--smoke", "--quiet", *extra])
    table = json.loads((out / "table.json").read_text())
    assert table["experiment"] == name and table["smoke"] is True
    assert all(rows for rows in table["tables"].values())
    assert (out / "table.md").read_text().startswith("**")
    assert json.loads((out / "run.json").read_text())["wall_time_s"] >= 0
    pngs = sorted(out.glob("*.png"))
    assert pngs, f"{name} wrote no figure"
    for p in pngs:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size < 300_000
    return table


@pytest.mark.parametrize("name", ["e2_train_size", "e3_training_dynamics", "e4_ood", "e6_field_2d"])
def test_experiment_smoke(name, tmp_path):
    run_smoke(name, tmp_path / name)


def test_bottleneck_smoke_is_reproducible(tmp_path):
    first = run_smoke("e1_bottleneck", tmp_path / "a")
    second = run_smoke("e1_bottleneck", tmp_path / "b")
    assert first == second
    rows = first["tables"]["memorization against bottleneck k"]
    assert [r["k"] for r in rows] == [2, 8]
    for r in rows:  # the baselines are what they claim: held-out digits sit above noise images
        assert r["heldout_mean"] > r["noise_mean"]
        assert -1 <= r["memorization_mean"] <= 1


def test_taef2_dictionary_smoke(tmp_path, taef2_dir):
    table = run_smoke("e5_taef2_dictionary", tmp_path / "e5", "--weights", str(taef2_dir))
    probe = table["tables"]["probe from N(0, I) seeds"][0]
    assert probe["seeds"] == probe["converged"] + probe["max_steps"] + probe["diverged"]
    rows = table["tables"]["OMP dictionary test"]
    residual = [r["latent residual random basis"] for r in rows]
    assert residual == sorted(residual, reverse=True) and residual[-1] < residual[0]  # more atoms never hurt OMP
    assert rows[0]["MSE end points"] is not None and rows[0]["MSE Gaussian seeds"] is not None


def test_meehan_vae_smoke(tmp_path, meehan_dir):
    table = run_smoke("e7_meehan_vae", tmp_path / "e7", "--weights", str(meehan_dir))
    tables = table["tables"]
    for row in tables["data-free prior from N(0, I) seeds"]:
        assert row["seeds"] == row["converged"] + row["max_steps"] + row["diverged"]
        assert row["attractors"] == row["verified attractor"] + row["saddle or repeller"] + row["marginal"]
    for row in tables["digit classes of the attractors (share of converged seeds per confident label)"]:
        shares = [row[str(c)] for c in range(10)] + [row["uncertain"]]
        assert abs(sum(shares) - 1) < 1e-3  # every converged seed is counted once (table rounding: 4 digits)
    for row in tables["comparing the models' attractor sets in pixel space"]:
        assert row["chamfer"] > row["null chamfer"]  # two digit priors share more than shuffled pixels
    assert {r["set"] for r in tables["OOD: trajectories per set"]} == {"in-distribution", "faces", "noise"}
    assert sorted(p.name for p in (tmp_path / "e7").glob("*.png")) == [
        "e7_compare.png", "e7_gallery_d10.png", "e7_gallery_d30.png", "e7_ood.png"]
