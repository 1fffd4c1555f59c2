"""Models from the Hugging Face Hub, downloaded through the real ``huggingface_hub`` client from a local
Hub (tests/hub_server.py on 127.0.0.1): cache first, pinned revisions, offline mode, pickle refusal,
one-line errors, and provenance (commit + sha256 of each file) in summaries and audit reports."""
from __future__ import annotations

import hashlib
import json
import pickle

import pytest
import torch

from builders import assert_one_line_error, run_cli, save_tiny_autoencoder_kl
from hub_server import HubServer
from latentfield.adapters import AdapterError, load_adapter
from latentfield.probe.cli import as_flags, main

REPO = "acme/tiny-vae"


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """A running local Hub, with huggingface_hub pointed at it and online (the suite runs with
    HF_HUB_OFFLINE=1, which the client reads into a constant at import), an empty cache and no token."""
    from huggingface_hub import constants
    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
        monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent-harnesses.json"))
        yield server


def _weights_gets(hub):
    return hub.count("GET", ".safetensors") + hub.count("GET", ".bin")


# -- download, cache, revisions -------------------------------------------------------------------

def test_first_download_fetches_only_the_files_the_family_reads(hub, tmp_path):
    src = save_tiny_autoencoder_kl(tmp_path / "src")
    files = {p.name: p.read_bytes() for p in src.iterdir()}
    files["diffusion_pytorch_model.fp16.safetensors"] = b"a variant latentfield must not fetch"
    files["README.md"] = b"# tiny"
    files["unet/diffusion_pytorch_model.safetensors"] = b"another model's weights"
    commit = hub.add_commit(REPO, files)

    a = load_adapter(REPO)
    assert a.name == REPO and a.latent_shape == (2, 8, 8)
    assert a.fingerprint == load_adapter(str(src)).fingerprint  # the same map as the local directory
    p = a.provenance
    assert p["repo_id"] == REPO and p["revision"] == "main" and p["commit"] == commit and p["subfolder"] is None
    assert p["files"] == {"config.json": _sha(src / "config.json"),
                          "diffusion_pytorch_model.safetensors": _sha(src / "diffusion_pytorch_model.safetensors")}
    fetched = [path for method, path, _ in hub.requests if method == "GET" and "/resolve/" in path]
    assert sorted(f.rsplit("/", 1)[-1] for f in fetched) == ["config.json", "diffusion_pytorch_model.safetensors"]
    snapshot = tmp_path / "hf-cache" / "models--acme--tiny-vae" / "snapshots" / commit
    assert sorted(f.name for f in snapshot.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]


def test_cached_rerun_downloads_nothing_and_survives_a_stopped_hub(hub, tmp_path):
    hub.add_folder(REPO, save_tiny_autoencoder_kl(tmp_path / "src"))
    first = load_adapter(REPO)
    assert _weights_gets(hub) == 1
    again = load_adapter(REPO)
    assert _weights_gets(hub) == 1 and hub.count("HEAD") == 2  # no new HEAD or GET of a file
    assert again.fingerprint == first.fingerprint and again.provenance == first.provenance
    hub.stop()  # online but unreachable: the client falls back to the cache, like diffusers does
    assert load_adapter(REPO).fingerprint == first.fingerprint


def test_pinned_revision_loads_the_old_weights(hub, tmp_path):
    old = hub.add_folder(REPO, save_tiny_autoencoder_kl(tmp_path / "v1", seed=0), tags=("v1",))
    new = hub.add_folder(REPO, save_tiny_autoencoder_kl(tmp_path / "v2", seed=1))
    latest, pinned = load_adapter(REPO), load_adapter(f"{REPO}@v1")
    assert latest.provenance["commit"] == new and pinned.provenance["commit"] == old
    assert pinned.provenance["revision"] == "v1" and pinned.name == f"{REPO}@v1"
    assert latest.fingerprint != pinned.fingerprint
    assert pinned.fingerprint == load_adapter(str(tmp_path / "v1")).fingerprint
    # The same commit by hash, in the spec or as an option, is the same map.
    assert load_adapter(f"{REPO}@{old}").fingerprint == pinned.fingerprint
    assert load_adapter(REPO, revision=old).fingerprint == pinned.fingerprint
    with pytest.raises(AdapterError, match="two revisions"):
        load_adapter(f"{REPO}@v1", revision="main")


