"""Hugging Face format checkpoints: local directories and ``org/model`` ids from the local cache only.

A directory is recognised by its ``config.json`` (diffusers ``_class_name``, transformers
``model_type``/``architectures``, or latentfield's own ``latentfield_family``) or, for a pipeline,
by ``model_index.json`` whose ``vae`` subfolder is loaded. Families register a matcher on the config
with :func:`~.registry.register_config_family`; a config no family accepts gives one line naming them all.
Nothing is ever downloaded: an id missing from the cache says so and how to pass a directory.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .base import Adapter
from .errors import AdapterError
from .registry import hooks, register_hub_resolver, register_path_loader


def supported_families() -> str:
    return ", ".join(h.name for h in hooks("config"))


def read_config(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise AdapterError(f"{directory}/config.json: cannot read ({e})") from None


def is_hf_directory(path: Path) -> bool:
    return path.is_dir() and ((path / "config.json").is_file() or (path / "model_index.json").is_file())


@register_path_loader("hf-directory", is_hf_directory)
def load_hf_directory(path: Path, subfolder: str | None = None, **options: Any) -> Adapter:
    """Load a local HF-format directory (model or pipeline) as an adapter."""
    path = Path(path)
    if subfolder:
        path = path / subfolder
    elif not (path / "config.json").is_file() and (path / "model_index.json").is_file():
        # A pipeline: the autoencoder lives in ``vae/`` (SD, SDXL, FLUX, ... all use that name).
        if not (path / "vae" / "config.json").is_file():
            raise AdapterError(f"{path}: a pipeline without a vae/ folder; pass subfolder= for its autoencoder")
        path = path / "vae"
    if not (path / "config.json").is_file():
        raise AdapterError(f"{path}: no config.json here")
    config = read_config(path)
    for fam in hooks("config"):
        if fam.match(config):
            from .safe_load import check_pickles
            check_pickles(path)
            return fam.loader(path, config, **options)
    kind = config.get("_class_name") or config.get("model_type") or "unknown"
    raise AdapterError(f"{path}: unsupported architecture {kind!r}; supported families: {supported_families()} "
                       "(encoders without a decoder: latentfield train-decoder)")


def hf_cache_dir() -> str:
    """The hub cache, read at call time so tests and users can point HF_HUB_CACHE/HF_HOME elsewhere."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    from huggingface_hub import constants
    return constants.HF_HUB_CACHE


def cached_snapshot(repo_id: str, revision: str | None = None, cache_dir: str | None = None) -> Path:
    """Path of ``repo_id``'s snapshot in the local cache; ``AdapterError`` when it is not there."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    cache_dir = cache_dir or hf_cache_dir()
    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, HFValidationError, OSError):
        raise AdapterError(
            f"{repo_id} is not in the local Hugging Face cache ({cache_dir}) and latentfield never downloads; "
            f"download it where there is network (hf download {repo_id} --local-dir DIR) and pass DIR "
            "(a local directory with config.json) instead") from None


@register_hub_resolver
def resolve_hub_id(repo_id: str, revision: str | None = None, cache_dir: str | None = None,
                   **options: Any) -> Adapter | None:
    snapshot = cached_snapshot(repo_id, revision, cache_dir)
    if not is_hf_directory(snapshot) and not options.get("subfolder"):
        raise AdapterError(f"{repo_id}: cached snapshot {snapshot} has no config.json or model_index.json")
    adapter = load_hf_directory(snapshot, **options)
    adapter.name = repo_id if not options.get("subfolder") else f"{repo_id}/{options['subfolder']}"
    return adapter
