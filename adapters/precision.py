"""The floating-point type a model runs in: names, parsing, and which devices support which.

latentfield runs a model in float32 (default), bfloat16 or float16. Only the model's own arithmetic
(``encode``/``decode``) changes: the probe engine keeps its state, stopping rule and stored end
points in float32 whatever the model's dtype (``probe/engine.py``).
"""
from __future__ import annotations

import torch

from .errors import AdapterError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Spellings users bring from torch, diffusers and transformers (``torch_dtype="fp16"``, ``torch.bfloat16``).
_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
LOW_PRECISION = (torch.bfloat16, torch.float16)


def parse_dtype(value: str | torch.dtype) -> torch.dtype:
    """``"bfloat16"``, ``"bf16"``, ``"torch.bfloat16"`` or ``torch.bfloat16`` -> ``torch.bfloat16``;
    AdapterError in one line for anything else."""
    if isinstance(value, torch.dtype):
        if value in DTYPES.values():
            return value
        text = str(value)
    else:
        text = str(value).strip().lower().removeprefix("torch.")
        text = _ALIASES.get(text, text)
        if text in DTYPES:
            return DTYPES[text]
    raise AdapterError(f"unknown dtype {str(value)!r}: choose one of {', '.join(DTYPES)}")


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"`` (the name reports, run keys and ``--dtype`` use)."""
    return str(dtype).removeprefix("torch.")


def check_supported(dtype: torch.dtype, device: torch.device) -> None:
    """Refuse, in one line, a dtype the device cannot run: float16 on CPU (many CPU kernels lack it or
    run it emulated), bfloat16 on a CUDA GPU older than Ampere."""
    if dtype == torch.float16 and device.type == "cpu":
        raise AdapterError("float16 is not supported on CPU: use `dtype` bfloat16 (works on CPU) or a GPU (`device` cuda)")
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise AdapterError(f"bfloat16 is not supported on {torch.cuda.get_device_name(device)}: "
                           "use `dtype` float16 or float32")


__all__ = ["DTYPES", "LOW_PRECISION", "parse_dtype", "dtype_name", "check_supported"]
