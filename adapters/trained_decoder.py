"""A lightweight convolutional decoder fitted on a frozen encoder, and the adapter the pair becomes.

``train_decoder`` fits :class:`ConvDecoder` to invert a :class:`~.frozen_encoder.FrozenEncoder` on a set of
images (pixel MSE, Adam). Every epoch is checkpointed (``checkpoints/epoch_NNNN.safetensors`` with
the optimizer state), so an interrupted run continues where it stopped and ends with the same
weights as an uninterrupted one (the shuffling of epoch e is seeded by (seed, e)). The output
directory holds ``decoder.safetensors`` and ``config.json`` (encoder source, encoder weight
fingerprint, decoder shape, training record); ``load_adapter(out_dir)`` returns the pair as an
ordinary adapter: images (3, H, W) in [0, 1], latent = the encoder's feature map (D, h, w).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from . import atomic, run_record
from .base import AdapterError, check_options
from .family import FamilyAdapter
from .fingerprint import values_sha256
from .registry import register_config_family
from .frozen_encoder import FrozenEncoder, load_encoder

FAMILY = "trained-decoder"


class ConvDecoder(nn.Module):
    """Features (B, D, h, w) -> images (B, C, H, W) in [0, 1].

    A 1x1 projection to ``width`` channels, then ceil(log2(H/h)) stages of nearest 2x upsampling +
    two 3x3 convs (width halves per stage, at least 16), a 3x3 conv to C channels, a resize to
    exactly (H, W) when the strides do not divide it, and a sigmoid.
    """

    def __init__(self, in_channels: int, feature_hw: Sequence[int], image_shape: Sequence[int], width: int = 64) -> None:
        super().__init__()
        self.config = {"in_channels": int(in_channels), "feature_hw": [int(s) for s in feature_hw],
                       "image_shape": [int(s) for s in image_shape], "width": int(width)}
        c, h, w = self.config["image_shape"]
        n_up = max(0, math.ceil(math.log2(max(h / feature_hw[0], w / feature_hw[1]))))
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 1), nn.GELU()]
        ch = width
        for _ in range(n_up):
            out = max(16, ch // 2)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, out, 3, padding=1), nn.GELU(),
                       nn.Conv2d(out, out, 3, padding=1), nn.GELU()]
            ch = out
        layers.append(nn.Conv2d(ch, c, 3, padding=1))
        self.net = nn.Sequential(*layers)
        self.out_hw = (h, w)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.net(z)
        if tuple(x.shape[-2:]) != self.out_hw:
            x = F.interpolate(x, size=self.out_hw, mode="bilinear", align_corners=False)
        return torch.sigmoid(x)


class TrainedDecoderAdapter(FamilyAdapter):
    """Frozen encoder + trained :class:`ConvDecoder`. Images (B, 3, H, W) in [0, 1]; latents (B, D, h, w)."""

    family = FAMILY
    value_range = (0.0, 1.0)

    def __init__(self, encoder: FrozenEncoder, decoder: ConvDecoder, *, name: str) -> None:
        # The encoder's weights enter the fingerprint as a module; its identity here leaves out file paths,
        # so the same model moved to another folder keeps its fingerprint.
        spec = encoder.source["spec"]
        identity = {"spec": f"dir:{Path(spec).name}" if os.path.isabs(spec) else spec,
                    "model_args": encoder.source.get("model_args") or {}}
        super().__init__([encoder, decoder], name=name, clamp=False,  # sigmoid output is already in range
                         options={"encoder": identity})
        self.encoder, self.decoder = encoder, decoder
        self.image_shape = tuple(decoder.config["image_shape"])
        self.latent_shape = (decoder.config["in_channels"], *decoder.config["feature_hw"])

    def set_image_shape(self, image_shape: Sequence[int]) -> None:
        if tuple(int(s) for s in image_shape) != self.image_shape:
            raise AdapterError(f"{self.name}: the decoder was trained for images {self.image_shape}, "
                               f"not {tuple(image_shape)}")

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


# -- training ---------------------------------------------------------------------------------------

def _features(encoder: FrozenEncoder, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([encoder(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"opt.{i}.{k}"] = v if isinstance(v, torch.Tensor) else torch.tensor(v)
    return out


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        _, i, k = key.split(".", 2)
        state.setdefault(int(i), {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def train_decoder(encoder: FrozenEncoder, images: torch.Tensor, out: str | Path, *, epochs: int = 20,
                  batch_size: int = 16, lr: float = 1e-3, width: int = 64, seed: int = 0,
                  images_source: str = "", progress: bool = True,
                  on_epoch: Callable[[int, float], None] | None = None) -> Path:
    """Fit a :class:`ConvDecoder` so that decoder(encoder(x)) ~ x; returns ``out``.

    ``images`` (N, C, H, W) in [0, 1] at the size the adapter will use. The frozen encoder runs once:
    its features (N, D, h, w) stay in memory for all epochs. A rerun with the same settings resumes
    from the last epoch checkpoint in ``out/checkpoints``; other settings are refused.
    """
    from tqdm.auto import tqdm
    for what, value in (("epochs", epochs), ("batch size", batch_size), ("learning rate", lr), ("width", width)):
        if not value > 0:
            raise AdapterError(f"{what} must be positive, got {value}")
    if images.ndim != 4 or len(images) == 0:
        raise AdapterError(f"expected images (N, C, H, W), got {tuple(images.shape)}")
    out = Path(out)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    image_shape = tuple(images.shape[1:])
    feats = _features(encoder, images, batch_size)
    torch.manual_seed(seed)  # decoder initialisation
    decoder = ConvDecoder(feats.shape[1], feats.shape[-2:], image_shape, width)
    opt = torch.optim.Adam(decoder.parameters(), lr=lr)
    settings = {"encoder": encoder.source, "encoder_fingerprint": encoder.weights_fingerprint,
                "decoder": decoder.config, "batch_size": batch_size, "lr": lr, "seed": seed,
                "n_images": len(images), "images": images_source,
                "images_sha": values_sha256(images)[:16]}
    run_record.claim(out / "run.json", settings, "decoder training with other settings, encoder or images",
                     "choose another `out` or delete it", error=AdapterError)
    losses: list[float] = []
    start = 0
    done = sorted(ckpt_dir.glob("epoch_*.safetensors"))
    if done:
        last = done[-1]
        tensors = load_file(str(last))
        decoder.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("dec.")})
        _load_optimizer(opt, {k: v for k, v in tensors.items() if k.startswith("opt.")})
        with safe_open(str(last), "pt") as f:
            meta = f.metadata()
        start, losses = int(meta["epoch"]), json.loads(meta["losses"])
    bar = tqdm(range(start, epochs), desc="train-decoder", unit="epoch", disable=not progress, leave=False,
               initial=start, total=epochs)
    t0 = time.perf_counter()
    for epoch in bar:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(images), generator=g)
        decoder.train()
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            loss = F.mse_loss(decoder(feats[idx]), images[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(images))
        bar.set_postfix(mse=f"{losses[-1]:.4g}")
        tensors = {f"dec.{k}": v.detach().contiguous() for k, v in decoder.state_dict().items()}
        tensors.update(_optimizer_tensors(opt))
        atomic.write_tensors(ckpt_dir / f"epoch_{epoch + 1:04d}.safetensors", tensors,
                         metadata={"epoch": str(epoch + 1), "losses": json.dumps(losses)})
        if on_epoch:
            on_epoch(epoch + 1, losses[-1])
    bar.close()
    decoder.eval()
    atomic.write_tensors(out / "decoder.safetensors", decoder.state_dict())
    config = {"latentfield_family": FAMILY, "encoder": encoder.source,
              "encoder_relative": _relative_source(encoder.source, out),
              "encoder_fingerprint": encoder.weights_fingerprint, "decoder": decoder.config,
              "training": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                           "n_images": len(images), "images": images_source, "mse": losses,
                           "wall_time_s_last_session": round(time.perf_counter() - t0, 2)}}
    atomic.write_text(out / "config.json", json.dumps(config, indent=1) + "\n")  # last: marks a finished adapter
    return out


def _relative_source(source: dict[str, Any], out: Path) -> dict[str, str | None]:
    """Encoder paths relative to the decoder folder, so a tree moved as a whole still loads."""
    def rel(value: str | None) -> str | None:
        if not value or not os.path.isabs(value):
            return None
        try:
            return os.path.relpath(value, out.resolve())
        except ValueError:  # another drive on Windows
            return None
    return {"spec": rel(source.get("spec")), "checkpoint": rel(source.get("checkpoint"))}


def _locate_source(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """The recorded encoder source, with each missing absolute path replaced by its relative twin if that exists."""
    src = dict(config["encoder"])
    for key, rel in (config.get("encoder_relative") or {}).items():
        if rel and src.get(key) and not os.path.exists(src[key]) and (path / rel).exists():
            src[key] = str((path / rel).resolve())
    return src


# -- loading ----------------------------------------------------------------------------------------

def _is_trained_decoder(config: dict[str, Any]) -> bool:
    return config.get("latentfield_family") == FAMILY


@register_config_family("trained-decoder (latentfield train-decoder output)", _is_trained_decoder)
def load_trained_decoder(path: Path, config: dict[str, Any], **options: Any) -> TrainedDecoderAdapter:
    check_options(options, ("name",), "trained decoder")
    src = _locate_source(config, Path(path))
    encoder = load_encoder(src["spec"], src.get("checkpoint"), src.get("model_args"))
    if encoder.weights_fingerprint != config["encoder_fingerprint"]:
        raise AdapterError(f"{path}: the encoder weights at {src.get('checkpoint') or src['spec']} differ from "
                           "those this decoder was trained on")
    weights = Path(path) / "decoder.safetensors"
    if not weights.is_file():
        raise AdapterError(f"{path}: decoder.safetensors missing (training not finished? rerun train-decoder)")
    d = config["decoder"]
    decoder = ConvDecoder(d["in_channels"], d["feature_hw"], d["image_shape"], d["width"])
    decoder.load_state_dict(load_file(str(weights)))
    adapter = TrainedDecoderAdapter(encoder, decoder, name=options.get("name") or Path(path).name)
    if options.get("image_shape") is not None:
        adapter.set_image_shape(options["image_shape"])
    return adapter
