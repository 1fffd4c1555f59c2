"""Atomic writes: whole files only, with the permissions a plain open() would give."""
from __future__ import annotations

import os
import stat

import pytest
import torch

from latentfield.adapters.demo import DemoAutoencoder, save_demo_checkpoint
from latentfield.adapters import atomic


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_atomic_files_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic.write_json(tmp_path / "a.json", {"x": 1})
        atomic.write_text(tmp_path / "b.html", "<p>hi</p>")
        atomic.write_tensors(tmp_path / "c.safetensors", {"w": torch.ones(2)})
    finally:
        os.umask(old)
    for name in ("a.json", "b.html", "c.safetensors"):  # safetensors' own save_file writes 0600
        assert _mode(tmp_path / name) == 0o666 & ~mask
    assert (tmp_path / "a.json").read_text() == '{\n  "x": 1\n}\n'
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_demo_checkpoints_are_readable_by_others(tmp_path):
    # `latentfield train-demo` output is meant to be shared; it was 0600 when written by save_file.
    old = os.umask(0o022)
    try:
        save_demo_checkpoint(DemoAutoencoder(bottleneck=2, width=4), tmp_path / "m.safetensors", {"epochs": 1})
    finally:
        os.umask(old)
    assert _mode(tmp_path / "m.safetensors") == _mode(tmp_path / "m.json") == 0o644
