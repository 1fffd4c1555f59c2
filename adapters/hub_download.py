"""Fetch one model folder of a Hugging Face repository: the cache first, the Hub when online.

Resolution follows diffusers/transformers: the local cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``)
answers when it holds the revision, a download happens when the machine is online, and none at all
under ``HF_HUB_OFFLINE=1`` or ``local_files_only=True``. The real ``huggingface_hub`` client does
the work (its cache layout, token handling, ``HF_ENDPOINT``); this module decides *which* files:

1. the top-level configs (``config.json``, ``model_index.json``, ``vae/config.json`` or
   ``SUBFOLDER/config.json``) and the repository's file listing at the resolved commit;
2. the model folder: ``subfolder`` if given, the root if it has ``config.json``, a pipeline's ``vae/``;
3. that folder's configs and weights (:func:`~.provenance.select_files`: safetensors, the names the
   libraries load; pickle files only when there is no safetensors, and only with ``allow_pickle``),
   downloaded by commit hash, so a cached file costs no request.

Every failure is one :class:`AdapterError` line naming its cause (unknown id, unknown revision, gated
repository, offline and not cached, unreachable Hub). The sha256 of each file is recorded; a cached
blob whose content no longer matches the sha256 the Hub named it by is refused.
"""
from __future__ import annotations

import glob
import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from tqdm.auto import tqdm

from .errors import AdapterError, first_line
from .provenance import select_files, sha256_file

DEFAULT_REVISION = "main"


def hf_cache_dir() -> str:
    """The hub cache, read at call time so tests and users can point HF_HUB_CACHE/HF_HOME elsewhere."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    from huggingface_hub import constants
    return constants.HF_HUB_CACHE


@dataclass
class Fetched:
    """A model folder on disk. ``root``: the snapshot folder of ``commit``; ``folder``: the model's
    folder inside the repository ("" = root); ``has_config``: it holds a ``config.json``;
    ``provenance``: repo id, requested revision, resolved commit and ``{path in repo: sha256}``."""

    root: Path
    commit: str
    folder: str
    has_config: bool
    provenance: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.root / self.folder if self.folder else self.root


def fetch_model(repo_id: str, revision: str | None = None, subfolder: str | None = None,
                cache_dir: str | None = None, local_files_only: bool = False, allow_pickle: bool = False) -> Fetched:
    """Resolve ``repo_id`` at ``revision`` (branch, tag or commit; default main) to a local model folder."""
    from huggingface_hub import hf_hub_download, snapshot_download
    cache_dir = cache_dir or hf_cache_dir()
    offline = bool(local_files_only) or _hub_offline()
    label = f"{repo_id}@{revision}" if revision else repo_id
    sub = (subfolder or "").strip("/")
    with _hub_errors(repo_id, label, revision, offline, local_files_only, cache_dir):
        probe = [f"{sub}/config.json"] if sub else ["config.json", "model_index.json", "vae/config.json"]
        with _quiet():
            root = Path(snapshot_download(repo_id, revision=revision or DEFAULT_REVISION, cache_dir=cache_dir,
                                          local_files_only=offline, allow_patterns=[glob.escape(p) for p in probe],
                                          tqdm_class=_NoBar))
        commit = root.name
        names = _listing(repo_id, commit, cache_dir, root, offline)
        folder = _model_folder(names, sub, label)
        chosen = select_files(names, folder)
        if not chosen.weights:
            raise AdapterError(f"{label}: no weight files (.safetensors) in {folder or 'the repository root'} "
                               f"at commit {commit}")
        if chosen.pickle_only and not allow_pickle:
            weights = ", ".join(chosen.weights)
            raise AdapterError(
                f"{label} offers only pickle weights ({weights}), which can run code when loaded: refused. Convert "
                "them where you trust the file (load the model and save_pretrained(DIR, safe_serialization=True)) "
                "and pass DIR, or opt in with `allow_pickle`=True, which loads "
                "them with torch.load(weights_only=True)")
        files = (["model_index.json"] if folder and not sub and "model_index.json" in names else []) + chosen.files
        for name in files:  # by commit hash: a cached file is returned without a request
            hf_hub_download(repo_id, name, revision=commit, cache_dir=cache_dir, local_files_only=offline)
    hashes = {name: _verified_sha256(root / name, label) for name in files}
    provenance = {"repo_id": repo_id, "revision": revision or DEFAULT_REVISION, "commit": commit,
                  "subfolder": folder or None, "files": hashes}
    return Fetched(root, commit, folder, f"{folder}/config.json".lstrip("/") in names, provenance)


def _model_folder(names: list[str], sub: str, label: str) -> str:
    """The folder the model lives in: ``sub`` if given, the root with a config.json, or a pipeline's vae/."""
    if sub:
        if not any(n.startswith(sub + "/") for n in names):
            raise AdapterError(f"{label}: no folder {sub!r} in the repository (subfolder=)")
        return sub
    if "config.json" not in names and "model_index.json" in names:
        if "vae/config.json" not in names:
            raise AdapterError(f"{label}: a pipeline without a vae/ folder; pass subfolder= for its autoencoder")
        return "vae"  # SD, SDXL, FLUX, ... all keep their autoencoder there
    return ""


