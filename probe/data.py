"""Image inputs: folders, array files, and the small real datasets that ship with scikit-learn/-image.

Everything returns float32 tensors shaped (N, C, H, W) with values in [0, 1]; adapters convert to
their own range with ``adapter.from_unit``.
"""
from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from latentfield.adapters.errors import UsageError, first_line
from latentfield.adapters.fingerprint import values_sha256

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# Images are opened (header only) and refused above this many pixels, before any decoding: a small file
# can declare a huge image (a "decompression bomb"). PIL's own default limit, about 9459 x 9459.
MAX_IMAGE_PIXELS = 89_478_485
DIGITS_SIZE = 32
DIGITS_N_TRAIN = 1500  # fixed split of scikit-learn's 1797 digits: first 1500 train, the rest test


def images_sha256(x: torch.Tensor) -> str:
    """SHA-256 of a tensor's float32 values: identifies a set of images (or seeds) for resuming."""
    return values_sha256(x)


def load_images(source: str | Path, image_shape: Sequence[int] | None = None, limit: int | None = None) -> torch.Tensor:
    """Load images from a folder, an array file (.npy/.npz/.safetensors) or a built-in name.

    Built-in names: ``digits`` / ``digits:train`` / ``digits:test`` (scikit-learn, 32 x 32),
    ``faces`` (scikit-image ``lfw_subset``), ``noise`` (uniform noise, needs ``image_shape``).
    Arrays must be (N, C, H, W) or (N, H, W) with values in [0, 1]. With ``image_shape`` (C, H, W)
    images are resized (bilinear) and converted to that many channels.
    """
    if limit is not None and limit < 1:
        raise UsageError(f"limit must be >= 1 image, got {limit}")
    name = str(source)
    if name in BUILTINS or name.split(":")[0] in BUILTINS:
        x = _builtin(name, image_shape, limit)
    else:
        path = Path(name).expanduser()
        if not path.exists():
            raise UsageError(f"{name}: no such file or folder (give a folder of images, an .npy/.npz/"
                             f".safetensors array, or one of: {', '.join(BUILTINS)})")
        x = _from_folder(path, limit) if path.is_dir() else _from_array(path)
    if limit is not None:
        x = x[:limit]
    if image_shape is not None:
        try:
            x = fit_to_shape(x, image_shape)
        except UsageError as e:
            raise UsageError(f"{name}: {e}") from None
    return x.contiguous()


