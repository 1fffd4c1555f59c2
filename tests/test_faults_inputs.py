"""Faults of the model and of the inputs: each ends in exactly one line on stderr and a known exit code
(2: the user's input, 3: the model), never a traceback; --debug / LATENTFIELD_DEBUG=1 adds the traceback.
And train-demo writes where --out says, never into the installed package."""
from __future__ import annotations

import struct
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from builders import assert_one_line_error, run_cli
from latentfield.adapters import ModelError, load_adapter
from latentfield.probe import cli as cli_module
from latentfield.probe.cli import main

# A 1 x 4 x 4 image autoencoder with a 3-d latent and a place for a fault in each call.
FAULTY = '''
import numpy as np
import torch
from torch import nn
{top}


class Enc(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 3)

    def forward(self, x):
        z = torch.tanh(self.lin(x.flatten(1)))
        {enc}
        return z


class Dec(nn.Module):
    calls = 0

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 16)

    def forward(self, z):
        Dec.calls += 1
        x = torch.sigmoid(self.lin(z)).view(-1, 1, 4, 4)
        {dec}
        return x


def build():
    torch.manual_seed(0)
    {build}
    return Enc(), Dec()
'''

CUDA_ASSERT = ("if Dec.calls >= 3: raise RuntimeError('CUDA error: device-side assert triggered\\n"
               "CUDA kernel errors might be asynchronously reported')")


def write_model(folder: Path, name: str, top: str = "", enc: str = "pass", dec: str = "pass",
                build: str = "pass") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(FAULTY).format(top=top, enc=enc, dec=dec, build=build))
    return f"py:{name}:build"


def run_main(argv: list[str], capsys) -> tuple[int, list[str]]:
    code = main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


def probe_argv(spec: str, out: Path, *extra: str) -> list[str]:
    return ["probe", spec, "--image-shape", "1,4,4", "--seeds", "8", "--batch-size", "8", "--max-steps", "20",
            "--out", str(out), "--quiet", *extra]


# -- the model fails: exit 3 (or 2 for a spec that cannot load), one line --------------------------

@pytest.mark.parametrize("name,fault,expected", [
    ("fi_dec_raises", {"dec": CUDA_ASSERT},
     "latentfield: model error: py:fi_dec_raises:build: decode failed on latents (8, 3): RuntimeError: "
     "CUDA error: device-side assert triggered<safe> (--debug shows the traceback)"),
    ("fi_dec_shape", {"dec": "x = x[..., :3]"},
     "latentfield: model error: py:fi_dec_shape:build: decode of latents (8, 3) returned shape (8, 1, 4, 3), "
     "expected (8, 1, 4, 4)<safe> (--debug shows the traceback)"),
    ("fi_dec_batch", {"dec": "x = x[:1]"},
     "latentfield: model error: py:fi_dec_batch:build: decode of latents (8, 3) returned shape (1, 1, 4, 4), "
     "expected a batch of 8<safe> (--debug shows the traceback)"),
    ("fi_enc_numpy", {"enc": "z = z.numpy()"},  # found at load: the latent shape is inferred by one encode
     "latentfield: model error: py:fi_enc_numpy:build: encode of images (1, 1, 4, 4) returned a numpy.ndarray, "
     "not a torch.Tensor (--debug shows the traceback)"),
])
def test_model_faults_are_one_model_error_line(tmp_path, monkeypatch, capsys, name, fault, expected):
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = write_model(tmp_path, name, **fault)
    code, err = run_main(probe_argv(spec, tmp_path / "out"), capsys)
    # a failure while probing also says what the run layer kept (none here: the first chunk failed)
    expected = expected.replace("<safe>", f"; 0 of 8 seeds are safe on disk in {tmp_path / 'out'}; rerun to resume")
    assert (code, err) == (3, [expected])


