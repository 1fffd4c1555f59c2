"""Load a repository script (bench/, experiments/) as a module, so tests call its functions directly."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(folder: str, name: str, module_name: str | None = None) -> ModuleType:
    """``ROOT/folder/name.py`` as a fresh module; the folder goes on ``sys.path`` for its sibling imports."""
    if str(ROOT / folder) not in sys.path:
        sys.path.insert(0, str(ROOT / folder))
    spec = importlib.util.spec_from_file_location(module_name or name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
