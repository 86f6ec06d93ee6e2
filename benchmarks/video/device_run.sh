#!/usr/bin/env bash
# The shipped video model's recipe at GPU scale on one H200, ~8 minutes; then `noisecraft eval video` on it and on
# the CPU-trained shipped model. Not run yet (no GPU was lent when it was written). Writes under $OUT:
#   video_gpu/          the model (an ordinary model folder: `noisecraft video generate --model $OUT/video_gpu`)
#   eval_gpu.json       `noisecraft eval video` of it (seen / held-out fractions fully right, per category)
#   eval_shipped.json   the same for noisecraft/assets/video_shapes (the 44-minute CPU model)
#   samples/            GIFs of four seen prompts
# Recipe (benchmarks/video/build_shipped_model.py --gpu): grown from noisecraft/assets/shapes_t2i, every layer
# trained on 8-frame clips plus one still shapes-world image per clip, batch 32, lr 5e-4, bf16, 6 minutes.
# Goal (issue 18): >= 0.80 of seen prompts fully right, >= 0.60 held out.
set -euo pipefail
OUT=${OUT:-benchmarks/out/video_gpu}
PY=${PY:-$(command -v python || echo .venv/bin/python)}
NC=${NC:-$(command -v noisecraft || echo .venv/bin/noisecraft)}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
$PY benchmarks/video/build_shipped_model.py train --gpu --out "$OUT/video_gpu" --minutes 6 2>&1 | tail -n 3 \
    | tee "$OUT/train.log"
$NC eval video --model "$OUT/video_gpu" --device cuda -o "$OUT/eval_gpu.json" | tail -n 25
$NC eval video --device cuda -o "$OUT/eval_shipped.json" | tail -n 25
for p in "a red circle moving right" "a small blue square growing" "a green triangle moving up and a yellow circle moving left" "a purple square standing still"; do
  $NC video generate "$p" --model "$OUT/video_gpu" --batch 4 --device cuda -o "$OUT/samples/${p// /_}"
done
cp "$OUT/video_gpu/log.jsonl" "$OUT/train_log.jsonl"