@pytest.mark.parametrize("name,fault,expected", [
    ("fi_import_raises", {"top": "raise RuntimeError('no GPU driver found')"},
     "latentfield: error: py:fi_import_raises:build: cannot import: fi_import_raises raised RuntimeError: "
     "no GPU driver found"),
    ("fi_syntax", {"top": "def broken(:"},
     "latentfield: error: py:fi_syntax:build: cannot import: fi_syntax raised SyntaxError: invalid syntax"),
    ("fi_build_raises", {"build": "raise ValueError('weights file not found')"},
     "latentfield: error: py:fi_build_raises:build: calling build() raised ValueError: weights file not found"),
])
def test_a_spec_that_cannot_load_is_one_usage_line(tmp_path, monkeypatch, capsys, name, fault, expected):
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = write_model(tmp_path, name, **fault)
    code, err = run_main(probe_argv(spec, tmp_path / "out"), capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith(expected), err


def test_model_raising_mid_run_in_a_real_process(tmp_path):
    spec = write_model(tmp_path / "code", "fi_proc", dec=CUDA_ASSERT)
    res = run_cli(*probe_argv(spec, tmp_path / "out"), pythonpath=[tmp_path / "code"], subprocess=True)
    assert_one_line_error(res, "latentfield: model error: py:fi_proc:build: decode failed on latents (8, 3)", code=3,
                          prefix="latentfield: model error: ")


@pytest.mark.parametrize("how", ["env", "flag"])
def test_debug_shows_the_traceback(tmp_path, monkeypatch, how):
    monkeypatch.delenv("LATENTFIELD_DEBUG", raising=False)
    spec = write_model(tmp_path / "code", f"fi_debug_{how}", dec=CUDA_ASSERT)
    args = probe_argv(spec, tmp_path / "out")
    res = (run_cli(*args, pythonpath=[tmp_path / "code"], env={"LATENTFIELD_DEBUG": "1"}) if how == "env"
           else run_cli(*args, "--debug", pythonpath=[tmp_path / "code"]))  # --debug after the subcommand too
    assert res.returncode == 3
    assert "Traceback" in res.stderr and "in forward" in res.stderr  # down to the model's own frame
    assert "The above exception was the direct cause" in res.stderr  # the model's error is the cause
    last = res.stderr.strip().splitlines()[-1]
    assert last == (f"latentfield: model error: py:fi_debug_{how}:build: decode failed on latents (8, 3): "
                    "RuntimeError: CUDA error: device-side assert triggered; "
                    f"0 of 8 seeds are safe on disk in {tmp_path / 'out'}; rerun to resume")


def test_model_error_note_is_printed_after_the_message():
    """The hook the run layer uses to say how much finished work is kept."""
    e = ModelError("m: decode failed on latents (8, 3): RuntimeError: boom")
    e.add_note_text("8 of 16 seeds are safe on disk")
    assert cli_module._one_line(e, debug=True) == (
        "latentfield: model error: m: decode failed on latents (8, 3): RuntimeError: boom; "
        "8 of 16 seeds are safe on disk", 3)


def test_model_error_keeps_the_original_as_cause(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    a = load_adapter(write_model(tmp_path, "fi_cause", dec="raise KeyError('layer9')"), image_shape=(1, 4, 4))
    with pytest.raises(ModelError) as e:
        a.decode(torch.zeros(2, 3))
    assert isinstance(e.value.__cause__, KeyError)
    assert str(e.value) == "py:fi_cause:build: decode failed on latents (2, 3): KeyError: 'layer9'"


# -- bad numbers and bad inputs: exit 2, one line, before any work ------------------------------------

@pytest.mark.parametrize("flag,value,needle", [
    ("--tol", "inf", "tolerance must be finite, got inf"),
    ("--tol", "nan", "tolerance must be positive, got nan"),
    ("--sigma", "inf", "sigma must be finite, got inf"),
    ("--sigma", "nan", "sigma must be positive, got nan"),
])
def test_non_finite_tolerance_and_sigma_are_refused(tmp_path, capsys, flag, value, needle):
    code, err = run_main(["probe", "demo", flag, value, "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert (code, err) == (2, [f"latentfield: error: {needle}"])
    assert not (tmp_path / "o").exists()


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares width x height grey pixels but holds a single row: a few dozen bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 8))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("side,needle", [
    (10_000, "10000 x 10000 = 100,000,000 pixels, over the limit of 89,478,485"),  # PIL only warns here
    (30_000, "declares an image over twice PIL's pixel limit"),  # PIL raises DecompressionBombError
])
def test_decompression_bomb_is_refused_in_one_line(tmp_path, capsys, side, needle):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _png_header_only(folder / "bomb.png", side, side)
    assert (folder / "bomb.png").stat().st_size < 200
    code, err = run_main(["probe", "demo", "--init", "data", "--data", str(folder), "--out", str(tmp_path / "o"),
                          "--quiet"], capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"latentfield: error: {folder / 'bomb.png'}: ") and needle in err[0], err[0]
    assert "decompression bomb" in err[0]


@pytest.mark.parametrize("payload,needle", [
    (struct.pack("<Q", 16) + b"{not json at all", "not a readable safetensors file (SafetensorError: "),
    (struct.pack("<Q", 10**9) + b"{}", "not a readable safetensors file (SafetensorError: "),
    (b"\x01\x02", "not a readable safetensors file (SafetensorError: "),
])
def test_safetensors_data_with_a_bad_header_is_one_line(tmp_path, capsys, payload, needle):
    bad = tmp_path / "images.safetensors"
    bad.write_bytes(payload)
    code, err = run_main(["probe", "demo", "--init", "data", "--data", str(bad), "--out", str(tmp_path / "o"),
                          "--quiet"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"latentfield: error: {bad}: {needle}"), err


def test_truncated_npz_is_one_line(tmp_path, capsys):
    good = tmp_path / "good.npz"
    np.savez(good, images=np.zeros((2, 1, 32, 32), np.float32))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(good.read_bytes()[:-40])
    code, err = run_main(["probe", "demo", "--init", "data", "--data", str(bad), "--out", str(tmp_path / "o"),
                          "--quiet"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"latentfield: error: {bad}: cannot read images ("), err


@pytest.mark.parametrize("shape,needle", [
    ((4, 2, 32, 32), "images with 2 channels, the model takes 1 (only grey <-> RGB, 1 <-> 3 channels, are converted)"),
    ((4, 4, 32, 32), "images with 4 channels, the model takes 1 (only grey <-> RGB, 1 <-> 3 channels, are converted)"),
    ((4, 32, 32, 3), "images with 32 channels, the model takes 1 (only grey <-> RGB, 1 <-> 3 channels, are "
                     "converted); is the array channels-last (N, H, W, C)? give (N, C, H, W)"),
])
def test_channel_counts_the_model_does_not_take_are_refused(tmp_path, capsys, shape, needle):
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).random(shape, dtype=np.float32))
    code, err = run_main(["probe", "demo", "--init", "data", "--data", str(data), "--out", str(tmp_path / "o"),
                          "--quiet"], capsys)
    assert (code, err) == (2, [f"latentfield: error: {data}: {needle}"])


def test_rgb_to_grey_is_still_converted(tmp_path, capsys):
    data = tmp_path / "rgb.npy"
    np.save(data, np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32))
    code = main(["probe", "demo", "--init", "data", "--data", str(data), "--max-steps", "5",
                 "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 0 and "3 seeds" in capsys.readouterr().out


# -- train-demo writes where --out says ---------------------------------------------------------------

def test_train_demo_writes_into_the_working_folder_not_the_package(tmp_path, monkeypatch, capsys):
    from latentfield.adapters.demo import WEIGHTS_DIR
    from latentfield.probe.workflows import train_demo as demo_training
    monkeypatch.setitem(demo_training.RECIPES, "memorize",
                        demo_training.DemoRecipe(bottleneck=2, n_train=16, epochs=1, batch_size=16))
    bundled = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in WEIGHTS_DIR.iterdir()}
    monkeypatch.chdir(tmp_path)
    assert main(["train-demo", "--variant", "memorize", "--quiet"]) == 0
    out = capsys.readouterr().out
    written = Path("demo-checkpoints") / "demo_memorize.safetensors"
    assert f"wrote {written}" in out and f"latentfield audit {written}" in out
    assert sorted(p.name for p in (tmp_path / "demo-checkpoints").iterdir()) == ["demo_memorize.json",
                                                                               "demo_memorize.safetensors"]
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in WEIGHTS_DIR.iterdir()} == bundled
    a = load_adapter(str(written))  # loaded by path
    assert a.latent_shape == (2,) and a.training_record["recipe"]["epochs"] == 1
    assert main(["train-demo", "--variant", "memorize", "--out", str(tmp_path / "elsewhere"), "--quiet"]) == 0
    assert (tmp_path / "elsewhere" / "demo_memorize.safetensors").is_file()
