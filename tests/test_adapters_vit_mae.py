"""ViT-MAE: tiny random ViTMAEForPreTraining, fixed patch order, unpatchify, norm_pix_loss, other sizes."""
from __future__ import annotations

import json

import pytest
import torch

from latentfield.adapters import AdapterError, load_adapter
from latentfield.probe.rundir import ProbeConfig, run_probe


def _save_mae(path, norm_pix_loss=False):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining
    torch.manual_seed(0)
    cfg = ViTMAEConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                       decoder_intermediate_size=32, image_size=32, patch_size=8, norm_pix_loss=norm_pix_loss)
    model = ViTMAEForPreTraining(cfg)
    model.save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5, 0.5, 0.5],
                                                                "image_std": [0.25, 0.25, 0.25]}))
    return model.eval()


@pytest.fixture(scope="module")
def mae(tmp_path_factory):
    path = tmp_path_factory.mktemp("mae") / "tiny-mae"
    return path, _save_mae(path)


def test_latent_is_ordered_tokens_and_f_is_bitwise_deterministic(mae):
    path, model = mae
    a = load_adapter(str(path))
    assert a.image_shape == (3, 32, 32) and a.latent_shape == (17, 16) and a.value_range == (0.0, 1.0)
    x = torch.rand(2, 3, 32, 32)
    z = a.encode(x)
    assert z.shape == (2, 17, 16)
    assert torch.equal(a.f(z), a.f(z)) and torch.equal(a.encode(x), z)
    # The trap: mask ratio 0 without fixed noise still shuffles the patch tokens at random.
    model.config.mask_ratio = 0.0
    with torch.no_grad():
        xn = (x - 0.5) / 0.25
        s1, s2 = model.vit(pixel_values=xn).last_hidden_state, model.vit(pixel_values=xn).last_hidden_state
        assert not torch.allclose(s1, s2)
        # Our decode is the model's own reconstruction (unpatchified logits, normalisation undone).
        noise = torch.arange(16, dtype=torch.float32).expand(2, 16)
        logits = model(pixel_values=xn, noise=noise).logits
    expected = (model.unpatchify(logits, (32, 32)) * 0.25 + 0.5).clamp(0, 1)
    torch.testing.assert_close(a.decode(z), expected, atol=1e-5, rtol=1e-4)


def test_other_image_size_interpolates_positions(mae):
    path, _ = mae
    a = load_adapter(str(path), image_shape=(3, 48, 40))
    assert a.latent_shape == (1 + 6 * 5, 16)
    z = a.encode(torch.rand(1, 3, 48, 40))
    assert a.decode(z).shape == (1, 3, 48, 40) and a.f(z).shape == z.shape
    with pytest.raises(AdapterError, match="multiples of the patch size 8"):
        load_adapter(str(path), image_shape=(3, 30, 32))


def test_norm_pix_loss_checkpoint_is_explicit(tmp_path):
    path = tmp_path / "mae-npl"
    _save_mae(path, norm_pix_loss=True)
    with pytest.warns(UserWarning, match="norm_pix_loss"):
        a = load_adapter(str(path))
    assert a.options["norm_pix"] == "standardized"
    with pytest.raises(AdapterError, match="norm_pix_loss"):
        load_adapter(str(path), norm_pix="refuse")


def test_short_probe(mae):
    path, _ = mae
    a = load_adapter(str(path))
    res = run_probe(a, ProbeConfig(n_seeds=4, max_steps=20, tol=1e-5, batch_size=4), progress=False)
    assert res.end_points.shape == (4, 17, 16) and torch.isfinite(res.end_points).all()
    assert sum(res.counts.values()) == 4 and (res.steps <= 20).all()
