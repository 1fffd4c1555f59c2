"""Several processes on one probe (torchrun, gloo on CPU) give exactly the single-process result.

Each test launches real ``torchrun`` jobs (``python -m torch.distributed.run``) of the ``latentfield`` CLI
with one thread per process, on a demo checkpoint with small settings; the single-process runs they are
compared with run in this process, on one thread too (``builders.run_cli``).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from builders import run_cli

pytest.importorskip("accelerate")
pytestmark = pytest.mark.usefixtures("one_thread")  # as each rank: bitwise equal results

TESTS = Path(__file__).parent
PROBE = ["demo:memorize", "--max-steps", "300", "--tol", "1e-4", "--batch-size", "8", "--quiet"]


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")}
    return {**e, "PYTHONPATH": str(TESTS), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:  # torchrun refuses port 0: ask the OS for a free one
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(nproc: int, *args: str) -> list[str]:
    cli = ["-m", "latentfield.probe.cli", *args]
    if nproc == 1:
        return [sys.executable, *cli]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
            "127.0.0.1", "--master_port", str(free_port()), *cli]


def launch(nproc: int, *args: str) -> subprocess.CompletedProcess:
    """``nproc`` ranks under torchrun; one process is this one (``cli.main``, nothing to launch)."""
    res = run_cli(*args) if nproc == 1 else subprocess.run(command(nproc, *args), capture_output=True, text=True,
                                                             env=env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def tensors(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "attractors.safetensors"))


def assert_same_probe(a: Path, b: Path) -> None:
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k  # bitwise: end points, attractors, labels, status, steps
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    for k in ("n_attractors", "n_attractors_euclid", "basin_sizes", "counts", "n_evals", "run_key"):
        assert sa[k] == sb[k], k


def test_two_processes_equal_one(tmp_path: Path) -> None:
    one = launch(1, "probe", *PROBE, "--seeds", "32", "--out", str(tmp_path / "one"))
    two = launch(2, "probe", *PROBE, "--seeds", "32", "--out", str(tmp_path / "two"))
    assert_same_probe(tmp_path / "one", tmp_path / "two")
    assert two.stdout.count("32 seeds ->") == 1, two.stdout  # rank 0 alone prints the result line
    assert one.stdout.splitlines()[0] == two.stdout.splitlines()[0]
    assert len(tensors(tmp_path / "two")["attractors"]) > 1  # a probe with something to agree on
    # the chunks were shared (4 of 32 seeds each at the default chunk size), not run twice
    assert "rank 0 of 2: 2 of its 2 chunks" in two.stderr and "rank 1 of 2: 2 of its 2 chunks" in two.stderr, two.stderr
    # the records say how many processes made each run (not part of the run key, compared equal above)
    assert [[s["world_size"] for s in json.loads((tmp_path / d / "environment.json").read_text())["sessions"]] +
            [json.loads((tmp_path / d / "summary.json").read_text())["versions"]["world_size"]]
            for d in ("one", "two")] == [[1, 1], [2, 2]]


def _numbers(report: dict) -> dict:
    """report.json without what is measured (times) or says where it ran."""
    drop = ("wall", "time", "environment", "elapsed", "seconds")
    if isinstance(report, dict):
        return {k: _numbers(v) for k, v in report.items() if not any(d in k for d in drop)}
    if isinstance(report, list):
        return [_numbers(v) for v in report]
    return report


def test_audit_two_processes_equal_one(tmp_path: Path) -> None:
    # main probe (shared), 12-seed trajectory re-run (in memory, every rank), OOD fit (shared) and scoring
    args = [*PROBE, "--seeds", "24", "--ood", "faces"]
    launch(1, "audit", *args, "--out", str(tmp_path / "one"))
    two = launch(2, "audit", *args, "--out", str(tmp_path / "two"))
    assert two.stdout.count("report:") == 1, two.stdout
    assert_same_probe(tmp_path / "one" / "probe", tmp_path / "two" / "probe")
    ra, rb = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("one", "two"))
    assert ra["ood"]["auroc"] and _numbers(ra) == _numbers(rb)
    fits = list((tmp_path / "two" / "ood" / "cache" / "fit").glob("*/chunks/*.safetensors"))
    assert len(fits) >= 2  # the in-distribution fit ran as a shared probe too


# Loaded at start-up by rank 1 only: logs where it atomically replaces files (every atomic write ends in
# os.replace), so a test sees which files a non-main rank wrote.
RANK1_WRITES = """
import os
if os.environ.get("RANK") == "1" and os.environ.get("LF_WRITES_LOG"):
    _replace = os.replace
    def replace(src, dst, *args, **kwargs):
        with open(os.environ["LF_WRITES_LOG"], "a") as log:
            log.write(os.fspath(dst) + "\\n")
        return _replace(src, dst, *args, **kwargs)
    os.replace = replace
