"""load_images: every accepted input form gives (N, C, H, W) in [0, 1]; every bad one is a UsageError."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import save_file

from latentfield.probe.data import load_images
from latentfield.adapters.errors import UsageError

RNG = np.random.default_rng(0)


def test_array_files_of_every_kind(tmp_path):
    grey = RNG.random((5, 8, 8), dtype=np.float32)
    np.save(tmp_path / "a.npy", grey)
    np.savez(tmp_path / "b.npz", images=grey[:, None], labels=np.arange(5))
    save_file({"x": grey}, str(tmp_path / "c.safetensors"))
    for name in ("a.npy", "b.npz", "c.safetensors"):
        x = load_images(tmp_path / name)
        assert x.shape == (5, 1, 8, 8) and x.dtype == torch.float32
        torch.testing.assert_close(x[:, 0], torch.from_numpy(grey))
    x = load_images(tmp_path / "a.npy", (3, 16, 16), limit=2)  # resized, grey -> RGB, limited
    assert x.shape == (2, 3, 16, 16) and torch.equal(x[:, 0], x[:, 2])


def test_folder_with_grey_and_colour_images_is_all_rgb(tmp_path):
    Image.fromarray((RNG.random((6, 6)) * 255).astype(np.uint8), "L").save(tmp_path / "a.png")
    Image.fromarray((RNG.random((6, 6, 3)) * 255).astype(np.uint8), "RGB").save(tmp_path / "b.png")
    Image.fromarray((RNG.random((12, 12, 3)) * 255).astype(np.uint8), "RGB").save(tmp_path / "c.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    x = load_images(tmp_path)
    assert x.shape == (3, 3, 6, 6) and 0 <= x.min() and x.max() <= 1
    grey = np.asarray(Image.open(tmp_path / "a.png"), dtype=np.float32) / 255
    for c in range(3):  # the grey image is copied into every channel
        np.testing.assert_allclose(x[0, c].numpy(), grey)


@pytest.mark.parametrize("make,needle", [
    (lambda p: np.save(p / "d.npy", RNG.random((2, 2, 3, 4, 4))), "expected an array shaped"),
    (lambda p: np.save(p / "d.npy", np.zeros((0, 8, 8))), "holds no images"),
    (lambda p: np.save(p / "d.npy", np.full((2, 8, 8), np.nan)), "128 values are NaN or infinite"),
    (lambda p: np.save(p / "d.npy", np.full((2, 8, 8), 200, np.uint8)), "divide 8-bit images by 255"),
    (lambda p: np.save(p / "d.npy", RNG.random((2, 8, 8)) * 2), "values must lie in [0, 1]"),
    (lambda p: np.save(p / "d.npy", np.array([None, 1], dtype=object)), "cannot read images"),
    (lambda p: np.savez(p / "d.npz", a=np.zeros((2, 8, 8)), b=np.zeros((2, 8, 8))), "holds 2 arrays (a, b)"),
    (lambda p: save_file({"a": np.zeros((2, 8, 8), np.float32), "b": np.zeros(2, np.float32)},
                         str(p / "d.safetensors")), "name the images 'images'"),
    (lambda p: (p / "d.csv").write_text("1,2"), "unsupported file type"),
    (lambda p: ((p / "d").mkdir(), (p / "d" / "x.png").write_bytes(b"not a png")), "x.png: not a readable image"),
    (lambda p: (p / "d").mkdir(), "folder holds no images"),
])
def test_bad_inputs_are_usage_errors(tmp_path, make, needle):
    make(tmp_path)
    (path,) = [p for p in tmp_path.iterdir()]
    with pytest.raises(UsageError) as e:
        load_images(path)
    assert needle in str(e.value) and str(e.value).count(str(path)) == 1, str(e.value)


def test_limit_below_one_is_refused():
    with pytest.raises(UsageError, match="limit must be >= 1 image, got 0"):
        load_images("digits", limit=0)
