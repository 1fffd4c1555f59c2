"""Tiny autoencoders: real TAEF2 weights (round-trip PSNR, short probe), TAESD .pth pairs, AutoencoderTiny."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latentfield.adapters import AdapterError, load_adapter
from latentfield.adapters.taesd import TinyAdapter, taesd_decoder, taesd_encoder
from latentfield.probe.engine import CONVERGED, DIVERGED, MAX_STEPS
from latentfield.probe.rundir import ProbeConfig, run_probe


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / F.mse_loss(a, b)))


def _astronaut(size: int) -> torch.Tensor:
    from skimage.data import astronaut
    x = torch.from_numpy(astronaut().astype(np.float32) / 255).permute(2, 0, 1)[None]
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


@pytest.fixture(scope="module")
def taef2(taef2_dir):
    return load_adapter(str(taef2_dir), image_shape=(3, 256, 256))


def test_taef2_layout_inferred_from_keys(taef2):
    assert isinstance(taef2, TinyAdapter) and taef2.name == "taef2"
    assert taef2.latent_shape == (32, 32, 32) and taef2.value_range == (0.0, 1.0)
    gn = [i for i, m in enumerate(taef2.encoder) if getattr(m, "pool", None) is not None]
    assert gn == [11, 12, 13]  # lowest-resolution encoder stage
    gn = [i for i, m in enumerate(taef2.decoder) if getattr(m, "pool", None) is not None]
    assert gn == [3, 4, 5]  # first decoder stage


def test_taef2_round_trip_psnr_at_256(taef2):
    x = _astronaut(256)
    z = taef2.encode(x)
    assert z.shape == (1, 32, 32, 32)
    assert z.abs().max() < 10  # TAESD latents live in about [-3, 3]
    y = taef2.decode(z)
    assert y.min() >= 0 and y.max() <= 1
    assert _psnr(y, x) >= 28.0
    # Without the GroupNorm branch (a plain TAESD with the same other weights) the image is lost.
    plain = taesd_decoder(32, 64)
    plain.load_state_dict({k: v for k, v in taef2.decoder.state_dict().items() if ".pool." not in k})
    with torch.no_grad():
        assert _psnr(plain(z).clamp(0, 1), x) < 25.0


def test_taef2_explicit_files_and_determinism(taef2, taef2_dir):
    by_file = load_adapter(str(taef2_dir / "taef2_encoder.pth"), image_shape=(3, 32, 32))
    by_decoder_file = load_adapter(str(taef2_dir / "taef2_decoder.pth"), image_shape=(3, 32, 32))
    by_dir = load_adapter(str(taef2_dir), image_shape=(3, 32, 32))
    assert by_file.fingerprint == by_decoder_file.fingerprint == by_dir.fingerprint
    # the image size decides the latent space the map acts on: another size, another fingerprint
    assert taef2.fingerprint != by_dir.fingerprint
    by_dir.set_image_shape((3, 256, 256))
    assert by_dir.fingerprint == taef2.fingerprint
    z = torch.randn(2, *by_file.latent_shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(by_file.f(z), by_file.f(z))


def test_taef2_short_probe_reports_honest_statuses(taef2_dir):
    adapter = load_adapter(str(taef2_dir), image_shape=(3, 32, 32))
    cfg = ProbeConfig(n_seeds=2, tol=1e-5, max_steps=8, batch_size=2)
    res = run_probe(adapter, cfg, progress=False)
    assert set(np.unique(res.status)) <= {CONVERGED, MAX_STEPS, DIVERGED}
    assert sum(res.counts.values()) == 2
    assert (res.steps[res.status == MAX_STEPS] == 8).all() and (res.steps <= 8).all()
    assert torch.isfinite(res.end_points).all()
    # A real model need not converge in 8 steps: re-check the stopping rule independently.
    step = (adapter.f(res.end_points) - res.end_points).flatten(1).pow(2).sum(1)
    print(f"taef2 probe: {res.counts}, last squared steps {step.tolist()}")


def _random_taesd_pair(latent: int = 4, gn: tuple[int, ...] = ()) -> tuple[dict, dict]:
    torch.manual_seed(0)
    enc = taesd_encoder(latent, 8, gn)  # narrow: the layout, not the width, is under test
    dec = taesd_decoder(latent, 8, tuple(i - 8 for i in gn))
    return enc.state_dict(), dec.state_dict()


def test_taesd_pth_pair_from_directory(tmp_path):
    enc, dec = _random_taesd_pair(latent=16, gn=(11, 12, 13))
    torch.save({k: v.half() for k, v in enc.items()}, tmp_path / "taef1_encoder.pth")
    torch.save({k: v.half() for k, v in dec.items()}, tmp_path / "taef1_decoder.pth")
    a = load_adapter(str(tmp_path), image_shape=(3, 16, 24))
    assert a.latent_shape == (16, 2, 3) and a.name == "taef1"
    assert [i for i, m in enumerate(a.encoder) if getattr(m, "pool", None) is not None] == [11, 12, 13]
    x = torch.rand(3, 3, 16, 24)
    z = a.encode(x)
    assert z.shape == (3, 16, 2, 3)
    y = a.decode(z)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert torch.equal(a.f(z), a.f(z))
    with pytest.raises(AdapterError, match="multiples of 8"):
        a.set_image_shape((3, 20, 20))


def test_taesd_mismatched_pair_is_refused(tmp_path):
    enc, _ = _random_taesd_pair(latent=4)
    _, dec = _random_taesd_pair(latent=16)
    torch.save(enc, tmp_path / "x_encoder.pth")
    torch.save(dec, tmp_path / "x_decoder.pth")
    with pytest.raises(AdapterError, match="not a pair"):
        load_adapter(str(tmp_path))


def test_autoencoder_tiny_matches_original_layout(tmp_path):
    """The diffusers AutoencoderTiny and the .pth architecture define the same map on the same weights."""
    from diffusers import AutoencoderTiny
    torch.manual_seed(0)
    model = AutoencoderTiny(latent_channels=4)
    model.save_pretrained(tmp_path / "hf")
    hf = load_adapter(str(tmp_path / "hf"), image_shape=(3, 16, 16))
    assert hf.value_range == (0.0, 1.0) and hf.latent_shape == (4, 2, 2)
    sd = model.state_dict()
    enc = {k[len("encoder.layers."):]: v for k, v in sd.items() if k.startswith("encoder.layers.")}
    # The diffusers decoder applies the clamp in forward(), the original has it as layer 0.
    dec = {}
    for k, v in sd.items():
        if k.startswith("decoder.layers."):
            i, rest = k[len("decoder.layers."):].split(".", 1)
            dec[f"{int(i) + 1}.{rest}"] = v
    torch.save(enc, tmp_path / "tiny_encoder.pth")
    torch.save(dec, tmp_path / "tiny_decoder.pth")
    orig = load_adapter(str(tmp_path / "tiny_encoder.pth"), image_shape=(3, 16, 16))
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(hf.encode(x), orig.encode(x), atol=1e-5, rtol=1e-4)
    z = orig.encode(x)
    torch.testing.assert_close(hf.decode(z), orig.decode(z), atol=1e-5, rtol=1e-4)
    assert torch.equal(hf.f(z), hf.f(z))
    res = run_probe(hf, ProbeConfig(n_seeds=2, max_steps=3, batch_size=2), progress=False)
    assert res.end_points.shape == (2, 4, 2, 2) and (res.steps <= 3).all()


def test_family_options_are_checked(taef2_dir):
    assert load_adapter(str(taef2_dir), image_shape=(3, 32, 32), clamp=False).clamp is False
    with pytest.raises(AdapterError, match=r"unknown option clmap \(this family takes: clamp, image_shape, name\)"):
        load_adapter(str(taef2_dir), image_shape=(3, 32, 32), clmap=False)