"""


def test_extract_and_index_write_their_outputs_from_rank_zero_only(tmp_path: Path) -> None:
    site, log = tmp_path / "site", tmp_path / "rank1-writes.txt"
    site.mkdir()
    (site / "sitecustomize.py").write_text(RANK1_WRITES)
    traced = {**env(), "PYTHONPATH": f"{site}{os.pathsep}{TESTS}", "LF_WRITES_LOG": str(log)}
    args = ["extract", *PROBE, "--seeds", "24"]
    launch(1, *args, "--out", str(tmp_path / "one"))
    res = subprocess.run(command(2, *args, "--out", str(tmp_path / "two")), capture_output=True, text=True,
                         env=traced, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    one, two = tmp_path / "one", tmp_path / "two"
    assert json.loads((one / "manifest.json").read_text()) == json.loads((two / "manifest.json").read_text())
    assert sorted(p.name for p in (two / "attractors").iterdir()) == sorted(p.name for p in (one / "attractors").iterdir())
    ta, tb = (load_file(str(d / "attractors.safetensors")) for d in (one, two))
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    res = subprocess.run(command(2, "index", str(two / "probe"), "--reference", "digits:test", "--limit", "20",
                                 "--out", str(tmp_path / "idx")), capture_output=True, text=True, env=traced, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "idx" / "index.json").exists() and (tmp_path / "idx" / "images.csv").exists()
    written = log.read_text().split()
    assert any("/chunks/" in w for w in written), written  # rank 1 did its share of the probe (the hook works)
    assert all(Path(w).is_relative_to(two / "probe") for w in written), written  # and wrote nothing else


KILLED = ["probe", *PROBE, "--seeds", "96", "--chunk-size", "8"]


@pytest.fixture(scope="module")
def killed_reference(tmp_path_factory, one_thread) -> Path:
    """The uninterrupted single-process run both resumes must reproduce."""
    out = tmp_path_factory.mktemp("killed") / "ref"
    launch(1, *KILLED, "--out", str(out))
    return out


@pytest.fixture(scope="module")
def killed_two_process_run(tmp_path_factory) -> Path:
    """A 2-process run killed mid-run (agent and both ranks); each resume works on its own copy."""
    out = tmp_path_factory.mktemp("killed") / "run"
    job = subprocess.Popen(command(2, *KILLED, "--out", str(out)), env=env(), start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = out / "chunks"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and job.poll() is None:
        if chunks.is_dir() and len(list(chunks.glob("*.safetensors"))) >= 3:
            break
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)  # the torchrun group: agent and both ranks
    job.wait()
    done = len(list(chunks.glob("*.safetensors")))
    assert 3 <= done < 12 and not (out / "summary.json").exists(), done  # killed mid-run
    return out


@pytest.mark.parametrize("resume_nproc", [1, 2])
def test_killed_two_process_run_resumes(tmp_path: Path, killed_reference: Path, killed_two_process_run: Path,
                                        resume_nproc: int) -> None:
    args = KILLED
    out = tmp_path / "run"
    shutil.copytree(killed_two_process_run, out)
    launch(resume_nproc, *args, "--out", str(out))
    assert_same_probe(killed_reference, out)  # the same run key, whatever the process count of each session
    sessions = json.loads((out / "environment.json").read_text())["sessions"]
    assert [s["world_size"] for s in sessions] == ([2] if resume_nproc == 2 else [2, 1]), sessions
