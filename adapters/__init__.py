"""Model adapters: every autoencoder family as an encode/decode pair behind one protocol."""
from .base import Adapter, AdapterError, TorchAutoencoder, fingerprint_tensors
from .registry import (accepted_forms, available_adapters, load_adapter, register_adapter,
                       register_hub_resolver, register_path_loader)

# Built-in family modules; importing one registers its loaders (see registry._load_builtins).
FAMILIES = ("demo", "hub", "tiny", "sd_vae", "vit_mae", "rae", "timm_encoder", "trained_decoder")

def _import_families() -> None:
    import importlib
    for fam in FAMILIES:
        importlib.import_module(f"{__name__}.{fam}")

_import_families()

__all__ = ["Adapter", "AdapterError", "TorchAutoencoder", "fingerprint_tensors", "load_adapter",
           "register_adapter", "register_path_loader", "register_hub_resolver", "accepted_forms",
           "available_adapters"]
