"""Stable Diffusion KL VAEs: a tiny random AutoencoderKL saved with save_pretrained, loaded offline."""
from __future__ import annotations

import pytest
import torch

from builders import tiny_autoencoder_kl
from latentfield.adapters import AdapterError, load_adapter
from latentfield.probe.rundir import ProbeConfig, run_probe


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    # two stages (2x down), 4 latent channels, a scaling and a shift factor to undo
    vae = tiny_autoencoder_kl(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                              up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, sample_size=16,
                              scaling_factor=0.5, shift_factor=0.1)
    path = tmp_path_factory.mktemp("vae") / "tiny-vae"
    vae.save_pretrained(path)
    return path, vae


def test_shapes_range_and_posterior_mean(vae_dir):
    path, vae = vae_dir
    a = load_adapter(str(path))
    assert a.value_range == (-1.0, 1.0)
    assert a.image_shape == (3, 16, 16) and a.latent_shape == (4, 8, 8)  # native sample_size, 2x down
    x = a.from_unit(torch.rand(2, 3, 16, 16))
    z = a.encode(x)
    with torch.no_grad():
        torch.testing.assert_close(z, vae.encode(x).latent_dist.mean)  # raw latent, no scaling
    y = a.decode(z)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert torch.equal(a.f(z), a.f(z))


def test_other_resolution_and_bad_shape(vae_dir):
    path, _ = vae_dir
    a = load_adapter(str(path), image_shape=(3, 24, 32))
    assert a.latent_shape == (4, 12, 16)
    assert a.encode(torch.zeros(1, 3, 24, 32)).shape == (1, 4, 12, 16)
    with pytest.raises(AdapterError, match="multiples of 2"):
        load_adapter(str(path), image_shape=(3, 15, 16))


def test_scaled_latents_and_sampling_are_explicit_options(vae_dir):
    path, _ = vae_dir
    raw = load_adapter(str(path))
    scaled = load_adapter(str(path), scale_latents=True)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(scaled.encode(x), (raw.encode(x) - 0.1) * 0.5)
    z = scaled.encode(x)
    torch.testing.assert_close(scaled.decode(z), raw.decode(z / 0.5 + 0.1))
    sampled = load_adapter(str(path), sample=True, sample_seed=3)
    zs = sampled.encode(x)
    assert torch.equal(zs, sampled.encode(x))  # re-seeded on every call: still a map
    assert not torch.allclose(zs, raw.encode(x))
    assert len({raw.fingerprint, scaled.fingerprint, sampled.fingerprint}) == 3


def test_short_probe(vae_dir):
    path, _ = vae_dir
    a = load_adapter(str(path))
    res = run_probe(a, ProbeConfig(n_seeds=3, max_steps=4, tol=1e-5, batch_size=3), progress=False)
    assert res.end_points.shape == (3, 4, 8, 8) and torch.isfinite(res.end_points).all()
    assert (res.steps <= 4).all() and sum(res.counts.values()) == 3


def test_flux2_kl_vae(tmp_path):
    from diffusers import AutoencoderKLFlux2
    torch.manual_seed(0)
    AutoencoderKLFlux2(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                       up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, latent_channels=8,
                       layers_per_block=1, sample_size=16).save_pretrained(tmp_path / "flux2")
    a = load_adapter(str(tmp_path / "flux2"))
    assert a.latent_shape == (8, 8, 8)
    z = a.encode(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert torch.equal(a.f(z), a.f(z))
    with pytest.raises(AdapterError, match="only defined for AutoencoderKL"):
        load_adapter(str(tmp_path / "flux2"), scale_latents=True)
