"""Run every bench/bench_*.py in turn (``make bench``); each prints markdown for docs/benchmarks.md."""
import subprocess
import sys
from pathlib import Path

for script in sorted(Path(__file__).parent.glob("bench_*.py")):
    print(f"\n## {script.name}\n", flush=True)
    subprocess.run([sys.executable, str(script)], check=False)
