"""The analysis commands end to end on tiny demo checkpoints trained here (a few seconds)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentfield.adapters.demo import save_demo_checkpoint
from latentfield.probe.cli import main
from latentfield.probe.workflows.train_demo import DemoRecipe, train_demo
from latentfield.probe.index import AttractorIndex

FAST = ["--max-steps", "150", "--tol", "1e-5", "--quiet"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Three checkpoints of one short training run (epochs 2, 10, 30), with training records."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("ckpt")
    paths = []
    recipe = DemoRecipe(bottleneck=8, n_train=48, epochs=30, batch_size=48, width=8)

    def save(epoch, model):
        if epoch in (2, 10, 30):
            paths.append(d / f"epoch{epoch:03d}.safetensors")
            save_demo_checkpoint(model, paths[-1])

    _, record = train_demo(recipe, progress=False, on_epoch=save)
    for p in paths:
        p.with_suffix(".json").write_text(json.dumps(record))
    return paths


def test_extract_writes_prior_and_dictionary(checkpoints, tmp_path, capsys):
    out = tmp_path / "ex"
    assert main(["extract", str(checkpoints[-1]), "--seeds", "32", "--out", str(out), "--reference", "digits:test",
                 "--dictionary", "--limit", "32", *FAST]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["n_attractors"] == len(man["attractors"]) >= 1
    assert all((out / e["file"]).exists() for e in man["attractors"])
    assert sum(e["basin_size"] for e in man["attractors"]) == man["counts"]["converged"]
    idx = AttractorIndex.load(out / "index.faiss", fingerprint=man["fingerprint"], dim=8)
    assert len(idx) == man["n_attractors"]
    dico = json.loads((out / "dictionary.json").read_text())
    assert len(dico["mse_attractors"]) == len(dico["n_atoms"]) and (out / "dictionary.png").exists()
    assert main(["extract", str(checkpoints[-1]), "--out", str(tmp_path / "x"), "--dictionary"]) == 2
    assert "needs --reference" in capsys.readouterr().err


def test_extract_without_attractors_names_only_what_it_wrote(tmp_path, capsys):
    out = tmp_path / "ex"
    assert main(["extract", "demo:generalize", "--seeds", "4", "--max-steps", "1", "--quiet", "--out", str(out)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "0 attractors (no seed converged" in line and "manifest.json" in line
    assert "attractors/" not in line and "index.faiss" not in line
    assert not (out / "attractors").exists() and not (out / "index.faiss").exists()
    assert json.loads((out / "manifest.json").read_text())["n_attractors"] == 0


def test_ood_command(checkpoints, tmp_path, capsys):
    out = tmp_path / "ood"
    assert main(["ood", str(checkpoints[-1]), "--in-dist", "digits:train", "--limit", "60", "--test", "noise",
                 "--test", "faces", "--out", str(out), *FAST]) == 0
    data = json.loads((out / "ood.json").read_text())
    assert set(data["auroc"]) == {"noise", "faces"}
    assert set(data["fpr95"]["faces"]) == set(data["methods"])
    assert (out / "scores.csv").exists() and (out / "scores.npz").exists()
    # the chosen fit set's trajectory AUROC is also the by-fit-set entry of that set, and the line names both
    by_set = data["trajectory_by_fit_set"]
    assert by_set["endpoints"]["noise"]["auroc"] == data["auroc"]["noise"]["trajectory"]
    assert by_set["endpoints"]["n_fit_points"] == data["n_fit_points"]
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("trajectory AUROC by fit set")]
    assert len(line) == 1 and f"endpoints ({data['n_fit_points']} points): noise" in line[0]
    assert main(["ood", str(checkpoints[-1]), "--in-dist", str(tmp_path / "missing"), "--test", "noise"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_compare_and_dynamics(checkpoints, tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    specs = [str(p) for p in checkpoints[1:]]
    compare = ["compare", *specs, "--seeds", "24", "--null", "both", "--out", str(out), *FAST]
    assert main(compare) == 0
    data = json.loads((out / "compare.json").read_text())
    ch = np.array(data["chamfer"])
    assert ch.shape == (2, 2) and np.allclose(np.diag(ch), 1) and np.allclose(ch, ch.T)
    assert "chamfer_mean" in data["pairs"][0]["null_permute"] and len(data["null_random_init"]) == 2
    assert (out / "heatmap.png").exists()
    dyn = tmp_path / "dyn"
    dynamics = ["dynamics", *map(str, checkpoints), "--reference", "digits:train", "--n-data", "24",
                "--seeds", "24", "--out", str(dyn), *FAST]
    assert main(dynamics) == 0
    rows = json.loads((dyn / "dynamics.json").read_text())["rows"]
    assert len(rows) == 3 and all(r["n_attractors"] >= 0 for r in rows)
    assert (dyn / "dynamics.png").exists()
    # Rerun: every probe is read back from OUT/cache (none is iterated again), same numbers.
    from latentfield.probe.rundir import ProbeRun
    monkeypatch.setattr(ProbeRun, "run_chunk", lambda *a, **k: pytest.fail("a finished probe ran again"))
    assert main(compare) == 0 and json.loads((out / "compare.json").read_text())["chamfer"] == data["chamfer"]
    assert main(dynamics) == 0 and json.loads((dyn / "dynamics.json").read_text())["rows"] == rows


def test_audit_sections(checkpoints, tmp_path):
    out = tmp_path / "audit"
    assert main(["audit", str(checkpoints[-1]), "--seeds", "32", "--out", str(out), "--heldout", "digits:test",
                 "--ood", "noise", "--dictionary", *FAST]) == 0
    rep = json.loads((out / "report.json").read_text())
    mem = rep["memorization"]
    assert {"mean", "std", "baseline_mean", "noise_baseline_mean", "copy_rate", "noise_copy_rate", "ct_statistic"} <= set(mem)
    assert mem["ct_statistic"]["n_generated"] == rep["counts"]["converged"]
    assert rep["generalization_entropy"]["attractors"]["n_components"] >= 0
    assert "mse_attractors" in rep["dictionary"]
    assert set(rep["ood"]["auroc"]["noise"]) == set(rep["ood"]["methods"])
    assert "fpr95" in rep["ood"]
    html = (out / "report.html").read_text()
    assert "Out-of-distribution detection" in html and "calibrated copy rate" in html and "Meehan" in html
    notes = rep["ood"]["notes"]  # fewer than the paper's K = 2000 fitted images: the clamp is said, in the page too
    assert notes and all(f"Note: {n}" in html.replace("&#x27;", "'") for n in notes)
    # The verdict opens the page and the JSON (after its schema version), and is the numbers' reading:
    # near-copies are the attractors (ranked by basin) above the calibrated threshold, their seed share their basins'.
    assert list(rep)[:2] == ["schema_version", "verdict"] and html.index("<h2>Verdict") < html.index("<h2>Model and probe")
    v, sizes = rep["verdict"], np.array(rep["basin_sizes"])
    assert list(sizes) == sorted(sizes, reverse=True)
    hit = np.array(mem["per_attractor"]) > mem["copy_threshold_cosine"]
    assert v["n_copies"] == hit.sum() and v["copy_ranks"] == np.flatnonzero(hit).tolist()
    assert v["copy_seed_share"] == pytest.approx(sizes[hit].sum() / sizes.sum())
    if hit.any():
        assert f"{hit.sum()} of {len(sizes)} attractor" in v["memorization"]
    else:
        assert "near-copy" in v["memorization"] and "of converged seeds" not in v["memorization"]
    assert v["ood"].startswith("Out-of-distribution: noise")
    # One numbering: the gallery's entries and the stability table follow the basin ranks, ids kept beside.
    assert [a["rank"] for a in rep["attractors"]] == list(range(len(sizes)))
    assert [a["basin_size"] for a in rep["attractors"]] == list(sizes)
    assert [a["attractor_id"] for a in rep["attractors"]] == rep["attractor_ids"]
    for a, cos in zip(rep["attractors"], mem["per_attractor"]):
        assert len(a["nearest_train"]) == 3 and a["nearest_train"][0]["cosine"] == pytest.approx(cos)
    # summary.json's names, and no older aliases beside them
    summary = json.loads((out / "probe" / "summary.json").read_text())
    assert rep["config"] == summary["config"] and rep["counts"] == summary["counts"]
    assert rep["steps_to_converge"] == summary["steps_to_converge"] and rep["run_key"] == summary["run_key"]
    assert not {"probe_config", "n_converged", "steps_median"} & set(rep)


def test_audit_ood_without_training_images_is_a_one_line_error(checkpoints, tmp_path, capsys):
    import shutil
    bare = tmp_path / "bare.safetensors"  # no training record beside it, so no reference set
    shutil.copy(checkpoints[-1], bare)
    assert main(["audit", str(bare), "--out", str(tmp_path / "a"), "--ood", "noise", *FAST]) == 2
    err = capsys.readouterr().err
    assert "need training images" in err and err.count("\n") == 1


def test_compare_and_dynamics_take_per_model_settings(checkpoints, tmp_path, capsys, monkeypatch):
    """SPEC[image_shape=C,H,W,KEY=VALUE] gives one model its own input size; the global flag cannot (the demo
    checkpoint refuses 3,16,16). dynamics refuses checkpoints of different latent shapes in one line."""
    monkeypatch.syspath_prepend(str(__import__("conftest").ROOT / "tests"))
    pair = "py:builders:conv_pair[image_shape=3,16,16]"
    out = tmp_path / "cmp"
    assert main(["compare", str(checkpoints[-1]), pair, "--seeds", "8", "--out", str(out), *FAST]) == 0, \
        capsys.readouterr().err
    data = json.loads((out / "compare.json").read_text())
    assert len(data["models"]) == 2 and all(n > 0 for n in data["n_attractors"])
    capsys.readouterr()
    assert main(["compare", str(checkpoints[-1]), "py:builders:conv_pair", "--image-shape", "3,16,16",
                 "--seeds", "8", *FAST]) == 2
    assert "takes images of shape" in capsys.readouterr().err
    assert main(["dynamics", str(checkpoints[-1]), pair, "--reference", "digits:train", "--n-data", "8",
                 "--seeds", "8", *FAST]) == 2
    err = capsys.readouterr().err
    assert "share one latent shape" in err and err.count("\n") == 1
    assert main(["compare", str(checkpoints[-1]), "py:builders:conv_pair[16x16]", "--seeds", "8", *FAST]) == 2
    err = capsys.readouterr().err
    assert "KEY=VALUE" in err and err.count("\n") == 1


def test_model_settings_syntax():
    from latentfield.probe.commands.common import model_settings
    assert model_settings("org/model@v1[image_shape=3,64,64,dtype=float16,scale=[1,2]]") == \
        ("org/model@v1", (3, 64, 64), {"dtype": "float16", "scale": [1, 2]})
    assert model_settings("demo:memorize") == ("demo:memorize", None, {})
    from latentfield.adapters.errors import UsageError
    with pytest.raises(UsageError, match="image_shape"):
        model_settings("demo[image_shape=3,64]")
