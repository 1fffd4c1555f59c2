"""``latentfield index``: digits' basins under the demo model against a brute-force numpy search, a saved
and reloaded index, the embed space, and the one-line refusals (another model, nothing to index)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from builders import CliResult, assert_one_line_error
from latentfield.adapters import load_adapter
from latentfield.probe.cli import main
from latentfield.probe.data import digits
from latentfield.probe.index import AttractorIndex
from latentfield.probe.rundir import load_result

K = 4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished probe of demo:generalize, laid out as an audit lays it out (AUDIT/probe)."""
    audit = tmp_path_factory.mktemp("audit")
    assert main(["probe", "demo:generalize", "--seeds", "48", "--quiet", "--out", str(audit / "probe")]) == 0
    return audit


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_against_brute_force(data: dict, out: Path, attractors: np.ndarray, images: np.ndarray,
                               basin_sizes: np.ndarray) -> None:
    """index.json and both CSVs agree with an exhaustive numpy search of cosine distances."""
    dist = 1 - _cosine(images, attractors)  # (M, K)
    nearest = dist.argmin(1)
    second = np.sort(dist, 1)[:, 1] if dist.shape[1] > 1 else np.full(len(dist), np.inf)
    clear = second - dist.min(1) > 1e-5  # images with a float-tie between two attractors prove nothing
    assert clear.mean() > 0.95
    got = np.array([r["attractor"] for r in data["per_image"]])
    np.testing.assert_array_equal(got[clear], nearest[clear])
    np.testing.assert_allclose([r["distance"] for r in data["per_image"]], dist.min(1), atol=1e-5)
    rank = np.argsort(np.argsort(-basin_sizes, kind="stable"), kind="stable")
    assert [r["basin_rank"] for r in data["per_image"]] == rank[got].tolist()
    assert [r["basin_size"] for r in data["per_image"]] == basin_sizes[got].tolist()
    rows = _read_csv(out / "images.csv")
    assert [int(r["attractor"]) for r in rows] == got.tolist()
    assert [int(r["image"]) for r in rows] == list(range(len(images)))
    # each attractor's K nearest images, and how many images chose it
    want_nb = np.argsort(dist, axis=0, kind="stable")[:K].T  # (K_attr, K)
    counts = np.bincount(got, minlength=len(attractors))
    for a, entry in enumerate(data["per_attractor"]):
        assert entry["attractor"] == a and entry["basin_size"] == basin_sizes[a] and entry["n_images"] == counts[a]
        nb = [n["image"] for n in entry["neighbours"]]
        np.testing.assert_allclose([n["distance"] for n in entry["neighbours"]], dist[want_nb[a], a], atol=1e-5)
        assert len(set(nb) & set(want_nb[a].tolist())) >= K - 1  # float ties aside
    rows = _read_csv(out / "attractors.csv")
    assert len(rows) == len(attractors) * K
    assert {(int(r["attractor"]), int(r["image"])) for r in rows} == \
        {(e["attractor"], n["image"]) for e in data["per_attractor"] for n in e["neighbours"]}


