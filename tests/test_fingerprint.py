"""The fingerprint names what a model computes: same weights + other code -> another fingerprint; the same
model -> the same fingerprint in every process; every buffer hashes (0-dim, integer, bfloat16)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from builders import assert_one_line_error, run_cli
from latentfield.adapters import TorchAutoencoder, fingerprint_tensors, load_adapter
from latentfield.adapters.fingerprint import describe_callable
from latentfield.probe.cli import main

# A 1 x 4 x 4 image autoencoder with a 3-d latent; {act} and {scale} make models with equal state dicts.
MODULE_MODEL = '''
import torch
from torch import nn


class Enc(nn.Module):
    def __init__(self, scale=1.0):
        super().__init__()
        self.lin = nn.Linear(16, 3)
        self.scale = scale

    def forward(self, x):
        return torch.{act}(self.lin(x.flatten(1))) * self.scale


class Dec(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 16)

    def forward(self, z):
        return torch.sigmoid(self.lin(z)).view(-1, 1, 4, 4)


def build():
    torch.manual_seed(0)
    return Enc({scale}), Dec()
'''

# The same map from plain functions and lambdas over module-level tensors (no nn.Module anywhere).
PLAIN_MODEL = '''
import torch

_g = torch.Generator().manual_seed(0)
W_E = torch.randn(16, 3, generator=_g) * 0.3
W_D = torch.randn(3, 16, generator=_g) * 0.3


def encode(x):
    return torch.tanh(x.flatten(1) @ W_E)


def decode(z):
    return torch.sigmoid(z @ W_D).view(-1, 1, 4, 4)


def build():
    return (lambda x: encode(x)), (lambda z: decode(z))
'''


def write_module(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    return path


def probe_args(spec: str, out: Path) -> list[str]:
    return ["probe", spec, "--image-shape", "1,4,4", "--seeds", "8", "--max-steps", "40", "--out", str(out), "--quiet"]


# -- same weights, other code -------------------------------------------------------------------------

def test_tanh_and_relu_forward_with_equal_weights_differ(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    write_module(tmp_path, "fp_act_tanh", MODULE_MODEL.format(act="tanh", scale=1.0))
    write_module(tmp_path, "fp_act_relu", MODULE_MODEL.format(act="relu", scale=1.0))
    a = load_adapter("py:fp_act_tanh:build", image_shape=(1, 4, 4))
    b = load_adapter("py:fp_act_relu:build", image_shape=(1, 4, 4))
    sa, sb = a.encoder.state_dict(), b.encoder.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a.f(z), b.f(z))  # the two maps really differ
    assert a.fingerprint != b.fingerprint


def test_scale_held_as_plain_attribute_changes_the_fingerprint(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    # through two py: modules whose files differ only in the scale
    write_module(tmp_path, "fp_scale_1", MODULE_MODEL.format(act="tanh", scale=1.0))
    write_module(tmp_path, "fp_scale_2", MODULE_MODEL.format(act="tanh", scale=2.0))
    a = load_adapter("py:fp_scale_1:build", image_shape=(1, 4, 4))
    b = load_adapter("py:fp_scale_2:build", image_shape=(1, 4, 4))
    assert a.fingerprint != b.fingerprint
    # the same class and file, only the attribute differs: seen through the module's attributes
    import fp_scale_1
    torch.manual_seed(0)
    enc1, dec1 = fp_scale_1.Enc(1.0), fp_scale_1.Dec()
    enc2, dec2 = fp_scale_1.Enc(2.0), fp_scale_1.Dec()
    enc2.load_state_dict(enc1.state_dict())
    dec2.load_state_dict(dec1.state_dict())
    one = TorchAutoencoder(enc1, dec1, image_shape=(1, 4, 4))
    two = TorchAutoencoder(enc2, dec2, image_shape=(1, 4, 4))
    assert one.fingerprint != two.fingerprint
    enc2.scale = 1.0
    two._fingerprint = None
    assert one.fingerprint == two.fingerprint


def test_closure_and_global_values_of_plain_callables_count(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    write_module(tmp_path, "fp_plain", PLAIN_MODEL)
    import fp_plain

    def scaled(s):
        return lambda x: fp_plain.encode(x) * s

    fp = [TorchAutoencoder(scaled(s), fp_plain.decode, image_shape=(1, 4, 4)).fingerprint for s in (1.0, 2.0, 1.0)]
    assert fp[0] != fp[1] and fp[0] == fp[2]
    a = TorchAutoencoder(fp_plain.encode, fp_plain.decode, image_shape=(1, 4, 4))
    before = a.fingerprint
    fp_plain.W_E = fp_plain.W_E * 2  # a module-level tensor the function reads
    a._fingerprint = None
    assert a.fingerprint != before
    text = describe_callable(scaled(1.0))
    assert " at 0x" not in text and "closure s=1.0" in text  # no memory address, the captured value


def test_cli_second_run_of_other_code_into_the_same_out_is_never_the_first_models(tmp_path):
    """Same module name, class path and weights; only the forward changed (tanh -> relu) between two runs, each in
    a fresh process (the file changes on disk between them); the relu reference runs in this process, which
    imports the module for the first time after the change."""
    code, run, fresh = tmp_path / "code", tmp_path / "run", tmp_path / "fresh"
    write_module(code, "fp_cli_net", MODULE_MODEL.format(act="tanh", scale=1.0))
    first = run_cli(*probe_args("py:fp_cli_net:build", run), pythonpath=[code], subprocess=True)
    assert first.returncode == 0, first.stderr
    tanh_result = load_file(str(run / "attractors.safetensors"))["end_points"]
    write_module(code, "fp_cli_net", MODULE_MODEL.format(act="relu", scale=1.0))
    second = run_cli(*probe_args("py:fp_cli_net:build", run), pythonpath=[code], subprocess=True)
    reference = run_cli(*probe_args("py:fp_cli_net:build", fresh), pythonpath=[code])
    assert reference.returncode == 0, reference.stderr
    relu_result = load_file(str(fresh / "attractors.safetensors"))["end_points"]
    assert not torch.equal(relu_result, tanh_result)
    if second.returncode == 0:  # kept apart: then it must be the relu model's own result
        assert torch.equal(load_file(str(run / "attractors.safetensors"))["end_points"], relu_result)
    else:  # refused, in one line, and the first run's files are intact
        assert_one_line_error(second, "other settings")
        assert torch.equal(load_file(str(run / "attractors.safetensors"))["end_points"], tanh_result)


# -- the same model, the same fingerprint --------------------------------------------------------------

def test_plain_callables_fingerprint_is_the_same_in_two_processes(tmp_path, monkeypatch):
    write_module(tmp_path, "fp_plain_proc", PLAIN_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    here = load_adapter("py:fp_plain_proc:build", image_shape=(1, 4, 4)).fingerprint
    # another process whose string hashing (set and dict order) differs from this one's
    hash_seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    script = ("from latentfield.adapters import load_adapter; "
              "print(load_adapter('py:fp_plain_proc:build', image_shape=(1, 4, 4)).fingerprint)")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONHASHSEED": hash_seed}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert len(here) == 64 and res.stdout.strip() == here


def test_cli_run_of_plain_callables_resumes(tmp_path):
    write_module(tmp_path / "code", "fp_plain_cli", PLAIN_MODEL)
    run = tmp_path / "run"
    first = run_cli(*probe_args("py:fp_plain_cli:build", run), pythonpath=[tmp_path / "code"])
    assert first.returncode == 0, first.stderr
    key = (run / "run.json").read_text()
    ends = load_file(str(run / "attractors.safetensors"))["end_points"]
    (run / "attractors.safetensors").unlink()  # as if killed before the end: the chunks must be reused
    second = run_cli(*probe_args("py:fp_plain_cli:build", run), pythonpath=[tmp_path / "code"])
    assert second.returncode == 0, second.stderr
    assert (run / "run.json").read_text() == key
    assert torch.equal(load_file(str(run / "attractors.safetensors"))["end_points"], ends)


def test_name_and_file_location_do_not_count(tmp_path):
    from latentfield.adapters.demo import demo_checkpoint_path
    copy = tmp_path / "elsewhere.safetensors"
    copy.write_bytes(demo_checkpoint_path("memorize").read_bytes())
    assert load_adapter(str(copy)).fingerprint == load_adapter("demo:memorize").fingerprint


def test_fingerprint_is_the_same_before_and_after_the_first_forward():
    """transformers sets bookkeeping attributes and hooks lazily, on the first call that asks for hidden
    states (SigLIP here, as the RAE encoder calls it)."""
    from transformers import SiglipVisionConfig, SiglipVisionModel
    torch.manual_seed(0)
    cfg = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                             image_size=8, patch_size=4)
    vit = SiglipVisionModel(cfg).eval()
    a = TorchAutoencoder(lambda x: vit(pixel_values=x, output_hidden_states=True).hidden_states[-1],
                         lambda z: z[:, :, :3].reshape(-1, 3, 2, 2).repeat(1, 1, 4, 4))
    a.image_shape, a.latent_shape = (3, 8, 8), (4, 16)
    before = a.fingerprint
    a.f(torch.randn(2, 4, 16))
    a._fingerprint = None
    assert a.fingerprint == before


# -- every tensor hashes ------------------------------------------------------------------------------

def _bn_pair():
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 3))
    dec = nn.Sequential(nn.Linear(3, 16), nn.Unflatten(1, (1, 4, 4)), nn.Sigmoid())
    return enc, dec


def test_batchnorm_0dim_long_buffer_and_bfloat16_hash():
    enc, dec = _bn_pair()
    tracked = enc[1].num_batches_tracked
    assert tracked.ndim == 0 and tracked.dtype == torch.long
    a = TorchAutoencoder(enc, dec, image_shape=(1, 4, 4))
    before = a.fingerprint
    tracked += 1  # a buffer that does not even change the eval map: still part of the fingerprint
    a._fingerprint = None
    assert a.fingerprint != before
    a.to(dtype=torch.bfloat16)
    assert a.fingerprint not in (before, None) and len(a.fingerprint) == 64
    assert fingerprint_tensors([("x", torch.tensor(3))]) != fingerprint_tensors([("x", torch.tensor(4))])
    half = torch.ones(2, dtype=torch.bfloat16)
    assert fingerprint_tensors([("y", half)]) != fingerprint_tensors([("y", half * 2)])


def test_non_persistent_buffers_count():
    enc, dec = _bn_pair()
    enc.register_buffer("shift", torch.zeros(1), persistent=False)
    assert "shift" not in enc.state_dict()
    a = TorchAutoencoder(enc, dec, image_shape=(1, 4, 4))
    before = a.fingerprint
    enc.shift += 1
    a._fingerprint = None
    assert a.fingerprint != before


def test_tensor_hash_is_unchanged_for_tensors_that_hashed_before():
    """Trained decoders record their encoder's weight hash: it must not move for tensors of >= 1 dimension."""
    t = torch.arange(6, dtype=torch.float32).view(2, 3)
    old = hashlib.sha256(b"w|(2, 3)|torch.float32|" + t.numpy().tobytes()).hexdigest()
    assert fingerprint_tensors([("w", t)]) == old


def test_train_decoder_on_timm_resnet18(tmp_path, capsys):
    """The README's example: a BatchNorm encoder (0-dim num_batches_tracked buffers) through train-decoder."""
    import timm
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=0)
    ckpt = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    out = tmp_path / "dec"
    argv = ["train-decoder", "timm:resnet18", "--checkpoint", str(ckpt), "--images", "faces", "--limit", "4",
            "--image-shape", "3,64,64", "--epochs", "1", "--batch-size", "4", "--width", "8", "--out", str(out),
            "--quiet"]
    assert main(argv) == 0
    assert "latent shape (512, 2, 2)" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["encoder_fingerprint"]
    a = load_adapter(str(out))
    z = a.encode(torch.rand(2, 3, 64, 64))
    assert a.f(z).shape == (2, 512, 2, 2) and len(a.fingerprint) == 64
