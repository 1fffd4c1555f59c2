"""Atomic writes: whole files only, with the permissions a plain open() would give."""
from __future__ import annotations

import os
import stat

import pytest

from latentfield.probe import io


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_atomic_files_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        io.write_json(tmp_path / "a.json", {"x": 1})
        io.write_text(tmp_path / "b.html", "<p>hi</p>")
    finally:
        os.umask(old)
    for name in ("a.json", "b.html"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask
    assert (tmp_path / "a.json").read_text() == '{\n  "x": 1\n}\n'
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
