#!/usr/bin/env bash
# Molecules on a lent GPU (one H200, ~9 minutes): noisecraft's masked diffusion over SMILES trained on the FULL MOSES
# training split (1,584,663 molecules, unconditional), 30,000 samples scored with the MOSES metrics against 20,000
# molecules of the MOSES test split, beside the published numbers (30k samples, full training, GPU).
# Run from the repository root on the device machine:  OUT=/some/dir bash benchmarks/molecules/device_run.sh
# Needs the `molecules` extra in $PY's environment (rdkit, selfies, fcd_torch; molsets installed with --no-deps for
# its data files). Budget: MINUTES of training (default 4) + ~1.5 min of data preparation (16 worker processes
# canonicalise the split) + ~1 min of sampling + ~2-3 min of metrics, inside one 10-minute command.
set -euo pipefail
OUT=${OUT:?set OUT to the folder that receives the results}
MINUTES=${MINUTES:-4}
N=${N:-30000}
PY=${PY:-python}
SYSTEMS=${SYSTEMS:-smiles}   # smiles,selfies for both (about twice the time)
WORK=${WORK:-/tmp/noisecraft_molecules}   # models and samples; $OUT gets at most 8 files back
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1 || true
$PY -c "import importlib.util as u, rdkit, selfies, fcd_torch; assert u.find_spec('moses'), 'molsets'" 2> "$OUT/missing.txt" || {
    echo "the molecules extra is missing in $PY's environment (see $OUT/missing.txt)"; exit 3; }
$PY benchmarks/molecules/run.py --systems "$SYSTEMS" --minutes "$MINUTES" --train-size 1584663 \
    --test-size 20000 --n "$N" --preset base --net-dim 0 --batch-size 512 --lr 3e-4 --bf16 --properties "" \
    --device cuda --out "$WORK/results.jsonl" 2>&1 | tee "$OUT/run.log"
cp "$WORK/results.jsonl" "$OUT/results.jsonl"
# beside the published numbers (quoted in issue 16: MOSES README for CharRNN, the DiGress paper's released
# checkpoint); ours use 20k test molecules as FCD reference, theirs the whole test split
$PY - "$WORK/results.jsonl" <<'PYEOF' | tee "$OUT/compare.txt"
import json, sys
published = {"CharRNN (MOSES, 30k, full training)": {"validity": 0.975, "novelty": 0.842, "FCD/Test": 0.073},
             "DiGress (released checkpoint)": {"validity": 0.860, "FCD/Test": 0.618}}
rows = {f"noisecraft {r['system']} ({r['steps']} steps, {r['train_s']:.0f} s)": r
        for r in map(json.loads, open(sys.argv[1]))}
keys = ["validity", "unique@10k", "novelty", "IntDiv1", "SNN/Test", "Frag/Test", "Scaf/Test", "FCD/Test", "quality"]
print(f"{'system':48s}" + "".join(f"{k:>11s}" for k in keys))
for name, r in {**rows, **published}.items():
    print(f"{name:48s}" + "".join(f"{r[k]:11.3f}" if isinstance(r.get(k), float) else f"{'-':>11s}" for k in keys))
PYEOF
# the samples (gzipped CSV) and the training log of the first system: 7 files in all
first=${SYSTEMS%%,*}
gzip -c "$WORK/$first.csv" > "$OUT/samples_$first.csv.gz"
cp "$WORK/noisecraft_$first/log.jsonl" "$OUT/train_log_$first.jsonl"
