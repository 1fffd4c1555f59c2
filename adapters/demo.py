"""The bundled demo model: a small convolutional autoencoder trained on scikit-learn's digits.

Architecture in the style of the paper's appendix: stride-2 conv encoder, linear bottleneck of size
``k``, transposed-conv decoder with a sigmoid output. Checkpoints are single safetensors files whose
metadata holds the configuration, so a file is a complete model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open
from torch import nn

from . import atomic

from .base import Adapter, AdapterError, check_options
from .registry import register_adapter, register_path_loader

FAMILY = "latentfield-demo"
WEIGHTS_DIR = Path(__file__).parent / "weights"
VARIANTS = {"generalize": "demo_generalize.safetensors", "memorize": "demo_memorize.safetensors"}


class DemoAutoencoder(nn.Module):
    """Conv AE for 1 x 32 x 32 images in [0, 1] with a k-dimensional linear bottleneck."""

    def __init__(self, bottleneck: int = 16, width: int = 16, image_size: int = 32) -> None:
        super().__init__()
        self.config = {"bottleneck": bottleneck, "width": width, "image_size": image_size}
        c, s = width, image_size // 8
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * c, 4 * c, 3, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(4 * c * s * s, bottleneck),
        )
        self.decoder = nn.Sequential(
            nn.Linear(bottleneck, 4 * c * s * s), nn.ReLU(), nn.Unflatten(1, (4 * c, s, s)),
            nn.ConvTranspose2d(4 * c, 2 * c, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(c, 1, 4, 2, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def save_demo_checkpoint(model: DemoAutoencoder, path: str | Path, record: dict[str, Any] | None = None) -> None:
    """Write weights + config (safetensors metadata) and, if given, a training record beside it."""
    path = Path(path)
    meta = {"family": FAMILY, "config": json.dumps(model.config)}
    atomic.write_tensors(path, model.state_dict(), metadata=meta)
    if record is not None:
        atomic.write_text(path.with_suffix(".json"), json.dumps(record, indent=1) + "\n")


def is_demo_checkpoint(path: Path) -> bool:
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("family") == FAMILY
    except Exception:
        return False


def load_demo_model(path: str | Path) -> DemoAutoencoder:
    path = Path(path)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("family") != FAMILY:
        raise AdapterError(f"{path}: not a latentfield demo checkpoint")
    model = DemoAutoencoder(**json.loads(meta["config"]))
    model.load_state_dict(load_file(str(path)))
    return model.eval()


class DemoAdapter(Adapter):
    """Adapter over a :class:`DemoAutoencoder`; images 1 x 32 x 32 in [0, 1], latents (k,)."""

    value_range = (0.0, 1.0)

    def __init__(self, model: DemoAutoencoder, name: str = "demo") -> None:
        super().__init__()
        self.model, self.name = model, name
        s = model.config["image_size"]
        self.image_shape, self.latent_shape = (1, s, s), (model.config["bottleneck"],)
        self._eval()

    def modules(self) -> list[nn.Module]:
        return [self.model]

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encoder(x)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decoder(z)

    def set_image_shape(self, image_shape) -> None:
        if tuple(image_shape) != self.image_shape:
            raise AdapterError(f"{self.name} takes images of shape {self.image_shape}, not {tuple(image_shape)}")

    @property
    def training_record(self) -> dict[str, Any] | None:
        """The JSON record written by ``train-demo`` (training subset, hyper-parameters), if present."""
        path = getattr(self, "path", None)
        if path is not None and path.with_suffix(".json").exists():
            return json.loads(path.with_suffix(".json").read_text())
        return None


def demo_checkpoint_path(variant: str) -> Path:
    if variant not in VARIANTS:
        raise AdapterError(f"unknown demo variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    path = WEIGHTS_DIR / VARIANTS[variant]
    if not path.exists():
        raise AdapterError(f"{path} is missing (reinstall latentfield), or train it again with `latentfield "
                           f"train-demo --variant {variant}` and load the file it writes by path")
    return path


def _adapter_from_file(path: Path, name: str) -> DemoAdapter:
    adapter = DemoAdapter(load_demo_model(path), name=name)
    adapter.path = Path(path)
    return adapter


@register_adapter("demo", help="bundled digits autoencoder; demo:generalize (default) or demo:memorize")
def load_demo(arg: str | None = None, **options: Any) -> DemoAdapter:
    check_options(options, (), "demo")
    variant = arg or "generalize"
    return _adapter_from_file(demo_checkpoint_path(variant), f"demo:{variant}")


@register_path_loader("demo-file", is_demo_checkpoint)
def load_demo_file(path: Path, **options: Any) -> DemoAdapter:
    check_options(options, (), "demo checkpoint")
    return _adapter_from_file(path, Path(path).stem)
