"""The one rank source (``distributed.rank`` / ``world_size``, from the environment torchrun and accelerate
launch both set) and the one writer that asks it (``rundir.output``: rank 0 writes, other ranks do not)."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from latentfield.probe.rundir import distributed, output


@pytest.mark.parametrize("env,rank,world", [
    ({}, 0, 1),                                  # no launch
    ({"WORLD_SIZE": "1", "RANK": "0"}, 0, 1),    # a launch of one
    ({"WORLD_SIZE": "4", "RANK": "3"}, 3, 4),
    ({"WORLD_SIZE": "4"}, 0, 4),                 # RANK missing: rank 0
    ({"WORLD_SIZE": "x", "RANK": "2"}, 0, 1),    # a malformed size is no launch; RANK alone says nothing
    ({"RANK": "2"}, 0, 1),
])
def test_rank_and_world_size_come_from_the_environment(monkeypatch, env, rank, world):
    for k in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert (distributed.rank(), distributed.world_size()) == (rank, world)
    assert distributed.launched() == (world > 1)
    assert distributed.is_main_process() == (rank == 0)


@pytest.mark.parametrize("rank", [0, 1])
def test_output_writes_on_the_main_process_only(monkeypatch, tmp_path, rank):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    paths = [output.write_json(tmp_path / "a.json", {"x": 1}), output.write_text(tmp_path / "b.txt", "hi\n"),
             output.write_bytes(tmp_path / "c.bin", b"\x00\x01"),
             output.write_tensors(tmp_path / "d.safetensors", {"t": torch.arange(3)}, {"run_key": "k"})]
    assert paths == [tmp_path / n for n in ("a.json", "b.txt", "c.bin", "d.safetensors")]  # the same on every rank
    if rank == 0:
        assert json.loads(paths[0].read_text()) == {"x": 1} and paths[1].read_text() == "hi\n"
        assert paths[2].read_bytes() == b"\x00\x01" and torch.equal(load_file(str(paths[3]))["t"], torch.arange(3))
    else:
        assert list(tmp_path.iterdir()) == []