def test_digit_basins_match_brute_force_and_reload(run_dir, tmp_path, capsys):
    out = tmp_path / "idx"
    assert main(["index", str(run_dir), "--reference", "digits:test", "--k", str(K), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "attractors of" in printed and "297 images" in printed
    data = json.loads((out / "index.json").read_text())
    result = load_result(run_dir / "probe")
    assert (data["model"], data["space"], data["metric"], data["n_attractors"]) == \
        ("demo:generalize", "latent", "cosine", len(result.attractors))
    assert data["run"] == str(run_dir / "probe") and data["images"] == {"source": "digits:test", "n": 297}
    assert len(result.attractors) >= 3  # the check below needs several basins to mean anything

    model = load_adapter("demo:generalize")
    x, _ = digits("test")
    with torch.no_grad():
        z = model.encode(model.from_unit(x)).flatten(1).numpy()
    _check_against_brute_force(data, out, result.attractors.flatten(1).numpy(), z, result.basin_sizes)
    assert len({r["attractor"] for r in data["per_image"]}) >= 3  # digits fall in several basins

    # the saved index: its sidecar names the model, and a reload answers the same
    meta = json.loads((out / "index.faiss.json").read_text())
    assert meta["fingerprint"] == model.fingerprint and meta["basin_sizes"] == result.basin_sizes.tolist()
    again = tmp_path / "again"
    assert main(["index", "--load", str(out / "index.faiss"), "--reference", "digits:test", "--k", str(K),
                 "--out", str(again)]) == 0
    assert "loaded from" in capsys.readouterr().out
    for name in ("images.csv", "attractors.csv"):
        assert (again / name).read_text() == (out / name).read_text()
    reloaded = json.loads((again / "index.json").read_text())
    assert reloaded["loaded"] is True and not (again / "index.faiss").exists()
    assert reloaded["per_image"] == data["per_image"] and reloaded["per_attractor"] == data["per_attractor"]
    index = AttractorIndex.load(out / "index.faiss", fingerprint=model.fingerprint)
    np.testing.assert_array_equal(index.nearest_attractor(z)[1], [r["attractor"] for r in data["per_image"]])


def test_embed_space_matches_brute_force(run_dir, tmp_path):
    out = tmp_path / "emb"
    assert main(["index", str(run_dir / "probe"), "--reference", "digits:test", "--limit", "120",
                 "--embed", "demo:memorize", "--k", str(K), "--out", str(out)]) == 0
    data = json.loads((out / "index.json").read_text())
    assert (data["space"], data["embed"], data["images"]["n"]) == ("embed", "demo:memorize", 120)
    model, embedder = load_adapter("demo:generalize"), load_adapter("demo:memorize")
    result = load_result(run_dir / "probe")
    with torch.no_grad():
        decoded = model.to_unit(model.decode(result.attractors)).clamp(0, 1)
        a = embedder.encode(embedder.from_unit(decoded)).flatten(1).numpy()
        q = embedder.encode(embedder.from_unit(digits("test")[0][:120])).flatten(1).numpy()
    _check_against_brute_force(data, out, a, q, result.basin_sizes)
    # a reload finds the encoder in the sidecar, and refuses another one
    again = tmp_path / "again"
    assert main(["index", "--load", str(out / "index.faiss"), "--reference", "digits:test", "--limit", "120",
                 "--k", str(K), "--out", str(again)]) == 0
    assert (again / "images.csv").read_text() == (out / "images.csv").read_text()
    assert main(["index", "--load", str(out / "index.faiss"), "--reference", "digits:test",
                 "--embed", "demo:generalize", "--out", str(tmp_path / "x")]) == 2


def _one_line_error(capsys, *needles: str) -> None:
    assert_one_line_error(CliResult.captured(capsys, 2), *needles)  # the caller checked main(...) == 2


def test_refusals_are_one_line(run_dir, tmp_path, capsys):
    out = tmp_path / "idx"
    assert main(["index", str(run_dir), "--reference", "digits:test", "--limit", "20", "--out", str(out)]) == 0
    capsys.readouterr()
    # an index, or a run, of demo:generalize queried with another model's encoder: refused by fingerprint
    assert main(["index", "--load", str(out / "index.faiss"), "--model", "demo:memorize",
                 "--reference", "digits:test", "--out", str(tmp_path / "x")]) == 2
    _one_line_error(capsys, "built for another model", "rebuild the index")
    assert main(["index", str(run_dir), "--model", "demo:memorize", "--reference", "digits:test",
                 "--out", str(tmp_path / "x")]) == 2
    _one_line_error(capsys, "probed with another model", "--model SPEC")
    # the index's own settings are not changed on reload
    assert main(["index", "--load", str(out / "index.faiss"), "--metric", "l2", "--reference", "digits:test",
                 "--out", str(tmp_path / "x")]) == 2
    _one_line_error(capsys, "cosine flat index", "--metric l2")
    # run and --load together, or neither
    assert main(["index", str(run_dir), "--load", str(out / "index.faiss"), "--reference", "digits:test",
                 "--out", str(tmp_path / "x")]) == 2
    _one_line_error(capsys, "not both")
    assert main(["index", "--reference", "digits:test", "--out", str(tmp_path / "x")]) == 2
    _one_line_error(capsys, "probe run directory")
    # not a run
    assert main(["index", str(tmp_path), "--reference", "digits:test", "--out", str(tmp_path / "x")]) == 2
    _one_line_error(capsys, "not a finished probe run")
    # an index that `extract` wrote (rank order, no basin sizes) is not taken for one of ours
    model = load_adapter("demo:generalize")
    AttractorIndex.build(torch.randn(3, 16), fingerprint=model.fingerprint).save(tmp_path / "other.faiss")
    assert main(["index", "--load", str(tmp_path / "other.faiss"), "--model", "demo:generalize",
                 "--reference", "digits:test", "--out", str(tmp_path / "x")]) == 2
    _one_line_error(capsys, "not an index of `latentfield index`")
    assert not (tmp_path / "x").exists()


def test_a_run_without_attractors_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["probe", "demo:generalize", "--seeds", "4", "--max-steps", "1", "--quiet", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["index", str(run), "--reference", "digits:test", "--out", str(tmp_path / "x")]) == 2
    _one_line_error(capsys, "no seed converged", "no attractors to index")


def test_the_source_is_read_once(run_dir, tmp_path, monkeypatch, capsys):
    """A run is found and loaded once, a saved index read once (the command and the workflow share them)."""
    import latentfield.probe.workflows.attractor_index as wf
    calls: list[str] = []
    find, result, load = wf.find_run, wf.load_result, AttractorIndex.load
    monkeypatch.setattr(wf, "find_run", lambda p: calls.append("find_run") or find(p))
    monkeypatch.setattr(wf, "load_result", lambda p: calls.append("load_result") or result(p))
    monkeypatch.setattr(AttractorIndex, "load", lambda *a, **k: calls.append("index") or load(*a, **k))
    out = tmp_path / "idx"
    assert main(["index", str(run_dir), "--reference", "digits:test", "--limit", "20", "--out", str(out)]) == 0
    assert calls == ["find_run", "load_result"]
    calls.clear()
    assert main(["index", "--load", str(out / "index.faiss"), "--reference", "digits:test", "--limit", "20",
                 "--out", str(tmp_path / "again")]) == 0
    assert calls == ["index"]
    assert (tmp_path / "again" / "images.csv").read_text() == (out / "images.csv").read_text()


def test_a_damaged_saved_index_is_one_line(run_dir, tmp_path, capsys):
    out = tmp_path / "idx"
    assert main(["index", str(run_dir), "--reference", "digits:test", "--limit", "20", "--out", str(out)]) == 0
    capsys.readouterr()
    faiss_file, sidecar = out / "index.faiss", out / "index.faiss.json"
    good = faiss_file.read_bytes()
    faiss_file.write_bytes(good[: len(good) // 3])
    args = ["index", "--load", str(faiss_file), "--reference", "digits:test", "--out", str(tmp_path / "x")]
    assert main(args) == 2
    _one_line_error(capsys, f"{faiss_file}: not a readable FAISS index", "rebuild")
    faiss_file.write_bytes(good)
    sidecar.write_text(sidecar.read_text()[:-20])
    assert main(args) == 2
    _one_line_error(capsys, f"{sidecar}: not readable JSON (JSONDecodeError", "rebuild the index")
    assert not (tmp_path / "x").exists()
