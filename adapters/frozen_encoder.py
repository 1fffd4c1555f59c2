"""Frozen vision encoders without a decoder: any timm model (``timm:NAME`` + a checkpoint file) or a
transformers vision encoder directory (DINOv2, ViT, SigLIP, ConvNeXt, ...).

:class:`FrozenEncoder` maps images (B, 3, H, W) in [0, 1] to a spatial feature map (B, D, h, w):
it applies the model's pixel normalisation, runs the final feature layer, drops prefix tokens
(CLS, registers) of transformers and lays the patch tokens out on their grid. Such an encoder
becomes an adapter once a decoder is trained for it (``latentfield train-decoder``, see
``trained_decoder.py``). ``timm:NAME`` is registered here and needs ``decoder=DIR`` for that.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .base import AdapterError, check_options, fingerprint_tensors
from .options import parse_options
from .registry import parse_spec, register_adapter
from .safe_load import from_pretrained, load_state_dict
from .vit_mae import IMAGENET_MEAN, IMAGENET_STD, pixel_stats


class FrozenEncoder(nn.Module):
    """Images (B, C, H, W) in [0, 1] -> features (B, D, h, w); weights frozen, eval mode.

    ``source`` describes how to rebuild it (saved into a trained decoder's config.json); it holds file
    paths, so it stays out of the fingerprint (the weights and ``kind`` are in).
    """

    fingerprint_exclude = ("source",)

    def __init__(self, model: nn.Module, *, kind: str, mean: Sequence[float], std: Sequence[float],
                 source: dict[str, Any], prefix_tokens: int | None = None, patch_size: int | None = None,
                 native_size: int = 224) -> None:
        super().__init__()
        self.model, self.kind, self.source = model, kind, source
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.prefix_tokens, self.patch_size, self.native_size = prefix_tokens, patch_size, native_size
        self.model.eval().requires_grad_(False)

    @property
    def weights_fingerprint(self) -> str:
        return fingerprint_tensors(self.model.state_dict().items())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.kind == "timm":
            feats = self.model.forward_features(x)
        else:
            kwargs = {}
            if getattr(self.model.config, "model_type", "") == "vit_mae":  # keep every patch, in order
                n = (x.shape[-2] // self.patch_size) * (x.shape[-1] // self.patch_size)
                kwargs["noise"] = torch.arange(n, device=x.device, dtype=x.dtype).expand(x.shape[0], n)
            out = self.model(pixel_values=x, **kwargs)
            feats = out.last_hidden_state
        return self._to_map(feats, x.shape[-2:])

    def _to_map(self, feats: torch.Tensor, hw: Sequence[int]) -> torch.Tensor:
        if feats.ndim == 4:
            dim = getattr(self.model, "num_features", None)
            if dim is not None and feats.shape[1] != dim and feats.shape[-1] == dim:  # NHWC (e.g. timm swin)
                feats = feats.permute(0, 3, 1, 2)
            return feats
        if feats.ndim != 3:
            raise AdapterError(f"encoder features of shape {tuple(feats.shape)} are neither tokens nor a map")
        if self.patch_size:
            gh, gw = hw[0] // self.patch_size, hw[1] // self.patch_size
        else:
            gh = gw = math.isqrt(feats.shape[1] - (self.prefix_tokens or 0))
        feats = feats[:, feats.shape[1] - gh * gw:]  # prefix tokens (CLS, registers) come first
        return feats.transpose(1, 2).reshape(feats.shape[0], feats.shape[2], gh, gw)


def parse_model_args(items: Sequence[str] | None) -> dict[str, Any]:
    """``["img_size=32", "depth=2"]`` -> {"img_size": 32, "depth": 2} (see :func:`~.options.parse_option`)."""
    try:
        return parse_options(items)
    except ValueError as e:
        raise AdapterError(f"model argument: {e}") from None


def load_timm_encoder(name: str, checkpoint: str | Path | None, model_args: dict[str, Any] | None = None) -> FrozenEncoder:
    """``timm.create_model(name, pretrained=False, num_classes=0, **model_args)`` + weights from ``checkpoint``."""
    import timm
    if checkpoint is None:
        raise AdapterError(f"timm:{name} needs a weights file (`checkpoint`, .safetensors preferred); "
                           "latentfield never downloads weights")
    model_args = dict(model_args or {})
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0, **model_args)
    except (RuntimeError, TypeError, ValueError) as e:  # unknown name or bad kwargs
        raise AdapterError(f"timm:{name}: cannot build the model ({str(e).splitlines()[0][:200]})") from None
    state = load_state_dict(checkpoint)
    own = model.state_dict()
    # Classifier heads are not part of the encoder; everything else must match exactly.
    state = {k: v for k, v in state.items() if k in own}
    missing = [k for k in own if k not in state]
    if missing:
        raise AdapterError(f"{checkpoint}: weights do not fit timm:{name} ({len(missing)} missing, e.g. {missing[0]})")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise AdapterError(f"{checkpoint}: weights do not fit timm:{name} ({str(e).strip().splitlines()[-1][:200]})") from None
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
    size = (cfg.get("input_size") or (3, 224, 224))[-1]
    size = model_args.get("img_size", size)
    size = size[0] if isinstance(size, (tuple, list)) else size
    source = {"spec": f"timm:{name}", "checkpoint": str(Path(checkpoint).resolve()), "model_args": model_args}
    return FrozenEncoder(model, kind="timm", mean=mean, std=std, source=source,
                         prefix_tokens=getattr(model, "num_prefix_tokens", 0), native_size=int(size))


def load_transformers_encoder(directory: str | Path) -> FrozenEncoder:
    """A transformers vision model directory (``AutoModel``; the vision tower of CLIP/SigLIP-like models)."""
    from transformers import AutoConfig, AutoModel
    directory = Path(directory)
    from .safe_load import check_pickles
    check_pickles(directory)
    config = from_pretrained(AutoConfig, directory)
    if getattr(config, "model_type", "") == "vit_mae":
        config.mask_ratio = 0.0
    model = from_pretrained(AutoModel, directory, config=config, dtype=torch.float32)
    if hasattr(model, "vision_model") and not hasattr(model.config, "patch_size"):  # dual encoders: image tower
        model = model.vision_model
    vcfg = getattr(model, "config", config)
    vcfg = getattr(vcfg, "vision_config", vcfg)
    patch = getattr(vcfg, "patch_size", None)
    patch = patch[0] if isinstance(patch, (tuple, list)) else patch
    size = getattr(vcfg, "image_size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean, std = pixel_stats(directory, 3)
    source = {"spec": str(directory.resolve()), "checkpoint": None, "model_args": {}}
    return FrozenEncoder(model, kind="transformers", mean=mean, std=std, source=source, patch_size=patch,
                         native_size=int(size))


def load_encoder(spec: str, checkpoint: str | Path | None = None,
                 model_args: dict[str, Any] | None = None) -> FrozenEncoder:
    """``timm:NAME`` (+ checkpoint), a transformers directory, or an ``org/model[@revision]`` id (cache, else download)."""
    parsed = parse_spec(spec, names=("timm",))
    if parsed.kind == "name":
        return load_timm_encoder(parsed.arg or "", checkpoint, model_args)
    if parsed.kind == "path" and parsed.path.is_dir():
        if not (parsed.path / "config.json").is_file():
            raise AdapterError(f"{spec}: no config.json here (expected a transformers vision model directory)")
        return load_transformers_encoder(parsed.path)
    if parsed.kind == "hub":
        from .hub import fetch_model, split_revision
        repo_id, revision = split_revision(spec)
        return load_transformers_encoder(fetch_model(repo_id, revision=revision).path)
    raise AdapterError(f"{spec}: expected timm:NAME, a transformers model directory or an org/model[@revision] id")


@register_adapter("timm", help="timm:NAME with checkpoint=FILE and decoder=DIR (a decoder from train-decoder)")
def load_timm(arg: str | None, checkpoint: str | None = None, decoder: str | None = None, **options: Any):
    if not arg:
        raise AdapterError("timm needs a model name: timm:NAME")
    check_options(options, ("model_args",), "timm")
    if decoder is None:
        load_timm_encoder(arg, checkpoint, options.get("model_args"))  # report weight problems first
        raise AdapterError(f"timm:{arg} is an encoder without a decoder; fit one with "
                           f"`latentfield train-decoder timm:{arg} --checkpoint FILE --images DIR --out DIR` "
                           "and load DIR")
    from .registry import load_adapter
    adapter = load_adapter(decoder, image_shape=options.get("image_shape"))
    if adapter.options.get("encoder", {}).get("spec") != f"timm:{arg}":
        raise AdapterError(f"{decoder}: that decoder was trained for {adapter.options.get('encoder', {}).get('spec')}, "
                           f"not timm:{arg}")
    return adapter
