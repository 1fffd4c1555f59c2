"""The worked example docs/examples/meehan_vae.py on the real weights of Meehan et al. 2020 (MNIST VAEs,
d = 10, 30, 50): it loads, it converges to verified attractors, and those attractors are several digits.

Weights come from ``../shared/weights/meehan_vae`` (``LATENTFIELD_MEEHAN_DIR`` overrides); the tests
that need them skip only where that folder is absent.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "examples"))
sys.path.insert(0, str(ROOT / "experiments"))

import meehan_vae  # noqa: E402
from digit_classifier import DigitClassifier, sklearn_digits  # noqa: E402
from latentfield.adapters import AdapterError, load_adapter  # noqa: E402
from latentfield.probe.cli import main  # noqa: E402
from latentfield.probe.engine.latents import decode_unit, encode_unit  # noqa: E402
from latentfield.probe.rundir import ProbeConfig, run_probe  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These MLPs are tiny: a second torch thread only adds contention (6-20x slower on a loaded 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(meehan_dir):
    return {d: meehan_vae.load(d, meehan_dir) for d in meehan_vae.LATENT_DIMS}


@pytest.fixture(scope="module")
def probe_d10(models):
    return run_probe(models[10], ProbeConfig(n_seeds=128, tol=1e-6, max_steps=3000, verify=True), progress=False)


def test_loads_all_three(models, meehan_dir):
    digits = sklearn_digits("test")[0][:64]
    for d, model in models.items():
        assert model.latent_shape == (d,) and model.image_shape == (1, 28, 28)
        z = 3 * torch.randn(16, d, generator=torch.Generator().manual_seed(d))
        images = model.decode(z)
        assert images.shape == (16, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
        assert torch.equal(model.f(z), model.f(z))  # posterior mean, not a sample: f is deterministic
        stored = torch.load(meehan_dir / f"VAE_d{d}.pkl", weights_only=True, map_location="cpu")
        assert torch.equal(model.decoder[0][6].weight, stored["decoder.6.weight"])
        assert torch.equal(model.encoder[2].bias, stored["encoder_mean.bias"])
        # trained weights: a digit survives the round trip (measured 0.027; an untrained decoder gives ~0.2)
        mse = float((decode_unit(model, encode_unit(model, digits)) - digits).pow(2).mean())
        assert mse < 0.05, f"d = {d}: round-trip MSE {mse:.3f}"


def test_py_spec_on_the_command_line(meehan_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(meehan_vae.ENV, str(meehan_dir))
    assert load_adapter("py:meehan_vae:d30").latent_shape == (30,)
    out = tmp_path / "run"
    rc = main(["probe", "py:meehan_vae:d10", "--image-shape", "1,28,28", "--seeds", "64", "--tol", "1e-6",
               "--out", str(out), "--quiet"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["adapter"]["name"] == "meehan-vae-d10" and summary["adapter"]["latent_shape"] == [10]
    assert summary["counts"]["converged"] >= 56 and summary["n_attractors"] >= 2


def test_missing_weights_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(meehan_vae.ENV, str(tmp_path))
    with pytest.raises(AdapterError, match=meehan_vae.ENV):
        meehan_vae.d10()
    with pytest.raises(AdapterError, match="available: 10, 30, 50"):
        meehan_vae.load(20, tmp_path)
    rc = main(["probe", "py:meehan_vae:d50", "--image-shape", "1,28,28", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("latentfield: error: meehan_vae:") and "\n" not in err
    assert str(tmp_path / "VAE_d50.pkl") in err


def test_probe_converges_to_verified_attractors(models, probe_d10):
    res = probe_d10
    assert res.counts["converged"] >= 0.9 * len(res.status) and res.counts["diverged"] == 0
    per = res.stability["per_attractor"]
    assert len(per) == len(res.attractors) >= 5
    stable = np.array([p["kind"] == "attractor" for p in per])
    assert stable.mean() >= 0.9
    assert all(p["spectral_radius"] < 1 for p, s in zip(per, stable) if s)
    assert np.isin(res.labels, np.flatnonzero(stable)).mean() >= 0.85  # seeds that end on a verified attractor
    step = (models[10].f(res.attractors) - res.attractors).pow(2).sum(1)
    assert float(step.max()) < 1e-5  # fixed points: one more step barely moves them


def test_classifier_finds_several_digits_among_d10_attractors(models, probe_d10):
    train_x, train_y = sklearn_digits("train")
    test_x, test_y = sklearn_digits("test")
    classifier = DigitClassifier(train_x, train_y)
    assert classifier.accuracy(test_x, test_y) > 0.85
    labels, prob = classifier.predict(decode_unit(models[10], probe_d10.attractors))
    confident = prob.max(1) >= 0.5
    classes = sorted(set(labels[confident].tolist()))
    assert len(classes) > 1, f"d = 10 attractors labelled {labels.tolist()} (probabilities {prob.max(1).round(2)})"
