"""Model adapters: every autoencoder family as an encode/decode pair behind one protocol.

Family modules register their hooks when imported; that happens on the first ``load_adapter`` (or
registry query), not here, so importing the protocol or the error types stays cheap.
"""
from .base import Adapter, TorchAutoencoder, fingerprint_tensors
from .errors import AdapterError, ModelError, UsageError, WriteError
from .registry import (accepted_forms, available_adapters, load_adapter, parse_spec, register_adapter,
                       register_config_family, register_hub_resolver, register_object_family, register_path_loader)

# Built-in family modules; importing one registers its hooks (see registry._load_builtins).
FAMILIES = ("demo", "hub", "taesd", "sd_vae", "vit_mae", "rae", "frozen_encoder", "trained_decoder")


def _import_families() -> None:
    import importlib
    for fam in FAMILIES:
        importlib.import_module(f"{__name__}.{fam}")


__all__ = ["Adapter", "AdapterError", "ModelError", "UsageError", "WriteError", "TorchAutoencoder", "fingerprint_tensors", "load_adapter",
           "parse_spec", "register_adapter", "register_path_loader", "register_config_family",
           "register_hub_resolver", "register_object_family", "accepted_forms", "available_adapters"]
