"""Atomic file writes: a reader (or a resumed run) never sees a half-written file, and a failed write
(a full disk, say) leaves no temporary file behind and is one :class:`~.errors.WriteError` line."""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save_file

from .errors import WriteError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    """Run ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``. Any failure to
    write (a full disk, a quota, a read-only or forbidden folder) removes the temporary file and raises one
    :class:`WriteError` naming ``path`` and the cause; ``path`` itself is untouched (old content or none)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        # mkstemp makes the file private (0600); give it the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(OSError):  # never hide the failure behind a failed clean-up
                os.unlink(tmp)
        cause = _write_failure(e)
        if cause is None:
            raise
        raise WriteError(path, *cause) from e


def _write_failure(e: BaseException) -> tuple[str, int | None] | None:
    """(cause, errno) when ``e`` is a failure to write a file: an ``OSError``, or safetensors'
    ``SafetensorError`` wrapping one (it reports ``I/O error: No space left on device (os error 28)``).
    None for anything else (a bug, Ctrl-C): that is raised as it is."""
    if isinstance(e, WriteError):
        return None
    if isinstance(e, OSError):
        return (e.strerror or str(e) or type(e).__name__), e.errno
    if type(e).__name__ == "SafetensorError":  # derives from Exception only
        m = re.search(r"os error (\d+)", str(e))
        if m:
            return os.strerror(int(m.group(1))), int(m.group(1))
        if "I/O error" in str(e):
            return str(e).split("I/O error:", 1)[1].strip() or "I/O error", None
    return None


def write_json(path: str | Path, obj: Any) -> None:
    def w(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=_jsonable)
            f.write("\n")
    _atomic(Path(path), w)


def write_bytes(path: str | Path, data: bytes) -> None:
    def w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    _atomic(Path(path), w)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    _atomic(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _jsonable(o: Any) -> Any:
    import numpy as np
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
