"""bench/bench_step_trace.py --spectrum on a linear map with known eigenvalues."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from builders import load_script



def test_spectrum_row_of_a_linear_map():
    bench = load_script("bench", "bench_step_trace")
    c, s = 0.5 * math.cos(math.pi / 3), 0.5 * math.sin(math.pi / 3)  # eigenvalues 0.25 +- 0.433i
    a = torch.tensor([[0.1, 0, 0, 0, 0], [0, 0.5, 0, 0, 0], [0, 0, 0.9, 0, 0], [0, 0, 0, c, -s], [0, 0, 0, s, c]],
                     dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    m = q @ a @ q.T  # same eigenvalues, no longer block diagonal
    f = lambda z: z.flatten(1) @ m.T  # noqa: E731
    adapter = SimpleNamespace(f=f, f_differentiable=f, latent_shape=(5,))
    cells = [v.strip() for v in bench.spectrum_row(adapter, torch.ones(5, dtype=torch.float64)).strip("|").split("|")]
    # |lambda| = 0.1, 0.5, 0.9, 0.5, 0.5: one of five below 0.2; all Re(lambda) < 1.
    # h = -2 Re(mu) / |mu|^2 per eigenvalue (mu = lambda - 1): 2.22, 4, 20, and 1.5 / 0.75 = 2 for the pair.
    assert [float(v) for v in cells] == pytest.approx([0.2, 0.5, 0.9, 0, 2.0], abs=2e-3)
