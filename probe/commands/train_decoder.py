"""``latentfield train-decoder ENCODER --images DIR --out DIR``: give a decoder-less encoder a decoder.

The encoder (``timm:NAME`` with ``--checkpoint FILE``, a transformers vision model directory, or a
cached ``org/model`` id) stays frozen; a small conv decoder is fitted to invert it. The output
directory then loads like any checkpoint: ``latentfield probe OUT_DIR ...``.
"""
from __future__ import annotations

import argparse

from ..data import load_images
from .common import image_shape


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-decoder", help="fit a lightweight decoder on a frozen encoder (resumable)",
                       description="Fit a conv decoder on a frozen timm or transformers encoder; the result "
                                   "loads as an ordinary adapter. Rerun the same command to resume.")
    p.add_argument("encoder", help="timm:NAME (with --checkpoint), a transformers model directory or a cached org/model id")
    p.add_argument("--images", required=True,
                   help="training images: a folder, .npy/.npz/.safetensors, or a built-in set (faces, digits)")
    p.add_argument("--out", required=True, help="output directory (a rerun resumes it)")
    p.add_argument("--checkpoint", default=None, help="encoder weights for timm:NAME (.safetensors, or .pth loaded safely)")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra timm.create_model argument, e.g. img_size=128 (repeatable)")
    p.add_argument("--image-shape", type=image_shape, default=None, metavar="C,H,W",
                   help="training/probing image size (default: 3 x the encoder's native size)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many images")
    p.add_argument("--epochs", type=int, default=20, help="epochs (default 20)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--width", type=int, default=64, help="decoder channels after the projection (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation and shuffling (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from latentfield.adapters import load_adapter
    from latentfield.adapters.frozen_encoder import load_encoder, parse_model_args
    from latentfield.adapters.trained_decoder import train_decoder
    encoder = load_encoder(args.encoder, args.checkpoint, parse_model_args(args.model_arg))
    shape = args.image_shape or (3, encoder.native_size, encoder.native_size)
    images = load_images(args.images, shape, limit=args.limit)
    out = train_decoder(encoder, images, args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        width=args.width, seed=args.seed, images_source=str(args.images), progress=not args.quiet)
    adapter = load_adapter(str(out))
    print(f"{args.encoder}: decoder trained on {len(images)} images {tuple(shape)}; latent shape "
          f"{adapter.latent_shape}; wrote {out}/decoder.safetensors and {out}/config.json "
          f"(load it with: latentfield probe {out} ...)")
    return 0
