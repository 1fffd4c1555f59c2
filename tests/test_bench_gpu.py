"""bench/bench_gpu.py (the Python half of bench/gpu_check.sh) in its CPU quick mode: it writes the table."""
from __future__ import annotations

import re

from builders import load_script



def _bench():
    return load_script("bench", "bench_gpu")


def test_quick_throughput_writes_the_markdown_table(tmp_path, capsys):
    out = tmp_path / "t.md"
    _bench().main(["throughput", "--device", "cpu", "--quick", "--batches", "1", "--seconds", "0", "--out", str(out)])
    text = out.read_text()
    assert text.startswith("### f(z) throughput, bare vs inside the engine (CPU")
    assert text in capsys.readouterr().out  # the same table on stdout
    rows = [line for line in text.splitlines() if re.match(r"\| (TAEF2|SD 1\.x)", line)]
    assert len(rows) == 4  # 2 models x 2 dtypes x 1 batch
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "3x32x32" and cells[2] in ("float32", "bfloat16") and cells[3] == "1"
        bare, engine, ratio = float(cells[5]), float(cells[6]), float(cells[7].rstrip("%")) / 100
        # the cells are rounded (two or three significant digits), so their ratio matches the printed one
        # only to a few percent
        assert bare > 0 and engine > 0 and abs(ratio - engine / bare) <= 0.05 * ratio and cells[8] in ("yes", "no")


def test_quick_multiprocess_step_reports_or_runs(tmp_path):
    bench = _bench()
    out = tmp_path / "m.md"
    bench.main(["multiprocess", "--device", "cpu", "--quick", "--out", str(out), "--timeout-s", "300"])
    text = out.read_text()
    assert text.startswith("### 1 vs 2 processes, same probe")
    if bench.multiprocess_available():
        assert re.search(r"^\| 2 \| `torchrun --nproc_per_node 2 .*\| \d+\.\d \|", text, re.M), text
    else:
        assert "skipped" in text and "not in this build" in text
