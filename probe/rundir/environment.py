"""What a result was computed with: package versions, threads, platform. Every run record carries it,
because the same settings on other library versions or thread counts can round differently."""
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


def environment(device: str | None = None, dtype: str | None = None) -> dict[str, Any]:
    """Python and package versions, torch's CPU thread count and the platform (for run records), with the
    model's ``device`` and ``dtype`` when given."""
    import torch
    env: dict[str, Any] = {"python": platform.python_version(), **{p: package_version(p) for p in PACKAGES},
                           "torch_threads": torch.get_num_threads(), "platform": platform.platform(terse=True)}
    if torch.cuda.is_available():
        env["cuda"] = torch.version.cuda
    if device is not None:
        env["device"] = device
    if dtype is not None:
        env["dtype"] = dtype
    return env


__all__ = ["package_version", "environment", "PACKAGES"]
