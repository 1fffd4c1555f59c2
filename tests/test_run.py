"""Run directories: determinism across batch sizes, resume after interruption, atomic files."""
from __future__ import annotations

import json
from dataclasses import replace
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

from latentfield.probe.engine.types import MAX_STEPS
from latentfield.probe.report.messages import describe_unconverged
from latentfield.probe.rundir import ProbeRun, load_trajectories
from latentfield.adapters import load_adapter
from latentfield.probe.rundir import ProbeConfig, load_result, run_probe

from builders import cli_command, cli_env, random_conv_ae, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models; the killed child runs on one thread too


def test_same_seed_same_attractors_whatever_the_batch_size():
    adapter = random_conv_ae()
    results = [run_probe(adapter, ProbeConfig(n_seeds=60, batch_size=bs, chunk_size=1024, max_steps=400), progress=False)
               for bs in (1, 7, 64)]
    ref = results[0]
    assert ref.counts["converged"] > 0
    for r in results[1:]:
        assert (r.status == ref.status).all() and (r.steps == ref.steps).all()
        torch.testing.assert_close(r.end_points, ref.end_points, rtol=0, atol=1e-5)
        torch.testing.assert_close(r.attractors, ref.attractors, rtol=0, atol=1e-5)
        assert (r.labels == ref.labels).all()


