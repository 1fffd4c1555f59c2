"""What a result was computed with: package versions, threads, platform, and how many processes. Every run
record carries it, because the same settings on other library versions or thread counts can round
differently. None of it is part of the run key: a run resumed elsewhere (other versions, threads, process
count) is the same run, and its records say where each session ran."""
from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

PACKAGES = ("latentfield", "torch", "numpy", "scipy", "scikit-learn", "faiss-cpu", "diffusers", "transformers",
            "timm", "safetensors")


def package_version(name: str) -> str:
    """The installed version of a distribution, or ``"unknown"``."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def environment(device: str | None = None, dtype: str | None = None, world_size: int | None = None) -> dict[str, Any]:
    """Python and package versions, torch's CPU thread count and the platform (for run records), with the
    model's ``device`` and ``dtype`` and the job's ``world_size`` (processes: 1 alone, N under ``torchrun`` /
    ``accelerate launch``; ``rundir.distributed.world_size()``) when given."""
    import torch
    env: dict[str, Any] = {"python": platform.python_version(), **{p: package_version(p) for p in PACKAGES},
                           "torch_threads": torch.get_num_threads(), "platform": platform.platform(terse=True)}
    if torch.cuda.is_available():
        env["cuda"] = torch.version.cuda
    if device is not None:
        env["device"] = device
    if dtype is not None:
        env["dtype"] = dtype
    if world_size is not None:
        env["world_size"] = int(world_size)
    return env


__all__ = ["package_version", "environment", "PACKAGES"]
