#!/usr/bin/env bash
# The GPU half of the performance pass (issue 20, section 4) on one lent H200, about 6-8 minutes; not run yet.
#  1. sampling images/s of the shipped text-to-image model (benchmarks/perf_pass.py --device cuda): eager fp32
#     (TF32 off), SDPA vs the math attention, channels-last, bf16 autocast, torch.compile and CUDA graphs
#     (torch.compile mode="reduce-overhead"), each compared with eager bit for bit;
#  2. training throughput of the same U-Net (benchmarks/compile_speed.py --device cuda): steps/s, images/s, model
#     FLOPs per step (FlopCounterMode) and MFU against the H200's dense bf16 peak (989 TFLOP/s), eager vs
#     torch.compile vs CUDA graphs.
# Writes logs and JSON under $OUT (default benchmarks/out/perf_gpu). Sizes: N images per call, STEPS Heun steps.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-benchmarks/out/perf_gpu}"
PY="${PY:-.venv/bin/python}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1 || true
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.__version__)" | tee "$OUT/versions.txt"
timeout 300 "$PY" benchmarks/perf_pass.py --device cuda --threads 4 --n "${N:-64}" --steps "${STEPS:-32}" \
    --repeats 5 --variants eager sdpa_math channels_last bf16 compile cuda_graphs \
    --out "$OUT/perf_pass.json" 2>&1 | tee "$OUT/perf_pass.log" || echo "perf_pass: exit $?" | tee -a "$OUT/perf_pass.log"
for batch in 128 512; do
  timeout 150 "$PY" benchmarks/compile_speed.py --device cuda --threads 4 --batch "$batch" --steps 30 \
      --modes eager default reduce-overhead --peak-tflops 989 --out "$OUT/train_b$batch" 2>&1 \
      | tee "$OUT/train_b$batch.log" || echo "compile_speed batch $batch: exit $?" | tee -a "$OUT/train_b$batch.log"
done
