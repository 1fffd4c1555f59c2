"""The adapter protocol, the registry and third-party adapters through entry points."""
from __future__ import annotations

import sys
import textwrap

import pytest
import torch

import latentfield.adapters.registry as registry
from latentfield.adapters import Adapter, AdapterError, TorchAutoencoder, available_adapters, load_adapter

from builders import random_conv_ae


def test_torch_autoencoder_infers_latent_shape_and_value_range_conversion():
    enc = torch.nn.Conv2d(3, 2, 4, 4)
    dec = torch.nn.Sequential(torch.nn.ConvTranspose2d(2, 3, 4, 4), torch.nn.Tanh())
    a = TorchAutoencoder(enc, dec, image_shape=(3, 16, 16), value_range=(-1, 1))
    assert a.latent_shape == (2, 4, 4) and a.latent_dim == 32
    x01 = torch.rand(5, 3, 16, 16)
    torch.testing.assert_close(a.to_unit(a.from_unit(x01)), x01)
    z = a.encode(a.from_unit(x01))
    assert z.shape == (5, 2, 4, 4) and not z.requires_grad
    assert a.decode(z).abs().max() <= 1 and a.f(z).shape == z.shape


def test_fingerprint_tracks_weights():
    a, b = random_conv_ae(seed=0), random_conv_ae(seed=0)
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 64
    with torch.no_grad():
        b.model.decoder[0].bias[0] += 1e-3
    b._fingerprint = None
    assert random_conv_ae(seed=1).fingerprint != a.fingerprint and b.fingerprint != a.fingerprint


def test_to_changes_device_and_dtype_of_weights_and_inputs():
    a = random_conv_ae().to("cpu", torch.float64)
    assert a.dtype == torch.float64 and next(a.model.parameters()).dtype == torch.float64
    assert a.f(torch.zeros(2, 6)).dtype == torch.float64


def test_demo_spec_and_checkpoint_path_load_the_same_model(tmp_path):
    from latentfield.adapters.demo import demo_checkpoint_path
    a = load_adapter("demo:memorize")
    b = load_adapter(str(demo_checkpoint_path("memorize")))
    assert a.fingerprint == b.fingerprint and a.image_shape == (1, 32, 32)
    assert load_adapter("demo").name == "demo:generalize"
    with pytest.raises(AdapterError, match="unknown demo variant"):
        load_adapter("demo:nope")


def test_unknown_spec_error_is_one_line_naming_forms():
    with pytest.raises(AdapterError) as e:
        load_adapter("definitely-not-a-model")
    msg = str(e.value)
    assert "\n" not in msg and "py:package.module:attr" in msg and "demo" in msg


def test_third_party_adapter_through_entry_point_group(tmp_path, monkeypatch):
    # A real installed-distribution layout: importlib.metadata finds *.dist-info on sys.path.
    (tmp_path / "lfplugin.py").write_text(textwrap.dedent("""
        import torch
        from latentfield.adapters import TorchAutoencoder

        def load(arg, **options):
            scale = float(arg or 0.5)
            return TorchAutoencoder(lambda x: x.flatten(1) * scale, lambda z: z.view(-1, 1, 2, 2),
                                    image_shape=(1, 2, 2), name=f"halver:{scale}")
    """))
    dist = tmp_path / "lfplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lfplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[latentfield.adapters]\nhalver = lfplugin:load\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "_HOOKS", list(registry._HOOKS))
    assert "halver" in available_adapters()
    a = load_adapter("halver:0.25")
    assert isinstance(a, Adapter) and a.name == "halver:0.25"
    torch.testing.assert_close(a.f(torch.ones(1, 4)), torch.full((1, 4), 0.25))
    sys.modules.pop("lfplugin", None)