def _listing(repo_id: str, commit: str, cache_dir: str, root: Path, offline: bool) -> list[str]:
    """Every file path of the repository at ``commit``: from the tree listing huggingface_hub cached
    while resolving, else (an older client, or a cache filled by other means) what the snapshot holds."""
    try:
        from huggingface_hub import get_cached_repo_tree
        from huggingface_hub.errors import CachedRepoTreeNotFoundError
    except ImportError:  # huggingface_hub < 1.x keeps no tree cache
        if not offline:
            from huggingface_hub import HfApi
            return list(HfApi().list_repo_files(repo_id, revision=commit))
    else:
        try:
            return [f.path for f in get_cached_repo_tree(repo_id, revision=commit, cache_dir=cache_dir)]
        except CachedRepoTreeNotFoundError:
            pass
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def _verified_sha256(path: Path, label: str) -> str:
    """sha256 of a cached file. The client names LFS blobs by their sha256 (the Hub's ETag), so a
    blob whose bytes differ from its name was altered or corrupted after download: refused."""
    digest = sha256_file(path)
    blob = Path(os.path.realpath(path))
    if re.fullmatch(r"[0-9a-f]{64}", blob.name) and blob.name != digest:
        raise AdapterError(f"{label}: cached file {path.name} does not match the sha256 the Hub gave it "
                           f"(corrupted or altered cache); delete {blob} and rerun to download it again")
    return digest


def _hub_offline() -> bool:
    """huggingface_hub's own offline switch (HF_HUB_OFFLINE, read when it was imported)."""
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE)


class _NoBar(tqdm):
    """No progress bar for the config files (a few hundred bytes); weight downloads keep theirs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the client's warnings (e.g. 'No files matched') while the configs are probed."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def _hub_errors(repo_id: str, label: str, revision: str | None, offline: bool, local_files_only: bool,
                cache_dir: str) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into one AdapterError line that names the cause (never the token)."""
    from huggingface_hub import constants, errors
    endpoint = constants.ENDPOINT
    try:
        yield
    except errors.GatedRepoError:
        raise AdapterError(f"{repo_id} is a gated repository and the Hub ({endpoint}) refused access without an "
                           "accepted token: accept its conditions on the model's page, then log in (hf auth login) "
                           "or set HF_TOKEN") from None
    except errors.RevisionNotFoundError:
        raise AdapterError(f"{repo_id}: revision {revision!r} not found on the Hub ({endpoint}); give a branch, tag "
                           "or commit hash of this repository") from None
    except errors.RepositoryNotFoundError:
        raise AdapterError(f"{repo_id}: no such local path, and no such model repository on the Hub ({endpoint}) "
                           "(if it is private: hf auth login, or set HF_TOKEN)") from None
    except errors.LocalEntryNotFoundError as e:  # includes an incomplete cached snapshot
        cause = e.__cause__
        if offline or isinstance(cause, errors.OfflineModeIsEnabled):
            switch = "`local_files_only`" if local_files_only else "HF_HUB_OFFLINE=1"
            raise AdapterError(
                f"{label} is not in the local Hugging Face cache ({cache_dir}) and downloads are off ({switch}), "
                f"nor is there a local folder {repo_id}; "
                f"run once with network access, or download it where there is network (`hf download {repo_id} "
                "--local-dir DIR`) and pass the local directory DIR") from None
        why = first_line(cause or e)
        raise AdapterError(f"{label} is not in the local Hugging Face cache ({cache_dir}), nor a local folder, and "
                           f"the Hub ({endpoint}) cannot be reached ({why}); check the path, the network and "
                           "HF_ENDPOINT, or pass a local directory") from None
    except errors.HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", "?")
        raise AdapterError(f"{label}: the Hub ({endpoint}) answered HTTP {status} ({first_line(e)})") from None
    except errors.HFValidationError as e:
        raise AdapterError(f"{repo_id!r} is not a valid Hugging Face id ({first_line(e)})") from None
    except (OSError, *_network_errors()) as e:  # disk full, a connection dropped mid-file, ...
        raise AdapterError(f"{label}: download failed ({first_line(e)})") from None


def _network_errors() -> tuple[type[BaseException], ...]:
    """The HTTP library's own errors (httpx2 for huggingface_hub 2.x, httpx or requests before)."""
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            return (getattr(__import__(module), name),)
        except (ImportError, AttributeError):
            continue
    return ()
