"""Initial latent points. Seed i depends only on (seed, i), never on batch or chunk sizes."""
from __future__ import annotations

import hashlib
import math
from typing import Sequence

import torch

from latentfield.adapters.errors import UsageError

INITS = ("gaussian", "uniform", "orthogonal", "data")
ORTHO_BLOCK = 512  # orthogonal seeds come in fixed blocks of min(d, 512) mutually orthogonal rows


def _generator(seed: int, *key: object) -> torch.Generator:
    digest = hashlib.blake2b(repr((seed, *key)).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


def make_seeds(init: str, indices: Sequence[int], latent_shape: Sequence[int], seed: int = 0,
               sigma: float = 1.0, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """Seeds for the given seed indices, shape (len(indices), *latent_shape), float32 on CPU.

    ``gaussian``: N(0, sigma^2 I). ``uniform``: U[low, high]^d. ``orthogonal``: rows of a random
    orthogonal matrix (QR of a Gaussian, blocks of ``ORTHO_BLOCK`` seeds) scaled to norm sigma*sqrt(d),
    the typical norm of a Gaussian seed. ``data`` seeds are encoded images (see ``encode_seeds``).
    """
    d = math.prod(latent_shape)
    out = torch.empty((len(indices), d))
    if init == "gaussian":
        for row, i in enumerate(indices):
            out[row] = torch.randn(d, generator=_generator(seed, "gaussian", int(i))) * sigma
    elif init == "uniform":
        for row, i in enumerate(indices):
            out[row] = torch.rand(d, generator=_generator(seed, "uniform", int(i))) * (high - low) + low
    elif init == "orthogonal":
        m = min(d, ORTHO_BLOCK)
        blocks: dict[int, torch.Tensor] = {}
        for row, i in enumerate(indices):
            b = int(i) // m
            if b not in blocks:
                g = torch.randn(d, m, generator=_generator(seed, "orthogonal", b), dtype=torch.float64)
                q, r = torch.linalg.qr(g)
                q = q * torch.sign(torch.diagonal(r))  # unique QR: the sign convention of r's diagonal
                blocks[b] = (q.T * sigma * math.sqrt(d)).float()
            out[row] = blocks[b][int(i) % m]
    else:
        raise UsageError(f"unknown init {init!r}: choose one of {', '.join(INITS)}")
    return out.view(len(indices), *latent_shape)
