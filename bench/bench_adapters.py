"""Cost of one f(z) = E(D(z)) evaluation per adapter family, at each family's native resolution.

Only TAEF2 has real weights here (../shared/weights/taef2); the other families are built with the
*architecture* of a real checkpoint (the config values below) and random weights, saved with
save_pretrained and loaded through load_adapter: the cost of a forward pass does not depend on the
weight values. Nothing is downloaded.

Usage: .venv/bin/python bench/bench_adapters.py [--device cpu|cuda] [--threads 2] [--batch 1]
       [--repeats 3] [--families taef2 sd-vae ...] [--size-scale 1.0]
Prints a markdown table for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from latentfield.adapters import load_adapter

ROOT = Path(__file__).resolve().parents[1]
TAEF2 = Path(os.environ.get("LATENTFIELD_TAEF2_DIR", ROOT.parent / "shared" / "weights" / "taef2"))


def sd_vae(d: Path) -> tuple[str, str]:
    # stabilityai/sd-vae-ft-mse: the SD 1.x VAE architecture (diffusers defaults + 4 stages), 256 px native.
    from diffusers import AutoencoderKL
    AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                  sample_size=256).save_pretrained(d / "sd")
    return str(d / "sd"), "SD 1.x VAE architecture (sd-vae-ft-mse), random weights"


def taesd(d: Path) -> tuple[str, str]:
    from diffusers import AutoencoderTiny
    AutoencoderTiny().save_pretrained(d / "taesd")  # madebyollin/taesd layout, 4 latent channels
    return str(d / "taesd"), "AutoencoderTiny (taesd layout), random weights"


def taef2(d: Path) -> tuple[str, str]:
    return str(TAEF2), "TAEF2, real weights (.pth pair)"


def vit_mae(d: Path) -> tuple[str, str]:
    from transformers import ViTMAEConfig, ViTMAEForPreTraining
    ViTMAEForPreTraining(ViTMAEConfig()).save_pretrained(d / "mae")  # defaults = facebook/vit-mae-base
    return str(d / "mae"), "ViT-MAE base architecture (facebook/vit-mae-base), random weights"


def rae(d: Path) -> tuple[str, str]:
    from diffusers import AutoencoderRAE
    AutoencoderRAE().save_pretrained(d / "rae")  # DINOv2-B/14 encoder at 224, ViT decoder to 256
    return str(d / "rae"), "AutoencoderRAE defaults (DINOv2-B/14 + ViT decoder), random weights"


def trained(d: Path) -> tuple[str, str]:
    import timm
    from safetensors.torch import save_file

    from latentfield.adapters.frozen_encoder import load_encoder
    from latentfield.adapters.trained_decoder import train_decoder
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "vits.safetensors"))
    enc = load_encoder("timm:vit_small_patch16_224", d / "vits.safetensors")
    train_decoder(enc, torch.rand(2, 3, 224, 224), d / "dec", epochs=1, batch_size=2, progress=False)
    return str(d / "dec"), "timm vit_small_patch16_224 + ConvDecoder(width 64), random encoder"


FAMILIES: dict[str, tuple[Callable[[Path], tuple[str, str]], tuple[int, int, int] | None]] = {
    "taef2": (taef2, (3, 512, 512)),
    "taesd": (taesd, (3, 512, 512)),
    "sd-vae": (sd_vae, None),
    "vit-mae": (vit_mae, None),
    "rae": (rae, None),
    "trained-decoder": (trained, None),
}


def time_f(adapter, batch: int, repeats: int) -> tuple[float, float]:
    z = torch.randn(batch, *adapter.latent_shape, generator=torch.Generator().manual_seed(0)).to(adapter.device)
    sync = torch.cuda.synchronize if adapter.device.type == "cuda" else (lambda: None)
    adapter.f(z)  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        adapter.f(z)
        sync()
        times.append(time.perf_counter() - t0)
    return min(times), sorted(times)[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--families", nargs="*", default=list(FAMILIES))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"device {args.device}, torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
          f"best and median of {args.repeats} after one warm-up\n")
    print("| family | model | image | latent | best (s) | median (s) |")
    print("|---|---|---|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.families:
            build, shape = FAMILIES[name]
            spec, what = build(Path(tmp))
            adapter = load_adapter(spec, image_shape=shape, device=args.device)
            best, median = time_f(adapter, args.batch, args.repeats)
            print(f"| {name} | {what} | {'x'.join(map(str, adapter.image_shape))} | "
                  f"{'x'.join(map(str, adapter.latent_shape))} | {best:.3f} | {median:.3f} |", flush=True)


if __name__ == "__main__":
    main()
