"""Loading rules: HF ids from the local cache offline (downloads: test_hub_download.py), family detection,
unsupported architectures, and refusal of checkpoints whose pickle would run code."""
from __future__ import annotations

import json
import pickle

import pytest
import torch

from builders import assert_one_line_error, run_cli, save_tiny_autoencoder_kl
from latentfield.adapters import AdapterError, load_adapter


@pytest.fixture()
def hf_cache(tmp_path, monkeypatch):
    """A Hugging Face cache laid out as the hub client writes it, holding one model."""
    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny-vae"
    commit = "0123456789abcdef0123456789abcdef01234567"
    save_tiny_autoencoder_kl(repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hub_id_resolves_from_local_cache(hf_cache):
    a = load_adapter("acme/tiny-vae")
    assert a.name == "acme/tiny-vae" and a.latent_shape == (2, 8, 8) and a.value_range == (-1.0, 1.0)


def test_missing_hub_id_is_one_clear_line(hf_cache):
    with pytest.raises(AdapterError) as e:
        load_adapter("acme/not-downloaded")
    msg = str(e.value)
    assert "not in the local Hugging Face cache" in msg and "downloads are off (HF_HUB_OFFLINE=1)" in msg
    assert "local directory" in msg and "\n" not in msg
    assert_one_line_error(run_cli("probe", "acme/not-downloaded", "--out", hf_cache / "run", "--quiet"),
                          prefix="latentfield: error: acme/not-downloaded is not in the local")


def test_pipeline_directory_loads_its_vae(tmp_path):
    save_tiny_autoencoder_kl(tmp_path / "pipe" / "vae")
    (tmp_path / "pipe" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                                     "vae": ["diffusers", "AutoencoderKL"]}))
    assert load_adapter(str(tmp_path / "pipe")).latent_shape == (2, 8, 8)


def test_unsupported_architecture_names_the_families(tmp_path):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(AdapterError) as e:
        load_adapter(str(tmp_path / "bert"))
    msg = str(e.value)
    for family in ("sd-vae", "tiny", "vit-mae", "rae", "trained-decoder"):
        assert family in msg


class _Payload:
    """Unpickling this object creates a marker file: the attack a weights-only loader must stop."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_state_dict(marker):
    return {"0.weight": torch.zeros(1), "payload": _Payload(marker)}


def test_pickle_that_runs_code_is_refused_in_a_pth_pair(tmp_path):
    marker = tmp_path / "pwned"
    torch.save(_evil_state_dict(marker), tmp_path / "taesd_encoder.pth")
    torch.save(_evil_state_dict(marker), tmp_path / "taesd_decoder.pth")
    # The payload is real: a plain unpickler runs it.
    with open(tmp_path / "control.pkl", "wb") as f:
        pickle.dump(_Payload(tmp_path / "control"), f)
    with open(tmp_path / "control.pkl", "rb") as f:
        pickle.load(f)
    assert (tmp_path / "control").exists()
    with pytest.raises(AdapterError) as e:
        load_adapter(str(tmp_path / "taesd_encoder.pth"))
    assert "refused to load" in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()


def test_pickle_that_runs_code_is_refused_in_a_hf_directory(tmp_path):
    marker = tmp_path / "pwned"
    d = save_tiny_autoencoder_kl(tmp_path / "vae")
    (d / "diffusion_pytorch_model.safetensors").unlink()
    torch.save(_evil_state_dict(marker), d / "diffusion_pytorch_model.bin")
    assert_one_line_error(run_cli("probe", d, "--out", tmp_path / "run", "--quiet"), "refused to load")
    assert not marker.exists()
