"""The GPU check (bench/gpu_check.sh calls this): f(z) throughput bare vs inside the engine, and a
1- vs N-process probe. Runs on any device; ``--device cpu --quick`` is the small version tests run.

``throughput``: for TAEF2 at 512 px and the SD 1.x VAE architecture at 256 px (``--quick``: 32 px),
in float32 and bfloat16, at batch 1, 16 and 64 (``--quick``: 1 and 4): evaluations of f per second
(a) bare, ``z = adapter.f(z)`` in a loop, and (b) inside the engine, ``iterate(adapter.f, ...)`` with a
tolerance no seed meets (every seed runs every step), as ``run_probe`` calls it. Goal: engine >= 90%
of bare. Each measurement runs at least ``--seconds`` (after a warm-up call), and rows are written as
they finish, so a run cut short by a time limit keeps the rows it has; ``--budget-s`` skips what no
longer fits.

``multiprocess``: the same probe with 1 process (``python -m latentfield.probe.cli probe``) and with N
(``python -m torch.distributed.run --nproc_per_node N -m latentfield.probe.cli probe``, i.e. torchrun),
timed, and whether the N-process result equals the 1-process one. Multi-process probing (issue 16,
section 3) may not be in this build: then the step says so and is skipped.

TAEF2 uses its real weights when found (``LATENTFIELD_TAEF2_DIR``, ../shared/weights/taef2, or
shared/weights/taef2 under the repository); otherwise the TAEF2 architecture with random weights
(the cost of f does not depend on the weight values) and the table says which. Nothing is downloaded.

Usage, from the repository root, with the python of an environment where latentfield is installed
(``python3 -m venv .venv && .venv/bin/pip install -e .``, or an existing one):
    python bench/bench_gpu.py throughput --device cuda --out throughput.md
    python bench/bench_gpu.py multiprocess --device cuda --nproc 2 --out multiprocess.md
    python bench/bench_gpu.py throughput --device cpu --quick --out t.md   # small, for CPU and tests
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from latentfield.adapters import load_adapter
from latentfield.probe.engine import iterate

ROOT = Path(__file__).resolve().parents[1]
TAEF2_PLACES = [Path(p) for p in (os.environ.get("LATENTFIELD_TAEF2_DIR"),) if p] + \
    [ROOT.parent / "shared" / "weights" / "taef2", ROOT / "shared" / "weights" / "taef2"]


class Table:
    """A markdown table written to ``path`` (and stdout) row by row, so a killed run keeps its rows."""

    def __init__(self, path: Path | None, title: str, header: list[str], intro: str = "") -> None:
        self.path = path
        lines = [f"### {title}", ""] + ([intro, ""] if intro else []) + \
            ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        self._write("\n".join(lines) + "\n", "w")

    def row(self, cells: list[object]) -> None:
        self._write("| " + " | ".join(str(c) for c in cells) + " |\n", "a")

    def note(self, text: str) -> None:
        self._write(f"\n{text}\n", "a")

    def _write(self, text: str, mode: str) -> None:
        print(text, end="", flush=True)
        if self.path is not None:
            with open(self.path, mode) as fh:
                fh.write(text)


def taef2_spec(tmp: Path) -> tuple[str, str]:
    """The TAEF2 spec: real weights where found, else the TAEF2 architecture with random weights."""
    for place in TAEF2_PLACES:
        if (place / "taef2_encoder.pth").is_file():
            return str(place), "TAEF2 (real weights)"
    from safetensors.torch import save_file

    from latentfield.adapters.taesd import taesd_decoder, taesd_encoder
    torch.manual_seed(0)  # latent 32, width 64, mid-block GroupNorm in the lowest-resolution stage (as TAEF2)
    enc, dec = taesd_encoder(32, 64, (11, 12, 13)), taesd_decoder(32, 64, (3, 4, 5))
    for name, m in (("encoder", enc), ("decoder", dec)):
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(tmp / f"taef2_{name}.safetensors"))
    return str(tmp), "TAEF2 architecture (random weights: real ones not found)"


def sd_vae_spec(tmp: Path) -> tuple[str, str]:
    spec = importlib.util.spec_from_file_location("bench_adapters", ROOT / "bench" / "bench_adapters.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.sd_vae(tmp)[0], "SD 1.x VAE architecture (random weights)"


def _sync(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def timed(run: Callable[[int], int], seconds: float, sync: Callable[[], None], first: float) -> float:
    """Evaluations per second of ``run(steps) -> evaluations``, with enough steps to last ``seconds``
    (estimated from ``first``, the time of one warm-up step)."""
    steps = max(2, min(200, math.ceil(seconds / max(first, 1e-4))))
    sync()
    t0 = time.perf_counter()
    n = run(steps)
    sync()
    return n / (time.perf_counter() - t0)


def throughput(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    sync = _sync(device)
    size_taef2, size_sd = (32, 32) if args.quick else (512, 256)
    batches = args.batches or ([1, 4] if args.quick else [1, 16, 64])
    seconds = args.seconds if args.seconds is not None else (0.3 if args.quick else 2.0)
    t_start = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    table = Table(args.out, f"f(z) throughput, bare vs inside the engine ({name}, torch {torch.__version__})",
                  ["model", "image", "dtype", "batch", "ms per f call", "bare (evals/s)", "engine (evals/s)",
                   "engine / bare", ">= 90%", "peak GPU memory (GiB)"])
    with tempfile.TemporaryDirectory() as tmp:
        models = [(*taef2_spec(Path(tmp)), size_taef2), (*sd_vae_spec(Path(tmp)), size_sd)]
        for spec, label, size in models:
            for dt in args.dtypes:
                adapter = load_adapter(spec, image_shape=(3, size, size), device=args.device, dtype=dt)
                for b in batches:
                    cells = [label, f"3x{size}x{size}", dt, b]
                    if time.perf_counter() - t_start > args.budget_s:
                        table.row(cells + ["skipped: time budget"] + ["-"] * 5)
                        continue
                    table.row(cells + _measure(adapter, b, seconds, device, sync))
                del adapter
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    tf32 = (f"; float32 convolutions may use TF32 (cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
            f"matmul precision {torch.get_float32_matmul_precision()})") if device.type == "cuda" else ""
    table.note(f"bare: `z = adapter.f(z)` in a loop; engine: `iterate(adapter.f, z0, tol=0, max_steps=K, "
               f"batch_size=B)` (every seed runs K steps; float32 state, squared steps and norms); each at least "
               f"{seconds:g} s after two warm-up calls{tf32}; {time.perf_counter() - t_start:.0f} s in all.")


def _measure(adapter, batch: int, seconds: float, device: torch.device, sync: Callable[[], None]) -> list[object]:
    z0 = torch.randn(batch, *adapter.latent_shape, generator=torch.Generator().manual_seed(0)).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        sync()
        t0 = time.perf_counter()
        adapter.f(z0)  # warm-up (kernel selection, allocator)
        sync()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        adapter.f(z0)
        sync()
        first = min(first, time.perf_counter() - t0)

        def bare(steps: int) -> int:
            z = z0
            for _ in range(steps):
                z = adapter.f(z)
            return steps * batch

        def engine(steps: int) -> int:
            return iterate(adapter.f, z0, tol=0.0, max_steps=steps, batch_size=batch).n_evals

        rate_bare = timed(bare, seconds, sync, first)
        rate_engine = timed(engine, seconds, sync, first)
    except torch.cuda.OutOfMemoryError:
        return ["out of memory"] + ["-"] * 5
    peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f}" if device.type == "cuda" else "-"
    ratio = rate_engine / rate_bare
    return [f"{1000 * batch / rate_bare:.1f}", f"{rate_bare:.2f}", f"{rate_engine:.2f}", f"{ratio:.1%}",
            "yes" if ratio >= 0.9 else "no", peak]


def multiprocess_available() -> bool:
    """Whether this build's probe shares its chunks among processes (issue 16, section 3)."""
    import latentfield.probe as probe
    return any("PartialState" in p.read_text(errors="ignore") for p in Path(probe.__file__).parent.rglob("*.py"))


