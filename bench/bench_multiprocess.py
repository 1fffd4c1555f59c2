"""1 process x 1 thread vs N processes x 1 thread (torchrun, gloo on CPU) on the same probe, end to end.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_multiprocess.py --nproc 2 --seeds 384

Times the whole command (start-up, model load and the final assembly included) and the iteration alone
(the slowest rank's summed chunk wall times), checks that both runs wrote bitwise the same end points, and prints one markdown row with the machine's load (``uptime``),
which disturbs the number on a shared machine.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo:memorize")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=384)
    ap.add_argument("--extra", default="--max-steps 300 --tol 1e-4 --batch-size 32 --chunk-size 32",
                    help="more probe flags, one string")
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    probe = ["-m", "latentfield.probe.cli", "probe", args.model, "--seeds", str(args.seeds), "--quiet",
             *args.extra.split()]
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Path(tmp) / "one", Path(tmp) / "many"
        load_before = os.getloadavg()
        t1 = timed([sys.executable, *probe, "--out", str(one)], env)
        tn = timed([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.nproc),
                    "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *probe, "--out", str(many)], env)
        load_after = os.getloadavg()
        c1, cn = compute_s(one, 1), compute_s(many, args.nproc)
        same = torch.equal(load_file(str(one / "attractors.safetensors"))["end_points"],
                           load_file(str(many / "attractors.safetensors"))["end_points"])
    speedup = t1 / tn
    print(f"| {args.model}, {args.seeds} seeds, `{args.extra}` | {t1:.1f} s | {tn:.1f} s | {speedup:.2f}x | "
          f"{100 * speedup / args.nproc:.0f}% | {c1:.1f} s | {cn:.1f} s | {c1 / cn:.2f}x | {same} | "
          f"{load_before[0]:.1f} -> {load_after[0]:.1f} |")


def compute_s(out: Path, nproc: int) -> float:
    """Iteration time of the slowest rank: the sum of its chunks' wall times (rank = chunk index % nproc)."""
    from safetensors import safe_open
    per_rank = [0.0] * nproc
    for f in sorted((out / "chunks").glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            per_rank[int(f.stem) % nproc] += float((h.metadata() or {})["wall"])
    return max(per_rank)


if __name__ == "__main__":
    main()