def test_resume_after_interrupt_equals_uninterrupted_run(tmp_path, monkeypatch):
    adapter = random_conv_ae()
    cfg = dict(n_seeds=40, chunk_size=10, max_steps=300, record_every=5)
    full = run_probe(adapter, ProbeConfig(**cfg), out=tmp_path / "full", progress=False)

    real_run_chunk, calls = ProbeRun.run_chunk, []

    def interrupted(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real_run_chunk(*args, **kwargs)

    monkeypatch.setattr(ProbeRun, "run_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_probe(adapter, ProbeConfig(**cfg), out=tmp_path / "resumed", progress=False)
    assert sorted(p.name for p in (tmp_path / "resumed" / "chunks").iterdir()) == ["00000.safetensors", "00001.safetensors"]
    assert not (tmp_path / "resumed" / "summary.json").exists()
    monkeypatch.setattr(ProbeRun, "run_chunk", real_run_chunk)
    resumed = run_probe(adapter, ProbeConfig(**cfg), out=tmp_path / "resumed", progress=False)
    torch.testing.assert_close(resumed.end_points, full.end_points, rtol=0, atol=0)  # bitwise
    assert (resumed.labels == full.labels).all() and resumed.n_evals == full.n_evals
    loaded = load_result(tmp_path / "resumed")
    torch.testing.assert_close(loaded.attractors, full.attractors, rtol=0, atol=0)
    assert json.loads((tmp_path / "resumed" / "summary.json").read_text())["counts"] == full.counts
    traj = load_trajectories(tmp_path / "resumed")
    assert set(np.unique(traj["seed"].numpy())) == set(range(40))
    assert not list((tmp_path / "resumed").rglob("*.tmp"))  # no half-written files left behind


def test_rerun_with_other_settings_is_refused(tmp_path):
    adapter = random_conv_ae()
    run_probe(adapter, ProbeConfig(n_seeds=5, max_steps=50), out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        run_probe(adapter, ProbeConfig(n_seeds=5, max_steps=60), out=tmp_path, progress=False)


def test_rerun_with_other_data_of_the_same_count_is_refused(tmp_path):
    adapter = random_conv_ae()
    a, b = torch.rand(6, *adapter.image_shape, generator=torch.Generator().manual_seed(1)).split(3)
    cfg = dict(init="data", max_steps=20, tol=1e-6)
    first = run_probe(adapter, ProbeConfig(**cfg), out=tmp_path / "run", data=a, progress=False)
    with pytest.raises(ValueError, match="other data"):  # was silently answered with a's chunks
        run_probe(adapter, ProbeConfig(**cfg), out=tmp_path / "run", data=b, progress=False)
    again = run_probe(adapter, ProbeConfig(**cfg), out=tmp_path / "run", data=a.clone(), progress=False)
    assert torch.equal(first.end_points, again.end_points)


def test_cli_killed_mid_run_resumes_to_the_same_result(tmp_path):
    # At tol 1e-12 the seeds of this map converge in 3 steps, so on a fast machine every chunk was written
    # before the interrupt; at 1e-30 every seed runs all 400 steps and SIGINT lands mid-run. The uninterrupted
    # run and the resume run in this process, on one thread as the child does (bitwise equal results).
    args = ["probe", "py:builders:random_conv_ae", "--seeds", "32", "--max-steps", "400", "--tol", "1e-30",
            "--chunk-size", "8", "--quiet"]
    assert run_cli(*args, "--out", tmp_path / "full").returncode == 0
    # A background job of a non-interactive shell (`make test &`) ignores SIGINT, and its children would
    # too (the run then finished and this test skipped): give the child the default disposition.
    proc = subprocess.Popen(cli_command(*args, "--out", tmp_path / "killed"), env=cli_env(), stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    chunks = tmp_path / "killed" / "chunks"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(chunks.glob("*.safetensors")) if chunks.exists() else []) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "rerun the same command to resume" in err and "Traceback" not in err
    done = len(list(chunks.glob("*.safetensors")))
    if done == 4:  # every chunk was written before the signal arrived (interrupted while summarising)
        pytest.skip("all chunks finished before the interrupt")
    assert 2 <= done < 4
    resumed = run_cli(*args, "--out", tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_result(tmp_path / "full"), load_result(tmp_path / "killed")
    torch.testing.assert_close(a.end_points, b.end_points, rtol=0, atol=0)
    assert (a.labels == b.labels).all()


def test_seeds_cut_off_by_max_steps_report_their_last_step(tmp_path):
    adapter = load_adapter("demo:memorize")  # some of its seeds still move after 12 steps
    cfg = ProbeConfig(n_seeds=30, max_steps=12, tol=1e-6, batch_size=7)
    r = run_probe(adapter, cfg, out=tmp_path / "run", progress=False)
    cut = np.flatnonzero(r.status == MAX_STEPS)
    assert len(cut) > 0
    # Independently: the squared step of step 12 is ||z_12 - z_11||^2, z_11 the end point of an 11-step run.
    before = run_probe(adapter, replace(cfg, max_steps=11), progress=False).end_points
    want = (r.end_points[cut] - before[cut]).flatten(1).double().pow(2).sum(1).numpy()
    np.testing.assert_allclose(r.last_sq_step[cut], want, rtol=1e-3)
    u = r.summary()["unconverged"]
    assert u["n"] == len(cut) and u["sq_step_median"] == pytest.approx(float(np.median(want)), rel=1e-3)
    assert "still moving" in describe_unconverged(r.summary())
    np.testing.assert_array_equal(load_result(tmp_path / "run").last_sq_step, r.last_sq_step)
    one = run_probe(adapter, replace(cfg, batch_size=1), progress=False)
    np.testing.assert_allclose(one.last_sq_step, r.last_sq_step, rtol=1e-3)  # float32 steps, batch-shaped rounding


def test_chunks_saved_before_last_step_was_kept_still_resume(tmp_path):
    adapter = load_adapter("demo:memorize")
    cfg = ProbeConfig(n_seeds=20, chunk_size=10, max_steps=12)
    run_probe(adapter, cfg, out=tmp_path, progress=False)
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open
    for chunk in (tmp_path / "chunks").glob("*.safetensors"):  # as an older version wrote them
        with safe_open(str(chunk), "pt") as f:
            meta = f.metadata()
        t = load_file(str(chunk))
        del t["last_sq_step"]
        save_file(t, str(chunk), metadata=meta)
    r = run_probe(adapter, cfg, out=tmp_path, progress=False)
    u = r.summary()["unconverged"]
    assert u["n"] == r.counts["max_steps"] > 0 and "sq_step_median" not in u
    assert describe_unconverged(r.summary()).endswith("(12).")


def test_probe_command_says_how_far_unconverged_seeds_were(tmp_path):
    res = run_cli("probe", "demo:memorize", "--seeds", "16", "--max-steps", "12", "--out", tmp_path, "--quiet")
    assert res.returncode == 0, res.stderr
    u = json.loads((tmp_path / "summary.json").read_text())["unconverged"]
    assert f"{u['n']} of 16 seeds stopped at max steps (12) still moving" in res.stdout
    assert f"squared step {u['sq_step_median']:.2g}" in res.stdout
    res = run_cli("audit", "demo:memorize", "--seeds", "16", "--max-steps", "12", "--out", tmp_path / "audit",
                  "--quiet")
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert report["unconverged"]["n"] == report["counts"]["max_steps"] > 0
    assert f"{report['unconverged']['n']} of 16 seeds stopped at max steps (12) still moving" in res.stdout
