"""Attractors as a dictionary (the paper's section 4.1).

Encode reference images, approximate each latent by orthogonal matching pursuit (scikit-learn) over
the attractors as atoms, decode, and measure the image MSE against the number of atoms. The same
curve over a random orthonormal basis of the latent space says what "a good dictionary" means.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch

from latentfield.adapters import Adapter

from ..engine.latents import decode_unit, encode_unit


def atom_grid(max_atoms: int, n_points: int = 8) -> list[int]:
    """Roughly geometric numbers of atoms 1 ... ``max_atoms``."""
    if max_atoms < 1:
        return []
    return sorted({int(round(v)) for v in np.geomspace(1, max_atoms, n_points)} | {max_atoms})


def random_orthonormal_basis(dim: int, seed: int = 0) -> np.ndarray:
    """(dim, dim) random orthonormal rows (QR of a Gaussian matrix)."""
    g = np.random.default_rng(seed).standard_normal((dim, dim))
    q, r = np.linalg.qr(g)
    return (q * np.sign(np.diag(r))).T


def omp_codes(latents: np.ndarray, atoms: np.ndarray, n_atoms: int) -> np.ndarray:
    """Sparse approximation of latents (M, D) over unit-norm ``atoms`` (K, D) with at most ``n_atoms``
    non-zeros each. Returns the reconstructed latents (M, D)."""
    with warnings.catch_warnings():  # OMP stops early once a residual is exactly representable
        warnings.simplefilter("ignore", RuntimeWarning)
        from sklearn.linear_model import orthogonal_mp  # lazy: keeps CLI start-up fast
        coef = orthogonal_mp(atoms.T, latents.T, n_nonzero_coefs=min(n_atoms, *atoms.shape), precompute=True)
    coef = coef.reshape(len(atoms), -1)
    return (atoms.T @ coef).T


def _decode_mse(adapter: Adapter, z: np.ndarray, images: torch.Tensor, batch_size: int) -> float:
    """Mean squared error in [0, 1] pixel units between decoded latents (M, D) and images (M, C, H, W)."""
    rec = decode_unit(adapter, torch.from_numpy(z.astype(np.float32)).view(len(z), *adapter.latent_shape), batch_size)
    return float((rec - images).pow(2).sum(dtype=torch.float64)) / images.numel()


def dictionary_test(adapter: Adapter, attractors: torch.Tensor, images: torch.Tensor,
                    n_atoms: Sequence[int] | None = None, seed: int = 0, batch_size: int = 128) -> dict[str, Any]:
    """OMP reconstruction of ``images`` (M, C, H, W) in [0, 1] from their latents.

    Atoms: the attractors (K, *latent), normalised, and a random orthonormal basis (D atoms). For each
    number of atoms n: image MSE of D(OMP_n(E(x))) against x, and the latent relative residual
    ||z - z_hat|| / ||z||. ``mse_autoencoder`` = MSE of D(E(x)) is the floor both curves approach.
    """
    x = images.float()
    z = encode_unit(adapter, x, batch_size)
    zf = z.flatten(1).double().numpy()
    d = zf.shape[1]
    atoms = attractors.flatten(1).double().numpy()
    atoms = atoms / np.maximum(np.linalg.norm(atoms, axis=1, keepdims=True), 1e-12)
    basis = random_orthonormal_basis(d, seed)
    grid = list(n_atoms) if n_atoms is not None else atom_grid(max(len(atoms), d))
    znorm = np.maximum(np.linalg.norm(zf, axis=1), 1e-12)
    out: dict[str, Any] = {"n_atoms": grid, "n_attractors": len(atoms), "latent_dim": d, "n_images": len(x),
                           "mse_attractors": [], "mse_random_basis": [], "residual_attractors": [],
                           "residual_random_basis": []}
    for n in grid:
        for name, dico in (("attractors", atoms), ("random_basis", basis)):
            zh = omp_codes(zf, dico, n)
            out[f"mse_{name}"].append(_decode_mse(adapter, zh, x, batch_size))
            out[f"residual_{name}"].append(float(np.mean(np.linalg.norm(zf - zh, axis=1) / znorm)))
    out["mse_autoencoder"] = _decode_mse(adapter, zf, x, batch_size)
    return out


__all__ = ["atom_grid", "random_orthonormal_basis", "omp_codes", "dictionary_test"]
