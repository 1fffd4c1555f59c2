"""Run records of capture runs and of the environment: captured seeds per seed and counted, approximate
basins said so (summary, CLI line, audit report), and versions / threads / device beside the resume key."""
from __future__ import annotations

import json

import numpy as np
import torch

from latentfield.adapters import TorchAutoencoder
from latentfield.probe.cli import main
from latentfield.probe.report.messages import describe_captured
from latentfield.probe.rundir import ProbeConfig, load_result, run_probe

from builders import random_conv_ae

A = torch.tensor([1.0, 0.0, 0.0, 0.0])


def line_map() -> TorchAutoencoder:
    """f(z) = a + 0.9 (z - a) on 4-vectors: straight paths onto a, slow enough to stop at max_steps."""
    return TorchAutoencoder(lambda x: x.flatten(1), lambda z: (A + 0.9 * (z.flatten(1) - A)).view(-1, 1, 1, 4),
                            image_shape=(1, 1, 4), name="line")


def test_capture_is_recorded_per_seed_counted_and_flagged(tmp_path):
    e = torch.tensor([0.0, 1.0, 0.0, 0.0])
    # seeds 1 and 2 reach seed 0's start after one and two steps; seed 3 comes from elsewhere
    starts = torch.stack([A + 10 * e, A + 10 / 0.9 * e, A + 10 / 0.81 * e, A + torch.tensor([0.0, 0.0, 0.0, 0.01])])
    cfg = ProbeConfig(init="data", tol=1e-12, max_steps=5, capture=0.01)
    res = run_probe(line_map(), cfg, out=tmp_path / "run", data=starts.view(-1, 1, 1, 4), progress=False)
    cap = res.captured_by >= 0
    assert res.captured_by.tolist() == [-1, 0, 1, -1]  # seed 2 meets seed 1 first
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["n_captured"] == int(cap.sum()) and s["basin_sizes_approximate"] is True
    assert sum(s["captured_status"].values()) == s["n_captured"]
    assert s["captured_status"]["max_steps"] == int((res.status[cap] == 1).sum()) > 0
    back = load_result(tmp_path / "run")
    assert np.array_equal(back.captured_by, res.captured_by)  # per seed, in attractors.safetensors
    assert back.summary()["n_captured"] == s["n_captured"]
    line = describe_captured(s)
    assert line.startswith("2 of 4 seeds captured (2 of the 4 max_steps)")
    assert s["unconverged"]["n"] == 2  # the other two ran to max_steps themselves
    assert "basin sizes are approximate" in line and "docs/latent-dynamics.md" in line


def test_plain_run_has_no_capture_keys(tmp_path):
    res = run_probe(random_conv_ae(), ProbeConfig(n_seeds=8, max_steps=12), progress=False)
    s = res.summary()
    assert "n_captured" not in s and not s.get("basin_sizes_approximate") and describe_captured(s) is None


def test_cli_probe_line_explains_captured_seeds(tmp_path, capsys):
    assert main(["probe", "py:builders:random_conv_ae", "--seeds", "48", "--max-steps", "12", "--capture", "0.05",
                 "--batch-size", "16", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    out = capsys.readouterr().out
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert f"{s['n_captured']} of 48 seeds captured" in out and "took its end point" in out
    assert "basin sizes are approximate" in out


def test_environment_is_recorded_beside_the_resume_key(tmp_path):
    out = tmp_path / "run"
    threads = torch.get_num_threads()
    try:
        run_probe(random_conv_ae(), ProbeConfig(n_seeds=8, max_steps=12), out=out, progress=False)
        key = json.loads((out / "run.json").read_text())
        assert "torch" not in json.dumps(key) and "config" in key  # versions are not part of the key
        env = json.loads((out / "environment.json").read_text())["sessions"]
        assert len(env) == 1 and torch.__version__.startswith(env[0]["torch"]) and env[0]["torch_threads"] == threads
        assert env[0]["device"] == "cpu" and env[0]["dtype"] == "float32"
        # a resume under another thread count is accepted (same key) and recorded as a second session
        torch.set_num_threads(1 if threads != 1 else 2)
        run_probe(random_conv_ae(), ProbeConfig(n_seeds=8, max_steps=12), out=out, progress=False)
        env = json.loads((out / "environment.json").read_text())["sessions"]
        assert [e["torch_threads"] for e in env] == [threads, torch.get_num_threads()]
        assert json.loads((out / "run.json").read_text()) == key
        s = json.loads((out / "summary.json").read_text())
        assert s["versions"]["device"] == "cpu" and s["versions"]["dtype"] == "float32"
    finally:
        torch.set_num_threads(threads)
