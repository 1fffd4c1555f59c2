"""Fault injection on run directories: kills, foreign / short / corrupt chunks, lost run files, concurrent
runs, a full disk. Each case asserts the exact outcome: the uninterrupted run's result (bit for bit at
equal batch size), or one line on stderr and a non-zero exit with every finished chunk kept. Commands run in
this process on one thread (builders.run_cli); kills and concurrent runs in separate one-thread processes."""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from builders import assert_one_line_error, cli_command, cli_env, run_cli
from latentfield.probe.rundir import load_result

pytestmark = pytest.mark.usefixtures("one_thread")  # the separate processes run on one thread too: bitwise equal
# 48 seeds of a contracting random AE; tol 1e-30 keeps every seed iterating to max_steps, so a run takes
# long enough to be killed in the middle; chunks of 8 seeds.
ARGS = ["probe", "py:builders:random_conv_ae", "--seeds", "48", "--max-steps", "150", "--tol", "1e-30",
        "--chunk-size", "8", "--batch-size", "8", "--quiet"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread) -> Path:
    """The uninterrupted run every faulty one must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "run"
    res = run_cli(*ARGS, "--out", str(out))
    assert res.returncode == 0, res.stderr
    return out


def _same(a: Path, b: Path) -> None:
    ra, rb = load_result(a), load_result(b)
    torch.testing.assert_close(ra.end_points, rb.end_points, rtol=0, atol=0)  # bitwise: equal batch size
    assert (ra.status == rb.status).all() and (ra.labels == rb.labels).all() and ra.n_evals == rb.n_evals
    assert ra.run_key == rb.run_key


def test_kill_9_at_random_points_then_resume_bit_for_bit(reference, tmp_path):
    rng = random.Random(0)
    out = tmp_path / "run"
    kills = 0
    for _ in range(2):
        proc = subprocess.Popen(cli_command(*ARGS, "--out", out), env=cli_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        before = len(list((out / "chunks").glob("*.safetensors"))) if (out / "chunks").exists() else 0
        want = before + rng.randint(1, 2)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            done = len(list((out / "chunks").glob("*.safetensors"))) if (out / "chunks").exists() else 0
            if done >= want:
                break
            time.sleep(0.05)
        time.sleep(rng.random() * 0.3)  # somewhere inside the next chunk
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(30)
    assert kills >= 1, "the run finished before any kill: make it longer"
    res = run_cli(*ARGS, "--out", out)
    assert res.returncode == 0, res.stderr
    _same(out, reference)
    assert not list(out.rglob("*.tmp"))


def _partial(reference: Path, tmp_path: Path, keep: int = 3) -> Path:
    """A copy of the reference run with only its first ``keep`` chunks, as a killed run leaves it."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    for f in ("attractors.safetensors", "summary.json"):
        (out / f).unlink()
    for chunk in sorted((out / "chunks").glob("*.safetensors"))[keep:]:
        chunk.unlink()
    return out


