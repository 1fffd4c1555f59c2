"""What latentfield writes in the Hub's own formats: the extracted prior as an ``imagefolder`` dataset that
``datasets`` loads, and the audit's ``model_card.md`` that ``huggingface_hub.ModelCard`` parses."""
from __future__ import annotations

import json

import pytest
import torch

from latentfield.adapters import load_adapter
from latentfield.probe.rundir import ProbeConfig
from latentfield.probe.workflows.extract import extract_prior

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = ProbeConfig(n_seeds=32, max_steps=300)


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    out = tmp_path_factory.mktemp("prior")
    adapter = load_adapter("demo:memorize")
    _, manifest, _ = extract_prior(adapter, out, FAST)
    assert manifest["n_attractors"] >= 2
    return out, manifest, adapter


def test_extracted_prior_loads_as_an_imagefolder_dataset(prior, tmp_path):
    datasets = pytest.importorskip("datasets")
    out, manifest, adapter = prior
    ds = datasets.load_dataset("imagefolder", data_dir=str(out), cache_dir=str(tmp_path / "cache"))["train"]
    assert len(ds) == manifest["n_attractors"]  # attractors.png (the grid) is not a row: it has no metadata
    rows = sorted(ds, key=lambda r: r["rank"])
    assert [r["rank"] for r in rows] == list(range(len(ds)))
    assert [r["basin_size"] for r in rows] == [e["basin_size"] for e in manifest["attractors"]]
    assert {r["kind"] for r in rows} == {"fixed_point"} and {r["fingerprint"] for r in rows} == {adapter.fingerprint}
    assert {r["run_key"] for r in rows} == {manifest["run_key"]}
    c, h, w = adapter.image_shape
    assert rows[0]["image"].size == (w, h)


def test_imagefolder_metadata_names_every_image_once(prior):
    out, manifest, _ = prior
    lines = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [m["file_name"] for m in lines] == [e["file"] for e in manifest["attractors"]]
    assert all((out / m["file_name"]).is_file() for m in lines)


def test_audit_model_card_parses_with_model_card(tmp_path):
    from huggingface_hub import ModelCard

    from builders import run_cli
    out = tmp_path / "audit"
    res = run_cli("audit", "demo:memorize", "--seeds", "32", "--max-steps", "300", "--quiet", "--out", out)
    assert res.returncode == 0, res.stderr
    card = ModelCard.load(out / "model_card.md")
    assert set(card.data.tags) >= {"latentfield", "latent-dynamics-audit"}
    report = json.loads((out / "report.json").read_text())
    text = card.text
    assert text.index("**Verdict.**") < text.index("| converged |")  # the verdict first
    for sentence in (report["verdict"][k] for k in report["verdict"]["order"]):
        assert sentence in text
    assert f"{report['counts']['converged']} of {report['n_seeds']}" in text and report["fingerprint"][:16] in text
    assert "](attractors.png)" in text and (out / "attractors.png").is_file()  # the gallery, relative
    assert f"latentfield audit demo:memorize --seeds 32 --max-steps 300 --quiet --out {out}" in text
    assert report["run_key"] in text
    k, q = report["n_attractors"], report["memorization"]["copy_quantile"]
    assert f"{100 * (1 - (1 - q) ** k):.0f}% if the {k} attractors" in text  # the copy call's chance level, stated


def test_model_card_provenance_names_repo_commit_and_files():
    from latentfield.probe.report.model_card import _provenance
    prov = {"repo_id": "org/vae", "revision": "main", "commit": "a" * 40, "subfolder": "vae",
            "files": {"vae/config.json": "b" * 64, "vae/diffusion_pytorch_model.safetensors": "c" * 64}}
    text = _provenance(prov, "f" * 64)
    assert "`org/vae`" in text and "a" * 40 in text and "latentfield audit org/vae@" + "a" * 40 in text
    assert all(f"| `{n}` | `{d}` |" in text for n, d in prov["files"].items())
    assert "no file provenance" in _provenance(None, "f" * 64) and "f" * 64 in _provenance(None, "f" * 64)
