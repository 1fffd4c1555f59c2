"""Training of the bundled demo autoencoders on scikit-learn digits (``latentfield train-demo``).

Two recipes show the paper's contrast: ``memorize`` trains on 16 images for many steps (its
attractors sit on training images); ``generalize`` trains on the full 1500-image training split
(its attractors are prototypes that no training image matches better than held-out digits do).
Deterministic: fixed seeds, deterministic torch algorithms.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from latentfield.adapters.demo import DemoAutoencoder, save_demo_checkpoint

from ..data import digits


@dataclass(frozen=True)
class DemoRecipe:
    bottleneck: int
    n_train: int  # images drawn (seeded) from the 1500-image training split; 1500 = all
    epochs: int
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4  # the paper's appendix
    width: int = 16
    seed: int = 0
    # L2 penalty on latents (regularised autoencoders, Ghosh et al. 2020): keeps codes near unit scale,
    # so the paper's N(0, I) seeds land where the data lives instead of in a sliver around the origin.
    latent_penalty: float = 0.0


RECIPES = {
    "memorize": DemoRecipe(bottleneck=8, n_train=16, epochs=3000, batch_size=16, latent_penalty=1e-3),
    "generalize": DemoRecipe(bottleneck=16, n_train=1500, epochs=60, batch_size=64, latent_penalty=1e-3),
}


def training_subset(recipe: DemoRecipe) -> np.ndarray:
    """Indices into the digits training split (sorted), drawn with the recipe's seed."""
    n_split = len(digits("train")[0])
    if recipe.n_train >= n_split:
        return np.arange(n_split)
    return np.sort(np.random.default_rng(recipe.seed).choice(n_split, recipe.n_train, replace=False))


def train_demo(recipe: DemoRecipe, progress: bool = True,
               on_epoch: Callable[[int, DemoAutoencoder], None] | None = None) -> tuple[DemoAutoencoder, dict[str, Any]]:
    """Train one demo autoencoder. Returns the model (eval mode) and its training record.

    ``on_epoch(epoch, model)`` is called after each epoch (e.g. to save training-dynamics checkpoints).
    """
    torch.manual_seed(recipe.seed)
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        x_all, _ = digits("train")
        subset = training_subset(recipe)
        x = x_all[subset]
        model = DemoAutoencoder(recipe.bottleneck, recipe.width, image_size=x.shape[-1])
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        steps_per_epoch = -(-len(x) // recipe.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.epochs * steps_per_epoch)
        g = torch.Generator().manual_seed(recipe.seed)
        losses = []
        for epoch in tqdm(range(recipe.epochs), desc="train-demo", unit="epoch", disable=not progress, leave=False):
            model.train()
            perm = torch.randperm(len(x), generator=g)
            total = 0.0
            for i in range(0, len(x), recipe.batch_size):
                xb = x[perm[i:i + recipe.batch_size]]
                z = model.encoder(xb)
                loss = torch.nn.functional.mse_loss(model.decoder(z), xb)
                if recipe.latent_penalty:
                    loss = loss + recipe.latent_penalty * z.pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(xb)
            losses.append(total / len(x))
            if on_epoch is not None:
                on_epoch(epoch + 1, model.eval())
    finally:
        torch.use_deterministic_algorithms(prev)
    model.eval()
    x_test, _ = digits("test")
    with torch.no_grad():
        test_mse = float(torch.nn.functional.mse_loss(model(x_test), x_test))
    record = {"recipe": asdict(recipe), "dataset": "sklearn digits, 32x32, train split = first 1500",
              "train_indices": subset.tolist(), "final_train_mse": losses[-1], "test_mse": test_mse}
    return model, record


def write_demo_checkpoints(out_dir: str | Path, variants: tuple[str, ...] = tuple(RECIPES),
                           progress: bool = True) -> list[Path]:
    """Train and save ``demo_<variant>.safetensors`` (+ ``.json`` record) for each variant."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for v in variants:
        model, record = train_demo(RECIPES[v], progress=progress)
        path = out_dir / f"demo_{v}.safetensors"
        save_demo_checkpoint(model, path, record)
        paths.append(path)
    return paths
