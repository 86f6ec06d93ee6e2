#!/usr/bin/env bash
# The text benchmark (benchmarks/text/run.py) on a CUDA machine: masked diffusion vs GPT-2, same size, same windows,
# same wall-clock budget, both trainings at once on the one GPU; bf16 autocast for training only (the losses and
# every evaluation stay float32). Default budget: 10x the CPU run's 15 minutes per model. On a lent device with a
# 10-minute limit per command, size it to fit, e.g. MINUTES=4 EVAL_WINDOWS=512 bash benchmarks/text/device_run.sh
# Writes the run folder and results JSON under $OUT (default benchmarks/out/text_gpu).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-benchmarks/out/text_gpu}"
PY="${PY:-.venv/bin/python}"
MINUTES="${MINUTES:-150}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1 || true
"$PY" -c "import torch, transformers; assert torch.cuda.is_available(), 'no CUDA'; print(torch.__version__, transformers.__version__)" | tee "$OUT/versions.txt"
args=(--minutes "$MINUTES" --device cuda --bf16 --threads 4
      --length "${LENGTH:-256}" --batch-size "${BATCH:-32}" --dim "${DIM:-128}" --depth "${DEPTH:-4}" --heads "${HEADS:-4}"
      --n-samples "${N_SAMPLES:-32}" --timing-repeats 5 --machine "${MACHINE:-$(head -1 "$OUT/gpu.txt")}"
      --out "$OUT/run" --results "$OUT/results_gpu_$(date -u +%F).json")
if [ -n "${EVAL_WINDOWS:-}" ]; then args+=(--eval-windows "$EVAL_WINDOWS"); fi
OMP_NUM_THREADS=4 "$PY" benchmarks/text/run.py --phase all "${args[@]}" 2>&1 | tee "$OUT/run.log"
