"""Hugging Face format checkpoints: local directories and ``org/model[@revision]`` ids from the Hub.

A directory is recognised by its ``config.json`` (diffusers ``_class_name``, transformers
``model_type``/``architectures``, or latentfield's own ``latentfield_family``) or, for a pipeline,
by ``model_index.json`` whose ``vae`` subfolder is loaded. Families register a matcher on the config
with :func:`~.registry.register_config_family`; a config no family accepts gives one line naming them all.
An id resolves like diffusers/transformers do (the cache, then a download unless offline;
:mod:`.hub_download`), and the adapter carries its provenance: repo id, commit, sha256 of each file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .base import Adapter
from .errors import AdapterError
from .hub_download import fetch_model, hf_cache_dir  # noqa: F401  (hf_cache_dir: public helper)
from .provenance import local_provenance, select_files
from .registry import hooks, register_hub_resolver, register_path_loader

# Options read by the hub resolver itself; the rest go to the family loader.
HUB_OPTIONS = ("revision", "subfolder", "cache_dir", "local_files_only", "allow_pickle")


def supported_families() -> str:
    return ", ".join(h.name for h in hooks("config"))


def read_config(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise AdapterError(f"{directory}/config.json: cannot read ({e})") from None


def is_hf_directory(path: Path) -> bool:
    return path.is_dir() and ((path / "config.json").is_file() or (path / "model_index.json").is_file())


def model_folder(path: Path, subfolder: str | None = None) -> Path:
    """The folder holding the model's config.json: ``path/subfolder``, ``path``, or a pipeline's ``vae/``."""
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
    return path


def load_hf_model(path: Path, **options: Any) -> Adapter:
    """Build the adapter of the family whose matcher accepts ``path/config.json``."""
    config = read_config(path)
    for fam in hooks("config"):
        if fam.match(config):
            from .safe_load import check_pickles
            check_pickles(path)
            return fam.loader(path, config, **options)
    kind = config.get("_class_name") or config.get("model_type") or "unknown"
    raise AdapterError(f"{path}: unsupported architecture {kind!r}; supported families: {supported_families()} "
                       "(encoders without a decoder: latentfield train-decoder)")


@register_path_loader("hf-directory", is_hf_directory)
def load_hf_directory(path: Path, subfolder: str | None = None, **options: Any) -> Adapter:
    """Load a local HF-format directory (model or pipeline) as an adapter, with its files' sha256."""
    root = Path(path)
    folder = model_folder(root, subfolder)
    adapter = load_hf_model(folder, **options)
    prefix = folder.relative_to(root)
    files = [(prefix / f).as_posix() for f in select_files(p.name for p in folder.iterdir() if p.is_file()).files]
    if not subfolder and folder != root:  # a pipeline: its index chose the folder
        files.insert(0, "model_index.json")
    adapter.provenance = local_provenance(root, files)
    return adapter


def split_revision(spec: str) -> tuple[str, str | None]:
    """``org/name@rev`` -> (``org/name``, ``rev``); no ``@`` -> (spec, None)."""
    repo_id, at, rev = spec.partition("@")
    if at and not rev:
        raise AdapterError(f"{spec}: empty revision after '@' (expected org/name@BRANCH, TAG or COMMIT)")
    return repo_id, (rev or None)


@register_hub_resolver
def resolve_hub_id(spec: str, revision: str | None = None, subfolder: str | None = None, cache_dir: str | None = None,
                   local_files_only: bool = False, allow_pickle: bool = False, **options: Any) -> Adapter | None:
    """Load ``org/name[@rev]`` (options ``revision``, ``subfolder``, ``cache_dir``, ``local_files_only``,
    ``allow_pickle``; the rest go to the family). The adapter's ``provenance`` names the commit."""
    repo_id, at = split_revision(spec)
    if at and revision and at != revision:
        raise AdapterError(f"{spec}: two revisions given ({at!r} in the id, revision={revision!r}); give one")
    revision = at or revision
    for key, value in (("local_files_only", local_files_only), ("allow_pickle", allow_pickle)):
        if not isinstance(value, bool):
            raise AdapterError(f"{spec}: {key} must be true or false, got {value!r}")
    fetched = fetch_model(repo_id, revision=revision, subfolder=subfolder, cache_dir=cache_dir,
                          local_files_only=local_files_only, allow_pickle=allow_pickle)
    if fetched.has_config:
        adapter = load_hf_model(fetched.path, **options)
    else:  # no config.json: a format another family detects on disk (e.g. a TAESD encoder/decoder pair)
        hook = next((h for h in hooks("path") if h.name != "hf-directory" and h.match(fetched.path)), None)
        if hook is None:
            raise AdapterError(f"{spec}: commit {fetched.commit} has no config.json or model_index.json"
                               f"{' in ' + fetched.folder if fetched.folder else ''} and no other known checkpoint "
                               "layout; pass subfolder= or a local checkpoint")
        adapter = hook.loader(fetched.path, **options)
    if not options.get("name"):
        adapter.name = repo_id + (f"/{subfolder.strip('/')}" if subfolder else "") + (f"@{revision}" if revision else "")
    adapter.provenance = fetched.provenance
    return adapter
