"""Small real models for tests, importable as ``py:models:NAME`` when tests/ is on PYTHONPATH."""
from __future__ import annotations

import torch

from latentfield.adapters.demo import DemoAdapter, DemoAutoencoder


def random_conv_ae(bottleneck: int = 6, seed: int = 0) -> DemoAdapter:
    """A randomly initialised demo-architecture conv AE, with weights scaled so f contracts."""
    torch.manual_seed(seed)
    model = DemoAutoencoder(bottleneck=bottleneck, width=8)
    with torch.no_grad():
        model.encoder[-1].weight.mul_(0.5)
    return DemoAdapter(model.eval(), name="random-conv-ae")


def conv_pair():
    """A bare (encoder, decoder) pair of nn.Modules with no image shape of its own."""
    torch.manual_seed(1)
    enc = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 4, 4), torch.nn.Tanh())
    dec = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 3, 4, 4), torch.nn.Sigmoid())
    return enc, dec
