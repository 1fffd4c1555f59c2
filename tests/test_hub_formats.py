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
