#!/usr/bin/env bash
# GPU throughput of MERT-v1-95M and -330M: model only and end-to-end index, in about 5 minutes (10 at most)
# on an H100-class card. Writes one JSON line per run to ${OUT:-.}/bench-gpu.jsonl.
#   bash bench/gpu.sh            # on a machine with an NVIDIA GPU, after `make install`
#   bash bench/gpu.sh --dry-run  # anywhere: tiny sizes, to check the script itself
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT_FILE="${OUT:-.}/bench-gpu.jsonl"
EXTRA=("$@")
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
: > "$OUT_FILE"
for model in 95m 330m; do
  for dtype in bf16 fp32; do
    timeout 150 "$PY" bench/gpu.py --model "$model" --dtype "$dtype" --json "${EXTRA[@]}" | tee -a "$OUT_FILE"
  done
done
echo "results in $OUT_FILE"
