#!/usr/bin/env bash
# Few-step distillation of the shipped text-to-image model (noisecraft/assets/shapes_t2i) on one GPU, ~9 minutes.
# Not run yet (no GPU was lent when it was written). Writes everything under $OUT:
#   student_cd/            the consistency student (an ordinary model folder; `noisecraft generate --model` it)
#   student_cd_<k>.json    `noisecraft eval shapes` of the student at k = 1, 2, 4 steps (guidance 3: 2k calls)
#   teacher_<sampler>_<s>.json  the teacher at s steps of dpmpp_2m (2s calls) and at its default (heun, 12 steps)
# Compare at equal network calls: student k steps = teacher dpmpp_2m k steps. Goal (issue 20): the 4-step student
# at least as good as the teacher at 16 calls; the 1-step student better than the teacher at 4 calls.
set -euo pipefail
OUT=${OUT:-benchmarks/out/distill_gpu}
NC=${NC:-$(command -v noisecraft || echo .venv/bin/noisecraft)}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
# ~5 minutes of consistency distillation (Heun teacher steps, guidance knob w in [1, 5], negatives 25 %).
$NC distill noisecraft/assets/shapes_t2i -o "$OUT/student_cd" --method consistency --minutes 5 --batch 128 \
    --lr 2e-4 --device cuda 2>&1 | tail -n 3 | tee "$OUT/distill.log"
for k in 1 2 4; do
  $NC eval shapes "$OUT/student_cd" --steps "$k" --device cuda -o "$OUT/student_cd_${k}.json" | tail -n 20
done
for s in 1 2 4 8 16; do
  $NC eval shapes --steps "$s" --sampler dpmpp_2m --device cuda -o "$OUT/teacher_dpmpp_2m_${s}.json" | tail -n 20
done
$NC eval shapes --device cuda -o "$OUT/teacher_heun_12.json" | tail -n 20
# The student keeps negative prompts and composition: one grid each, for a look.
$NC generate "a red circle AND a blue square:0.5" --model "$OUT/student_cd" --steps 4 -n 4 --device cuda \
    -o "$OUT/composition"
$NC generate "a red circle" --negative "a large red circle" --model "$OUT/student_cd" --steps 4 -n 4 \
    --device cuda -o "$OUT/negative"
