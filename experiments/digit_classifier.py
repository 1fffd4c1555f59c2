"""scikit-learn's digits in MNIST's layout, and a digit classifier trained on them that labels decoded
MNIST-style images (experiment 7).

MNIST digits are scaled into a 20 x 20 box and centred in a 28 x 28 frame; scikit-learn's 8 x 8 digits
fill their frame. ``mnist_layout`` puts them in MNIST's layout (the Meehan VAEs reconstruct them with
MSE 0.025 this way against 0.12 stretched to the full frame). The classifier sees neither layout nor
stroke width: each image is deslanted (second moments, the usual MNIST step), cropped to its ink and
scaled into a 20 x 20 box, then described by HOG (scikit-image) for a logistic regression. The two
styles differ (blocky 8 x 8 scans against thin MNIST pens), so its accuracy on held-out scikit-learn
digits is an upper bound of its accuracy on decoded attractors; docs/results.md reports both.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

BOX, FRAME = 20, 28


def mnist_layout(images8: np.ndarray) -> torch.Tensor:
    """scikit-learn digits (N, 8, 8) with values 0..16 -> (N, 1, 28, 28) in [0, 1], MNIST's layout."""
    x = torch.from_numpy(np.asarray(images8, np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(BOX, BOX), mode="bilinear", align_corners=False).clamp(0, 1)
    pad = (FRAME - BOX) // 2
    return F.pad(x, (pad, pad, pad, pad))


def sklearn_digits(split: str = "all") -> tuple[torch.Tensor, np.ndarray]:
    """(images (N, 1, 28, 28), labels (N,)): first 1500 ``train``, last 297 ``test`` (as ``probe.data.digits``)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x, y = mnist_layout(d.images), d.target
    return {"train": (x[:1500], y[:1500]), "test": (x[1500:], y[1500:]), "all": (x, y)}[split]


def _deslant(im: np.ndarray) -> np.ndarray:
    """Shear the image so that its ink's principal axis is vertical (image moments)."""
    r, c = np.mgrid[:im.shape[0], :im.shape[1]]
    total = im.sum() + 1e-8
    mr, mc = (r * im).sum() / total, (c * im).sum() / total
    slant = ((r - mr) * (c - mc) * im).sum() / (((r - mr) ** 2 * im).sum() + 1e-8)
    shear = np.array([[1.0, 0.0], [slant, 1.0]])
    centre = np.array(im.shape) / 2.0
    return ndimage.affine_transform(im, shear, offset=np.array([mr, mc]) - shear @ centre, order=1)


def _ink_box(im: np.ndarray, threshold: float = 0.25) -> np.ndarray:
    """Crop to the pixels above ``threshold`` x max and scale (aspect kept) into a centred BOX x BOX."""
    im = _deslant(im / max(float(im.max()), 1e-6))
    ink = im > threshold
    out = np.zeros((BOX, BOX), np.float32)
    if not ink.any():
        return out
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    crop = im[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scale = BOX / max(crop.shape)
    crop = np.clip(ndimage.zoom(crop, (max(1.0, crop.shape[0] * scale) / crop.shape[0],
                                       max(1.0, crop.shape[1] * scale) / crop.shape[1]), order=1), 0, 1)[:BOX, :BOX]
    top, left = (BOX - crop.shape[0]) // 2, (BOX - crop.shape[1]) // 2
    out[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
    return out


def features(images: torch.Tensor) -> np.ndarray:
    """Images (N, 1, H, W) in [0, 1] -> HOG features (N, F) of their deslanted ink boxes."""
    from skimage.feature import hog
    return np.array([hog(_ink_box(im[0].numpy()), orientations=9, pixels_per_cell=(5, 5), cells_per_block=(2, 2))
                     for im in images.float().cpu()])


class DigitClassifier:
    """Logistic regression on :func:`features`; ``predict`` gives (labels (N,), probabilities (N, 10))."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression
        self.model = LogisticRegression(max_iter=3000).fit(features(images), labels)

    def predict(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        if not len(images):
            return np.zeros(0, int), np.zeros((0, 10))
        p = self.model.predict_proba(features(images))
        return self.model.classes_[p.argmax(1)], p

    def accuracy(self, images: torch.Tensor, labels: np.ndarray) -> float:
        return float(np.mean(self.predict(images)[0] == labels))