def multiprocess(args: argparse.Namespace) -> None:
    n = args.nproc
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.quick:
            spec, label, shape = "demo", "demo:generalize", None
            probe = ["--seeds", "64", "--max-steps", "60", "--batch-size", "16", "--chunk-size", "16"]
        else:
            spec, label = taef2_spec(tmp)
            shape = "3,128,128"
            probe = ["--seeds", "512", "--max-steps", "40", "--batch-size", "64", "--chunk-size", "64"]
        common = [spec, "--device", args.device, "--dtype", args.dtype, "--tol", "1e-12", "--quiet", *probe] + \
            (["--image-shape", shape] if shape else [])
        table = Table(args.out, f"1 vs {n} processes, same probe",
                      ["processes", "command", "wall (s)", "seeds/s", "speed-up", "same result as 1 process"],
                      intro=f"Probe: {label}{', image ' + shape if shape else ''}, {args.dtype}, "
                            f"`{' '.join(probe)} --tol 1e-12`, one CPU thread per process (OMP_NUM_THREADS=1: "
                            f"CPU kernels round differently with another thread count, so results are compared "
                            f"like for like).")
        if not multiprocess_available():
            table.row([n, "torchrun", "skipped", "-", "-",
                       "multi-process probing (issue 16, section 3) is not in this build"])
            return
        seeds = int(probe[1])
        one = [sys.executable, "-m", "latentfield.probe.cli", "probe", *common, "--out", str(tmp / "p1")]
        many = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
                "-m", "latentfield.probe.cli", "probe", *common, "--out", str(tmp / f"p{n}")]
        wall1 = _run(one, args.timeout_s)
        if isinstance(wall1, str):
            table.row([1, "`python -m latentfield.probe.cli probe ...`", wall1, "-", "-", "-"])
            return
        table.row([1, "`python -m latentfield.probe.cli probe ...`", f"{wall1:.1f}", f"{seeds / wall1:.1f}", "1.00x",
                   "(reference)"])
        wall_n = _run(many, args.timeout_s)
        shown = f"`torchrun --nproc_per_node {n} -m latentfield.probe.cli probe ...`"
        if isinstance(wall_n, str):
            table.row([n, shown, wall_n, "-", "-", "-"])
            return
        table.row([n, shown, f"{wall_n:.1f}", f"{seeds / wall_n:.1f}",
                   f"{wall1 / wall_n:.2f}x (efficiency {wall1 / wall_n / n:.0%})", _same(tmp / "p1", tmp / f"p{n}")])


