"""Write failures: a real full disk (a small tmpfs, where this machine lets the test mount one) and the other
causes a write can fail with. Each ends in one line naming the file and the cause, leaves no temporary file,
and keeps every finished chunk, so a rerun after the cause is gone resumes to the uninterrupted result."""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from latentfield.adapters import atomic
from latentfield.adapters.errors import UsageError, WriteError
from latentfield.probe.cli import main
from latentfield.probe.rundir import load_result

# 64 seeds of the bundled demo in 8 chunks of 8: each chunk file, run.json and environment.json fit in one
# 4 KiB page of a tmpfs, so the free pages decide how many chunks fit before the disk is full.
ARGS = ["probe", "demo:memorize", "--seeds", "64", "--chunk-size", "8", "--batch-size", "8", "--max-steps", "50",
        "--quiet"]
N_CHUNKS = 8


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs mounted at ``tmp_path / "disk"`` (unmounted afterwards); skipped where mounting is not
    permitted (it needs root, or CAP_SYS_ADMIN in a container)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"a full-disk test needs to mount a small tmpfs; `mount` cannot run here ({e})")
    if res.returncode != 0:
        pytest.skip(f"a full-disk test needs to mount a small tmpfs (root or CAP_SYS_ADMIN); mount said: "
                    f"{res.stderr.strip() or res.returncode}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _fill(disk: Path, leave_pages: int) -> Path:
    """A filler file that leaves ``leave_pages`` free pages on ``disk``."""
    page = os.statvfs(disk).f_frsize
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (_free(disk) - leave_pages * page))
    assert _free(disk) == leave_pages * page
    return filler


def _stderr_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [ln for ln in err.splitlines() if ln.strip()]


def test_probe_onto_a_full_tmpfs_is_one_line_and_resumes_to_the_uninterrupted_result(small_disk, tmp_path, capsys):
    assert main([*ARGS, "--out", str(tmp_path / "ref")]) == 0  # the uninterrupted run, on the ordinary disk
    capsys.readouterr()
    out = small_disk / "run"
    # run.json, environment.json and 3 chunks fit; the 4th chunk meets a full disk
    filler = _fill(small_disk, leave_pages=5)
    assert main([*ARGS, "--out", str(out)]) == 2
    err = _stderr_lines(capsys)
    assert len(err) == 1, err
    kept = sorted((out / "chunks").glob("*.safetensors"))
    assert 1 <= len(kept) < N_CHUNKS, kept
    failed = out / "chunks" / f"{len(kept):05d}.safetensors"
    assert err[0] == f"latentfield: error: cannot write {failed}: No space left on device", err[0]
    assert not list(small_disk.rglob("*.tmp")) and not (out / "summary.json").exists()
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in kept}

    filler.unlink()  # space freed: the same command resumes
    assert main([*ARGS, "--out", str(out)]) == 0
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in kept} == before  # kept, not redone
    a, b = load_result(tmp_path / "ref"), load_result(out)
    assert torch.equal(a.end_points, b.end_points) and a.run_key == b.run_key  # bitwise: equal batch size
    assert (a.status == b.status).all() and (a.labels == b.labels).all() and a.n_evals == b.n_evals
    assert not list(small_disk.rglob("*.tmp"))


def test_a_full_disk_at_the_final_write_keeps_every_chunk(small_disk, tmp_path, capsys):
    out = small_disk / "run"
    filler = _fill(small_disk, leave_pages=2 + N_CHUNKS)  # every chunk fits, attractors.safetensors does not
    assert main([*ARGS, "--out", str(out)]) == 2
    err = _stderr_lines(capsys)
    assert err == [f"latentfield: error: cannot write {out / 'attractors.safetensors'}: No space left on device"]
    assert len(list((out / "chunks").glob("*.safetensors"))) == N_CHUNKS and not list(small_disk.rglob("*.tmp"))
    filler.unlink()
    assert main([*ARGS, "--out", str(out)]) == 0
    assert load_result(out).n_evals > 0


# -- every cause of a failed write, through the one atomic writer ---------------------------------------

@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO])
def test_any_os_error_while_writing_is_one_write_error_naming_the_file(tmp_path, code):
    def fail(tmp: str) -> None:
        Path(tmp).write_bytes(b"partial")
        raise OSError(code, os.strerror(code))

    target = tmp_path / "out" / "file.json"
    with pytest.raises(WriteError) as e:
        atomic._atomic(target, fail)
    assert str(e.value) == f"cannot write {target}: {os.strerror(code)}" and "\n" not in str(e.value)
    assert isinstance(e.value, UsageError) and isinstance(e.value, OSError) and e.value.errno == code
    assert list((tmp_path / "out").iterdir()) == []  # the temporary file is gone, no target either


def test_safetensors_error_over_an_io_error_is_one_write_error(tmp_path, monkeypatch):
    def full(tensors, tmp, metadata=None):
        Path(tmp).write_bytes(b"partial")
        raise SafetensorError("Error while serializing: I/O error: Disk quota exceeded (os error 122)")

    monkeypatch.setattr(atomic, "save_file", full)
    target = tmp_path / "chunk.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(WriteError, match=r"^cannot write .*chunk\.safetensors: Disk quota exceeded$") as e:
        atomic.write_tensors(target, {"a": torch.zeros(3)})
    assert e.value.errno == errno.EDQUOT and isinstance(e.value.__cause__, SafetensorError)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["chunk.safetensors"]


def test_other_failures_are_not_disguised_as_write_errors(tmp_path):
    def bug(tmp: str) -> None:
        raise TypeError("not a tensor")

    with pytest.raises(TypeError):  # a bug keeps its own type and traceback
        atomic._atomic(tmp_path / "x", bug)
    with pytest.raises(SafetensorError):  # safetensors refusing the data (not an IO error) is not a write error
        atomic._atomic(tmp_path / "y", lambda tmp: (_ for _ in ()).throw(SafetensorError("invalid tensor")))
    assert list(tmp_path.iterdir()) == []
