"""Shared fixtures: offline hub, real TAEF2 and Meehan et al. VAE weights from ../shared, small real image sets."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One thread for the whole suite, as in every process the tests start (builders.cli_env): the models and
# arrays here are small, and spinning OpenMP / BLAS threads on a busy machine cost several times the time (a
# full-disk test: 206 s on two threads, 7 s on one, at load 10 on 2 cores); one thread also keeps in- and
# out-of-process runs bitwise comparable. Set before torch, numpy and scikit-learn start their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
TAEF2_DIR = Path(os.environ.get("LATENTFIELD_TAEF2_DIR", ROOT.parent / "shared" / "weights" / "taef2"))
MEEHAN_DIR = Path(os.environ.get("LATENTFIELD_MEEHAN_DIR") or ROOT.parent / "shared" / "weights" / "meehan_vae")


@pytest.fixture(scope="session")
def taef2_dir() -> Path:
    if not (TAEF2_DIR / "taef2_encoder.pth").exists():
        pytest.skip(f"TAEF2 weights not found in {TAEF2_DIR} (set LATENTFIELD_TAEF2_DIR)")
    return TAEF2_DIR


@pytest.fixture(scope="session")
def meehan_dir() -> Path:
    """The MNIST VAEs of Meehan et al. 2020 (docs/examples/meehan_vae.py). Skipped only where the folder
    is absent (a user's clone without ../shared); a folder missing one of the files fails the tests."""
    if not MEEHAN_DIR.is_dir():
        pytest.skip(f"Meehan et al. VAE weights not found: no folder {MEEHAN_DIR} (set LATENTFIELD_MEEHAN_DIR)")
    return MEEHAN_DIR


@pytest.fixture(scope="module")
def one_thread():
    """Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``: one thread, whatever a test before this
    module left. Tiny models run no faster on two threads, and on a busy machine two spinning OpenMP threads
    cost several times the time (generalize audit, load 14 on 2 cores: 9 s on one thread, 76 s on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