def _run(cmd: list[str], timeout_s: float) -> float | str:
    """Wall time of ``cmd`` in seconds (one CPU thread per process, as torchrun sets), or why it has none."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout_s:g} s"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:160].replace("|", "/")
        return f"failed (exit {proc.returncode}): {last}"
    return time.perf_counter() - t0


def _same(a: Path, b: Path) -> str:
    from safetensors.torch import load_file
    try:
        ta, tb = load_file(str(a / "attractors.safetensors")), load_file(str(b / "attractors.safetensors"))
        sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    except OSError as e:
        return f"cannot compare ({e})"
    bitwise = all(torch.equal(ta[k], tb[k]) for k in ("end_points", "status", "labels"))
    return (f"end points, status and labels {'bitwise equal' if bitwise else 'DIFFER'}; attractors "
            f"{sa['n_attractors']} vs {sb['n_attractors']}, basin sizes {'equal' if sa['basin_sizes'] == sb['basin_sizes'] else 'differ'}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput", help="f(z) throughput, bare vs inside the engine")
    t.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    t.add_argument("--batches", type=int, nargs="+", default=None, help="default 1 16 64 (--quick: 1 4)")
    t.add_argument("--seconds", type=float, default=None, help="least time per measurement (default 2, --quick 0.3)")
    t.add_argument("--budget-s", type=float, default=240.0, help="skip the remaining rows after this many seconds")
    m = sub.add_parser("multiprocess", help="the same probe with 1 and N processes")
    m.add_argument("--nproc", type=int, default=2)
    m.add_argument("--dtype", default="float32")
    m.add_argument("--timeout-s", type=float, default=120.0, help="per probe run")
    for q in (t, m):
        q.add_argument("--device", default="cuda")
        q.add_argument("--quick", action="store_true", help="small sizes, for a CPU and the tests")
        q.add_argument("--out", type=Path, default=None, help="also write the markdown table to this file")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench_gpu.py: no CUDA device here (torch.cuda.is_available() is False); use --device cpu --quick")
    (throughput if args.what == "throughput" else multiprocess)(args)


if __name__ == "__main__":
    main()
