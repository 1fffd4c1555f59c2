#!/usr/bin/env bash
# The GPU check of issue 16: on a machine with an NVIDIA GPU, in under 8 minutes, measure
#   1. f(z) throughput bare (adapter.f in a loop) vs inside the engine (iterate), goal engine >= 90% of bare,
#      at batch 1/16/64 for TAEF2 at 512 px and the SD 1.x VAE architecture at 256 px, float32 vs bfloat16;
#   2. the same probe with 1 process and with N (torchrun; N = number of GPUs, at least 2),
# and write one markdown table file (also printed). The Python half is bench/bench_gpu.py.
#
# Run from anywhere; it changes to the repository root. It needs the python of an environment where
# latentfield is installed, given as $PYTHON (default: .venv/bin/python if present, else python):
#     python3 -m venv .venv && .venv/bin/pip install -e .      # once, or use an existing environment
#     bench/gpu_check.sh gpu-check.md                         # or PYTHON=/path/to/python bench/gpu_check.sh gpu-check.md
# TAEF2's real weights are read from $LATENTFIELD_TAEF2_DIR, ../shared/weights/taef2 or shared/weights/taef2
# (else its architecture with random weights, said in the table). Nothing is downloaded.
# DEVICE=cpu QUICK=1 bench/gpu_check.sh t.md runs the small CPU version (what the tests check).
set -u
cd "$(dirname "$0")/.."
OUT=${1:?usage: bench/gpu_check.sh OUT.md}
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:+--quick}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

if ! "$PYTHON" -c "import latentfield.probe" 2>/dev/null; then
    echo "gpu_check: $PYTHON cannot import latentfield; install it first:" >&2
    echo "    python3 -m venv .venv && .venv/bin/pip install -e .   (or PYTHON=/path/to/python of an env that has it)" >&2
    exit 2
fi
NPROC=$("$PYTHON" -c "import torch; print(max(2, torch.cuda.device_count()))")
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
START=$(date +%s)

{
    echo "## GPU check ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "Command: \`bench/gpu_check.sh $OUT\` (DEVICE=$DEVICE${QUICK:+, QUICK=1}); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
    "$PYTHON" -c "import torch, platform; print(f'python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, devices:', ', '.join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or 'none')"
    echo
} | tee "$OUT"

# Each step under its own limit (5 + 2.5 min), so the whole check ends within 8 minutes; a step cut short
# keeps the rows it wrote.
timeout 300 "$PYTHON" bench/bench_gpu.py throughput --device "$DEVICE" $QUICK --budget-s 240 --out "$TMP/throughput.md" \
    2> "$TMP/throughput.err"
rc=$?
cat "$TMP/throughput.md" >> "$OUT" 2>/dev/null
[ $rc -eq 124 ] && echo -e "\nthroughput step stopped at its 300 s limit; the rows above are what it finished." | tee -a "$OUT"
[ $rc -ne 0 ] && [ $rc -ne 124 ] && echo -e "\nthroughput step failed (exit $rc): $(tail -n 1 "$TMP/throughput.err")" | tee -a "$OUT"
echo | tee -a "$OUT"

timeout 150 "$PYTHON" bench/bench_gpu.py multiprocess --device "$DEVICE" $QUICK --nproc "$NPROC" --timeout-s 65 \
    --out "$TMP/multiprocess.md" 2> "$TMP/multiprocess.err"
rc=$?
cat "$TMP/multiprocess.md" >> "$OUT" 2>/dev/null
[ $rc -eq 124 ] && echo -e "\nmultiprocess step stopped at its 150 s limit." | tee -a "$OUT"
[ $rc -ne 0 ] && [ $rc -ne 124 ] && echo -e "\nmultiprocess step failed (exit $rc): $(tail -n 1 "$TMP/multiprocess.err")" | tee -a "$OUT"

echo -e "\nTotal: $(( $(date +%s) - START )) s." | tee -a "$OUT"
echo "gpu_check: table written to $OUT" >&2
exit 0
