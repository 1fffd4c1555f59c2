"""Shared plumbing of the experiments: command line, fixed threads and seeds, tables and figures.

Every experiment writes ``OUT/table.json`` (the numbers; a second run gives the same file),
``OUT/table.md`` (the same as markdown, also printed), ``OUT/*.png`` figures and ``OUT/run.json``
(command, wall time, threads, library versions: the only file that changes between runs).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from latentfield.adapters.demo import DemoAdapter
from latentfield.adapters import atomic
from latentfield.probe.analyses.copying import calibrated_copying
from latentfield.probe.analyses.memorization import memorization_coefficient
from latentfield.probe.data import digits, noise_images
from latentfield.probe.workflows.train_demo import DemoRecipe, train_demo, training_subset
from latentfield.probe.engine.latents import decode_unit
from latentfield.probe.rundir import ProbeConfig, ProbeResult, run_probe
from latentfield.probe.rundir.environment import environment

DIGITS = 4  # significant digits in tables: enough to read, stable across reruns on one machine


def parse_args(description: str, argv: Sequence[str] | None = None,
               extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", required=True, help="output directory (table.json, table.md, figures)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs, numbers mean nothing")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the machine is shared)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if extra:
        extra(p)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    args.t0 = time.perf_counter()
    return args


def rnd(v: Any) -> Any:
    """Round floats (recursively) to ``DIGITS`` significant digits for the tables."""
    if isinstance(v, (float, np.floating)):
        return float(f"{float(v):.{DIGITS}g}") if np.isfinite(v) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, dict):
        return {k: rnd(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [rnd(x) for x in v]
    return v


def markdown_table(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    columns = list(columns or rows[0].keys())
    fmt = lambda v: "-" if v is None else (f"{v:.{DIGITS}g}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def finish(args: argparse.Namespace, name: str, tables: dict[str, list[dict[str, Any]]],
           extra: dict[str, Any] | None = None) -> None:
    """Write table.json / table.md / run.json and print the markdown."""
    tables = {k: rnd(v) for k, v in tables.items()}
    atomic.write_json(args.out / "table.json", {"experiment": name, "smoke": args.smoke, "tables": tables,
                                            **(rnd(extra) if extra else {})})
    md = "\n\n".join(f"**{k}**\n\n{markdown_table(v)}" for k, v in tables.items()) + "\n"
    atomic.write_text(args.out / "table.md", md)
    wall = time.perf_counter() - args.t0
    atomic.write_json(args.out / "run.json", {"command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
                                          "wall_time_s": round(wall, 1), "threads": args.threads,
                                          "environment": environment("cpu", "float32")})
    print(md)
    print(f"[{name}] wall time {wall:.1f} s, {args.threads} thread(s); results in {args.out}")


def save_png(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def train(recipe: DemoRecipe, progress: bool, on_epoch=None) -> tuple[DemoAdapter, dict[str, Any]]:
    model, record = train_demo(recipe, progress=progress, on_epoch=on_epoch)
    return DemoAdapter(model, name=f"k{recipe.bottleneck}-n{recipe.n_train}"), record


def train_images(recipe: DemoRecipe) -> torch.Tensor:
    """The training images (M, 1, 32, 32) in [0, 1] of a recipe."""
    return digits("train")[0][torch.from_numpy(training_subset(recipe))]


def noise_probe(adapter: DemoAdapter, n_seeds: int, max_steps: int, progress: bool) -> ProbeResult:
    """The paper's small-AE probe: N(0, I) seeds, tol 1e-6, cosine de-dup at 0.99."""
    return run_probe(adapter, ProbeConfig(n_seeds=n_seeds, max_steps=max_steps, tol=1e-6, batch_size=256),
                     progress=progress)


def memorization_row(adapter: DemoAdapter, result: ProbeResult, train: torch.Tensor,
                     heldout: torch.Tensor) -> dict[str, Any]:
    """Memorization coefficient of the decoded attractors, its held-out and noise baselines, and the
    calibrated copy rate (docs/analyses.md section 1)."""
    decoded = decode_unit(adapter, result.attractors)
    noise = noise_images(len(heldout), train.shape[1:], seed=0)
    mem = memorization_coefficient(decoded, train)
    held = memorization_coefficient(heldout, train)
    nb = memorization_coefficient(noise, train)
    cal = calibrated_copying(decoded, train, heldout, noise, result.basin_sizes) if len(decoded) else {}
    return {"n_attractors": len(result.attractors), "converged": float(np.mean(result.status == 0)),
            "memorization_mean": mem["mean"], "memorization_std": mem["std"],
            "heldout_mean": held["mean"], "heldout_std": held["std"],
            "noise_mean": nb["mean"], "noise_std": nb["std"],
            "copy_rate": cal.get("copy_rate"), "copy_rate_seeds": cal.get("copy_rate_seeds")}
