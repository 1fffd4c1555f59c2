"""Representation autoencoders (diffusers ``AutoencoderRAE``): a frozen DINOv2 / SigLIP2 / MAE encoder
with a trained ViT decoder, the setup the paper audits for DINOv2.

Images in [0, 1] at the decoder's resolution (256 px for the released checkpoints); the encoder reads
``encoder_input_size`` (224 px), so encode first resizes (bicubic, inside ``AutoencoderRAE.encode``)
and then applies the encoder's ImageNet normalisation. That makes f(z) = E(D(z)) a map from the
latent space to itself. Latent = the encoder's final-layer patch tokens (CLS and register tokens
dropped), normalised with the checkpoint's ``latents_mean``/``latents_std`` and ``scaling_factor``
exactly as ``AutoencoderRAE.encode`` returns them; shape (hidden, g, g) with g = 224 / encoder patch
(16 x 16 for DINOv2 with patch 14), or (g*g, hidden) when the config sets ``reshape_to_2d`` false.
The training-time latent noise (``noise_tau``) is off in eval mode, so f is deterministic.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from .family import FamilyAdapter, instance_of, object_name
from .base import AdapterError, check_options
from .registry import register_config_family, register_object_family
from .safe_load import from_pretrained


class RAEAdapter(FamilyAdapter):
    """Images (B, 3, S, S) in [0, 1], S = decoder image size -> latents (B, hidden, g, g) and back."""

    family = "rae"
    value_range = (0.0, 1.0)

    def __init__(self, model: torch.nn.Module, *, name: str, clamp: bool = True) -> None:
        super().__init__([model], name=name, clamp=clamp)
        self.model = model
        cfg = model.config
        g = cfg.encoder_input_size // cfg.encoder_patch_size
        self.image_shape = (int(cfg.num_channels), model.decoder_image_size, model.decoder_image_size)
        hidden = int(cfg.encoder_hidden_size)
        self.latent_shape = (hidden, g, g) if cfg.reshape_to_2d else (g * g, hidden)

    def set_image_shape(self, image_shape: Sequence[int]) -> None:
        if tuple(int(s) for s in image_shape) != self.image_shape:
            raise AdapterError(f"{self.name}: the RAE decoder writes images of shape {self.image_shape}; "
                               f"resize your data to it (got {tuple(image_shape)})")

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check_image(x)
        return self.model.encode(x).latent

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._clamp(self.model.decode(z).sample)


def _is_rae(config: dict[str, Any]) -> bool:
    return config.get("_class_name") == "AutoencoderRAE"


@register_config_family("rae (diffusers AutoencoderRAE: DINOv2 / SigLIP2 / MAE encoders)", _is_rae)
def load_rae(path: Path, config: dict[str, Any], **options: Any) -> RAEAdapter:
    check_options(options, ("name", "clamp"), "rae (diffusers AutoencoderRAE)")
    from diffusers import AutoencoderRAE
    if config.get("encoder_type") == "siglip2":
        model = _load_siglip2(AutoencoderRAE, Path(path))
    else:
        model = from_pretrained(AutoencoderRAE, path, torch_dtype=torch.float32)
    return rae_adapter(model, Path(path).name, options)


@register_object_family("diffusers AutoencoderRAE", lambda obj: instance_of(obj, "diffusers", ("AutoencoderRAE",)))
def wrap_rae(model: torch.nn.Module, **options: Any) -> RAEAdapter:
    """An ``AutoencoderRAE`` already in memory."""
    check_options(options, ("name", "clamp"), "rae (diffusers AutoencoderRAE)")
    return rae_adapter(model, object_name(model, options), options)


def rae_adapter(model: torch.nn.Module, name: str, options: dict[str, Any]) -> RAEAdapter:
    adapter = RAEAdapter(model, name=options.get("name") or name, clamp=options.get("clamp", True))
    if options.get("image_shape") is not None:
        adapter.set_image_shape(options["image_shape"])
    return adapter


def _alias_siglip_vision_model() -> None:
    """diffusers 0.42 builds SigLIP2 encoders through ``SiglipVisionModel(...).vision_model``; transformers 5
    flattened that wrapper away, so the attribute is the model itself. Alias it (a no-op where it exists)."""
    from transformers import SiglipVisionModel
    if not hasattr(SiglipVisionModel, "vision_model"):
        SiglipVisionModel.vision_model = property(lambda self: self)


def _load_siglip2(cls: Any, path: Path) -> torch.nn.Module:
    """A SigLIP2 RAE; checkpoints saved under transformers 4 nest encoder weights under ``vision_model.``,
    which transformers 5 does not have: rename them and load strictly (never leave weights random)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    _alias_siglip_vision_model()
    weights = path / "diffusion_pytorch_model.safetensors"
    nested = "encoder.vision_model."
    if weights.is_file():
        with safe_open(str(weights), "pt") as f:
            old_layout = any(k.startswith(nested) for k in f.keys())
        if old_layout:
            model = cls.from_config(cls.load_config(str(path)))
            state = {("encoder." + k[len(nested):] if k.startswith(nested) else k): v
                     for k, v in load_file(str(weights)).items()}
            missing, unexpected = model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise AdapterError(f"{path}: SigLIP2 RAE weights do not match the model "
                                   f"({len(missing)} missing, {len(unexpected)} unexpected, e.g. "
                                   f"{(missing or unexpected)[0]})")
            return model.float().eval()
    return from_pretrained(cls, path, torch_dtype=torch.float32)
