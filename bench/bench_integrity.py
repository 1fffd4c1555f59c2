"""What the run-integrity checks cost: the behaviour fingerprint against a hash of the weights alone, and
the output checks of ``Adapter.encode``/``decode`` per f(z) call.

Fingerprint: random timm models (no weights are downloaded), each hashed once both ways. Checks: an
identity model (so the model costs nothing), f(z) through ``Adapter.f`` against the same two calls
without the checks, best of 7 repeats.

Usage: .venv/bin/python bench/bench_integrity.py [--models resnet50 vit_base_patch16_224] [--calls 20000]
Prints markdown for docs/reliability.md.
"""
from __future__ import annotations

import argparse
import time
import timeit

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["resnet50", "vit_base_patch16_224"])
    ap.add_argument("--calls", type=int, default=20_000)
    args = ap.parse_args()
    import timm
    from latentfield.adapters import TorchAutoencoder, fingerprint_tensors

    print("| model | parameters | weights-only hash (s) | full fingerprint (s) |")
    print("|---|---:|---:|---:|")
    for name in args.models:
        torch.manual_seed(0)
        m = timm.create_model(name, pretrained=False, num_classes=0).eval()
        a = TorchAutoencoder(m, torch.nn.Identity())
        a.image_shape, a.latent_shape = (3, 224, 224), (m.num_features,)
        t0 = time.perf_counter()
        fingerprint_tensors(m.state_dict().items())
        t_old = time.perf_counter() - t0
        t0 = time.perf_counter()
        a.fingerprint
        t_new = time.perf_counter() - t0
        n = sum(p.numel() for p in m.parameters()) / 1e6
        print(f"| {name} | {n:.1f} M | {t_old:.2f} | {t_new:.2f} |", flush=True)

    a = TorchAutoencoder(lambda x: x.flatten(1), lambda z: z.view(-1, 1, 4, 4), image_shape=(1, 4, 4))
    z = torch.randn(256, 16)
    plain_enc = torch.no_grad()(lambda x: a._encode(x.to(a.device, a.dtype)))  # encode/decode without checks
    plain_dec = torch.no_grad()(lambda z: a._decode(z.to(a.device, a.dtype)))
    plain_f = torch.no_grad()(lambda z: plain_enc(plain_dec(z)))  # as Adapter.f was before the checks
    checked = min(timeit.repeat(lambda: a.f(z), number=args.calls, repeat=7)) / args.calls * 1e6
    plain = min(timeit.repeat(lambda: plain_f(z), number=args.calls, repeat=7)) / args.calls * 1e6
    print(f"\nf(z) of an identity model, batch 256: {checked:.1f} us with the output checks, {plain:.1f} us "
          f"without ({checked - plain:+.1f} us per call)")
    from latentfield.adapters import load_adapter
    demo = load_adapter("demo:generalize")
    z = torch.randn(256, *demo.latent_shape, generator=torch.Generator().manual_seed(0))
    t = min(timeit.repeat(lambda: demo.f(z), number=20, repeat=5)) / 20 * 1e3
    n = sum(p.numel() for m in demo.modules() for p in m.parameters()) / 1e3
    print(f"for scale: f(z) of demo:generalize (a conv AE of {n:.0f} k parameters), batch 256: {t:.2f} ms per call "
          f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
