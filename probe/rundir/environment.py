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


def environment() -> dict[str, Any]:
    """Python and package versions, torch's CPU thread count and the platform (for run records)."""
    import torch
    return {"python": platform.python_version(), **{p: package_version(p) for p in PACKAGES},
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(terse=True)}


__all__ = ["package_version", "environment", "PACKAGES"]
