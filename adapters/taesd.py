"""Tiny autoencoders: the original TAESD ``.pth`` encoder/decoder pairs and diffusers ``AutoencoderTiny``.

Images in [0, 1] (the diffusers model works in [-1, 1]; the adapter converts, so both formats define
the same map); latents (c, H/8, W/8) with c = 4 (taesd, taesdxl), 16 (taesd3, taef1) or 32 (taef2).
The latent is the encoder output as is: TAESD is trained to produce the latents the diffusion
model sees (diffusers ships it with ``scaling_factor`` 1.0). The decoder starts with the soft clamp
tanh(z / 3) * 3, so latents far outside [-3, 3] all decode alike.

The TAESD architecture is written out here (no package provides it): 3x3 conv blocks with residual
skips, stride-2 convs down, nearest 2x upsampling up. TAEF2 adds, in the three blocks of the
lowest-resolution stage of both encoder and decoder, a "mid-block GroupNorm" branch
x <- x + conv1x1(relu(groupnorm(conv1x1(x)))) (4x wider, 4 groups) before the block's convs. The
variant (latent channels, width, which blocks carry the branch) is read from the state-dict keys;
the GroupNorm group count is not stored in the weights: 4 was verified on the real TAEF2 weights
(31 dB on astronaut at 256 px, against <= 29 dB for 1, 8 or 32 groups).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .family import FamilyAdapter, instance_of, object_name
from .base import AdapterError, check_options
from .registry import register_config_family, register_object_family, register_path_loader
from .safe_load import PICKLE_SUFFIXES, from_pretrained, load_state_dict

GN_GROUPS = 4  # groups of the mid-block GroupNorm branch (verified on TAEF2, see module docstring)
GN_EXPANSION = 4
# Sequential indices of the standard TAESD layout.
ENCODER_BLOCKS = (1, 3, 4, 5, 7, 8, 9, 11, 12, 13)
ENCODER_DOWN = (2, 6, 10)
DECODER_BLOCKS = (3, 4, 5, 8, 9, 10, 13, 14, 15, 18)
DECODER_UP = (6, 11, 16)


def _conv(n_in: int, n_out: int, **kwargs: Any) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of latents to about [-3, 3] at the decoder input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Residual 3x3 conv block; with ``mid_gn`` a GroupNorm branch is added to its input first."""

    def __init__(self, n_in: int, n_out: int, mid_gn: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(n_in, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(), _conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()
        self.pool = nn.Sequential(
            nn.Conv2d(n_in, GN_EXPANSION * n_in, 1, bias=False), nn.GroupNorm(GN_GROUPS, GN_EXPANSION * n_in),
            nn.ReLU(), nn.Conv2d(GN_EXPANSION * n_in, n_in, 1, bias=False)) if mid_gn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def taesd_encoder(latent_channels: int = 4, width: int = 64, gn_blocks: Sequence[int] = ()) -> nn.Sequential:
    """TAESD encoder: (B, 3, H, W) in [0, 1] -> (B, latent_channels, H/8, W/8)."""
    layers: list[nn.Module] = [_conv(3, width)]
    for i in range(1, 14):
        if i in ENCODER_DOWN:
            layers.append(_conv(width, width, stride=2, bias=False))
        else:
            layers.append(Block(width, width, mid_gn=i in gn_blocks))
    layers.append(_conv(width, latent_channels))
    return nn.Sequential(*layers)


def taesd_decoder(latent_channels: int = 4, width: int = 64, gn_blocks: Sequence[int] = ()) -> nn.Sequential:
    """TAESD decoder: (B, latent_channels, h, w) -> (B, 3, 8h, 8w), nominally in [0, 1] (not clamped)."""
    layers: list[nn.Module] = [Clamp(), _conv(latent_channels, width), nn.ReLU()]
    for i in range(3, 19):
        if i in DECODER_UP:
            layers += [nn.Upsample(scale_factor=2), _conv(width, width, bias=False)]
        elif i in DECODER_BLOCKS:
            layers.append(Block(width, width, mid_gn=i in gn_blocks))
    layers.append(_conv(width, 3))
    return nn.Sequential(*layers)


def _gn_blocks(state: dict[str, torch.Tensor]) -> tuple[int, ...]:
    return tuple(sorted({int(m.group(1)) for k in state if (m := re.match(r"(\d+)\.pool\.", k))}))


def build_taesd_pair(enc_state: dict[str, torch.Tensor], dec_state: dict[str, torch.Tensor],
                     source: str = "checkpoint") -> tuple[nn.Sequential, nn.Sequential]:
    """Infer the TAESD variant from two state dicts and load them (float32)."""
    try:
        width, latent = enc_state["0.weight"].shape[0], enc_state["14.weight"].shape[0]
        encoder = taesd_encoder(latent, width, _gn_blocks(enc_state))
        decoder = taesd_decoder(dec_state["1.weight"].shape[1], width, _gn_blocks(dec_state))
        encoder.load_state_dict({k: v.float() for k, v in enc_state.items()})
        decoder.load_state_dict({k: v.float() for k, v in dec_state.items()})
    except (KeyError, RuntimeError, IndexError) as e:
        raise AdapterError(f"{source}: not a supported TAESD encoder/decoder layout "
                           f"(supported: taesd, taesdxl, taesd3, taef1, taef2; {str(e).splitlines()[0][:160]})") from None
    if dec_state["1.weight"].shape[1] != latent:
        raise AdapterError(f"{source}: encoder writes {latent} latent channels but the decoder reads "
                           f"{dec_state['1.weight'].shape[1]}; the files are not a pair")
    return encoder, decoder


class TinyAdapter(FamilyAdapter):
    """Adapter over a TAESD-style encoder/decoder. Images (B, 3, H, W) in [0, 1]; latents (B, c, H/8, W/8).

    ``io="unit"`` for the original modules (images in [0, 1]); ``io="diffusers"`` when ``encoder`` and
    ``decoder`` are an ``AutoencoderTiny``'s ``encode``/``decode`` which work in [-1, 1].
    """

    family = "tiny"
    value_range = (0.0, 1.0)
    downsample = 8

    def __init__(self, encoder: nn.Module, decoder: nn.Module, *, name: str, image_shape: Sequence[int] | None = None,
                 native_size: int = 512, io: str = "unit", clamp: bool = True, model: nn.Module | None = None,
                 downsample: int = 8, latent_channels: int = 4) -> None:
        super().__init__([model] if model is not None else [encoder, decoder], name=name, clamp=clamp)
        self.encoder, self.decoder, self.io, self.downsample = encoder, decoder, io, downsample
        self.latent_channels = latent_channels
        self.set_image_shape(image_shape or (3, native_size, native_size))

    def set_image_shape(self, image_shape: Sequence[int]) -> None:
        c, h, w = (int(s) for s in image_shape)
        if c != 3 or h % self.downsample or w % self.downsample:
            raise AdapterError(f"{self.name}: image shape must be (3, H, W) with H, W multiples of "
                               f"{self.downsample}, got {tuple(image_shape)}")
        # Fully convolutional: the latent shape follows from the strides, no encode needed.
        self.image_shape, self.latent_shape = (c, h, w), (self.latent_channels, h // self.downsample, w // self.downsample)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check_image(x, self.downsample)
        if self.io == "diffusers":
            return self.encoder(x * 2 - 1).latents
        return self.encoder(x)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        x = (self.decoder(z).sample + 1) / 2 if self.io == "diffusers" else self.decoder(z)
        return self._clamp(x)


# -- original .pth pairs --------------------------------------------------------------------------

_PAIR_SUFFIXES = PICKLE_SUFFIXES + (".safetensors",)


def _sibling(path: Path, own: str, other: str) -> Path | None:
    """``x_encoder.pth`` -> an existing ``x_decoder.*`` (any weight suffix), or None."""
    base = path.stem[:-len(own)]
    return next((p for s in _PAIR_SUFFIXES if (p := path.with_name(base + other + s)).is_file()), None)


def find_pair(path: Path) -> tuple[Path, Path] | None:
    """(encoder, decoder) files for a directory holding a ``*_encoder.*``/``*_decoder.*`` pair, or for
    one of the two files (its sibling is found by name). Several pairs in one directory are ambiguous."""
    if path.is_dir():
        pairs = [(p, dec) for p in sorted(path.iterdir())
                 if p.suffix in _PAIR_SUFFIXES and p.stem.endswith("_encoder")
                 and (dec := _sibling(p, "_encoder", "_decoder")) is not None]
        if len(pairs) > 1:
            raise AdapterError(f"{path}: holds several encoder/decoder pairs ({', '.join(p.name for p, _ in pairs)}); "
                               "pass one encoder file")
        return pairs[0] if pairs else None
    if path.is_file() and path.suffix in _PAIR_SUFFIXES:
        if path.stem.endswith("_encoder") and (dec := _sibling(path, "_encoder", "_decoder")):
            return path, dec
        if path.stem.endswith("_decoder") and (enc := _sibling(path, "_decoder", "_encoder")):
            return enc, path
    return None


def is_taesd_pair(path: Path) -> bool:
    return not (path.is_dir() and (path / "config.json").exists()) and find_pair(path) is not None


@register_path_loader("taesd-pth", is_taesd_pair)
def load_taesd_path(path: Path, **options: Any) -> TinyAdapter:
    enc_path, dec_path = find_pair(Path(path))  # type: ignore[misc]
    adapter = load_taesd_files(enc_path, dec_path, **options)
    from .provenance import local_provenance
    adapter.provenance = local_provenance(enc_path.parent, [enc_path.name, dec_path.name])  # both halves
    return adapter


def load_taesd_files(encoder_path: str | Path, decoder_path: str | Path, *, image_shape: Sequence[int] | None = None,
                     clamp: bool = True, name: str | None = None, **options: Any) -> TinyAdapter:
    """Load an original TAESD pair (``.pth`` via ``torch.load(weights_only=True)``, or ``.safetensors``)."""
    check_options(options, ("name", "clamp"), "taesd .pth pair")
    encoder_path, decoder_path = Path(encoder_path), Path(decoder_path)
    enc, dec = build_taesd_pair(load_state_dict(encoder_path), load_state_dict(decoder_path), str(encoder_path.parent))
    stem = encoder_path.stem
    name = name or (stem[:-len("_encoder")] if stem.endswith("_encoder") else stem)
    return TinyAdapter(enc, dec, name=name, image_shape=image_shape, clamp=clamp,
                       latent_channels=enc[-1].out_channels)


# -- diffusers AutoencoderTiny ----------------------------------------------------------------------

def _is_tiny(config: dict[str, Any]) -> bool:
    return config.get("_class_name") == "AutoencoderTiny"


@register_config_family("tiny (diffusers AutoencoderTiny)", _is_tiny)
def load_autoencoder_tiny(path: Path, config: dict[str, Any], **options: Any) -> TinyAdapter:
    check_options(options, ("name", "clamp"), "AutoencoderTiny")
    from diffusers import AutoencoderTiny
    model = from_pretrained(AutoencoderTiny, path, torch_dtype=torch.float32)
    return autoencoder_tiny_adapter(model, Path(path).name, options)


@register_object_family("diffusers AutoencoderTiny", lambda obj: instance_of(obj, "diffusers", ("AutoencoderTiny",)))
def wrap_autoencoder_tiny(model: nn.Module, **options: Any) -> TinyAdapter:
    """An ``AutoencoderTiny`` already in memory (e.g. ``pipe.vae`` of a TAESD pipeline)."""
    check_options(options, ("name", "clamp"), "AutoencoderTiny")
    return autoencoder_tiny_adapter(model, object_name(model, options), options)


def autoencoder_tiny_adapter(model: nn.Module, name: str, options: dict[str, Any]) -> TinyAdapter:
    # Each encoder stage after the first halves the resolution.
    downsample = 2 ** (len(model.config.encoder_block_out_channels) - 1)
    return TinyAdapter(model.encode, model.decode, name=options.get("name") or name,
                       image_shape=options.get("image_shape"), native_size=512, io="diffusers",
                       clamp=options.get("clamp", True), model=model, downsample=downsample,
                       latent_channels=model.config.latent_channels)
