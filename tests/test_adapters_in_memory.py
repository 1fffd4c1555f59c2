"""Models already in memory: diffusers / transformers objects and bare pairs wrap as their family's adapter,
with the fingerprint of the same model loaded from disk, and no file written or read."""
from __future__ import annotations

import pytest
import torch

from builders import tiny_autoencoder_kl
from latentfield.adapters import AdapterError, UsageError, load_adapter
from latentfield.adapters.rae import RAEAdapter
from latentfield.adapters.sd_vae import KLVAEAdapter
from latentfield.adapters.taesd import TinyAdapter
from latentfield.adapters.vit_mae import ViTMAEAdapter
from latentfield.probe.rundir import ProbeConfig, run_probe


def tiny_mae(seed: int = 0):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining
    torch.manual_seed(seed)
    cfg = ViTMAEConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                       decoder_intermediate_size=32, image_size=32, patch_size=8)
    return ViTMAEForPreTraining(cfg).eval()


def tiny_autoencoder_tiny(seed: int = 0):
    from diffusers import AutoencoderTiny
    torch.manual_seed(seed)
    return AutoencoderTiny(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                           num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1), latent_channels=2).eval()


def pair(seed: int = 1):
    torch.manual_seed(seed)
    enc = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 4, 4), torch.nn.Tanh())
    dec = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 3, 4, 4), torch.nn.Sigmoid())
    return enc, dec


@pytest.mark.parametrize("build, cls, options", [
    (tiny_autoencoder_kl, KLVAEAdapter, {}),
    (tiny_autoencoder_tiny, TinyAdapter, {"image_shape": (3, 16, 16)}),
    (tiny_mae, ViTMAEAdapter, {}),
])
def test_objects_wrap_as_their_family_with_the_disk_fingerprint(tmp_path, build, cls, options):
    """The same weights saved and loaded from disk are the same map. diffusers models also get the same
    fingerprint; a transformers model does not: ``from_pretrained`` leaves its config different in form
    (``dtype`` a torch.dtype instead of a string, ``model_type`` set on the instance), and the fingerprint
    reads configs as they are (with no preprocessor config saved, both read ImageNet's pixel statistics)."""
    model = build()
    a = load_adapter(model, **options)
    assert type(a) is cls and a.name.endswith("(in memory)")
    model.save_pretrained(tmp_path / "m")
    b = load_adapter(str(tmp_path / "m"), **options)
    assert type(b) is cls and (a.fingerprint == b.fingerprint) == (cls is not ViTMAEAdapter)
    z = torch.randn(2, *a.latent_shape)
    assert torch.allclose(a.f(z), b.f(z), atol=1e-6)
    # another object of the same class with other weights is another model
    assert load_adapter(build(seed=7), **options).fingerprint != a.fingerprint


def test_object_options_enter_the_fingerprint():
    vae = tiny_autoencoder_kl()
    plain, scaled = load_adapter(vae), load_adapter(vae, scale_latents=True)
    assert plain.fingerprint != scaled.fingerprint
    with pytest.raises(AdapterError, match="unknown option"):
        load_adapter(vae, sampel=True)


def test_weights_changed_in_place_change_the_fingerprint():
    vae = tiny_autoencoder_kl()
    before = load_adapter(vae).fingerprint
    with torch.no_grad():
        next(vae.parameters()).add_(1.0)
    assert load_adapter(vae).fingerprint != before


def test_mae_pixel_statistics_from_options():
    model = tiny_mae()
    a = load_adapter(model, image_mean=[0.5] * 3, image_std=[0.25] * 3)
    b = load_adapter(model)  # ImageNet's
    assert a.fingerprint != b.fingerprint and torch.allclose(a.mean.flatten(), torch.tensor([0.5] * 3))
    with pytest.raises(AdapterError, match="3 values"):
        load_adapter(model, image_mean=[0.5])


def test_rae_object_wraps():
    from diffusers import AutoencoderRAE
    torch.manual_seed(0)
    model = AutoencoderRAE(encoder_type="dinov2", encoder_hidden_size=64, encoder_patch_size=14,
                           encoder_num_hidden_layers=1, encoder_input_size=28, decoder_hidden_size=32,
                           decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=64,
                           patch_size=14, image_size=28).eval()
    a = load_adapter(model)
    assert isinstance(a, RAEAdapter) and a.image_shape == (3, 28, 28)


def test_bare_pair_and_callables():
    enc, dec = pair()
    a = load_adapter((enc, dec), image_shape=(3, 16, 16))
    assert a.latent_shape == (4, 4, 4)
    assert load_adapter(pair(seed=2), image_shape=(3, 16, 16)).fingerprint != a.fingerprint
    # plain callables too: their code enters the fingerprint
    fns = (lambda x: enc(x), lambda z: dec(z))
    c = load_adapter(fns, image_shape=(3, 16, 16), name="lambdas")
    assert c.name == "lambdas" and torch.equal(c.f(torch.zeros(1, 4, 4, 4)), a.f(torch.zeros(1, 4, 4, 4)))


def test_an_object_it_cannot_wrap_is_one_line_naming_what_it_accepts():
    with pytest.raises(AdapterError) as e:
        load_adapter(torch.nn.Linear(2, 2))
    msg = str(e.value)
    assert "\n" not in msg and "torch.nn.modules.linear.Linear" in msg
    for accepted in ("AutoencoderKL", "AutoencoderTiny", "AutoencoderRAE", "ViTMAEForPreTraining", "(encoder, decoder)"):
        assert accepted in msg, accepted


def test_probe_an_object_with_no_file_on_disk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = load_adapter(tiny_autoencoder_kl())
    res = run_probe(a, ProbeConfig(n_seeds=8, max_steps=20), progress=False)
    assert len(res.status) == 8 and res.adapter_info["fingerprint"] == a.fingerprint
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing saved


def test_audit_and_extract_take_model_objects(tmp_path):
    """An in-memory diffusers VAE, a transformers ViT-MAE and a bare pair each audit with no model file on disk;
    the run directory then refuses another object (fingerprints tell them apart)."""
    from latentfield.probe import audit
    from latentfield.probe.workflows.extract import extract_prior
    cfg = ProbeConfig(n_seeds=4, max_steps=5)
    for name, model in [("kl", tiny_autoencoder_kl()), ("mae", tiny_mae()), ("pair", pair())]:
        opts = {"image_shape": (3, 16, 16)} if name == "pair" else {}
        a = load_adapter(model, **opts)
        res = audit(a if name == "pair" else model, tmp_path / name, cfg, progress=False)
        assert res.overview.fingerprint == a.fingerprint and res.convergence.n_seeds == 4
        assert not any(p.suffix in (".safetensors", ".bin") and "probe" not in p.parts
                       for p in (tmp_path / name).rglob("*"))  # no model weights were saved
    _, manifest, _ = extract_prior(tiny_autoencoder_kl(), tmp_path / "ex", cfg)
    assert manifest["fingerprint"] == load_adapter(tiny_autoencoder_kl()).fingerprint
    with pytest.raises(UsageError, match="another model"):
        audit(tiny_autoencoder_kl(seed=3), tmp_path / "kl", cfg, progress=False)
