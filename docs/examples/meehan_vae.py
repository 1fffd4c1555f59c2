"""Worked example: a research checkpoint wrapped for latentfield with a ``py:module:attr`` spec.

The MNIST VAEs of Meehan, Chaudhuri and Dasgupta, "A Non-Parametric Test to Detect Data-Copying in
Generative Models" (AISTATS 2020; MIT licence), latent d = 10, 30, 50. Their repository ships bare
state dicts (``VAE_d{d}.pkl``, saved from a CUDA device), so we rebuild the architecture, load the
weights, and hand latentfield an (encoder, decoder) pair:

    PYTHONPATH=docs/examples latentfield probe py:meehan_vae:d10 --image-shape 1,28,28 --out run/

Images are 1 x 28 x 28 in [0, 1]; the encoder is the posterior mean (the log-variance head is loaded
but unused: sampling would make f random); the decoder ends in a sigmoid, as in training. The weights
folder is ``$LATENTFIELD_MEEHAN_DIR``, else ``../shared/weights/meehan_vae`` beside the project root.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from latentfield.adapters import AdapterError, TorchAutoencoder

ENV = "LATENTFIELD_MEEHAN_DIR"
DEFAULT_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "meehan_vae"
LATENT_DIMS = (10, 30, 50)


class MeehanVAE(nn.Module):
    """The paper's MLP VAE; attribute names match the state-dict keys (encoder.{0,2,4}, encoder_mean,
    encoder_lv, decoder.{0,2,4,6})."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(784, 8 * d), nn.ReLU(), nn.Linear(8 * d, 4 * d), nn.ReLU(),
                                     nn.Linear(4 * d, 2 * d), nn.ReLU())
        self.encoder_mean = nn.Linear(2 * d, d)
        self.encoder_lv = nn.Linear(2 * d, d)
        self.decoder = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, 4 * d), nn.ReLU(),
                                     nn.Linear(4 * d, 8 * d), nn.ReLU(), nn.Linear(8 * d, 784))


def default_dir() -> Path:
    """``$LATENTFIELD_MEEHAN_DIR``, else ``../shared/weights/meehan_vae`` next to the project root."""
    return Path(os.environ.get(ENV) or DEFAULT_DIR)


def load(d: int, weights_dir: str | Path | None = None) -> TorchAutoencoder:
    """The d-dimensional VAE as an adapter: (B, 1, 28, 28) in [0, 1] <-> (B, d) posterior means."""
    if d not in LATENT_DIMS:
        raise AdapterError(f"meehan_vae: no checkpoint for latent dimension {d} (available: 10, 30, 50)")
    path = Path(weights_dir or default_dir()) / f"VAE_d{d}.pkl"
    if not path.is_file():
        raise AdapterError(f"meehan_vae: {path} not found; set {ENV} to the folder holding VAE_d10.pkl, "
                           "VAE_d30.pkl and VAE_d50.pkl")
    # Saved from CUDA: without map_location the load fails on a CPU-only machine. weights_only=True
    # refuses pickles that hold anything but tensors (a pickle can run code when it is opened).
    state = torch.load(path, weights_only=True, map_location="cpu")
    vae = MeehanVAE(d)
    vae.load_state_dict(state)  # strict: a missing or misnamed key is an error, never a random layer
    encoder = nn.Sequential(nn.Flatten(), vae.encoder, vae.encoder_mean)
    decoder = nn.Sequential(vae.decoder, nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28)))
    return TorchAutoencoder(encoder, decoder, image_shape=(1, 28, 28), name=f"meehan-vae-d{d}")


def d10() -> TorchAutoencoder:
    return load(10)


def d30() -> TorchAutoencoder:
    return load(30)


def d50() -> TorchAutoencoder:
    return load(50)