def _rewrite(path: Path, **changes) -> None:
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    rows = changes.pop("rows", None)
    if rows is not None:
        tensors = {k: v[:rows] for k, v in tensors.items()}
    meta.update(changes)
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize("fault", ["truncated", "emptied", "garbage", "short", "foreign", "unkeyed", "other-range"])
def test_bad_chunk_is_recomputed_never_used(reference, tmp_path, fault):
    out = _partial(reference, tmp_path)
    chunk = out / "chunks" / "00001.safetensors"
    if fault == "truncated":
        chunk.write_bytes(chunk.read_bytes()[:200])
    elif fault == "emptied":
        chunk.write_bytes(b"")
    elif fault == "garbage":
        chunk.write_bytes(os.urandom(4096))
    elif fault == "short":
        _rewrite(chunk, rows=5)
    elif fault == "foreign":  # the same chunk of a run with another --seed
        _rewrite(chunk, run_key="0" * 64)
    elif fault == "unkeyed":
        with safe_open(str(chunk), "pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        save_file(tensors, str(chunk), metadata={"n_evals": "1", "wall": "0.1"})
    elif fault == "other-range":
        _rewrite(chunk, start="16", stop="24")
    res = run_cli(*ARGS, "--out", out)
    assert_one_line_error(res, "00001.safetensors", "recomputing that chunk", code=0, prefix="latentfield: ")
    _same(out, reference)


def test_chunk_of_a_run_with_another_seed_is_not_used(reference, tmp_path):
    other = tmp_path / "seed1"
    assert run_cli(*ARGS, "--seed", "1", "--out", other).returncode == 0
    out = _partial(reference, tmp_path)
    shutil.copy(other / "chunks" / "00002.safetensors", out / "chunks" / "00002.safetensors")
    res = run_cli(*ARGS, "--out", out)
    assert res.returncode == 0 and "belongs to another run" in res.stderr
    _same(out, reference)


def test_lost_run_file_never_mixes_settings(reference, tmp_path):
    out = _partial(reference, tmp_path)
    (out / "run.json").unlink()
    res = run_cli(*ARGS, "--seed", "7", "--out", out)  # seed-0 chunks must not be labelled seed 7
    assert res.returncode == 0, res.stderr
    fresh = tmp_path / "fresh7"
    assert run_cli(*ARGS, "--seed", "7", "--out", fresh).returncode == 0
    _same(out, fresh)
    assert res.stderr.count("belongs to another run") == 3  # the three seed-0 chunks, each recomputed


def test_corrupt_run_file_is_rebuilt_in_one_line(reference, tmp_path):
    out = _partial(reference, tmp_path)
    (out / "run.json").write_text("{not json")
    res = run_cli(*ARGS, "--out", out)
    assert_one_line_error(res, "run.json is unreadable; rebuilt from the current settings", code=0,
                          prefix="latentfield: ")
    _same(out, reference)
    json.loads((out / "run.json").read_text())


def test_other_settings_into_the_same_folder_are_refused(reference, tmp_path):
    out = _partial(reference, tmp_path)
    res = run_cli(*ARGS, "--sigma", "2", "--out", out)
    assert_one_line_error(res, "holds a probe with other settings", "--out")
    assert len(list((out / "chunks").glob("*.safetensors"))) == 3  # nothing lost


def test_two_concurrent_runs_into_one_folder(reference, tmp_path):
    out = tmp_path / "run"
    procs = [subprocess.Popen(cli_command(*ARGS, "--out", out), env=cli_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    _same(out, reference)
    assert not list(out.rglob("*.tmp"))


def test_full_disk_keeps_finished_chunks_and_resumes(reference, tmp_path, monkeypatch):
    import latentfield.adapters.atomic as atomic
    real, writes = atomic.write_tensors, []

    def full_after_three(path, *a, **k):
        writes.append(path)
        if len(writes) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, *a, **k)

    out = tmp_path / "run"
    monkeypatch.setattr(atomic, "write_tensors", full_after_three)
    assert_one_line_error(run_cli(*ARGS, "--out", out), "No space left on device")
    assert len(list((out / "chunks").glob("*.safetensors"))) == 3
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(atomic, "write_tensors", real)
    assert run_cli(*ARGS, "--out", out).returncode == 0
    _same(out, reference)


def test_huge_seed_count_is_refused_before_work(tmp_path):
    """10**12 seeds would never end: refused in one line naming --seeds and the bound, before any work."""
    from latentfield.probe.rundir.config import MAX_SEEDS
    res = run_cli("probe", "py:builders:random_conv_ae", "--seeds", str(10**12), "--out", tmp_path / "o", "--quiet")
    assert_one_line_error(res, "--seeds is 1,000,000,000,000", f"more than the {MAX_SEEDS:,} one run takes", "--seed")
    assert not (tmp_path / "o" / "chunks").exists()
    res = run_cli("probe", "py:builders:random_conv_ae", "--seeds", str(MAX_SEEDS + 1), "--out", tmp_path / "o")
    assert_one_line_error(res, "--seeds is 100,000,001")


def test_seed_count_bound_by_the_end_points_it_would_assemble():
    from latentfield.adapters.errors import UsageError
    from latentfield.probe.rundir import ProbeConfig
    from latentfield.probe.rundir.config import MAX_END_POINT_BYTES
    cfg = ProbeConfig(n_seeds=10**7)
    cfg.validate((16,))  # 0.6 GiB of end points
    with pytest.raises(UsageError, match=r"^`n_seeds` 10,000,000 x 16,384 latent values x 4 bytes is 610 GiB of end "
                                         r"points, more than the 64 GiB"):
        cfg.validate((4, 64, 64))
    ProbeConfig(n_seeds=MAX_END_POINT_BYTES // (4 * 16384)).validate((4, 64, 64))  # at the bound: runs


def test_the_plan_at_the_seed_bound_is_lazy(tmp_path):
    """At the largest count a run takes, chunks are planned one at a time (no list of 390,625 chunks up front):
    the first chunk is computed and written as for a small run."""
    import inspect

    from builders import random_conv_ae
    from latentfield.probe.rundir import ProbeConfig
    from latentfield.probe.rundir.config import MAX_SEEDS
    from latentfield.probe.rundir.runner import Chunk, ProbeRun
    run = ProbeRun(random_conv_ae(), ProbeConfig(n_seeds=MAX_SEEDS, max_steps=5), out=tmp_path / "run")
    plan = run.chunks()
    assert inspect.isgenerator(plan)
    first = next(plan)
    assert first == Chunk(0, 0, 256) and next(plan) == Chunk(1, 256, 512)
    run.run_chunk(first, progress=None)
    assert run.load_chunk(first) is not None and (tmp_path / "run" / "chunks" / "00000.safetensors").exists()


@pytest.mark.parametrize("flag,value,needle", [("--tol", "inf", "tolerance must be finite"),
                                               ("--sigma", "inf", "sigma must be finite"),
                                               ("--tol", "nan", "tolerance must be positive")])
def test_meaningless_numbers_are_refused_before_work(tmp_path, flag, value, needle):
    res = run_cli("probe", "py:builders:random_conv_ae", flag, value, "--out", tmp_path / "o")
    assert_one_line_error(res, needle)
    assert not (tmp_path / "o" / "chunks").exists()


def test_model_failure_mid_run_says_how_many_seeds_are_safe(tmp_path):
    """A model that fails mid-run (like a CUDA device assert): one line naming the call, exit 3, and the
    seeds already on disk counted from the files the run kept."""
    (tmp_path / "flaky.py").write_text(
        "import torch\n"
        "from builders import random_conv_ae\n"
        "calls = {'n': 0}\n"
        "def model():\n"
        "    a = random_conv_ae()\n"
        "    dec = a.model.decoder\n"
        "    def flaky(z):\n"
        "        calls['n'] += 1\n"
        "        if calls['n'] > 60:\n"
        "            raise RuntimeError('device-side assert triggered')\n"
        "        return dec(z)\n"
        "    a.model.decoder = torch.nn.Module()\n"
        "    a._decode = flaky\n"
        "    return a\n")
    out = tmp_path / "run"
    res = run_cli("probe", "py:flaky:model", "--seeds", "48", "--max-steps", "20", "--tol", "1e-30", "--chunk-size",
                  "8", "--batch-size", "8", "--quiet", "--out", out, pythonpath=[tmp_path])
    line = assert_one_line_error(res, "model error", "decode", "device-side assert triggered", code=3,
                                 prefix="latentfield: model error: ")
    kept = len(list((out / "chunks").glob("*.safetensors")))
    assert kept == 3 and f"{8 * kept} of 48 seeds are safe on disk in {out}" in line, line


def test_model_returning_nan_ends_every_seed_as_diverged(tmp_path):
    """NaN out of the model is no crash and no attractor: every seed is `diverged`, and the run says so."""
    from latentfield.adapters import TorchAutoencoder
    from latentfield.probe.rundir import ProbeConfig, run_probe
    nan_model = TorchAutoencoder(lambda x: x.flatten(1) * float("nan"), lambda z: z.view(-1, 1, 2, 2),
                                 image_shape=(1, 2, 2), name="nan-model")
    res = run_probe(nan_model, ProbeConfig(n_seeds=12, max_steps=50), out=tmp_path / "run", progress=False)
    assert res.counts == {"converged": 0, "max_steps": 0, "diverged": 12}
    assert len(res.attractors) == 0 and (res.steps == 1).all()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["counts"]["diverged"] == 12
