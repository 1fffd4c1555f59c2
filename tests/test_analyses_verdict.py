"""The verdict's rules (docs/analyses.md, "Verdict") on numbers where the answer is known."""
from __future__ import annotations

import dataclasses

import pytest

from latentfield.probe.analyses.verdict import MIN_CONVERGED, Verdict, verdict


def test_copies_are_counted_by_attractor_and_weighted_by_basin():
    v = verdict(64, 54, [19, 11, 10, 6, 5, 3], cosines=[0.89, 0.93, 0.99, 0.96, 0.88, 0.97], threshold=0.9669,
                heldout_mean=0.90, noise_mean=0.70, noise_std=0.03, have_train=True, have_heldout=True)
    assert isinstance(v, Verdict) and v.n_copies == 2 and v.copy_ranks == (2, 5)
    assert v.copy_seed_share == pytest.approx(13 / 54)
    assert v.sentences["memorization"].startswith("2 of 6 attractors (24% of converged seeds) are near-copies")
    assert v.order[0] == "memorization" and "copies" in v.flags and not v.caveats
    data = v.to_json()
    assert data["copy_ranks"] == [2, 5] and data["order"] == v.order and data["memorization"] == v.sentences["memorization"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.n_copies = 0  # type: ignore[misc]


def test_heldout_at_the_noise_floor_is_a_caveat():
    v = verdict(64, 64, [40, 24], cosines=[0.9, 0.8], threshold=0.875, heldout_mean=0.8662, noise_mean=0.8663,
                noise_std=0.01, have_train=True, have_heldout=True)
    assert "baseline_at_noise_floor" in v.flags and "cannot be trusted" in v.caveats[0]
    v = verdict(64, 64, [40, 24], cosines=[0.9, 0.8], threshold=0.875, heldout_mean=0.95, noise_mean=0.8663,
                noise_std=0.01, have_train=True, have_heldout=True)
    assert "baseline_at_noise_floor" not in v.flags


def test_no_convergence_and_travelling_seeds_do_not_get_relax():
    v = verdict(8, 0, [], n_stopped=8, relative_step=0.064)
    assert v.order[0] == "convergence" and v.sentences["convergence"].startswith("No seed converged")
    assert "neither more steps nor the relax solver" in v.sentences["convergence"]
    assert {"no_convergence", "unconverged_travelling"} <= set(v.flags) and v.n_copies is None
    assert "n_copies" not in v.to_json()
    v = verdict(64, 54, [54], n_stopped=10, relative_step=0.0036)
    assert "the anderson solver" in v.sentences["convergence"] and "unconverged_settling" in v.flags
    assert "Memorization not measured" in v.sentences["memorization"] and "no_reference" in v.flags
    v = verdict(64, 54, [54], n_stopped=10)  # how fast they moved was not recorded
    assert "Raise max_steps" in v.sentences["convergence"] and "unconverged_unknown" in v.flags
    v = verdict(64, 60, [60])  # 4 seeds diverged, none stopped at max steps: no advice on steps
    assert not any(f.startswith("unconverged") for f in v.flags) and "max_steps" not in v.sentences["convergence"]


def test_sentences_name_parameters_not_flags():
    """A pure analysis does not speak the CLI: no sentence or caveat names a command-line flag."""
    cases = [verdict(8, 0, [], n_stopped=8, relative_step=0.064), verdict(64, 54, [54], n_stopped=10),
             verdict(64, 54, [54], n_stopped=10, relative_step=0.0036),
             verdict(64, 54, [30, 24], cosines=[0.9, 0.8], have_train=True),
             verdict(64, 5, [5], cosines=[0.9], threshold=0.8, heldout_mean=0.7, noise_mean=0.69, noise_std=0.1,
                     have_train=True, have_heldout=True)]
    assert "no_heldout" in cases[3].flags and "held-out images" in cases[3].sentences["memorization"]
    for v in cases:
        for text in [*v.sentences.values(), *v.caveats]:
            assert "--" not in text, text


def test_few_converged_seeds_and_ood():
    v = verdict(64, MIN_CONVERGED - 1, [MIN_CONVERGED - 1], ood_auroc={"noise": {"trajectory": 0.95, "knn": 0.6}})
    assert "few_converged" in v.flags and v.caveats
    assert "noise: separated well (best AUROC 0.950, trajectory)" in v.sentences["ood"]
    v = verdict(64, 64, [64], ood_auroc={"faces": {"trajectory": 0.55, "knn": 0.6}})
    assert "ood_weak:faces" in v.flags and "weakly" in v.sentences["ood"] and "few_converged" not in v.flags