def fit_to_shape(x: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
    """Resize (bilinear, antialiased) and convert channels to ``image_shape``. The only channel
    conversions are grey -> RGB (copied) and RGB -> grey (mean); other counts must match the model's."""
    c, h, w = (int(s) for s in image_shape)
    if x.shape[1] != c:
        if (x.shape[1], c) == (1, 3):
            x = x.expand(-1, c, -1, -1)
        elif (x.shape[1], c) == (3, 1):
            x = x.mean(1, keepdim=True)
        else:
            hint = ("; is the array channels-last (N, H, W, C)? give (N, C, H, W)"
                    if x.shape[1] > 4 and x.shape[-1] in (1, 3, 4) else "")
            raise UsageError(f"images with {x.shape[1]} channels, the model takes {c} (only grey <-> RGB, "
                             f"1 <-> 3 channels, are converted){hint}")
    if tuple(x.shape[2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0, 1)


def _from_array(path: Path) -> torch.Tensor:
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arr = _one_array(path, {k: z[k] for k in z.files})
        elif path.suffix == ".safetensors":
            from safetensors.numpy import load_file
            arr = _one_array(path, load_file(str(path)))
        else:
            raise UsageError(f"{path}: unsupported file type (use a folder of images, .npy, .npz or .safetensors)")
    except UsageError:
        raise
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise UsageError(f"{path}: cannot read images ({first_line(e)})") from None
    except Exception as e:  # safetensors' SafetensorError (a bad header) derives from Exception only
        if type(e).__name__ != "SafetensorError":
            raise
        raise UsageError(f"{path}: not a readable safetensors file ({first_line(e)})") from None
    x = torch.as_tensor(np.asarray(arr, dtype=np.float32))
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise UsageError(f"{path}: expected an array shaped (N, C, H, W) or (N, H, W), got {tuple(x.shape)}")
    if not len(x):
        raise UsageError(f"{path}: the array holds no images (shape {tuple(x.shape)})")
    if not torch.isfinite(x).all():
        raise UsageError(f"{path}: {int((~torch.isfinite(x)).sum())} values are NaN or infinite")
    if x.min() < 0 or x.max() > 1:
        hint = "; divide 8-bit images by 255" if arr.dtype == np.uint8 else ""
        raise UsageError(f"{path}: values must lie in [0, 1] (found {x.min():.3g} to {x.max():.3g}){hint}")
    return x


def _one_array(path: Path, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The only array of an archive, or the one named ``images``."""
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    if "images" in arrays:
        return arrays["images"]
    raise UsageError(f"{path}: holds {len(arrays)} arrays ({', '.join(sorted(arrays)[:5])}); "
                     "name the images 'images' or keep one array")


def _from_folder(path: Path, limit: int | None) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    files = files[:limit] if limit else files
    imgs = []
    for p in files:
        try:
            with warnings.catch_warnings():  # PIL warns from 1x its limit and raises from 2x; we refuse at 1x
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(p)  # reads the header only
            with im:
                _check_pixels(p, *im.size)
                im = im.convert("L" if im.mode in ("L", "LA", "I", "I;16", "1") else "RGB")
                imgs.append(torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0))
        except Image.DecompressionBombError:
            raise UsageError(f"{p}: declares an image over twice PIL's pixel limit; refused as a possible "
                             f"decompression bomb (images up to {MAX_IMAGE_PIXELS:,} pixels are taken)") from None
        except UnidentifiedImageError:
            raise UsageError(f"{p}: not a readable image (PIL cannot identify it)") from None
        except OSError as e:  # a truncated or unreadable file
            raise UsageError(f"{p}: not a readable image ({e.strerror or e})") from None
    if len({t.ndim for t in imgs}) > 1:  # grey and colour mixed: make every image RGB
        imgs = [t[..., None].expand(*t.shape, 3) if t.ndim == 2 else t for t in imgs]
    shapes = {t.shape for t in imgs}
    if len(shapes) > 1:  # mixed sizes: bring all to the first image's size
        h, w = imgs[0].shape[:2]
        imgs = [_resize_hw(t, h, w) for t in imgs]
    x = torch.stack(imgs)
    return x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)


def _check_pixels(path: Path, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise UsageError(f"{path}: {width} x {height} = {width * height:,} pixels, over the limit of "
                         f"{MAX_IMAGE_PIXELS:,}; refused as a possible decompression bomb (downscale it first)")


def _resize_hw(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    chw = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    out = F.interpolate(chw, size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
    return out[0] if t.ndim == 2 else out.permute(1, 2, 0)


# -- built-in real datasets ---------------------------------------------------------------------

def digits(split: str = "all") -> tuple[torch.Tensor, np.ndarray]:
    """scikit-learn digits upsampled to 1 x 32 x 32 in [0, 1], with labels.

    ``split``: ``train`` (first 1500), ``test`` (remaining 297) or ``all``.
    """
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False).clamp(0, 1)
    y = d.target
    if split == "train":
        return x[:DIGITS_N_TRAIN], y[:DIGITS_N_TRAIN]
    if split == "test":
        return x[DIGITS_N_TRAIN:], y[DIGITS_N_TRAIN:]
    if split != "all":
        raise UsageError(f"digits split must be train, test or all, not {split!r}")
    return x, y


def faces() -> torch.Tensor:
    """scikit-image's ``lfw_subset`` faces (200 gray 25 x 25 images), as (N, 1, 25, 25)."""
    from skimage.data import lfw_subset
    return torch.from_numpy(lfw_subset().astype(np.float32))[:, None].clamp(0, 1)


def noise_images(n: int, image_shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *image_shape), generator=g)


def _builtin(name: str, image_shape: Sequence[int] | None, limit: int | None) -> torch.Tensor:
    base, _, arg = name.partition(":")
    if base == "digits":
        return digits(arg or "all")[0]
    if base == "faces":
        try:
            return faces()
        except ImportError:
            raise UsageError("faces needs scikit-image: pip install scikit-image") from None
    if base == "noise":
        if image_shape is None:
            raise UsageError("noise images need an image shape")
        return noise_images(int(arg) if arg else (limit or 256), image_shape)
    raise UsageError(f"unknown dataset {name!r}")


BUILTINS = ("digits", "faces", "noise")
