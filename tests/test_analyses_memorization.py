"""Calibrated copy rate, noise baseline, generalization entropy and the OMP dictionary test."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from latentfield.adapters import load_adapter
from latentfield.probe.analyses.copying import calibrated_copying, copy_threshold, generalization_entropy
from latentfield.probe.analyses.dictionary import dictionary_test
from latentfield.probe.analyses.memorization import memorization_coefficient
from latentfield.probe.engine.latents import decode_unit
from latentfield.probe.workflows.audit import reference_sets
from latentfield.probe.data import digits, noise_images
from latentfield.probe.rundir import ProbeConfig, run_probe


def test_copy_rate_on_known_copies():
    x, _ = digits("all")
    train, heldout = x[:800], x[800:1200]
    copies = train[:40] * 0.97  # cosine 1 to a training image: all copies
    res = calibrated_copying(copies, train, heldout, noise=noise_images(64, (1, 32, 32)))
    assert res["copy_rate"] == 1.0 and res["noise_copy_rate"] == 0.0
    assert abs(res["heldout_copy_rate"] - 0.05) < 0.01  # the calibration itself
    assert 1 - copy_threshold(heldout, train) == pytest.approx(res["copy_threshold_cosine"])


def test_generalization_entropy_counts_directions():
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(3, 64, generator=g)
    low_rank = torch.randn(50, 3, generator=g) @ basis  # 3 directions of variance
    assert generalization_entropy(low_rank.view(50, 1, 8, 8))["n_components"] <= 3
    assert generalization_entropy(torch.randn(50, 64, generator=g))["n_components"] > 20
    assert generalization_entropy(torch.ones(5, 4))["n_components"] == 0


def _attractor_images(variant: str, n_seeds: int = 96):
    model = load_adapter(f"demo:{variant}")
    res = run_probe(model, ProbeConfig(n_seeds=n_seeds, max_steps=400), progress=False)
    return model, res, decode_unit(model, res.attractors)


def test_memorization_separates_demo_checkpoints():
    torch.set_num_threads(1)
    stats = {}
    for variant in ("memorize", "generalize"):
        model, res, decoded = _attractor_images(variant)
        train, heldout = reference_sets(model)
        assert len(decoded) > 0
        mem = memorization_coefficient(decoded, train)["mean"]
        noise = memorization_coefficient(noise_images(128, (1, 32, 32)), train)["mean"]
        cal = calibrated_copying(decoded, train, heldout, noise_images(128, (1, 32, 32)), res.basin_sizes)
        heldout_mem = memorization_coefficient(heldout, train)["mean"]
        stats[variant] = (mem, noise, heldout_mem, cal)
    mem_m, noise_m, heldout_m, cal_m = stats["memorize"]
    mem_g, _, heldout_g, cal_g = stats["generalize"]
    assert mem_m > noise_m + 0.1       # beats the noise-image floor
    assert mem_m > heldout_m           # and the held-out baseline: attractors sit nearer than unseen digits
    assert mem_g < heldout_g           # the generalizing model's attractors do not
    assert mem_m > mem_g               # separates the two checkpoints
    assert cal_m["copy_rate"] > cal_m["heldout_copy_rate"]  # copies beyond the 5% false-copy rate
    assert cal_m["copy_rate"] > cal_g["copy_rate"] >= cal_m["noise_copy_rate"] - 1e-9


def test_omp_error_falls_as_atoms_grow():
    torch.set_num_threads(1)
    model, res, _ = _attractor_images("generalize", n_seeds=64)
    images = digits("test")[0][:64]
    out = dictionary_test(model, res.attractors, images, n_atoms=[1, 2, 4, 8, 16])
    mse_rb = np.array(out["mse_random_basis"])
    assert (np.diff(out["residual_attractors"]) <= 1e-9).all()  # OMP residual never grows
    assert (np.diff(out["residual_random_basis"]) <= 1e-9).all()
    assert mse_rb[-1] == pytest.approx(out["mse_autoencoder"], rel=1e-3)  # a full basis is exact
    assert mse_rb[0] > mse_rb[-1]
    assert out["mse_attractors"][0] >= out["mse_attractors"][-1]