def test_pipeline_repo_resolves_to_its_vae(hub, tmp_path):
    pipe = tmp_path / "pipe"
    save_tiny_autoencoder_kl(pipe / "vae")
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                       "vae": ["diffusers", "AutoencoderKL"]}))
    (pipe / "unet").mkdir()
    (pipe / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x" * 4096)
    (pipe / "unet" / "config.json").write_text("{}")
    hub.add_folder("acme/pipe", pipe)
    a = load_adapter("acme/pipe")
    assert a.latent_shape == (2, 8, 8) and a.provenance["subfolder"] == "vae"
    assert set(a.provenance["files"]) == {"model_index.json", "vae/config.json",
                                          "vae/diffusion_pytorch_model.safetensors"}
    assert hub.count("GET", "/unet/") == 0
    b = load_adapter("acme/pipe", subfolder="vae")
    assert b.fingerprint == a.fingerprint and b.name == "acme/pipe/vae"
    with pytest.raises(AdapterError, match="no folder 'text_encoder'"):
        load_adapter("acme/pipe", subfolder="text_encoder")


# -- offline --------------------------------------------------------------------------------------

def test_offline_uses_the_cache_and_names_a_missing_entry(hub, tmp_path, monkeypatch):
    hub.add_folder(REPO, save_tiny_autoencoder_kl(tmp_path / "src"), tags=("v1",))
    online = load_adapter(REPO)
    n = len(hub.requests)
    # --offline / local_files_only=True: from the cache, no request at all.
    assert load_adapter(REPO, local_files_only=True).fingerprint == online.fingerprint
    hub.add_folder("acme/other", save_tiny_autoencoder_kl(tmp_path / "other", seed=3))
    with pytest.raises(AdapterError) as e:
        load_adapter("acme/other", local_files_only=True)
    msg = str(e.value)
    assert msg.startswith("acme/other is not in the local Hugging Face cache") and "`local_files_only`" in msg and "\n" not in msg
    assert "downloads are off (--offline)" in as_flags(msg)  # the CLI's words
    assert "nor is there a local folder acme/other" in msg  # a mistyped local path reads as an id: say both
    line = assert_one_line_error(run_cli("probe", "acme/other", "--offline", "--out", str(tmp_path / "r"), "--quiet"))
    assert "downloads are off (--offline" in line
    with pytest.raises(AdapterError, match=r"acme/tiny-vae@v1 is not in the local Hugging Face cache"):
        load_adapter(f"{REPO}@v1", local_files_only=True)  # main is cached, the tag never was
    assert len(hub.requests) == n
    # HF_HUB_OFFLINE=1: the same, and the message names that switch.
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert load_adapter(REPO).fingerprint == online.fingerprint
    with pytest.raises(AdapterError, match=r"downloads are off \(HF_HUB_OFFLINE=1\)"):
        load_adapter("acme/other")
    assert len(hub.requests) == n


def test_unreachable_hub_and_no_cache_is_one_line(hub, tmp_path):
    hub.add_folder(REPO, save_tiny_autoencoder_kl(tmp_path / "src"))
    hub.stop()
    with pytest.raises(AdapterError) as e:
        load_adapter(REPO)
    assert "cannot be reached" in str(e.value) and "\n" not in str(e.value)


# -- pickle policy --------------------------------------------------------------------------------

def _pickle_repo(hub, tmp_path, repo, state_dict):
    src = save_tiny_autoencoder_kl(tmp_path / repo.replace("/", "_"))
    files = {"config.json": (src / "config.json").read_bytes()}
    torch.save(state_dict(src), tmp_path / "w.bin")
    files["diffusion_pytorch_model.bin"] = (tmp_path / "w.bin").read_bytes()
    hub.add_commit(repo, files)
    return src


def _real_state_dict(src):
    from safetensors.torch import load_file
    return load_file(src / "diffusion_pytorch_model.safetensors")


class _Payload:
    """Unpickling this object creates a marker file: the attack a weights-only loader must stop."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_only_repo_is_refused_unless_opted_in_and_then_weights_only(hub, tmp_path, monkeypatch):
    src = _pickle_repo(hub, tmp_path, "acme/pickled", _real_state_dict)
    with pytest.raises(AdapterError) as e:
        load_adapter("acme/pickled")
    msg = str(e.value)
    assert "only pickle weights" in msg and "safe_serialization=True" in msg and "`allow_pickle`=True" in msg
    assert "opt in with --model-option allow_pickle=True" in as_flags(msg)  # the CLI's words
    assert "\n" not in msg and hub.count("GET", ".bin") == 0  # refused before a byte of it was fetched
    line = assert_one_line_error(run_cli("probe", "acme/pickled", "--out", str(tmp_path / "r"), "--quiet"))
    assert "only pickle weights" in line
    # Opted in: loaded, and every torch.load on the way is weights_only=True.
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k.get("weights_only")) or real_load(*a, **k))
    a = load_adapter("acme/pickled", allow_pickle=True)
    assert calls and all(w is True for w in calls)
    assert a.fingerprint == load_adapter(str(src)).fingerprint
    assert set(a.provenance["files"]) == {"config.json", "diffusion_pytorch_model.bin"}
    line = assert_one_line_error(run_cli("probe", "acme/pickled", "--model-option", "allow_pickle=maybe",
                                             "--out", str(tmp_path / "r2"), "--quiet"))
    assert "allow_pickle must be true or false" in line  # an opt-in is never guessed from a typo


def test_pickle_that_runs_code_stays_refused_with_allow_pickle(hub, tmp_path):
    marker = tmp_path / "pwned"
    _pickle_repo(hub, tmp_path, "acme/evil", lambda src: {"0.weight": torch.zeros(1), "payload": _Payload(marker)})
    with open(tmp_path / "control.pkl", "wb") as f:  # the payload is real: a plain unpickler runs it
        pickle.dump(_Payload(tmp_path / "control"), f)
    with open(tmp_path / "control.pkl", "rb") as f:
        pickle.load(f)
    assert (tmp_path / "control").exists()
    with pytest.raises(AdapterError, match="refused to load"):
        load_adapter("acme/evil", allow_pickle=True)
    assert not marker.exists()


# -- errors ---------------------------------------------------------------------------------------

def test_unknown_id_and_unknown_revision_name_their_cause(hub, tmp_path):
    hub.add_folder(REPO, save_tiny_autoencoder_kl(tmp_path / "src"))
    line = assert_one_line_error(run_cli("probe", "acme/missing", "--out", str(tmp_path / "r"), "--quiet"))
    assert "acme/missing: no such local path, and no such model repository on the Hub" in line
    line = assert_one_line_error(run_cli("probe", f"{REPO}@v9", "--out", str(tmp_path / "r"), "--quiet"))
    assert "revision 'v9' not found on the Hub" in line
    with pytest.raises(AdapterError, match="revision '0{40}' not found"):
        load_adapter(REPO, revision="0" * 40)  # a commit hash skips the revision lookup: still named


def test_gated_repo_needs_a_token_and_never_prints_it(hub, tmp_path, monkeypatch):
    hub.add_folder("acme/gated", save_tiny_autoencoder_kl(tmp_path / "src"))
    hub.gate("acme/gated", token="hf_secret_token_123")
    line = assert_one_line_error(run_cli("probe", "acme/gated", "--out", str(tmp_path / "r"), "--quiet"))
    assert "acme/gated is a gated repository" in line and "HF_TOKEN" in line
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_456")
    line = assert_one_line_error(run_cli("probe", "acme/gated", "--out", str(tmp_path / "r"), "--quiet"))
    assert "gated repository" in line and "hf_wrong_token_456" not in line
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_123")  # huggingface_hub's own token handling
    a = load_adapter("acme/gated")
    assert a.latent_shape == (2, 8, 8) and "hf_secret_token_123" not in json.dumps(a.provenance)
    gets = [auth for method, path, auth in hub.requests if method == "GET" and path.startswith("/acme/gated/resolve/")]
    assert gets and all(gets)  # every file download carried the token (the client's own handling)


# -- integrity and provenance ---------------------------------------------------------------------

def test_altered_cached_weights_are_refused(hub, tmp_path, monkeypatch):
    hub.add_folder(REPO, save_tiny_autoencoder_kl(tmp_path / "src"))
    a = load_adapter(REPO)
    blobs = tmp_path / "hf-cache" / "models--acme--tiny-vae" / "blobs"
    weights = blobs / a.provenance["files"]["diffusion_pytorch_model.safetensors"]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.chmod(0o644)
    weights.write_bytes(bytes(data))
    with pytest.raises(AdapterError, match="does not match the sha256"):
        load_adapter(REPO, local_files_only=True)


def test_local_checkpoints_carry_path_and_sha256(tmp_path, taef2_dir):
    src = save_tiny_autoencoder_kl(tmp_path / "pipe" / "vae")
    (tmp_path / "pipe" / "model_index.json").write_text(json.dumps({"vae": ["diffusers", "AutoencoderKL"]}))
    p = load_adapter(str(tmp_path / "pipe")).provenance
    assert p["path"] == str((tmp_path / "pipe").resolve())
    assert p["files"] == {"model_index.json": _sha(tmp_path / "pipe" / "model_index.json"),
                          "vae/config.json": _sha(src / "config.json"),
                          "vae/diffusion_pytorch_model.safetensors": _sha(src / "diffusion_pytorch_model.safetensors")}
    # An original TAESD pair given by one of its files: both halves are hashed (sha256 from shared/README.md).
    p = load_adapter(str(taef2_dir / "taef2_encoder.pth"), image_shape=(3, 16, 16)).provenance
    assert p["files"] == {
        "taef2_encoder.pth": "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
        "taef2_decoder.pth": "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5"}


def test_audit_of_a_hub_id_records_and_reproduces_its_commit(hub, tmp_path):
    hub.add_folder(REPO, save_tiny_autoencoder_kl(tmp_path / "src"))
    out = tmp_path / "audit"
    assert main(["audit", REPO, "--seeds", "8", "--max-steps", "40", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    prov = report["provenance"]
    assert prov["repo_id"] == REPO and len(prov["commit"]) == 40
    assert prov["files"]["diffusion_pytorch_model.safetensors"] == _sha(tmp_path / "src" / "diffusion_pytorch_model.safetensors")
    summary = json.loads((out / "probe" / "summary.json").read_text())
    assert summary["adapter"]["provenance"] == prov
    html = (out / "report.html").read_text()
    assert prov["commit"] in html and f"latentfield audit {REPO}@{prov['commit']}" in html
    # main moves on; the report's id + commit still name exactly the audited weights.
    hub.add_folder(REPO, save_tiny_autoencoder_kl(tmp_path / "v2", seed=5))
    assert load_adapter(REPO).fingerprint != report["fingerprint"]
    again = tmp_path / "again"
    assert main(["audit", f"{prov['repo_id']}@{prov['commit']}", "--seeds", "8", "--max-steps", "40",
                 "--out", str(again), "--quiet"]) == 0
    rerun = json.loads((again / "report.json").read_text())
    assert rerun["fingerprint"] == report["fingerprint"] and rerun["provenance"]["commit"] == prov["commit"]
    assert rerun["basin_sizes"] == report["basin_sizes"]


def test_train_decoder_encoder_from_the_hub(hub, tmp_path):
    """``load_encoder`` (latentfield train-decoder) resolves ids the same way."""
    from transformers import Dinov2Config, Dinov2Model
    from latentfield.adapters.frozen_encoder import load_encoder
    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                             image_size=28, patch_size=7)).save_pretrained(tmp_path / "dino")
    hub.add_folder("acme/tiny-dino", tmp_path / "dino", tags=("v1",))
    enc = load_encoder("acme/tiny-dino@v1")
    local = load_encoder(str(tmp_path / "dino"))
    x = torch.rand(2, 3, 28, 28)
    assert enc.native_size == 28 and torch.equal(enc(x), local(x))
