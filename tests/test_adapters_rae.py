"""Representation autoencoders: a tiny random diffusers AutoencoderRAE (DINOv2 encoder) loaded offline."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from latentfield.adapters import AdapterError, load_adapter
from latentfield.probe.rundir import ProbeConfig, run_probe


@pytest.fixture(scope="module")
def rae(tmp_path_factory):
    from diffusers import AutoencoderRAE
    torch.manual_seed(0)
    # Encoder reads 28 px (2 x 2 patches of 14), decoder writes 2 x 2 patches of 16 = 32 px.
    model = AutoencoderRAE(encoder_type="dinov2", encoder_hidden_size=64, encoder_patch_size=14,
                           encoder_num_hidden_layers=1, decoder_hidden_size=32, decoder_num_hidden_layers=1,
                           decoder_num_attention_heads=2, decoder_intermediate_size=64, patch_size=16,
                           encoder_input_size=28, latents_mean=[[[0.1]]] * 64, latents_std=[[[2.0]]] * 64)
    path = tmp_path_factory.mktemp("rae") / "tiny-rae"
    model.save_pretrained(path)
    return path, model.eval()


def test_shapes_resize_inside_encode_and_determinism(rae):
    path, model = rae
    a = load_adapter(str(path))
    assert a.image_shape == (3, 32, 32) and a.latent_shape == (64, 2, 2) and a.value_range == (0.0, 1.0)
    x = torch.rand(2, 3, 32, 32)
    z = a.encode(x)
    assert z.shape == (2, 64, 2, 2)
    # The encoder sees the image resized to 28 px and ImageNet-normalised; latents are normalised patch tokens.
    with torch.no_grad():
        xe = F.interpolate(x, size=(28, 28), mode="bicubic", align_corners=False)
        xe = (xe - model.encoder_mean) / model.encoder_std
        tokens = model.encoder(xe).last_hidden_state[:, 5:]  # CLS + 4 registers dropped
    expected = (tokens.transpose(1, 2).reshape(2, 64, 2, 2) - 0.1) / (2.0 + 1e-5)
    torch.testing.assert_close(z, expected, atol=1e-5, rtol=1e-4)
    y = a.decode(z)
    assert y.shape == (2, 3, 32, 32) and y.min() >= 0 and y.max() <= 1
    assert torch.equal(a.f(z), a.f(z))


def test_image_shape_is_the_decoder_resolution(rae):
    path, _ = rae
    with pytest.raises(AdapterError, match="writes images of shape"):
        load_adapter(str(path), image_shape=(3, 28, 28))


def test_short_probe(rae):
    path, _ = rae
    res = run_probe(load_adapter(str(path)), ProbeConfig(n_seeds=4, max_steps=20, tol=1e-5, batch_size=4),
                    progress=False)
    assert res.end_points.shape == (4, 64, 2, 2) and torch.isfinite(res.end_points).all()
    assert sum(res.counts.values()) == 4


@pytest.mark.parametrize("encoder_type", ["mae"])
def test_other_encoder_types(encoder_type, tmp_path):
    from diffusers import AutoencoderRAE
    torch.manual_seed(0)
    AutoencoderRAE(encoder_type=encoder_type, encoder_hidden_size=64, encoder_patch_size=16,
                   encoder_num_hidden_layers=1, decoder_hidden_size=32, decoder_num_hidden_layers=1,
                   decoder_num_attention_heads=2, decoder_intermediate_size=64, patch_size=8,
                   encoder_input_size=32).save_pretrained(tmp_path / encoder_type)
    a = load_adapter(str(tmp_path / encoder_type))
    assert a.image_shape == (3, 16, 16) and a.latent_shape == (64, 2, 2)
    z = a.encode(torch.rand(2, 3, 16, 16))  # upsampled to the encoder's 32 px inside encode
    assert z.shape == (2, 64, 2, 2)
    assert torch.equal(a.f(z), a.f(z))  # MAE: fixed patch order, no random shuffling


def _tiny_rae(encoder_type: str):
    from diffusers import AutoencoderRAE
    torch.manual_seed(0)
    return AutoencoderRAE(encoder_type=encoder_type, encoder_hidden_size=64, encoder_patch_size=16,
                          encoder_num_hidden_layers=1, decoder_hidden_size=32, decoder_num_hidden_layers=1,
                          decoder_num_attention_heads=2, decoder_intermediate_size=64, patch_size=8,
                          encoder_input_size=32)


def test_siglip2_rae_loads_in_both_checkpoint_layouts(tmp_path):
    """diffusers 0.42 + transformers 5 cannot build a SigLIP2 RAE on their own (a removed attribute);
    the adapter aliases it, and renames encoder weights saved under transformers 4 (``vision_model.``)."""
    from safetensors.torch import load_file, save_file

    from latentfield.adapters.rae import _alias_siglip_vision_model
    _alias_siglip_vision_model()
    _tiny_rae("siglip2").save_pretrained(tmp_path / "new")
    a = load_adapter(str(tmp_path / "new"))
    z = a.encode(torch.rand(2, 3, 16, 16))
    assert z.shape == (2, 64, 2, 2) and torch.equal(a.f(z), a.f(z))

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text((tmp_path / "new" / "config.json").read_text())
    state = load_file(str(tmp_path / "new" / "diffusion_pytorch_model.safetensors"))
    old = {("encoder.vision_model." + k[len("encoder."):] if k.startswith("encoder.") else k): v for k, v in state.items()}
    assert any(k.startswith("encoder.vision_model.") for k in old)
    save_file(old, str(tmp_path / "old" / "diffusion_pytorch_model.safetensors"))
    b = load_adapter(str(tmp_path / "old"))
    assert b.fingerprint == a.fingerprint
    torch.testing.assert_close(b.f(z), a.f(z), rtol=0, atol=0)

    del old[next(k for k in old if k.startswith("encoder.vision_model."))]
    save_file(old, str(tmp_path / "old" / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(AdapterError, match="do not match"):
        load_adapter(str(tmp_path / "old"))


def test_checkpoint_missing_weights_is_refused_not_randomly_filled(tmp_path):
    from safetensors.torch import load_file, save_file
    _tiny_rae("mae").save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(path))
    dropped = next(k for k in state if k.startswith("decoder."))
    del state[dropped]
    save_file(state, str(path))
    with pytest.raises(AdapterError, match="no weights for 1 parameters") as e:
        load_adapter(str(tmp_path / "m"))
    assert dropped in str(e.value) and "\n" not in str(e.value)
