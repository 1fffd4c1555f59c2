"""train-decoder: a conv decoder fitted on a frozen tiny timm / transformers encoder, resumable, and the
result loaded back through load_adapter as an ordinary adapter."""
from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from safetensors.torch import load_file, save_file

from latentfield.adapters import AdapterError, load_adapter
from latentfield.adapters.frozen_encoder import load_encoder
from latentfield.adapters.trained_decoder import train_decoder
from latentfield.probe.cli import main
from latentfield.probe.data import load_images
from latentfield.probe.rundir import ProbeConfig, run_probe

TIMM = "vit_tiny_patch16_224"
TIMM_ARGS = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def timm_checkpoint(tmp_path_factory):
    import timm
    torch.manual_seed(0)
    model = timm.create_model(TIMM, pretrained=False, num_classes=0, **TIMM_ARGS)
    path = tmp_path_factory.mktemp("timm") / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _model_args():
    return [a for k, v in TIMM_ARGS.items() for a in ("--model-arg", f"{k}={v}")]


def test_cli_trains_and_result_is_an_adapter(timm_checkpoint, tmp_path, capsys):
    out = tmp_path / "dec"
    argv = ["train-decoder", f"timm:{TIMM}", "--checkpoint", str(timm_checkpoint), *_model_args(),
            "--images", "faces", "--limit", "48", "--epochs", "3", "--batch-size", "16", "--width", "16",
            "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert "latent shape (32, 4, 4)" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    mse = cfg["training"]["mse"]
    assert len(mse) == 3 and mse[-1] < mse[0]  # it learns
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [f"epoch_000{i}.safetensors" for i in (1, 2, 3)]
    umask = os.umask(0)
    os.umask(umask)
    for p in [*out.iterdir(), *(out / "checkpoints").iterdir()]:  # whole files, with a plain open()'s mode
        assert p.is_dir() or stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, p
    a = load_adapter(str(out))
    assert a.image_shape == (3, 32, 32) and a.latent_shape == (32, 4, 4) and a.value_range == (0.0, 1.0)
    x = load_images("faces", (3, 32, 32), limit=4)
    z = a.encode(x)
    y = a.decode(z)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert torch.equal(a.f(z), a.f(z))
    res = run_probe(a, ProbeConfig(n_seeds=4, max_steps=10, batch_size=4), progress=False)
    assert sum(res.counts.values()) == 4 and torch.isfinite(res.end_points).all()
    # The same pair through the timm:NAME spec, and the error without a decoder.
    assert load_adapter(f"timm:{TIMM}", decoder=str(out)).fingerprint == a.fingerprint
    with pytest.raises(AdapterError, match="train-decoder"):
        load_adapter(f"timm:{TIMM}", checkpoint=str(timm_checkpoint), model_args=TIMM_ARGS)
    # Rerunning the finished command resumes at the end and changes nothing.
    before = load_file(str(out / "decoder.safetensors"))
    assert main(argv) == 0
    after = load_file(str(out / "decoder.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_resume_gives_the_uninterrupted_result(timm_checkpoint, tmp_path):
    enc = load_encoder(f"timm:{TIMM}", timm_checkpoint, TIMM_ARGS)
    x = load_images("faces", (3, 32, 32), limit=24)
    kw = dict(batch_size=8, width=8, seed=1, progress=False)
    train_decoder(enc, x, tmp_path / "straight", epochs=2, **kw)

    class Stop(Exception):
        pass

    def stop_after_first(epoch, loss):
        if epoch == 1:
            raise Stop
    with pytest.raises(Stop):
        train_decoder(enc, x, tmp_path / "resumed", epochs=2, on_epoch=stop_after_first, **kw)
    assert not (tmp_path / "resumed" / "decoder.safetensors").exists()
    train_decoder(enc, x, tmp_path / "resumed", epochs=2, **kw)
    a, b = (load_file(str(tmp_path / d / "decoder.safetensors")) for d in ("straight", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(AdapterError, match="other settings"):
        train_decoder(enc, x, tmp_path / "resumed", epochs=2, batch_size=4, width=8, seed=1, progress=False)
    with pytest.raises(AdapterError, match="other settings"):  # the same settings, other images (their hash)
        train_decoder(enc, x.flip(0), tmp_path / "resumed", epochs=2, **kw)
    (tmp_path / "resumed" / "run.json").write_text('{"encoder": ')  # damaged: refused, not resumed blindly
    with pytest.raises(AdapterError) as e:
        train_decoder(enc, x, tmp_path / "resumed", epochs=2, **kw)
    assert str(e.value) == f"{tmp_path / 'resumed' / 'run.json'} is unreadable; choose another `out` or delete it"


def test_changed_encoder_weights_are_detected(timm_checkpoint, tmp_path):
    ckpt = tmp_path / "enc.safetensors"
    ckpt.write_bytes(timm_checkpoint.read_bytes())
    enc = load_encoder(f"timm:{TIMM}", ckpt, TIMM_ARGS)
    train_decoder(enc, load_images("faces", (3, 32, 32), limit=8), tmp_path / "d", epochs=1, width=8, progress=False)
    w = load_file(str(ckpt))
    w["cls_token"] = w["cls_token"] + 1
    save_file(w, str(ckpt))
    with pytest.raises(AdapterError, match="differ from those this decoder was trained on"):
        load_adapter(str(tmp_path / "d"))


@pytest.mark.parametrize("flag,value", [("--lr", "0"), ("--epochs", "-1"), ("--width", "0")])
def test_bad_training_settings_name_the_value(timm_checkpoint, capsys, tmp_path, flag, value):
    argv = ["train-decoder", f"timm:{TIMM}", "--checkpoint", str(timm_checkpoint), *_model_args(),
            "--images", "faces", "--limit", "8", "--out", str(tmp_path / "o"), "--quiet", flag, value]
    assert main(argv) == 2
    what = {"--lr": "learning rate", "--epochs": "epochs", "--width": "width"}[flag]
    assert f"{what} must be positive, got {value}" in capsys.readouterr().err.replace(".0", "")


def test_timm_needs_a_checkpoint(capsys, tmp_path):
    assert main(["train-decoder", f"timm:{TIMM}", "--images", "faces", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "needs a weights file" in capsys.readouterr().err


def test_transformers_encoder_directory(tmp_path):
    from transformers import Dinov2Config, Dinov2Model
    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                             image_size=28, patch_size=7)).save_pretrained(tmp_path / "dino")
    enc = load_encoder(str(tmp_path / "dino"))
    assert enc.native_size == 28
    train_decoder(enc, load_images("digits", (3, 28, 28), limit=16), tmp_path / "d", epochs=1, width=8,
                  progress=False)
    a = load_adapter(str(tmp_path / "d"))
    assert a.latent_shape == (16, 4, 4)  # CLS dropped, 4 x 4 patch grid
    z = a.encode(torch.rand(2, 3, 28, 28))
    assert torch.equal(a.f(z), a.f(z))


def test_tree_moved_as_a_whole_still_loads(timm_checkpoint, tmp_path):
    """The config records the encoder checkpoint's path relative to the decoder folder as well."""
    project = tmp_path / "project"
    (project / "weights").mkdir(parents=True)
    ckpt = project / "weights" / "enc.safetensors"
    ckpt.write_bytes(timm_checkpoint.read_bytes())
    enc = load_encoder(f"timm:{TIMM}", ckpt, TIMM_ARGS)
    train_decoder(enc, load_images("faces", (3, 32, 32), limit=8), project / "dec", epochs=1, width=8, progress=False)
    before = load_adapter(str(project / "dec"))
    moved = project.rename(tmp_path / "elsewhere")
    after = load_adapter(str(moved / "dec"))
    assert after.fingerprint == before.fingerprint
    z = torch.randn(2, *after.latent_shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(after.f(z), before.f(z))
    (moved / "weights" / "enc.safetensors").unlink()  # gone from both places: a one-line error, not a crash
    with pytest.raises(AdapterError, match="no such weights file"):
        load_adapter(str(moved / "dec"))
