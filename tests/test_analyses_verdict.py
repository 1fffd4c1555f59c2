"""The verdict's rules (docs/analyses.md, "Verdict") on numbers where the answer is known."""
from __future__ import annotations

import pytest

from latentfield.probe.analyses.verdict import MIN_CONVERGED, verdict


def test_copies_are_counted_by_attractor_and_weighted_by_basin():
    v = verdict(64, 54, [19, 11, 10, 6, 5, 3], cosines=[0.89, 0.93, 0.99, 0.96, 0.88, 0.97], threshold=0.9669,
                heldout_mean=0.90, noise_mean=0.70, noise_std=0.03, have_train=True, have_heldout=True)
    assert v["n_copies"] == 2 and v["copy_ranks"] == [2, 5]
    assert v["copy_seed_share"] == pytest.approx(13 / 54)
    assert v["memorization"].startswith("2 of 6 attractors (24% of converged seeds) are near-copies")
    assert v["order"][0] == "memorization" and "copies" in v["flags"] and not v["caveats"]


def test_heldout_at_the_noise_floor_is_a_caveat():
    v = verdict(64, 64, [40, 24], cosines=[0.9, 0.8], threshold=0.875, heldout_mean=0.8662, noise_mean=0.8663,
                noise_std=0.01, have_train=True, have_heldout=True)
    assert "baseline_at_noise_floor" in v["flags"] and "cannot be trusted" in v["caveats"][0]
    v = verdict(64, 64, [40, 24], cosines=[0.9, 0.8], threshold=0.875, heldout_mean=0.95, noise_mean=0.8663,
                noise_std=0.01, have_train=True, have_heldout=True)
    assert "baseline_at_noise_floor" not in v["flags"]


def test_no_convergence_and_travelling_seeds_do_not_get_relax():
    v = verdict(8, 0, [], unconverged={"n": 8, "max_steps": 50, "tol": 1e-5, "relative_step_median": 0.064})
    assert v["order"][0] == "convergence" and v["convergence"].startswith("No seed converged")
    assert "neither more steps nor --solver relax" in v["convergence"] and "no_convergence" in v["flags"]
    v = verdict(64, 54, [54], unconverged={"n": 10, "max_steps": 3000, "tol": 1e-6, "relative_step_median": 0.0036})
    assert "--solver anderson" in v["convergence"] and "Memorization not measured" in v["memorization"]


def test_few_converged_seeds_and_ood():
    v = verdict(64, MIN_CONVERGED - 1, [MIN_CONVERGED - 1], ood_auroc={"noise": {"trajectory": 0.95, "knn": 0.6}})
    assert "few_converged" in v["flags"] and v["caveats"]
    assert "noise: separated well (best AUROC 0.950, trajectory)" in v["ood"]
    v = verdict(64, 64, [64], ood_auroc={"faces": {"trajectory": 0.55, "knn": 0.6}})
    assert "ood_weak:faces" in v["flags"] and "weakly" in v["ood"] and "few_converged" not in v["flags"]
